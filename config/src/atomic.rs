//! Power-safe replacement of `config.toml` on the usbkey's FAT partition.
//!
//! FAT has no journal and `rename` over an existing file is not atomic there, so the order
//! matters: the new text is complete and on disk (`config.toml.new`, fsynced) before the
//! current file is touched; the current file is copied, not moved, to `config.toml.prev`, so
//! `config.toml` exists at every moment; then the new file is renamed over it and the
//! directory is fsynced. After a power cut, `config.toml` is the old or the new text, and
//! `config.toml.new` / `config.toml.prev` hold the other.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::{CONFIG_FILE, Config, ConfigErrors};

/// The file the new text is written to before it replaces the config.
pub const NEW_SUFFIX: &str = ".new";
/// The copy of the config that was replaced.
pub const PREV_SUFFIX: &str = ".prev";

/// Errors writing the config.
#[derive(Debug, thiserror::Error)]
pub enum AtomicError {
    /// The text is not a valid config; nothing was written.
    #[error("refusing to write an invalid config:\n{0}")]
    Invalid(ConfigErrors),
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done (`write`, `fsync`, `rename`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> AtomicError + 'p {
    move |source| AtomicError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    dir.join(format!("{CONFIG_FILE}{suffix}"))
}

/// Validates `text` and writes it as `dir/config.toml`, power-safely (see the module docs).
/// `dir` is the usbkey's mount point (remounted read-write by the caller).
///
/// # Errors
/// [`AtomicError::Invalid`] if the text is not a valid config (nothing is written), or the
/// first file operation that failed.
pub fn write_config(dir: &Path, text: &str) -> Result<(), AtomicError> {
    Config::parse(text, CONFIG_FILE).map_err(AtomicError::Invalid)?;
    write_raw(dir, text)
}

/// The same steps as [`write_config`] without validation (for tests and recovery tools).
///
/// # Errors
/// The first file operation that failed.
pub fn write_raw(dir: &Path, text: &str) -> Result<(), AtomicError> {
    let target = dir.join(CONFIG_FILE);
    let new = sibling(dir, NEW_SUFFIX);
    let prev = sibling(dir, PREV_SUFFIX);

    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&new)
        .map_err(io_err("create", &new))?;
    file.write_all(text.as_bytes()).map_err(io_err("write", &new))?;
    file.sync_all().map_err(io_err("fsync", &new))?;
    drop(file);

    if target.exists() {
        fs::copy(&target, &prev).map_err(io_err("copy to .prev", &target))?;
        File::open(&prev)
            .and_then(|f| f.sync_all())
            .map_err(io_err("fsync", &prev))?;
    }
    fs::rename(&new, &target).map_err(io_err("rename", &new))?;
    sync_dir(dir)
}

/// Fsyncs a directory so that the renames in it are on disk. Some filesystems refuse to
/// fsync a directory (`EINVAL`); there the file fsyncs are all that can be done.
fn sync_dir(dir: &Path) -> Result<(), AtomicError> {
    let result = File::open(dir).and_then(|d| d.sync_all());
    match result {
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
        other => other.map_err(io_err("fsync directory", dir)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = include_str!("../tests/fixtures/accept/full.toml");
    const MINIMAL: &str = include_str!("../tests/fixtures/accept/minimal.toml");

    #[test]
    fn writes_new_and_keeps_prev() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_config(dir.path(), MINIMAL).expect("first write");
        assert_eq!(fs::read_to_string(dir.path().join(CONFIG_FILE)).expect("read"), MINIMAL);
        assert!(!sibling(dir.path(), PREV_SUFFIX).exists());
        write_config(dir.path(), FULL).expect("second write");
        assert_eq!(fs::read_to_string(dir.path().join(CONFIG_FILE)).expect("read"), FULL);
        assert_eq!(
            fs::read_to_string(sibling(dir.path(), PREV_SUFFIX)).expect("read prev"),
            MINIMAL
        );
        assert!(!sibling(dir.path(), NEW_SUFFIX).exists());
    }

    #[test]
    fn refuses_invalid_text_and_reports_io_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = write_config(dir.path(), "version = 1\n").expect_err("invalid");
        assert!(matches!(err, AtomicError::Invalid(_)));
        assert!(!dir.path().join(CONFIG_FILE).exists());
        let missing = dir.path().join("not-there");
        let err = write_config(&missing, MINIMAL).expect_err("no directory");
        assert!(err.to_string().starts_with("create "), "{err}");
    }
}
