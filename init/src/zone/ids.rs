//! Each zone's host id range: the zone's root is host uid and gid `base`, its ids `0..65536`
//! are host ids `base..base + 65536` (a user namespace map of `0 base 65536`), and no two
//! zones share a range, so that a process that got out of one zone is an unprivileged
//! stranger to the host and to every other zone. The base is allocated once per zone and
//! recorded in its state directory (on the pool: stable across boots), and what the zone
//! owns there (its writable layer and volumes) is shifted into the range once.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use ramkey_image::ids::RANGE;
use sha2::{Digest, Sha256};

use super::ZoneError;

/// The first zone's base (1048576; 0x100000, as LXD and systemd-nspawn keep zones' ranges
/// above the ids of the host's own users); the next zones take the ranges after it.
pub const FIRST_BASE: u32 = 0x10_0000;
/// How many zones' ranges fit below the last valid id.
const SLOTS: u32 = (u32::MAX - FIRST_BASE) / RANGE;
/// Where a zone's base is recorded, in its state directory.
pub const BASE_FILE: &str = "id-base";
/// Where the base the zone's trees were last shifted to is recorded.
const SHIFTED_FILE: &str = "ids-shifted-to";
/// The image payload with its owners in the zone's range, in the state directory.
pub const PAYLOAD: &str = "payload.sqfs";

/// The zone's base: the one recorded in `state_dir`, else the lowest range no zone beside
/// it (the other directories of `state_dir`'s parent) has, then recorded.
pub fn allocate(state_dir: &Path) -> Result<u32, ZoneError> {
    if let Some(base) = recorded(state_dir) {
        return Ok(base);
    }
    let taken: BTreeSet<u32> = state_dir
        .parent()
        .and_then(|parent| fs::read_dir(parent).ok())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| recorded(&entry.path()))
        .collect();
    let base = (0..SLOTS)
        .map(|slot| FIRST_BASE + slot * RANGE)
        .find(|base| !taken.contains(base))
        .ok_or(ZoneError::IdsExhausted)?;
    fs::create_dir_all(state_dir).map_err(ZoneError::file(state_dir))?;
    let file = state_dir.join(BASE_FILE);
    fs::write(&file, format!("{base}\n")).map_err(ZoneError::file(&file))?;
    Ok(base)
}

/// The base recorded in `state_dir`, if any (and valid).
pub fn recorded(state_dir: &Path) -> Option<u32> {
    let text = fs::read_to_string(state_dir.join(BASE_FILE)).ok()?;
    let base: u32 = text.trim().parse().ok()?;
    (base >= FIRST_BASE && base.is_multiple_of(RANGE) && base <= u32::MAX - RANGE).then_some(base)
}

/// The slot of `base` among the zones' ranges: 0 for the first zone's, 1 for the next.
pub fn slot(base: u32) -> u32 {
    base.saturating_sub(FIRST_BASE) / RANGE
}

/// The zone's base, for its launcher: recorded by PID 1's plan at boot.
pub fn base(state_dir: &Path) -> Result<u32, ZoneError> {
    recorded(state_dir).ok_or_else(|| ZoneError::NoIdRange {
        record: state_dir.join(BASE_FILE),
    })
}

/// Moves every owner in `trees` from the range the zone had (none: host ids `0..65536`, as
/// pools from before user namespaces hold them) into `base`'s, once; records it.
pub fn shift_trees(state_dir: &Path, trees: &[&Path], base: u32) -> Result<(), ZoneError> {
    let record = state_dir.join(SHIFTED_FILE);
    let from = fs::read_to_string(&record)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if from == base {
        return Ok(());
    }
    for tree in trees {
        shift_tree(tree, from, base).map_err(|source| ZoneError::ShiftIds {
            tree: tree.to_path_buf(),
            source,
        })?;
    }
    fs::write(&record, format!("{base}\n")).map_err(ZoneError::file(&record))
}

