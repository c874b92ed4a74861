//! Tests of the host key: OpenSSH's format, checked once against `ssh-keygen` and frozen
//! here; where the key is kept and what happens when it cannot be.

use super::*;
use crate::storage::mounts::fake::RecordingMounter;
use nix::errno::Errno;
use nix::mount::MsFlags;

/// The key of seed 1, 2, ..., 32.
fn fixed() -> HostKey {
    let seed: [u8; 32] = std::array::from_fn(|i| u8::try_from(i + 1).unwrap());
    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    HostKey { seed, public }
}

#[test]
fn openssh_format_round_trips_and_matches_ssh_keygen() {
    let key = fixed();
    let text = key.to_openssh("root@ramkey");
    assert!(text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
    assert!(text.lines().all(|l| l.len() <= 70), "{text}");
    assert_eq!(HostKey::parse(&text), Ok(key.clone()));
    // `ssh-keygen -y -f` printed this public line for the file above, and `ssh-keygen -l`
    // this fingerprint (OpenSSH 9.2).
    assert_eq!(key.fingerprint(), FINGERPRINT);
    assert_eq!(key.public_line("root@ramkey"), PUBLIC);
}

const FINGERPRINT: &str = "SHA256:eVkCKHnc5RjanBduU2vmOecbFl3M9wOgHdk24INJytY";
const PUBLIC: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQutBJZk root@ramkey\n";

/// A key `ssh-keygen -t ed25519 -N ''` made (its check integers are random).
const BY_SSH_KEYGEN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBmG2rojW5uKpAztJRTzJCPV9g9J72A8ymUYzx9N5VyCQAAAJiZpurhmabq
4QAAAAtzc2gtZWQyNTUxOQAAACBmG2rojW5uKpAztJRTzJCPV9g9J72A8ymUYzx9N5VyCQ
AAAEBPlwJowpraZGgxL8FHL7zR3MXu+022XWEXsHB1fbogtGYbauiNbm4qkDO0lFPMkI9X
2D0nvYDzKZRjPH03lXIJAAAAEm1hZGUtYnktc3NoLWtleWdlbgECAw==
-----END OPENSSH PRIVATE KEY-----
";

#[test]
fn a_key_made_by_ssh_keygen_is_read() {
    let key = HostKey::parse(BY_SSH_KEYGEN).unwrap();
    assert_eq!(key.fingerprint(), "SHA256:AaXeQbAvrtzs/jx3k8LNmNPjiirg2olwaE66G81953Y");
}

#[test]
fn damaged_keys_are_refused_with_a_reason() {
    let key = fixed();
    let text = key.to_openssh("c");
    let err = |t: &str| HostKey::parse(t).unwrap_err();
    assert!(err("hello").starts_with("not an OpenSSH private key"));
    let lines: Vec<&str> = text.lines().collect();
    let cut = format!("{}\n{}\n{}\n", lines[0], &lines[1][..40], lines[lines.len() - 1]);
    assert!(
        err(&cut).contains("truncated") || err(&cut).contains("not an OpenSSH"),
        "{}",
        err(&cut)
    );
    let mut other = key.clone();
    other.public[0] ^= 1;
    let forged = HostKey::to_openssh(&other, "c");
    assert!(err(&forged).contains("does not match"), "{}", err(&forged));
}

/// Whether each remount was read-only, in order.
fn read_only(m: &RecordingMounter) -> Vec<bool> {
    m.mounts.iter().map(|c| c.flags.contains(MsFlags::MS_RDONLY)).collect()
}

#[test]
fn made_once_on_the_pool_then_kept() {
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("pool");
    fs::create_dir(&pool).unwrap();
    let mut m = RecordingMounter::default();
    let (first, origin) = load_or_make(Stores {
        pool: Some(&pool),
        usbkey: None,
        mounter: &mut m,
    })
    .unwrap();
    assert_eq!(origin, Origin::Made(pool.join("ssh").join(KEY_FILE)));
    let (again, origin) = load_or_make(Stores {
        pool: Some(&pool),
        usbkey: None,
        mounter: &mut m,
    })
    .unwrap();
    assert_eq!((again, origin), (first, Origin::Kept(pool.join("ssh").join(KEY_FILE))));
    assert!(m.mounts.is_empty(), "the usbkey was not touched");
}

#[test]
fn without_a_pool_it_goes_on_the_usbkey_between_remounts() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = RecordingMounter::default();
    let node = Path::new("/dev/sda1");
    let (key, origin) = load_or_make(Stores {
        pool: None,
        usbkey: Some((node, dir.path())),
        mounter: &mut m,
    })
    .unwrap();
    let path = dir.path().join("ssh").join(KEY_FILE);
    assert_eq!(origin, Origin::Made(path.clone()));
    assert_eq!(read_only(&m), [false, true], "read-write, then read-only again");
    assert_eq!(HostKey::parse(&fs::read_to_string(&path).unwrap()), Ok(key));
}

#[test]
fn an_unusable_kept_key_is_left_alone_and_one_is_made_for_this_boot() {
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("ssh");
    fs::create_dir(&kept).unwrap();
    fs::write(kept.join(KEY_FILE), "garbage").unwrap();
    let mut m = RecordingMounter::default();
    let (_, origin) = load_or_make(Stores {
        pool: Some(dir.path()),
        usbkey: None,
        mounter: &mut m,
    })
    .unwrap();
    let Origin::ThisBootOnly(why) = origin else {
        panic!("{origin:?}")
    };
    assert!(why.contains("is unusable") && why.contains("move it away"), "{why}");
    assert_eq!(fs::read_to_string(kept.join(KEY_FILE)).unwrap(), "garbage");
}

#[test]
fn a_usbkey_that_cannot_be_written_leaves_a_key_for_this_boot() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = RecordingMounter {
        fail: vec![(dir.path().to_owned(), Errno::EROFS)],
        ..RecordingMounter::default()
    };
    let (_, origin) = load_or_make(Stores {
        pool: None,
        usbkey: Some((Path::new("/dev/sda1"), dir.path())),
        mounter: &mut m,
    })
    .unwrap();
    let Origin::ThisBootOnly(why) = origin else {
        panic!("{origin:?}")
    };
    assert!(why.contains("cannot remount /usbkey read-write"), "{why}");
    let (_, origin) = load_or_make(Stores {
        pool: None,
        usbkey: None,
        mounter: &mut m,
    })
    .unwrap();
    assert!(matches!(origin, Origin::ThisBootOnly(w) if w.starts_with("no pool and no usbkey")));
}

#[test]
fn installed_for_sshd_with_mode_0600() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("ssh");
    let path = install(&fixed(), &run).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    assert_eq!(fs::metadata(&run).unwrap().mode() & 0o777, 0o700);
    assert_eq!(install(&fixed(), &run).unwrap(), path, "a second install replaces it");
}
