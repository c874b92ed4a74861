//! FAT filesystem labels read from a block device's first sector (a tiny blkid).
//!
//! Only the boot sector's label is read (the root directory's volume-label entry is not):
//! `mkfs.vfat -n`, `fatlabel` and the Ramkey builder write both.

use std::io::Read;
use std::path::Path;

/// The size of the boot sector that is read.
pub const SECTOR: usize = 512;

/// The label `mkfs.vfat` writes when none is given; it means "no label".
const NO_NAME: &str = "NO NAME";

/// Which FAT variant a boot sector describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatKind {
    /// FAT12 or FAT16 (`FAT1` at 0x36, label at 0x2B).
    Fat12Or16,
    /// FAT32 (`FAT32   ` at 0x52, label at 0x47).
    Fat32,
}

/// A FAT boot sector's kind and label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatInfo {
    /// FAT12/16 or FAT32.
    pub kind: FatKind,
    /// The label without its space padding; `None` when unlabelled (`NO NAME`).
    pub label: Option<String>,
}

/// Reads the FAT kind and label from a boot sector; `None` when it is not FAT.
pub fn probe_fat(sector: &[u8]) -> Option<FatInfo> {
    if sector.get(510..512)? != [0x55, 0xAA] {
        return None;
    }
    let (kind, label_at) = if sector.get(0x52..0x5A)? == b"FAT32   " {
        (FatKind::Fat32, 0x47)
    } else if sector.get(0x36..0x3A)? == b"FAT1" {
        (FatKind::Fat12Or16, 0x2B)
    } else {
        return None;
    };
    let raw = sector.get(label_at..label_at + 11)?;
    let text = String::from_utf8_lossy(raw);
    let label = text.trim_end_matches([' ', '\0']).trim_start();
    let label = (!label.is_empty() && label != NO_NAME).then(|| label.to_owned());
    Some(FatInfo { kind, label })
}

/// True when `found` names the label `wanted` (FAT labels are case-insensitive).
pub fn label_matches(found: &str, wanted: &str) -> bool {
    found.trim().eq_ignore_ascii_case(wanted.trim())
}

/// Reads the first sector of `device` and probes it; `None` when it cannot be read
/// (no medium, vanished device, short read) or holds no FAT filesystem.
pub fn probe_device(device: &Path) -> Option<FatInfo> {
    let mut file = std::fs::File::open(device).ok()?;
    let mut sector = [0u8; SECTOR];
    file.read_exact(&mut sector).ok()?;
    probe_fat(&sector)
}

/// A FAT boot sector for tests and fixtures: `kind` with `label` (11 bytes, padded).
#[cfg(test)]
pub fn fixture_sector(kind: FatKind, label: &str) -> Vec<u8> {
    let mut s = vec![0u8; SECTOR];
    s[0..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
    s[3..11].copy_from_slice(b"mkfs.fat");
    let mut padded = [b' '; 11];
    for (dst, src) in padded.iter_mut().zip(label.bytes()) {
        *dst = src;
    }
    match kind {
        FatKind::Fat32 => {
            s[0x42] = 0x29;
            s[0x47..0x52].copy_from_slice(&padded);
            s[0x52..0x5A].copy_from_slice(b"FAT32   ");
        }
        FatKind::Fat12Or16 => {
            s[0x26] = 0x29;
            s[0x2B..0x36].copy_from_slice(&padded);
            s[0x36..0x3E].copy_from_slice(b"FAT16   ");
        }
    }
    s[510] = 0x55;
    s[511] = 0xAA;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fat32_label() {
        let info = probe_fat(&fixture_sector(FatKind::Fat32, "RAMKEY")).unwrap();
        assert_eq!(info.kind, FatKind::Fat32);
        assert_eq!(info.label.as_deref(), Some("RAMKEY"));
    }

    #[test]
    fn fat16_label_with_inner_space() {
        let info = probe_fat(&fixture_sector(FatKind::Fat12Or16, "MY KEY")).unwrap();
        assert_eq!(info.kind, FatKind::Fat12Or16);
        assert_eq!(info.label.as_deref(), Some("MY KEY"));
    }

    #[test]
    fn no_name_and_empty_mean_unlabelled() {
        assert_eq!(
            probe_fat(&fixture_sector(FatKind::Fat32, "NO NAME")).unwrap().label,
            None
        );
        assert_eq!(probe_fat(&fixture_sector(FatKind::Fat32, "")).unwrap().label, None);
    }

    #[test]
    fn not_fat() {
        let mut s = fixture_sector(FatKind::Fat32, "RAMKEY");
        s[511] = 0;
        assert_eq!(probe_fat(&s), None, "no boot signature");
        // A protective MBR: boot signature but no FAT type string.
        let mut mbr = vec![0u8; SECTOR];
        mbr[0x1BE + 4] = 0xEE;
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        assert_eq!(probe_fat(&mbr), None);
        assert_eq!(probe_fat(&[0x55, 0xAA]), None, "short");
        assert_eq!(probe_fat(&[]), None);
    }

    #[test]
    fn labels_compare_case_insensitively() {
        assert!(label_matches("RAMKEY", "ramkey"));
        assert!(label_matches("ramkey ", "RAMKEY"));
        assert!(!label_matches("RAMKEY2", "RAMKEY"));
    }

    #[test]
    fn device_probe_reads_the_first_sector() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("sda1");
        let mut bytes = fixture_sector(FatKind::Fat32, "RAMKEY");
        bytes.extend_from_slice(&[0u8; 4096]);
        std::fs::write(&dev, bytes).unwrap();
        assert_eq!(probe_device(&dev).unwrap().label.as_deref(), Some("RAMKEY"));
        std::fs::write(&dev, [0u8; 100]).unwrap();
        assert_eq!(probe_device(&dev), None, "short read");
        assert_eq!(probe_device(&dir.path().join("missing")), None);
    }
}
