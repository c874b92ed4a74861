//! The usbkey: wait for the FAT filesystem with the right label, then mount it read-only.
//!
//! Whatever the bus (USB, SATA, NVMe, virtio), the key is found by its label, never by a
//! device name. Partitions win over whole disks.
//!
//! A whole disk shows up in sysfs before its partitions: `device_add_disk` (Linux 6.1,
//! `block/genhd.c`) adds the disk's device (its `/sys/block` entry and `/dev` node) first,
//! then `bdev_add` and `disk_scan_partitions`, and only then sends the disk's `add` uevent,
//! with its partitions'. So a listing of sysfs may hold a disk without the partitions it is
//! about to have. But the scan is done by an open of the disk: `disk_scan_partitions` sets
//! `GD_NEED_PART_SCAN` (set before `bdev_add` since 6.1.20, "block: fix scan partition for
//! exclusively open device again", in Debian's 6.1 changelog) and opens it, and every open
//! (`blkdev_get_whole`, under the disk's `open_mutex`) first scans the partitions when that
//! bit is set (also after a media change, `disk_check_media_change`). Probing the whole disk
//! opens it: once that open returned, sysfs lists every partition the disk has. A whole-disk
//! match is taken at once when no partition of its disk appeared during the probe; when one
//! did, the devices are listed and probed again at once. (Until 2025-12 a whole-disk match
//! waited a fixed 750 ms in case partitions were still to come.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::base::clock::Clock;
use crate::base::paths::{Paths, USBKEY};
use crate::devices::hotplug::DeviceEvents;
use crate::devices::modprobe::{Modprobe, ModuleLoader};
use crate::storage::blkid;
use crate::storage::blockdev::{self, BlockDevice};
use crate::storage::mounts::Mounter;

/// Where the usbkey is mounted on the box, as messages name it (`Paths::usbkey` under a
/// root).
pub const MOUNT_POINT: &str = USBKEY;

/// The modules a FAT mount needs: without `nls_ascii` the mount fails with EINVAL
/// ("IO charset ascii not found"), and the kernel cannot load it by itself.
pub const FS_MODULES: &[&str] = &["vfat", "nls_cp437", "nls_ascii"];

/// Read-only, and nothing on the stick can be a device, setuid or executable.
pub const MOUNT_FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// vfat options: UTF-8 long names (case-insensitive ASCII through the default iocharset).
pub const MOUNT_OPTIONS: &str = "utf8=1,fmask=0133,dmask=0022";

/// How often the block devices are probed again while waiting.
pub const RESCAN: Duration = Duration::from_millis(250);

/// Looks again at once, without waiting, when partitions appeared while a whole disk was
/// probed; after that many, a look that is still not settled waits [`RESCAN`] like any other.
const QUICK_LOOKS: usize = 3;

/// Finding or mounting the usbkey failed.
#[derive(Debug, thiserror::Error)]
pub enum UsbkeyError {
    /// No filesystem with the label appeared in time (and there is no config URL).
    #[error(
        "no usbkey: no partition labelled {label} appeared within {} s and there is no \
         ramkey.config= URL on the kernel command line; plug in the Ramkey stick, or boot \
         over PXE with ramkey.config=http://...",
        secs(*.wait)
    )]
    NotFound {
        /// The label looked for.
        label: String,
        /// How long the boot waited.
        wait: Duration,
    },
    /// More than one filesystem carries the label: which one holds the box's config and
    /// platform is a guess, and the stick is the root of trust.
    #[error(
        "usbkey: {} filesystems are labelled {label}: {}; the stick is the root of the box's \
         config and trust, so none is taken: unplug every one but the Ramkey stick (or give \
         the others another label) and boot again",
        found.len(),
        found.join(" and ")
    )]
    Ambiguous {
        /// The label looked for.
        label: String,
        /// Each one: `/dev/sda1 (usb: SanDisk Cruzer)`.
        found: Vec<String>,
    },
    /// The mount point could not be created.
    #[error("usbkey: cannot create {path}: {source}")]
    Mkdir {
        /// The mount point.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `mount(2)` failed.
    #[error("usbkey: cannot mount {label} ({}) on {target} (vfat, {MOUNT_OPTIONS}): {source}{}", node.display(), hint(*source))]
    Mount {
        /// The label found.
        label: String,
        /// The device node.
        node: PathBuf,
        /// The mount point, as on the box.
        target: String,
        /// The errno.
        source: Errno,
    },
}

