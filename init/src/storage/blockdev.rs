//! Block devices as sysfs shows them (`/sys/class/block`): partitions, disks, bus, vendor.

use std::fmt;
use std::path::{Path, PathBuf};

/// Device name prefixes that never hold a usbkey.
const SKIPPED: &[&str] = &["loop", "ram", "zram", "nbd"];

/// One block device (a whole disk or a partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// Kernel name, e.g. `sda1`.
    pub name: String,
    /// True for a partition (`<sysfs>/class/block/<name>/partition` exists).
    pub partition: bool,
    /// The whole disk's name (`sda` for `sda1`; the name itself for a disk).
    pub disk: String,
    /// The bus, from the sysfs device path.
    pub bus: Bus,
    /// `device/vendor` of the disk, trimmed, when present.
    pub vendor: Option<String>,
    /// `device/model` of the disk, trimmed, when present.
    pub model: Option<String>,
}

/// The bus a disk hangs on, as far as its sysfs path tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    /// USB mass storage or UAS.
    Usb,
    /// NVMe.
    Nvme,
    /// SATA/PATA (libata).
    Ata,
    /// virtio-blk or virtio-scsi.
    Virtio,
    /// MMC/SD.
    Mmc,
    /// Another SCSI host.
    Scsi,
    /// None of the above.
    Other,
}

impl Bus {
    /// The bus named by a sysfs device path (`devices/pci0000:00/.../usb2/...`).
    pub fn from_sys_path(path: &str) -> Bus {
        let has = |part: &str| path.split('/').any(|c| c.starts_with(part));
        if has("usb") {
            Bus::Usb
        } else if has("nvme") {
            Bus::Nvme
        } else if has("ata") {
            Bus::Ata
        } else if has("virtio") {
            Bus::Virtio
        } else if has("mmc") {
            Bus::Mmc
        } else if has("host") {
            Bus::Scsi
        } else {
            Bus::Other
        }
    }
}

impl fmt::Display for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bus::Usb => "usb",
            Bus::Nvme => "nvme",
            Bus::Ata => "ata",
            Bus::Virtio => "virtio",
            Bus::Mmc => "mmc",
            Bus::Scsi => "scsi",
            Bus::Other => "other",
        })
    }
}

impl BlockDevice {
    /// The device node under `dev_root` (`/dev/sda1`; `!` in names becomes `/`).
    pub fn node(&self, dev_root: &Path) -> PathBuf {
        dev_root.join(self.name.replace('!', "/"))
    }

