//! The stick's two boot loaders, configured for two platform slots: arm a trial boot of the
//! inactive slot, commit it, or disarm it. Pure file work under the usbkey's mount point
//! (`root`), which the caller has remounted read-write for the writing functions.
//!
//! - BIOS, syslinux: `syslinux/syslinux.cfg` has `LABEL ramkey-a`, `LABEL ramkey-b` and
//!   `LABEL recovery`; `DEFAULT ramkey-S` names the committed slot, and the recovery label
//!   boots it. A trial is syslinux's boot-once label in `syslinux/ldlinux.sys` ([`adv`]),
//!   which syslinux clears before it boots it: exactly one try.
//! - UEFI, systemd-boot: `loader/loader.conf` says `default ramkey-gen-*`; each slot has
//!   an entry `loader/entries/ramkey-gen-N-S.conf`, a trial carries a boot counter
//!   (`ramkey-gen-N-S+LEFT[-DONE].conf`, which systemd-boot counts down itself), and the glob
//!   takes the highest generation that has tries left, else the committed one.
//!   `ramkey-recovery.conf` boots the committed slot in recovery mode.
//!
//! Every file is written beside and renamed ([`write_file`]); renames and removals are
//! followed by an fsync of the directory. Each function orders its steps so that a power cut
//! between any two leaves a stick that boots the committed slot (or, during a commit, the
//! slot being committed): syslinux's boot-once label is armed last and cleared last.
//! Lines this module does not need to change (a user's `APPEND` words, comments) are kept.

mod edit;
mod entry;

use std::path::{Path, PathBuf};

use super::adv::{self, AdvError};
use crate::base::cmdline::Slot;
use crate::storage::usbkey_write::{WriteError, write_file};
use edit::{Cfg, keyword};
pub use entry::Entry;
use entry::entry_name;

/// syslinux's folder on the stick.
const SYSLINUX: &str = "syslinux";
/// systemd-boot's entries on the stick.
const ENTRIES: &str = "loader/entries";
/// systemd-boot's settings on the stick.
const LOADER_CONF: &str = "loader/loader.conf";
/// The start of every generation entry's name, and `loader.conf`'s default glob.
const GEN: &str = "ramkey-gen-";
/// The systemd-boot recovery entry.
const RECOVERY_ENTRY: &str = "ramkey-recovery.conf";

/// Reading or changing the boot loaders' configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// The stick still has the one-slot layout.
    #[error(
        "this stick's boot loader configuration predates two-slot upgrades ({reason}): reflash it once with `ramkey flash --keep-config`"
    )]
    Predates {
        /// What was found, naming the file.
        reason: String,
    },
    /// A file on the stick is not as this module writes it.
    #[error("{}: {problem}", file.display())]
    Config {
        /// The file.
        file: PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },
    /// A commit was cut short: the loaders name different committed slots.
    #[error(
        "the boot loaders disagree on the committed slot (syslinux.cfg: {syslinux}, systemd-boot entries: {entries}): a commit of slot {entries} was interrupted; commit it again before arming a trial"
    )]
    Disagree {
        /// syslinux's `DEFAULT`.
        syslinux: Slot,
        /// The slot of systemd-boot's highest entry without a boot counter.
        entries: Slot,
    },
    /// A trial of the committed slot was asked for.
    #[error("slot {slot} is the committed slot: a trial boots the other one, slot {}", slot.other())]
    ArmCommitted {
        /// The slot asked for.
        slot: Slot,
    },
    /// No entry to commit.
    #[error("no systemd-boot entry for slot {slot} in {}: arm a trial of it first", dir.display())]
    NoEntry {
        /// The slot asked for.
        slot: Slot,
        /// The entries folder.
        dir: PathBuf,
    },
    /// A bad argument.
    #[error("{what} {value:?}: {expected}")]
    Argument {
        /// Which argument.
        what: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        expected: &'static str,
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
    /// Writing a file failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// syslinux's boot-once label could not be read or written.
    #[error(transparent)]
    Adv(#[from] AdvError),
}

fn io<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> LoaderError + 'p {
    move |source| LoaderError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn read(path: &Path) -> Result<String, LoaderError> {
    std::fs::read_to_string(path).map_err(io("read", path))
}

/// fsyncs a folder after a rename or removal (a filesystem that cannot is not an error).
fn sync_dir(dir: &Path) -> Result<(), LoaderError> {
    match std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if e.kind() != std::io::ErrorKind::InvalidInput => Err(io("fsync directory", dir)(e)),
        _ => Ok(()),
    }
}

