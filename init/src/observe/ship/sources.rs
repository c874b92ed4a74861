//! Where the lines come from: every `NAME.log` in the platform's log folder (PID 1's own
//! `ramkey.log` and each service's) and in each zone's `/var/log/ramkey` (read from the
//! zone's writable layer, beneath it: a zone may plant symlinks or FIFOs there). Each file
//! is followed by inode and offset, through the supervisor's renames (`NAME.log` becomes
//! `NAME.log.1`), so that a line is read once, whole, in order.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::syslog::Origin;
use crate::supervisor::logfile::MAX_LINE;

/// PID 1's own log, in the platform's log folder.
pub const PID1_LOG: &str = "ramkey";
/// Old files a rotation keeps (the supervisor's default).
const ROTATED: u32 = 3;
/// The most read from one file in one pass.
const CHUNK: u64 = 256 << 10;
/// The most log files looked at in one zone.
const ZONE_FILES: usize = 64;

/// A folder of log files and whose they are.
#[derive(Debug, Clone)]
struct Folder {
    /// Paths are resolved as if this were `/`.
    root: PathBuf,
    /// The folder under `root`.
    dir: PathBuf,
    /// The zone, or `None` for the platform.
    zone: Option<String>,
}

/// One followed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The inode being read.
    pub ino: u64,
    /// How far it was read.
    pub offset: u64,
}

/// Which logs to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Select {
    /// Every log of the box.
    #[default]
    All,
    /// One platform log: a service's, or PID 1's ([`PID1_LOG`]).
    Platform(String),
    /// A zone's services, or one of them.
    Zone(String, Option<String>),
}

impl Select {
    fn wants(&self, zone: Option<&str>, stem: &str) -> bool {
        match (self, zone) {
            (Select::All, _) => true,
            (Select::Platform(s), None) => s == stem,
            (Select::Zone(z, s), Some(zone)) => z == zone && s.as_deref().is_none_or(|s| s == stem),
            _ => false,
        }
    }
}

/// Every followed file, by key (`host/NAME` or `zone/ZONE/NAME`).
#[derive(Debug, Default)]
pub struct Sources {
    /// Where each file was read up to.
    pub cursors: BTreeMap<String, Cursor>,
    /// The logs read.
    pub select: Select,
}

/// One log file of the box.
#[derive(Debug, Clone)]
pub struct LogFile {
    folder: Folder,
    /// `NAME` of `NAME.log`.
    pub stem: String,
    /// `host/NAME` or `zone/ZONE/NAME`.
    pub key: String,
    /// Whose lines they are.
    pub origin: Origin,
}

impl LogFile {
    /// Its lines, the rotated files' first, at most `limit` bytes of each file (its end).
    pub fn history(&self, limit: u64) -> Vec<String> {
        let mut lines = Vec::new();
        for k in (0..=ROTATED).rev() {
            let name = if k == 0 {
                format!("{}.log", self.stem)
            } else {
                format!("{}.log.{k}", self.stem)
            };
            let path = self.folder.dir.join(name);
            if let Ok(text) = crate::sys::beneath::read(&self.folder.root, &path, limit) {
                lines.extend(text.lines().map(str::to_owned));
            }
        }
        lines
    }
}

/// Every log file of the box that `select` wants, the platform's first.
pub fn files(log_dir: &Path, instances: &Path, zone_log_dir: &str, select: &Select) -> Vec<LogFile> {
    let mut out = Vec::new();
    for folder in folders(log_dir, instances, zone_log_dir) {
        let Ok(names) = crate::sys::beneath::list_dir(&folder.root, &folder.dir, ZONE_FILES * 4) else {
            continue;
        };
        let mut stems: Vec<&str> = names
            .iter()
            .filter_map(|n| n.strip_suffix(".log"))
            .filter(|s| plain(s))
            .collect();
        stems.sort_unstable();
        if folder.zone.is_some() {
            stems.truncate(ZONE_FILES);
        }
        for stem in stems.into_iter().filter(|s| select.wants(folder.zone.as_deref(), s)) {
            let (key, origin) = match &folder.zone {
                None => (
                    format!("host/{stem}"),
                    Origin {
                        app: stem.to_owned(),
                        msgid: None,
                        pid1: stem == PID1_LOG,
                    },
                ),
                Some(zone) => (
                    format!("zone/{zone}/{stem}"),
                    Origin {
                        app: zone.clone(),
                        msgid: Some(stem.to_owned()),
                        pid1: false,
                    },
                ),
            };
            out.push(LogFile {
                folder: folder.clone(),
                stem: stem.to_owned(),
                key,
                origin,
            });
        }
    }
    out
}

/// The platform's folder and each zone's, in that order.
fn folders(log_dir: &Path, instances: &Path, zone_log_dir: &str) -> Vec<Folder> {
    let mut out = vec![Folder {
        root: log_dir.to_owned(),
        dir: PathBuf::from("."),
        zone: None,
    }];
    let mut zones: Vec<String> = std::fs::read_dir(instances)
        .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    zones.sort();
    for zone in zones {
        out.push(Folder {
            root: instances.join(&zone).join("upper"),
            dir: PathBuf::from(zone_log_dir),
            zone: Some(zone),
        });
    }
    out
}

