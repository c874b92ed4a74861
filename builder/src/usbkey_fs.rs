//! The usbkey's FAT filesystem on a stick, an image file or a bare partition, read and written
//! without mounting: the partition is found through the GPT (`gptman`), else as a FAT
//! filesystem at the start (a "superfloppy" or a partition device such as `/dev/sdb1`), else
//! through an MBR; `fatfs` then works on that byte range through [`Slice`].
//!
//! [`Usbkey::replace`] is the power-safe write used for `config.toml`, the same order as
//! `ramkey_config::atomic` on a mounted FAT: the new text is complete and on the device
//! (`config.toml.new`) before the old one is touched, the old one is copied to
//! `config.toml.prev`, then `.new` takes the name. `fatfs` cannot rename over an existing
//! file, so the old entry is removed first: a power cut between those two directory writes
//! leaves `config.toml.new` and `config.toml.prev`, both complete, and no `config.toml`
//! ([`UsbkeyFsError::Missing`] then says which file to rename).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use gptman::GPT;

/// The filesystem label of the usbkey's partition.
pub const LABEL: &str = ramkey_config::USBKEY_LABEL;
/// Suffix of the file written before it replaces the config.
pub const NEW_SUFFIX: &str = ramkey_config::atomic::NEW_SUFFIX;
/// Suffix of the copy of the replaced config.
pub const PREV_SUFFIX: &str = ramkey_config::atomic::PREV_SUFFIX;
/// Sector size assumed for an MBR (GPT finds its own).
const MBR_SECTOR: u64 = 512;
/// MBR partition type of a GPT's protective entry.
const MBR_PROTECTIVE: u8 = 0xee;

/// A byte range of a file or device, as a stream of its own.
#[derive(Debug)]
pub struct Slice<T> {
    inner: T,
    start: u64,
    len: u64,
    pos: u64,
}

impl<T: Seek> Slice<T> {
    pub fn new(inner: T, start: u64, len: u64) -> Slice<T> {
        Slice {
            inner,
            start,
            len,
            pos: 0,
        }
    }

    /// Positions the inner stream and returns how many bytes are left in the slice.
    fn prepare(&mut self, want: usize) -> io::Result<usize> {
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        let left = usize::try_from(self.len.saturating_sub(self.pos)).unwrap_or(usize::MAX);
        Ok(want.min(left))
    }
}

impl<T: Read + Seek> Read for Slice<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.prepare(buf.len())?;
        let n = self.inner.read(&mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<T: Write + Seek> Write for Slice<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.prepare(buf.len())?;
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the partition's end",
            ));
        }
        let n = self.inner.write(&buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T> Seek for Slice<T> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the partition"))?;
        Ok(self.pos)
    }
}

/// How the FAT partition was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// GPT entry number (from 1).
    Gpt(u32),
    /// MBR primary entry number (from 1).
    Mbr(u32),
    /// No partition table: the filesystem starts at byte 0.
    None,
}

/// Where the usbkey's filesystem is, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub start: u64,
    pub len: u64,
    pub table: Table,
}

/// What can go wrong on the usbkey.
#[derive(Debug, thiserror::Error)]
pub enum UsbkeyFsError {
    #[error("{}: {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: String,
        source: io::Error,
    },
    #[error("{}: {reason}", path.display())]
    NotFound { path: PathBuf, reason: String },
    #[error("{}: no /{name} on the {LABEL} partition{}", path.display(), leftover_hint(name, *new, *prev))]
    Missing {
        path: PathBuf,
        name: String,
        /// `NAME.new` is there: a write was cut between its two last steps.
        new: bool,
        prev: bool,
    },
    #[error("{}: /{name} reads back different from what was written", path.display())]
    ReadBack { path: PathBuf, name: String },
}

fn leftover_hint(name: &str, new: bool, prev: bool) -> String {
    match (new, prev) {
        (true, _) => format!(
            "; /{name}{NEW_SUFFIX} holds a complete edit that was being written (and /{name}{PREV_SUFFIX} the text before it): rename the one you want to /{name}"
        ),
        (false, true) => format!("; /{name}{PREV_SUFFIX} holds an earlier copy: rename it to /{name}"),
        (false, false) => String::new(),
    }
}

/// The stream `fatfs` works on.
pub type Fs<'d> = fatfs::FileSystem<Slice<&'d File>>;

