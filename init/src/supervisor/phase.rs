//! A service's life inside the engine: its phase (what [`State`] it shows is derived from
//! it), its checks under way, its restart history.

use std::collections::VecDeque;
use std::time::Duration;

use nix::unistd::Pid;

use super::backoff::RestartWindow;
use super::spawner::CheckTicket;
use super::state::{State, Transition};

/// What to do once a stopping service has exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Then {
    /// Start it again at once (`svcadm restart`).
    Restart,
    /// It failed (a check): restart it within its budget, with backoff.
    Recover(String),
    /// `svcadm disable`.
    Disable,
    /// A service it requires went down: wait for it.
    Wait,
    /// The system is going down.
    Shutdown,
}

/// Where a service is in its life; [`State`] is what it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Phase {
    Disabled,
    /// Enabled, not running, waiting for its dependencies.
    Waiting,
    /// Waiting out the restart delay.
    Backoff {
        until: Duration,
    },
    Running {
        pid: Pid,
        ready: bool,
        degraded: bool,
        started: Duration,
    },
    Stopping {
        pid: Pid,
        kill_at: Option<Duration>,
        then: Then,
    },
    /// Ran and ended without a restart.
    Exited,
    Maintenance,
}

impl Phase {
    pub(super) fn state(&self) -> State {
        match self {
            Phase::Disabled => State::Disabled,
            Phase::Waiting | Phase::Exited => State::Offline,
            Phase::Backoff { .. } | Phase::Running { ready: false, .. } => State::Starting,
            Phase::Running { degraded: false, .. } => State::Online,
            Phase::Running { .. } => State::Degraded,
            Phase::Stopping { .. } => State::Stopping,
            Phase::Maintenance => State::Maintenance,
        }
    }

    pub(super) fn pid(&self) -> Option<Pid> {
        match self {
            Phase::Running { pid, .. } | Phase::Stopping { pid, .. } => Some(*pid),
            _ => None,
        }
    }
}

/// A check attempt under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct InFlight {
    pub(super) ticket: CheckTicket,
    pub(super) deadline: Duration,
    /// The process of an `exec` check.
    pub(super) pid: Option<Pid>,
}

/// The readiness or health check of a running service.
#[derive(Debug, Clone, Default)]
pub(super) struct Probing {
    pub(super) next_at: Option<Duration>,
    pub(super) in_flight: Option<InFlight>,
    /// Consecutive failures.
    pub(super) failures: u32,
}

/// One service at run time.
#[derive(Debug)]
pub(super) struct Svc {
    pub(super) phase: Phase,
    pub(super) state: State,
    pub(super) since: Duration,
    pub(super) reason: String,
    pub(super) history: VecDeque<Transition>,
    pub(super) restarts: u32,
    /// Consecutive failed runs, for the backoff.
    pub(super) failures: u32,
    pub(super) window: RestartWindow,
    pub(super) probe: Probing,
}
