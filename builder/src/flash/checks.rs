//! The refusals before anything is written to a block device: a partition instead of a
//! disk, the host's boot disk, a mounted, held or swapped-on disk, a disk smaller than the
//! image, a fixed disk without `--force`. Each says what, where and what to do.

use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::FlashError;
use super::sysfs::{DevNum, Disk, Sysfs};

/// Finds the disk of the block device `path` (device number `dev`, the `st_rdev` of the
/// opened device) and runs every check. `capacity` gives the device's size in bytes as the
/// device itself reports it; it is asked only after the disk is known not to be the boot
/// disk or in use.
pub fn check_block_target(
    sys: &Sysfs,
    path: &Path,
    dev: DevNum,
    capacity: &dyn Fn() -> Result<u64, FlashError>,
    image_size: u64,
    force: bool,
) -> Result<(Disk, u64), FlashError> {
    let device = path.display().to_string();
    let disk = check_in_use(sys, path, dev)?;
    let capacity = capacity()?;
    if capacity < image_size {
        return Err(FlashError::TooSmall {
            target: device,
            capacity,
            image_size,
        });
    }
    if disk.removable != Some(true) && !force {
        return Err(FlashError::NotRemovable {
            device,
            model: disk.model.clone(),
        });
    }
    Ok((disk, capacity))
}

/// The checks that need no access to the device: its disk in sysfs, not a partition, not
/// the boot disk, not mounted, not swap, not held. They also explain why opening the device
/// exclusively failed.
pub fn check_in_use(sys: &Sysfs, path: &Path, dev: DevNum) -> Result<Disk, FlashError> {
    let device = path.display().to_string();
    let sysfs_err = |source| FlashError::Io {
        what: "reading",
        path: sys.path("/sys/block"),
        source,
    };
    let (disk, partition) = sys
        .find_dev(dev)
        .map_err(sysfs_err)?
        .ok_or_else(|| FlashError::UnknownDevice {
            device: device.clone(),
            dev: dev.to_string(),
            sysfs: sys.path("/sys/block"),
        })?;
    if let Some(partition) = partition {
        return Err(FlashError::Partition {
            device,
            partition,
            disk: disk.name,
        });
    }
    let proc_err = |source| FlashError::Io {
        what: "reading",
        path: sys.path("/proc/self/mountinfo"),
        source,
    };
    if let Some((_, mount_point)) = sys
        .boot_disks()
        .map_err(proc_err)?
        .into_iter()
        .find(|(d, _)| *d == disk.name)
    {
        return Err(FlashError::BootDisk { device, mount_point });
    }
    let devs: Vec<DevNum> = disk.devs().collect();
    for mount in sys.mounts().map_err(proc_err)? {
        let by_dev = mount.dev.is_some_and(|d| devs.contains(&d));
        let name = sys.kernel_name(&mount.source);
        if by_dev || disk.names().any(|n| n == name) {
            return Err(FlashError::Mounted {
                device,
                what: mount.source,
                mount_point: mount.mount_point,
            });
        }
    }
    if let Some(swap) = sys.swaps().into_iter().find(|s| disk.names().any(|n| n == s)) {
        return Err(FlashError::Swap { device, swap });
    }
    let held = std::iter::once((&disk.name, &disk.holders))
        .chain(disk.partitions.iter().map(|p| (&p.name, &p.holders)))
        .find(|(_, holders)| !holders.is_empty());
    if let Some((name, holders)) = held {
        return Err(FlashError::Held {
            device,
            name: name.clone(),
            holders: holders.join(", "),
        });
    }
    Ok(disk)
}