/// Opens the FAT filesystem at `start..start + len` of `disk`.
fn open_fat(disk: &File, start: u64, len: u64) -> io::Result<Fs<'_>> {
    // The default time provider is the local clock (fatfs's `chrono` feature): an edit is
    // stamped with when it happened, unlike the reproducible build.
    fatfs::FileSystem::new(Slice::new(disk, start, len), fatfs::FsOptions::new())
}

/// The label of a FAT filesystem at `start`, if there is one.
fn fat_label(disk: &File, start: u64, len: u64) -> Option<String> {
    open_fat(disk, start, len)
        .ok()
        .map(|fs| fs.volume_label().trim().to_owned())
}

/// Finds the FAT filesystem labelled `RAMKEY` on `disk`. The `Err` string says why not, for
/// the refusal message (and mentions which partition tables and labels were seen).
pub fn find_partition(disk: &File) -> Result<Location, String> {
    let mut reader = disk;
    let mut labels = Vec::new();
    match GPT::find_from(&mut reader) {
        Ok(gpt) => {
            for (index, part) in gpt.iter().filter(|(_, p)| p.is_used()) {
                let start = part.starting_lba * gpt.sector_size;
                let len = (part.ending_lba + 1 - part.starting_lba) * gpt.sector_size;
                match fat_label(disk, start, len) {
                    Some(label) if label == LABEL => {
                        let table = Table::Gpt(index);
                        return Ok(Location { start, len, table });
                    }
                    Some(label) => labels.push(label),
                    None => {}
                }
            }
            Err(format!(
                "no FAT partition labelled {LABEL} in the GPT (FAT labels found: {labels:?})"
            ))
        }
        Err(gpt_error) => {
            let size = reader
                .seek(SeekFrom::End(0))
                .map_err(|e| format!("finding the size: {e}"))?;
            if let Some(label) = fat_label(disk, 0, size) {
                if label == LABEL {
                    let table = Table::None;
                    return Ok(Location {
                        start: 0,
                        len: size,
                        table,
                    });
                }
                return Err(format!(
                    "no partition table (GPT: {gpt_error}) and its FAT filesystem is labelled {label:?}, not {LABEL}"
                ));
            }
            for (index, start, len) in mbr_entries(disk)? {
                match fat_label(disk, start, len) {
                    Some(label) if label == LABEL => {
                        let table = Table::Mbr(index);
                        return Ok(Location { start, len, table });
                    }
                    Some(label) => labels.push(label),
                    None => {}
                }
            }
            if labels.is_empty() {
                Err(format!(
                    "no GPT partition table ({gpt_error}), no FAT partition in an MBR and no FAT filesystem at the start"
                ))
            } else {
                Err(format!(
                    "no FAT partition labelled {LABEL} in the MBR (FAT labels found: {labels:?})"
                ))
            }
        }
    }
}

/// The used primary entries of an MBR: (number from 1, byte offset, byte length).
fn mbr_entries(disk: &File) -> Result<Vec<(u32, u64, u64)>, String> {
    let mut sector = [0u8; 512];
    let mut reader = disk;
    reader
        .seek(SeekFrom::Start(0))
        .and_then(|_| reader.read_exact(&mut sector))
        .map_err(|e| format!("reading the first sector: {e}"))?;
    if sector[510..512] != [0x55, 0xaa] {
        return Ok(Vec::new());
    }
    let le32 = |b: &[u8]| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    Ok((0u32..4)
        .filter_map(|i| {
            let e = &sector[446 + 16 * i as usize..][..16];
            let (kind, lba, sectors) = (e[4], le32(&e[8..12]), le32(&e[12..16]));
            (kind != 0 && kind != MBR_PROTECTIVE && sectors > 0)
                .then(|| (i + 1, lba * MBR_SECTOR, sectors * MBR_SECTOR))
        })
        .collect())
}

/// The usbkey partition of one disk, image or partition device.
#[derive(Debug)]
pub struct Usbkey<'d> {
    disk: &'d File,
    path: PathBuf,
    location: Location,
}

impl<'d> Usbkey<'d> {
    /// Finds the `RAMKEY` filesystem on `disk` (opened from `path`, named in messages).
    pub fn open(disk: &'d File, path: &Path) -> Result<Usbkey<'d>, UsbkeyFsError> {
        let location = find_partition(disk).map_err(|reason| UsbkeyFsError::NotFound {
            path: path.to_owned(),
            reason,
        })?;
        Ok(Usbkey {
            disk,
            path: path.to_owned(),
            location,
        })
    }

    pub fn location(&self) -> Location {
        self.location
    }

    fn io(&self, what: impl Into<String>) -> impl FnOnce(io::Error) -> UsbkeyFsError + '_ {
        let what = what.into();
        move |source| UsbkeyFsError::Io {
            path: self.path.clone(),
            what,
            source,
        }
    }

