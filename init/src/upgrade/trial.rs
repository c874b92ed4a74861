//! PID 1's side of a platform upgrade. At boot ([`at_boot`]) it reads the stick's
//! [`State`] and the slot the loader booted: the committed slot with nothing pending, the
//! trial of a new slot (then it watches it: [`Watch`]), or the committed slot after a trial
//! that failed before PID 1 could judge it (a kernel panic: the loader fell back by itself),
//! which it records. A trial is committed once every service and zone that was online when
//! the upgrade was armed has come up again, before the deadline; otherwise it is rejected and
//! the box reboots into the committed slot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::loaders::{self, LoaderError};
use super::slot;
use super::state::{State, now_unix, on_stick, slot_of};
use crate::base::cmdline::Slot;
use crate::runtime::events::Judge;
use crate::runtime::shutdown::{Action, Request};
use crate::storage::mounts::{KernelMounter, Mounter};
use crate::supervisor::state::{ServiceStatus, State as SvcState};

/// The running trial, judged at each turn of the event loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// The slot on trial (the booted one).
    pub slot: Slot,
    /// Its version.
    pub version: String,
    /// What must be online.
    pub expect: Vec<String>,
    /// By when, after the kernel started.
    pub deadline: Duration,
}

/// What to do with the trial now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not yet decided.
    Wait,
    /// Keep the slot; why.
    Commit(String),
    /// Go back to the committed slot; why.
    Reject(String),
}

impl Watch {
    /// Judges the trial `since_boot` after the kernel started, from the services'
    /// `statuses` (`None`: no services, the boot ended in recovery mode).
    pub fn verdict(&self, statuses: Option<&[ServiceStatus]>, since_boot: Duration) -> Verdict {
        let Some(statuses) = statuses else {
            return Verdict::Reject("the boot ended in recovery mode".into());
        };
        // A service in maintenance was given up on by the supervisor: it will not come back.
        let given_up = statuses
            .iter()
            .any(|s| s.state == SvcState::Maintenance && self.expect.contains(&s.name));
        let missing: Vec<String> = self
            .expect
            .iter()
            .filter_map(|name| match statuses.iter().find(|s| &s.name == name) {
                None => Some(format!("{name} is not defined on this platform")),
                Some(s) if s.state != SvcState::Maintenance && came_up(s) => None,
                Some(s) if s.reason.is_empty() => Some(format!("{name} is {}", s.state)),
                Some(s) => Some(format!("{name} is {} ({})", s.state, s.reason)),
            })
            .collect();
        let secs = since_boot.as_secs_f64();
        if missing.is_empty() {
            let what = if self.expect.is_empty() {
                "nothing was running before".to_owned()
            } else {
                self.expect.join(", ")
            };
            Verdict::Commit(format!("ready, and back: {what} ({secs:.1} s after boot)"))
        } else if given_up {
            Verdict::Reject(format!("not back ({secs:.1} s after boot): {}", missing.join("; ")))
        } else if since_boot >= self.deadline {
            Verdict::Reject(format!(
                "not back {} s after boot: {}",
                self.deadline.as_secs(),
                missing.join("; ")
            ))
        } else {
            Verdict::Wait
        }
    }
}

/// Whether `s` came up (was online) in this boot: a one-shot that ran and ended did, too.
pub fn came_up(s: &ServiceStatus) -> bool {
    s.state == SvcState::Online || s.history.iter().any(|t| t.state == SvcState::Online)
}

/// The stick a trial is recorded on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stick {
    /// Its device node, for the remounts.
    pub node: PathBuf,
    /// Where it is mounted.
    pub mount: PathBuf,
}

fn version_of(stick: &Path, slot: Slot) -> String {
    slot::info(stick, slot).version.unwrap_or_else(|| "?".into())
}

/// Reads the stick's trial state at boot, says on the console which slot booted and
/// what that means, records a trial that failed before PID 1, and returns the trial to
/// watch when this boot is one.
pub fn at_boot(stick: &Stick, booted: Option<Slot>, mounter: &mut dyn Mounter) -> Option<Watch> {
    let booted = booted?;
    let root = stick.mount.as_path();
    let mut state = match State::read(root) {
        Ok(state) => state,
        Err(e) => {
            crate::warn!("platform: {e}");
            return None;
        }
    };
    if state.trial.is_none() {
        finish_commit(stick, &state, mounter);
    }
    let committed = loaders::committed(root).ok();
    let say_booted = |what: &str| {
        crate::notice!("platform: booted slot {} ({}){what}", booted, version_of(root, booted));
    };
    let Some(trial) = state.trial.clone() else {
        match committed {
            Some(c) if c != booted => say_booted(&format!(
                ", which is not the committed slot {} (chosen at the boot menu?)",
                c
            )),
            _ => say_booted(", committed"),
        }
        return None;
    };
    let trial_slot = slot_of(&trial.slot);
    // The loaders changed as `unarm` says, then the state written.
    let record = |state: &State, unarm: fn(&Path) -> Result<(), LoaderError>, mounter: &mut dyn Mounter| {
        let done = on_stick(mounter, &stick.node, root, || {
            unarm(root).map_err(|e| e.to_string())?;
            state.write(root).map_err(|e| e.to_string())
        });
        if let Err(e) = done {
            crate::warn!("platform: cannot record the trial on the stick: {e}");
        }
    };
    if trial.armed && trial_slot == Some(booted) {
        say_booted(&format!(
            ", on trial: it is committed once {} within {} s of boot, else the box goes back to slot {}",
            if trial.expect.is_empty() {
                "it is ready".to_owned()
            } else {
                trial.expect.join(", ") + " have come up"
            },
            trial.deadline,
            booted.other()
        ));
        if let Some(t) = state.trial.as_mut() {
            t.reached_init = true;
        }
        // One try: should the firmware not have written syslinux's boot-once label back,
        // the next reset must not boot this slot again.
        record(&state, loaders::clear_boot_once, mounter);
        return Some(Watch {
            slot: booted,
            version: trial.version,
            expect: trial.expect,
            deadline: Duration::from_secs(trial.deadline),
        });
    }
    let reason = if !trial.armed {
        "the upgrade was cut off before it armed the trial boot; the slot was never booted".to_owned()
    } else if trial.reached_init {
        "its init started but the trial ended before it was judged (a reset or power cut during the trial?)".to_owned()
    } else {
        "it never reached Ramkey's init (a kernel panic or hang before PID 1); the boot loader fell back".to_owned()
    };
    crate::error!(
        "platform: the trial of slot {} ({}) failed: {reason}; running slot {} ({})",
        trial.slot,
        trial.version,
        booted,
        version_of(root, booted)
    );
    state.end_trial(false, reason, now_unix());
    record(&state, |root| loaders::disarm(root).map(drop), mounter);
    None
}

