//! The filesystems a pool can be (ext2/3/4, btrfs), read from their superblocks: kind,
//! label, state. What makes a disk "not blank" is in [`super::signatures`].

use std::fmt;

/// How much of a disk's start holds both superblocks.
pub const HEAD: usize = 128 << 10;

/// The ext2/3/4 superblock offset and its magic.
pub const EXT_SB: usize = 1024;
const EXT_MAGIC: u16 = 0xEF53;
/// The btrfs primary superblock offset and its magic (at +0x40).
pub const BTRFS_SB: usize = 64 << 10;
const BTRFS_MAGIC: &[u8] = b"_BHRfS_M";

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
    /// btrfs: this device's id in the filesystem (its superblock's `dev_item`; 1 for ext4).
    pub devid: u64,
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
        devid: 1,
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
        devid: le64(sb, 0xc9)?,
    })
}

/// The pool-capable filesystem at the start of a device, if any.
pub fn pool_fs(head: &[u8]) -> Option<PoolFs> {
    ext(head).or_else(|| btrfs(head))
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A zeroed MiB with an ext4 superblock labelled `label`.
    pub fn ext4_head(label: &str, clean: bool) -> Vec<u8> {
        let mut d = vec![0u8; 1 << 20];
        let sb = &mut d[EXT_SB..EXT_SB + 1024];
        sb[0x38..0x3A].copy_from_slice(&EXT_MAGIC.to_le_bytes());
        sb[0x3A..0x3C].copy_from_slice(&u16::from(clean).to_le_bytes());
        sb[0x5C] = 0x4;
        sb[0x60] = 0x42;
        sb[0x78..0x78 + label.len()].copy_from_slice(label.as_bytes());
        d
    }

    /// A zeroed MiB with a btrfs superblock labelled `label` of `devices` devices (this one
    /// devid 1).
    pub fn btrfs_head(label: &str, fsid: u8, devices: u64) -> Vec<u8> {
        btrfs_member(label, fsid, devices, 1)
    }

    /// A zeroed MiB with the superblock of the device `devid` of a btrfs filesystem labelled
    /// `label` of `devices` devices.
    pub fn btrfs_member(label: &str, fsid: u8, devices: u64, devid: u64) -> Vec<u8> {
        let mut d = vec![0u8; 1 << 20];
        let sb = &mut d[BTRFS_SB..BTRFS_SB + 4096];
        sb[0x20..0x30].fill(fsid);
        sb[0x40..0x48].copy_from_slice(BTRFS_MAGIC);
        sb[0x88..0x90].copy_from_slice(&devices.to_le_bytes());
        sb[0xc9..0xd1].copy_from_slice(&devid.to_le_bytes());
        sb[0x12b..0x12b + label.len()].copy_from_slice(label.as_bytes());
        d
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
        assert_eq!(ext(&[0u8; 4096]), None);
        assert_eq!(ext(&[0u8; 100]), None, "short");
    }

    #[test]
    fn btrfs_label() {
        let fs = pool_fs(&btrfs_member("ramkey-pool", 7, 2, 3)).unwrap();
        assert_eq!(
            (fs.kind, fs.label.as_str(), fs.num_devices, fs.devid),
            (FsKind::Btrfs, "ramkey-pool", 2, 3)
        );
        assert_eq!(fs.fsid, [7; 16]);
        assert_eq!(pool_fs(&ext4_head("x", true)[..2000]), None, "short");
    }
}
