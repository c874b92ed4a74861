//! The platform as one in-memory list of records (files, directories, symlinks, device
//! nodes), from which every output format is written. Paths are kept sorted, parents are
//! added implicitly, and metadata is fixed, so the same inputs give the same bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    CharDevice { major: u32, minor: u32 },
}

/// One entry of the tree: its kind and permission bits (no file-type bits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    pub mode: u32,
}

/// What can go wrong adding host files.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: only regular files, directories and symlinks can go into the platform")]
    Unsupported { path: PathBuf },
}

/// A sorted tree of records keyed by path without the leading `/`.
#[derive(Debug, Default, Clone)]
pub struct Tree {
    entries: BTreeMap<String, Record>,
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Adds `record` at `path` (replacing what is there), with the missing parents.
    pub fn insert_record(&mut self, path: &str, record: Record) {
        self.insert(path, record);
    }

    fn insert(&mut self, path: &str, record: Record) {
        let path = path.trim_matches('/').to_string();
        let mut parent = path.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            self.entries.entry(up.to_string()).or_insert(Record {
                kind: Kind::Dir,
                mode: 0o755,
            });
            parent = up;
        }
        self.entries.insert(path, record);
    }

    pub fn dir(&mut self, path: &str, mode: u32) {
        self.insert(path, Record { kind: Kind::Dir, mode });
    }

    pub fn file(&mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) {
        self.insert(
            path,
            Record {
                kind: Kind::File(data.into()),
                mode,
            },
        );
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.insert(
            path,
            Record {
                kind: Kind::Symlink(target.to_string()),
                mode: 0o777,
            },
        );
    }

    pub fn char_device(&mut self, path: &str, major: u32, minor: u32, mode: u32) {
        self.insert(
            path,
            Record {
                kind: Kind::CharDevice { major, minor },
                mode,
            },
        );
    }

    /// Copies a host directory's contents under `at`. Host owners and times are dropped;
    /// modes become 0755 for directories and executables, 0644 for other files.
    pub fn add_host_dir(&mut self, host: &Path, at: &str) -> Result<(), RecordError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RecordError::Io { path, source }
        };
        let mut entries: Vec<_> = std::fs::read_dir(host)
            .map_err(io(host))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io(host))?;
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let dest = format!("{}/{name}", at.trim_end_matches('/'));
            let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
            if meta.is_dir() {
                self.dir(&dest, 0o755);
                self.add_host_dir(&path, &dest)?;
            } else if meta.is_file() {
                use std::os::unix::fs::PermissionsExt;
                let mode = if meta.permissions().mode() & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                };
                self.file(&dest, std::fs::read(&path).map_err(io(&path))?, mode);
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).map_err(io(&path))?;
                self.symlink(&dest, &target.to_string_lossy());
            } else {
                return Err(RecordError::Unsupported { path });
            }
        }
        Ok(())
    }

    pub fn get(&self, path: &str) -> Option<&Record> {
        self.entries.get(path.trim_matches('/'))
    }

    /// Records in path order (parents before children).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Record)> {
        self.entries.iter().map(|(p, r)| (p.as_str(), r))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total bytes of file contents.
    pub fn content_size(&self) -> u64 {
        self.entries
            .values()
            .map(|r| if let Kind::File(d) = &r.kind { d.len() as u64 } else { 0 })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_implicit_and_order_is_by_path() {
        let mut t = Tree::new();
        t.file("/lib/modules/x/a.ko", b"a".to_vec(), 0o644);
        t.file("/init", b"i".to_vec(), 0o755);
        t.dir("/etc", 0o755);
        let paths: Vec<&str> = t.iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "etc",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/x",
                "lib/modules/x/a.ko"
            ]
        );
    }

    #[test]
    fn host_dir_modes_are_normalised() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/motd"), "hi").unwrap();
        std::fs::write(dir.path().join("run.sh"), "#!/bin/sh").unwrap();
        std::fs::set_permissions(dir.path().join("run.sh"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(dir.path().join("etc/motd"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut t = Tree::new();
        t.add_host_dir(dir.path(), "/").unwrap();
        assert_eq!(t.get("etc/motd").unwrap().mode, 0o644);
        assert_eq!(t.get("run.sh").unwrap().mode, 0o755);
        assert_eq!(t.get("etc").unwrap().kind, Kind::Dir);
    }
}
