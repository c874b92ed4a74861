//! The fixed-size footer at the very end of an `.rkimg`: where the payload, manifest and
//! signature are, who signed, and a checksum over itself. All integers little-endian.
//!
//! ```text
//! off  size  field
//!   0     8  magic            b"RKIMG\0\0\0"
//!   8     4  format_version   u32 = 1
//!  12     4  footer_size      u32 = 128
//!  16     8  payload_offset   u64 = 0
//!  24     8  payload_size     u64 (exact payload bytes, hashed in the manifest)
//!  32     8  manifest_offset  u64 = payload_size rounded up to 4096
//!  40     8  manifest_size    u64 (1 ..= 1 MiB)
//!  48     8  signature_offset u64 = manifest_offset + manifest_size
//!  56     8  signature_size   u64 = 64 (0 for an unsigned image)
//!  64     8  key_id           first 8 bytes of sha256(ed25519 public key); zero if unsigned
//!  72    24  reserved         zero
//!  96    32  checksum         sha256 of bytes 0..96
//! ```

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::keys::KeyId;

/// Footer magic, the first 8 bytes of the footer.
pub const MAGIC: [u8; 8] = *b"RKIMG\0\0\0";
/// The footer (and container) format version this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the footer in bytes.
pub const FOOTER_SIZE: usize = 128;
/// The payload region is padded with zeros to a multiple of this, so a loop device can be
/// limited to exactly the payload region.
pub const PAYLOAD_ALIGN: u64 = 4096;
/// Size of an ed25519 signature.
pub const SIGNATURE_SIZE: u64 = 64;
/// Largest manifest accepted, so a hostile footer cannot make a reader allocate much.
pub const MAX_MANIFEST_SIZE: u64 = 1024 * 1024;

const CHECKSUM_AT: usize = 96;
const RESERVED: std::ops::Range<usize> = 72..96;

/// Errors decoding or checking a footer.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FooterError {
    /// The first 8 bytes are not [`MAGIC`].
    #[error(
        "bad magic {found}, expected \"RKIMG\\0\\0\\0\": not a ramkey image, or the file was truncated or appended to"
    )]
    BadMagic {
        /// The bytes found, escaped.
        found: String,
    },
    /// A format version this reader does not know.
    #[error("unknown format version {found}, this reader supports version {supported}")]
    UnknownVersion {
        /// Version in the footer.
        found: u32,
        /// Version this reader supports.
        supported: u32,
    },
    /// The footer says it has another size than this version defines.
    #[error("footer size field is {found}, format version 1 defines {expected}")]
    BadFooterSize {
        /// Size in the footer.
        found: u32,
        /// Size the version defines.
        expected: u32,
    },
    /// The checksum at bytes 96..128 does not match bytes 0..96.
    #[error("footer checksum mismatch: stored {stored}, computed {computed}")]
    ChecksumMismatch {
        /// Stored checksum, hex.
        stored: String,
        /// Computed checksum, hex.
        computed: String,
    },
    /// Bytes 72..96 are not zero.
    #[error("footer reserved bytes 72..96 are not zero")]
    ReservedNotZero,
    /// A region reaches past the start of the footer (the file is truncated or the footer lies).
    #[error("truncated: {region} at offset {offset} with size {size} ends past {limit}, where the footer starts")]
    PastEnd {
        /// Which region.
        region: &'static str,
        /// Its offset.
        offset: u64,
        /// Its size.
        size: u64,
        /// The footer's offset.
        limit: u64,
    },
    /// The regions are not laid out as version 1 requires.
    #[error("bad layout: {0}")]
    Layout(String),
}

/// A decoded footer. Build one with [`Footer::for_layout`]; read one with [`Footer::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// Format version (always [`FORMAT_VERSION`] once decoded).
    pub format_version: u32,
    /// Offset of the payload (always 0).
    pub payload_offset: u64,
    /// Exact size of the payload in bytes, before padding.
    pub payload_size: u64,
    /// Offset of the manifest: the end of the padded payload region.
    pub manifest_offset: u64,
    /// Size of the manifest in bytes.
    pub manifest_size: u64,
    /// Offset of the signature.
    pub signature_offset: u64,
    /// Size of the signature: 64, or 0 when unsigned.
    pub signature_size: u64,
    /// Id of the signing key (zero when unsigned).
    pub key_id: KeyId,
}

