//! The pool step with fake disks, mounts and mkfs.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::MsFlags;
use ramkey_config::{Filesystem, Pool};

use super::create::{CreateError, Mkfs};
use super::mirror::{self, Scrub};
use super::probe::tests::{btrfs_member, ext4_head};
use super::signatures::Found;
use super::*;
use crate::blockdev::fake_device;
use crate::clock::Clock;
use crate::mounts::MountStep;

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

/// Records each mount as `DEVICE TARGET FSTYPE DATA`, `[ro]` added for a read-only one;
/// with `fail_ro`, a read-only mount fails (EINVAL).
#[derive(Default)]
struct RecordingMounter {
    mounts: Vec<String>,
    fail_ro: bool,
}

impl Mounter for RecordingMounter {
    fn mkdir_all(&mut self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn mount(&mut self, step: &MountStep, _: &Path) -> Result<(), Errno> {
        self.mounts.push(step.target.to_owned());
        Ok(())
    }
    fn mount_device(
        &mut self,
        device: &Path,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: &str,
    ) -> Result<(), Errno> {
        let ro = flags.contains(MsFlags::MS_RDONLY);
        if ro && self.fail_ro {
            return Err(Errno::EINVAL);
        }
        let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
        let mut line = format!("{} {} {fstype} {data}", name(device), name(target))
            .trim()
            .to_owned();
        if ro {
            line.push_str(" [ro]");
        }
        self.mounts.push(line);
        Ok(())
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
    let mut mounter = RecordingMounter::default();
    let mut fakes = Fakes {
        mounter: &mut mounter,
        mkfs,
        scrub: &mut FakeScrub::default(),
        devices: &mut FakeDevices::new(&clock),
    };
    let state = step(root, config, &clock, &mut fakes);
    (state, mounter.mounts)
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

/// The device `devid` of the btrfs filesystem `fsid` labelled [`LABEL`] of `devices` devices.
fn member(fsid: u8, devices: u64, devid: u64) -> Vec<u8> {
    btrfs_member(LABEL, fsid, devices, devid)
}

/// `[pool]` naming a btrfs mirror of `virtio-a` and `virtio-b`.
fn mirror_config() -> Pool {
    let mut config = pool(&["virtio-a"], &[]);
    config.filesystem = Filesystem::Btrfs;
    config.mirror = vec!["virtio-b".into()];
    config
}

/// What [`run_mirror`] saw.
struct MirrorRun {
    state: PoolState,
    mounts: Vec<String>,
    /// How long the step took on its clock.
    took: Duration,
    /// The scrubs started.
    scrubs: Vec<PathBuf>,
}

/// Runs the step on the disks under `root`: a read-only mount fails with `fail_ro`, a scrub
/// fails with `fail_scrub`.
fn run_mirror(root: &Path, config: Option<&Pool>, fail_ro: bool, fail_scrub: bool) -> MirrorRun {
    let clock = TestClock::new();
    let start = clock.since_boot();
    let mut mounter = RecordingMounter {
        fail_ro,
        ..RecordingMounter::default()
    };
    let mut scrub = FakeScrub {
        fail: fail_scrub,
        ..FakeScrub::default()
    };
    let mut fakes = Fakes {
        mounter: &mut mounter,
        mkfs: &mut FakeMkfs {
            dev: root.join("dev"),
            calls: vec![],
        },
        scrub: &mut scrub,
        devices: &mut FakeDevices::new(&clock),
    };
    let state = step(root, config, &clock, &mut fakes);
    MirrorRun {
        state,
        mounts: mounter.mounts,
        took: clock.since_boot() - start,
        scrubs: scrub.started,
    }
}

#[test]
fn a_mirror_disk_that_comes_late_is_waited_for() {
    // Found by label: the second disk appears at the 8th wait (2 s).
    // Named in [pool]: at the 30th (7.5 s), past the 5 s a named disk alone is waited for.
    for (config, at) in [(None, 8), (Some(mirror_config()), 30)] {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path().to_owned();
        disk(&r, VIRTIO_B, "vdb", "a", &member(9, 2, 1));
        let clock = TestClock::new();
        let mut devices = FakeDevices::new(&clock);
        let root = r.clone();
        devices.late = Some((
            at,
            Box::new(move || disk(&root, VIRTIO_C, "vdc", "b", &member(9, 2, 2))),
        ));
        let mut mounter = RecordingMounter::default();
        let mut fakes = Fakes {
            mounter: &mut mounter,
            mkfs: &mut FakeMkfs {
                dev: r.join("dev"),
                calls: vec![],
            },
            scrub: &mut FakeScrub::default(),
            devices: &mut devices,
        };
        let state = step(&r, config.as_ref(), &clock, &mut fakes);
        assert_eq!(
            mounter.mounts[0], "vdb pool btrfs device=/dev/vdb,device=/dev/vdc",
            "{config:?}"
        );
        assert!(
            matches!(state, PoolState::Mounted(Mounted { degraded: false, .. })),
            "{state}"
        );
        assert_eq!(devices.waits, at, "no wait once every disk is there");
    }
}

#[test]
fn a_mirror_missing_a_disk_is_mounted_read_only_without_allow_degraded() {
    for config in [None, Some(mirror_config())] {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        disk(r, VIRTIO_B, "vdb", "a", &member(9, 2, 1));
        let MirrorRun {
            state, mounts, took, ..
        } = run_mirror(r, config.as_ref(), false, false);
        assert!(took >= Duration::from_secs(15), "waited only {took:?}");
        assert_eq!(
            mounts,
            ["vdb pool btrfs device=/dev/vdb,degraded [ro]"],
            "read-only, and no /var or /opt from it"
        );
        assert!(!r.join("pool/config-history").exists(), "nothing written to it");
        assert!(!r.join("pool").join(mirror::RECORD).exists());
        let text = state.to_string();
        assert!(
            text.starts_with("btrfs on /dev/vdb (virtio-a)")
                && text.contains(", READ-ONLY, DEGRADED: 1 of 2 disks")
                && text.contains("set [pool] allow_degraded = true"),
            "{text}"
        );
    }
}

#[test]
fn a_mirror_missing_a_disk_is_diskless_when_the_read_only_mount_fails() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    disk(r, VIRTIO_B, "vdb", "a", &member(9, 2, 1));
    let MirrorRun { state, mounts, .. } = run_mirror(r, None, true, false);
    assert!(mounts.is_empty(), "{mounts:?}");
    let PoolState::Diskless {
        problem: Some(problem), ..
    } = &state
    else {
        panic!("{state}")
    };
    assert!(
        problem.starts_with("the btrfs mirror has 1 of its 2 disks and mounting it read-only failed: ")
            && problem.contains("(btrfs, device=/dev/vdb,degraded, read-only)"),
        "{problem}"
    );
}

#[test]
fn a_mirror_missing_a_disk_runs_degraded_read_write_with_allow_degraded() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    disk(r, VIRTIO_B, "vdb", "a", &member(9, 2, 1));
    let mut config = mirror_config();
    config.allow_degraded = true;
    let run = run_mirror(r, Some(&config), false, false);
    assert!(run.took >= Duration::from_secs(15), "waited only {:?}", run.took);
    assert_eq!(
        run.mounts,
        [
            "vdb pool btrfs device=/dev/vdb,degraded",
            "var var none",
            "opt opt none"
        ]
    );
    assert!(
        matches!(
            run.state,
            PoolState::Mounted(Mounted {
                degraded: true,
                devices: 2,
                ..
            })
        ),
        "{}",
        run.state
    );
    assert!(
        run.state.to_string().contains(", DEGRADED: 1 of 2 disks, read-write"),
        "{}",
        run.state
    );
    let record = std::fs::read_to_string(r.join("pool").join(mirror::RECORD)).unwrap();
    assert!(
        record.contains("since = 1970-01-01T00-00-00Z\n")
            && record.contains("missing: virtio-b (named in [pool] mirror))"),
        "{record}"
    );
    assert!(run.scrubs.is_empty());
}

#[test]
fn the_first_boot_with_every_disk_after_a_degraded_one_starts_a_scrub() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let record = r.join("pool").join(mirror::RECORD);
    disk(r, VIRTIO_B, "vdb", "a", &member(9, 2, 1));
    let mut config = mirror_config();
    config.allow_degraded = true;
    run_mirror(r, Some(&config), false, false);
    let first = std::fs::read_to_string(&record).unwrap();
    // Degraded again: the record keeps the first boot, nothing is scrubbed.
    let run = run_mirror(r, Some(&config), false, false);
    assert!(run.scrubs.is_empty());
    assert_eq!(std::fs::read_to_string(&record).unwrap(), first);
    // The disk is back, without allow_degraded: the scrub cannot start, the record stays.
    disk(r, VIRTIO_C, "vdc", "b", &member(9, 2, 2));
    let run = run_mirror(r, Some(&mirror_config()), false, true);
    assert_eq!(run.mounts[0], "vdb pool btrfs device=/dev/vdb,device=/dev/vdc");
    assert!(run.took < Duration::from_secs(1), "no wait: {:?}", run.took);
    assert!(record.exists(), "kept for the next boot");
    // It starts: on the pool, and the record is gone.
    let run = run_mirror(r, Some(&mirror_config()), false, false);
    assert_eq!(run.scrubs, [r.join("pool")]);
    assert!(!record.exists());
    assert!(matches!(run.state, PoolState::Mounted(Mounted { degraded: false, .. })));
    // Once.
    assert!(run_mirror(r, None, false, false).scrubs.is_empty());
}

