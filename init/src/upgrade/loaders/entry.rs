//! The names of systemd-boot's generation entries: `ramkey-gen-N-S[+LEFT[-DONE]].conf`.

use super::GEN;
use crate::base::cmdline::Slot;

/// One systemd-boot entry of a generation: `ramkey-gen-N-S[+LEFT[-DONE]].conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `N`: higher generations are newer.
    pub generation: u32,
    /// `S`: the slot it boots.
    pub slot: Slot,
    /// Tries left, for a trial (an entry with a boot counter).
    pub tries_left: Option<u32>,
    /// Tries done, once systemd-boot counted one.
    pub tries_done: Option<u32>,
    /// The file's name in `loader/entries`.
    pub file: String,
}

impl Entry {
    /// Whether it carries a boot counter: a trial, armed (`+1`) or spent (`+0-1`).
    pub fn is_trial(&self) -> bool {
        self.tries_left.is_some()
    }

    /// Parses a file name; `None` when it is not a generation entry's.
    pub fn parse(file: &str) -> Option<Entry> {
        let number = |s: &str| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u32>().ok())
                .flatten()
        };
        let stem = file.strip_prefix(GEN)?.strip_suffix(".conf")?;
        let (id, counter) = match stem.split_once('+') {
            Some((id, counter)) => (id, Some(counter)),
            None => (stem, None),
        };
        let (generation, slot) = id.split_once('-')?;
        let slot = match slot {
            "a" => Slot::A,
            "b" => Slot::B,
            _ => return None,
        };
        let (tries_left, tries_done) = match counter.map(|c| c.split_once('-').map_or((c, None), |(l, d)| (l, Some(d))))
        {
            None => (None, None),
            Some((left, None)) => (Some(number(left)?), None),
            Some((left, Some(done))) => (Some(number(left)?), Some(number(done)?)),
        };
        Some(Entry {
            generation: number(generation)?,
            slot,
            tries_left,
            tries_done,
            file: file.to_owned(),
        })
    }
}

/// The file name of generation `generation` of `slot`, with `tries` left if a trial.
pub(super) fn entry_name(generation: u32, slot: Slot, tries: Option<u32>) -> String {
    match tries {
        Some(t) => format!("{GEN}{generation}-{slot}+{t}.conf"),
        None => format!("{GEN}{generation}-{slot}.conf"),
    }
}