/// Round `n` up to a multiple of [`PAYLOAD_ALIGN`], or `None` on overflow.
pub fn align_up(n: u64) -> Option<u64> {
    n.checked_add(PAYLOAD_ALIGN - 1)
        .map(|v| v / PAYLOAD_ALIGN * PAYLOAD_ALIGN)
}

impl Footer {
    /// The canonical footer for a payload, manifest and (optional) signature of these sizes.
    pub fn for_layout(payload_size: u64, manifest_size: u64, key_id: Option<KeyId>) -> Self {
        let manifest_offset = align_up(payload_size).unwrap_or(u64::MAX);
        Self {
            format_version: FORMAT_VERSION,
            payload_offset: 0,
            payload_size,
            manifest_offset,
            manifest_size,
            signature_offset: manifest_offset.saturating_add(manifest_size),
            signature_size: if key_id.is_some() { SIGNATURE_SIZE } else { 0 },
            key_id: key_id.unwrap_or(KeyId([0; 8])),
        }
    }

    /// Offset of the footer: the size of the padded payload, manifest and signature.
    pub fn footer_offset(&self) -> u64 {
        self.signature_offset.saturating_add(self.signature_size)
    }

    /// The size of the payload region including padding: what a loop device is limited to.
    pub fn payload_region_size(&self) -> u64 {
        self.manifest_offset
    }

    /// Whether the image carries a signature.
    pub fn is_signed(&self) -> bool {
        self.signature_size != 0
    }

    /// Encode to the 128 bytes written at the end of the file, checksum included.
    pub fn encode(&self) -> [u8; FOOTER_SIZE] {
        let mut b = [0u8; FOOTER_SIZE];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.format_version.to_le_bytes());
        b[12..16].copy_from_slice(&(FOOTER_SIZE as u32).to_le_bytes());
        let fields = [
            self.payload_offset,
            self.payload_size,
            self.manifest_offset,
            self.manifest_size,
            self.signature_offset,
            self.signature_size,
        ];
        for (i, v) in fields.iter().enumerate() {
            let at = 16 + i * 8;
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        b[64..72].copy_from_slice(&self.key_id.0);
        let sum = checksum(&b);
        b[CHECKSUM_AT..].copy_from_slice(&sum);
        b
    }

    /// Decode and check a footer read from the last 128 bytes of a file of `file_len` bytes.
    ///
    /// Checks, in order: magic, format version, footer size, checksum, reserved bytes, then
    /// that every region lies before the footer and the layout is the canonical one.
    pub fn decode(b: &[u8; FOOTER_SIZE], file_len: u64) -> Result<Self, FooterError> {
        if b[0..8] != MAGIC {
            return Err(FooterError::BadMagic {
                found: b[0..8].escape_ascii().to_string(),
            });
        }
        let format_version = u32_at(b, 8);
        if format_version != FORMAT_VERSION {
            return Err(FooterError::UnknownVersion {
                found: format_version,
                supported: FORMAT_VERSION,
            });
        }
        let footer_size = u32_at(b, 12);
        if footer_size != FOOTER_SIZE as u32 {
            return Err(FooterError::BadFooterSize {
                found: footer_size,
                expected: FOOTER_SIZE as u32,
            });
        }
        let computed = checksum(b);
        if b[CHECKSUM_AT..] != computed {
            return Err(FooterError::ChecksumMismatch {
                stored: hex(&b[CHECKSUM_AT..]),
                computed: hex(&computed),
            });
        }
        if b[RESERVED].iter().any(|&x| x != 0) {
            return Err(FooterError::ReservedNotZero);
        }
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&b[64..72]);
        let footer = Self {
            format_version,
            payload_offset: u64_at(b, 16),
            payload_size: u64_at(b, 24),
            manifest_offset: u64_at(b, 32),
            manifest_size: u64_at(b, 40),
            signature_offset: u64_at(b, 48),
            signature_size: u64_at(b, 56),
            key_id: KeyId(key_id),
        };
        footer.check_layout(file_len.saturating_sub(FOOTER_SIZE as u64))?;
        Ok(footer)
    }

    fn check_layout(&self, limit: u64) -> Result<(), FooterError> {
        let regions = [
            ("payload", self.payload_offset, self.payload_size),
            ("manifest", self.manifest_offset, self.manifest_size),
            ("signature", self.signature_offset, self.signature_size),
        ];
        for (region, offset, size) in regions {
            if offset.checked_add(size).is_none_or(|end| end > limit) {
                return Err(FooterError::PastEnd {
                    region,
                    offset,
                    size,
                    limit,
                });
            }
        }
        let layout = |msg: String| Err(FooterError::Layout(msg));
        if self.payload_offset != 0 {
            return layout(format!(
                "payload starts at offset {}, must start at 0",
                self.payload_offset
            ));
        }
        let want_manifest = align_up(self.payload_size).unwrap_or(u64::MAX);
        if self.manifest_offset != want_manifest {
            return layout(format!(
                "manifest starts at offset {}, expected {want_manifest} (payload size {} rounded up to {PAYLOAD_ALIGN})",
                self.manifest_offset, self.payload_size
            ));
        }
        if self.manifest_size == 0 || self.manifest_size > MAX_MANIFEST_SIZE {
            return layout(format!(
                "manifest size {} is outside 1..={MAX_MANIFEST_SIZE}",
                self.manifest_size
            ));
        }
        let want_signature = self.manifest_offset + self.manifest_size;
        if self.signature_offset != want_signature {
            return layout(format!(
                "signature starts at offset {}, expected {want_signature} (right after the manifest)",
                self.signature_offset
            ));
        }
        if self.signature_size != 0 && self.signature_size != SIGNATURE_SIZE {
            return layout(format!(
                "signature size {} is neither {SIGNATURE_SIZE} nor 0",
                self.signature_size
            ));
        }
        if self.signature_size == 0 && self.key_id.0 != [0; 8] {
            return layout(format!("unsigned image names key id {}; it must be zero", self.key_id));
        }
        if self.footer_offset() != limit {
            return layout(format!(
                "signature ends at {}, but the footer starts at {limit}",
                self.footer_offset()
            ));
        }
        Ok(())
    }
}

