//! Tests of the loaders' configuration: a temporary stick with the two-slot layout.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::*;
use crate::upgrade::adv::{Adv, boot_once};

pub(crate) const SYSLINUX_CFG: &str = "SERIAL 0 115200
PROMPT 0
TIMEOUT 0
DEFAULT ramkey-a

LABEL ramkey-a
  SAY Booting Ramkey 0.1.0 (slot a)
  LINUX /platform/a/vmlinuz
  INITRD /platform/a/initrd.img
  APPEND console=ttyS0,115200n8 panic=10 ramkey.slot=a

LABEL ramkey-b
  SAY Booting Ramkey (slot b)
  LINUX /platform/b/vmlinuz
  INITRD /platform/b/initrd.img
  APPEND console=ttyS0,115200n8 panic=10 ramkey.slot=b

LABEL recovery
  LINUX /platform/a/vmlinuz
  INITRD /platform/a/initrd.img
  APPEND console=ttyS0,115200n8 panic=10 ramkey.slot=a ramkey.recovery
";

const GEN_1_A: &str = "title Ramkey 0.1.0 (slot a)
version 0.1.0
linux /platform/a/vmlinuz
initrd /platform/a/initrd.img
options console=ttyS0,115200n8 panic=10 ramkey.slot=a
";

const LADDER: &str = "default ramkey-gen-*\ntimeout 0\nconsole-mode keep\neditor yes\n";

fn put(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn get(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap()
}

/// The two-slot stick, slot a committed, with `cfg` as `syslinux.cfg`.
pub(crate) fn stick(cfg: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    put(root, "syslinux/syslinux.cfg", cfg);
    put(root, "loader/loader.conf", LADDER);
    put(root, "loader/entries/ramkey-gen-1-a.conf", GEN_1_A);
    let recovery = GEN_1_A
        .replace("(slot a)", "(slot a) recovery")
        .replace("=a\n", "=a ramkey.recovery\n");
    put(root, "loader/entries/ramkey-recovery.conf", &recovery);
    let mut ldlinux = vec![0x90; 64 * 1024 - 1024];
    ldlinux.extend(Adv::default().encode());
    ldlinux.extend(Adv::default().encode());
    std::fs::write(root.join("syslinux/ldlinux.sys"), ldlinux).unwrap();
    dir
}

fn names(root: &Path) -> Vec<String> {
    entries(root).unwrap().into_iter().map(|e| e.file).collect()
}

fn armed(root: &Path) -> Option<String> {
    boot_once(&root.join("syslinux/ldlinux.sys")).unwrap()
}

/// Every file under `root` with its inode and bytes: a rewrite shows as a new inode.
fn snapshot(root: &Path) -> BTreeMap<String, (u64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for dir in ["syslinux", "loader", "loader/entries"] {
        for item in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            if item.file_type().unwrap().is_file() {
                let ino = item.metadata().unwrap().ino();
                out.insert(
                    format!("{dir}/{}", item.file_name().to_string_lossy()),
                    (ino, std::fs::read(item.path()).unwrap()),
                );
            }
        }
    }
    out
}

/// What systemd-boot does before it boots a trial entry: one try fewer, one more done.
fn systemd_boot_counts(root: &Path, from: &str, to: &str) {
    let dir = root.join("loader/entries");
    std::fs::rename(dir.join(from), dir.join(to)).unwrap();
}

