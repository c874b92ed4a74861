//! The pool step with fake disks, mounts and mkfs.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ramkey_config::{Filesystem, Pool};

use super::create::{CreateError, Mkfs};
use super::mirror::{self, Scrub};
use super::probe::tests::{btrfs_member, ext4_head};
use super::signatures::Found;
use super::*;
use crate::base::clock::Clock;
use crate::storage::blockdev::fake_device;
use crate::storage::mounts::fake::RecordingMounter;

/// A clock that advances 10 ms at each reading and by the whole timeout at each
/// [`FakeDevices::wait`], as the real uevent wait does when no event comes.
struct TestClock(Cell<Duration>);

impl TestClock {
    fn new() -> Self {
        TestClock(Cell::new(Duration::from_secs(5)))
    }
    fn advance(&self, by: Duration) {
        self.0.set(self.0.get() + by);
    }
}

impl Clock for TestClock {
    fn since_boot(&self) -> Duration {
        let now = self.0.get();
        self.advance(Duration::from_millis(10));
        now
    }
}

/// Counts the waits; `late` runs at the wait it names (a disk appearing then).
struct FakeDevices<'c> {
    clock: &'c TestClock,
    waits: usize,
    modules: Vec<String>,
    late: Option<(usize, Box<dyn FnMut()>)>,
}

impl<'c> FakeDevices<'c> {
    fn new(clock: &'c TestClock) -> Self {
        FakeDevices {
            clock,
            waits: 0,
            modules: vec![],
            late: None,
        }
    }
}

impl Devices for FakeDevices<'_> {
    fn wait(&mut self, timeout: Duration) {
        self.waits += 1;
        self.clock.advance(timeout);
        if let Some((at, appear)) = &mut self.late
            && *at == self.waits
        {
            appear();
        }
    }
    fn modprobe(&mut self, module: &str) {
        self.modules.push(module.to_owned());
    }
}

/// Records the scrubs started; fails with `fail` when set.
#[derive(Default)]
struct FakeScrub {
    started: Vec<PathBuf>,
    fail: bool,
}

impl Scrub for FakeScrub {
    fn start(&mut self, mount_point: &Path) -> Result<String, CreateError> {
        if self.fail {
            return Err(CreateError::Missing {
                tool: "btrfs",
                package: "btrfs-progs",
            });
        }
        self.started.push(mount_point.to_owned());
        Ok("scrub started".into())
    }
}

/// Writes an ext4 superblock labelled ramkey-pool on each device, like mke2fs.
struct FakeMkfs {
    dev: PathBuf,
    calls: Vec<String>,
}

impl Mkfs for FakeMkfs {
    fn signatures(&mut self, _: &Path) -> Result<Option<Found>, CreateError> {
        Ok(None)
    }

    fn mkfs(&mut self, fs: Filesystem, devices: &[PathBuf]) -> Result<(), CreateError> {
        for d in devices {
            let name = d.file_name().unwrap();
            std::fs::write(self.dev.join(name), ext4_head(LABEL, true)).unwrap();
            self.calls.push(format!("{fs:?} {}", d.display()));
        }
        Ok(())
    }
}

mod disk_cases;
mod mirror_cases;

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

fn pool(disks: &[&str], create: &[&str]) -> Pool {
    Pool {
        disks: disks.iter().map(|s| (*s).to_owned()).collect(),
        filesystem: Filesystem::Ext4,
        create: create.iter().map(|s| (*s).to_owned()).collect(),
        mirror: vec![],
        allow_degraded: false,
    }
}

fn run(root: &Path, config: Option<&Pool>) -> (PoolState, Vec<String>, Vec<String>) {
    let mut mkfs = FakeMkfs {
        dev: root.join("dev"),
        calls: vec![],
    };
    let (state, mounts) = run_with(root, config, &mut mkfs);
    (state, mounts, mkfs.calls)
}

