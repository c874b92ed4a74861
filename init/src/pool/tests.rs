//! The pool step with fake disks, mounts and mkfs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::MsFlags;
use ramkey_config::{Filesystem, Pool};

use super::create::{CreateError, Mkfs};
use super::probe::tests::{btrfs_head, ext4_head};
use super::*;
use crate::blockdev::fake_device;
use crate::clock::FakeClock;
use crate::mounts::MountStep;

#[derive(Default)]
struct FakeDevices {
    waits: usize,
    modules: Vec<String>,
}

impl Devices for FakeDevices {
    fn wait(&mut self, _: Duration) {
        self.waits += 1;
    }
    fn modprobe(&mut self, module: &str) {
        self.modules.push(module.to_owned());
    }
}

#[derive(Default)]
struct RecordingMounter(Vec<String>);

impl Mounter for RecordingMounter {
    fn mkdir_all(&mut self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn mount(&mut self, step: &MountStep, _: &Path) -> Result<(), Errno> {
        self.0.push(step.target.to_owned());
        Ok(())
    }
    fn mount_device(
        &mut self,
        device: &Path,
        target: &Path,
        fstype: &str,
        _: MsFlags,
        data: &str,
    ) -> Result<(), Errno> {
        let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
        self.0.push(
            format!("{} {} {fstype} {data}", name(device), name(target))
                .trim()
                .to_owned(),
        );
        Ok(())
    }
}

/// Writes an ext4 superblock labelled ramkey-pool on each device, like mke2fs.
struct FakeMkfs {
    dev: PathBuf,
    calls: Vec<String>,
}

impl Mkfs for FakeMkfs {
    fn mkfs(&mut self, fs: Filesystem, devices: &[PathBuf]) -> Result<(), CreateError> {
        for d in devices {
            let name = d.file_name().unwrap();
            std::fs::write(self.dev.join(name), ext4_head(LABEL, true)).unwrap();
            self.calls.push(format!("{fs:?} {}", d.display()));
        }
        Ok(())
    }
}

const VIRTIO_B: &str = "pci0000:00/0000:00:05.0/virtio3";
const VIRTIO_C: &str = "pci0000:00/0000:00:06.0/virtio4";

/// A virtio disk `name` with serial `serial` holding `bytes` (2 MiB, zero-padded).
fn disk(root: &Path, parent: &str, name: &str, serial: &str, bytes: &[u8]) {
    let sys = root.join("sys");
    fake_device(&sys, parent, name, None, ("", ""));
    std::fs::write(sys.join("class/block").join(name).join("serial"), serial).unwrap();
    std::fs::create_dir_all(root.join("dev")).unwrap();
    let mut data = bytes.to_vec();
    data.resize(2 << 20, 0);
    std::fs::write(root.join("dev").join(name), data).unwrap();
}

fn pool(disks: &[&str], create: bool) -> Pool {
    Pool {
        disks: disks.iter().map(|s| (*s).to_owned()).collect(),
        filesystem: Filesystem::Ext4,
        create,
        mirror: vec![],
    }
}

fn run(root: &Path, config: Option<&Pool>) -> (PoolState, Vec<String>, Vec<String>) {
    let paths = Paths::new(root);
    let clock = FakeClock::new(Duration::from_secs(5), Duration::from_millis(10));
    let mut mounter = RecordingMounter::default();
    let mut mkfs = FakeMkfs {
        dev: root.join("dev"),
        calls: vec![],
    };
    let mut devices = FakeDevices::default();
    let input = Input {
        config,
        usbkey_disk: Some("sda"),
        config_text: Some("version = 1\n"),
        now: Some(std::time::SystemTime::UNIX_EPOCH),
    };
    let state = PoolStep {
        paths: &paths,
        clock: &clock,
        mounter: &mut mounter,
        mkfs: &mut mkfs,
        devices: &mut devices,
    }
    .run(&input);
    (state, mounter.0, mkfs.calls)
}

#[test]
fn labelled_disk_is_mounted_and_laid_out() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    disk(r, VIRTIO_B, "vdb", "ramkey-pool", &ext4_head(LABEL, true));
    let (state, mounts, mkfs) = run(r, None);
    assert!(mkfs.is_empty());
    assert_eq!(mounts, ["vdb pool ext4", "var var none", "opt opt none"]);
    let PoolState::Mounted(m) = &state else {
        panic!("{state}")
    };
    assert_eq!(
        (m.created, m.unclean, m.ids[0].as_str()),
        (false, false, "virtio-ramkey-pool")
    );
    for folder in layout::FOLDERS {
        assert!(r.join("pool").join(folder).is_dir(), "{folder}");
    }
    let history = r.join("pool/config-history/1970-01-01T00-00-00Z.toml");
    assert_eq!(std::fs::read_to_string(history).unwrap(), "version = 1\n");
}

