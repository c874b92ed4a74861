//! syslinux's auxiliary data vector (ADV): the boot-once label in the last two sectors of
//! `ldlinux.sys`, read and written in place.
//!
//! The ADV is two identical 512-byte copies at the end of the file. Each copy: head magic
//! `0x5a2d2fa5` (u32 LE), a checksum (u32 LE), 500 bytes of records, tail magic `0xdd28bf64`;
//! the checksum makes the u32 words from offset 4 to 508 add up to `0xa3041767`. A record is
//! a tag byte, a length byte and that many bytes; tag 0 ends the list, tag 1 is the label to
//! boot once. A reader takes copy 0 if it is valid, else copy 1, else an empty ADV, so a
//! write torn between the copies leaves the old ADV or the new one.
//!
//! syslinux's core knows the sectors the installer recorded, not the file: the file is
//! never truncated, recreated or resized, only its last 1024 bytes are overwritten.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The tag of the label to boot once (`ADV_BOOTONCE`).
pub const BOOT_ONCE: u8 = 1;
/// One copy of the ADV.
pub const COPY_LEN: usize = 512;
/// Head magic.
const MAGIC_HEAD: u32 = 0x5a2d_2fa5;
/// What the words from offset 4 to 508 add up to.
const MAGIC_SUM: u32 = 0xa304_1767;
/// Tail magic.
const MAGIC_TAIL: u32 = 0xdd28_bf64;
/// Where the records are in a copy.
const DATA: std::ops::Range<usize> = 8..COPY_LEN - 4;

/// Reading or writing the ADV failed.
#[derive(Debug, thiserror::Error)]
pub enum AdvError {
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file cannot hold an ADV.
    #[error(
        "{}: {len} bytes, too short for syslinux's ADV (two 512-byte sectors at its end): not an ldlinux.sys; reflash the stick with `ramkey flash --keep-config`",
        path.display()
    )]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The label is not one syslinux could name.
    #[error("boot-once label {label:?} for {}: a label is 1 to 255 printable characters without spaces", path.display())]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// The label refused.
        label: String,
    },
    /// The records would not fit.
    #[error(
        "{}: no room in syslinux's ADV for the boot-once label {label:?} ({need} bytes, {room} free): clear the other records with `extlinux --reset-adv` or reflash the stick",
        path.display()
    )]
    NoRoom {
        /// The file.
        path: PathBuf,
        /// The label refused.
        label: String,
        /// Bytes the record needs.
        need: usize,
        /// Bytes free.
        room: usize,
    },
}

/// The records of an ADV, in order: (tag, value), no tag 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adv {
    records: Vec<(u8, Vec<u8>)>,
}

impl Adv {
    /// Parses one 512-byte copy; `None` when its magics or checksum are wrong.
    ///
    /// The records are read as syslinux does: up to tag 0, the end, or a record that runs
    /// past the end (dropped, as the installer overwrites it).
    pub fn parse(copy: &[u8; COPY_LEN]) -> Option<Adv> {
        let sum = (4..COPY_LEN - 4)
            .step_by(4)
            .fold(0u32, |sum, at| sum.wrapping_add(word(copy, at)));
        if word(copy, 0) != MAGIC_HEAD || word(copy, COPY_LEN - 4) != MAGIC_TAIL || sum != MAGIC_SUM {
            return None;
        }
        let data = &copy[DATA];
        let mut records = Vec::new();
        let mut at = 0;
        while at + 2 <= data.len() && data[at] != 0 {
            let (tag, len) = (data[at], usize::from(data[at + 1]));
            let Some(value) = data.get(at + 2..at + 2 + len) else {
                break;
            };
            records.push((tag, value.to_vec()));
            at += 2 + len;
        }
        Some(Adv { records })
    }

    /// The copy's 512 bytes: magics, checksum, the records, zeros.
    ///
    /// The caller has checked that the records fit ([`Adv::room`]).
    pub fn encode(&self) -> [u8; COPY_LEN] {
        let mut copy = [0u8; COPY_LEN];
        let mut at = DATA.start;
        for (tag, value) in &self.records {
            copy[at] = *tag;
            copy[at + 1] = value.len() as u8;
            copy[at + 2..at + 2 + value.len()].copy_from_slice(value);
            at += 2 + value.len();
        }
        copy[..4].copy_from_slice(&MAGIC_HEAD.to_le_bytes());
        let sum = checksum(&copy[DATA]);
        copy[4..8].copy_from_slice(&sum.to_le_bytes());
        copy[COPY_LEN - 4..].copy_from_slice(&MAGIC_TAIL.to_le_bytes());
        copy
    }

