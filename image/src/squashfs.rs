//! Just enough of the squashfs superblock to check that a payload is squashfs 4.0 and to
//! learn where its filesystem ends (`bytes_used`).

use thiserror::Error;

/// Size of the squashfs superblock.
pub const SUPERBLOCK_SIZE: usize = 96;
/// `hsqs`, the little-endian squashfs magic at offset 0.
pub const MAGIC: [u8; 4] = *b"hsqs";
const MAJOR_AT: usize = 28;
const BYTES_USED_AT: usize = 40;

/// Errors reading a squashfs superblock.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SquashfsError {
    /// Fewer bytes than a superblock.
    #[error("payload is {len} bytes, shorter than a squashfs superblock ({SUPERBLOCK_SIZE})")]
    Short {
        /// Bytes available.
        len: usize,
    },
    /// Wrong magic at offset 0.
    #[error("payload does not start with the squashfs magic `hsqs` (found {found}): build it with mksquashfs")]
    BadMagic {
        /// The 4 bytes found, escaped.
        found: String,
    },
    /// Not squashfs 4.x.
    #[error("payload is squashfs {major}.x, the kernel mounts 4.x only")]
    BadMajor {
        /// Major version found.
        major: u16,
    },
    /// `bytes_used` does not fit the payload.
    #[error("squashfs bytes_used (offset 40) is {bytes_used}, but the payload is {payload_size} bytes")]
    BadBytesUsed {
        /// `bytes_used` from the superblock.
        bytes_used: u64,
        /// Size of the payload.
        payload_size: u64,
    },
}

/// The fields of the superblock this crate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// Bytes of the filesystem proper; the rest of the payload is padding.
    pub bytes_used: u64,
}

impl Superblock {
    /// Parse the superblock from the first bytes of a payload.
    pub fn parse(head: &[u8]) -> Result<Self, SquashfsError> {
        if head.len() < SUPERBLOCK_SIZE {
            return Err(SquashfsError::Short { len: head.len() });
        }
        if head[..4] != MAGIC {
            return Err(SquashfsError::BadMagic {
                found: head[..4].escape_ascii().to_string(),
            });
        }
        let major = u16::from_le_bytes([head[MAJOR_AT], head[MAJOR_AT + 1]]);
        if major != 4 {
            return Err(SquashfsError::BadMajor { major });
        }
        let mut used = [0u8; 8];
        used.copy_from_slice(&head[BYTES_USED_AT..BYTES_USED_AT + 8]);
        Ok(Self {
            bytes_used: u64::from_le_bytes(used),
        })
    }

    /// Check that the filesystem fits in a payload of `payload_size` bytes.
    pub fn check_fits(&self, payload_size: u64) -> Result<(), SquashfsError> {
        if self.bytes_used < SUPERBLOCK_SIZE as u64 || self.bytes_used > payload_size {
            return Err(SquashfsError::BadBytesUsed {
                bytes_used: self.bytes_used,
                payload_size,
            });
        }
        Ok(())
    }

    /// A plausible superblock for tests and fixtures: magic, version 4.0, `bytes_used`.
    pub fn fake(bytes_used: u64) -> [u8; SUPERBLOCK_SIZE] {
        let mut b = [0u8; SUPERBLOCK_SIZE];
        b[..4].copy_from_slice(&MAGIC);
        b[MAJOR_AT..MAJOR_AT + 2].copy_from_slice(&4u16.to_le_bytes());
        b[BYTES_USED_AT..BYTES_USED_AT + 8].copy_from_slice(&bytes_used.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fake() {
        let sb = Superblock::parse(&Superblock::fake(4000)).unwrap();
        assert_eq!(sb.bytes_used, 4000);
        assert!(sb.check_fits(4096).is_ok());
        assert!(sb.check_fits(3999).is_err());
    }

    #[test]
    fn rejects_non_squashfs() {
        assert_eq!(Superblock::parse(b"hsqs"), Err(SquashfsError::Short { len: 4 }));
        let err = Superblock::parse(&[0x7f; 96]).unwrap_err().to_string();
        assert!(err.contains("squashfs magic"), "{err}");
        let mut b = Superblock::fake(100);
        b[28] = 3;
        assert_eq!(Superblock::parse(&b), Err(SquashfsError::BadMajor { major: 3 }));
    }
}
