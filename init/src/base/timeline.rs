//! The boot timeline: each top-level step's start and duration, printed when boot is done.

use std::time::Duration;

use crate::base::clock::Clock;
use crate::base::log::secs3;

/// One finished top-level boot step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Short step name, e.g. `early-mounts`.
    pub name: &'static str,
    /// When it started, since kernel start.
    pub start: Duration,
    /// How long it took.
    pub duration: Duration,
}

/// Records boot steps against a clock.
#[derive(Debug)]
pub struct Timeline {
    /// When PID 1 started, since kernel start.
    pub init_start: Duration,
    /// Steps in the order they ran.
    pub steps: Vec<Step>,
}

impl Timeline {
    /// Starts a timeline at `init_start` (the kernel-to-init time).
    pub fn new(init_start: Duration) -> Self {
        Timeline {
            init_start,
            steps: Vec::new(),
        }
    }

    /// The line printed as soon as PID 1 runs.
    pub fn started_line(&self) -> String {
        format!("init started {} s after kernel start", secs3(self.init_start))
    }

    /// Runs `f` as step `name`, logging its start and duration.
    pub fn step<T>(&mut self, clock: &dyn Clock, name: &'static str, f: impl FnOnce() -> T) -> T {
        let start = clock.since_boot();
        crate::info!("step {name}: start");
        let out = f();
        let duration = clock.since_boot().saturating_sub(start);
        crate::info!("step {name}: done in {} ms", duration.as_millis());
        self.steps.push(Step { name, start, duration });
        out
    }

    /// One `timeline step=...` line per step (without the `ramkey: ` prefix).
    pub fn step_lines(&self) -> Vec<String> {
        self.steps
            .iter()
            .map(|s| {
                format!(
                    "timeline step={} start={} duration_ms={}",
                    s.name,
                    secs3(s.start),
                    s.duration.as_millis()
                )
            })
            .collect()
    }

    /// The final `ready in ...` line for a boot finished at `now`.
    pub fn ready_line(&self, now: Duration) -> String {
        format!(
            "ready in {} s (kernel {} s, init {} s)",
            secs3(now),
            secs3(self.init_start),
            secs3(now.saturating_sub(self.init_start))
        )
    }

    /// Logs the step lines (also done before recovery mode).
    pub fn log_steps(&self) {
        for line in self.step_lines() {
            crate::notice!("{line}");
        }
    }

    /// Logs the step lines and then the ready line.
    pub fn log_ready(&self, now: Duration) {
        self.log_steps();
        crate::notice!("{}", self.ready_line(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::FakeClock;

    #[test]
    fn steps_and_ready_lines() {
        let clock = FakeClock::new(Duration::from_millis(1500), Duration::from_millis(25));
        let mut t = Timeline::new(Duration::from_millis(1234));
        assert_eq!(t.started_line(), "init started 1.234 s after kernel start");
        let v = t.step(&clock, "early-mounts", || 7);
        assert_eq!(v, 7);
        t.step(&clock, "cmdline", || ());
        assert_eq!(
            t.step_lines(),
            vec![
                "timeline step=early-mounts start=1.500 duration_ms=25",
                "timeline step=cmdline start=1.550 duration_ms=25",
            ]
        );
        assert_eq!(
            t.ready_line(Duration::from_millis(2000)),
            "ready in 2.000 s (kernel 1.234 s, init 0.766 s)"
        );
    }
}
