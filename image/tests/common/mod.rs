//! Helpers shared by the integration tests: a fake squashfs payload, a sample manifest, keys,
//! images written to a temp dir, and byte patches.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ramkey_image::footer::{FOOTER_SIZE, Footer};
use ramkey_image::keys::KeyId;
use ramkey_image::manifest::Manifest;
use ramkey_image::requirements::PlatformVersion;
use ramkey_image::squashfs::Superblock;
use ramkey_image::verify::Platform;
use ramkey_image::write::{Assembled, assemble};
use ramkey_image::{SigningKey, signed_message};
use sha2::{Digest, Sha256};

/// Size of the fake payload: not a multiple of 4096, so there is padding.
pub const PAYLOAD_SIZE: usize = 5000;

/// A payload that starts with a plausible squashfs superblock, then a byte pattern.
pub fn payload() -> Vec<u8> {
    let mut p: Vec<u8> = (0..PAYLOAD_SIZE).map(|i| (i % 251) as u8).collect();
    p[..96].copy_from_slice(&Superblock::fake(4900));
    p
}

pub fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

pub fn other_key() -> SigningKey {
    SigningKey::from_bytes(&[43; 32])
}

pub fn manifest() -> Manifest {
    let text = include_str!("../fixtures/manifests/good-full.toml");
    Manifest::parse(text).expect("good-full.toml parses")
}

pub fn platform(version: &str) -> Platform {
    Platform {
        version: version.parse::<PlatformVersion>().unwrap(),
        arch: "x86_64".into(),
    }
}

/// Image bytes from the builder's path.
pub fn image_bytes() -> (Vec<u8>, Assembled) {
    let mut out = Vec::new();
    let a = assemble(payload().as_slice(), &manifest(), &key(), &mut out).unwrap();
    (out, a)
}

/// Image bytes with an arbitrary manifest text, signed by `key` (or unsigned), laid out as
/// the format requires. For manifests the builder would refuse to write.
pub fn raw_image(manifest: &[u8], key: Option<&SigningKey>) -> Vec<u8> {
    let mut out = payload();
    out.resize(8192, 0);
    out.extend_from_slice(manifest);
    let id = key.map(|k| KeyId::of(&k.verifying_key()));
    if let Some(k) = key {
        use ed25519_dalek::Signer;
        out.extend_from_slice(&k.sign(&signed_message(manifest)).to_bytes());
    }
    let footer = Footer::for_layout(PAYLOAD_SIZE as u64, manifest.len() as u64, id);
    out.extend_from_slice(&footer.encode());
    out
}

pub fn write(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("test.rkimg");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Change the footer in place with `f`, then recompute its checksum.
pub fn patch_footer(bytes: &mut [u8], f: impl FnOnce(&mut [u8])) {
    let at = bytes.len() - FOOTER_SIZE;
    let footer = &mut bytes[at..];
    f(footer);
    let sum: [u8; 32] = Sha256::digest(&footer[..96]).into();
    footer[96..].copy_from_slice(&sum);
}