/// Writes `dir/name` power-safely when `new` differs from `old`.
fn write_if_changed(dir: &Path, name: &str, old: &str, new: &str) -> Result<(), LoaderError> {
    if old != new {
        write_file(dir, name, new.as_bytes())?;
    }
    Ok(())
}

/// The paths of the files this module reads.
struct Files {
    syslinux: PathBuf,
    cfg: PathBuf,
    ldlinux: PathBuf,
    entries: PathBuf,
}

impl Files {
    fn new(root: &Path) -> Files {
        let syslinux = root.join(SYSLINUX);
        Files {
            cfg: syslinux.join("syslinux.cfg"),
            ldlinux: syslinux.join("ldlinux.sys"),
            syslinux,
            entries: root.join(ENTRIES),
        }
    }
}

/// The committed slot and the parsed `syslinux.cfg`.
fn syslinux_cfg(files: &Files) -> Result<(Slot, Cfg, String), LoaderError> {
    let text = read(&files.cfg)?;
    let cfg = Cfg::parse(&text);
    let slot = match cfg.default().map(|(_, value)| value) {
        Some(v) if v == "ramkey-a" => Slot::A,
        Some(v) if v == "ramkey-b" => Slot::B,
        found => {
            return Err(LoaderError::Predates {
                reason: format!(
                    "{} has {}, not `DEFAULT ramkey-a` or `DEFAULT ramkey-b`",
                    files.cfg.display(),
                    found.map_or("no DEFAULT".into(), |v| format!("`DEFAULT {v}`"))
                ),
            });
        }
    };
    Ok((slot, cfg, text))
}

/// Refuses a stick whose loaders predate two slots: `loader.conf`'s default must be
/// `ramkey-gen-*`, `loader/entries` must have a committed `ramkey-gen-N-S.conf`, and
/// `syslinux.cfg`'s `DEFAULT` must be `ramkey-a` or `ramkey-b`.
pub fn check_layout(root: &Path) -> Result<(), LoaderError> {
    let conf = root.join(LOADER_CONF);
    let default = read(&conf)?.lines().find_map(|line| match keyword(line) {
        (word, rest) if word == "default" => Some(rest.to_owned()),
        _ => None,
    });
    if !matches!(default.as_deref(), Some("ramkey-gen-*" | "ramkey-gen-*.conf")) {
        let found = default.map_or("no default".into(), |d| format!("`default {d}`"));
        return Err(LoaderError::Predates {
            reason: format!("{} has {found}, not `default {GEN}*`", conf.display()),
        });
    }
    let files = Files::new(root);
    if !entries(root)?.iter().any(|e| !e.is_trial()) {
        return Err(LoaderError::Predates {
            reason: format!("{} has no {GEN}N-a.conf or {GEN}N-b.conf", files.entries.display()),
        });
    }
    syslinux_cfg(&files).map(|_| ())
}

/// The committed slot: the one `syslinux.cfg`'s `DEFAULT` boots.
pub fn committed(root: &Path) -> Result<Slot, LoaderError> {
    syslinux_cfg(&Files::new(root)).map(|(slot, _, _)| slot)
}

