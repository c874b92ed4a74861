//! Why a disk is not blank: filesystems, RAID/LVM/LUKS headers, partition tables, any data.
//!
//! Looked at: the first and the last MiB of the disk, where blkid and wipefs find their
//! magics, and the common partition starts (sector 63, 1 MiB, 2 MiB), where a disk whose
//! partition table was wiped still holds its partitions' superblocks (blkid and wipefs,
//! which probe the disk's start, see nothing there).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::probe::{self, FsKind};

const MIB: u64 = 1 << 20;

/// How much of each end of a disk is read.
pub const WINDOW: u64 = MIB;

/// How much is read at each partition start: a ZFS vdev's first two labels (2 x 256 KiB),
/// which also covers every other superblock looked for there.
const PART_WINDOW: u64 = 2 * ZFS_LABEL;

/// The partition starts partitioning tools have used: DOS cylinder alignment (sector 63),
/// 1 MiB (2048 sectors, today's default) and 2 MiB (4096 sectors).
pub const PARTITION_STARTS: &[(u64, &str)] = &[(63 * 512, "sector 63"), (2048 * 512, "1 MiB"), (4096 * 512, "2 MiB")];

/// How many MiB from the start `dd` zeroes to remove what is found past the start.
pub const ZERO_MIB: u64 = (4096 * 512 + PART_WINDOW).div_ceil(MIB);

/// The mdraid superblock magic (little-endian).
const MD_MAGIC: u32 = 0xa92b_4efc;
/// The ZFS uberblock magic (either byte order).
const ZFS_MAGIC: u64 = 0x00ba_b10c;
/// `sizeof(vdev_label_t)`: a ZFS vdev label; its uberblock ring is its second half.
const ZFS_LABEL: u64 = 256 << 10;

/// Why a disk is not blank: what was found, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// A phrase: `an ext4 filesystem labelled "data"`, `a GPT partition table`, ...
    pub what: String,
    /// The byte offset of the signature on the disk (`None`: the probe did not say).
    pub offset: Option<u64>,
    /// How the owner removes it, should the data not be needed.
    pub remedy: Remedy,
}

/// How to remove what was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// `wipefs -a` sees it and erases it.
    Wipefs,
    /// wipefs does not see it (a partition's superblock without a table, unknown data):
    /// zero the disk's first [`ZERO_MIB`] MiB.
    Zero,
}

impl Found {
    /// What the owner can do about it, naming the disk's node and the `[pool]` key.
    pub fn advice(&self, node: &Path, key: &str) -> String {
        let node = node.display();
        match self.remedy {
            Remedy::Wipefs => {
                format!(
                    "wipe it yourself with wipefs -a {node} if its data is not needed, or remove it from [pool] {key}"
                )
            }
            Remedy::Zero => format!(
                "wipefs does not see it: zero the disk's first {ZERO_MIB} MiB yourself with \
                 dd if=/dev/zero of={node} bs=1M count={ZERO_MIB} if its data is not needed, or remove it \
                 from [pool] {key}"
            ),
        }
    }
}

fn found(what: impl Into<String>, offset: u64) -> Option<Found> {
    Some(Found {
        what: what.into(),
        offset: Some(offset),
        remedy: Remedy::Wipefs,
    })
}

/// The parts of a disk the probes look at, each read as far as the device gives it.
#[derive(Debug)]
pub struct Sample {
    size: u64,
    windows: Vec<(u64, Vec<u8>)>,
}

/// Reads up to `len` bytes at `at`: fewer, even none, when the device ends early (the rest
/// is absent); an error only when a read fails.
pub fn read_window(file: &File, at: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], at + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(done);
    Ok(buf)
}

impl Sample {
    /// Reads the first and last MiB and the partition starts of `file`, a disk of `size`
    /// bytes (as the kernel says; a shorter device leaves bytes absent, never a panic).
    pub fn read(file: &File, size: u64) -> io::Result<Sample> {
        let mut regions = vec![(0, WINDOW.min(size))];
        for &(start, _) in PARTITION_STARTS {
            if start + PART_WINDOW > WINDOW && start < size {
                regions.push((start, PART_WINDOW.min(size - start)));
            }
        }
        let tail = size.saturating_sub(WINDOW);
        if tail > 0 {
            regions.push((tail, size - tail));
        }
        let mut windows = Vec::new();
        for (at, len) in regions {
            windows.push((at, read_window(file, at, len)?));
        }
        Ok(Sample { size, windows })
    }

