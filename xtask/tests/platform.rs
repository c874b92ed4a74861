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
    for compression in [Compression::Gzip, Compression::Zstd] {
        let a = artifacts::build_platform(&dir.path().join("a"), compression).unwrap();
        let b = artifacts::build_platform(&dir.path().join("b"), compression).unwrap();
        for file in ["initrd.img", "vmlinuz", "version", "SHA256SUMS"] {
            let (x, y) = (
                std::fs::read(a.join(file)).unwrap(),
                std::fs::read(b.join(file)).unwrap(),
            );
            assert!(x == y, "{file} differs between two builds ({compression:?})");
        }
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
