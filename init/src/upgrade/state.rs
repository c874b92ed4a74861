//! `platform/state.toml` on the stick: what `ramkeyctl platform upgrade` armed (the trial:
//! which slot, which version, what must come back and by when) and how the last trial
//! ended. PID 1 reads it at boot to know whether this boot is a trial and, when the
//! loader fell back without running it, why; it is the only record of a trial that
//! never reached PID 1. Written power-safely like every file on the stick.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::cmdline::Slot;
use crate::storage::mounts::Mounter;
use crate::storage::usbkey_write::{self, WriteError};

/// The folder of the slots on the stick, and of this file.
pub const PLATFORM_DIR: &str = "platform";
/// The file's name in [`PLATFORM_DIR`].
pub const STATE_FILE: &str = "state.toml";

/// An armed or running trial boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trial {
    /// The slot on trial: `a` or `b`.
    pub slot: String,
    /// Its platform version.
    pub version: String,
    /// When the upgrade armed it, seconds since the epoch.
    pub armed_at: u64,
    /// Seconds after the kernel started by which everything in `expect` must be online.
    pub deadline: u64,
    /// The services (zones among them) that were online when the upgrade was armed.
    pub expect: Vec<String>,
    /// False until the loaders are armed: an upgrade cut off before that never ran a trial.
    pub armed: bool,
    /// Set by PID 1 of the trial boot as soon as it starts.
    #[serde(default)]
    pub reached_init: bool,
}

/// How a trial ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// The slot that was on trial.
    pub slot: String,
    /// Its version.
    pub version: String,
    /// True when it was committed; false when the box fell back.
    pub committed: bool,
    /// Why, in one line, as the console said it.
    pub reason: String,
    /// When, seconds since the epoch.
    pub at: u64,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The trial armed or running, if any.
    pub trial: Option<Trial>,
    /// How the last trial ended.
    pub last: Option<Outcome>,
}

/// Reading or writing the state failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// It is there but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// It does not parse (edited by hand?).
    #[error("{}: {message}; remove it to forget the upgrade history (the slots are untouched)", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Writing it failed.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// A slot from its letter.
pub fn slot_of(text: &str) -> Option<Slot> {
    match text {
        "a" => Some(Slot::A),
        "b" => Some(Slot::B),
        _ => None,
    }
}

impl State {
    /// Reads the state of the stick mounted at `usbkey`; none yet is the default.
    pub fn read(usbkey: &Path) -> Result<State, StateError> {
        let path = usbkey.join(PLATFORM_DIR).join(STATE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| StateError::Parse {
                path,
                message: e.message().to_owned(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    /// Writes it power-safely (the stick must be mounted read-write).
    pub fn write(&self, usbkey: &Path) -> Result<(), StateError> {
        let text = format!(
            "# Written by ramkeyctl platform upgrade and PID 1: the platform trial boot.\n{}",
            toml::to_string(self).unwrap_or_default()
        );
        let dir = usbkey.join(PLATFORM_DIR);
        usbkey_write::write_file(&dir, STATE_FILE, text.as_bytes())?;
        Ok(())
    }

    /// Ends the trial with `committed` and `reason`; returns the outcome.
    pub fn end_trial(&mut self, committed: bool, reason: String, at: u64) -> Option<Outcome> {
        let trial = self.trial.take()?;
        let outcome = Outcome {
            slot: trial.slot,
            version: trial.version,
            committed,
            reason,
            at,
        };
        self.last = Some(outcome.clone());
        Some(outcome)
    }
}

/// Runs `write` with the stick (device `node`, mounted at `mount`) remounted read-write,
/// every error as its message.
pub fn on_stick<T>(
    mounter: &mut dyn Mounter,
    node: &Path,
    mount: &Path,
    write: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    usbkey_write::with_rw(mounter, node, mount, || write().map_err(Failed)).map_err(|e: Failed| e.0)
}

/// An error as its message, for [`on_stick`].
struct Failed(String);

impl From<WriteError> for Failed {
    fn from(e: WriteError) -> Self {
        Failed(e.to_string())
    }
}

/// Seconds since the epoch now.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_round_trips_and_none_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(State::read(dir.path()).unwrap(), State::default());
        std::fs::create_dir(dir.path().join(PLATFORM_DIR)).unwrap();
        let mut state = State {
            trial: Some(Trial {
                slot: "b".into(),
                version: "0.2.0".into(),
                armed_at: 1,
                deadline: 120,
                expect: vec!["sshd".into(), "web".into()],
                armed: true,
                reached_init: false,
            }),
            last: None,
        };
        state.write(dir.path()).unwrap();
        assert_eq!(State::read(dir.path()).unwrap(), state);
        let outcome = state.end_trial(false, "why".into(), 2).unwrap();
        assert_eq!((outcome.slot.as_str(), outcome.committed), ("b", false));
        assert!(state.trial.is_none() && state.last.is_some());
        assert!(
            state.end_trial(true, "again".into(), 3).is_none(),
            "no trial, nothing ends"
        );
    }

    #[test]
    fn a_broken_file_says_where_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(PLATFORM_DIR)).unwrap();
        std::fs::write(dir.path().join("platform/state.toml"), "trial = 3\n").unwrap();
        let err = State::read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("platform/state.toml") && err.contains("remove it"),
            "{err}"
        );
    }
}