    /// A sample of a `size`-byte disk made of `windows` (offset, bytes).
    #[cfg(test)]
    pub fn of(size: u64, windows: Vec<(u64, Vec<u8>)>) -> Sample {
        Sample { size, windows }
    }

    /// The `len` bytes at `at`, when one window holds all of them.
    fn bytes(&self, at: u64, len: usize) -> Option<&[u8]> {
        self.windows.iter().find_map(|(start, data)| {
            let from = usize::try_from(at.checked_sub(*start)?).ok()?;
            data.get(from..from.checked_add(len)?)
        })
    }

    /// The longest run of bytes read from `at` on (empty when none).
    fn from(&self, at: u64) -> &[u8] {
        let runs = self.windows.iter().filter_map(|(start, data)| {
            let from = usize::try_from(at.checked_sub(*start)?).ok()?;
            data.get(from..)
        });
        runs.max_by_key(|r| r.len()).unwrap_or_default()
    }

    fn has(&self, at: u64, magic: &[u8]) -> bool {
        self.bytes(at, magic.len()) == Some(magic)
    }

    fn le32(&self, at: u64) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(at, 4)?.try_into().ok()?))
    }

    fn le64(&self, at: u64) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(at, 8)?.try_into().ok()?))
    }
}

fn labelled(what: &str, label: &str) -> String {
    if label.is_empty() {
        format!("{what} (no label)")
    } else {
        format!("{what} labelled {label:?}")
    }
}

/// The first uberblock magic (either byte order) in the ring of the ZFS label at `label`
/// (the label's second 128 KiB, one uberblock per KiB at the least).
fn zfs_ring(s: &Sample, label: u64) -> Option<u64> {
    let ring = label + ZFS_LABEL / 2;
    (ring..label + ZFS_LABEL).step_by(1024).find(|&at| {
        s.le64(at)
            .is_some_and(|v| v == ZFS_MAGIC || v.swap_bytes() == ZFS_MAGIC)
    })
}

/// A filesystem or volume whose superblock starts at `start` (the disk's start or a
/// partition's): what it is and the absolute offset of its magic.
fn volume_at(s: &Sample, start: u64) -> Option<(String, u64)> {
    if let Some(fs) = probe::pool_fs(s.from(start)) {
        let (article, at) = match fs.kind {
            FsKind::Btrfs => ("a", probe::BTRFS_SB + 0x40),
            FsKind::Ext(_) => ("an", probe::EXT_SB),
        };
        let what = labelled(&format!("{article} {} filesystem", fs.kind), &fs.label);
        return Some((what, start + at as u64));
    }
    let magics: &[(u64, &[u8], &str)] = &[
        (0, b"XFSB", "an xfs filesystem"),
        (0, b"LUKS\xba\xbe", "a LUKS encrypted volume"),
        (0, b"hsqs", "a squashfs filesystem"),
        (3, b"NTFS    ", "an NTFS filesystem"),
        (3, b"EXFAT   ", "an exFAT filesystem"),
        (3, b"-FVE-FS-", "a BitLocker encrypted volume"),
        (32769, b"CD001", "an iso9660 filesystem"),
    ];
    for &(at, magic, what) in magics {
        if s.has(start + at, magic) {
            return Some((what.into(), start + at));
        }
    }
    // The swap header's magic ends its first page: 4 KiB on x86, up to 64 KiB elsewhere.
    for page in [4096u64, 8192, 16384, 65536] {
        for magic in [b"SWAPSPACE2", b"SWAP-SPACE"] {
            if s.has(start + page - 10, magic) {
                return Some(("a swap area".into(), start + page - 10));
            }
        }
    }
    for sector in 0..4 {
        if s.has(start + sector * 512, b"LABELONE") {
            return Some(("an LVM2 physical volume".into(), start + sector * 512));
        }
    }
    // mdraid 1.1 at the start, 1.2 at 4 KiB (0.90 and 1.0 sit at the end: see `tail`).
    for at in [0, 4096] {
        if s.le32(start + at) == Some(MD_MAGIC) {
            return Some(("a Linux RAID (mdraid) member".into(), start + at));
        }
    }
    for label in [start, start + ZFS_LABEL] {
        if let Some(at) = zfs_ring(s, label) {
            return Some(("a ZFS pool member".into(), at));
        }
    }
    let boot = s.bytes(start, 512)?;
    if boot[510..512] == [0x55, 0xAA] && (boot[0x36..0x39] == *b"FAT" || boot[0x52..0x55] == *b"FAT") {
        let fat = crate::storage::blkid::probe_fat(boot)
            .and_then(|f| f.label)
            .unwrap_or_default();
        return Some((labelled("a FAT filesystem", &fat), start));
    }
    None
}

