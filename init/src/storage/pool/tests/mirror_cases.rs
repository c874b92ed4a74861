//! The pool step with a btrfs mirror: members waited for, a missing one mounted read-only
//! or (with `allow_degraded`) degraded read-write, the scrub after a degraded boot.

use super::*;

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
        ..RecordingMounter::creating_dirs()
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
        mounts: mounter.lines(),
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
        let mut mounter = RecordingMounter::creating_dirs();
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
            mounter.lines()[0],
            "vdb pool btrfs device=/dev/vdb,device=/dev/vdc",
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
