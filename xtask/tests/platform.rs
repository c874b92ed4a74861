//! Platform build tests against Debian's real kernel package: reproducibility and the
//! records of the archive, read back without unpacking or mounting.

use std::collections::BTreeMap;

use ramkey_builder::initramfs::{self, Compression};
use xtask::artifacts;

const S_IFMT: u32 = 0o170000;
const S_IFCHR: u32 = 0o020000;
const S_IFREG: u32 = 0o100000;

#[test]
fn two_builds_are_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let a = artifacts::build_appliance(&dir.path().join("a"), Compression::Zstd, false).unwrap();
    let b = artifacts::build_appliance(&dir.path().join("b"), Compression::Zstd, false).unwrap();
    for file in [
        "platform/initrd.img",
        "platform/vmlinuz",
        "platform/version",
        "platform/SHA256SUMS",
        "usb.img",
    ] {
        let (x, y) = (
            std::fs::read(a.join(file)).unwrap(),
            std::fs::read(b.join(file)).unwrap(),
        );
        assert!(x == y, "{file} differs between two builds");
    }
    for file in ["boot.ipxe", "pxelinux.cfg/default", "initrd.img"] {
        assert_eq!(
            std::fs::read(a.join("pxe").join(file)).unwrap(),
            std::fs::read(b.join("pxe").join(file)).unwrap()
        );
    }
}

#[test]
fn the_stick_image_passes_fsck_and_carries_its_files() {
    let usb = artifacts::appliance().unwrap().join("usb.img");
    let bytes = std::fs::read(&usb).unwrap();
    // Protective MBR with gptmbr.bin's code, GPT signature at LBA 1.
    assert_eq!(&bytes[510..512], &[0x55, 0xaa]);
    assert_eq!(bytes[450], 0xee, "protective MBR partition type");
    assert_eq!(&bytes[512..520], b"EFI PART");
    let gptmbr = std::fs::read(ramkey_builder::usb::GPTMBR).unwrap();
    assert_eq!(&bytes[..440], &gptmbr[..440]);
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("part.img");
    let offset = 2048 * 512;
    let end = bytes.len() - 1024 * 1024; // the partition ends on the last whole MiB before the backup GPT
    std::fs::write(&part, &bytes[offset..end]).unwrap();
    let fsck = std::process::Command::new("fsck.vfat")
        .arg("-n")
        .arg(&part)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&fsck.stdout);
    assert!(
        fsck.status.success(),
        "fsck.vfat: {report}{}",
        String::from_utf8_lossy(&fsck.stderr)
    );
    assert!(!report.contains("differences"), "{report}");
    let list = std::process::Command::new("mdir")
        .args(["-/", "-b", "-a", "-i"]) // -a: syslinux marks ldlinux.sys hidden
        .arg(&part)
        .arg("::/")
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap();
    let files = String::from_utf8_lossy(&list.stdout);
    for want in [
        "::/EFI/BOOT/BOOTX64.EFI",
        "::/config.toml",
        "::/platform/a/initrd.img",
        "::/syslinux/ldlinux.sys",
    ] {
        assert!(
            files.lines().any(|l| l.eq_ignore_ascii_case(want)),
            "{want} missing from the stick:\n{files}"
        );
    }
}

#[test]
fn the_archive_holds_init_modules_and_device_nodes() {
    let platform = artifacts::platform().unwrap();
    let entries = initramfs::read(&std::fs::read(platform.join("initrd.img")).unwrap()).unwrap();
    let by_path: BTreeMap<&str, &initramfs::Entry> = entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let paths: Vec<&str> = by_path.keys().copied().collect();
    assert_eq!(paths.len(), entries.len(), "duplicate paths in the archive");

    let init = by_path["init"];
    assert_eq!(init.mode, S_IFREG | 0o755);
    assert_eq!(&init.data[..4], b"\x7fELF");

    let console = by_path["dev/console"];
    assert_eq!((console.mode & S_IFMT, console.rdev), (S_IFCHR, (5, 1)));
    assert_eq!(by_path["dev/null"].rdev, (1, 3));
    assert!(
        entries.iter().all(|e| e.uid == 0 && e.gid == 0),
        "every record is owned by root"
    );

    let kernel = artifacts::kernel().unwrap();
    let base = format!("lib/modules/{}", kernel.release);
    let dep = String::from_utf8(by_path[format!("{base}/modules.dep").as_str()].data.clone()).unwrap();
    let alias = String::from_utf8(by_path[format!("{base}/modules.alias").as_str()].data.clone()).unwrap();
    // Every module in modules.dep, and every dependency it names, is in the archive.
    let mut modules = 0;
    for line in dep.lines() {
        let (module, deps) = line.split_once(':').unwrap();
        for path in std::iter::once(module).chain(deps.split_whitespace()) {
            assert!(
                by_path.contains_key(format!("{base}/{path}").as_str()),
                "{path} named in modules.dep is missing"
            );
        }
        modules += 1;
    }
    assert!(modules > 50, "only {modules} modules");
    // virtio_net comes with its dependency chain, deepest last.
    let virtio_net = dep
        .lines()
        .find(|l| l.contains("/virtio_net.ko:"))
        .expect("virtio_net in modules.dep");
    assert!(
        virtio_net.contains("net_failover.ko") && virtio_net.contains("failover.ko"),
        "{virtio_net}"
    );
    for needle in [
        "alias virtio:d00000001v* virtio_net",
        "alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci",
        " button\n",
        " evdev\n",
        " vfat\n",
    ] {
        assert!(alias.contains(needle), "modules.alias lacks {needle:?}");
    }
    let os_release = String::from_utf8(by_path["etc/os-release"].data.clone()).unwrap();
    assert!(os_release.contains("VERSION_ID="), "{os_release}");
}