    /// `usb: Vendor Model`, or just the bus when the disk has neither.
    pub fn description(&self) -> String {
        let words: Vec<&str> = [self.vendor.as_deref(), self.model.as_deref()]
            .into_iter()
            .flatten()
            .filter(|w| !w.is_empty())
            .collect();
        if words.is_empty() {
            self.bus.to_string()
        } else {
            format!("{}: {}", self.bus, words.join(" "))
        }
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Reads one device from `<sys_root>/class/block/<name>`; `None` if it vanished.
pub fn read_device(sys_root: &Path, name: &str) -> Option<BlockDevice> {
    let class = sys_root.join("class/block");
    let entry = class.join(name);
    let real = std::fs::canonicalize(&entry).ok()?;
    let partition = entry.join("partition").exists();
    let disk = if partition {
        real.parent()?.file_name()?.to_string_lossy().into_owned()
    } else {
        name.to_owned()
    };
    let sys_path = real
        .strip_prefix(std::fs::canonicalize(sys_root).ok()?)
        .unwrap_or(&real)
        .to_string_lossy()
        .into_owned();
    let device = class.join(&disk).join("device");
    Some(BlockDevice {
        name: name.to_owned(),
        partition,
        disk,
        bus: Bus::from_sys_path(&sys_path),
        vendor: read_trimmed(&device.join("vendor")),
        model: read_trimmed(&device.join("model")),
    })
}

/// Every block device worth probing, partitions first, each group sorted by name.
///
/// Devices with a size of zero (an empty card reader) and loop/ram devices are left out.
pub fn scan(sys_root: &Path) -> Vec<BlockDevice> {
    let Ok(dir) = std::fs::read_dir(sys_root.join("class/block")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !SKIPPED.iter().any(|s| n.starts_with(s)))
        .collect();
    names.sort();
    let mut devices: Vec<BlockDevice> = names
        .iter()
        .filter(|n| {
            let size = sys_root.join("class/block").join(n).join("size");
            read_trimmed(&size).is_none_or(|s| s != "0")
        })
        .filter_map(|n| read_device(sys_root, n))
        .collect();
    devices.sort_by_key(|d| !d.partition);
    devices
}

/// Builds a fake sysfs block device for tests: `<sys>/devices/<parent>/block/<disk>[/<part>]`
/// with the `class/block` symlink, `size`, and `device/{vendor,model}` on the disk.
#[cfg(test)]
pub fn fake_device(sys_root: &Path, parent: &str, disk: &str, part: Option<&str>, vendor_model: (&str, &str)) {
    let disk_dir = sys_root.join("devices").join(parent).join("block").join(disk);
    let class = sys_root.join("class/block");
    std::fs::create_dir_all(disk_dir.join("device")).ok();
    std::fs::create_dir_all(&class).ok();
    std::fs::write(disk_dir.join("size"), "131072\n").ok();
    std::fs::write(disk_dir.join("device/vendor"), format!("{}\n", vendor_model.0)).ok();
    std::fs::write(disk_dir.join("device/model"), format!("{}\n", vendor_model.1)).ok();
    std::os::unix::fs::symlink(&disk_dir, class.join(disk)).ok();
    if let Some(part) = part {
        let part_dir = disk_dir.join(part);
        std::fs::create_dir_all(&part_dir).ok();
        std::fs::write(part_dir.join("partition"), "1\n").ok();
        std::fs::write(part_dir.join("size"), "131000\n").ok();
        std::os::unix::fs::symlink(&part_dir, class.join(part)).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USB: &str = "pci0000:00/0000:00:02.0/usb2/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0";

    #[test]
    fn bus_from_path() {
        assert_eq!(Bus::from_sys_path(&format!("devices/{USB}/block/sda")), Bus::Usb);
        assert_eq!(
            Bus::from_sys_path("devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda"),
            Bus::Ata
        );
        assert_eq!(
            Bus::from_sys_path("devices/pci0000:00/0000:00:03.0/nvme/nvme0/nvme0n1"),
            Bus::Nvme
        );
        assert_eq!(
            Bus::from_sys_path("devices/pci0000:00/0000:00:04.0/virtio2/block/vda"),
            Bus::Virtio
        );
        assert_eq!(
            Bus::from_sys_path("devices/pci0000:00/0000:00:05.0/host3/target3:0:0/3:0:0:0/block/sdb"),
            Bus::Scsi
        );
        assert_eq!(Bus::from_sys_path("devices/virtual/block/md0"), Bus::Other);
    }

    #[test]
    fn scan_lists_partitions_first_with_disk_details() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path();
        fake_device(sys, USB, "sda", Some("sda1"), ("QEMU", "QEMU HARDDISK"));
        fake_device(sys, "pci0000:00/0000:00:04.0/virtio2", "vda", None, ("", ""));
        fake_device(sys, "virtual", "loop0", None, ("", ""));
        let devices = scan(sys);
        let names: Vec<_> = devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["sda1", "sda", "vda"]);
        let sda1 = &devices[0];
        assert!(sda1.partition);
        assert_eq!(sda1.disk, "sda");
        assert_eq!(sda1.bus, Bus::Usb);
        assert_eq!(sda1.description(), "usb: QEMU QEMU HARDDISK");
        assert_eq!(sda1.node(Path::new("/dev")), PathBuf::from("/dev/sda1"));
        assert_eq!(devices[2].description(), "virtio");
    }

    #[test]
    fn empty_media_and_missing_class_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(scan(dir.path()).is_empty());
        fake_device(dir.path(), USB, "sdb", None, ("Generic", "Card Reader"));
        std::fs::write(dir.path().join("class/block/sdb/size"), "0\n").unwrap();
        assert!(scan(dir.path()).is_empty());
    }
}