#[test]
fn unclean_ext4_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    disk(dir.path(), VIRTIO_B, "vdb", "x", &ext4_head(LABEL, false));
    let (state, _, _) = run(dir.path(), None);
    assert!(matches!(state, PoolState::Mounted(Mounted { unclean: true, .. })));
    assert!(
        state.to_string().ends_with("recovered from an unclean shutdown"),
        "{state}"
    );
}

#[test]
fn blank_named_disk_is_created_with_create_true() {
    let dir = tempfile::tempdir().unwrap();
    disk(dir.path(), VIRTIO_B, "vdb", "ramkey-pool", &[]);
    let config = pool(&["virtio-ramkey-pool"], true);
    let (state, mounts, mkfs) = run(dir.path(), Some(&config));
    assert_eq!(mkfs, ["Ext4 /dev/vdb"]);
    assert_eq!(mounts[0], "vdb pool ext4");
    assert!(matches!(state, PoolState::Mounted(Mounted { created: true, .. })));
    // Not without create = true.
    let dir = tempfile::tempdir().unwrap();
    disk(dir.path(), VIRTIO_B, "vdb", "ramkey-pool", &[]);
    let (state, mounts, mkfs) = run(dir.path(), Some(&pool(&["virtio-ramkey-pool"], false)));
    assert!(mkfs.is_empty() && mounts.is_empty());
    assert!(
        state.to_string().contains("is blank and [pool] create is false"),
        "{state}"
    );
}

#[test]
fn disks_with_data_are_never_touched() {
    let mut mbr = vec![0u8; 512];
    mbr[0x1BE + 4] = 0x83;
    mbr[510..].copy_from_slice(&[0x55, 0xAA]);
    let mut junk = vec![0u8; 4096];
    junk[3000] = 7;
    let cases: [(&[u8], &str); 3] = [
        (
            &ext4_head("data", true),
            "an ext4 filesystem labelled \"data\" (found at offset 1024)",
        ),
        (&mbr, "an MBR partition table (found at offset 446)"),
        (&junk, "unknown data (found at offset 3000)"),
    ];
    for (bytes, what) in cases {
        let dir = tempfile::tempdir().unwrap();
        disk(dir.path(), VIRTIO_B, "vdb", "ramkey-pool", bytes);
        let before = std::fs::read(dir.path().join("dev/vdb")).unwrap();
        let (state, mounts, mkfs) = run(dir.path(), Some(&pool(&["virtio-ramkey-pool"], true)));
        assert!(mkfs.is_empty() && mounts.is_empty(), "{what}");
        assert_eq!(std::fs::read(dir.path().join("dev/vdb")).unwrap(), before);
        let PoolState::Diskless { refused, .. } = &state else {
            panic!("{state}")
        };
        assert_eq!(refused.len(), 1);
        assert!(state.to_string().contains(what), "{state}");
    }
}

#[test]
fn no_disk_is_diskless_and_a_missing_named_disk_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sys/class/block")).unwrap();
    let (state, mounts, _) = run(dir.path(), None);
    assert!(mounts.is_empty());
    assert_eq!(
        state,
        PoolState::Diskless {
            refused: vec![],
            problem: None
        }
    );
    assert_eq!(state.to_string(), "diskless: data is lost at power-off");
    let (state, _, _) = run(dir.path(), Some(&pool(&["virtio-gone"], true)));
    assert!(
        state
            .to_string()
            .contains("none of the [pool] disks (virtio-gone) is attached"),
        "{state}"
    );
}

#[test]
fn btrfs_mirror_with_a_missing_disk_mounts_degraded() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    disk(r, VIRTIO_B, "vdb", "a", &btrfs_head(LABEL, 9, 2));
    let (state, mounts, _) = run(r, None);
    assert_eq!(mounts[0], "vdb pool btrfs device=/dev/vdb,degraded");
    assert!(matches!(state, PoolState::Mounted(Mounted { degraded: true, .. })));
    disk(r, VIRTIO_C, "vdc", "b", &btrfs_head(LABEL, 9, 2));
    let mut config = pool(&["virtio-a"], false);
    config.filesystem = Filesystem::Btrfs;
    config.mirror = vec!["virtio-b".into()];
    let (state, mounts, _) = run(r, Some(&config));
    assert_eq!(mounts[0], "vdb pool btrfs device=/dev/vdb,device=/dev/vdc");
    assert!(matches!(state, PoolState::Mounted(Mounted { degraded: false, .. })));
}

#[test]
fn the_usbkey_disk_is_never_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let usb = "pci0000:00/0000:00:02.0/usb2/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0";
    disk(dir.path(), usb, "sda", "key", &ext4_head(LABEL, true));
    let (state, _, _) = run(dir.path(), None);
    assert!(matches!(state, PoolState::Diskless { .. }));
}
