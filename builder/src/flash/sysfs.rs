//! What the host says about its block devices, read from `/sys` and `/proc` under an
//! injectable root: disks and their partitions, mounts, holders, swap, and the disk the host
//! booted from. Only reads; the checks that refuse a target are in `flash::checks`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// A device number, `major:minor` as sysfs and `/proc/self/mountinfo` write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for DevNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl DevNum {
    /// Parses `8:16` (surrounding whitespace allowed).
    pub fn parse(text: &str) -> Option<DevNum> {
        let (major, minor) = text.trim().split_once(':')?;
        Some(DevNum {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }

    /// The number of a device node's `st_rdev`.
    pub fn from_rdev(rdev: u64) -> DevNum {
        DevNum {
            major: rustix::fs::major(rdev),
            minor: rustix::fs::minor(rdev),
        }
    }
}

/// A partition of a disk, from `/sys/block/DISK/PART/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub dev: Option<DevNum>,
    /// Bytes (`size` counts 512-byte sectors whatever the logical block size).
    pub size: u64,
    pub holders: Vec<String>,
}

/// A whole disk, from `/sys/block/DISK/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub name: String,
    pub dev: Option<DevNum>,
    pub size: u64,
    /// `removable` is 1; `None` when the file is missing.
    pub removable: Option<bool>,
    /// `device/vendor` and `device/model`, trimmed and joined.
    pub model: String,
    pub partitions: Vec<Partition>,
    pub holders: Vec<String>,
    /// What this disk is built on (device-mapper, md): `slaves/`.
    pub slaves: Vec<String>,
}

impl Disk {
    /// The disk and partition names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.partitions.iter().map(|p| p.name.as_str()))
    }

    /// The disk and partition device numbers.
    pub fn devs(&self) -> impl Iterator<Item = DevNum> + '_ {
        std::iter::once(self.dev)
            .chain(self.partitions.iter().map(|p| p.dev))
            .flatten()
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub dev: Option<DevNum>,
    pub mount_point: String,
    pub source: String,
}