/// A partition table at the disk's start.
fn table(s: &Sample) -> Option<Found> {
    for at in [512, 4096] {
        if s.has(at, b"EFI PART") {
            return found("a GPT partition table", at);
        }
    }
    let mbr = s.bytes(0, 512)?;
    if mbr[510..512] == [0x55, 0xAA] && mbr[0x1BE..0x1FE].iter().any(|&b| b != 0) {
        return found("an MBR partition table", 0x1BE);
    }
    None
}

/// Signatures at the disk's end: mdraid 0.90 and 1.0, the backup GPT header, ZFS labels 2
/// and 3 (the last two 256 KiB of the size rounded down to 256 KiB).
fn tail(s: &Sample) -> Option<Found> {
    let size = s.size;
    // md 0.90: the last 64 KiB-aligned 64 KiB block; md 1.0: 8 KiB from the end, 4 KiB aligned.
    let md090 = (size & !0xFFFF).checked_sub(0x10000);
    let md10 = size.checked_sub(8192).map(|at| at & !4095);
    for at in [md090, md10].into_iter().flatten() {
        if s.le32(at) == Some(MD_MAGIC) {
            return found("a Linux RAID (mdraid) member", at);
        }
    }
    for sector in [512, 4096] {
        if let Some(at) = size.checked_sub(sector)
            && s.has(at, b"EFI PART")
        {
            return found("a GPT partition table (backup header)", at);
        }
    }
    let end = size - size % ZFS_LABEL;
    for label in [end.checked_sub(2 * ZFS_LABEL), end.checked_sub(ZFS_LABEL)] {
        if let Some(at) = label.and_then(|l| zfs_ring(s, l)) {
            return found("a ZFS pool member", at);
        }
    }
    None
}

/// Why a disk is not blank, or `None` when it is: a known signature at its start, a
/// partition table, a filesystem where a partition usually starts, a signature at its end,
/// else any non-zero byte outside the last MiB ("unknown data").
pub fn not_blank(s: &Sample) -> Option<Found> {
    if let Some((what, at)) = volume_at(s, 0) {
        return found(what, at);
    }
    if let Some(f) = table(s) {
        return Some(f);
    }
    for &(start, name) in PARTITION_STARTS {
        if let Some((what, at)) = volume_at(s, start) {
            return Some(Found {
                what: format!("{what} in a partition starting at {name}"),
                offset: Some(at),
                remedy: Remedy::Zero,
            });
        }
    }
    if let Some(f) = tail(s) {
        return Some(f);
    }
    let tail_at = s.size.saturating_sub(WINDOW);
    let data = s.windows.iter().filter(|(at, _)| *at == 0 || *at < tail_at);
    let at = data
        .filter_map(|(at, bytes)| Some(at + bytes.iter().position(|&b| b != 0)? as u64))
        .min()?;
    Some(Found {
        what: "unknown data".into(),
        offset: Some(at),
        remedy: Remedy::Zero,
    })
}