fn checksum(b: &[u8; FOOTER_SIZE]) -> [u8; 32] {
    Sha256::digest(&b[..CHECKSUM_AT]).into()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Lowercase hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Footer, u64) {
        let f = Footer::for_layout(5000, 300, Some(KeyId([1, 2, 3, 4, 5, 6, 7, 8])));
        (f, f.footer_offset() + FOOTER_SIZE as u64)
    }

    #[test]
    fn round_trips_with_canonical_layout() {
        let (f, len) = sample();
        assert_eq!(f.manifest_offset, 8192);
        assert_eq!(f.signature_offset, 8492);
        assert_eq!(Footer::decode(&f.encode(), len), Ok(f));
    }

    #[test]
    fn encoding_is_byte_exact() {
        let (f, _) = sample();
        let b = f.encode();
        assert_eq!(&b[0..8], b"RKIMG\0\0\0");
        assert_eq!(&b[8..12], &[1, 0, 0, 0]);
        assert_eq!(&b[12..16], &[128, 0, 0, 0]);
        assert_eq!(&b[24..32], &5000u64.to_le_bytes());
        assert_eq!(&b[32..40], &8192u64.to_le_bytes());
        assert_eq!(&b[56..64], &64u64.to_le_bytes());
        assert_eq!(&b[64..72], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(b[72..96].iter().all(|&x| x == 0));
    }

    #[test]
    fn rejects_reserved_bytes() {
        let (f, len) = sample();
        let mut b = f.encode();
        b[80] = 1;
        let sum = checksum(&b);
        b[96..].copy_from_slice(&sum);
        assert_eq!(Footer::decode(&b, len), Err(FooterError::ReservedNotZero));
    }

    #[test]
    fn rejects_gap_before_footer() {
        let (f, len) = sample();
        let err = Footer::decode(&f.encode(), len + 1).unwrap_err();
        assert!(err.to_string().contains("but the footer starts at"), "{err}");
    }

    #[test]
    fn rejects_unsigned_with_key_id() {
        let mut f = Footer::for_layout(10, 10, None);
        f.key_id = KeyId([9; 8]);
        let len = f.footer_offset() + FOOTER_SIZE as u64;
        let err = Footer::decode(&f.encode(), len).unwrap_err();
        assert!(err.to_string().contains("unsigned image names key id"), "{err}");
    }

    #[test]
    fn align_up_rounds_to_4096() {
        assert_eq!(align_up(0), Some(0));
        assert_eq!(align_up(1), Some(4096));
        assert_eq!(align_up(4096), Some(4096));
        assert_eq!(align_up(u64::MAX), None);
    }
}