#[test]
fn arm_then_commit() {
    let dir = stick(SYSLINUX_CFG);
    let root = dir.path();
    check_layout(root).unwrap();
    assert!(is_committed(root, Slot::A));
    assert_eq!(committed(root).unwrap(), Slot::A);
    arm(root, Slot::B, 1, "Ramkey 0.2.0", "0.2.0").unwrap();

    assert_eq!(names(root), ["ramkey-gen-1-a.conf", "ramkey-gen-2-b+1.conf"]);
    assert_eq!(
        get(root, "loader/entries/ramkey-gen-2-b+1.conf"),
        "title Ramkey 0.2.0 (slot b)\nversion 0.2.0\nlinux /platform/b/vmlinuz\ninitrd /platform/b/initrd.img\n\
         options console=ttyS0,115200n8 panic=10 ramkey.slot=b\n"
    );
    let cfg = get(root, "syslinux/syslinux.cfg");
    assert_eq!(
        cfg,
        SYSLINUX_CFG.replace("Booting Ramkey (slot b)", "Booting Ramkey 0.2.0 (slot b)")
    );
    assert_eq!(committed(root).unwrap(), Slot::A, "arming commits nothing");
    assert_eq!(armed(root).as_deref(), Some("ramkey-b"));
    assert_eq!(entries(root).unwrap()[1].tries_left, Some(1));

    assert!(!is_committed(root, Slot::A), "armed is not only committed");
    systemd_boot_counts(root, "ramkey-gen-2-b+1.conf", "ramkey-gen-2-b+0-1.conf");
    assert!(!is_committed(root, Slot::B));
    commit(root, Slot::B).unwrap();
    assert!(is_committed(root, Slot::B) && !is_committed(root, Slot::A));
    assert_eq!(names(root), ["ramkey-gen-2-b.conf"]);
    assert_eq!(committed(root).unwrap(), Slot::B);
    assert_eq!(armed(root), None);
    let want = SYSLINUX_CFG
        .replace("DEFAULT ramkey-a", "DEFAULT ramkey-b")
        .replace("Booting Ramkey (slot b)", "Booting Ramkey 0.2.0 (slot b)")
        .replace(
            "LINUX /platform/a/vmlinuz\n  INITRD /platform/a/initrd.img\n  APPEND console=ttyS0,115200n8 panic=10 ramkey.slot=a ramkey.recovery",
            "LINUX /platform/b/vmlinuz\n  INITRD /platform/b/initrd.img\n  APPEND console=ttyS0,115200n8 panic=10 ramkey.slot=b ramkey.recovery",
        );
    assert_eq!(get(root, "syslinux/syslinux.cfg"), want);
    assert_eq!(
        get(root, "loader/entries/ramkey-recovery.conf"),
        "title Ramkey 0.2.0 (slot b) recovery\nversion 0.2.0\nlinux /platform/b/vmlinuz\ninitrd /platform/b/initrd.img\n\
         options console=ttyS0,115200n8 panic=10 ramkey.slot=b ramkey.recovery\n"
    );
    check_layout(root).unwrap();

    // The next upgrade goes back to slot a, one generation up.
    arm(root, Slot::A, 2, "Ramkey 0.3.0", "0.3.0").unwrap();
    assert_eq!(names(root), ["ramkey-gen-2-b.conf", "ramkey-gen-3-a+2.conf"]);
    assert_eq!(armed(root).as_deref(), Some("ramkey-a"));
}

#[test]
fn arm_then_disarm() {
    let dir = stick(SYSLINUX_CFG);
    let root = dir.path();
    let before = get(root, "loader/entries/ramkey-gen-1-a.conf");
    arm(root, Slot::B, 3, "Ramkey 0.2.0", "0.2.0").unwrap();
    systemd_boot_counts(root, "ramkey-gen-2-b+3.conf", "ramkey-gen-2-b+2-1.conf");
    let removed = disarm(root).unwrap().expect("a trial was armed");
    assert_eq!(
        removed,
        Entry {
            generation: 2,
            slot: Slot::B,
            tries_left: Some(2),
            tries_done: Some(1),
            file: "ramkey-gen-2-b+2-1.conf".into()
        }
    );
    assert_eq!(names(root), ["ramkey-gen-1-a.conf"]);
    assert_eq!(get(root, "loader/entries/ramkey-gen-1-a.conf"), before);
    assert_eq!(armed(root), None);
    assert_eq!(committed(root).unwrap(), Slot::A);

    let settled = snapshot(root);
    assert_eq!(disarm(root).unwrap(), None);
    assert_eq!(snapshot(root), settled, "a second disarm changes nothing");

    // Arming again replaces a previous trial rather than adding one.
    arm(root, Slot::B, 1, "Ramkey 0.2.0", "0.2.0").unwrap();
    arm(root, Slot::B, 1, "Ramkey 0.2.1", "0.2.1").unwrap();
    assert_eq!(names(root), ["ramkey-gen-1-a.conf", "ramkey-gen-3-b+1.conf"]);
}

#[test]
fn commit_twice_changes_nothing() {
    let dir = stick(SYSLINUX_CFG);
    let root = dir.path();
    arm(root, Slot::B, 1, "Ramkey 0.2.0", "0.2.0").unwrap();
    commit(root, Slot::B).unwrap();
    let once = snapshot(root);
    commit(root, Slot::B).unwrap();
    assert_eq!(snapshot(root), once);

    // Committing the committed slot of a fresh stick only clears what is armed.
    let dir = stick(SYSLINUX_CFG);
    let fresh = snapshot(dir.path());
    commit(dir.path(), Slot::A).unwrap();
    assert_eq!(snapshot(dir.path()), fresh);
}