/// Reads `node` where the probes look and says why it is not blank (`None`: blank).
pub fn probe_device(node: &Path) -> io::Result<Option<Found>> {
    let file = File::open(node)?;
    let size = io::Seek::seek(&mut &file, io::SeekFrom::End(0))?;
    Ok(not_blank(&Sample::read(&file, size)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::pool::probe::tests::{btrfs_head, ext4_head};

    /// `head` as the first MiB of a blank 64 MiB disk.
    fn check(head: &[u8]) -> Option<(String, u64)> {
        let s = Sample::of(64 * MIB, vec![(0, head.to_vec())]);
        not_blank(&s).map(|f| (f.what, f.offset.unwrap()))
    }

    fn blank() -> Vec<u8> {
        vec![0u8; MIB as usize]
    }

    #[test]
    fn blank_disk_is_blank() {
        assert_eq!(check(&blank()), None);
        assert_eq!(not_blank(&Sample::of(0, vec![])), None, "empty");
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
            ((384 << 10) + 1024, &ZFS_MAGIC.to_be_bytes(), "a ZFS pool member"),
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
        fat[..512].copy_from_slice(&crate::storage::blkid::fixture_sector(
            crate::storage::blkid::FatKind::Fat32,
            "STICK",
        ));
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
        let size: u64 = 64 * MIB;
        let tail_at = size - WINDOW;
        let at_end = |at: u64, bytes: &[u8]| {
            let mut tail = blank();
            let o = (at - tail_at) as usize;
            tail[o..o + bytes.len()].copy_from_slice(bytes);
            let s = Sample::of(size, vec![(0, blank()), (tail_at, tail)]);
            not_blank(&s).map(|f| (f.what, f.offset.unwrap()))
        };
        let md = (size & !0xFFFF) - 0x10000;
        assert_eq!(
            at_end(md, &MD_MAGIC.to_le_bytes()),
            Some(("a Linux RAID (mdraid) member".into(), md))
        );
        assert_eq!(
            at_end(size - 512, b"EFI PART"),
            Some(("a GPT partition table (backup header)".into(), size - 512))
        );
        let l2 = size - (512 << 10) + (128 << 10);
        assert_eq!(
            at_end(l2, &ZFS_MAGIC.swap_bytes().to_le_bytes()),
            Some(("a ZFS pool member".into(), l2))
        );
    }

    #[test]
    fn a_partition_superblock_is_zeroed_not_wiped() {
        let mut part = vec![0u8; PART_WINDOW as usize];
        part[..4].copy_from_slice(b"XFSB");
        let s = Sample::of(64 * MIB, vec![(0, blank()), (MIB, part)]);
        let f = not_blank(&s).unwrap();
        assert_eq!(f.remedy, Remedy::Zero);
        assert_eq!(
            f.advice(Path::new("/dev/vdb"), "disks"),
            "wipefs does not see it: zero the disk's first 3 MiB yourself with dd if=/dev/zero of=/dev/vdb \
             bs=1M count=3 if its data is not needed, or remove it from [pool] disks"
        );
        let f = not_blank(&Sample::of(64 * MIB, vec![(0, ext4_head("x", true))])).unwrap();
        assert_eq!(
            f.advice(Path::new("/dev/vdb"), "mirror"),
            "wipe it yourself with wipefs -a /dev/vdb if its data is not needed, or remove it from [pool] mirror"
        );
    }

    /// A device file of `len` bytes with `bytes` at `at`, and what is found there.
    type Case<'a> = (u64, u64, &'a [u8], Option<(&'a str, u64)>);

    /// A device that ends before the size it claims (a short read) leaves bytes absent.
    #[test]
    fn a_truncated_device_never_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short");
        let claimed = 64 * MIB;
        let cases: [Case<'_>; 4] = [
            // The ext4 superblock is there: found.
            (
                MIB + 3000,
                1024,
                &ext4_head("data", true)[1024..2048],
                Some(("an ext4 filesystem labelled \"data\"", 1024)),
            ),
            // A superblock cut short at 1 MiB: not a filesystem, but data all the same.
            (
                MIB + 1500,
                MIB + 1024,
                &ext4_head("data", true)[1024..2048],
                Some(("unknown data", MIB + 1024 + 0x38)),
            ),
            // Half a ZFS label ring at 1 MiB: what is there is looked at, the rest is absent.
            (
                MIB + (130 << 10),
                MIB + (129 << 10),
                &ZFS_MAGIC.to_le_bytes(),
                Some(("a ZFS pool member in a partition starting at 1 MiB", MIB + (129 << 10))),
            ),
            // Nothing but zeros, then nothing at all.
            (100, 0, &[], None),
        ];
        for (len, at, bytes, expected) in cases {
            let file = File::create(&path).unwrap();
            file.write_all_at(bytes, at).unwrap();
            file.set_len(len).unwrap();
            let file = File::open(&path).unwrap();
            let s = Sample::read(&file, claimed).unwrap();
            let got = not_blank(&s).map(|f| (f.what, f.offset.unwrap()));
            assert_eq!(got, expected.map(|(w, o)| (w.to_owned(), o)), "{len}-byte device");
        }
        assert_eq!(read_window(&File::open(&path).unwrap(), 50, 100).unwrap().len(), 50);
        assert!(
            read_window(&File::open(&path).unwrap(), claimed, 100)
                .unwrap()
                .is_empty()
        );
    }
}
