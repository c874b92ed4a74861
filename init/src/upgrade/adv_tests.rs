//! Tests of the ADV: fake `ldlinux.sys` files, and one written by Debian's `syslinux`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

const FILE_LEN: usize = 64 * 1024;

/// A 64 KiB file of 0x5a bytes with `adv` in both copies at its end.
fn fake(dir: &Path, adv: &Adv) -> PathBuf {
    let path = dir.join("ldlinux.sys");
    let mut bytes = vec![0x5a; FILE_LEN - 2 * COPY_LEN];
    bytes.extend_from_slice(&adv.encode());
    bytes.extend_from_slice(&adv.encode());
    std::fs::write(&path, bytes).unwrap();
    path
}

fn copy(path: &Path, n: usize) -> [u8; COPY_LEN] {
    let bytes = std::fs::read(path).unwrap();
    let start = bytes.len() - (2 - n) * COPY_LEN;
    bytes[start..start + COPY_LEN].try_into().unwrap()
}

#[test]
fn round_trip_writes_both_copies_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = fake(dir.path(), &Adv::default());
    let before = std::fs::read(&path).unwrap();
    assert_eq!(boot_once(&path).unwrap(), None);

    set_boot_once(&path, Some("ramkey-b")).unwrap();
    assert_eq!(boot_once(&path).unwrap().as_deref(), Some("ramkey-b"));
    let after = std::fs::read(&path).unwrap();
    assert_eq!(after.len(), FILE_LEN);
    assert_eq!(
        after[..FILE_LEN - 1024],
        before[..FILE_LEN - 1024],
        "only the ADV changes"
    );
    assert_eq!(copy(&path, 0), copy(&path, 1));
    assert_eq!(
        Adv::parse(&copy(&path, 1)).unwrap().get(BOOT_ONCE),
        Some(&b"ramkey-b"[..])
    );

    set_boot_once(&path, Some("ramkey-a")).unwrap();
    assert_eq!(boot_once(&path).unwrap().as_deref(), Some("ramkey-a"));
    set_boot_once(&path, None).unwrap();
    assert_eq!(boot_once(&path).unwrap(), None);
    assert_eq!(std::fs::read(&path).unwrap(), before, "cleared: the empty ADV again");
}

#[test]
fn a_torn_copy_0_reads_copy_1() {
    let dir = tempfile::tempdir().unwrap();
    let mut armed = Adv::default();
    armed.set(BOOT_ONCE, Some(b"ramkey-b")).unwrap();
    let path = fake(dir.path(), &armed);
    // A write of copy 0 cut short: its magic and checksum new (empty), its records old.
    let mut bytes = std::fs::read(&path).unwrap();
    let torn = FILE_LEN - 2 * COPY_LEN;
    bytes[torn..torn + 8].copy_from_slice(&Adv::default().encode()[..8]);
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(Adv::parse(&copy(&path, 0)), None);
    assert_eq!(boot_once(&path).unwrap().as_deref(), Some("ramkey-b"));

    // Copy 0 whole and new, copy 1 still old: copy 0 wins.
    bytes[torn..torn + COPY_LEN].copy_from_slice(&Adv::default().encode());
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(boot_once(&path).unwrap(), None);

    // Neither valid: an empty ADV, and a write makes both copies valid again.
    bytes[FILE_LEN - 2 * COPY_LEN..].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(read(&path).unwrap(), Adv::default());
    set_boot_once(&path, Some("ramkey-a")).unwrap();
    assert_eq!(
        Adv::parse(&copy(&path, 0)).unwrap().get(BOOT_ONCE),
        Some(&b"ramkey-a"[..])
    );
    assert_eq!(copy(&path, 0), copy(&path, 1));
}

#[test]
fn clearing_keeps_the_other_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut adv = Adv::default();
    adv.set(BOOT_ONCE, Some(b"ramkey-b")).unwrap();
    adv.set(2, Some(b"menu-entry")).unwrap(); // ADV_MENUSAVE
    adv.set(200, Some(b"")).unwrap();
    let path = fake(dir.path(), &adv);
    set_boot_once(&path, None).unwrap();
    let left = read(&path).unwrap();
    assert_eq!(left.get(BOOT_ONCE), None);
    assert_eq!(left.get(2), Some(&b"menu-entry"[..]));
    assert_eq!(left.get(200), Some(&b""[..]));
    set_boot_once(&path, Some("ramkey-a")).unwrap();
    assert_eq!(read(&path).unwrap().get(2), Some(&b"menu-entry"[..]));
}