/// A service name as the supervisor makes file names of them.
fn plain(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
}

impl Sources {
    /// Reads what was added to every log since the last pass; `emit` gets each whole line,
    /// and may refuse it (`false`): that line and the rest of its file wait for the next pass.
    /// Returns how many lines were taken.
    pub fn pass(
        &mut self,
        log_dir: &Path,
        instances: &Path,
        zone_log_dir: &str,
        emit: &mut dyn FnMut(&Origin, &str) -> bool,
    ) -> usize {
        let mut seen = Vec::new();
        let mut count = 0;
        for file in files(log_dir, instances, zone_log_dir, &self.select) {
            let cursor = self.cursors.get(&file.key).copied();
            let next = follow(&file.folder, &file.stem, cursor, &mut |line| {
                let taken = emit(&file.origin, line);
                count += usize::from(taken);
                taken
            });
            if let Some(next) = next {
                self.cursors.insert(file.key.clone(), next);
            }
            seen.push(file.key);
        }
        self.cursors.retain(|k, _| seen.contains(k));
        count
    }

    /// The cursors as `KEY INO OFFSET` lines.
    pub fn save(&self) -> String {
        let mut out = String::new();
        for (key, c) in &self.cursors {
            let _ = writeln!(out, "{key} {} {}", c.ino, c.offset);
        }
        out
    }

    /// Cursors saved by [`Sources::save`]; lines that do not parse are left out.
    pub fn load(text: &str) -> Sources {
        let cursors = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split(' ');
                let (key, ino, offset) = (f.next()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?);
                Some((key.to_owned(), Cursor { ino, offset }))
            })
            .collect();
        Sources {
            cursors,
            select: Select::All,
        }
    }
}

/// Reads `stem.log` from `cursor` on (finishing the file it was in if that was rotated);
/// the new cursor, or `None` when the file cannot be opened.
fn follow(folder: &Folder, stem: &str, cursor: Option<Cursor>, emit: &mut dyn FnMut(&str) -> bool) -> Option<Cursor> {
    let open = |k: u32| {
        let name = if k == 0 {
            format!("{stem}.log")
        } else {
            format!("{stem}.log.{k}")
        };
        let file = crate::sys::beneath::open_file(&folder.root, &folder.dir.join(name)).ok()?;
        let ino = file.metadata().ok()?.ino();
        Some((file, ino))
    };
    let (mut file, ino) = open(0)?;
    let mut cursor = cursor.unwrap_or(Cursor { ino, offset: 0 });
    if cursor.ino != ino {
        // Rotated since the last pass: the rest of the old file, then anything rotated after
        // it, oldest first.
        if let Some(k) = (1..=ROTATED).find(|&k| open(k).is_some_and(|(_, i)| i == cursor.ino)) {
            for j in (1..=k).rev() {
                if let Some((mut old, old_ino)) = open(j) {
                    let from = if j == k { cursor.offset } else { 0 };
                    let (offset, done) = read_lines(&mut old, from, u64::MAX, true, emit);
                    if !done {
                        // Refused on the way: go on from here, in this rotated file.
                        return Some(Cursor { ino: old_ino, offset });
                    }
                }
            }
        }
        cursor = Cursor { ino, offset: 0 };
    }
    let size = file.metadata().ok()?.len();
    if size < cursor.offset {
        // Cut short by someone: start again.
        cursor.offset = 0;
    }
    cursor.offset = read_lines(&mut file, cursor.offset, CHUNK, false, emit).0;
    Some(cursor)
}

/// Emits the whole lines of `file` from `from` on, at most `limit` bytes (and an unended
/// last line when `to_end`), until `emit` refuses one; returns the offset after the last
/// line taken, and whether none was refused.
fn read_lines(
    file: &mut std::fs::File,
    from: u64,
    limit: u64,
    to_end: bool,
    emit: &mut dyn FnMut(&str) -> bool,
) -> (u64, bool) {
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(from)).is_err() || file.take(limit).read_to_end(&mut bytes).is_err() {
        return (from, true);
    }
    let mut used = 0;
    while used < bytes.len() {
        let rest = &bytes[used..];
        let (end, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(at) => (at, at + 1),
            // A line longer than any the supervisor writes, or the last of a rotated file.
            None if to_end || rest.len() > MAX_LINE + 64 => {
                let end = rest.len().min(MAX_LINE + 64);
                (end, end)
            }
            None => break,
        };
        if !emit(&String::from_utf8_lossy(&rest[..end])) {
            return (from + used as u64, false);
        }
        used += next;
    }
    (from + used as u64, true)
}

#[cfg(test)]
#[path = "sources_tests.rs"]
mod tests;