#[test]
fn the_usbkey_disk_is_never_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let usb = "pci0000:00/0000:00:02.0/usb2/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0";
    disk(dir.path(), usb, "sda", "key", &ext4_head(LABEL, true));
    let (state, _, _) = run(dir.path(), None);
    assert!(matches!(state, PoolState::Diskless { .. }));
}

#[test]
fn an_id_matching_two_disks_touches_neither() {
    let dir = tempfile::tempdir().unwrap();
    disk(dir.path(), VIRTIO_B, "vdb", "twin", &[]);
    disk(dir.path(), VIRTIO_C, "vdc", "twin", &[]);
    let (state, mounts, mkfs) = run(dir.path(), Some(&pool(&["virtio-twin"], &["virtio-twin"])));
    assert!(mkfs.is_empty() && mounts.is_empty(), "{mkfs:?}");
    let text = state.to_string();
    assert!(
        text.contains("[pool] id virtio-twin matches 2 disks: /dev/vdb (virtio-twin), /dev/vdc (virtio-twin)"),
        "{text}"
    );
}

#[test]
fn one_disk_named_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    disk(dir.path(), VIRTIO_B, "vdb", "a", &[]);
    let mut config = pool(&["virtio-a"], &["virtio-a", "a"]);
    config.filesystem = Filesystem::Btrfs;
    config.mirror = vec!["a".into()];
    let (state, mounts, mkfs) = run(dir.path(), Some(&config));
    assert!(mkfs.is_empty() && mounts.is_empty(), "{mkfs:?}");
    let text = state.to_string();
    assert!(text.contains("virtio-a and a name the same disk /dev/vdb"), "{text}");
}

