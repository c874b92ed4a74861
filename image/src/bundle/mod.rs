//! The signed platform bundle (`platform.rkup`): a platform's kernel, initrd and version in
//! one file that can be verified while it streams, signed with the same ed25519 keys as
//! personality images. `docs/upgrades.md` ("The platform bundle") specifies the bytes.
//!
//! ```text
//! off        size  field
//!   0           8  magic           b"RKUP\0\0\0\x01" (the last byte is the format, 1)
//!   8           4  manifest_len    u32, little-endian, 1 ..= 64 KiB
//!  12           N  manifest        TOML, see [`Manifest`]
//!  12+N        64  signature       ed25519 over BUNDLE_DOMAIN || manifest (zero if unsigned)
//!  76+N         8  key_id          first 8 bytes of sha256(public key) (zero if unsigned)
//!  84+N         K  kernel          kernel.size bytes (the platform's vmlinuz)
//!  84+N+K       I  initrd          initrd.size bytes (the platform's initrd.img); then EOF
//! ```
//!
//! The box reads it front to back ([`verify::verify_into`]): the manifest and signature come
//! first, so a bundle by an untrusted key or of an older version is refused before a byte of
//! it is written anywhere, and the kernel and initrd are hashed while they are copied.

pub mod verify;
pub mod write;

use std::io::{self, Read};

use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::keys::KeyId;
use crate::requirements::RequirementsError;

pub use verify::{Verified, verify, verify_into};
pub use write::{Release, write, write_file};

/// File name the builder gives a bundle: `OUT/platform.rkup`.
pub const FILE_NAME: &str = "platform.rkup";
/// The first 8 bytes of a bundle; the last one is the format version.
pub const MAGIC: [u8; 8] = *b"RKUP\0\0\0\x01";
/// The bundle format this crate reads and writes (the last byte of [`MAGIC`]).
pub const FORMAT: u32 = 1;
/// Largest manifest accepted, so a hostile length cannot make a reader allocate much.
pub const MAX_MANIFEST_LEN: u32 = 64 * 1024;
/// Bytes between the manifest and the kernel: signature and key id.
pub const SIGNATURE_BLOCK: u64 = 64 + 8;
/// Prefix of the signed message: distinct from the image's [`crate::SIGNATURE_DOMAIN`], so a
/// signature over a bundle can never pass for one over an image, or the reverse.
pub const BUNDLE_DOMAIN: &[u8] = b"ramkey-platform-v1\0";

/// The message a bundle's signature covers: [`BUNDLE_DOMAIN`] then the manifest bytes.
pub fn signed_message(manifest_bytes: &[u8]) -> Vec<u8> {
    [BUNDLE_DOMAIN, manifest_bytes].concat()
}

/// The bundle's manifest (TOML, signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The platform version, dotted numbers (`0.1.0`), compared with the running one.
    pub version: String,
    /// The kernel's release (`6.1.0-31-amd64`).
    pub kernel_release: String,
    /// Build time, seconds since the epoch (`SOURCE_DATE_EPOCH` of the build).
    pub created: u64,
    /// Version of the `ramkey` that wrote the bundle.
    pub builder_version: String,
    /// The kernel image, first after the signature block.
    pub kernel: Part,
    /// The initrd, after the kernel.
    pub initrd: Part,
}

/// Size and digest of one part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// Exact size in bytes.
    pub size: u64,
    /// sha256, 64 lowercase hex digits.
    pub sha256: String,
}

impl Manifest {
    /// Size of the whole bundle file with this manifest, given its length in bytes.
    pub fn bundle_size(&self, manifest_len: u64) -> u64 {
        (12 + manifest_len + SIGNATURE_BLOCK)
            .saturating_add(self.kernel.size)
            .saturating_add(self.initrd.size)
    }

    fn parse(bytes: &[u8]) -> Result<Self, BundleError> {
        let bad = |message: String| BundleError::Manifest { message };
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8".into()))?;
        let manifest: Self = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
        if manifest.format != FORMAT {
            return Err(bad(format!("format = {}, expected {FORMAT}", manifest.format)));
        }
        for (name, part) in [("kernel", &manifest.kernel), ("initrd", &manifest.initrd)] {
            let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
            if part.sha256.len() != 64 || !part.sha256.chars().all(hex) {
                return Err(bad(format!("{name}.sha256 is not 64 lowercase hex digits")));
            }
        }
        Ok(manifest)
    }
}

