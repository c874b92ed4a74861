//! The platform bundle (`platform.rkup`): a round trip, and each refusal with its message.

mod common;

use std::path::{Path, PathBuf};

use common::{key, other_key};
use ramkey_image::bundle::{
    self, BUNDLE_DOMAIN, BundleError, MAGIC, Release, read_manifest, verify, verify_into, write, write_file,
};
use ramkey_image::keys::KeyId;
use ramkey_image::{SIGNATURE_DOMAIN, VerifyingKey};

fn kernel_bytes() -> Vec<u8> {
    (0..70_000u32).map(|i| (i % 253) as u8).collect()
}

fn initrd_bytes() -> Vec<u8> {
    (0..100_000u32).map(|i| (i % 241) as u8 ^ 0x5a).collect()
}

fn release(version: &str) -> Release {
    Release {
        version: version.into(),
        kernel_release: "6.1.0-31-amd64".into(),
        created: 1_700_000_000,
        builder_version: "0.1.0".into(),
    }
}

/// The kernel and initrd files in `dir`.
fn parts(dir: &Path) -> (PathBuf, PathBuf) {
    let (k, i) = (dir.join("vmlinuz"), dir.join("initrd.img"));
    std::fs::write(&k, kernel_bytes()).unwrap();
    std::fs::write(&i, initrd_bytes()).unwrap();
    (k, i)
}

fn bundle_of(version: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (k, i) = parts(dir.path());
    let mut out = Vec::new();
    write(&k, &i, &release(version), &key(), &mut out).unwrap();
    out
}

fn trusted() -> Vec<VerifyingKey> {
    vec![other_key().verifying_key(), key().verifying_key()]
}

fn refusal(bytes: &[u8], running: Option<&str>) -> String {
    verify(bytes, &trusted(), running, false).unwrap_err().to_string()
}

fn header_len(bytes: &[u8]) -> usize {
    12 + u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize + 72
}

#[test]
fn round_trip_streams_the_parts_out() {
    let dir = tempfile::tempdir().unwrap();
    let (k, i) = parts(dir.path());
    let out = dir.path().join(bundle::FILE_NAME);
    let written = write_file(&k, &i, &release("0.2.0"), &key(), &out).unwrap();
    assert!(!dir.path().join("platform.rkup.partial").exists());
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(bytes[..8], MAGIC);
    assert_eq!(bytes, bundle_of("0.2.0"), "the same inputs give the same bytes");
    assert_eq!(written.kernel.size, 70_000);
    let (mut kernel, mut initrd) = (Vec::new(), Vec::new());
    let v = verify_into(
        bytes.as_slice(),
        &trusted(),
        Some("0.1.9"),
        false,
        &mut kernel,
        &mut initrd,
    )
    .unwrap();
    assert_eq!((kernel, initrd), (kernel_bytes(), initrd_bytes()));
    assert_eq!(v.manifest, written);
    assert_eq!(v.key_id, KeyId::of(&key().verifying_key()));
    assert_eq!(v.size, bytes.len() as u64);
    assert_eq!(v.manifest.kernel_release, "6.1.0-31-amd64");
    // The same version is a reinstall; no running version checks none.
    verify(bytes.as_slice(), &trusted(), Some("0.2"), false).unwrap();
    verify(bytes.as_slice(), &trusted(), None, false).unwrap();
    let header = read_manifest(&mut bytes.as_slice()).unwrap();
    assert_eq!(header.len() as usize, header_len(&bytes));
    assert_eq!(header.bundle_size(), bytes.len() as u64);
    let text = std::str::from_utf8(&header.manifest_bytes).unwrap();
    assert!(text.contains("version = \"0.2.0\""), "{text}");
}

#[test]
fn an_unsigned_bundle_is_refused() {
    let mut bytes = bundle_of("1.0");
    let at = header_len(&bytes) - 72;
    bytes[at..at + 72].fill(0);
    let err = refusal(&bytes, None);
    assert_eq!(
        err,
        "platform bundle is not signed: build it with `ramkey build --key SECRET`"
    );
}

#[test]
fn an_unknown_key_is_refused_with_its_id() {
    let bytes = bundle_of("1.0");
    let only_other = [other_key().verifying_key()];
    let err = verify(bytes.as_slice(), &only_other, None, false)
        .unwrap_err()
        .to_string();
    let id = KeyId::of(&key().verifying_key());
    let other = KeyId::of(&other_key().verifying_key());
    assert_eq!(
        err,
        format!("platform bundle signed by key {id}, which is not trusted (trusted: {other})")
    );
    let err = verify(bytes.as_slice(), &[], None, false).unwrap_err().to_string();
    assert!(err.ends_with("(trusted: none)"), "{err}");
}

