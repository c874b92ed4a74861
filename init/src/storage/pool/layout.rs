//! The pool's layout: its folders, `/var` and `/opt` bind-mounted from it (so logs persist),
//! and the config the box booted with kept in `config-history/`.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::mount::MsFlags;

use crate::storage::mounts::Mounter;

/// The folders at the top of the pool.
pub const FOLDERS: &[&str] = &[
    "images",
    "instances",
    "var",
    "opt",
    "config-history",
    "pxe-config-cache",
];

/// A pool folder bind-mounted over a folder of the RAM root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bind {
    /// The folder in the pool (`var`).
    pub from: &'static str,
    /// The folder it covers, relative to the root (`var`; `/var` on the box).
    pub to: &'static str,
}

impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bind /pool/{} on /{}", self.from, self.to)
    }
}

/// The bind mounts, in order.
pub const BINDS: &[Bind] = &[Bind { from: "var", to: "var" }, Bind { from: "opt", to: "opt" }];

/// Setting up the layout failed.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A folder or file could not be made.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A bind mount failed.
    #[error("{bind}: {source}")]
    Bind {
        /// The bind, as displayed.
        bind: Bind,
        /// The errno.
        source: nix::errno::Errno,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Copies what `from` has and `to` lacks (folders, files, symlinks), so that binding `to`
/// over `from` hides nothing the platform put there. Returns how many entries were copied.
pub fn copy_missing(from: &Path, to: &Path) -> Result<usize, LayoutError> {
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(0);
    };
    let mut copied = 0;
    for entry in entries.flatten() {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let Ok(meta) = std::fs::symlink_metadata(&src) else {
            continue;
        };
        let exists = std::fs::symlink_metadata(&dst).is_ok();
        if meta.file_type().is_symlink() {
            if !exists {
                let target = std::fs::read_link(&src).map_err(io(&src))?;
                symlink(target, &dst).map_err(io(&dst))?;
                copied += 1;
            }
        } else if meta.is_dir() {
            if !exists {
                std::fs::create_dir(&dst).map_err(io(&dst))?;
                std::fs::set_permissions(&dst, meta.permissions()).map_err(io(&dst))?;
                copied += 1;
            }
            copied += copy_missing(&src, &dst)?;
        } else if meta.is_file() && !exists {
            std::fs::copy(&src, &dst).map_err(io(&dst))?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// Makes the folders, fills `var/` and `opt/` with what the platform has there, and
/// bind-mounts them over `/var` and `/opt`.
pub fn apply(root: &Path, pool: &Path, mounter: &mut dyn Mounter) -> Result<(), LayoutError> {
    for folder in FOLDERS {
        let path = pool.join(folder);
        mounter.mkdir_all(&path).map_err(io(&path))?;
    }
    for bind in BINDS {
        let (from, to) = (pool.join(bind.from), root.join(bind.to));
        mounter.mkdir_all(&to).map_err(io(&to))?;
        let n = copy_missing(&to, &from)?;
        crate::info!("pool: {bind} ({n} entries of /{} copied in first)", bind.to);
        mounter
            .mount_device(&from, &to, "none", MsFlags::MS_BIND, "")
            .map_err(|source| LayoutError::Bind { bind: *bind, source })?;
    }
    Ok(())
}

/// `2026-11-22T06-15-14Z` (UTC; no colons, so the names also copy onto FAT).
pub fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86400, secs % 86400);
    let (year, month, day) = crate::base::clock::civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}-{:02}-{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Saves `text` as `config-history/<UTC time>.toml`, synced (file and folder). Returns the
/// file name and how many entries the history has now.
pub fn save_history(pool: &Path, text: &str, now: SystemTime) -> Result<(String, usize), LayoutError> {
    let dir = pool.join("config-history");
    let stamp = utc_stamp(now);
    let mut name = format!("{stamp}.toml");
    let mut n = 1;
    while dir.join(&name).exists() {
        name = format!("{stamp}-{n}.toml");
        n += 1;
    }
    let path = dir.join(&name);
    let mut file = std::fs::File::create(&path).map_err(io(&path))?;
    file.write_all(text.as_bytes()).map_err(io(&path))?;
    file.sync_all().map_err(io(&path))?;
    std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(io(&dir))?;
    let count = std::fs::read_dir(&dir)
        .map_err(io(&dir))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".toml"))
        .count();
    Ok((name, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps() {
        assert_eq!(utc_stamp(SystemTime::UNIX_EPOCH), "1970-01-01T00-00-00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_328_114);
        assert_eq!(utc_stamp(t), "2026-11-22T06-15-14Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc_stamp(leap), "2000-02-29T00-00-00Z");
    }

    #[test]
    fn history_counts_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("config-history")).unwrap();
        let now = SystemTime::UNIX_EPOCH;
        let (a, n) = save_history(dir.path(), "version = 1\n", now).unwrap();
        let (b, m) = save_history(dir.path(), "version = 1\n", now).unwrap();
        assert_eq!((a.as_str(), n), ("1970-01-01T00-00-00Z.toml", 1));
        assert_eq!((b.as_str(), m), ("1970-01-01T00-00-00Z-1.toml", 2));
    }

    #[test]
    fn copy_missing_keeps_what_the_pool_has() {
        let dir = tempfile::tempdir().unwrap();
        let (ram, pool) = (dir.path().join("var"), dir.path().join("pool-var"));
        std::fs::create_dir_all(ram.join("log")).unwrap();
        std::fs::write(ram.join("log/boot"), "ram").unwrap();
        symlink("../run", ram.join("run")).unwrap();
        std::fs::create_dir_all(pool.join("log")).unwrap();
        std::fs::write(pool.join("log/boot"), "pool").unwrap();
        assert_eq!(copy_missing(&ram, &pool).unwrap(), 1);
        assert_eq!(std::fs::read_to_string(pool.join("log/boot")).unwrap(), "pool");
        assert_eq!(std::fs::read_link(pool.join("run")).unwrap(), PathBuf::from("../run"));
        assert_eq!(copy_missing(&ram, &pool).unwrap(), 0);
    }
}
