//! The shipper's backlog: framed messages in order, in numbered segment files under one
//! directory (on the pool, or in RAM without one), bounded in bytes. Past the bound the
//! oldest segment goes and its unsent lines are counted, so that the stream can say how
//! many were dropped.
//!
//! `head` holds the read position: `SEGMENT OFFSET SENT DROPPED`, replaced atomically.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};

use std::path::{Path, PathBuf};

/// One segment file.
#[derive(Debug)]
struct Segment {
    id: u64,
    bytes: u64,
    records: u64,
}

/// The backlog.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    limit: u64,
    segment_limit: u64,
    segments: VecDeque<Segment>,
    /// Read position in the first segment: its byte offset and the records before it.
    offset: u64,
    sent: u64,
    /// Lines dropped since the last frame was taken.
    pub dropped: u64,
    writer: Option<File>,
    /// Reads the first segment; positioned after `pending`.
    reader: Option<(u64, BufReader<File>)>,
    /// The frame `peek` read and `take` has not taken.
    pending: Option<Vec<u8>>,
}

fn name(id: u64) -> String {
    format!("{id:016}.seg")
}

impl Spool {
    /// Opens the backlog in `dir` (made if missing), at most `limit` bytes of unsent lines.
    pub fn open(dir: &Path, limit: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut ids: Vec<u64> = fs::read_dir(dir)?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        ids.sort_unstable();
        let mut segments = VecDeque::new();
        for id in ids {
            let path = dir.join(name(id));
            let (bytes, records) = count(&path)?;
            segments.push_back(Segment { id, bytes, records });
        }
        let head = fs::read_to_string(dir.join("head")).unwrap_or_default();
        let fields: Vec<u64> = head.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        let (mut offset, mut sent, mut dropped) = (0, 0, 0);
        if let [id, o, s, d] = fields[..] {
            dropped = d;
            while segments.front().is_some_and(|s| s.id < id) {
                let gone = segments.pop_front().map_or(0, |s| s.id);
                let _ = fs::remove_file(dir.join(name(gone)));
            }
            if segments.front().is_some_and(|s| s.id == id) {
                (offset, sent) = (o, s);
            }
        }
        Ok(Spool {
            dir: dir.to_owned(),
            limit,
            segment_limit: (limit / 8).clamp(1024, 1 << 20),
            segments,
            offset,
            sent,
            dropped,
            writer: None,
            reader: None,
            pending: None,
        })
    }

    /// Bytes waiting to be sent.
    pub fn backlog(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum::<u64>() - self.offset
    }

    /// Lines waiting to be sent.
    pub fn lines(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum::<u64>() - self.sent
    }

    /// Appends one frame; drops the oldest segments when the backlog would pass the bound.
    pub fn push(&mut self, frame: &[u8]) -> io::Result<()> {
        let len = frame.len() as u64;
        // After a restart, writing starts a new segment: the last one may end in a frame a
        // crash cut short.
        let full = self.writer.is_none()
            || self
                .segments
                .back()
                .is_none_or(|s| s.bytes + len > self.segment_limit && s.bytes > 0);
        if full {
            let id = self.segments.back().map_or(0, |s| s.id + 1);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(name(id)))?;
            self.writer = Some(file);
            self.segments.push_back(Segment {
                id,
                bytes: 0,
                records: 0,
            });
        }
        if let Some(w) = self.writer.as_mut() {
            w.write_all(frame)?;
        }
        if let Some(last) = self.segments.back_mut() {
            last.bytes += len;
            last.records += 1;
        }
        while self.backlog() > self.limit && self.segments.len() > 1 {
            self.drop_oldest();
        }
        Ok(())
    }

    fn drop_oldest(&mut self) {
        if let Some(old) = self.segments.pop_front() {
            self.dropped += old.records - self.sent;
            let _ = fs::remove_file(self.dir.join(name(old.id)));
            (self.offset, self.sent) = (0, 0);
            self.reader = None;
            self.pending = None;
        }
    }

    /// The oldest unsent frame, without taking it.
    pub fn peek(&mut self) -> io::Result<Option<&[u8]>> {
        if self.pending.is_none() {
            self.pending = self.read_next()?;
        }
        Ok(self.pending.as_deref())
    }

    fn read_next(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            let Some(first) = self.segments.front() else {
                return Ok(None);
            };
            if self.sent < first.records {
                break;
            }
            if self.segments.len() == 1 {
                return Ok(None);
            }
            // Every line of the first segment went: on to the next.
            let id = first.id;
            self.segments.pop_front();
            let _ = fs::remove_file(self.dir.join(name(id)));
            (self.offset, self.sent) = (0, 0);
            self.reader = None;
        }
        let id = self.segments.front().map_or(0, |s| s.id);
        if self.reader.as_ref().is_none_or(|(r, _)| *r != id) {
            let mut file = File::open(self.dir.join(name(id)))?;
            file.seek(SeekFrom::Start(self.offset))?;
            self.reader = Some((id, BufReader::new(file)));
        }
        match self.reader.as_mut() {
            Some((_, reader)) => read_frame(reader),
            None => Ok(None),
        }
    }

    /// Takes the frame [`Spool::peek`] returned.
    pub fn take(&mut self) {
        if let Some(frame) = self.pending.take() {
            self.offset += frame.len() as u64;
            self.sent += 1;
        }
    }

    /// Writes what was appended to the disk and the read position next to it.
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(w) = self.writer.as_mut() {
            w.sync_data()?;
        }
        let id = self.segments.front().map_or(0, |s| s.id);
        let head = format!("{id} {} {} {}\n", self.offset, self.sent, self.dropped);
        let tmp = self.dir.join("head.new");
        fs::write(&tmp, head)?;
        fs::rename(tmp, self.dir.join("head"))
    }
}

/// One `LEN SP MSG` frame from `reader`; `None` at the end of what was written (a frame cut
/// short by a crash is the end too).
fn read_frame(reader: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut digits = Vec::new();
    reader.read_until(b' ', &mut digits)?;
    let Some(len) = std::str::from_utf8(&digits)
        .ok()
        .and_then(|d| d.strip_suffix(' '))
        .and_then(|d| d.parse::<usize>().ok())
    else {
        return Ok(None);
    };
    let mut frame = digits;
    let start = frame.len();
    frame.resize(start + len, 0);
    match reader.read_exact(&mut frame[start..]) {
        Ok(()) => Ok(Some(frame)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// The bytes and whole frames in a segment file.
fn count(path: &Path) -> io::Result<(u64, u64)> {
    let mut reader = BufReader::new(File::open(path)?);
    let (mut bytes, mut records) = (0, 0);
    while let Some(frame) = read_frame(&mut reader)? {
        bytes += frame.len() as u64;
        records += 1;
    }
    Ok((bytes, records))
}

#[cfg(test)]
#[path = "spool_tests.rs"]
mod tests;
