//! `ramkeyctl`'s human output, SmartOS style: `svcs` columns, `svcs -x` explanations.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::supervisor::ServiceStatus;
use crate::supervisor::State;
use crate::supervisor::protocol::SystemStatus;

/// Turns "milliseconds since boot" into a wall-clock time of day, given the time since
/// boot and the wall clock now.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    /// Time since boot now.
    pub uptime: Duration,
    /// The wall clock now.
    pub now: SystemTime,
}

impl Times {
    /// `HH:MM:SS` (UTC) of a moment given in milliseconds since boot.
    pub fn clock(&self, since_ms: u64) -> String {
        let ago = self.uptime.saturating_sub(Duration::from_millis(since_ms));
        let at = self.now.checked_sub(ago).unwrap_or(self.now);
        let text = crate::base::clock::rfc3339(at);
        text.get(11..19).unwrap_or(&text).to_string()
    }
}

/// `STATE  SINCE  NAME`, one line per service.
pub fn svcs(services: &[ServiceStatus], times: &Times) -> String {
    let mut out = format!("{:<12} {:<9} {}\n", "STATE", "SINCE", "NAME");
    for s in services {
        let _ = writeln!(
            out,
            "{:<12} {:<9} {}",
            s.state.as_str(),
            times.clock(s.since_ms),
            s.name
        );
    }
    out
}

/// `svcs -x`: each service that is neither online nor disabled, why, and where its log is.
pub fn explain(services: &[ServiceStatus], times: &Times, log_dir: &Path) -> String {
    let mut out = String::new();
    for s in services
        .iter()
        .filter(|s| !matches!(s.state, State::Online | State::Disabled))
    {
        if !out.is_empty() {
            out.push('\n');
        }
        let pid = s.pid.map(|p| format!(", pid {p}")).unwrap_or_default();
        let _ = writeln!(out, "{} ({}{pid})", s.name, s.state);
        let _ = writeln!(out, " State: {} since {}", s.state, times.clock(s.since_ms));
        let _ = writeln!(out, "Reason: {}", s.reason);
        if s.restarts > 0 {
            let _ = writeln!(out, "  Runs: restarted {} times", s.restarts);
        }
        let _ = writeln!(out, "   Log: {}", log_dir.join(format!("{}.log", s.name)).display());
    }
    out
}

/// `ramkeyctl status`.
pub fn status(status: &SystemStatus) -> String {
    let info = &status.system;
    let mut out = String::new();
    let _ = writeln!(out, "platform:  {}", info.platform);
    let _ = writeln!(out, "uptime:    {}", uptime(status.uptime_ms));
    match &info.config_error {
        Some(e) => {
            let _ = writeln!(out, "config:    {} ({e})", info.config_source);
        }
        None => {
            let _ = writeln!(out, "config:    {}", info.config_source);
        }
    }
    let _ = writeln!(out, "pool:      {}", info.pool);
    if !info.ssh.is_empty() {
        let _ = writeln!(out, "ssh:       {}", info.ssh);
    }
    let counts: Vec<String> = status
        .by_state
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect();
    let _ = writeln!(out, "services:  {} ({})", status.services, counts.join(", "));
    if status.shutting_down {
        out.push_str("the system is shutting down\n");
    }
    for s in &status.attention {
        let _ = writeln!(out, "attention: {} is {}: {}", s.name, s.state, s.reason);
    }
    out
}

/// `1 d 2 h 3 min 4 s`, leaving out leading zero units.
pub fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    let parts = [
        (s / 86_400, "d"),
        (s / 3600 % 24, "h"),
        (s / 60 % 60, "min"),
        (s % 60, "s"),
    ];
    let first = parts.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    let words: Vec<String> = parts[first..].iter().map(|(n, u)| format!("{n} {u}")).collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::protocol::summary;

    fn svc(name: &str, state: State, reason: &str) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            state,
            since_ms: 2_000,
            reason: reason.into(),
            pid: None,
            restarts: 3,
            started_ms: None,
            history: Vec::new(),
        }
    }

    fn times() -> Times {
        Times {
            uptime: Duration::from_secs(12),
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(3600 + 12),
        }
    }

    #[test]
    fn svcs_columns_and_explanations() {
        let services = [
            svc("console-login", State::Online, "running"),
            svc(
                "crasher",
                State::Maintenance,
                "restarted 3 times in 60 s; last exit: status 3",
            ),
        ];
        let text = svcs(&services, &times());
        assert_eq!(
            text,
            "STATE        SINCE     NAME\nonline       01:00:02  console-login\nmaintenance  01:00:02  crasher\n"
        );
        let text = explain(&services, &times(), Path::new("/var/log/ramkey"));
        assert!(
            text.starts_with("crasher (maintenance)\n State: maintenance since 01:00:02\n"),
            "{text}"
        );
        assert!(
            text.contains("Reason: restarted 3 times in 60 s; last exit: status 3\n"),
            "{text}"
        );
        assert!(text.ends_with("   Log: /var/log/ramkey/crasher.log\n"), "{text}");
        assert!(!text.contains("console-login"));
    }

    #[test]
    fn status_and_uptime() {
        assert_eq!(uptime(0), "0 s");
        assert_eq!(uptime(3_723_000), "1 h 2 min 3 s");
        let services = [svc("a", State::Online, "ok"), svc("b", State::Offline, "waiting")];
        let mut s = summary(&services, 65_000, false);
        s.system.pool = "diskless: data is lost at power-off".into();
        let text = status(&s);
        assert!(text.contains("uptime:    1 min 5 s\n"), "{text}");
        assert!(text.contains("services:  2 (1 offline, 1 online)\n"), "{text}");
        assert!(text.contains("attention: b is offline: waiting\n"), "{text}");
    }
}
