//! The initramfs: the record tree written as a newc cpio archive, compressed with gzip or
//! zstd, with fixed owners, times and inode numbers; and a reader for checking it back.

use std::io::{self, Read, Write};

use crate::records::{Kind, Tree};

/// Compression of the archive; both are built into Debian's kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Writes `tree` as an uncompressed newc archive; every time is `epoch`, every owner root.
pub fn write_cpio(tree: &Tree, epoch: u32, out: impl Write) -> io::Result<()> {
    let mut out = out;
    for (ino, (path, record)) in (1u32..).zip(tree.iter()) {
        let (kind_bits, data, nlink, rdev): (u32, &[u8], u32, (u32, u32)) = match &record.kind {
            Kind::Dir => (S_IFDIR, &[], 2, (0, 0)),
            Kind::File(data) => (S_IFREG, data, 1, (0, 0)),
            Kind::Symlink(target) => (S_IFLNK, target.as_bytes(), 1, (0, 0)),
            Kind::CharDevice { major, minor } => (S_IFCHR, &[], 1, (*major, *minor)),
        };
        let size = u32::try_from(data.len()).map_err(|_| io::Error::other(format!("{path}: larger than 4 GiB")))?;
        let mut writer = cpio::newc::Builder::new(path)
            .ino(ino)
            .mode(kind_bits | record.mode)
            .uid(0)
            .gid(0)
            .nlink(nlink)
            .mtime(epoch)
            .rdev_major(rdev.0)
            .rdev_minor(rdev.1)
            .write(&mut out, size);
        writer.write_all(data)?;
        writer.finish()?;
    }
    cpio::newc::trailer(out)?;
    Ok(())
}

/// Writes the compressed archive.
pub fn write(tree: &Tree, epoch: u32, compression: Compression) -> io::Result<Vec<u8>> {
    let mut raw = Vec::with_capacity(tree.content_size() as usize + tree.len() * 128);
    write_cpio(tree, epoch, &mut raw)?;
    match compression {
        Compression::None => Ok(raw),
        Compression::Gzip => {
            // A fixed header (mtime 0, no name) keeps the output reproducible.
            let mut gz = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::best());
            gz.write_all(&raw)?;
            gz.finish()
        }
        Compression::Zstd => zstd::stream::encode_all(&raw[..], 19),
    }
}

/// One record read back from an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

/// Appends `tree` to `initrd` as an uncompressed newc segment, 4-byte aligned: for files
/// that are compressed already (the packed platform), which gzip cannot shrink and the kernel
/// would only inflate for nothing, and for the upgrade tests' changed platforms. The kernel
/// unpacks concatenated segments in order; a later file replaces an earlier one.
pub fn append_uncompressed(initrd: &mut Vec<u8>, tree: &Tree, epoch: u32) -> io::Result<()> {
    initrd.resize(initrd.len().next_multiple_of(4), 0);
    write_cpio(tree, epoch, initrd)
}

/// Reads a newc archive back into its entries, without unpacking: every concatenated segment,
/// each gzip, zstd or uncompressed, in order (as the kernel reads them).
pub fn read(bytes: &[u8]) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut rest = bytes;
    loop {
        // The kernel skips zeros between segments.
        rest = &rest[rest.iter().take_while(|b| **b == 0).count()..];
        rest = match rest {
            [] => return Ok(entries),
            [0x1f, 0x8b, ..] => {
                let mut gz = flate2::bufread::GzDecoder::new(rest);
                let mut raw = Vec::new();
                gz.read_to_end(&mut raw)?;
                read_cpio(&raw, &mut entries)?;
                gz.into_inner()
            }
            [0x28, 0xb5, 0x2f, 0xfd, ..] => {
                let mut zst = zstd::stream::read::Decoder::with_buffer(rest)?.single_frame();
                let mut raw = Vec::new();
                zst.read_to_end(&mut raw)?;
                read_cpio(&raw, &mut entries)?;
                zst.finish()
            }
            _ => read_cpio(rest, &mut entries)?,
        };
    }
}

/// Reads one uncompressed segment up to its trailer into `entries`; returns what follows.
fn read_cpio<'a>(bytes: &'a [u8], entries: &mut Vec<Entry>) -> io::Result<&'a [u8]> {
    let mut raw = bytes;
    loop {
        let mut reader = cpio::newc::Reader::new(raw)?;
        if reader.entry().is_trailer() {
            return reader.finish();
        }
        let e = reader.entry();
        let mut entry = Entry {
            path: e.name().to_string(),
            mode: e.mode(),
            uid: e.uid(),
            gid: e.gid(),
            mtime: e.mtime(),
            rdev: (e.rdev_major(), e.rdev_minor()),
            data: Vec::new(),
        };
        reader.read_to_end(&mut entry.data)?;
        entries.push(entry);
        raw = reader.finish()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Tree {
        let mut t = Tree::new();
        t.file("init", b"\x7fELF".to_vec(), 0o755);
        t.char_device("dev/console", 5, 1, 0o600);
        t.symlink("sbin/init", "/init");
        t
    }

    #[test]
    fn round_trips_every_kind_of_record() {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let bytes = write(&sample(), 1_700_000_000, compression).unwrap();
            let entries = read(&bytes).unwrap();
            let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
            assert_eq!(paths, ["dev", "dev/console", "init", "sbin", "sbin/init"]);
            let console = &entries[1];
            assert_eq!((console.mode, console.rdev), (S_IFCHR | 0o600, (5, 1)));
            assert_eq!(entries[2].data, b"\x7fELF");
            assert_eq!(entries[4].data, b"/init");
            assert!(
                entries
                    .iter()
                    .all(|e| e.uid == 0 && e.gid == 0 && e.mtime == 1_700_000_000)
            );
        }
    }

    #[test]
    fn every_segment_is_read_in_order() {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut bytes = write(&sample(), 1, compression).unwrap();
            let mut more = Tree::new();
            more.file("lib/ramkey/platform.sqfs", b"hsqs".to_vec(), 0o644);
            append_uncompressed(&mut bytes, &more, 1).unwrap();
            let paths: Vec<String> = read(&bytes).unwrap().into_iter().map(|e| e.path).collect();
            assert_eq!(
                paths,
                [
                    "dev",
                    "dev/console",
                    "init",
                    "sbin",
                    "sbin/init",
                    "lib",
                    "lib/ramkey",
                    "lib/ramkey/platform.sqfs"
                ],
                "{compression:?}"
            );
        }
    }

    #[test]
    fn same_tree_same_bytes() {
        let a = write(&sample(), 1, Compression::Gzip).unwrap();
        let b = write(&sample(), 1, Compression::Gzip).unwrap();
        assert_eq!(a, b);
    }
}