/// Changes the owner of `path` and of everything beneath it, never following a symlink:
/// an id in `from..from + RANGE` becomes the same offset from `to`; others stay.
fn shift_tree(path: &Path, from: u32, to: u32) -> std::io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let moved = |id: u32| {
        id.checked_sub(from)
            .filter(|&offset| offset < RANGE)
            .map(|offset| to + offset)
    };
    let (uid, gid) = (moved(meta.uid()), moved(meta.gid()));
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::lchown(path, uid, gid)?;
        // A chown clears set-user-ID and set-group-ID bits: put back what was there.
        if meta.is_file() && meta.mode() & 0o6000 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            shift_tree(&entry?.path(), from, to)?;
        }
    }
    Ok(())
}

/// Gives `dir` (made by the host for the zone: its writable layer, a volume) to the zone's
/// root.
pub fn give(dir: &Path, base: u32) -> Result<(), ZoneError> {
    std::os::unix::fs::lchown(dir, Some(base), Some(base)).map_err(|source| ZoneError::Chown {
        path: dir.to_path_buf(),
        source,
    })
}

/// The image's payload with its owners in `base`'s range ([`PAYLOAD`] in `state_dir`,
/// read-only), sealed: copied from `image` at the zone's first start of each boot, and
/// after any change of image, and refused unless its sha256 is still `sha256`, the one
/// verified, so that a file changed since — under the zone, or on the pool while the box
/// was off — never runs. `made` (in RAM, gone at the next boot) records which payload and
/// base the copy holds; the zone's restarts reuse it. (The copy reads and hashes the
/// payload once more: 0.2 s for 22.9 MB natively on the development machine, seconds
/// under QEMU's TCG.)
pub fn payload(
    image: &Path,
    size: u64,
    sha256: &str,
    state_dir: &Path,
    base: u32,
    made: &Path,
) -> Result<fs::File, ZoneError> {
    let copy = state_dir.join(PAYLOAD);
    let holds = format!("{sha256} {base}\n");
    if fs::read_to_string(made).is_ok_and(|m| m == holds)
        && let Ok(file) = fs::File::open(&copy)
    {
        return Ok(file);
    }
    let _ = fs::remove_file(made);
    let partial = state_dir.join(format!("{PAYLOAD}.partial"));
    let mut source = fs::File::open(image).map_err(ZoneError::file(image))?.take(size);
    let mut out = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&partial)
        .map_err(ZoneError::file(&partial))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = source.read(&mut buf).map_err(ZoneError::file(image))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(ZoneError::file(&partial))?;
    }
    let found = ramkey_image::footer::hex(&hasher.finalize());
    if found != sha256 {
        let _ = fs::remove_file(&partial);
        return Err(ZoneError::PayloadChanged {
            image: image.to_path_buf(),
            found,
            verified: sha256.to_string(),
        });
    }
    ramkey_image::ids::shift(&mut out, base).map_err(|source| ZoneError::ShiftPayload {
        image: image.to_path_buf(),
        source,
    })?;
    out.set_permissions(fs::Permissions::from_mode(0o400))
        .map_err(ZoneError::file(&partial))?;
    drop(out);
    fs::rename(&partial, &copy).map_err(ZoneError::file(&copy))?;
    fs::write(made, holds).map_err(ZoneError::file(made))?;
    fs::File::open(&copy).map_err(ZoneError::file(&copy))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{chown, symlink};

    use super::*;

    #[test]
    fn each_zone_gets_its_own_range_and_keeps_it() {
        let pool = tempfile::tempdir().unwrap();
        let (web, office) = (pool.path().join("web"), pool.path().join("office"));
        let first = allocate(&web).unwrap();
        assert_eq!(first, FIRST_BASE);
        let second = allocate(&office).unwrap();
        assert_eq!(second, FIRST_BASE + RANGE);
        // Next boot: the same ranges, whatever order the zones are planned in.
        assert_eq!(allocate(&office).unwrap(), second);
        assert_eq!(allocate(&web).unwrap(), first);
        // A freed range is reused; a damaged record is not trusted.
        fs::remove_dir_all(&web).unwrap();
        fs::create_dir_all(&web).unwrap();
        fs::write(web.join(BASE_FILE), "0\n").unwrap();
        assert_eq!(recorded(&web), None);
        assert_eq!(allocate(&web).unwrap(), first);
    }

    #[test]
    fn trees_move_into_the_range_once_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (volume, outside) = (state.join("volumes/data"), dir.path().join("outside"));
        fs::create_dir_all(&volume).unwrap();
        fs::write(&outside, "host's").unwrap();
        fs::write(volume.join("db"), "").unwrap();
        chown(volume.join("db"), Some(100), Some(101)).unwrap();
        fs::write(volume.join("tool"), "").unwrap();
        fs::set_permissions(volume.join("tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        symlink(&outside, volume.join("escape")).unwrap();
        let base = FIRST_BASE;
        shift_trees(&state, &[&state.join("volumes")], base).unwrap();
        let owner = |p: &Path| {
            let m = fs::symlink_metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(owner(&volume), (base, base));
        assert_eq!(owner(&volume.join("db")), (base + 100, base + 101));
        assert_eq!(owner(&volume.join("escape")), (base, base));
        assert_eq!(fs::metadata(volume.join("tool")).unwrap().mode() & 0o7777, 0o4755);
        // The symlink's target, outside, is the host's still.
        assert_eq!(owner(&outside), (0, 0));
        // Shifted once: a file the zone gave to uid 5 later is not moved again.
        chown(volume.join("db"), Some(base + 5), None).unwrap();
        shift_trees(&state, &[&state.join("volumes")], base).unwrap();
        assert_eq!(owner(&volume.join("db")).0, base + 5);
        // A new range moves the zone's files along.
        shift_trees(&state, &[&state.join("volumes")], base + RANGE).unwrap();
        assert_eq!(owner(&volume.join("db")).0, base + RANGE + 5);
    }

    #[test]
    fn the_sealed_copy_is_made_once_per_boot_and_payload() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir_all(&tree).unwrap();
        fs::write(tree.join("index.html"), "hello").unwrap();
        let image = dir.path().join("web.rkimg");
        let made_it = std::process::Command::new("mksquashfs")
            .arg(&tree)
            .arg(&image)
            .args(["-noappend", "-noId", "-quiet", "-no-progress"])
            .status()
            .expect("mksquashfs (squashfs-tools) is installed by `cargo xtask deps`");
        assert!(made_it.success());
        let bytes = fs::read(&image).unwrap();
        let sha = ramkey_image::footer::hex(&Sha256::digest(&bytes));
        let (state, made) = (dir.path().join("state"), dir.path().join("made"));
        fs::create_dir_all(&state).unwrap();
        let size = bytes.len() as u64;
        payload(&image, size, &sha, &state, FIRST_BASE, &made).unwrap();
        let copy = fs::read(state.join(PAYLOAD)).unwrap();
        assert_eq!(copy.len(), bytes.len());
        assert_ne!(copy, bytes, "the owners moved into the range");
        assert_eq!(fs::metadata(state.join(PAYLOAD)).unwrap().mode() & 0o777, 0o400);
        // A restart in the same boot reuses it, even with the image gone.
        fs::remove_file(&image).unwrap();
        payload(&image, size, &sha, &state, FIRST_BASE, &made).unwrap();
        // The next boot (no record in RAM) copies, and checks, again.
        fs::remove_file(&made).unwrap();
        let err = payload(&image, size, &sha, &state, FIRST_BASE, &made).unwrap_err();
        assert!(err.to_string().contains("web.rkimg"), "{err}");
    }

    #[test]
    fn a_payload_changed_since_it_was_verified_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("web.rkimg");
        fs::write(&image, b"not even squashfs, but hashed first").unwrap();
        let size = fs::metadata(&image).unwrap().len();
        let made = dir.path().join("made");
        let err = payload(&image, size, &"0".repeat(64), dir.path(), FIRST_BASE, &made).unwrap_err();
        assert!(err.to_string().contains("changed since it was verified"), "{err}");
        assert!(!dir.path().join(PAYLOAD).exists());
    }
}