/// That `file` (opened from `path`) is still the disk the checks found as `name`: a block
/// device whose `st_rdev` is the number in `/sys/class/block/NAME/dev`. Run after the checks
/// and again after the question, before the first byte is written.
pub fn same_device(sys: &Sysfs, path: &Path, file: &File, name: &str) -> Result<(), FlashError> {
    let meta = file.metadata().map_err(|source| FlashError::Io {
        what: "inspecting",
        path: path.into(),
        source,
    })?;
    if !meta.file_type().is_block_device() {
        return Err(FlashError::NotATarget { path: path.into() });
    }
    compare_dev(sys, path, name, DevNum::from_rdev(meta.rdev()))
}

/// That sysfs still says `name` is device `opened`.
pub fn compare_dev(sys: &Sysfs, path: &Path, name: &str, opened: DevNum) -> Result<(), FlashError> {
    match sys.class_dev(name) {
        Some(found) if found == opened => Ok(()),
        found => Err(FlashError::DeviceChanged {
            device: path.display().to_string(),
            name: name.to_string(),
            opened: opened.to_string(),
            found: found.map_or_else(|| "nothing (the disk is gone)".to_string(), |d| d.to_string()),
        }),
    }
}

/// What the confirmation question shows about the disk.
pub fn describe(device: &Path, disk: &Disk) -> String {
    let mut text = format!(
        "{} ({}{}): {}, {}, {}\n",
        device.display(),
        disk.name,
        disk.dev.map(|d| format!(", {d}")).unwrap_or_default(),
        if disk.model.is_empty() {
            "unknown model"
        } else {
            &disk.model
        },
        human(disk.size),
        match disk.removable {
            Some(true) => "removable",
            Some(false) => "NOT removable",
            None => "removable: unknown",
        }
    );
    if disk.partitions.is_empty() {
        text.push_str("  no partitions\n");
    }
    for p in &disk.partitions {
        text.push_str(&format!("  {} {}\n", p.name, human(p.size)));
    }
    text
}