fn hint(errno: Errno) -> &'static str {
    match errno {
        Errno::EINVAL => "; the kernel log (dmesg) says why (a missing vfat or nls module?)",
        Errno::ENODEV => "; the vfat module is not loaded",
        _ => "",
    }
}

/// Seconds as `15` or `2.5`.
pub fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{:.1}", d.as_secs_f64())
    }
}

/// The device holding the usbkey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundKey {
    /// The block device.
    pub device: BlockDevice,
    /// Its label as written on the filesystem.
    pub label: String,
    /// Its device node (`/dev/sda1` on the box).
    pub node: PathBuf,
    /// How long the wait took.
    pub waited: Duration,
}

/// What one look at the block devices found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Look {
    /// Each filesystem labelled as wanted: partitions first; a whole disk only when none of
    /// its partitions carries the label (a superfloppy).
    pub found: Vec<(BlockDevice, String)>,
    /// False when a disk matched as a whole got partitions the listing did not have while it
    /// was probed (the probe's open made the kernel scan them): look again before taking it.
    pub settled: bool,
}

/// Lists the block devices with `list`, probes each once (partitions before the disks they
/// are on), and, when a whole disk matched, lists them again to see whether the probe's open
/// of that disk brought partitions (see the module's notes).
pub fn look(dev_root: &Path, wanted: &str, list: &mut dyn FnMut() -> Vec<BlockDevice>) -> Look {
    let listed = list();
    let mut found: Vec<(BlockDevice, String)> = listed
        .iter()
        .filter_map(|device| {
            let label = blkid::probe_device(&device.node(dev_root))?.label?;
            blkid::label_matches(&label, wanted).then(|| (device.clone(), label))
        })
        .collect();
    found.sort_by_key(|(device, _)| !device.partition);
    let partitioned: Vec<String> = found
        .iter()
        .filter(|(d, _)| d.partition)
        .map(|(d, _)| d.disk.clone())
        .collect();
    found.retain(|(d, _)| d.partition || !partitioned.contains(&d.name));
    let wholes: Vec<&str> = found
        .iter()
        .filter(|(d, _)| !d.partition)
        .map(|(d, _)| d.name.as_str())
        .collect();
    let settled = wholes.is_empty() || {
        let now = list();
        !now.iter()
            .any(|p| p.partition && wholes.contains(&p.disk.as_str()) && !listed.iter().any(|l| l.name == p.name))
    };
    Look { found, settled }
}

/// Waits up to `wait` for a filesystem labelled `wanted`, handling device events meanwhile.
pub fn wait_for_label(
    sys_root: &Path,
    dev_root: &Path,
    wanted: &str,
    wait: Duration,
    clock: &dyn Clock,
    events: &mut dyn DeviceEvents,
) -> Result<FoundKey, UsbkeyError> {
    let mut list = || blockdev::scan(sys_root);
    wait_listing(&mut list, dev_root, wanted, wait, clock, events)
}

