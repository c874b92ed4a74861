//! On-disk signatures: the pool's own label (ext4, btrfs) and everything that makes a disk
//! "not blank" (filesystems, RAID/LVM/LUKS headers, partition tables, any data at all).
//!
//! Only the first and the last MiB of a disk are looked at, where the usual probes
//! (blkid, wipefs) find their magics.

use std::fmt;

/// How much of each end of a disk is read.
pub const WINDOW: usize = 1 << 20;

/// The ext2/3/4 superblock offset and its magic.
const EXT_SB: usize = 1024;
const EXT_MAGIC: u16 = 0xEF53;
/// The btrfs primary superblock offset and its magic (at +0x40).
const BTRFS_SB: usize = 64 << 10;
const BTRFS_MAGIC: &[u8] = b"_BHRfS_M";
/// The mdraid superblock magic (little-endian).
const MD_MAGIC: u32 = 0xa92b_4efc;
/// The ZFS uberblock magic.
const ZFS_MAGIC: u64 = 0x00ba_b10c;

/// A filesystem that can be the pool, as read from its superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolFs {
    /// ext4 or btrfs.
    pub kind: FsKind,
    /// The label (`ramkey-pool` for the pool).
    pub label: String,
    /// ext4: the filesystem was not unmounted cleanly (state bit 0 clear, or the journal
    /// needs recovery). Always false for btrfs (it has no such flag: it is copy-on-write).
    pub unclean: bool,
    /// btrfs: the filesystem UUID, shared by every device of a multi-device filesystem.
    pub fsid: [u8; 16],
    /// btrfs: how many devices the filesystem has (1 for ext4).
    pub num_devices: u64,
}

/// The filesystems a pool can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// ext2, ext3 or ext4 (one superblock format).
    Ext(ExtVersion),
    /// btrfs.
    Btrfs,
}

/// Which ext generation the feature flags say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtVersion {
    /// No journal.
    Ext2,
    /// A journal, no ext4 features.
    Ext3,
    /// Extents, flex_bg or 64bit.
    Ext4,
}

impl fmt::Display for FsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FsKind::Ext(ExtVersion::Ext2) => "ext2",
            FsKind::Ext(ExtVersion::Ext3) => "ext3",
            FsKind::Ext(ExtVersion::Ext4) => "ext4",
            FsKind::Btrfs => "btrfs",
        })
    }
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn text(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).trim().to_owned()
}

fn has(b: &[u8], at: usize, magic: &[u8]) -> bool {
    b.get(at..at + magic.len()) == Some(magic)
}

/// Reads an ext2/3/4 superblock from the start of a device.
pub fn ext(head: &[u8]) -> Option<PoolFs> {
    let sb = head.get(EXT_SB..EXT_SB + 1024)?;
    if le16(sb, 0x38)? != EXT_MAGIC {
        return None;
    }
    let state = le16(sb, 0x3A)?;
    let (compat, incompat) = (le32(sb, 0x5C)?, le32(sb, 0x60)?);
    let version = if incompat & (0x40 | 0x80 | 0x200) != 0 {
        ExtVersion::Ext4
    } else if compat & 0x4 != 0 {
        ExtVersion::Ext3
    } else {
        ExtVersion::Ext2
    };
    Some(PoolFs {
        kind: FsKind::Ext(version),
        label: text(&sb[0x78..0x88]),
        unclean: state & 1 == 0 || incompat & 0x4 != 0,
        fsid: sb[0x68..0x78].try_into().ok()?,
        num_devices: 1,
    })
}

/// Reads a btrfs primary superblock (at 64 KiB).
pub fn btrfs(head: &[u8]) -> Option<PoolFs> {
    let sb = head.get(BTRFS_SB..BTRFS_SB + 0x22b)?;
    if !has(sb, 0x40, BTRFS_MAGIC) {
        return None;
    }
    Some(PoolFs {
        kind: FsKind::Btrfs,
        label: text(&sb[0x12b..0x22b]),
        unclean: false,
        fsid: sb[0x20..0x30].try_into().ok()?,
        num_devices: le64(sb, 0x88)?,
    })
}