/// The `/sys` and `/proc` of a host, rooted at `root` (`/` for the real one).
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Sysfs {
        Sysfs { root: root.into() }
    }

    /// The running host.
    pub fn host() -> Sysfs {
        Sysfs::new("/")
    }

    /// `abs` (an absolute host path) under the root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    fn read(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
    }

    fn names_in(&self, dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Every disk in `/sys/block`, sorted by name.
    pub fn disks(&self) -> std::io::Result<Vec<Disk>> {
        let block = self.path("/sys/block");
        let mut disks = Vec::new();
        for name in self.names_in(&block) {
            if let Some(disk) = self.disk(&name) {
                disks.push(disk);
            }
        }
        if disks.is_empty() && !block.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} is missing", block.display()),
            ));
        }
        Ok(disks)
    }

    /// `/sys/block/NAME`, or `None` when there is no such disk.
    pub fn disk(&self, name: &str) -> Option<Disk> {
        let dir = self.path("/sys/block").join(name);
        if !dir.is_dir() {
            return None;
        }
        let sectors = |d: &Path| {
            self.read(&d.join("size"))
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
                * 512
        };
        let partitions = self
            .names_in(&dir)
            .into_iter()
            .filter(|n| dir.join(n).join("partition").is_file())
            .map(|n| {
                let d = dir.join(&n);
                Partition {
                    dev: self.read(&d.join("dev")).as_deref().and_then(DevNum::parse),
                    size: sectors(&d),
                    holders: self.names_in(&d.join("holders")),
                    name: n,
                }
            })
            .collect();
        let model = [&dir.join("device/vendor"), &dir.join("device/model")]
            .iter()
            .filter_map(|p| self.read(p))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Some(Disk {
            name: name.to_string(),
            dev: self.read(&dir.join("dev")).as_deref().and_then(DevNum::parse),
            size: sectors(&dir),
            removable: self.read(&dir.join("removable")).map(|s| s == "1"),
            model,
            partitions,
            holders: self.names_in(&dir.join("holders")),
            slaves: self.names_in(&dir.join("slaves")),
        })
    }

    /// `/sys/class/block/NAME/dev`: the device number of the disk or partition called `name`
    /// now (the same file as `/sys/block/NAME/dev` for a disk).
    pub fn class_dev(&self, name: &str) -> Option<DevNum> {
        let dev = self.path("/sys/class/block").join(name).join("dev");
        self.read(&dev).as_deref().and_then(DevNum::parse)
    }

    /// The disk owning `dev`, and the partition's name when `dev` is a partition.
    pub fn find_dev(&self, dev: DevNum) -> std::io::Result<Option<(Disk, Option<String>)>> {
        for disk in self.disks()? {
            if disk.dev == Some(dev) {
                return Ok(Some((disk, None)));
            }
            if let Some(p) = disk.partitions.iter().find(|p| p.dev == Some(dev)) {
                let part = p.name.clone();
                return Ok(Some((disk, Some(part))));
            }
        }
        Ok(None)
    }

    /// The disk owning the disk or partition called `name`.
    pub fn find_name(&self, name: &str) -> std::io::Result<Option<Disk>> {
        Ok(self.disks()?.into_iter().find(|d| d.names().any(|n| n == name)))
    }

    /// `/proc/self/mountinfo`.
    pub fn mounts(&self) -> std::io::Result<Vec<Mount>> {
        let text = std::fs::read_to_string(self.path("/proc/self/mountinfo"))?;
        Ok(text.lines().filter_map(parse_mountinfo_line).collect())
    }

    /// Names of the active swap devices (`/proc/swaps`), e.g. `sdb2`.
    pub fn swaps(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.path("/proc/swaps")).unwrap_or_default();
        text.lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .map(|dev| self.kernel_name(dev))
            .collect()
    }

    /// The kernel name of a `/dev/...` path (`/dev/mapper/root` → `dm-0`), or its last part.
    pub fn kernel_name(&self, dev_path: &str) -> String {
        let resolved = if dev_path.starts_with("/dev/") {
            std::fs::canonicalize(self.path(dev_path)).ok()
        } else {
            None
        };
        let path = resolved.unwrap_or_else(|| PathBuf::from(dev_path));
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The disks that hold the host's `/`, `/boot`, `/boot/efi` or `/efi`, with the mount
    /// point that put each there; through device-mapper and md down to the physical disks.
    pub fn boot_disks(&self) -> std::io::Result<Vec<(String, String)>> {
        let disks = self.disks()?;
        let mut found: Vec<(String, String)> = Vec::new();
        for mount in self.mounts()? {
            if !BOOT_MOUNTS.contains(&mount.mount_point.as_str()) {
                continue;
            }
            let by_dev = mount
                .dev
                .and_then(|dev| disks.iter().find(|d| d.devs().any(|x| x == dev)));
            let name = self.kernel_name(&mount.source);
            let by_name = || disks.iter().find(|d| d.names().any(|n| n == name));
            let Some(disk) = by_dev.or_else(by_name) else {
                continue;
            };
            let mut seen = BTreeSet::new();
            for physical in self.physical(&disks, disk, &mut seen) {
                if !found.iter().any(|(d, _)| *d == physical) {
                    found.push((physical, mount.mount_point.clone()));
                }
            }
        }
        Ok(found)
    }

    /// `disk` and, recursively, what it is built on.
    fn physical(&self, disks: &[Disk], disk: &Disk, seen: &mut BTreeSet<String>) -> Vec<String> {
        if !seen.insert(disk.name.clone()) {
            return Vec::new();
        }
        let mut out = vec![disk.name.clone()];
        for slave in &disk.slaves {
            if let Some(under) = disks.iter().find(|d| d.names().any(|n| n == slave)) {
                out.extend(self.physical(disks, under, seen));
            }
        }
        out
    }
}

/// Mount points whose disk is the host's boot disk.
pub const BOOT_MOUNTS: &[&str] = &["/", "/boot", "/boot/efi", "/efi"];

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw`.
fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let right: Vec<&str> = right.split(' ').collect();
    Some(Mount {
        dev: DevNum::parse(left.get(2)?),
        mount_point: unescape(left.get(4)?),
        source: unescape(right.get(1)?),
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(code) = field.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(code);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let m =
            parse_mountinfo_line("36 35 8:17 / /media/my\\040stick rw,noatime shared:1 - vfat /dev/sdb1 rw").unwrap();
        assert_eq!(m.dev, Some(DevNum { major: 8, minor: 17 }));
        assert_eq!(m.mount_point, "/media/my stick");
        assert_eq!(m.source, "/dev/sdb1");
        assert_eq!(parse_mountinfo_line("garbage"), None);
    }

    #[test]
    fn parses_device_numbers() {
        assert_eq!(DevNum::parse("259:3\n"), Some(DevNum { major: 259, minor: 3 }));
        assert_eq!(DevNum::parse("8"), None);
        assert_eq!(DevNum { major: 8, minor: 0 }.to_string(), "8:0");
    }
}
