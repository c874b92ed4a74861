//! Each service's stdout and stderr in its own file, `<dir>/NAME.log` (`/var/log/ramkey` on
//! the box), one UTC-timestamped line per line written, rotated by size to `NAME.log.1`
//! ... `NAME.log.K`; and [`tail`] for `ramkeyctl log SERVICE -n N`.
//!
//! The event loop keeps one [`LogSink`] per service across restarts and calls
//! [`LogSink::pump`] when the service's output pipe is readable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::base::clock::rfc3339;

/// A line longer than this is cut into several.
pub const MAX_LINE: usize = 4096;

/// A log file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct LogError {
    /// The file.
    pub path: PathBuf,
    /// The error.
    pub source: io::Error,
}

/// When to rotate and how many old files to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before the file would grow past this size.
    pub max_bytes: u64,
    /// Old files kept (`NAME.log.1` is the newest).
    pub keep: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: 1 << 20,
            keep: 3,
        }
    }
}

/// Appends one service's output to its log file.
#[derive(Debug)]
pub struct LogSink {
    dir: PathBuf,
    service: String,
    rotation: Rotation,
    file: Option<File>,
    size: u64,
    partial: Vec<u8>,
}

impl LogSink {
    /// The log of `service` in `dir`; nothing is opened until the first line.
    pub fn new(dir: impl Into<PathBuf>, service: &str, rotation: Rotation) -> Self {
        LogSink {
            dir: dir.into(),
            service: service.to_string(),
            rotation,
            file: None,
            size: 0,
            partial: Vec::new(),
        }
    }

    /// `<dir>/NAME.log`.
    pub fn path(&self) -> PathBuf {
        log_path(&self.dir, &self.service, 0)
    }