/// The pool-capable filesystem at the start of a device, if any.
pub fn pool_fs(head: &[u8]) -> Option<PoolFs> {
    ext(head).or_else(|| btrfs(head))
}

/// Why a disk is not blank: what was found, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// A phrase: `an ext4 filesystem labelled "data"`, `a GPT partition table`, ...
    pub what: String,
    /// The byte offset of the signature on the disk.
    pub offset: u64,
}

fn found(what: impl Into<String>, offset: u64) -> Option<Found> {
    Some(Found {
        what: what.into(),
        offset,
    })
}

fn labelled(what: &str, label: &str) -> String {
    if label.is_empty() {
        format!("{what} (no label)")
    } else {
        format!("{what} labelled {label:?}")
    }
}

/// Signatures in the first MiB (`head`, from offset 0).
fn head_signature(head: &[u8]) -> Option<Found> {
    if let Some(fs) = pool_fs(head) {
        let at = if fs.kind == FsKind::Btrfs {
            BTRFS_SB + 0x40
        } else {
            EXT_SB
        };
        let article = if matches!(fs.kind, FsKind::Ext(_)) { "an" } else { "a" };
        return found(
            labelled(&format!("{article} {} filesystem", fs.kind), &fs.label),
            at as u64,
        );
    }
    let magics: &[(usize, &[u8], &str)] = &[
        (0, b"XFSB", "an xfs filesystem"),
        (0, b"LUKS\xba\xbe", "a LUKS encrypted volume"),
        (0, b"hsqs", "a squashfs filesystem"),
        (32769, b"CD001", "an iso9660 filesystem"),
        (4086, b"SWAPSPACE2", "a swap area"),
        (4086, b"SWAP-SPACE", "a swap area"),
        (512, b"EFI PART", "a GPT partition table"),
        (4096, b"EFI PART", "a GPT partition table"),
    ];
    for &(at, magic, what) in magics {
        if has(head, at, magic) {
            return found(what, at as u64);
        }
    }
    for sector in 0..4 {
        if has(head, sector * 512, b"LABELONE") {
            return found("an LVM2 physical volume", (sector * 512) as u64);
        }
    }
    for at in [0, 4096] {
        if le32(head, at) == Some(MD_MAGIC) {
            return found("a Linux RAID (mdraid) member", at as u64);
        }
    }
    if let Some(at) = zfs(head) {
        return found("a ZFS pool member", at as u64);
    }
    if has(head, 510, &[0x55, 0xAA]) {
        if has(head, 0x36, b"FAT") || has(head, 0x52, b"FAT") {
            let fat = crate::blkid::probe_fat(head).and_then(|f| f.label).unwrap_or_default();
            return found(labelled("a FAT filesystem", &fat), 0);
        }
        if head[0x1BE..0x1FE].iter().any(|&b| b != 0) {
            return found("an MBR partition table", 0x1BE);
        }
    }
    None
}

/// The first ZFS uberblock magic (either byte order) at a 1 KiB boundary of the uberblock
/// arrays of the labels in `window` (each label is 256 KiB, its uberblocks from +128 KiB).
fn zfs(window: &[u8]) -> Option<usize> {
    (0..window.len() / (256 << 10)).find_map(|label| {
        let start = label * (256 << 10) + (128 << 10);
        (start..start + (128 << 10))
            .step_by(1024)
            .find(|&at| le64(window, at).is_some_and(|v| v == ZFS_MAGIC || v.swap_bytes() == ZFS_MAGIC))
    })
}

