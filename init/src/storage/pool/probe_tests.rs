//! Blankness probed through a device file: fixtures written into sparse temp files, read
//! by [`find::not_blank`] the way the pool step reads a disk.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::find;
use super::probe::tests::{btrfs_head, ext4_head};

const MIB: u64 = 1 << 20;

/// A sparse file of `size` bytes under `dir` with `writes` (offset, bytes) in it.
fn device(dir: &Path, size: u64, writes: &[(u64, &[u8])]) -> PathBuf {
    let path = dir.join("disk.img");
    let file = File::create(&path).unwrap();
    file.set_len(size).unwrap();
    for (at, bytes) in writes {
        file.write_all_at(bytes, *at).unwrap();
    }
    path
}

/// What `find::not_blank` says about a `size`-byte disk with `writes`.
fn check(size: u64, writes: &[(u64, &[u8])]) -> Option<(String, u64)> {
    let dir = tempfile::tempdir().unwrap();
    let found = find::not_blank(&device(dir.path(), size, writes)).unwrap()?;
    Some((found.what, found.offset.expect("PID 1's probes say where")))
}

/// The ext4 superblock of `ext4_head` (1 KiB, to be written at a filesystem's start + 1024).
fn ext4_superblock(label: &str) -> Vec<u8> {
    ext4_head(label, true)[1024..2048].to_vec()
}

/// A FAT32 boot sector labelled `label`.
fn fat32(label: &str) -> Vec<u8> {
    crate::storage::blkid::fixture_sector(crate::storage::blkid::FatKind::Fat32, label)
}

/// A boot sector with `oem` at +3 and the 0x55AA mark (NTFS, exFAT, BitLocker).
fn boot_sector(oem: &[u8; 8]) -> Vec<u8> {
    let mut s = vec![0u8; 512];
    s[0..3].copy_from_slice(&[0xEB, 0x52, 0x90]);
    s[3..11].copy_from_slice(oem);
    s[510..512].copy_from_slice(&[0x55, 0xAA]);
    s
}

#[test]
fn ext4_past_a_zeroed_first_mib_is_not_blank() {
    // A GPT disk whose table was wiped: the first MiB is zero, its partition is intact.
    let sb = ext4_superblock("data");
    assert_eq!(
        check(64 * MIB, &[(MIB + 1024, &sb)]),
        Some((
            "an ext4 filesystem labelled \"data\" in a partition starting at 1 MiB".into(),
            MIB + 1024
        ))
    );
}

#[test]
fn every_filesystem_at_every_common_partition_start() {
    let ext4 = ext4_superblock("data");
    let btrfs = btrfs_head("", 1, 1)[64 << 10..(64 << 10) + 4096].to_vec();
    let md = 0xa92b_4efc_u32.to_le_bytes();
    let zfs = 0x00ba_b10c_u64.to_be_bytes();
    // (offset from the partition's start, bytes, what is said, offset of the finding)
    let cases: Vec<(u64, Vec<u8>, &str, u64)> = vec![
        (1024, ext4, "an ext4 filesystem labelled \"data\"", 1024),
        (64 << 10, btrfs, "a btrfs filesystem (no label)", (64 << 10) + 0x40),
        (0, b"XFSB".to_vec(), "an xfs filesystem", 0),
        (0, fat32("OLD"), "a FAT filesystem labelled \"OLD\"", 0),
        (0, boot_sector(b"EXFAT   "), "an exFAT filesystem", 3),
        (0, boot_sector(b"NTFS    "), "an NTFS filesystem", 3),
        (0, boot_sector(b"-FVE-FS-"), "a BitLocker encrypted volume", 3),
        (4086, b"SWAPSPACE2".to_vec(), "a swap area", 4086),
        (0, b"LUKS\xba\xbe".to_vec(), "a LUKS encrypted volume", 0),
        (1536, b"LABELONE".to_vec(), "an LVM2 physical volume", 1536),
        (0, md.to_vec(), "a Linux RAID (mdraid) member", 0),
        (4096, md.to_vec(), "a Linux RAID (mdraid) member", 4096),
        (
            (128 << 10) + 3072,
            zfs.to_vec(),
            "a ZFS pool member",
            (128 << 10) + 3072,
        ),
        (
            (384 << 10) + 1024,
            zfs.to_vec(),
            "a ZFS pool member",
            (384 << 10) + 1024,
        ),
    ];
    let starts = [
        (63 * 512, "sector 63"),
        (MIB, "1 MiB"),
        (2 * MIB, "2 MiB"),
        (4096 * 512, "2 MiB"),
    ];
    for (start, name) in starts {
        for (at, bytes, what, found_at) in &cases {
            assert_eq!(
                check(64 * MIB, &[(start + at, bytes)]),
                Some((format!("{what} in a partition starting at {name}"), start + found_at)),
                "{what} at {start}"
            );
        }
    }
}

#[test]
fn new_whole_disk_signatures() {
    let cases: &[(u64, &[u8], &str, u64)] = &[
        (0, &boot_sector(b"NTFS    "), "an NTFS filesystem", 3),
        (0, &boot_sector(b"EXFAT   "), "an exFAT filesystem", 3),
        (8182, b"SWAPSPACE2", "a swap area", 8182),
        (16374, b"SWAPSPACE2", "a swap area", 16374),
        (65526, b"SWAPSPACE2", "a swap area", 65526),
    ];
    for (at, bytes, what, found_at) in cases {
        assert_eq!(
            check(64 * MIB, &[(*at, bytes)]),
            Some(((*what).into(), *found_at)),
            "{what}"
        );
    }
}

#[test]
fn zfs_end_labels_sit_at_the_256k_aligned_end() {
    // 64 MiB + 100 KiB: the labels' end is 64 MiB (rounded down to 256 KiB), not the size.
    let size = 64 * MIB + (100 << 10);
    let end = 64 * MIB;
    let l2 = end - (512 << 10);
    let l3 = end - (256 << 10);
    for (at, magic) in [
        (l2 + (128 << 10) + 5 * 1024, 0x00ba_b10c_u64.to_le_bytes()),
        (l3 + (128 << 10), 0x00ba_b10c_u64.to_be_bytes()),
        (l3 + (256 << 10) - 1024, 0x00ba_b10c_u64.to_le_bytes()),
    ] {
        assert_eq!(
            check(size, &[(at, &magic)]),
            Some(("a ZFS pool member".into(), at)),
            "magic at {at}"
        );
    }
    // Outside the uberblock rings (a label's first 128 KiB) the magic means nothing.
    let nvlist = l3 + (16 << 10);
    assert_eq!(check(size, &[(nvlist, &0x00ba_b10c_u64.to_le_bytes())]), None);
}

#[test]
fn a_zeroed_disk_is_blank_and_data_where_partitions_start_is_not() {
    assert_eq!(check(64 * MIB, &[]), None);
    assert_eq!(check(3 * MIB + 512, &[]), None, "small disk");
    assert_eq!(
        check(64 * MIB, &[(MIB + 4000, b"\x01")]),
        Some(("unknown data".into(), MIB + 4000))
    );
}