#[test]
fn an_altered_manifest_or_signature_is_refused() {
    let bytes = bundle_of("1.0");
    let mut changed = bytes.clone();
    let at = changed.windows(5).position(|w| w == b"1.0\"\n").unwrap();
    changed[at] = b'9';
    let err = refusal(&changed, None);
    assert!(
        err.contains("does not verify: the manifest or signature was altered"),
        "{err}"
    );
    let mut changed = bytes;
    let sig = header_len(&changed) - 72;
    changed[sig + 3] ^= 1;
    assert!(refusal(&changed, None).contains("does not verify"));
}

#[test]
fn a_corrupt_kernel_or_initrd_is_refused() {
    let bytes = bundle_of("1.0");
    let start = header_len(&bytes);
    for (offset, part) in [(start + 1000, "kernel"), (bytes.len() - 1, "initrd")] {
        let mut changed = bytes.clone();
        changed[offset] ^= 0xff;
        let err = refusal(&changed, None);
        assert!(
            err.starts_with(&format!("{part} sha256 mismatch: the manifest says ")),
            "{err}"
        );
        assert!(err.ends_with("corrupt or altered"), "{err}");
    }
}

#[test]
fn a_truncated_bundle_says_where_it_ends() {
    let bytes = bundle_of("1.0");
    let total = bytes.len();
    for cut in [0, 5, 20, header_len(&bytes) - 1, header_len(&bytes) + 10, total - 1] {
        let err = refusal(&bytes[..cut], None);
        assert!(
            err.starts_with(&format!("truncated platform bundle: it ends at byte {cut} of ")),
            "{err}"
        );
        if cut >= header_len(&bytes) {
            assert!(err.contains(&format!(" of {total} ")), "{err}");
        }
    }
    let mut longer = bytes;
    longer.push(0);
    let err = refusal(&longer, None);
    assert_eq!(
        err,
        format!("platform bundle has bytes after its end at byte {total}: appended to, or not written by ramkey")
    );
}

#[test]
fn an_older_bundle_needs_allow_downgrade() {
    let bytes = bundle_of("0.9.1");
    let err = refusal(&bytes, Some("0.10.0"));
    assert_eq!(
        err,
        "platform bundle is version 0.9.1, older than the running platform 0.10.0: give --allow-downgrade to install it anyway"
    );
    verify(bytes.as_slice(), &trusted(), Some("0.10.0"), true).unwrap();
    let err = refusal(&bytes, Some("latest"));
    assert!(err.contains("bad platform version `latest`"), "{err}");
}

#[test]
fn other_files_are_not_bundles() {
    let (image, _) = common::image_bytes();
    let err = refusal(&image, None);
    assert!(err.starts_with("not a Ramkey platform bundle: starts with \""), "{err}");
    assert!(refusal(b"hello", None).starts_with("truncated platform bundle: it ends at byte 5 of 12"));
    let mut next = bundle_of("1.0");
    next[7] = 2;
    assert_eq!(
        refusal(&next, None),
        "platform bundle format 2: this ramkey reads format 1"
    );
    let mut huge = bundle_of("1.0");
    huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(refusal(&huge, None).contains("manifest length 4294967295"));
}

#[test]
fn a_bad_manifest_is_named() {
    let mut bytes = bundle_of("1.0");
    let at = bytes.windows(9).position(|w| w == b"format = ").unwrap();
    bytes[at + 9] = b'7';
    let err = refusal(&bytes, None);
    assert_eq!(err, "bad platform bundle manifest: format = 7, expected 1");
}

#[test]
fn the_signature_domain_is_not_the_images() {
    assert_ne!(BUNDLE_DOMAIN, SIGNATURE_DOMAIN);
    assert!(matches!(
        write(
            Path::new("/nonexistent/vmlinuz"),
            Path::new("x"),
            &release("1"),
            &key(),
            Vec::new()
        ),
        Err(BundleError::Io { .. })
    ));
    let err = write(Path::new("a"), Path::new("b"), &release("one"), &key(), Vec::new()).unwrap_err();
    assert!(err.to_string().contains("bad platform version `one`"), "{err}");
}
