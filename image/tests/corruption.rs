//! Every kind of bad image gives its own error, naming what and where.

mod common;

use common::*;
use ramkey_image::footer::FOOTER_SIZE;
use ramkey_image::keys::KeyId;
use ramkey_image::read::{ReadError, open};
use ramkey_image::verify::{VerifyError, verify};

/// Write `bytes`, read them, and return the read error's message.
fn read_err(bytes: &[u8]) -> (ReadError, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), bytes);
    let err = open(&path).expect_err("read must fail");
    let msg = err.to_string();
    assert!(msg.contains("test.rkimg"), "message names the file: {msg}");
    (err, msg)
}

/// Write `bytes`, read them (must succeed), verify with `key()` trusted on platform 0.1.
fn verify_err(bytes: &[u8]) -> (VerifyError, String) {
    verify_err_on(bytes, "0.1", &[key().verifying_key()])
}

fn verify_err_on(bytes: &[u8], version: &str, trusted: &[ramkey_image::VerifyingKey]) -> (VerifyError, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), bytes);
    let image = open(&path).expect("trailer reads");
    let err = verify(image, trusted, &platform(version)).expect_err("verify must fail");
    let msg = err.to_string();
    assert!(msg.contains("test.rkimg"), "message names the file: {msg}");
    (err, msg)
}

fn footer_at(bytes: &[u8]) -> usize {
    bytes.len() - FOOTER_SIZE
}

#[test]
fn shorter_than_a_footer() {
    let (err, msg) = read_err(&[0u8; 100]);
    assert!(matches!(err, ReadError::TooShort { len: 100, .. }));
    assert!(
        msg.contains("truncated: file is 100 bytes, shorter than the 128-byte footer"),
        "{msg}"
    );
}

#[test]
fn cut_off_end_is_bad_magic() {
    let (mut bytes, _) = image_bytes();
    bytes.truncate(bytes.len() - 10);
    let (_, msg) = read_err(&bytes);
    assert!(msg.contains("bad magic"), "{msg}");
}

