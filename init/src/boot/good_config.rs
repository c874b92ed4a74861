//! `config.toml.good`: the last config a boot got through with, kept on the usbkey so that a
//! config broken later still leaves the box reachable.
//!
//! The usbkey stays mounted read-only; it is remounted read-write only for the moment of a
//! write ([`with_rw`]), and the write itself is power-safe: `config.toml.good.new`, fsync,
//! rename over `config.toml.good`, fsync the directory.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::storage::mounts::Mounter;
use crate::storage::usbkey::{MOUNT_FLAGS, MOUNT_OPTIONS, MOUNT_POINT};

/// The last good config's file name, next to `config.toml`.
pub const GOOD_FILE: &str = "config.toml.good";

/// Saving the good copy (or any write to the usbkey) failed.
#[derive(Debug, thiserror::Error)]
pub enum GoodError {
    /// The remount failed.
    #[error("cannot remount {MOUNT_POINT} {mode}: {source}")]
    Remount {
        /// `read-write` or `read-only`.
        mode: &'static str,
        /// The errno.
        source: Errno,
    },
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What [`save`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// The good copy already had this text; nothing was written.
    UpToDate,
    /// The good copy was written (bytes).
    Written(usize),
}

fn remount(mounter: &mut dyn Mounter, node: &Path, mount: &Path, rw: bool) -> Result<(), GoodError> {
    let flags = if rw {
        MOUNT_FLAGS.difference(MsFlags::MS_RDONLY)
    } else {
        MOUNT_FLAGS
    };
    mounter
        .mount_device(node, mount, "vfat", flags | MsFlags::MS_REMOUNT, MOUNT_OPTIONS)
        .map_err(|source| GoodError::Remount {
            mode: if rw { "read-write" } else { "read-only" },
            source,
        })
}

/// Runs `write` with the usbkey (device `node`, mounted at `mount`) remounted read-write,
/// then remounts it read-only whatever happened; the first error wins.
pub fn with_rw<T, E: From<GoodError>>(
    mounter: &mut dyn Mounter,
    node: &Path,
    mount: &Path,
    write: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    remount(mounter, node, mount, true)?;
    let out = write();
    let back = remount(mounter, node, mount, false);
    let value = out?;
    back?;
    Ok(value)
}

fn io<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> GoodError + 'p {
    move |source| GoodError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Writes `dir/config.toml.good` power-safely (the usbkey must be writable).
pub fn write_good(dir: &Path, text: &str) -> Result<(), GoodError> {
    let target = dir.join(GOOD_FILE);
    let new = dir.join(format!("{GOOD_FILE}.new"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&new)
        .map_err(io("create", &new))?;
    file.write_all(text.as_bytes()).map_err(io("write", &new))?;
    file.sync_all().map_err(io("fsync", &new))?;
    drop(file);
    std::fs::rename(&new, &target).map_err(io("rename", &new))?;
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if e.kind() != std::io::ErrorKind::InvalidInput => Err(io("fsync directory", dir)(e)),
        _ => Ok(()),
    }
}

/// The good copy's text, if there is one.
pub fn read_good(mount: &Path) -> Option<String> {
    crate::boot::config_load::read_capped(&mount.join(GOOD_FILE))
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Saves `text` (the config the boot used) as the good copy, unless it already is.
pub fn save(mounter: &mut dyn Mounter, node: &Path, mount: &Path, text: &str) -> Result<Saved, GoodError> {
    if read_good(mount).as_deref() == Some(text) {
        return Ok(Saved::UpToDate);
    }
    with_rw(mounter, node, mount, || write_good(mount, text))?;
    Ok(Saved::Written(text.len()))
}

/// The boot's `good-config` step: saves and logs.
pub fn step(mounter: &mut dyn Mounter, node: &Path, mount: &Path, text: &str) {
    let name = format!("{MOUNT_POINT}/{GOOD_FILE}");
    match save(mounter, node, mount, text) {
        Ok(Saved::UpToDate) => crate::notice!("config: {name} is up to date"),
        Ok(Saved::Written(n)) => crate::notice!("config: saved {name} ({n} bytes): the last good config"),
        Err(e) => crate::warn!("config: cannot save {name}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::mounts::fake::RecordingMounter;

    /// The remounts `m` did, each `rw` or `ro`; every one a remount of the usbkey, noexec.
    fn remounts(m: &RecordingMounter) -> Vec<&'static str> {
        let remount = MsFlags::MS_REMOUNT | MsFlags::MS_NOEXEC;
        m.mounts
            .iter()
            .inspect(|c| assert!(c.flags.contains(remount) && c.source == Path::new("/dev/sda1"), "{c}"))
            .map(|c| {
                if c.flags.contains(MsFlags::MS_RDONLY) {
                    "ro"
                } else {
                    "rw"
                }
            })
            .collect()
    }

    #[test]
    fn saved_once_between_remounts() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = RecordingMounter::default();
        let node = Path::new("/dev/sda1");
        assert_eq!(
            save(&mut m, node, dir.path(), "version = 1\n").unwrap(),
            Saved::Written(12)
        );
        assert_eq!(remounts(&m), ["rw", "ro"]);
        assert_eq!(read_good(dir.path()).unwrap(), "version = 1\n");
        assert!(!dir.path().join("config.toml.good.new").exists());
        assert_eq!(
            save(&mut m, node, dir.path(), "version = 1\n").unwrap(),
            Saved::UpToDate
        );
        assert_eq!(remounts(&m).len(), 2, "no remount when up to date");
    }

    #[test]
    fn read_only_again_after_a_failed_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = RecordingMounter::default();
        let missing = dir.path().join("gone");
        let err = save(&mut m, Path::new("/dev/sda1"), &missing, "x").unwrap_err();
        assert!(err.to_string().starts_with("create "), "{err}");
        assert_eq!(remounts(&m), ["rw", "ro"]);
    }
}
