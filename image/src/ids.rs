//! Shifting the owners of a squashfs payload into a zone's id range.
//!
//! A zone runs in its own user namespace, its root mapped to an unprivileged host uid
//! (`base`); the kernel this platform runs (6.1) cannot idmap a squashfs or overlayfs mount,
//! so the payload's files must be owned by host ids in the zone's range for its root to own
//! them. A squashfs stores every owner once, in its uid/gid table: an array of `u32` in
//! metadata blocks, reached through an index of block offsets named by the superblock. The
//! payload is written with that table uncompressed (`mksquashfs -noId`), so that [`shift`]
//! can overwrite it in place, every id plus `base`: a copy of the payload then mounts with
//! every file in the zone's range, and only those bytes differ.

use std::io::{Read, Seek, SeekFrom, Write};

use thiserror::Error;

use crate::squashfs::{MAGIC, SUPERBLOCK_SIZE};

/// How many ids a zone's range holds (a user namespace map of `0 base 65536`).
pub const RANGE: u32 = 65536;

const ID_COUNT_AT: u64 = 26;
const BYTES_USED_AT: u64 = 40;
const ID_TABLE_AT: u64 = 48;
/// The flag bit of a squashfs metadata block header: stored uncompressed.
const UNCOMPRESSED: u16 = 0x8000;
/// Bytes of data in a full metadata block.
const METADATA_SIZE: usize = 8192;

/// Why a payload's owners could not be shifted.
#[derive(Debug, Error)]
pub enum ShiftError {
    /// Reading or writing the copy.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not a squashfs 4 payload.
    #[error("not a squashfs payload (magic {0})")]
    NotSquashfs(String),
    /// The table is compressed: an image from before zones had user namespaces.
    #[error(
        "its uid/gid table is compressed: rebuild the image with this version of `ramkey image build` (which writes it with mksquashfs -noId)"
    )]
    CompressedIds,
    /// An owner outside `0..RANGE` cannot be mapped into the zone.
    #[error("a file is owned by id {0}, outside the 0..{RANGE} a zone maps")]
    OutOfRange(u32),
    /// The table's offsets point outside the payload.
    #[error("its uid/gid table is damaged ({0})")]
    Damaged(&'static str),
}

/// Rewrites the squashfs in `fs` (a copy of the payload, at offset 0) so that every owner
/// is `base` more: the uncompressed uid/gid table is overwritten in place, the same size;
/// no other byte changes.
pub fn shift<F: Read + Write + Seek>(fs: &mut F, base: u32) -> Result<(), ShiftError> {
    let mut head = [0u8; SUPERBLOCK_SIZE];
    fs.seek(SeekFrom::Start(0))?;
    fs.read_exact(&mut head)?;
    if head[..4] != MAGIC {
        return Err(ShiftError::NotSquashfs(head[..4].escape_ascii().to_string()));
    }
    let count = usize::from(u16_at(&head, ID_COUNT_AT));
    let bytes_used = u64_at(&head, BYTES_USED_AT);
    let table_at = u64_at(&head, ID_TABLE_AT);
    if count == 0 || table_at >= bytes_used {
        return Err(ShiftError::Damaged("no ids, or the table lies past the filesystem"));
    }
    let mut index = vec![0u8; (count * 4).div_ceil(METADATA_SIZE) * 8];
    fs.seek(SeekFrom::Start(table_at))?;
    fs.read_exact(&mut index)?;
    let mut left = count;
    for offset in index.chunks_exact(8) {
        let offset = u64_at(offset, 0);
        if offset >= table_at {
            return Err(ShiftError::Damaged("a block offset points past the index"));
        }
        let mut header = [0u8; 2];
        fs.seek(SeekFrom::Start(offset))?;
        fs.read_exact(&mut header)?;
        let header = u16::from_le_bytes(header);
        if header & UNCOMPRESSED == 0 {
            return Err(ShiftError::CompressedIds);
        }
        let ids = left.min(METADATA_SIZE / 4);
        if usize::from(header & !UNCOMPRESSED) < ids * 4 {
            return Err(ShiftError::Damaged(
                "a block holds fewer ids than the superblock counts",
            ));
        }
        let mut data = vec![0u8; ids * 4];
        fs.read_exact(&mut data)?;
        for id in data.chunks_exact_mut(4) {
            let old = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
            if old >= RANGE {
                return Err(ShiftError::OutOfRange(old));
            }
            id.copy_from_slice(&(old + base).to_le_bytes());
        }
        fs.seek(SeekFrom::Start(offset + 2))?;
        fs.write_all(&data)?;
        left -= ids;
    }
    fs.flush()?;
    Ok(())
}

