//! Tests of writing a bundle into a slot on a stick folder and reading what a slot holds.

use std::fs;
use std::path::{Path, PathBuf};

use ramkey_image::SigningKey;
use ramkey_image::bundle::write::{Release, write_file};

use super::*;

/// A bundle of version `version` in `dir`, signed by `key`.
fn bundle(dir: &Path, version: &str, key: &SigningKey) -> PathBuf {
    fs::write(dir.join("k"), format!("kernel {version}")).unwrap();
    fs::write(dir.join("i"), vec![7u8; 300_000]).unwrap();
    let out = dir.join(format!("{version}.rkup"));
    let release = Release {
        version: version.into(),
        kernel_release: "6.1.0-test".into(),
        created: 1_700_000_000,
        builder_version: "0.1.0".into(),
    };
    write_file(&dir.join("k"), &dir.join("i"), &release, key, &out).unwrap();
    out
}

fn stick() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("platform/a")).unwrap();
    fs::write(
        dir.path().join("platform/a/version"),
        "ramkey 0.1.0\nkernel 6.1.0-test\n",
    )
    .unwrap();
    dir
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_bundle_fills_the_slot_and_a_refused_one_leaves_it_as_it_was() {
    let stick = stick();
    let work = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[3; 32]);
    let trusted = [key.verifying_key()];
    let good = bundle(work.path(), "0.2.0", &key);
    let w = write(
        stick.path(),
        Slot::B,
        &mut File::open(&good).unwrap(),
        &trusted,
        "0.1.0",
        false,
    )
    .unwrap();
    assert_eq!(w.verified.manifest.version, "0.2.0");
    assert_eq!(
        names(&stick.path().join("platform/b")),
        ["SHA256SUMS", "bundle.toml", "initrd.img", "version", "vmlinuz"]
    );
    assert_eq!(
        fs::read(stick.path().join("platform/b/vmlinuz")).unwrap(),
        b"kernel 0.2.0"
    );
    let b = info(stick.path(), Slot::B);
    assert_eq!(
        (b.version.as_deref(), b.kernel.as_deref(), b.built, b.incomplete),
        (Some("0.2.0"), Some("6.1.0-test"), Some(1_700_000_000), None)
    );

    // Truncated: found only at the end, after the old slot's files would have been gone.
    let newer = bundle(work.path(), "0.3.0", &key);
    let bytes = fs::read(&newer).unwrap();
    let err = write(
        stick.path(),
        Slot::B,
        &mut &bytes[..bytes.len() - 10],
        &trusted,
        "0.1.0",
        false,
    )
    .unwrap_err();
    assert!(err.starts_with("truncated platform bundle"), "{err}");
    // Older than running, and signed by a stranger.
    let err = write(
        stick.path(),
        Slot::B,
        &mut File::open(&good).unwrap(),
        &trusted,
        "0.2.5",
        false,
    )
    .unwrap_err();
    assert!(err.contains("older than the running platform 0.2.5"), "{err}");
    let stranger = bundle(work.path(), "0.4.0", &SigningKey::from_bytes(&[9; 32]));
    let err = write(
        stick.path(),
        Slot::B,
        &mut File::open(&stranger).unwrap(),
        &trusted,
        "0.1.0",
        false,
    )
    .unwrap_err();
    assert!(err.contains("which is not trusted"), "{err}");
    assert_eq!(
        fs::read(stick.path().join("platform/b/vmlinuz")).unwrap(),
        b"kernel 0.2.0"
    );
    assert_eq!(names(&stick.path().join("platform")), ["a", "b"], "nothing left beside");
    assert_eq!(info(stick.path(), Slot::B).version.as_deref(), Some("0.2.0"));
}

#[test]
fn a_write_cut_off_shows_as_incomplete_until_the_next_upgrade_clears_it() {
    let stick = stick();
    fs::create_dir_all(stick.path().join("platform/b.new")).unwrap();
    fs::write(stick.path().join("platform/b.new/vmlinuz"), b"half").unwrap();
    let b = info(stick.path(), Slot::B);
    assert_eq!(b.version, None);
    assert!(b.incomplete.as_deref().unwrap().contains("platform/b.new"), "{b:?}");
    assert_eq!(info(stick.path(), Slot::A).version.as_deref(), Some("0.1.0"));
    assert_eq!(info(stick.path(), Slot::A).incomplete, None);

    let work = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[3; 32]);
    let good = bundle(work.path(), "0.2.0", &key);
    write(
        stick.path(),
        Slot::B,
        &mut File::open(&good).unwrap(),
        &[key.verifying_key()],
        "0.1.0",
        false,
    )
    .unwrap();
    assert_eq!(info(stick.path(), Slot::B).incomplete, None);
    assert_eq!(names(&stick.path().join("platform")), ["a", "b"]);
}
