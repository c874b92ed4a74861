//! The image to flash: raw, gzip or zstd (told apart by their magic bytes, whatever the
//! file is called), its uncompressed size, and a streaming reader of its bytes.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::FlashError;

/// How the image file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// An image ready to stream.
#[derive(Debug, Clone)]
pub struct Image {
    pub path: PathBuf,
    pub compression: Compression,
    /// Uncompressed bytes: what lands on the target.
    pub size: u64,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Image {
    /// Opens `path` and learns its uncompressed size: the file size of a raw image, the frame
    /// content size of a zstd image, and for gzip (whose ISIZE trailer is the size mod 2^32)
    /// by decompressing it once.
    pub fn open(path: &Path) -> Result<Image, FlashError> {
        let io = |source| FlashError::Io {
            what: "reading the image",
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let mut head = [0u8; 18];
        let n = read_up_to(&mut file, &mut head).map_err(io)?;
        let head = &head[..n];
        let compression = if head.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        };
        let mut image = Image {
            path: path.to_path_buf(),
            compression,
            size: 0,
        };
        image.size = match compression {
            Compression::None => file.metadata().map_err(io)?.len(),
            Compression::Zstd => match zstd::zstd_safe::get_frame_content_size(head) {
                Ok(Some(size)) => size,
                _ => image.count()?,
            },
            Compression::Gzip => image.count()?,
        };
        if image.size == 0 {
            return Err(FlashError::EmptyImage {
                path: path.to_path_buf(),
            });
        }
        Ok(image)
    }

    /// Decompresses the whole image to count its bytes.
    fn count(&self) -> Result<u64, FlashError> {
        let mut reader = self.reader()?;
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(|source| self.corrupt(source))
    }

    /// The uncompressed bytes.
    pub fn reader(&self) -> Result<Box<dyn Read>, FlashError> {
        let file = File::open(&self.path).map_err(|source| FlashError::Io {
            what: "reading the image",
            path: self.path.clone(),
            source,
        })?;
        let file = BufReader::with_capacity(1 << 20, file);
        Ok(match self.compression {
            Compression::None => Box::new(file),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
            Compression::Zstd => Box::new(zstd::Decoder::with_buffer(file).map_err(|source| self.corrupt(source))?),
        })
    }

    /// A read error of the (decompressed) image.
    pub fn corrupt(&self, source: std::io::Error) -> FlashError {
        FlashError::Io {
            what: match self.compression {
                Compression::None => "reading the image",
                Compression::Gzip => "decompressing (gzip) the image",
                Compression::Zstd => "decompressing (zstd) the image",
            },
            path: self.path.clone(),
            source,
        }
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
pub fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn sizes_of_raw_gzip_and_zstd_images() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let raw = dir.path().join("a.img");
        std::fs::write(&raw, &data).unwrap();
        let gz = dir.path().join("a.img.gz");
        let mut enc = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(&data).unwrap();
        enc.finish().unwrap();
        let zst = dir.path().join("a.img.zst");
        std::fs::write(&zst, zstd::encode_all(&data[..], 3).unwrap()).unwrap();
        // A zstd stream without a content size in its header (as `zstd -` from a pipe writes).
        let zst_stream = dir.path().join("b.img.zst");
        let mut enc = zstd::Encoder::new(File::create(&zst_stream).unwrap(), 3).unwrap();
        enc.include_contentsize(false).unwrap();
        enc.write_all(&data).unwrap();
        enc.finish().unwrap();
        for (path, compression) in [
            (&raw, Compression::None),
            (&gz, Compression::Gzip),
            (&zst, Compression::Zstd),
            (&zst_stream, Compression::Zstd),
        ] {
            let image = Image::open(path).unwrap();
            assert_eq!(
                (image.compression, image.size),
                (compression, data.len() as u64),
                "{path:?}"
            );
            let mut out = Vec::new();
            image.reader().unwrap().read_to_end(&mut out).unwrap();
            assert!(out == data, "{path:?}");
        }
    }

    #[test]
    fn refuses_an_empty_or_corrupt_image() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("e.img");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(Image::open(&empty), Err(FlashError::EmptyImage { .. })));
        let bad = dir.path().join("bad.img.gz");
        std::fs::write(&bad, [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
        let err = Image::open(&bad).unwrap_err();
        assert!(err.to_string().contains("decompressing (gzip)"), "{err}");
    }
}