/// Why a bundle was refused or could not be written. Each `Display` is one line; the caller
/// adds the file's name.
#[derive(Debug, Error)]
pub enum BundleError {
    /// The magic is wrong.
    #[error("not a Ramkey platform bundle: starts with {found}, expected \"RKUP\\0\\0\\0\\x01\"")]
    NotABundle {
        /// The first bytes, escaped.
        found: String,
    },
    /// A bundle of another format version.
    #[error("platform bundle format {found}: this ramkey reads format {FORMAT}")]
    UnknownFormat {
        /// The format byte.
        found: u8,
    },
    /// The manifest length is 0 or too large.
    #[error("bad platform bundle: manifest length {len}, expected 1 ..= {MAX_MANIFEST_LEN}")]
    ManifestLength {
        /// The length field.
        len: u32,
    },
    /// The manifest does not parse or is not format 1.
    #[error("bad platform bundle manifest: {message}")]
    Manifest {
        /// What is wrong.
        message: String,
    },
    /// The bundle ends early.
    #[error("truncated platform bundle: it ends at byte {at} of {expected} (an interrupted download or copy?)")]
    Truncated {
        /// Bytes read.
        at: u64,
        /// Bytes the bundle should have (the header's size while it was not yet read).
        expected: u64,
    },
    /// Bytes after the initrd.
    #[error("platform bundle has bytes after its end at byte {at}: appended to, or not written by ramkey")]
    Trailing {
        /// The size the bundle should have.
        at: u64,
    },
    /// No signature.
    #[error("platform bundle is not signed: build it with `ramkey build --key SECRET`")]
    Unsigned,
    /// The signer is not trusted.
    #[error("platform bundle signed by key {key_id}, which is not trusted (trusted: {trusted})")]
    UntrustedKey {
        /// The signer's key id.
        key_id: KeyId,
        /// The trusted ids, comma-separated, or `none`.
        trusted: String,
    },
    /// The signature does not verify.
    #[error("platform bundle signature by key {key_id} does not verify: the manifest or signature was altered")]
    BadSignature {
        /// The key tried.
        key_id: KeyId,
    },
    /// A version is not dotted numbers.
    #[error("platform bundle: {0}")]
    Version(#[from] RequirementsError),
    /// The bundle is older than the running platform.
    #[error(
        "platform bundle is version {version}, older than the running platform {running}: give --allow-downgrade to install it anyway"
    )]
    Older {
        /// The bundle's version.
        version: String,
        /// The running version.
        running: String,
    },
    /// A part's digest is not the manifest's.
    #[error(
        "{part} sha256 mismatch: the manifest says {expected}, the bundle's {part} is {actual}: corrupt or altered"
    )]
    DigestMismatch {
        /// `kernel` or `initrd`.
        part: &'static str,
        /// Digest in the manifest.
        expected: String,
        /// Digest computed.
        actual: String,
    },
    /// Reading or writing failed.
    #[error("{what}: {error}")]
    Io {
        /// What was being read or written.
        what: String,
        /// The error.
        error: io::Error,
    },
}

/// The front of a bundle: everything before the kernel, parsed but not yet verified.
#[derive(Debug, Clone)]
pub struct Header {
    /// The manifest.
    pub manifest: Manifest,
    /// The manifest exactly as stored (what the signature covers).
    pub manifest_bytes: Vec<u8>,
    /// The signature, or `None` when the bundle is unsigned (all zero).
    pub signature: Option<Signature>,
    /// The signer's key id (zero when unsigned).
    pub key_id: KeyId,
}

impl Header {
    /// Size of the header in bytes: where the kernel starts.
    pub fn len(&self) -> u64 {
        12 + self.manifest_bytes.len() as u64 + SIGNATURE_BLOCK
    }

    /// Never: a header has at least a magic.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Size of the whole bundle.
    pub fn bundle_size(&self) -> u64 {
        self.manifest.bundle_size(self.manifest_bytes.len() as u64)
    }
}

/// Read the header from the start of `reader`, which is left at the kernel's first byte.
/// Nothing is verified: use [`verify`] or [`verify_into`] before trusting it.
pub fn read_manifest<R: Read>(reader: &mut R) -> Result<Header, BundleError> {
    let mut at = 0u64;
    let mut head = [0u8; 12];
    read_exact(reader, &mut head, &mut at, 12)?;
    if head[..7] != MAGIC[..7] {
        let found: String = head[..8].escape_ascii().to_string();
        return Err(BundleError::NotABundle {
            found: format!("\"{found}\""),
        });
    }
    if head[7] != MAGIC[7] {
        return Err(BundleError::UnknownFormat { found: head[7] });
    }
    let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if len == 0 || len > MAX_MANIFEST_LEN {
        return Err(BundleError::ManifestLength { len });
    }
    let header_len = 12 + u64::from(len) + SIGNATURE_BLOCK;
    let mut manifest_bytes = vec![0u8; len as usize];
    read_exact(reader, &mut manifest_bytes, &mut at, header_len)?;
    let mut block = [0u8; SIGNATURE_BLOCK as usize];
    read_exact(reader, &mut block, &mut at, header_len)?;
    let manifest = Manifest::parse(&manifest_bytes)?;
    let (sig, id) = block.split_at(64);
    let key_id = KeyId(id.try_into().expect("8 bytes"));
    let signature = (block.iter().any(|&b| b != 0)).then(|| Signature::from_slice(sig).expect("64 bytes"));
    Ok(Header {
        manifest,
        manifest_bytes,
        signature,
        key_id,
    })
}

/// `read_exact` that counts bytes in `at` and says where a short read ended.
fn read_exact<R: Read + ?Sized>(
    reader: &mut R,
    buf: &mut [u8],
    at: &mut u64,
    expected: u64,
) -> Result<(), BundleError> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => {
                return Err(BundleError::Truncated {
                    at: *at + n as u64,
                    expected,
                });
            }
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                return Err(BundleError::Io {
                    what: "reading the platform bundle".into(),
                    error,
                });
            }
        }
    }
    *at += n as u64;
    Ok(())
}