/// Fake platform tools under `root/sbin`: `mke2fs` leaves a mark, `blkid` and `wipefs` say
/// what they are given (absent when `None`).
fn fake_tools(root: &Path, blkid: Option<(&str, i32)>, wipefs: Option<(&str, i32)>) {
    use std::os::unix::fs::PermissionsExt;
    let sbin = root.join("sbin");
    std::fs::create_dir_all(&sbin).unwrap();
    let mark = root.join("mke2fs-ran");
    let mut scripts = vec![("mke2fs".to_owned(), format!("touch '{}'", mark.display()))];
    for (name, tool) in [("blkid", blkid), ("wipefs", wipefs)] {
        if let Some((out, code)) = tool {
            scripts.push((name.to_owned(), format!("printf '%s' '{out}'; exit {code}")));
        }
    }
    for (name, body) in &scripts {
        let path = sbin.join(name);
        let text = format!("#!/bin/sh\n[ \"$1\" = --ready ] && exit 0\n{body}\n");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Wait out ETXTBSY: a child forked by another test may still hold the file open.
        while let Err(e) = std::process::Command::new(&path).arg("--ready").status() {
            assert_eq!(e.raw_os_error(), Some(nix::libc::ETXTBSY), "{e}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Runs the step with the real tools found under `root` on a blank `vdb`.
fn run_tools(blkid: Option<(&str, i32)>, wipefs: Option<(&str, i32)>) -> (PoolState, bool) {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    disk(r, VIRTIO_B, "vdb", "x", &[]);
    fake_tools(r, blkid, wipefs);
    let mut tools = create::Tools { root: r.to_owned() };
    let (state, _) = run_with(r, Some(&pool(&["virtio-x"], &["virtio-x"])), &mut tools);
    (state, r.join("mke2fs-ran").exists())
}

#[test]
fn the_platforms_probes_are_asked_before_mkfs() {
    let (state, ran) = run_tools(Some(("DEVNAME=/dev/vdb\nPTUUID=1\nPTTYPE=gpt\n", 0)), Some(("", 0)));
    assert!(!ran, "mke2fs ran: {state}");
    assert!(
        state
            .to_string()
            .contains("a \"gpt\" partition table, as blkid -p says"),
        "{state}"
    );
    let wipefs = "DEVICE OFFSET TYPE UUID LABEL\n/dev/vdb 0x1fe PMBR\n";
    let (state, ran) = run_tools(Some(("", 2)), Some((wipefs, 0)));
    assert!(!ran, "mke2fs ran: {state}");
    assert!(
        state
            .to_string()
            .contains("a \"PMBR\" signature, as wipefs says (found at offset 510)"),
        "{state}"
    );
    let (state, ran) = run_tools(Some(("", 8)), None);
    assert!(!ran, "mke2fs ran: {state}");
    assert!(state.to_string().contains("ambivalent"), "{state}");
    let (state, ran) = run_tools(Some(("", 4)), None);
    assert!(!ran, "mke2fs ran: {state}");
    assert!(
        state.to_string().contains("blkid -p -o export /dev/vdb failed"),
        "{state}"
    );
    // Nothing found, or no tools at all: the Rust probes alone decide.
    let (state, ran) = run_tools(Some(("", 2)), Some(("", 0)));
    assert!(ran, "{state}");
    let (state, ran) = run_tools(None, None);
    assert!(ran, "{state}");
}