#[test]
fn checksum_known_answers() {
    // The empty ADV, as Debian's installer writes it: a5 2f 2d 5a, 67 17 04 a3, zeros, 64 bf 28 dd.
    let empty = Adv::default().encode();
    assert_eq!(empty[..8], [0xa5, 0x2f, 0x2d, 0x5a, 0x67, 0x17, 0x04, 0xa3]);
    assert_eq!(empty[508..], [0x64, 0xbf, 0x28, 0xdd]);
    assert!(empty[8..508].iter().all(|b| *b == 0));
    // Tag 1, length 8, "ramkey-b": words 0x61720801 0x79656b6d 0x0000622d; computed apart.
    let mut armed = Adv::default();
    armed.set(BOOT_ONCE, Some(b"ramkey-b")).unwrap();
    let bytes = armed.encode();
    assert_eq!(word(&bytes, 4), 0xc82c_41cc);
    assert_eq!(bytes[8..18], *b"\x01\x08ramkey-b");
    assert_eq!(Adv::parse(&bytes), Some(armed));
    // One bit off anywhere in the checked words: invalid.
    for at in [0, 4, 9, 300, 510] {
        let mut bad = bytes;
        bad[at] ^= 0x10;
        assert_eq!(Adv::parse(&bad), None, "bit flipped at {at}");
    }
}

#[test]
fn refusals_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.sys");
    std::fs::write(&short, [0u8; 1023]).unwrap();
    let err = set_boot_once(&short, Some("ramkey-b")).unwrap_err();
    assert!(matches!(err, AdvError::TooShort { len: 1023, .. }), "{err}");
    assert!(err.to_string().contains("short.sys: 1023 bytes"), "{err}");
    assert_eq!(std::fs::read(&short).unwrap().len(), 1023);

    let path = fake(dir.path(), &Adv::default());
    for label in ["", "two words", &"x".repeat(256)] {
        let err = set_boot_once(&path, Some(label)).unwrap_err();
        assert!(matches!(err, AdvError::BadLabel { .. }), "{label:?}: {err}");
    }
    let mut full = Adv::default();
    full.set(2, Some(&[7; 255])).unwrap();
    full.set(3, Some(&[7; 240])).unwrap();
    assert_eq!(full.room(), 1);
    let path = fake(dir.path(), &full);
    let err = set_boot_once(&path, Some("ramkey-b")).unwrap_err();
    assert!(matches!(err, AdvError::NoRoom { need: 10, room: 1, .. }), "{err}");
    assert_eq!(read(&path).unwrap(), full, "unchanged");
    let err = boot_once(&dir.path().join("absent")).unwrap_err();
    assert!(err.to_string().starts_with("open "), "{err}");
}

/// Runs a tool the test needs; a missing one fails the test and names its package.
fn run(program: &str, package: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): install Debian's {package}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An `ldlinux.sys` as Debian's `syslinux` installs it on a FAT image: its ADV is valid
/// and empty, and arming and clearing it keep the file's length and everything before it.
#[test]
fn the_installers_ldlinux_sys() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fat.img");
    let out = dir.path().join("ldlinux.sys");
    let (img_s, out_s) = (img.to_str().unwrap(), out.to_str().unwrap());
    run("mkfs.vfat", "dosfstools", &["-C", img_s, "33000"]);
    run("syslinux", "syslinux", &["--install", img_s]);
    run("mcopy", "mtools", &["-i", img_s, "::ldlinux.sys", out_s]);

    let installed = std::fs::read(&out).unwrap();
    assert!(installed.len() > 16 * 1024, "{} bytes", installed.len());
    assert_eq!(
        Adv::parse(&copy(&out, 0)),
        Some(Adv::default()),
        "copy 0 valid and empty"
    );
    assert_eq!(
        Adv::parse(&copy(&out, 1)),
        Some(Adv::default()),
        "copy 1 valid and empty"
    );
    assert_eq!(copy(&out, 0), Adv::default().encode(), "the same bytes as ours");
    assert_eq!(boot_once(&out).unwrap(), None);

    set_boot_once(&out, Some("ramkey-b")).unwrap();
    let armed = std::fs::read(&out).unwrap();
    assert_eq!(armed.len(), installed.len());
    assert_eq!(armed[..armed.len() - 1024], installed[..installed.len() - 1024]);
    assert_eq!(boot_once(&out).unwrap().as_deref(), Some("ramkey-b"));
    set_boot_once(&out, None).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), installed);
}