/// [`wait_for_label`] with the block devices from `list`.
fn wait_listing(
    list: &mut dyn FnMut() -> Vec<BlockDevice>,
    dev_root: &Path,
    wanted: &str,
    wait: Duration,
    clock: &dyn Clock,
    events: &mut dyn DeviceEvents,
) -> Result<FoundKey, UsbkeyError> {
    let start = clock.since_boot();
    // The nodes as the box names them, whatever `dev_root` the probing reads.
    let box_dev = Paths::system().dev();
    let mut quick = 0;
    loop {
        let Look { mut found, settled } = look(dev_root, wanted, list);
        let elapsed = clock.since_boot().saturating_sub(start);
        if !settled && quick < QUICK_LOOKS {
            quick += 1;
            crate::debug!("usbkey: partitions appeared while a whole disk was probed; looking again");
            continue;
        }
        if found.len() > 1 {
            return Err(UsbkeyError::Ambiguous {
                label: wanted.to_owned(),
                found: found
                    .iter()
                    .map(|(d, _)| format!("{} ({})", d.node(&box_dev).display(), d.description()))
                    .collect(),
            });
        }
        if let Some((device, label)) = found.pop()
            && (settled || elapsed >= wait)
        {
            let node = device.node(&box_dev);
            return Ok(FoundKey {
                device,
                label,
                node,
                waited: elapsed,
            });
        }
        if elapsed >= wait {
            return Err(UsbkeyError::NotFound {
                label: wanted.to_owned(),
                wait,
            });
        }
        events.wait(RESCAN.min(wait.saturating_sub(elapsed)).max(Duration::from_millis(10)));
    }
}

/// Loads the FAT modules (failures are warnings: they may be built in) and mounts the key
/// read-only at [`Paths::usbkey`].
pub fn mount(
    key: &FoundKey,
    paths: &Paths,
    mounter: &mut dyn Mounter,
    modprobe: Option<&mut Modprobe>,
    loader: &mut dyn ModuleLoader,
) -> Result<PathBuf, UsbkeyError> {
    if let Some(modprobe) = modprobe {
        for module in FS_MODULES {
            if let Err(e) = modprobe.modprobe(module, loader) {
                crate::warn!("usbkey: {e}; trying the mount anyway");
            }
        }
    }
    let target = paths.usbkey();
    mounter.mkdir_all(&target).map_err(|source| UsbkeyError::Mkdir {
        path: target.clone(),
        source,
    })?;
    let node = key.device.node(&paths.dev());
    mounter
        .mount_device(&node, &target, "vfat", MOUNT_FLAGS, MOUNT_OPTIONS)
        .map_err(|source| UsbkeyError::Mount {
            label: key.label.clone(),
            node: key.node.clone(),
            target: MOUNT_POINT.to_owned(),
            source,
        })?;
    Ok(target)
}