/// `16.0 GB (14.9 GiB)`-style sizes: sticks are sold in GB, tools show GiB.
pub fn human(bytes: u64) -> String {
    let gb = bytes as f64 / 1e9;
    let gib = bytes as f64 / (1u64 << 30) as f64;
    if bytes >= 1 << 30 {
        format!("{gb:.1} GB ({gib:.1} GiB)")
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// A fake `/sys` + `/proc`: disks `sda` (fixed, holding `/`), `sdb` (a 16 GB stick with
    /// `sdb1`), `sdc` (fixed), `dm-0` on `sda2`.
    struct Fake {
        dir: tempfile::TempDir,
    }

    impl Fake {
        fn new() -> Fake {
            let fake = Fake {
                dir: tempfile::tempdir().unwrap(),
            };
            fake.disk("sda", "8:0", 500_000_000_000, "0", "ATA Samsung SSD");
            fake.part("sda", "sda1", "8:1", 512 << 20);
            fake.part("sda", "sda2", "8:2", 400_000_000_000);
            fake.disk("sdb", "8:16", 16_000_000_000, "1", "SanDisk Cruzer");
            fake.part("sdb", "sdb1", "8:17", 15_000_000_000);
            fake.disk("sdc", "8:32", 64_000_000_000, "0", "WD Elements");
            fake.mountinfo("22 1 8:2 / / rw - ext4 /dev/sda2 rw\n23 22 8:1 / /boot/efi rw - vfat /dev/sda1 rw\n");
            fake.write("proc/swaps", "Filename Type Size Used Priority\n");
            fake
        }

        fn write(&self, rel: &str, text: &str) {
            let path = self.dir.path().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }

        fn disk(&self, name: &str, dev: &str, bytes: u64, removable: &str, model: &str) {
            let (vendor, model) = model.split_once(' ').unwrap();
            self.write(&format!("sys/block/{name}/dev"), &format!("{dev}\n"));
            self.write(&format!("sys/block/{name}/size"), &format!("{}\n", bytes / 512));
            self.write(&format!("sys/block/{name}/removable"), &format!("{removable}\n"));
            self.write(&format!("sys/block/{name}/device/vendor"), &format!("{vendor}   \n"));
            self.write(&format!("sys/block/{name}/device/model"), &format!("{model}    \n"));
            fs::create_dir_all(self.dir.path().join(format!("sys/block/{name}/holders"))).unwrap();
        }

        fn part(&self, disk: &str, name: &str, dev: &str, bytes: u64) {
            let base = format!("sys/block/{disk}/{name}");
            self.write(&format!("{base}/dev"), &format!("{dev}\n"));
            self.write(&format!("{base}/size"), &format!("{}\n", bytes / 512));
            self.write(&format!("{base}/partition"), "1\n");
            fs::create_dir_all(self.dir.path().join(format!("{base}/holders"))).unwrap();
        }

        fn mountinfo(&self, text: &str) {
            self.write("proc/self/mountinfo", text);
        }

        fn sys(&self) -> Sysfs {
            Sysfs::new(self.dir.path())
        }

        fn check(&self, dev: &str, force: bool) -> Result<Disk, FlashError> {
            let dev = DevNum::parse(dev).unwrap();
            let (disk, _) = self.sys().find_dev(dev).unwrap().unwrap();
            check_block_target(&self.sys(), Path::new("/dev/x"), dev, &|| Ok(disk.size), 1 << 30, force)
                .map(|(disk, _)| disk)
        }
    }

    #[test]
    fn accepts_an_unmounted_removable_stick() {
        let fake = Fake::new();
        let disk = fake.check("8:16", false).unwrap();
        assert_eq!(disk.name, "sdb");
        assert_eq!(disk.model, "SanDisk Cruzer");
        let text = describe(Path::new("/dev/sdb"), &disk);
        assert!(text.starts_with("/dev/sdb (sdb, 8:16): "), "{text}");
        assert!(text.contains("SanDisk Cruzer, 16.0 GB (14.9 GiB), removable"), "{text}");
        assert!(text.contains("  sdb1 15.0 GB"), "{text}");
    }

    #[test]
    fn the_opened_device_must_be_the_one_sysfs_names() {
        let fake = Fake::new();
        let sdb = Path::new("/dev/sdb");
        let dev = DevNum::parse("8:16").unwrap();
        // No /sys/class/block/sdb: the disk is gone.
        let err = compare_dev(&fake.sys(), sdb, "sdb", dev).unwrap_err();
        assert!(err.to_string().contains("now says nothing (the disk is gone)"), "{err}");
        fake.write("sys/class/block/sdb/dev", "8:16\n");
        compare_dev(&fake.sys(), sdb, "sdb", dev).unwrap();
        // The name now belongs to another disk.
        fake.write("sys/class/block/sdb/dev", "8:32\n");
        let err = compare_dev(&fake.sys(), sdb, "sdb", dev).unwrap_err();
        assert!(
            matches!(&err, FlashError::DeviceChanged { opened, found, .. } if opened == "8:16" && found == "8:32"),
            "{err}"
        );
        assert!(err.to_string().contains("nothing written"), "{err}");
        // A real fstat: /dev/null has the number the fake sysfs gives, but is no block device.
        let null = File::open("/dev/null").unwrap();
        let null_dev = DevNum::from_rdev(null.metadata().unwrap().rdev());
        fake.write("sys/class/block/sdb/dev", &format!("{null_dev}\n"));
        compare_dev(&fake.sys(), sdb, "sdb", null_dev).unwrap();
        let err = same_device(&fake.sys(), sdb, &null, "sdb").unwrap_err();
        assert!(matches!(err, FlashError::NotATarget { .. }), "{err}");
    }

    #[test]
    fn refuses_the_boot_disk_even_with_force() {
        let fake = Fake::new();
        let err = fake.check("8:0", true).unwrap_err();
        assert!(
            matches!(&err, FlashError::BootDisk { mount_point, .. } if mount_point == "/"),
            "{err}"
        );
        assert!(err.to_string().contains("booted from"), "{err}");
    }

    #[test]
    fn finds_the_boot_disk_under_device_mapper_and_by_source_name() {
        let fake = Fake::new();
        // `/` on dm-0 (LVM on sdc), `/boot` with a virtual device number (as btrfs has).
        fake.disk("dm-0", "254:0", 100_000_000_000, "0", "x y");
        fs::create_dir_all(fake.dir.path().join("sys/block/dm-0/slaves/sdc")).unwrap();
        fake.mountinfo("22 1 254:0 / / rw - ext4 /dev/dm-0 rw\n23 22 0:33 / /boot rw - btrfs /dev/sdb1 rw\n");
        let boot = fake.sys().boot_disks().unwrap();
        assert!(boot.contains(&("sdc".into(), "/".into())), "{boot:?}");
        assert!(boot.contains(&("sdb".into(), "/boot".into())), "{boot:?}");
        assert!(matches!(fake.check("8:32", true), Err(FlashError::BootDisk { .. })));
        assert!(matches!(fake.check("8:16", true), Err(FlashError::BootDisk { .. })));
    }

    #[test]
    fn refuses_a_mounted_partition_by_number_and_by_name() {
        let fake = Fake::new();
        fake.mountinfo("22 1 8:2 / / rw - ext4 /dev/sda2 rw\n40 22 8:17 / /media/stick rw - vfat /dev/sdb1 rw\n");
        let err = fake.check("8:16", false).unwrap_err();
        assert!(err.to_string().contains("mounted on /media/stick"), "{err}");
        assert!(err.to_string().contains("umount /media/stick"), "{err}");
        // A device number that does not match (an overlay), but the source names the stick.
        fake.mountinfo("22 1 8:2 / / rw - ext4 /dev/sda2 rw\n40 22 0:50 / /mnt rw - vfat /dev/sdb1 rw\n");
        assert!(matches!(fake.check("8:16", false), Err(FlashError::Mounted { .. })));
    }

    #[test]
    fn refuses_a_held_or_swapped_on_disk() {
        let fake = Fake::new();
        fs::create_dir_all(fake.dir.path().join("sys/block/sdb/sdb1/holders/dm-3")).unwrap();
        let err = fake.check("8:16", false).unwrap_err();
        assert!(matches!(&err, FlashError::Held { name, holders, .. } if name == "sdb1" && holders == "dm-3"));
        fs::remove_dir(fake.dir.path().join("sys/block/sdb/sdb1/holders/dm-3")).unwrap();
        fake.write(
            "proc/swaps",
            "Filename Type Size Used Priority\n/dev/sdb1 partition 1 0 -2\n",
        );
        let err = fake.check("8:16", false).unwrap_err();
        assert!(err.to_string().contains("swapoff /dev/sdb1"), "{err}");
    }

    #[test]
    fn refuses_a_fixed_disk_unless_forced() {
        let fake = Fake::new();
        let err = fake.check("8:32", false).unwrap_err();
        assert!(err.to_string().contains("WD Elements"), "{err}");
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(fake.check("8:32", true).unwrap().name, "sdc");
    }

    #[test]
    fn refuses_a_partition_and_a_small_disk() {
        let fake = Fake::new();
        let err = fake.check("8:17", false).unwrap_err();
        assert!(err.to_string().contains("partition sdb1 of /dev/sdb"), "{err}");
        let sys = fake.sys();
        let dev = DevNum::parse("8:16").unwrap();
        let err = check_block_target(&sys, Path::new("/dev/sdb"), dev, &|| Ok(1000), 2000, false).unwrap_err();
        assert!(matches!(
            err,
            FlashError::TooSmall {
                capacity: 1000,
                image_size: 2000,
                ..
            }
        ));
        let dev = DevNum::parse("9:9").unwrap();
        assert!(matches!(
            check_block_target(&sys, Path::new("/dev/sdz"), dev, &|| Ok(1), 1, false),
            Err(FlashError::UnknownDevice { .. })
        ));
    }
}