/// Finishes a commit a power cut interrupted: the state says the last trial was committed
/// (it is written first), the loaders do not all boot that slot yet.
fn finish_commit(stick: &Stick, state: &State, mounter: &mut dyn Mounter) {
    let root = stick.mount.as_path();
    let Some(last) = state.last.as_ref().filter(|l| l.committed) else {
        return;
    };
    let Some(slot) = slot_of(&last.slot).filter(|&s| !loaders::is_committed(root, s)) else {
        return;
    };
    match on_stick(mounter, &stick.node, root, || {
        loaders::commit(root, slot).map_err(|e| e.to_string())
    }) {
        Ok(()) => crate::warn!(
            "platform: the commit of slot {slot} ({}) had been cut short (a power cut?); finished now: the \
             loaders boot slot {slot}",
            last.version
        ),
        Err(e) => crate::error!(
            "platform: cannot finish the commit of slot {slot} ({}): {e}",
            last.version
        ),
    }
}

/// Commits the trial `watch` (the stick's loaders boot its slot from now on).
pub fn commit(stick: &Stick, watch: &Watch, why: &str, mounter: &mut dyn Mounter) {
    let root = stick.mount.as_path();
    // The state first: a commit cut short after it is finished at the next boot.
    let done = on_stick(mounter, &stick.node, root, || -> Result<(), String> {
        let mut state = State::read(root).map_err(|e| e.to_string())?;
        state.end_trial(true, why.to_owned(), now_unix());
        state.write(root).map_err(|e| e.to_string())?;
        loaders::commit(root, watch.slot).map_err(|e| e.to_string())
    });
    match done {
        Ok(()) => crate::notice!("platform: slot {} ({}) committed: {why}", watch.slot, watch.version),
        Err(e) => crate::error!(
            "platform: slot {} ({}) could not be committed: {e}; the next boot runs slot {}",
            watch.slot,
            watch.version,
            watch.slot.other()
        ),
    }
}

/// Rejects the trial `watch`: records why, disarms the loaders; returns the reboot into
/// the committed slot.
pub fn reject(stick: &Stick, watch: &Watch, why: &str, mounter: &mut dyn Mounter) -> Request {
    let root = stick.mount.as_path();
    let back = watch.slot.other();
    crate::error!(
        "platform: slot {} ({}) rejected: {why}; rebooting into slot {back}",
        watch.slot,
        watch.version
    );
    let done = on_stick(mounter, &stick.node, root, || -> Result<(), String> {
        let mut state = State::read(root).map_err(|e| e.to_string())?;
        loaders::disarm(root).map_err(|e| e.to_string())?;
        state.end_trial(false, format!("rejected by its init: {why}"), now_unix());
        state.write(root).map_err(|e| e.to_string())
    });
    if let Err(e) = done {
        crate::error!("platform: cannot record the rejection on the stick: {e}");
    }
    Request {
        action: Action::Reboot,
        reason: format!("the trial of slot {} was rejected", watch.slot),
    }
}

/// A trial watched by PID 1's event loop.
#[derive(Debug)]
pub struct Running {
    /// What is judged.
    pub watch: Watch,
    /// Where the outcome is recorded.
    pub stick: Stick,
}

impl Judge for Running {
    fn judge(&mut self, statuses: Option<&[ServiceStatus]>, now: Duration) -> (bool, Option<Request>) {
        match self.watch.verdict(statuses, now) {
            Verdict::Wait => (false, None),
            Verdict::Commit(why) => {
                commit(&self.stick, &self.watch, &why, &mut KernelMounter);
                (true, None)
            }
            Verdict::Reject(why) => (true, Some(reject(&self.stick, &self.watch, &why, &mut KernelMounter))),
        }
    }
}

#[cfg(test)]
#[path = "trial_tests.rs"]
mod tests;
