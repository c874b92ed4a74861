//! Finding the pool's disks: by the label `ramkey-pool`, or by the identities `[pool] disks`
//! names (`/dev/disk/by-id` names built from sysfs: model, serial, WWN), never by `sdX`.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::base::paths::Paths;
use crate::storage::blockdev::{self, BlockDevice, Bus};

use super::probe::{self, PoolFs};
use super::signatures::{self, Found};

/// One block device the pool step looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// The block device (a whole disk or a partition).
    pub device: BlockDevice,
    /// The node on the box (`/dev/vdb`).
    pub node: PathBuf,
    /// Its `/dev/disk/by-id`-style names, most specific first (may be empty).
    pub ids: Vec<String>,
    /// The pool-capable filesystem on it, if any.
    pub fs: Option<PoolFs>,
}

impl Disk {
    /// `virtio-ramkey-pool`, or the bus and model when the disk has no id.
    pub fn id(&self) -> String {
        self.ids.first().cloned().unwrap_or_else(|| self.device.description())
    }
}

fn read(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The serial in a SCSI VPD page 0x80 (4-byte header, then ASCII).
fn vpd_serial(raw: &[u8]) -> Option<String> {
    let len = usize::from(*raw.get(3)?);
    let text = String::from_utf8_lossy(raw.get(4..4 + len)?).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn udev_safe(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "#+-.:=@_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The `/dev/disk/by-id`-style names of the whole disk `disk` (`vdb`, `sda`, `nvme0n1`), as
/// udev would make them: `virtio-<serial>`, `ata-<model>_<serial>`,
/// `nvme-<model>_<serial>`, `usb-<vendor>_<model>_<serial>`, `scsi-...`, `wwn-<wwid>`.
pub fn disk_ids(sys_root: &Path, disk: &str, bus: Bus) -> Vec<String> {
    let block = sys_root.join("class/block").join(disk);
    let dev = block.join("device");
    let serial = read(&block.join("serial"))
        .or_else(|| read(&dev.join("serial")))
        .or_else(|| std::fs::read(dev.join("vpd_pg80")).ok().and_then(|r| vpd_serial(&r)));
    let model = read(&dev.join("model"));
    let vendor = read(&dev.join("vendor"));
    let mut ids = Vec::new();
    if let Some(serial) = &serial {
        let serial = udev_safe(serial);
        let model_serial = match &model {
            Some(m) => format!("{}_{serial}", udev_safe(m)),
            None => serial.clone(),
        };
        match bus {
            Bus::Virtio => ids.push(format!("virtio-{serial}")),
            Bus::Ata => ids.push(format!("ata-{model_serial}")),
            Bus::Nvme => ids.push(format!("nvme-{model_serial}")),
            Bus::Usb => {
                let v = vendor
                    .as_deref()
                    .map(|v| format!("{}_", udev_safe(v)))
                    .unwrap_or_default();
                ids.push(format!("usb-{v}{model_serial}"));
            }
            Bus::Scsi | Bus::Mmc | Bus::Other => ids.push(format!("scsi-{model_serial}")),
        }
        ids.push(model_serial);
        ids.push(serial);
    }
    if let Some(wwid) = read(&dev.join("wwid")).or_else(|| read(&block.join("wwid"))) {
        let wwid = wwid.strip_prefix("naa.").map_or(wwid.clone(), |w| format!("0x{w}"));
        ids.push(format!("wwn-{}", udev_safe(&wwid)));
        ids.push(udev_safe(&wwid));
    }
    ids.dedup();
    ids
}

/// The ids of a device: its disk's, with `-partN` for a partition.
fn device_ids(sys_root: &Path, device: &BlockDevice) -> Vec<String> {
    let ids = disk_ids(sys_root, &device.disk, device.bus);
    if !device.partition {
        return ids;
    }
    let part = read(&sys_root.join("class/block").join(&device.name).join("partition"));
    match part {
        Some(n) => ids.into_iter().map(|id| format!("{id}-part{n}")).collect(),
        None => Vec::new(),
    }
}

/// Every device but those of the disk `skip_disk` (the usbkey), with ids and filesystem.
pub fn scan(sys_root: &Path, dev_root: &Path, skip_disk: Option<&str>) -> Vec<Disk> {
    // The nodes as the box names them, whatever `dev_root` the probing reads.
    let box_dev = Paths::system().dev();
    blockdev::scan(sys_root)
        .into_iter()
        .filter(|d| Some(d.disk.as_str()) != skip_disk && !d.name.starts_with("sr"))
        .map(|device| {
            let fs = read_head(&device.node(dev_root)).and_then(|h| probe::pool_fs(&h));
            Disk {
                ids: device_ids(sys_root, &device),
                node: device.node(&box_dev),
                fs,
                device,
            }
        })
        .collect()
}

/// The first 128 KiB of a device (both superblocks); `None` when unreadable.
fn read_head(node: &Path) -> Option<Vec<u8>> {
    let file = File::open(node).ok()?;
    signatures::read_window(&file, 0, probe::HEAD as u64).ok()
}

/// Reads the device where the probes look and says why it is not blank (`None`: blank).
pub fn not_blank(node: &Path) -> std::io::Result<Option<Found>> {
    signatures::probe_device(node)
}

/// The size of a device in bytes, from sysfs (512-byte sectors).
pub fn size(sys_root: &Path, device: &BlockDevice) -> Option<u64> {
    let sectors: u64 = read(&sys_root.join("class/block").join(&device.name).join("size"))?
        .parse()
        .ok()?;
    Some(sectors * 512)
}

/// The devices `id` names in `disks` (one, unless the id is ambiguous: two disks with the
/// same serial, say).
pub fn by_id<'a>(disks: &'a [Disk], id: &str) -> Vec<&'a Disk> {
    disks.iter().filter(|d| d.ids.iter().any(|i| i == id)).collect()
}

/// The devices labelled `label` (partitions listed before whole disks).
pub fn labelled<'a>(disks: &'a [Disk], label: &str) -> Vec<&'a Disk> {
    disks
        .iter()
        .filter(|d| d.fs.as_ref().is_some_and(|fs| fs.label == label))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::blockdev::fake_device;

    const VIRTIO: &str = "pci0000:00/0000:00:05.0/virtio3";
    const ATA: &str = "pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0";

    #[test]
    fn virtio_ata_and_wwn_ids() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path();
        fake_device(sys, VIRTIO, "vdb", None, ("", ""));
        std::fs::write(sys.join("class/block/vdb/serial"), "ramkey-pool\n").unwrap();
        std::fs::remove_file(sys.join("class/block/vdb/device/model")).unwrap();
        assert_eq!(disk_ids(sys, "vdb", Bus::Virtio), ["virtio-ramkey-pool", "ramkey-pool"]);

        fake_device(sys, ATA, "sda", Some("sda1"), ("ATA", "Samsung SSD 870"));
        let mut vpd = vec![0, 0x80, 0, 14];
        vpd.extend_from_slice(b"  S5Y1NX0R    ");
        std::fs::write(sys.join("class/block/sda/device/vpd_pg80"), vpd).unwrap();
        std::fs::write(sys.join("class/block/sda/device/wwid"), "naa.5002538f4150e2c1\n").unwrap();
        assert_eq!(
            disk_ids(sys, "sda", Bus::Ata),
            [
                "ata-Samsung_SSD_870_S5Y1NX0R",
                "Samsung_SSD_870_S5Y1NX0R",
                "S5Y1NX0R",
                "wwn-0x5002538f4150e2c1",
                "0x5002538f4150e2c1"
            ]
        );
        let disks = scan(sys, &sys.join("dev"), None);
        let sda1 = disks.iter().find(|d| d.device.name == "sda1").unwrap();
        assert_eq!(sda1.id(), "ata-Samsung_SSD_870_S5Y1NX0R-part1");
        assert_eq!(by_id(&disks, "virtio-ramkey-pool")[0].node, PathBuf::from("/dev/vdb"));
        assert!(by_id(&disks, "sdb").is_empty());
        assert!(
            scan(sys, &sys.join("dev"), Some("sda"))
                .iter()
                .all(|d| d.device.disk != "sda")
        );
    }

    #[test]
    fn labels_and_blankness_from_device_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys");
        let dev = dir.path().join("dev");
        fake_device(&sys, VIRTIO, "vdb", None, ("", ""));
        fake_device(&sys, "pci0000:00/0000:00:06.0/virtio4", "vdc", None, ("", ""));
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("vdb"), probe::tests::ext4_head("ramkey-pool", true)).unwrap();
        let blank = File::create(dev.join("vdc")).unwrap();
        blank.set_len(8 << 20).unwrap();
        let disks = scan(&sys, &dev, None);
        let pool = labelled(&disks, "ramkey-pool");
        assert_eq!(pool.len(), 1);
        assert_eq!(pool[0].device.name, "vdb");
        assert_eq!(not_blank(&dev.join("vdc")).unwrap(), None);
        assert_eq!(not_blank(&dev.join("vdb")).unwrap().unwrap().offset, Some(1024));
        assert_eq!(size(&sys, &pool[0].device), Some(131072 * 512));
    }
}
