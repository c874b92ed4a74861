//! Writing an image: stream the payload (hashing it), pad to 4096, append the manifest with
//! the payload's digest and size filled in, the signature, and the footer.

use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::footer::{FOOTER_SIZE, Footer, MAX_MANIFEST_SIZE, align_up, hex};
use crate::keys::KeyId;
use crate::manifest::{Manifest, ManifestError};
use crate::signed_message;
use crate::squashfs::{SUPERBLOCK_SIZE, SquashfsError, Superblock};

/// Errors assembling an image.
#[derive(Debug, Error)]
pub enum WriteError {
    /// Reading the payload or writing the image failed.
    #[error("{what}: {error}")]
    Io {
        /// What was being read or written.
        what: String,
        /// The error.
        error: io::Error,
    },
    /// The payload is not a usable squashfs.
    #[error("payload: {error}")]
    Squashfs {
        /// Why.
        error: SquashfsError,
    },
    /// The manifest (with the payload filled in) is invalid.
    #[error("{error}")]
    Manifest {
        /// Why.
        error: ManifestError,
    },
    /// The manifest text is larger than readers accept.
    #[error("manifest is {size} bytes, larger than the {MAX_MANIFEST_SIZE} readers accept")]
    ManifestTooLarge {
        /// Its size.
        size: u64,
    },
}

/// What [`assemble`] wrote.
#[derive(Debug, Clone)]
pub struct Assembled {
    /// The footer written.
    pub footer: Footer,
    /// The manifest as written, with `payload` filled in.
    pub manifest: Manifest,
    /// The exact manifest bytes written and signed.
    pub manifest_bytes: Vec<u8>,
}

impl Assembled {
    /// Total size of the image file in bytes.
    pub fn file_size(&self) -> u64 {
        self.footer.footer_offset() + FOOTER_SIZE as u64
    }
}

/// Write an image to `out`: the payload read from `payload` (a squashfs), then the trailer.
/// `manifest.payload` is overwritten with the payload's sha256 and size; the rest of the
/// manifest is written as given, after validation. The same inputs give the same bytes.
pub fn assemble<R: Read, W: Write>(
    mut payload: R,
    manifest: &Manifest,
    key: &SigningKey,
    out: W,
) -> Result<Assembled, WriteError> {
    let mut out = BufWriter::new(out);
    let io = |what: &str| {
        let what = what.to_string();
        move |error| WriteError::Io { what, error }
    };
    let mut head = [0u8; SUPERBLOCK_SIZE];
    let head_len = read_full(&mut payload, &mut head).map_err(io("reading payload"))?;
    let superblock = Superblock::parse(&head[..head_len]).map_err(|error| WriteError::Squashfs { error })?;
    let mut hasher = Sha256::new();
    hasher.update(&head[..head_len]);
    out.write_all(&head[..head_len]).map_err(io("writing payload"))?;
    let mut size = head_len as u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match payload.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io("reading payload")(e)),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io("writing payload"))?;
        size += n as u64;
    }
    superblock
        .check_fits(size)
        .map_err(|error| WriteError::Squashfs { error })?;
    let padded = align_up(size).unwrap_or(size);
    io::copy(&mut io::repeat(0).take(padded - size), &mut out).map_err(io("writing padding"))?;

    let mut manifest = manifest.clone();
    manifest.payload.sha256 = hex(&hasher.finalize());
    manifest.payload.size = size;
    manifest.validate().map_err(|error| WriteError::Manifest { error })?;
    let text = manifest.to_toml().map_err(|error| WriteError::Manifest { error })?;
    let manifest_bytes = text.into_bytes();
    let manifest_size = manifest_bytes.len() as u64;
    if manifest_size > MAX_MANIFEST_SIZE {
        return Err(WriteError::ManifestTooLarge { size: manifest_size });
    }
    let signature = key.sign(&signed_message(&manifest_bytes));
    let footer = Footer::for_layout(size, manifest_size, Some(KeyId::of(&key.verifying_key())));
    out.write_all(&manifest_bytes).map_err(io("writing manifest"))?;
    out.write_all(&signature.to_bytes()).map_err(io("writing signature"))?;
    out.write_all(&footer.encode()).map_err(io("writing footer"))?;
    out.flush().map_err(io("writing image"))?;
    Ok(Assembled {
        footer,
        manifest,
        manifest_bytes,
    })
}

/// [`assemble`] from a payload file to an image file. Writes `<out>.partial` and renames it
/// into place, so a failed build never leaves a half-written image under the final name.
pub fn assemble_file(
    payload: &Path,
    manifest: &Manifest,
    key: &SigningKey,
    out: &Path,
) -> Result<Assembled, WriteError> {
    let io = |path: &Path| {
        let what = path.display().to_string();
        move |error| WriteError::Io { what, error }
    };
    let input = fs::File::open(payload).map_err(io(payload))?;
    let mut partial = PathBuf::from(out.as_os_str());
    partial.as_mut_os_string().push(".partial");
    let output = fs::File::create(&partial).map_err(io(&partial))?;
    let result = assemble(io::BufReader::new(input), manifest, key, &output)
        .and_then(|a| output.sync_all().map(|()| a).map_err(io(&partial)));
    match result {
        Ok(a) => {
            fs::rename(&partial, out).map_err(io(out))?;
            Ok(a)
        }
        Err(e) => {
            let _ = fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
