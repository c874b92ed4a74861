//! `--keep-config`: reads `/config.toml` from the FAT partition labelled `RAMKEY` of a disk
//! (or image file) and writes it into the freshly flashed copy — without mounting. The
//! partition is found in the GPT with `gptman`; the filesystem is read and written with the
//! `fatfs` crate on that partition's byte range. `fatfs` rather than mtools (`mcopy -i
//! DEV@@OFFSET`): no external tool to find and quote for, errors come back typed, and the same
//! code works on a block device and on an image file in the unit tests.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use gptman::GPT;

/// The filesystem label of the stick's partition.
pub const LABEL: &str = ramkey_config::USBKEY_LABEL;
/// The config file's name in the partition's root.
pub const CONFIG: &str = "config.toml";

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
        Ok(want.min(self.len.saturating_sub(self.pos) as usize))
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

/// Finds the FAT partition labelled `RAMKEY`: its byte offset and length. `Err` says why not
/// (no GPT, no such partition), for the refusal message.
pub fn find_partition(disk: &File) -> Result<(u64, u64), String> {
    let mut reader = disk;
    let gpt = GPT::find_from(&mut reader).map_err(|e| format!("no GPT partition table: {e}"))?;
    let mut labels = Vec::new();
    for (_, part) in gpt.iter().filter(|(_, p)| p.is_used()) {
        let start = part.starting_lba * gpt.sector_size;
        let len = (part.ending_lba + 1 - part.starting_lba) * gpt.sector_size;
        let Ok(fs) = fatfs::FileSystem::new(Slice::new(disk, start, len), fatfs::FsOptions::new()) else {
            continue;
        };
        let label = fs.volume_label();
        if label.trim() == LABEL {
            return Ok((start, len));
        }
        labels.push(label.trim().to_string());
    }
    Err(format!(
        "no FAT partition labelled {LABEL} (FAT labels found: {labels:?})"
    ))
}

/// `/config.toml` of the `RAMKEY` partition.
pub fn read_config(disk: &File) -> Result<Vec<u8>, String> {
    let (start, len) = find_partition(disk)?;
    let fs = fatfs::FileSystem::new(Slice::new(disk, start, len), fatfs::FsOptions::new())
        .map_err(|e| format!("reading the {LABEL} filesystem: {e}"))?;
    let mut file = fs
        .root_dir()
        .open_file(CONFIG)
        .map_err(|e| format!("no /{CONFIG} on the {LABEL} partition: {e}"))?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)
        .map_err(|e| format!("reading /{CONFIG}: {e}"))?;
    Ok(data)
}

/// Replaces (or creates) `/config.toml` on the `RAMKEY` partition, then reads it back.
pub fn write_config(disk: &File, data: &[u8]) -> Result<(), String> {
    let (start, len) = find_partition(disk)?;
    {
        let fs = fatfs::FileSystem::new(Slice::new(disk, start, len), fatfs::FsOptions::new())
            .map_err(|e| format!("opening the {LABEL} filesystem: {e}"))?;
        {
            let mut file = fs
                .root_dir()
                .create_file(CONFIG)
                .map_err(|e| format!("creating /{CONFIG}: {e}"))?;
            file.truncate().map_err(|e| format!("truncating /{CONFIG}: {e}"))?;
            file.write_all(data).map_err(|e| format!("writing /{CONFIG}: {e}"))?;
            file.flush().map_err(|e| format!("writing /{CONFIG}: {e}"))?;
        }
        fs.unmount()
            .map_err(|e| format!("closing the {LABEL} filesystem: {e}"))?;
    }
    disk.sync_all().map_err(|e| format!("syncing: {e}"))?;
    let back = read_config(disk)?;
    if back != data {
        return Err(format!("/{CONFIG} reads back different from what was written"));
    }
    Ok(())
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
}