    fn fs(&self) -> Result<Fs<'d>, UsbkeyFsError> {
        open_fat(self.disk, self.location.start, self.location.len)
            .map_err(self.io(format!("opening the {LABEL} filesystem")))
    }

    /// `/name`, or `None` when it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, UsbkeyFsError> {
        let fs = self.fs()?;
        read_in(&fs, name).map_err(self.io(format!("reading /{name}")))
    }

    /// `/name`, which must exist; when it does not, says which leftovers of a cut write are there.
    pub fn read_existing(&self, name: &str) -> Result<Vec<u8>, UsbkeyFsError> {
        let fs = self.fs()?;
        let exists = |n: &str| {
            read_in(&fs, n)
                .map(|d| d.is_some())
                .map_err(self.io(format!("reading /{n}")))
        };
        match read_in(&fs, name).map_err(self.io(format!("reading /{name}")))? {
            Some(data) => Ok(data),
            None => Err(UsbkeyFsError::Missing {
                path: self.path.clone(),
                name: name.to_owned(),
                new: exists(&format!("{name}{NEW_SUFFIX}"))?,
                prev: exists(&format!("{name}{PREV_SUFFIX}"))?,
            }),
        }
    }

    /// Replaces (or creates) `/name` in place, then syncs and reads it back. Not power-safe:
    /// for a freshly written stick (`flash --keep-config`); edits use [`Usbkey::replace`].
    pub fn overwrite(&self, name: &str, data: &[u8]) -> Result<(), UsbkeyFsError> {
        let fs = self.fs()?;
        write_in(&fs, name, data).map_err(self.io(format!("writing /{name}")))?;
        self.finish(fs, name, data)
    }

    /// Replaces `/name` power-safely (see the module docs): `/name.new` written and synced,
    /// the old text copied to `/name.prev` and synced, then `/name.new` renamed to `/name`.
    pub fn replace(&self, name: &str, data: &[u8]) -> Result<(), UsbkeyFsError> {
        let new = format!("{name}{NEW_SUFFIX}");
        let prev = format!("{name}{PREV_SUFFIX}");
        let fs = self.fs()?;
        remove_if_there(&fs, &new).map_err(self.io(format!("removing the stale /{new}")))?;
        write_in(&fs, &new, data).map_err(self.io(format!("writing /{new}")))?;
        self.sync()?;
        let root = fs.root_dir();
        if let Some(old) = read_in(&fs, name).map_err(self.io(format!("reading /{name}")))? {
            write_in(&fs, &prev, &old).map_err(self.io(format!("writing /{prev}")))?;
            self.sync()?;
            root.remove(name)
                .map_err(self.io(format!("removing the old /{name}")))?;
        }
        root.rename(&new, &root, name)
            .map_err(self.io(format!("renaming /{new} to /{name}")))?;
        drop(root);
        self.finish(fs, name, data)
    }

    /// Unmounts `fs` (FSInfo, clean flag), syncs the device and checks `/name` holds `data`.
    fn finish(&self, fs: Fs<'d>, name: &str, data: &[u8]) -> Result<(), UsbkeyFsError> {
        fs.unmount()
            .map_err(self.io(format!("closing the {LABEL} filesystem")))?;
        self.sync()?;
        if self.read(name)?.as_deref() != Some(data) {
            return Err(UsbkeyFsError::ReadBack {
                path: self.path.clone(),
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), UsbkeyFsError> {
        self.disk.sync_all().map_err(self.io("syncing"))
    }
}

fn read_in(fs: &Fs<'_>, name: &str) -> io::Result<Option<Vec<u8>>> {
    let mut file = match fs.root_dir().open_file(name) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut data = Vec::new();
    file.read_to_end(&mut data)?;
    Ok(Some(data))
}

/// Creates or truncates `/name`, writes `data` and flushes its directory entry.
fn write_in(fs: &Fs<'_>, name: &str, data: &[u8]) -> io::Result<()> {
    let mut file = fs.root_dir().create_file(name)?;
    file.truncate()?;
    file.write_all(data)?;
    file.flush()
}

fn remove_if_there(fs: &Fs<'_>, name: &str) -> io::Result<()> {
    match fs.root_dir().remove(name) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_reads_writes_and_seeks_within_its_range() {
        let mut data = io::Cursor::new(vec![0u8; 100]);
        let mut s = Slice::new(&mut data, 10, 20);
        s.write_all(b"hello").unwrap();
        assert_eq!(s.seek(SeekFrom::End(-5)).unwrap(), 15);
        s.write_all(b"world").unwrap();
        assert!(s.write_all(b"!").is_err(), "writes stop at the end");
        s.seek(SeekFrom::Start(0)).unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 20);
        assert_eq!(&all[..5], b"hello");
        assert!(s.seek(SeekFrom::Current(-21)).is_err());
        let inner = data.into_inner();
        assert_eq!(&inner[10..15], b"hello");
        assert_eq!(&inner[25..30], b"world");
    }

    /// A FAT filesystem at `offset` of a `size`-byte file, made by fatfs itself.
    fn fat_image(size: u64, offset: u64, label: &[u8; 11]) -> File {
        let file = tempfile::tempfile().unwrap();
        file.set_len(size).unwrap();
        let opts = fatfs::FormatVolumeOptions::new()
            .volume_label(*label)
            .volume_id(0x1234_abcd);
        fatfs::format_volume(Slice::new(&file, offset, size - offset), opts).unwrap();
        file
    }

    fn mbr(file: &File, kind: u8, lba: u32, sectors: u32) {
        let mut sector = [0u8; 512];
        sector[446 + 4] = kind;
        sector[446 + 8..446 + 12].copy_from_slice(&lba.to_le_bytes());
        sector[446 + 12..446 + 16].copy_from_slice(&sectors.to_le_bytes());
        sector[510] = 0x55;
        sector[511] = 0xaa;
        let mut w = file;
        w.seek(SeekFrom::Start(0)).unwrap();
        w.write_all(&sector).unwrap();
    }

    #[test]
    fn finds_a_superfloppy_and_an_mbr_partition() {
        let floppy = fat_image(8 << 20, 0, b"RAMKEY     ");
        assert_eq!(find_partition(&floppy).unwrap().table, Table::None);
        let disk = fat_image(9 << 20, 1 << 20, b"RAMKEY     ");
        mbr(&disk, 0x0c, 2048, 8 << 11);
        let loc = find_partition(&disk).unwrap();
        assert_eq!((loc.table, loc.start, loc.len), (Table::Mbr(1), 1 << 20, 8 << 20));
        let other = fat_image(9 << 20, 1 << 20, b"OTHER      ");
        mbr(&other, 0x0c, 2048, 8 << 11);
        let err = find_partition(&other).unwrap_err();
        assert!(err.contains("\"OTHER\""), "{err}");
        let blank = fat_image(1 << 20, 0, b"RAMKEY     ");
        blank.set_len(0).unwrap();
        blank.set_len(1 << 20).unwrap();
        assert!(find_partition(&blank).unwrap_err().contains("no GPT"));
    }

    #[test]
    fn replace_keeps_prev_and_leaves_no_new() {
        let disk = fat_image(8 << 20, 0, b"RAMKEY     ");
        let key = Usbkey::open(&disk, Path::new("t.img")).unwrap();
        let err = key.read_existing("config.toml").unwrap_err();
        assert!(
            err.to_string().ends_with("no /config.toml on the RAMKEY partition"),
            "{err}"
        );
        key.replace("config.toml", b"one\n").unwrap();
        assert_eq!(key.read("config.toml.prev").unwrap(), None);
        key.replace("config.toml", b"two\n").unwrap();
        assert_eq!(key.read_existing("config.toml").unwrap(), b"two\n");
        assert_eq!(key.read("config.toml.prev").unwrap().unwrap(), b"one\n");
        assert_eq!(key.read("config.toml.new").unwrap(), None);
        // A cut between removing the old file and the rename: the message says what to do.
        let fs = key.fs().unwrap();
        write_in(&fs, "config.toml.new", b"three\n").unwrap();
        fs.root_dir().remove("config.toml").unwrap();
        fs.unmount().unwrap();
        let err = key.read_existing("config.toml").unwrap_err().to_string();
        assert!(err.contains("/config.toml.new holds a complete edit"), "{err}");
        key.replace("config.toml", b"four\n").unwrap();
        assert_eq!(key.read_existing("config.toml").unwrap(), b"four\n");
    }
}