/// The generation entries in `loader/entries`, oldest generation first. A `ramkey-gen-*`
/// file that is not a generation entry is an error: `loader.conf`'s glob would take it.
pub fn entries(root: &Path) -> Result<Vec<Entry>, LoaderError> {
    let dir = root.join(ENTRIES);
    let mut found = Vec::new();
    for item in std::fs::read_dir(&dir).map_err(io("read", &dir))? {
        let name = item.map_err(io("read", &dir))?.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with(GEN) || !name.ends_with(".conf") {
            continue;
        }
        found.push(Entry::parse(&name).ok_or_else(|| LoaderError::Config {
            file: dir.join(&*name),
            problem: format!("not a {GEN}N-a|b[+LEFT[-DONE]].conf name, yet systemd-boot's default glob takes it: remove or rename it"),
        })?);
    }
    found.sort_by_key(|e| (e.generation, e.slot.letter(), e.file.clone()));
    Ok(found)
}

/// Removes the trial entries (those with a boot counter) and returns the newest.
fn remove_trials(files: &Files, list: &[Entry]) -> Result<Option<Entry>, LoaderError> {
    let trials: Vec<&Entry> = list.iter().filter(|e| e.is_trial()).collect();
    for trial in &trials {
        let path = files.entries.join(&trial.file);
        std::fs::remove_file(&path).map_err(io("remove", &path))?;
    }
    if !trials.is_empty() {
        sync_dir(&files.entries)?;
    }
    Ok(trials.last().map(|e| (*e).clone()))
}

/// Whether `text` is one line of printable text.
fn one_line(text: &str) -> bool {
    !text.trim().is_empty() && !text.chars().any(char::is_control)
}

/// Arms a trial boot of `slot` (its platform files already written): `tries` boots under
/// systemd-boot, one under syslinux, after which both loaders go back to the committed slot
/// by themselves. `title` is the platform's name without the slot (`Ramkey 0.2.0`), `version`
/// its version; both go into the new entry and syslinux's `SAY` line.
///
/// Steps: syslinux's `LABEL ramkey-<slot>` (copied from the committed slot's if missing),
/// the previous trial entries removed, `ramkey-gen-<N+1>-<slot>+<tries>.conf` written from
/// the committed entry, then syslinux's boot-once label.
pub fn arm(root: &Path, slot: Slot, tries: u32, title: &str, version: &str) -> Result<(), LoaderError> {
    for (what, value) in [("title", title), ("version", version)] {
        if !one_line(value) {
            let expected = "one line of printable text";
            return Err(LoaderError::Argument {
                what,
                value: value.into(),
                expected,
            });
        }
    }
    if tries == 0 {
        let expected = "a trial needs at least one try";
        return Err(LoaderError::Argument {
            what: "tries",
            value: "0".into(),
            expected,
        });
    }
    check_layout(root)?;
    let files = Files::new(root);
    let (committed, mut cfg, text) = syslinux_cfg(&files)?;
    let list = entries(root)?;
    let base = list
        .iter()
        .rfind(|e| !e.is_trial())
        .ok_or_else(|| LoaderError::Predates {
            reason: format!("{} has no committed {GEN}N-a|b.conf", files.entries.display()),
        })?;
    if base.slot != committed {
        return Err(LoaderError::Disagree {
            syslinux: committed,
            entries: base.slot,
        });
    }
    if slot == committed {
        return Err(LoaderError::ArmCommitted { slot });
    }
    adv::read(&files.ldlinux)?; // refuse a missing ldlinux.sys before changing anything

    cfg.ensure_label(&files.cfg, slot, committed, Some(title))?;
    write_if_changed(&files.syslinux, "syslinux.cfg", &text, &cfg.text())?;
    remove_trials(&files, &list)?;
    let template = read(&files.entries.join(&base.file))?;
    let entry = edit::trial_entry(&template, slot, title, version);
    let newest = list.last().map_or(0, |e| e.generation);
    let generation = newest.checked_add(1).ok_or_else(|| LoaderError::Config {
        file: files.entries.join(&list[list.len() - 1].file),
        problem: "generation numbers are exhausted: reflash the stick".into(),
    })?;
    write_file(
        &files.entries,
        &entry_name(generation, slot, Some(tries)),
        entry.as_bytes(),
    )?;
    adv::set_boot_once(&files.ldlinux, Some(&format!("ramkey-{slot}")))?;
    Ok(())
}