#[test]
fn region_past_the_end_is_truncated() {
    // The start of the file went missing: the footer's offsets now point past its start.
    let (bytes, a) = image_bytes();
    let cut = &bytes[4096..];
    let (_, msg) = read_err(cut);
    let limit = a.footer.footer_offset() - 4096;
    assert!(
        msg.contains(&format!(
            "truncated: manifest at offset 8192 with size {}",
            a.footer.manifest_size
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("ends past {limit}, where the footer starts")),
        "{msg}"
    );
}

#[test]
fn bad_magic() {
    let (mut bytes, _) = image_bytes();
    let at = footer_at(&bytes);
    bytes[at] = b'X';
    let (_, msg) = read_err(&bytes);
    assert!(
        msg.contains(&format!("footer at offset {at}: bad magic XKIMG\\x00\\x00\\x00")),
        "{msg}"
    );
}

#[test]
fn unknown_format_version() {
    let (mut bytes, _) = image_bytes();
    patch_footer(&mut bytes, |f| f[8] = 2);
    let (_, msg) = read_err(&bytes);
    assert!(
        msg.contains("unknown format version 2, this reader supports version 1"),
        "{msg}"
    );
}

#[test]
fn footer_checksum_mismatch() {
    let (mut bytes, _) = image_bytes();
    let at = footer_at(&bytes);
    bytes[at + 24] ^= 1; // payload_size, checksum not updated
    let (_, msg) = read_err(&bytes);
    assert!(msg.contains("footer checksum mismatch: stored "), "{msg}");
    assert!(msg.contains(", computed "), "{msg}");
}

#[test]
fn manifest_not_utf8() {
    let (mut bytes, a) = image_bytes();
    let bad = a.footer.manifest_offset as usize + 20;
    bytes[bad] = 0xff;
    let (_, msg) = read_err(&bytes);
    assert!(
        msg.contains(&format!(
            "manifest at offset 8192 is not UTF-8: invalid byte at file offset {bad}"
        )),
        "{msg}"
    );
}

#[test]
fn manifest_toml_syntax_error_has_line_and_column() {
    let text = "format_version = 1\nname = \"www\nversion = \"1\"\n";
    let (_, msg) = read_err(&raw_image(text.as_bytes(), Some(&key())));
    assert!(
        msg.contains("manifest at offset 8192: manifest line 2, column"),
        "{msg}"
    );
}

#[test]
fn manifest_unknown_key_has_line_and_column() {
    let text = manifest()
        .to_toml()
        .unwrap()
        .replacen("created", "colour = 1\ncreated", 1);
    let line = text.lines().position(|l| l.starts_with("colour")).unwrap() + 1;
    let (_, msg) = read_err(&raw_image(text.as_bytes(), Some(&key())));
    assert!(
        msg.contains(&format!("line {line}, column 1: unknown field `colour`")),
        "{msg}"
    );
}

#[test]
fn manifest_unknown_format_version() {
    let text = manifest()
        .to_toml()
        .unwrap()
        .replace("format_version = 1", "format_version = 7");
    let (_, msg) = read_err(&raw_image(text.as_bytes(), Some(&key())));
    assert!(msg.contains("manifest format_version 7 is not supported"), "{msg}");
}

#[test]
fn a_signed_manifest_with_zone_wide_health_is_refused_when_read() {
    // What a builder from before the table was refused signed: the box refuses it at boot
    // and `ramkey image verify` names the line, rather than take checks it would never run.
    let mut text = manifest().to_toml().unwrap();
    let line = text.lines().count() + 2;
    text.push_str("\n[[health]]\nname = \"site\"\nprobe = { kind = \"tcp\", port = 80 }\n");
    let (err, msg) = read_err(&raw_image(text.as_bytes(), Some(&key())));
    assert!(matches!(err, ReadError::Manifest { .. }), "{err:?}");
    assert!(
        msg.contains(&format!(
            "manifest line {line}, column 1: zone-wide `[[health]]` checks are not supported"
        )),
        "{msg}"
    );
    assert!(msg.contains("that service's `health` probe"), "{msg}");
}

#[test]
fn missing_signature() {
    let text = manifest().to_toml().unwrap();
    let (err, msg) = verify_err(&raw_image(text.as_bytes(), None));
    assert!(matches!(err, VerifyError::Unsigned { .. }));
    assert!(msg.contains("image is not signed"), "{msg}");
}

#[test]
fn signed_by_an_untrusted_key() {
    let (bytes, _) = image_bytes();
    let signer = KeyId::of(&key().verifying_key());
    let trusted = KeyId::of(&other_key().verifying_key());
    let (_, msg) = verify_err_on(&bytes, "0.1", &[other_key().verifying_key()]);
    assert!(
        msg.contains(&format!(
            "signed by key {signer}, which is not trusted (trusted: {trusted})"
        )),
        "{msg}"
    );
    let (_, msg) = verify_err_on(&bytes, "0.1", &[]);
    assert!(msg.contains("(trusted: none)"), "{msg}");
}

#[test]
fn tampered_manifest_does_not_verify() {
    let (mut bytes, a) = image_bytes();
    let start = a.footer.manifest_offset as usize;
    let m = &mut bytes[start..start + a.footer.manifest_size as usize];
    let text = std::str::from_utf8(m)
        .unwrap()
        .replace("created = 1700000000", "created = 1700000001");
    m.copy_from_slice(text.as_bytes());
    let (err, msg) = verify_err(&bytes);
    assert!(matches!(err, VerifyError::BadSignature { .. }));
    let id = KeyId::of(&key().verifying_key());
    assert!(msg.contains(&format!("signature by key {id} does not verify")), "{msg}");
}

#[test]
fn tampered_signature_does_not_verify() {
    let (mut bytes, a) = image_bytes();
    bytes[a.footer.signature_offset as usize + 5] ^= 0x40;
    let (err, _) = verify_err(&bytes);
    assert!(matches!(err, VerifyError::BadSignature { .. }));
}

#[test]
fn flipped_payload_byte_is_a_digest_mismatch() {
    let (mut bytes, a) = image_bytes();
    bytes[1234] ^= 1;
    let (err, msg) = verify_err(&bytes);
    assert!(matches!(err, VerifyError::PayloadDigestMismatch { .. }));
    assert!(
        msg.contains(&format!(
            "payload sha256 mismatch over bytes 0..5000: manifest says {}",
            a.manifest.payload.sha256
        )),
        "{msg}"
    );
}

#[test]
fn footer_payload_size_disagreeing_with_manifest() {
    let (mut bytes, _) = image_bytes();
    patch_footer(&mut bytes, |f| f[24..32].copy_from_slice(&4999u64.to_le_bytes()));
    let (err, msg) = verify_err(&bytes);
    assert!(matches!(err, VerifyError::PayloadSizeMismatch { .. }));
    assert!(
        msg.contains("payload size mismatch: manifest says 5000 bytes, footer says 4999"),
        "{msg}"
    );
}

#[test]
fn non_zero_padding() {
    let (mut bytes, _) = image_bytes();
    bytes[6000] = 1;
    let (_, msg) = verify_err(&bytes);
    assert!(msg.contains("padding byte at offset 6000 is not zero"), "{msg}");
}

#[test]
fn platform_too_old() {
    let mut m = manifest();
    m.requirements.min_platform = "2.1".into();
    let mut bytes = Vec::new();
    ramkey_image::write::assemble(payload().as_slice(), &m, &key(), &mut bytes).unwrap();
    let (err, msg) = verify_err_on(&bytes, "2.0.9", &[key().verifying_key()]);
    assert!(matches!(err, VerifyError::Requirements { .. }));
    assert!(
        msg.contains("image `www` requires platform 2.1 or newer, this platform is 2.0.9"),
        "{msg}"
    );
}

#[test]
fn wrong_architecture() {
    let mut m = manifest();
    m.requirements.arch = "aarch64".into();
    let mut bytes = Vec::new();
    ramkey_image::write::assemble(payload().as_slice(), &m, &key(), &mut bytes).unwrap();
    let (_, msg) = verify_err(&bytes);
    assert!(
        msg.contains("image `www` is built for aarch64, this platform is x86_64"),
        "{msg}"
    );
}