#[test]
fn user_edits_survive() {
    // A user added words to the APPEND lines, a comment, and Windows line ends.
    let edited = SYSLINUX_CFG
        .replace("panic=10 ramkey.slot=a\n", "panic=10 ramkey.slot=a quiet\n")
        .replace("panic=10 ramkey.slot=b\n", "nomodeset panic=10 ramkey.slot=b\n")
        .replace("LABEL recovery\n", "# kept\nLABEL recovery\n")
        .replace("ramkey.recovery\n", "ramkey.recovery\tsingle\n")
        .replace('\n', "\r\n");
    let dir = stick(&edited);
    let root = dir.path();
    put(
        root,
        "loader/entries/ramkey-gen-1-a.conf",
        &GEN_1_A.replace("ramkey.slot=a", "ramkey.slot=a i915.modeset=0"),
    );
    arm(root, Slot::B, 1, "Ramkey 0.2.0", "0.2.0").unwrap();
    commit(root, Slot::B).unwrap();

    let want = edited
        .replace("DEFAULT ramkey-a", "DEFAULT ramkey-b")
        .replace("Booting Ramkey (slot b)", "Booting Ramkey 0.2.0 (slot b)")
        .replace(
            "LINUX /platform/a/vmlinuz\r\n  INITRD /platform/a/initrd.img\r\n  APPEND console=ttyS0,115200n8 panic=10 ramkey.slot=a ramkey.recovery\tsingle",
            "LINUX /platform/b/vmlinuz\r\n  INITRD /platform/b/initrd.img\r\n  APPEND console=ttyS0,115200n8 panic=10 ramkey.slot=b ramkey.recovery\tsingle",
        );
    assert_eq!(get(root, "syslinux/syslinux.cfg"), want);
    let entry = get(root, "loader/entries/ramkey-gen-2-b.conf");
    assert!(
        entry.contains("options console=ttyS0,115200n8 panic=10 ramkey.slot=b i915.modeset=0\n"),
        "{entry}"
    );
    let recovery = get(root, "loader/entries/ramkey-recovery.conf");
    assert!(
        recovery.contains("ramkey.slot=b i915.modeset=0 ramkey.recovery\n"),
        "{recovery}"
    );
}

#[test]
fn a_stick_without_label_b_gets_it_on_arm() {
    let without_b = SYSLINUX_CFG.replace(
        "LABEL ramkey-b\n  SAY Booting Ramkey (slot b)\n  LINUX /platform/b/vmlinuz\n  INITRD /platform/b/initrd.img\n  APPEND console=ttyS0,115200n8 panic=10 ramkey.slot=b\n\n",
        "",
    );
    let without_b = without_b.replace("panic=10 ramkey.slot=a\n", "panic=10 ramkey.slot=a quiet\n");
    assert!(!without_b.contains("ramkey-b"));
    let dir = stick(&without_b);
    let root = dir.path();
    arm(root, Slot::B, 1, "Ramkey 0.2.0", "0.2.0").unwrap();
    let want = without_b.replace(
        "ramkey.slot=a quiet\n\n",
        "ramkey.slot=a quiet\n\nLABEL ramkey-b\n  SAY Booting Ramkey 0.2.0 (slot b)\n  LINUX /platform/b/vmlinuz\n  \
         INITRD /platform/b/initrd.img\n  APPEND console=ttyS0,115200n8 panic=10 ramkey.slot=b quiet\n\n",
    );
    assert_eq!(get(root, "syslinux/syslinux.cfg"), want);
    assert_eq!(armed(root).as_deref(), Some("ramkey-b"));
}

