//! Reading an image's trailer from the end of the file: footer, manifest, signature. The
//! payload is never read here; [`crate::verify`] streams it when checking the digest.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use ed25519_dalek::Signature;
use thiserror::Error;

use crate::footer::{FOOTER_SIZE, Footer, FooterError};
use crate::manifest::{Manifest, ManifestError};

/// Errors reading an image's trailer.
#[derive(Debug, Error)]
pub enum ReadError {
    /// Opening, seeking or reading failed.
    #[error("{path}: {error}")]
    Io {
        /// The image.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
    /// The file cannot even hold a footer.
    #[error("{path}: truncated: file is {len} bytes, shorter than the {FOOTER_SIZE}-byte footer")]
    TooShort {
        /// The image.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The footer is bad.
    #[error("{path}: footer at offset {offset}: {error}")]
    Footer {
        /// The image.
        path: PathBuf,
        /// Offset of the footer.
        offset: u64,
        /// Why.
        error: FooterError,
    },
    /// The manifest is not UTF-8.
    #[error("{path}: manifest at offset {manifest_offset} is not UTF-8: invalid byte at file offset {offset}")]
    NotUtf8 {
        /// The image.
        path: PathBuf,
        /// Offset of the manifest.
        manifest_offset: u64,
        /// File offset of the first invalid byte.
        offset: u64,
    },
    /// The manifest does not parse or check.
    #[error("{path}: manifest at offset {offset}: {error}")]
    Manifest {
        /// The image.
        path: PathBuf,
        /// Offset of the manifest.
        offset: u64,
        /// Why.
        error: ManifestError,
    },
}

/// An image's trailer, read but not verified.
#[derive(Debug, Clone)]
pub struct Image {
    /// The file it was read from (for messages, and for [`crate::verify::verify`]).
    pub path: PathBuf,
    /// Length of the file.
    pub file_len: u64,
    /// The footer.
    pub footer: Footer,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The manifest's exact bytes, as signed.
    pub manifest_bytes: Vec<u8>,
    /// The signature, if the image is signed.
    pub signature: Option<Signature>,
}

/// Read the trailer of the image at `path`.
pub fn open(path: &Path) -> Result<Image, ReadError> {
    let mut file = File::open(path).map_err(|error| ReadError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    from_reader(&mut file, path)
}

/// Read the trailer from any seekable reader; `path` is used in messages only.
pub fn from_reader<R: Read + Seek>(reader: &mut R, path: &Path) -> Result<Image, ReadError> {
    let io = |error| ReadError::Io {
        path: path.to_path_buf(),
        error,
    };
    let file_len = reader.seek(SeekFrom::End(0)).map_err(io)?;
    if file_len < FOOTER_SIZE as u64 {
        return Err(ReadError::TooShort {
            path: path.to_path_buf(),
            len: file_len,
        });
    }
    let footer_offset = file_len - FOOTER_SIZE as u64;
    let mut raw = [0u8; FOOTER_SIZE];
    read_at(reader, footer_offset, &mut raw).map_err(io)?;
    let footer = Footer::decode(&raw, file_len).map_err(|error| ReadError::Footer {
        path: path.to_path_buf(),
        offset: footer_offset,
        error,
    })?;

    // Footer::decode bounded manifest_size by MAX_MANIFEST_SIZE and the file length.
    let mut manifest_bytes = vec![0u8; footer.manifest_size as usize];
    read_at(reader, footer.manifest_offset, &mut manifest_bytes).map_err(io)?;
    let signature = if footer.is_signed() {
        let mut sig = [0u8; 64];
        read_at(reader, footer.signature_offset, &mut sig).map_err(io)?;
        Some(Signature::from_bytes(&sig))
    } else {
        None
    };
    let text = std::str::from_utf8(&manifest_bytes).map_err(|e| ReadError::NotUtf8 {
        path: path.to_path_buf(),
        manifest_offset: footer.manifest_offset,
        offset: footer.manifest_offset + e.valid_up_to() as u64,
    })?;
    let manifest = Manifest::parse(text).map_err(|error| ReadError::Manifest {
        path: path.to_path_buf(),
        offset: footer.manifest_offset,
        error,
    })?;
    Ok(Image {
        path: path.to_path_buf(),
        file_len,
        footer,
        manifest,
        manifest_bytes,
        signature,
    })
}

fn read_at<R: Read + Seek>(reader: &mut R, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    reader.seek(SeekFrom::Start(offset))?;
    reader.read_exact(buf)
}
