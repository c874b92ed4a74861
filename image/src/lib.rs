//! The personality image format (`.rkimg`): a squashfs payload with a signed manifest
//! appended. The format arrives with the personality-image issue; until then the crate holds
//! only the contract constants.

/// File extension of a personality image.
pub const EXTENSION: &str = "rkimg";