/// Makes `slot` the committed one: its newest entry loses its boot counter,
/// `ramkey-recovery.conf` and syslinux's `DEFAULT` and `recovery` label boot it, every other
/// generation entry is removed, and syslinux's boot-once label is cleared. A second call
/// changes nothing; a call cut short is finished by the next.
pub fn commit(root: &Path, slot: Slot) -> Result<(), LoaderError> {
    check_layout(root)?;
    let files = Files::new(root);
    let list = entries(root)?;
    let target = list
        .iter()
        .rfind(|e| e.slot == slot)
        .ok_or_else(|| LoaderError::NoEntry {
            slot,
            dir: files.entries.clone(),
        })?;
    let name = entry_name(target.generation, slot, None);
    let path = files.entries.join(&name);
    if target.file != name {
        let from = files.entries.join(&target.file);
        std::fs::rename(&from, &path).map_err(io("rename", &from))?;
        sync_dir(&files.entries)?;
    }

    let committed = read(&path)?;
    let recovery = edit::recovery_entry(&committed);
    let old = std::fs::read_to_string(files.entries.join(RECOVERY_ENTRY)).unwrap_or_default();
    write_if_changed(&files.entries, RECOVERY_ENTRY, &old, &recovery)?;

    let (from, mut cfg, text) = syslinux_cfg(&files)?;
    cfg.ensure_label(&files.cfg, slot, from, None)?;
    cfg.set_default(slot);
    cfg.retarget_block("recovery", slot);
    write_if_changed(&files.syslinux, "syslinux.cfg", &text, &cfg.text())?;

    let others: Vec<&Entry> = list
        .iter()
        .filter(|e| e.file != name && e.file != target.file)
        .collect();
    for entry in &others {
        let path = files.entries.join(&entry.file);
        std::fs::remove_file(&path).map_err(io("remove", &path))?;
    }
    if !others.is_empty() {
        sync_dir(&files.entries)?;
    }
    adv::set_boot_once(&files.ldlinux, None)?;
    Ok(())
}

/// Disarms a trial: removes the entries with a boot counter and clears syslinux's
/// boot-once label. Returns the newest entry removed, if any. A second call changes
/// nothing.
pub fn disarm(root: &Path) -> Result<Option<Entry>, LoaderError> {
    let files = Files::new(root);
    let removed = remove_trials(&files, &entries(root)?)?;
    adv::set_boot_once(&files.ldlinux, None)?;
    Ok(removed)
}

/// Whether both loaders boot `slot` and nothing else is pending: syslinux's `DEFAULT`, the
/// only generation entry, no trial entry, no boot-once label. False also when they cannot
/// be read. What a [`commit`] cut short leaves undone, the next `commit` finishes.
pub fn is_committed(root: &Path, slot: Slot) -> bool {
    let list = entries(root).unwrap_or_default();
    committed(root).is_ok_and(|c| c == slot)
        && list.len() == 1
        && list.iter().all(|e| e.slot == slot && !e.is_trial())
        && boot_once(root).is_ok_and(|label| label.is_none())
}

/// The label syslinux boots once at the next BIOS boot, if one is armed.
pub fn boot_once(root: &Path) -> Result<Option<String>, LoaderError> {
    Ok(adv::boot_once(&Files::new(root).ldlinux)?)
}

/// Clears syslinux's boot-once label only: what a trial boot does first, so that one whose
/// firmware could not write the label back is not booted again at the next reset.
pub fn clear_boot_once(root: &Path) -> Result<(), LoaderError> {
    adv::set_boot_once(&Files::new(root).ldlinux, None)?;
    Ok(())
}

#[cfg(test)]
#[path = "loaders_tests.rs"]
pub(crate) mod tests;
