//! The personality image format (`.rkimg`): a squashfs payload, padded to 4096 bytes, then a
//! TOML manifest, an ed25519 signature over it, and a 128-byte footer. `docs/image-format.md`
//! specifies the bytes.
//!
//! The builder calls [`write::assemble`]; the init calls [`read::open`] (footer and manifest
//! only, read from the end) and [`verify::verify`] (signature, payload digest, requirements).
//! Every error's `Display` is the whole message, context included: print it with `{}`.

pub mod bundle;
pub mod check;
pub mod detached;
pub mod footer;
pub mod ids;
pub mod keys;
pub mod manifest;
pub mod read;
pub mod repo;
pub mod requirements;
pub mod runtime;
pub mod service;
pub mod squashfs;
pub mod verify;
pub mod write;

pub use ed25519_dalek::{Signature, SigningKey, VerifyingKey};

/// File extension of a personality image.
pub const EXTENSION: &str = "rkimg";

/// Prefix of the signed message, so an image signature can never be mistaken for (or reused
/// as) a signature over anything else.
pub const SIGNATURE_DOMAIN: &[u8] = b"ramkey-image-v1\0";

/// The message the signature covers: [`SIGNATURE_DOMAIN`] followed by the manifest bytes.
pub fn signed_message(manifest_bytes: &[u8]) -> Vec<u8> {
    [SIGNATURE_DOMAIN, manifest_bytes].concat()
}