fn run_with(root: &Path, config: Option<&Pool>, mkfs: &mut dyn Mkfs) -> (PoolState, Vec<String>) {
    let clock = TestClock::new();
    let mut mounter = RecordingMounter::creating_dirs();
    let mut fakes = Fakes {
        mounter: &mut mounter,
        mkfs,
        scrub: &mut FakeScrub::default(),
        devices: &mut FakeDevices::new(&clock),
    };
    let state = step(root, config, &clock, &mut fakes);
    (state, mounter.lines())
}

/// The step's effects.
struct Fakes<'f, 'c> {
    mounter: &'f mut RecordingMounter,
    mkfs: &'f mut dyn Mkfs,
    scrub: &'f mut FakeScrub,
    devices: &'f mut FakeDevices<'c>,
}

/// Runs the pool step with the given fakes.
fn step(root: &Path, config: Option<&Pool>, clock: &TestClock, fakes: &mut Fakes<'_, '_>) -> PoolState {
    let paths = Paths::new(root);
    let input = Input {
        config,
        usbkey_disk: Some("sda"),
        config_text: Some("version = 1\n"),
        now: Some(std::time::SystemTime::UNIX_EPOCH),
    };
    PoolStep {
        paths: &paths,
        clock,
        mounter: &mut *fakes.mounter,
        mkfs: &mut *fakes.mkfs,
        scrub: &mut *fakes.scrub,
        devices: &mut *fakes.devices,
    }
    .run(&input)
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
fn a_blank_disk_is_created_only_when_create_names_it() {
    let dir = tempfile::tempdir().unwrap();
    disk(dir.path(), VIRTIO_B, "vdb", "ramkey-pool", &[]);
    let config = pool(&["virtio-ramkey-pool"], &["virtio-ramkey-pool"]);
    let (state, mounts, mkfs) = run(dir.path(), Some(&config));
    assert_eq!(mkfs, ["Ext4 /dev/vdb"]);
    assert_eq!(mounts[0], "vdb pool ext4");
    assert!(matches!(state, PoolState::Mounted(Mounted { created: true, .. })));
    // Not without create naming it.
    let dir = tempfile::tempdir().unwrap();
    disk(dir.path(), VIRTIO_B, "vdb", "ramkey-pool", &[]);
    let (state, mounts, mkfs) = run(dir.path(), Some(&pool(&["virtio-ramkey-pool"], &[])));
    assert!(mkfs.is_empty() && mounts.is_empty());
    assert!(
        state.to_string().contains(
            "/dev/vdb (virtio-ramkey-pool) is blank but [pool] create does not name it: write create = \
             \"virtio-ramkey-pool\" in [pool] to make it the pool"
        ),
        "{state}"
    );
}

#[test]
fn a_mirror_is_created_only_when_create_names_every_disk() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    disk(r, VIRTIO_B, "vdb", "a", &[]);
    disk(r, VIRTIO_C, "vdc", "b", &[]);
    let mut config = pool(&["virtio-a"], &["virtio-a"]);
    config.filesystem = Filesystem::Btrfs;
    config.mirror = vec!["virtio-b".into()];
    let (state, _, mkfs) = run(r, Some(&config));
    assert!(mkfs.is_empty(), "{mkfs:?}");
    assert!(
        state.to_string().contains("[pool] create does not name virtio-b"),
        "{state}"
    );
    config.create.push("virtio-b".into());
    let (_, _, mkfs) = run(r, Some(&config));
    assert_eq!(mkfs, ["Btrfs /dev/vdb", "Btrfs /dev/vdc"]);
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
        let (state, mounts, mkfs) = run(
            dir.path(),
            Some(&pool(&["virtio-ramkey-pool"], &["virtio-ramkey-pool"])),
        );
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
    let (state, _, _) = run(dir.path(), Some(&pool(&["virtio-gone"], &["virtio-gone"])));
    assert!(
        state
            .to_string()
            .contains("none of the [pool] disks (virtio-gone) is attached"),
        "{state}"
    );
}