    /// Reads the pipe until it is empty; `true` at end of file (the unwritten end of the
    /// last line is then written too, and the caller closes the pipe).
    pub fn pump(&mut self, fd: BorrowedFd<'_>, now: SystemTime) -> Result<bool, LogError> {
        let mut buf = [0u8; 8192];
        loop {
            match crate::sys::read(fd, &mut buf) {
                Ok(Some(0)) => {
                    self.finish(now)?;
                    return Ok(true);
                }
                Ok(Some(n)) => self.write(now, &buf[..n])?,
                Ok(None) => return Ok(false),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    self.finish(now)?;
                    return Err(self.error(e.into()));
                }
            }
        }
    }

    /// Takes output bytes; every complete line is written with the time `now`.
    pub fn write(&mut self, now: SystemTime, bytes: &[u8]) -> Result<(), LogError> {
        self.partial.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(pos) = self.partial[start..].iter().position(|&b| b == b'\n') {
            let line = self.partial[start..start + pos].to_vec();
            self.write_line(now, &line)?;
            start += pos + 1;
        }
        while self.partial.len() - start >= MAX_LINE {
            let line = self.partial[start..start + MAX_LINE].to_vec();
            self.write_line(now, &line)?;
            start += MAX_LINE;
        }
        self.partial.drain(..start);
        Ok(())
    }

    /// Writes what is left of an unterminated last line.
    pub fn finish(&mut self, now: SystemTime) -> Result<(), LogError> {
        if self.partial.is_empty() {
            return Ok(());
        }
        let line = std::mem::take(&mut self.partial);
        self.write_line(now, &line)
    }

    fn write_line(&mut self, now: SystemTime, line: &[u8]) -> Result<(), LogError> {
        let text = format!("{} {}\n", rfc3339(now), String::from_utf8_lossy(line));
        let len = text.len() as u64;
        if self.file.is_none() {
            self.open()?;
        }
        if self.size > 0 && self.size + len > self.rotation.max_bytes {
            self.rotate()?;
            self.open()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.write_all(text.as_bytes()).map_err(|e| self.error(e))?;
        self.size += len;
        Ok(())
    }

    fn open(&mut self) -> Result<(), LogError> {
        fs::create_dir_all(&self.dir).map_err(|e| self.error(e))?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path())
            .map_err(|e| self.error(e))?;
        self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.file = Some(file);
        Ok(())
    }

    /// `NAME.log.K-1` -> `NAME.log.K` ... `NAME.log` -> `NAME.log.1`; the oldest goes.
    fn rotate(&mut self) -> Result<(), LogError> {
        self.file = None;
        self.size = 0;
        let keep = self.rotation.keep;
        for k in (0..keep).rev() {
            let from = log_path(&self.dir, &self.service, k);
            match fs::rename(&from, log_path(&self.dir, &self.service, k + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(self.error(e)),
                _ => {}
            }
        }
        if keep == 0 {
            fs::remove_file(self.path()).map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    fn error(&self, source: io::Error) -> LogError {
        LogError {
            path: self.path(),
            source,
        }
    }
}

/// `NAME.log` for `k == 0`, else `NAME.log.k`.
fn log_path(dir: &Path, service: &str, k: u32) -> PathBuf {
    match k {
        0 => dir.join(format!("{service}.log")),
        k => dir.join(format!("{service}.log.{k}")),
    }
}

/// The last `n` lines of `service`'s log, oldest first, reading into the rotated files as
/// far as needed. A service that never wrote has an empty log.
pub fn tail(dir: &Path, service: &str, n: usize) -> Result<Vec<String>, LogError> {
    let mut lines: Vec<String> = Vec::new();
    let mut k = 0;
    while lines.len() < n {
        let path = log_path(dir, service, k);
        let text = match fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(source) => return Err(LogError { path, source }),
        };
        let older: Vec<String> = text.lines().map(str::to_string).collect();
        let take = older.len().min(n - lines.len());
        let mut merged = older[older.len() - take..].to_vec();
        merged.append(&mut lines);
        lines = merged;
        k += 1;
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn writes_whole_lines_with_a_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = LogSink::new(dir.path(), "web", Rotation::default());
        sink.write(at(0), b"one\ntw").unwrap();
        sink.write(at(1), b"o\n").unwrap();
        sink.write(at(2), b"three").unwrap();
        let text = fs::read_to_string(dir.path().join("web.log")).unwrap();
        assert_eq!(text, "1970-01-01T00:00:00.000Z one\n1970-01-01T00:00:01.000Z two\n");
        sink.finish(at(3)).unwrap();
        assert_eq!(tail(dir.path(), "web", 1).unwrap(), ["1970-01-01T00:00:03.000Z three"]);
        sink.write(at(4), &vec![b'x'; MAX_LINE + 10]).unwrap();
        let last = tail(dir.path(), "web", 1).unwrap();
        assert_eq!(last[0].len(), "1970-01-01T00:00:04.000Z ".len() + MAX_LINE);
    }

    #[test]
    fn rotates_by_size_keeps_k_and_tails_across_files() {
        let dir = tempfile::tempdir().unwrap();
        // Each line is 25 + 3 + 1 = 29 bytes: two fit in 60 bytes.
        let rotation = Rotation { max_bytes: 60, keep: 2 };
        let mut sink = LogSink::new(dir.path(), "db", rotation);
        for i in 0..9 {
            sink.write(at(i), format!("l{i:02}\n").as_bytes()).unwrap();
        }
        let names = |k: &str| dir.path().join(format!("db.log{k}")).exists();
        assert!(names("") && names(".1") && names(".2") && !names(".3"));
        let lines = tail(dir.path(), "db", 5).unwrap();
        let texts: Vec<&str> = lines.iter().map(|l| &l[25..]).collect();
        // Files hold [l04 l05] [l06 l07] [l08]; l00 to l03 were rotated away.
        assert_eq!(texts, ["l04", "l05", "l06", "l07", "l08"]);
        assert_eq!(tail(dir.path(), "db", 100).unwrap().len(), 5);
        assert!(tail(dir.path(), "none", 10).unwrap().is_empty());
    }

    #[test]
    fn pumps_a_pipe_until_end_of_file() {
        use std::os::fd::AsFd;
        let dir = tempfile::tempdir().unwrap();
        let (reader, mut writer) = std::io::pipe().unwrap();
        nix::fcntl::fcntl(&reader, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)).unwrap();
        let mut sink = LogSink::new(dir.path(), "svc", Rotation::default());
        writer.write_all(b"hello\nwor").unwrap();
        assert!(!sink.pump(reader.as_fd(), at(5)).unwrap());
        writer.write_all(b"ld").unwrap();
        drop(writer);
        assert!(sink.pump(reader.as_fd(), at(6)).unwrap());
        let lines = tail(dir.path(), "svc", 10).unwrap();
        assert_eq!(
            lines,
            ["1970-01-01T00:00:05.000Z hello", "1970-01-01T00:00:06.000Z world"]
        );
    }
}
