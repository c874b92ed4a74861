//! The usbkey: wait for the FAT filesystem with the right label, then mount it read-only.
//!
//! Whatever the bus (USB, SATA, NVMe, virtio), the key is found by its label, never by a
//! device name. Partitions win over whole disks: a disk shows up before the kernel has
//! scanned its partitions, so a whole-disk match is only taken after a grace period.

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

/// How long a whole-disk match waits for a matching partition to show up.
pub const DISK_GRACE: Duration = Duration::from_millis(750);

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

/// Probes every block device once: each filesystem labelled `wanted`, partitions first; a
/// whole disk only when none of its partitions carries the label (a superfloppy).
pub fn find(sys_root: &Path, dev_root: &Path, wanted: &str) -> Vec<(BlockDevice, String)> {
    let mut found: Vec<(BlockDevice, String)> = blockdev::scan(sys_root)
        .into_iter()
        .filter_map(|device| {
            let label = blkid::probe_device(&device.node(dev_root))?.label?;
            blkid::label_matches(&label, wanted).then_some((device, label))
        })
        .collect();
    found.sort_by_key(|(device, _)| !device.partition);
    let partitioned: Vec<String> = found
        .iter()
        .filter(|(d, _)| d.partition)
        .map(|(d, _)| d.disk.clone())
        .collect();
    found.retain(|(d, _)| d.partition || !partitioned.contains(&d.name));
    found
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
    let start = clock.since_boot();
    // The nodes as the box names them, whatever `dev_root` the probing reads.
    let box_dev = Paths::system().dev();
    let mut disk_seen: Option<(String, Duration)> = None;
    loop {
        let mut found = find(sys_root, dev_root, wanted);
        let elapsed = clock.since_boot().saturating_sub(start);
        if found.len() > 1 {
            return Err(UsbkeyError::Ambiguous {
                label: wanted.to_owned(),
                found: found
                    .iter()
                    .map(|(d, _)| format!("{} ({})", d.node(&box_dev).display(), d.description()))
                    .collect(),
            });
        }
        if let Some((device, label)) = found.pop() {
            let take = device.partition || {
                let since = match &disk_seen {
                    Some((name, since)) if *name == device.name => *since,
                    _ => elapsed,
                };
                disk_seen = Some((device.name.clone(), since));
                elapsed.saturating_sub(since) >= DISK_GRACE || elapsed >= wait
            };
            if take {
                let node = device.node(&box_dev);
                return Ok(FoundKey {
                    device,
                    label,
                    node,
                    waited: elapsed,
                });
            }
        } else if elapsed >= wait {
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
    use crate::storage::blockdev::fake_device;

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
    fn whole_disk_superfloppy_is_taken_after_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fake_device(&r.join("sys"), USB, "sdb", None, ("Kingston", "DataTraveler"));
        node(r, "sdb", Some("RAMKEY"));
        let (key, waits) = wait_with_no_new_devices(r, Duration::from_secs(15));
        let key = key.unwrap();
        assert_eq!(key.device.name, "sdb");
        assert!(!key.device.partition);
        assert!(!waits.is_empty());
        assert!(key.waited >= DISK_GRACE, "{:?}", key.waited);
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