#[test]
fn check_layout_refuses_the_one_slot_layout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // What `ramkey flash` wrote before two slots.
    put(
        root,
        "syslinux/syslinux.cfg",
        &SYSLINUX_CFG.replace("LABEL ramkey-b", "LABEL old-b"),
    );
    put(root, "loader/loader.conf", "default ramkey-a.conf\ntimeout 0\n");
    put(root, "loader/entries/ramkey-a.conf", GEN_1_A);
    put(root, "loader/entries/ramkey-a-recovery.conf", GEN_1_A);
    std::fs::write(root.join("syslinux/ldlinux.sys"), vec![0; 4096]).unwrap();
    let before = snapshot(root);
    let err = check_layout(root).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LoaderError::Predates { .. }), "{text}");
    assert!(
        text.starts_with("this stick's boot loader configuration predates two-slot upgrades ("),
        "{text}"
    );
    assert!(text.contains("loader.conf has `default ramkey-a.conf`"), "{text}");
    assert!(
        text.ends_with("reflash it once with `ramkey flash --keep-config`"),
        "{text}"
    );
    assert!(matches!(
        arm(root, Slot::B, 1, "R", "1"),
        Err(LoaderError::Predates { .. })
    ));
    assert!(matches!(commit(root, Slot::A), Err(LoaderError::Predates { .. })));
    assert_eq!(snapshot(root), before, "refused before writing");

    // The new loader.conf but no generation entry yet.
    put(root, "loader/loader.conf", LADDER);
    let text = check_layout(root).unwrap_err().to_string();
    assert!(
        text.contains("has no ramkey-gen-N-a.conf or ramkey-gen-N-b.conf"),
        "{text}"
    );
    // And a syslinux.cfg booting something else.
    put(root, "loader/entries/ramkey-gen-1-a.conf", GEN_1_A);
    put(root, "syslinux/syslinux.cfg", "DEFAULT linux\n");
    let text = check_layout(root).unwrap_err().to_string();
    assert!(text.contains("has `DEFAULT linux`, not `DEFAULT ramkey-a`"), "{text}");
}

#[test]
fn refusals() {
    let dir = stick(SYSLINUX_CFG);
    let root = dir.path();
    let before = snapshot(root);
    let err = arm(root, Slot::A, 1, "Ramkey 0.2.0", "0.2.0").unwrap_err();
    assert!(matches!(err, LoaderError::ArmCommitted { slot: Slot::A }), "{err}");
    assert!(matches!(
        arm(root, Slot::B, 0, "R", "1"),
        Err(LoaderError::Argument { what: "tries", .. })
    ));
    assert!(matches!(
        arm(root, Slot::B, 1, "R\nlinux /x", "1"),
        Err(LoaderError::Argument { what: "title", .. })
    ));
    assert!(matches!(
        commit(root, Slot::B),
        Err(LoaderError::NoEntry { slot: Slot::B, .. })
    ));
    assert_eq!(snapshot(root), before, "nothing written");

    // A commit of b cut short after its entry lost the counter: arming must not go on.
    put(
        root,
        "loader/entries/ramkey-gen-2-b.conf",
        &GEN_1_A.replace("/a/", "/b/"),
    );
    let err = arm(root, Slot::B, 1, "R", "1").unwrap_err();
    assert!(
        matches!(
            err,
            LoaderError::Disagree {
                syslinux: Slot::A,
                entries: Slot::B
            }
        ),
        "{err}"
    );
    commit(root, Slot::B).unwrap();
    assert_eq!(names(root), ["ramkey-gen-2-b.conf"]);

    // A name the glob takes but that is not a generation's.
    put(root, "loader/entries/ramkey-gen-x.conf", GEN_1_A);
    let err = entries(root).unwrap_err().to_string();
    assert!(err.contains("ramkey-gen-x.conf: not a ramkey-gen-N-a|b"), "{err}");

    // No ldlinux.sys: refused before anything changes.
    let dir = stick(SYSLINUX_CFG);
    std::fs::remove_file(dir.path().join("syslinux/ldlinux.sys")).unwrap();
    let before = snapshot(dir.path());
    assert!(matches!(
        arm(dir.path(), Slot::B, 1, "R", "1"),
        Err(LoaderError::Adv(_))
    ));
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn entry_names() {
    let parse = |s: &str| Entry::parse(s).map(|e| (e.generation, e.slot, e.tries_left, e.tries_done));
    assert_eq!(parse("ramkey-gen-1-a.conf"), Some((1, Slot::A, None, None)));
    assert_eq!(parse("ramkey-gen-10-b+1.conf"), Some((10, Slot::B, Some(1), None)));
    assert_eq!(parse("ramkey-gen-10-b+0-1.conf"), Some((10, Slot::B, Some(0), Some(1))));
    for bad in [
        "ramkey-a.conf",
        "ramkey-gen-1-c.conf",
        "ramkey-gen--a.conf",
        "ramkey-gen-+1-a.conf",
        "ramkey-gen-1-a+.conf",
        "ramkey-gen-1-a++1.conf",
        "ramkey-gen-1-a+1-.conf",
        "ramkey-gen-1-a.conf.new",
        "ramkey-recovery.conf",
    ] {
        assert_eq!(parse(bad), None, "{bad}");
    }
    assert_eq!(entry_name(3, Slot::B, Some(2)), "ramkey-gen-3-b+2.conf");
}