/// The console line for a mounted key.
pub fn mounted_line(key: &FoundKey) -> String {
    format!(
        "usbkey: {} on {} ({}) mounted read-only at {MOUNT_POINT}",
        key.label,
        key.node.display(),
        key.device.description()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::FakeClock;
    use crate::devices::hotplug::FakeEvents;
    use crate::storage::blkid::{FatKind, fixture_sector};
    use crate::storage::blockdev::{self, fake_device};

    const USB: &str = "pci0000:00/0000:00:02.0/usb2/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0";

    fn node(root: &Path, name: &str, label: Option<&str>) {
        std::fs::create_dir_all(root.join("dev")).unwrap();
        let bytes = match label {
            Some(l) => fixture_sector(FatKind::Fat32, l),
            None => vec![0u8; 512],
        };
        std::fs::write(root.join("dev").join(name), bytes).unwrap();
    }

    /// [`wait_for_label`] for `RAMKEY` under `r`, no device coming or going meanwhile; the
    /// waits it asked for.
    fn wait_with_no_new_devices(r: &Path, wait: Duration) -> (Result<FoundKey, UsbkeyError>, Vec<Duration>) {
        let mut events = FakeEvents {
            on_wait: |_| {},
            waits: vec![],
        };
        let found = wait_for_label(&r.join("sys"), &r.join("dev"), "RAMKEY", wait, &clock(), &mut events);
        (found, events.waits)
    }

    fn clock() -> FakeClock {
        FakeClock::new(Duration::from_secs(3), Duration::from_millis(50))
    }

    #[test]
    fn found_at_once_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fake_device(&r.join("sys"), USB, "sda", Some("sda1"), ("QEMU", "QEMU HARDDISK"));
        node(r, "sda", None);
        node(r, "sda1", Some("ramkey"));
        let (key, waits) = wait_with_no_new_devices(r, Duration::from_secs(15));
        let key = key.unwrap();
        assert!(waits.is_empty());
        assert_eq!(key.node, PathBuf::from("/dev/sda1"));
        assert_eq!(
            mounted_line(&key),
            "usbkey: ramkey on /dev/sda1 (usb: QEMU QEMU HARDDISK) mounted read-only at /usbkey"
        );
    }

    #[test]
    fn late_stick_is_found_after_events() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path().to_owned();
        std::fs::create_dir_all(r.join("sys/class/block")).unwrap();
        let sys = r.join("sys");
        let rr = r.clone();
        let mut events = FakeEvents {
            on_wait: move |n| {
                // The disk comes on the 3rd wait, its partition on the 5th.
                if n == 2 {
                    fake_device(&rr.join("sys"), USB, "sda", None, ("SanDisk", "Cruzer"));
                    node(&rr, "sda", None);
                }
                if n == 4 {
                    fake_device(&rr.join("sys"), USB, "sda", Some("sda1"), ("SanDisk", "Cruzer"));
                    node(&rr, "sda1", Some("RAMKEY"));
                }
            },
            waits: vec![],
        };
        let key = wait_for_label(
            &sys,
            &r.join("dev"),
            "RAMKEY",
            Duration::from_secs(15),
            &clock(),
            &mut events,
        )
        .unwrap();
        assert_eq!(events.waits.len(), 5);
        assert!(events.waits.iter().all(|w| *w == RESCAN));
        assert_eq!(key.device.name, "sda1");
        assert_eq!(key.waited, Duration::from_millis(300));
    }

    #[test]
    fn whole_disk_superfloppy_is_taken_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fake_device(&r.join("sys"), USB, "sdb", None, ("Kingston", "DataTraveler"));
        node(r, "sdb", Some("RAMKEY"));
        let (key, waits) = wait_with_no_new_devices(r, Duration::from_secs(15));
        let key = key.unwrap();
        assert_eq!(key.device.name, "sdb");
        assert!(!key.device.partition);
        assert!(waits.is_empty(), "{waits:?}");
        assert_eq!(key.waited, Duration::from_millis(50));
    }

    /// A lister that runs `kernel` with its call number before listing `r`'s fake sysfs (the
    /// kernel adding partitions while a whole disk is probed, say).
    fn listing(r: &Path, mut kernel: impl FnMut(usize, &Path)) -> impl FnMut() -> Vec<BlockDevice> {
        let (r, mut n) = (r.to_owned(), 0);
        move || {
            kernel(n, &r);
            n += 1;
            blockdev::scan(&r.join("sys"))
        }
    }

    fn wait_listed(
        r: &Path,
        list: &mut dyn FnMut() -> Vec<BlockDevice>,
    ) -> (Result<FoundKey, UsbkeyError>, Vec<Duration>) {
        let mut events = FakeEvents {
            on_wait: |_| {},
            waits: vec![],
        };
        let wait = Duration::from_secs(2);
        let found = wait_listing(list, &r.join("dev"), "RAMKEY", wait, &clock(), &mut events);
        (found, events.waits)
    }

    #[test]
    fn a_partition_the_disk_probe_brought_wins_without_a_wait() {
        // The disk and its first partition both hold a FAT labelled RAMKEY; the partition
        // appears (the kernel's scan) while the disk is probed, after the first listing.
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fake_device(&r.join("sys"), USB, "sda", None, ("SanDisk", "Cruzer"));
        node(r, "sda", Some("RAMKEY"));
        let mut list = listing(r, |n, r| {
            if n == 1 {
                fake_device(&r.join("sys"), USB, "sda", Some("sda1"), ("SanDisk", "Cruzer"));
                node(r, "sda1", Some("RAMKEY"));
            }
        });
        let (key, waits) = wait_listed(r, &mut list);
        assert_eq!(key.unwrap().device.name, "sda1");
        assert!(waits.is_empty(), "{waits:?}");
    }

    #[test]
    fn look_is_settled_unless_a_matched_disk_got_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fake_device(&r.join("sys"), USB, "sda", None, ("SanDisk", "Cruzer"));
        node(r, "sda", Some("RAMKEY"));
        let other = "pci0000:00/0000:00:04.0/virtio2";
        let mut list = listing(r, |n, r| {
            if n == 1 {
                fake_device(&r.join("sys"), other, "vda", Some("vda1"), ("", ""));
            }
            if n == 3 {
                fake_device(&r.join("sys"), USB, "sda", Some("sda1"), ("SanDisk", "Cruzer"));
            }
        });
        // A new disk elsewhere (vda) does not unsettle sda.
        let first = look(&r.join("dev"), "RAMKEY", &mut list);
        assert!(first.settled);
        assert_eq!(first.found[0].0.name, "sda");
        // sda1 (no filesystem) came while sda was probed: not settled, though sda is found.
        let second = look(&r.join("dev"), "RAMKEY", &mut list);
        assert!(!second.settled);
        assert_eq!(second.found.len(), 1);
        let third = look(&r.join("dev"), "RAMKEY", &mut list);
        assert!(third.settled);
    }

    #[test]
    fn partitions_that_keep_coming_fall_back_to_waiting_then_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fake_device(&r.join("sys"), USB, "sda", None, ("SanDisk", "Cruzer"));
        node(r, "sda", Some("RAMKEY"));
        let mut list = listing(r, |n, r| {
            let part = format!("sda{}", n + 1);
            fake_device(&r.join("sys"), USB, "sda", Some(&part), ("SanDisk", "Cruzer"));
        });
        let (key, waits) = wait_listed(r, &mut list);
        let key = key.unwrap();
        assert_eq!(key.device.name, "sda");
        assert!(key.waited >= Duration::from_secs(2), "{:?}", key.waited);
        assert!(!waits.is_empty() && waits.iter().all(|w| *w <= RESCAN));
    }

    #[test]
    fn two_sticks_with_the_label_are_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fake_device(&r.join("sys"), USB, "sda", Some("sda1"), ("SanDisk", "Cruzer"));
        node(r, "sda", None);
        node(r, "sda1", Some("RAMKEY"));
        let other = "pci0000:00/0000:00:02.0/usb2/2-2/2-2:1.0/host1/target1:0:0/1:0:0:0";
        fake_device(&r.join("sys"), other, "sdb", None, ("Kingston", "DataTraveler"));
        node(r, "sdb", Some("RAMKEY"));
        let (err, _) = wait_with_no_new_devices(r, Duration::from_secs(15));
        let err = err.unwrap_err().to_string();
        assert!(
            err.contains("2 filesystems are labelled RAMKEY: /dev/sda1 (usb: SanDisk Cruzer) and /dev/sdb (usb: Kingston DataTraveler)"),
            "{err}"
        );
        assert!(err.contains("unplug every one but the Ramkey stick"), "{err}");
    }

    #[test]
    fn nothing_found_is_the_recovery_cause() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fake_device(&r.join("sys"), "pci0000:00/0000:00:04.0/virtio2", "vda", None, ("", ""));
        node(r, "vda", Some("OTHER"));
        let (err, waits) = wait_with_no_new_devices(r, Duration::from_secs(1));
        let err = err.unwrap_err();
        assert_eq!(
            err.to_string(),
            "no usbkey: no partition labelled RAMKEY appeared within 1 s and there is no \
             ramkey.config= URL on the kernel command line; plug in the Ramkey stick, or boot \
             over PXE with ramkey.config=http://..."
        );
        // The fake clock moves 50 ms per probe: 20 probes fill the second, the last
        // waits shorter so as not to overshoot it.
        assert_eq!(waits.len(), 19, "{:?}", waits);
        assert!(waits.iter().all(|w| *w <= RESCAN));
        assert_eq!(waits.last(), Some(&Duration::from_millis(50)));
    }

    #[test]
    fn secs_format() {
        assert_eq!(secs(Duration::from_secs(15)), "15");
        assert_eq!(secs(Duration::from_millis(2500)), "2.5");
    }
}