/// Signatures in the last MiB (`tail` starts at byte `tail_at` of a `size`-byte disk).
fn tail_signature(tail: &[u8], tail_at: u64, size: u64) -> Option<Found> {
    let local = |abs: u64| abs.checked_sub(tail_at).map(|o| o as usize);
    // md 0.90: the last 64 KiB-aligned 64 KiB block; md 1.0: 8 KiB from the end, 4 KiB aligned.
    let md090 = (size & !0xFFFF).saturating_sub(0x10000);
    let md10 = size.saturating_sub(8192) & !4095;
    for abs in [md090, md10] {
        if local(abs).and_then(|o| le32(tail, o)) == Some(MD_MAGIC) {
            return found("a Linux RAID (mdraid) member", abs);
        }
    }
    for sector in [512u64, 4096] {
        let abs = size.saturating_sub(sector);
        if local(abs).is_some_and(|o| has(tail, o, b"EFI PART")) {
            return found("a GPT partition table (backup header)", abs);
        }
    }
    // ZFS labels 2 and 3 are the last 512 KiB.
    let labels = size.saturating_sub(512 << 10);
    let o = local(labels)?;
    zfs(&tail[o..]).map(|at| Found {
        what: "a ZFS pool member".into(),
        offset: labels + at as u64,
    })
}

