//! Writing to the usbkey, which stays mounted read-only: it is remounted read-write only for
//! the moment of a write ([`with_rw`]), and each file is written power-safely
//! ([`write_file`]: `NAME.new`, fsync, rename over `NAME`, fsync the directory), so a power
//! cut leaves the old file or the new one, never half of either.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::storage::mounts::Mounter;
use crate::storage::usbkey::{MOUNT_FLAGS, MOUNT_OPTIONS, MOUNT_POINT};

/// A write to the usbkey failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
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

fn remount(mounter: &mut dyn Mounter, node: &Path, mount: &Path, rw: bool) -> Result<(), WriteError> {
    let flags = if rw {
        MOUNT_FLAGS.difference(MsFlags::MS_RDONLY)
    } else {
        MOUNT_FLAGS
    };
    mounter
        .mount_device(node, mount, "vfat", flags | MsFlags::MS_REMOUNT, MOUNT_OPTIONS)
        .map_err(|source| WriteError::Remount {
            mode: if rw { "read-write" } else { "read-only" },
            source,
        })
}

/// Runs `write` with the usbkey (device `node`, mounted at `mount`) remounted read-write,
/// then remounts it read-only whatever happened; the first error wins.
pub fn with_rw<T, E: From<WriteError>>(
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

fn io<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> WriteError + 'p {
    move |source| WriteError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Writes `dir/name` power-safely (`dir` must be writable).
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), WriteError> {
    let target = dir.join(name);
    let new = dir.join(format!("{name}.new"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&new)
        .map_err(io("create", &new))?;
    file.write_all(bytes).map_err(io("write", &new))?;
    file.sync_all().map_err(io("fsync", &new))?;
    drop(file);
    std::fs::rename(&new, &target).map_err(io("rename", &new))?;
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if e.kind() != std::io::ErrorKind::InvalidInput => Err(io("fsync directory", dir)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_file_replaces_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        write_file(dir.path(), "f", b"one").unwrap();
        write_file(dir.path(), "f", b"two").unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"two");
        assert!(!dir.path().join("f.new").exists());
        let err = write_file(&dir.path().join("absent"), "f", b"x").unwrap_err();
        assert!(err.to_string().starts_with("create "), "{err}");
    }
}
