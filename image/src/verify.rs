//! Verifying an image: the signature by a trusted key over the manifest, then the payload's
//! size and sha256 against the manifest, then the zero padding, then the requirements.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::footer::hex;
use crate::keys::KeyId;
use crate::manifest::Manifest;
use crate::read::Image;
use crate::requirements::{PlatformVersion, RequirementsError, check_requirements};
use crate::signed_message;

/// Why an image did not verify. Each message names the image.
#[derive(Debug, Error)]
pub enum VerifyError {
    /// The image carries no signature.
    #[error("{path}: image is not signed; sign it with `ramkey-builder` and a key the config trusts")]
    Unsigned {
        /// The image.
        path: String,
    },
    /// No trusted key has the signer's key id.
    #[error(
        "{path}: signed by key {key_id}, which is not trusted (trusted: {trusted}); add its public key to the config"
    )]
    UntrustedKey {
        /// The image.
        path: String,
        /// The signer's key id.
        key_id: KeyId,
        /// The trusted key ids, comma-separated, or `none`.
        trusted: String,
    },
    /// The signature does not verify: the manifest or signature was changed.
    #[error("{path}: signature by key {key_id} does not verify: the manifest or signature was altered")]
    BadSignature {
        /// The image.
        path: String,
        /// The key tried.
        key_id: KeyId,
    },
    /// The footer's payload size is not the manifest's.
    #[error("{path}: payload size mismatch: manifest says {manifest} bytes, footer says {footer}")]
    PayloadSizeMismatch {
        /// The image.
        path: String,
        /// Size in the signed manifest.
        manifest: u64,
        /// Size in the footer.
        footer: u64,
    },
    /// The payload's digest is not the manifest's.
    #[error(
        "{path}: payload sha256 mismatch over bytes 0..{size}: manifest says {expected}, payload is {actual}; the payload is corrupt or was altered"
    )]
    PayloadDigestMismatch {
        /// The image.
        path: String,
        /// Bytes hashed.
        size: u64,
        /// Digest in the manifest.
        expected: String,
        /// Digest computed.
        actual: String,
    },
    /// Padding after the payload is not zero.
    #[error("{path}: padding byte at offset {offset} is not zero")]
    PaddingNotZero {
        /// The image.
        path: String,
        /// Offset of the first non-zero byte.
        offset: u64,
    },
    /// The image needs something the platform lacks.
    #[error("{path}: {error}")]
    Requirements {
        /// The image.
        path: String,
        /// What is missing.
        error: RequirementsError,
    },
    /// Reading the payload failed.
    #[error("{path}: reading payload: {error}")]
    Io {
        /// The image.
        path: String,
        /// The error.
        error: io::Error,
    },
}

/// The platform an image is checked against.
#[derive(Debug, Clone)]
pub struct Platform {
    /// The platform's version.
    pub version: PlatformVersion,
    /// The platform's architecture (`x86_64`).
    pub arch: String,
}

/// An image whose signature, payload and requirements verified.
#[derive(Debug, Clone)]
pub struct VerifiedImage {
    image: Image,
    key_id: KeyId,
}

impl VerifiedImage {
    /// The verified image.
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.image.manifest
    }

    /// The trusted key that signed it.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The image, dropping the proof of verification.
    pub fn into_image(self) -> Image {
        self.image
    }
}

/// Verify the image at `image.path` against `trusted` keys and `platform`.
pub fn verify(image: Image, trusted: &[VerifyingKey], platform: &Platform) -> Result<VerifiedImage, VerifyError> {
    let file = File::open(&image.path).map_err(|error| VerifyError::Io {
        path: image.path.display().to_string(),
        error,
    })?;
    verify_reader(image, BufReader::new(file), trusted, platform)
}

/// [`verify`], reading the payload from `reader` (the same file the trailer came from; for
/// the init, the file descriptor it will then mount).
pub fn verify_reader<R: Read + Seek>(
    image: Image,
    mut reader: R,
    trusted: &[VerifyingKey],
    platform: &Platform,
) -> Result<VerifiedImage, VerifyError> {
    let path = image.path.display().to_string();
    let key_id = verify_signature(&image, &path, trusted)?;
    let footer = &image.footer;
    let manifest = &image.manifest;
    if manifest.payload.size != footer.payload_size {
        return Err(VerifyError::PayloadSizeMismatch {
            path,
            manifest: manifest.payload.size,
            footer: footer.payload_size,
        });
    }
    let io = |error| VerifyError::Io {
        path: path.clone(),
        error,
    };
    reader.seek(SeekFrom::Start(footer.payload_offset)).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut payload = (&mut reader).take(footer.payload_size);
    let copied = io::copy(&mut payload, &mut HashWriter(&mut hasher)).map_err(io)?;
    if copied != footer.payload_size {
        return Err(io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("payload ends after {copied} of {} bytes", footer.payload_size),
        )));
    }
    let actual = hex(&hasher.finalize());
    if actual != manifest.payload.sha256 {
        return Err(VerifyError::PayloadDigestMismatch {
            path,
            size: footer.payload_size,
            expected: manifest.payload.sha256.clone(),
            actual,
        });
    }
    let mut padding = vec![0u8; (footer.manifest_offset - footer.payload_size) as usize];
    reader.read_exact(&mut padding).map_err(io)?;
    if let Some(i) = padding.iter().position(|&b| b != 0) {
        return Err(VerifyError::PaddingNotZero {
            path,
            offset: footer.payload_size + i as u64,
        });
    }
    check_requirements(manifest, &platform.version, &platform.arch)
        .map_err(|error| VerifyError::Requirements { path, error })?;
    Ok(VerifiedImage { image, key_id })
}

fn verify_signature(image: &Image, path: &str, trusted: &[VerifyingKey]) -> Result<KeyId, VerifyError> {
    let Some(signature) = &image.signature else {
        return Err(VerifyError::Unsigned { path: path.into() });
    };
    let key_id = image.footer.key_id;
    let candidates: Vec<&VerifyingKey> = trusted.iter().filter(|k| KeyId::of(k) == key_id).collect();
    if candidates.is_empty() {
        let ids: Vec<String> = trusted.iter().map(|k| KeyId::of(k).to_string()).collect();
        return Err(VerifyError::UntrustedKey {
            path: path.into(),
            key_id,
            trusted: if ids.is_empty() { "none".into() } else { ids.join(", ") },
        });
    }
    let message = signed_message(&image.manifest_bytes);
    if candidates.iter().any(|k| k.verify_strict(&message, signature).is_ok()) {
        Ok(key_id)
    } else {
        Err(VerifyError::BadSignature {
            path: path.into(),
            key_id,
        })
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