/// Why a disk is not blank, or `None` when it is: a known signature anywhere the usual
/// probes look, else any non-zero byte in the first MiB ("unknown data").
///
/// `head` is the first MiB (or the whole disk when smaller), `tail` the last MiB, starting
/// at byte `tail_at`; `size` is the disk's size in bytes.
pub fn not_blank(head: &[u8], tail: &[u8], tail_at: u64, size: u64) -> Option<Found> {
    head_signature(head)
        .or_else(|| tail_signature(tail, tail_at, size))
        .or_else(|| {
            let at = head.iter().position(|&b| b != 0)?;
            found("unknown data", at as u64)
        })
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A zeroed MiB with an ext4 superblock labelled `label`.
    pub fn ext4_head(label: &str, clean: bool) -> Vec<u8> {
        let mut d = vec![0u8; WINDOW];
        let sb = &mut d[EXT_SB..EXT_SB + 1024];
        sb[0x38..0x3A].copy_from_slice(&EXT_MAGIC.to_le_bytes());
        sb[0x3A..0x3C].copy_from_slice(&u16::from(clean).to_le_bytes());
        sb[0x5C] = 0x4;
        sb[0x60] = 0x42;
        sb[0x78..0x78 + label.len()].copy_from_slice(label.as_bytes());
        d
    }

    /// A zeroed MiB with a btrfs superblock labelled `label` of `devices` devices.
    pub fn btrfs_head(label: &str, fsid: u8, devices: u64) -> Vec<u8> {
        let mut d = vec![0u8; WINDOW];
        let sb = &mut d[BTRFS_SB..BTRFS_SB + 4096];
        sb[0x20..0x30].fill(fsid);
        sb[0x40..0x48].copy_from_slice(BTRFS_MAGIC);
        sb[0x88..0x90].copy_from_slice(&devices.to_le_bytes());
        sb[0x12b..0x12b + label.len()].copy_from_slice(label.as_bytes());
        d
    }

    fn blank() -> Vec<u8> {
        vec![0u8; WINDOW]
    }

    fn check(head: &[u8]) -> Option<(String, u64)> {
        let size = 64 << 20;
        not_blank(head, &blank(), size - WINDOW as u64, size).map(|f| (f.what, f.offset))
    }

    #[test]
    fn ext4_label_and_state() {
        let fs = ext(&ext4_head("ramkey-pool", true)).unwrap();
        assert_eq!(
            (fs.kind.to_string(), fs.label.as_str(), fs.unclean),
            ("ext4".into(), "ramkey-pool", false)
        );
        assert!(ext(&ext4_head("x", false)).unwrap().unclean);
        let mut recovering = ext4_head("x", true);
        recovering[EXT_SB + 0x60] |= 0x4;
        assert!(ext(&recovering).unwrap().unclean, "needs_recovery");
        assert_eq!(ext(&blank()), None);
        assert_eq!(ext(&[0u8; 100]), None, "short");
    }

    #[test]
    fn btrfs_label() {
        let fs = pool_fs(&btrfs_head("ramkey-pool", 7, 2)).unwrap();
        assert_eq!(
            (fs.kind, fs.label.as_str(), fs.num_devices),
            (FsKind::Btrfs, "ramkey-pool", 2)
        );
        assert_eq!(fs.fsid, [7; 16]);
    }

    #[test]
    fn blank_disk_is_blank() {
        assert_eq!(check(&blank()), None);
    }

    #[test]
    fn filesystems_are_named_with_offsets() {
        assert_eq!(
            check(&ext4_head("data", true)),
            Some(("an ext4 filesystem labelled \"data\"".into(), 1024))
        );
        assert_eq!(
            check(&btrfs_head("", 1, 1)),
            Some(("a btrfs filesystem (no label)".into(), 65600))
        );
        let cases: &[(usize, &[u8], &str)] = &[
            (0, b"XFSB", "an xfs filesystem"),
            (4086, b"SWAPSPACE2", "a swap area"),
            (512, b"LABELONE", "an LVM2 physical volume"),
            (0, b"LUKS\xba\xbe", "a LUKS encrypted volume"),
            (32769, b"CD001", "an iso9660 filesystem"),
            (0, b"hsqs", "a squashfs filesystem"),
            (512, b"EFI PART", "a GPT partition table"),
            (4096, &MD_MAGIC.to_le_bytes(), "a Linux RAID (mdraid) member"),
            ((128 << 10) + 2048, &ZFS_MAGIC.to_le_bytes(), "a ZFS pool member"),
        ];
        for &(at, magic, what) in cases {
            let mut d = blank();
            d[at..at + magic.len()].copy_from_slice(magic);
            assert_eq!(check(&d), Some((what.into(), at as u64)), "{what}");
        }
    }

    #[test]
    fn fat_mbr_and_unknown_data() {
        let mut fat = blank();
        fat[..512].copy_from_slice(&crate::blkid::fixture_sector(crate::blkid::FatKind::Fat32, "STICK"));
        assert_eq!(check(&fat), Some(("a FAT filesystem labelled \"STICK\"".into(), 0)));
        let mut mbr = blank();
        mbr[0x1BE + 4] = 0x83;
        mbr[510..512].copy_from_slice(&[0x55, 0xAA]);
        assert_eq!(check(&mbr), Some(("an MBR partition table".into(), 0x1BE)));
        let mut junk = blank();
        junk[700_000] = 1;
        assert_eq!(check(&junk), Some(("unknown data".into(), 700_000)));
    }

    #[test]
    fn end_of_disk_signatures() {
        let size: u64 = 64 << 20;
        let tail_at = size - WINDOW as u64;
        let mut tail = blank();
        let md = (size & !0xFFFF) - 0x10000;
        tail[(md - tail_at) as usize..][..4].copy_from_slice(&MD_MAGIC.to_le_bytes());
        let f = not_blank(&blank(), &tail, tail_at, size).unwrap();
        assert_eq!((f.what.as_str(), f.offset), ("a Linux RAID (mdraid) member", md));
        let mut tail = blank();
        tail[WINDOW - 512..][..8].copy_from_slice(b"EFI PART");
        let f = not_blank(&blank(), &tail, tail_at, size).unwrap();
        assert_eq!(f.offset, size - 512);
        let mut tail = blank();
        let at = WINDOW - (512 << 10) + (128 << 10);
        tail[at..at + 8].copy_from_slice(&ZFS_MAGIC.swap_bytes().to_le_bytes());
        let f = not_blank(&blank(), &tail, tail_at, size).unwrap();
        assert_eq!((f.what.as_str(), f.offset), ("a ZFS pool member", tail_at + at as u64));
    }
}