    /// The value of `tag`, if set.
    pub fn get(&self, tag: u8) -> Option<&[u8]> {
        self.records.iter().find(|(t, _)| *t == tag).map(|(_, v)| v.as_slice())
    }

    /// Sets `tag` to `value` (at the end, as syslinux does) or removes it (`None`); other
    /// records are kept. `Err` holds the bytes the record needs and the room left when it
    /// would not fit (the ADV is then unchanged).
    pub fn set(&mut self, tag: u8, value: Option<&[u8]>) -> Result<(), (usize, usize)> {
        let mut records: Vec<_> = self.records.iter().filter(|(t, _)| *t != tag).cloned().collect();
        if let Some(value) = value {
            let room = Adv {
                records: records.clone(),
            }
            .room();
            let need = 2 + value.len();
            if value.len() > 255 || need > room {
                return Err((need, room));
            }
            records.push((tag, value.to_vec()));
        }
        self.records = records;
        Ok(())
    }

    /// Bytes free for records.
    pub fn room(&self) -> usize {
        let used: usize = self.records.iter().map(|(_, v)| 2 + v.len()).sum();
        DATA.len().saturating_sub(used)
    }
}

/// The u32 LE at `at`.
fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// The checksum of a copy's 500 data bytes: `0xa3041767` minus their u32 words (wrapping).
pub fn checksum(data: &[u8]) -> u32 {
    data.chunks_exact(4)
        .fold(MAGIC_SUM, |sum, w| sum.wrapping_sub(word(w, 0)))
}

fn io<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> AdvError + 'p {
    move |source| AdvError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The open file, its length (at least 1024) and its two copies.
fn load(ldlinux: &Path, write: bool) -> Result<(File, u64, [[u8; COPY_LEN]; 2]), AdvError> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .open(ldlinux)
        .map_err(io("open", ldlinux))?;
    let len = file.metadata().map_err(io("stat", ldlinux))?.len();
    if len < 2 * COPY_LEN as u64 {
        return Err(AdvError::TooShort {
            path: ldlinux.to_owned(),
            len,
        });
    }
    let mut copies = [[0u8; COPY_LEN]; 2];
    for (n, copy) in copies.iter_mut().enumerate() {
        file.read_exact_at(copy, offset(len, n))
            .map_err(io("read the ADV of", ldlinux))?;
    }
    Ok((file, len, copies))
}

/// Where copy `n` starts in a file of `len` bytes.
fn offset(len: u64, n: usize) -> u64 {
    len - ((2 - n) * COPY_LEN) as u64
}

/// Copy 0 if valid, else copy 1, else an empty ADV.
fn current(copies: &[[u8; COPY_LEN]; 2]) -> Adv {
    copies.iter().find_map(Adv::parse).unwrap_or_default()
}

/// The ADV of `ldlinux` (an empty one when neither copy is valid).
pub fn read(ldlinux: &Path) -> Result<Adv, AdvError> {
    let (_, _, copies) = load(ldlinux, false)?;
    Ok(current(&copies))
}

/// The label armed to boot once, if any.
pub fn boot_once(ldlinux: &Path) -> Result<Option<String>, AdvError> {
    Ok(read(ldlinux)?
        .get(BOOT_ONCE)
        .map(|label| String::from_utf8_lossy(label).into_owned()))
}

/// Arms syslinux to boot `label` once (`None` clears it), keeping the ADV's other records.
///
/// Copy 0 is written in place and synced, then copy 1; when both already hold the result,
/// nothing is written. An ADV with neither copy valid is replaced by a fresh one, as the
/// installer does.
pub fn set_boot_once(ldlinux: &Path, label: Option<&str>) -> Result<(), AdvError> {
    if let Some(label) = label
        && (label.is_empty() || label.len() > 255 || !label.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(AdvError::BadLabel {
            path: ldlinux.to_owned(),
            label: label.to_owned(),
        });
    }
    let (file, len, copies) = load(ldlinux, true)?;
    let mut adv = current(&copies);
    adv.set(BOOT_ONCE, label.map(str::as_bytes))
        .map_err(|(need, room)| AdvError::NoRoom {
            path: ldlinux.to_owned(),
            label: label.unwrap_or_default().to_owned(),
            need,
            room,
        })?;
    let bytes = adv.encode();
    if copies.iter().all(|copy| *copy == bytes) {
        return Ok(());
    }
    for n in 0..2 {
        file.write_all_at(&bytes, offset(len, n))
            .map_err(io("write the ADV of", ldlinux))?;
        file.sync_all().map_err(io("fsync", ldlinux))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "adv_tests.rs"]
mod tests;
