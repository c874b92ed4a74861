//! Service states as `svcs` shows them, the reason kept for each transition, and exits.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The state of a service (SmartOS SMF's, minus `uninitialized` and `legacy_run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Turned off by the administrator (or never turned on).
    Disabled,
    /// Enabled but not running: waiting for dependencies, or ran and ended.
    Offline,
    /// Spawned and waiting for its readiness check, or waiting out a restart delay.
    Starting,
    /// Running and ready.
    Online,
    /// Running, but its health check fails.
    Degraded,
    /// Failed in a way only the administrator can fix (`svcadm clear`).
    Maintenance,
    /// Asked to stop; waiting for it to exit.
    Stopping,
}

impl State {
    /// Running and ready: what a service that `requires` this one waits for.
    pub fn is_up(self) -> bool {
        matches!(self, State::Online | State::Degraded)
    }

    /// The lowercase name, as `svcs` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Disabled => "disabled",
            State::Offline => "offline",
            State::Starting => "starting",
            State::Online => "online",
            State::Degraded => "degraded",
            State::Maintenance => "maintenance",
            State::Stopping => "stopping",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change of state, with when (milliseconds since boot) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    /// The state entered.
    pub state: State,
    /// Milliseconds since the kernel started.
    pub at_ms: u64,
    /// Why, in words an operator reads (`"restarted 5 times in 60 s; last exit: status 1"`).
    pub reason: String,
}

/// How many transitions each service remembers.
pub const HISTORY: usize = 16;

/// What `svcs` shows for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceStatus {
    /// The service name.
    pub name: String,
    /// The current state.
    pub state: State,
    /// When it entered the state, in milliseconds since boot.
    pub since_ms: u64,
    /// Why it is in this state.
    pub reason: String,
    /// The main process, while there is one.
    pub pid: Option<i32>,
    /// Restarts since boot (or since the last `clear`).
    pub restarts: u32,
    /// When its running process started, in milliseconds since boot (`None` while none
    /// runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// The last transitions, oldest first (at most [`HISTORY`]).
    pub history: Vec<Transition>,
}

/// Milliseconds in a duration, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub use crate::sys::exit::Exit;

/// Seconds with up to 3 decimals and no trailing zeros: `1`, `0.5`, `2.25`.
pub fn secs(d: Duration) -> String {
    let ms = millis(d);
    if ms.is_multiple_of(1000) {
        format!("{}", ms / 1000)
    } else {
        let text = format!("{}.{:03}", ms / 1000, ms % 1000);
        text.trim_end_matches('0').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_drop_trailing_zeros() {
        assert_eq!(secs(Duration::from_secs(4)), "4");
        assert_eq!(secs(Duration::from_millis(500)), "0.5");
        assert_eq!(secs(Duration::from_millis(2250)), "2.25");
    }

    #[test]
    fn states_serialize_lowercase() {
        assert_eq!(serde_json::to_string(&State::Maintenance).unwrap(), "\"maintenance\"");
        assert!(State::Degraded.is_up());
        assert!(!State::Starting.is_up());
    }
}
