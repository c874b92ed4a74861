//! Line-by-line edits of the loaders' text files: `syslinux.cfg`'s labels and `DEFAULT`, and
//! systemd-boot entries. Lines that need no change are kept as they are, line ends included.

use std::path::Path;

use super::LoaderError;
use crate::base::cmdline::Slot;

/// The kernel parameter naming the slot.
const SLOT_PARAM: &str = "ramkey.slot=";
/// The kernel parameter asking for recovery mode.
const RECOVERY_PARAM: &str = "ramkey.recovery";

/// A line's text and its end (`\n`, `\r\n` or nothing).
pub(super) fn split_eol(line: &str) -> (&str, &str) {
    let body = line.trim_end_matches(['\n', '\r']);
    (body, &line[body.len()..])
}

/// A line's first word, lowercased, and the rest, trimmed.
pub(super) fn keyword(body: &str) -> (String, &str) {
    let body = body.trim();
    let (word, rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
    (word.to_ascii_lowercase(), rest.trim())
}

/// `line` pointed at `slot`: `platform/X/` paths, the `ramkey.slot=` word (added to an
/// `APPEND` or `options` line that lacks it) and a `(slot X)` title. Comments are kept.
pub(super) fn retarget(line: &str, slot: Slot) -> String {
    let (body, eol) = split_eol(line);
    let (word, _) = keyword(body);
    if word.starts_with('#') {
        return line.to_owned();
    }
    let other = slot.other();
    let mut body = body
        .replace(&format!("platform/{other}/"), &format!("platform/{slot}/"))
        .replace(&format!("(slot {other})"), &format!("(slot {slot})"));
    let mut has_param = false;
    body = body
        .split_inclusive(char::is_whitespace)
        .map(|piece| match piece.strip_prefix(SLOT_PARAM) {
            Some(rest) => {
                has_param = true;
                let space = &rest[rest.trim_end().len()..];
                format!("{SLOT_PARAM}{slot}{space}")
            }
            None => piece.to_owned(),
        })
        .collect();
    if !has_param && (word == "append" || word == "options") {
        body = format!("{} {SLOT_PARAM}{slot}", body.trim_end());
    }
    body + eol
}

/// `syslinux.cfg` as lines, each with its end.
pub(super) struct Cfg {
    lines: Vec<String>,
}

impl Cfg {
    pub(super) fn parse(text: &str) -> Cfg {
        let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
        let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
        if let Some(last) = lines.last_mut().filter(|l| !l.ends_with('\n')) {
            last.push_str(eol);
        }
        Cfg { lines }
    }

    pub(super) fn text(&self) -> String {
        self.lines.concat()
    }

    /// The index and value of the `DEFAULT` line.
    pub(super) fn default(&self) -> Option<(usize, String)> {
        self.lines.iter().enumerate().find_map(|(n, line)| {
            let (word, rest) = keyword(split_eol(line).0);
            (word == "default").then(|| (n, rest.to_owned()))
        })
    }

    /// The lines of `LABEL label`, from its `LABEL` line to the next one, less the blank
    /// and comment lines before that.
    pub(super) fn block(&self, label: &str) -> Option<std::ops::Range<usize>> {
        let is_label = |line: &String| keyword(split_eol(line).0).0 == "label";
        let start = self
            .lines
            .iter()
            .position(|l| is_label(l) && keyword(split_eol(l).0).1 == label)?;
        let mut end = self.lines[start + 1..]
            .iter()
            .position(is_label)
            .map_or(self.lines.len(), |n| start + 1 + n);
        while end > start + 1 && matches!(self.lines[end - 1].trim().chars().next(), None | Some('#')) {
            end -= 1;
        }
        Some(start..end)
    }

    /// Ensures `LABEL ramkey-<slot>` exists and boots `slot`, copying the block of
    /// `ramkey-<from>` when it is missing; with a `title`, its `SAY Booting ...` line says
    /// it.
    pub(super) fn ensure_label(
        &mut self,
        file: &Path,
        slot: Slot,
        from: Slot,
        title: Option<&str>,
    ) -> Result<(), LoaderError> {
        let label = format!("ramkey-{slot}");
        let range = match self.block(&label) {
            Some(range) => range,
            None => {
                let source = self
                    .block(&format!("ramkey-{from}"))
                    .ok_or_else(|| LoaderError::Config {
                        file: file.to_owned(),
                        problem: format!("no `LABEL ramkey-{from}` to copy for slot {slot}: reflash the stick"),
                    })?;
                let mut copy = self.lines[source.clone()].to_vec();
                let (body, eol) = split_eol(&copy[0]);
                copy[0] = format!("{}{eol}", body.replace(&format!("ramkey-{from}"), &label));
                copy.insert(0, split_eol(&copy[0]).1.to_owned());
                let at = source.end;
                let len = copy.len();
                self.lines.splice(at..at, copy);
                at + 1..at + len
            }
        };
        for line in &mut self.lines[range] {
            *line = retarget(line, slot);
            let (body, eol) = split_eol(line);
            let (word, rest) = keyword(body);
            if let Some(title) = title.filter(|_| word == "say" && rest.starts_with("Booting ")) {
                let indent = &body[..body.len() - body.trim_start().len()];
                let say = &body.trim_start()[..3];
                *line = format!("{indent}{say} Booting {title} (slot {slot}){eol}");
            }
        }
        Ok(())
    }

    /// Points `DEFAULT` at `ramkey-<slot>`.
    pub(super) fn set_default(&mut self, slot: Slot) {
        if let Some((n, _)) = self.default() {
            let (body, eol) = split_eol(&self.lines[n]);
            let word = body.split_whitespace().next().unwrap_or("DEFAULT");
            let indent = &body[..body.len() - body.trim_start().len()];
            self.lines[n] = format!("{indent}{word} ramkey-{slot}{eol}");
        }
    }

    /// Points the block of `LABEL label`, if any, at `slot` ([`retarget`]).
    pub(super) fn retarget_block(&mut self, label: &str, slot: Slot) {
        if let Some(range) = self.block(label) {
            for line in &mut self.lines[range] {
                *line = retarget(line, slot);
            }
        }
    }
}

/// A trial entry for `slot` made from the committed entry `template`: its title and version
/// replaced, the rest [`retarget`]ed.
pub(super) fn trial_entry(template: &str, slot: Slot, title: &str, version: &str) -> String {
    template
        .split_inclusive('\n')
        .map(|line| {
            let (body, eol) = split_eol(line);
            match keyword(body).0.as_str() {
                "title" => format!("title {title} (slot {slot}){eol}"),
                "version" => format!("version {version}{eol}"),
                _ => retarget(line, slot),
            }
        })
        .collect()
}

/// The recovery entry made from the committed entry: ` recovery` after the title and
/// `ramkey.recovery` added to the options.
pub(super) fn recovery_entry(committed: &str) -> String {
    committed
        .split_inclusive('\n')
        .map(|line| {
            let (body, eol) = split_eol(line);
            match keyword(body) {
                (word, _) if word == "title" => format!("{body} recovery{eol}"),
                (word, rest) if word == "options" && !rest.split_whitespace().any(|w| w == RECOVERY_PARAM) => {
                    format!("{} {RECOVERY_PARAM}{eol}", body.trim_end())
                }
                _ => line.to_owned(),
            }
        })
        .collect()
}