fn u16_at(bytes: &[u8], at: u64) -> u16 {
    let at = at as usize;
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u64_at(bytes: &[u8], at: u64) -> u64 {
    let at = at as usize;
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, chown};

    use std::process::Command;

    use super::*;

    /// A squashfs of a tree owned by root, by uid 33 (www-data) and by uid 100 / gid 101,
    /// written with `options` by Debian's mksquashfs (the tool the builder uses).
    fn payload(dir: &std::path::Path, options: &[&str]) -> std::path::PathBuf {
        let tree = dir.join("tree");
        std::fs::create_dir_all(tree.join("var/www")).unwrap();
        std::fs::write(tree.join("var/www/index.html"), "hello").unwrap();
        std::fs::write(tree.join("data"), "kv").unwrap();
        chown(tree.join("var/www"), Some(33), Some(33)).unwrap();
        chown(tree.join("data"), Some(100), Some(101)).unwrap();
        let out = dir.join("payload.sqfs");
        let status = Command::new("mksquashfs")
            .arg(&tree)
            .arg(&out)
            .args(["-noappend", "-comp", "zstd", "-quiet", "-no-progress"])
            .args(options)
            .status()
            .expect("mksquashfs (squashfs-tools) is installed by `cargo xtask deps`");
        assert!(status.success());
        out
    }

    /// `unsquashfs -lln`'s owner column for `path` (numeric `uid/gid`).
    fn owner(image: &std::path::Path, path: &str) -> String {
        let out = Command::new("unsquashfs").arg("-lln").arg(image).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let line = text
            .lines()
            .find(|l| l.ends_with(&format!("squashfs-root{path}")))
            .unwrap_or_else(|| panic!("{path} not listed in:\n{text}"));
        line.split_whitespace().nth(1).unwrap().to_string()
    }

    #[test]
    fn every_owner_moves_into_the_range_and_nothing_else_changes() {
        // Owners other than our own need root, as the builder's own image build does.
        assert!(
            nix_is_root(),
            "this test chowns files: run it as root (cargo xtask test does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let image = payload(dir.path(), &["-noId"]);
        let before = std::fs::read(&image).unwrap();
        let mut file = std::fs::OpenOptions::new().read(true).write(true).open(&image).unwrap();
        shift(&mut file, 1_048_576).unwrap();
        drop(file);
        assert_eq!(owner(&image, "/var/www"), "1048609/1048609");
        assert_eq!(owner(&image, "/data"), "1048676/1048677");
        assert_eq!(owner(&image, "/var/www/index.html"), "1048576/1048576");
        // Only the three owners' bytes differ (each id's high bytes, 0 before).
        let after = std::fs::read(&image).unwrap();
        assert_eq!(before.len(), after.len());
        let differ = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert!((3..=6).contains(&differ), "{differ} bytes differ");
        // The file data reads back.
        let out = Command::new("unsquashfs")
            .args(["-cat"])
            .arg(&image)
            .arg("var/www/index.html")
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"hello");
    }

    #[test]
    fn an_image_with_a_compressed_table_is_refused_by_name() {
        assert!(
            nix_is_root(),
            "this test chowns files: run it as root (cargo xtask test does)"
        );
        let dir = tempfile::tempdir().unwrap();
        // Enough owners that zstd shrinks the table, so mksquashfs stores it compressed.
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        for uid in 1000..1300 {
            let file = tree.join(uid.to_string());
            std::fs::write(&file, "").unwrap();
            chown(&file, Some(uid), Some(uid)).unwrap();
        }
        let image = payload(dir.path(), &["-no-xattrs"]);
        let mut file = std::fs::OpenOptions::new().read(true).write(true).open(&image).unwrap();
        let err = shift(&mut file, 65536).unwrap_err().to_string();
        assert!(err.contains("compressed") && err.contains("rebuild"), "{err}");
    }

    /// A hand-made superblock whose one-block id table holds `id`.
    fn fake(id: u32) -> Vec<u8> {
        let mut head = crate::squashfs::Superblock::fake(200).to_vec();
        head[ID_COUNT_AT as usize] = 1;
        head[ID_TABLE_AT as usize..ID_TABLE_AT as usize + 8].copy_from_slice(&106u64.to_le_bytes());
        // One uncompressed block at 96 holding `id`, its index at 106.
        head.extend_from_slice(&(4u16 | UNCOMPRESSED).to_le_bytes());
        head.extend_from_slice(&id.to_le_bytes());
        head.extend_from_slice(&[0; 4]);
        head.extend_from_slice(&96u64.to_le_bytes());
        head.resize(200, 0);
        head
    }

    #[test]
    fn owners_outside_the_range_are_refused() {
        let err = shift(&mut std::io::Cursor::new(fake(70000)), 65536).unwrap_err();
        assert!(matches!(err, ShiftError::OutOfRange(70000)), "{err}");
        let mut shifted = std::io::Cursor::new(fake(33));
        shift(&mut shifted, 65536).unwrap();
        let bytes = shifted.into_inner();
        let table = u64_at(&bytes, ID_TABLE_AT) as usize;
        let block = u64_at(&bytes, table as u64) as usize;
        assert_eq!(bytes[block + 2..block + 6], (65536u32 + 33).to_le_bytes());
    }

    fn nix_is_root() -> bool {
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }
}
