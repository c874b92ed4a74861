//! Platform build tests against Debian's real kernel package: reproducibility and the
//! records of the archive, read back without unpacking or mounting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ramkey_builder::appliance::Appliance;
use ramkey_builder::build;
use ramkey_builder::image_cmd::build::BuildOptions;
use ramkey_builder::{initramfs, packed};
use xtask::artifacts;

const S_IFMT: u32 = 0o170000;
const S_IFCHR: u32 = 0o020000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;

/// The repository's tracked files (`git ls-files`) copied to `dest`: a clean checkout of
/// the working tree, without `target/`.
fn checkout(dest: &Path) {
    let root = artifacts::workspace_root();
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(&root)
        .output()
        .expect("git");
    assert!(out.status.success());
    for file in out.stdout.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        let file = Path::new(std::str::from_utf8(file).unwrap());
        let (from, to) = (root.join(file), dest.join(file));
        if from.is_file() {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&from, &to).unwrap();
        }
    }
}

/// Every file under `dir`, by relative path, with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.insert(path.strip_prefix(dir).unwrap().to_path_buf(), bytes);
            }
        }
    }
    files
}

/// The default appliance built from two clean checkouts at different paths, each with its
/// own init compiled from scratch, with the shipped settings (gzip): every output byte is
/// the same.
#[test]
fn two_builds_from_two_checkouts_are_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let epoch = artifacts::source_date_epoch();
    let mut outputs = Vec::new();
    for name in ["checkout", "another-checkout-elsewhere"] {
        let tree_dir = dir.path().join(name);
        checkout(&tree_dir);
        let init = build::static_init_into(&tree_dir, &tree_dir.join("target")).unwrap();
        let appliance = Appliance::load(&tree_dir.join("appliance.toml")).unwrap();
        let out = dir.path().join(format!("{name}.out"));
        let opts = build::Options {
            out: out.clone(),
            init: Some(init),
            kernel_deb: None,
            epoch,
            platform_only: false,
            // The signed bundle too: ed25519 signatures are deterministic.
            key: Some(artifacts::test_key().unwrap().0),
        };
        build::build(&appliance, &tree_dir, &opts).unwrap();
        outputs.push(tree(&out));
    }
    let (a, b) = (&outputs[0], &outputs[1]);
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the two builds wrote different files"
    );
    for (file, bytes) in a {
        assert!(bytes == &b[file], "{} differs between the two builds", file.display());
    }
    assert!(a.contains_key(Path::new("usb.img")) && a.contains_key(Path::new("platform/initrd.img")));
    assert!(a.contains_key(Path::new("platform.rkup")));
    eprintln!("two checkouts, two inits: {} output files, identical", a.len());
}

/// A Debian-based personality (`web`, mmdebstrap) built twice without the cache: the same
/// image, byte for byte.
#[test]
fn a_personality_built_twice_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = artifacts::test_key().unwrap();
    let definition = artifacts::workspace_root().join("personalities/web");
    let mut images = Vec::new();
    for run in ["one", "two"] {
        let opts = BuildOptions {
            out: dir.path().join(run),
            key: key.clone(),
            cache: None,
            use_cache: false,
            epoch: None,
            progress: false,
            vm: false,
        };
        let report = ramkey_builder::image_cmd::build::build(&definition, &opts).unwrap();
        images.push(std::fs::read(report.image).unwrap());
    }
    assert!(images[0] == images[1], "web built twice differs");
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
        "::/loader/entries/ramkey-gen-1-a.conf",
        "::/loader/entries/ramkey-recovery.conf",
    ] {
        assert!(
            files.lines().any(|l| l.eq_ignore_ascii_case(want)),
            "{want} missing from the stick:\n{files}"
        );
    }
    // The recovery entries of both boot menus boot the same platform into recovery mode.
    let read = |file: &str| {
        let out = std::process::Command::new("mtype")
            .arg("-i")
            .arg(&part)
            .arg(file)
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let uefi = read("::/loader/entries/ramkey-recovery.conf");
    assert!(
        uefi.contains("linux /platform/a/vmlinuz") && uefi.contains("ramkey.recovery"),
        "{uefi}"
    );
    let bios = read("::/syslinux/syslinux.cfg");
    let entry = bios.split("LABEL recovery").nth(1).unwrap_or_default();
    assert!(
        entry.contains("LINUX /platform/a/vmlinuz") && entry.contains("ramkey.recovery"),
        "{bios}"
    );
}

#[test]
fn the_archive_holds_init_modules_and_device_nodes() {
    let platform = artifacts::platform().unwrap();
    let entries = initramfs::read(&std::fs::read(platform.join("initrd.img")).unwrap()).unwrap();
    let by_path: BTreeMap<&str, &initramfs::Entry> = entries.iter().map(|e| (e.path.as_str(), e)).collect();
    // The packed platform's segment names its folders again (the kernel keeps them); no file
    // is in the archive twice.
    let files: Vec<&str> = entries
        .iter()
        .filter(|e| e.mode & S_IFMT != S_IFDIR)
        .map(|e| e.path.as_str())
        .collect();
    let distinct: std::collections::BTreeSet<&str> = files.iter().copied().collect();
    assert_eq!(distinct.len(), files.len(), "a file twice in the archive");

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
    // Every module in modules.dep, and every dependency it names, is in the archive or in the
    // packed platform; those that mount the packed platform are in the archive itself.
    let packed = packed::list(&by_path[packed::IMAGE].data).unwrap();
    let packed: std::collections::BTreeSet<&str> = packed.iter().map(String::as_str).collect();
    let mut modules = 0;
    for line in dep.lines() {
        let (module, deps) = line.split_once(':').unwrap();
        for path in std::iter::once(module).chain(deps.split_whitespace()) {
            let at = format!("{base}/{path}");
            assert!(
                by_path.contains_key(at.as_str()) || packed.contains(at.as_str()),
                "{path} named in modules.dep is missing"
            );
        }
        modules += 1;
    }
    for module in [
        "kernel/drivers/block/loop.ko",
        "kernel/fs/squashfs/squashfs.ko",
        "kernel/fs/overlayfs/overlay.ko",
    ] {
        assert!(
            by_path.contains_key(format!("{base}/{module}").as_str()),
            "{module} is not unpacked"
        );
    }
    // What PID 1 runs is packed; PID 1 and the links to it are not.
    assert!(
        packed.contains("usr/sbin/sshd") && packed.contains("bin/busybox"),
        "{packed:?}"
    );
    assert!(by_path.contains_key("usr/bin/ramkeyctl") && !by_path.contains_key("usr/sbin/sshd"));
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
