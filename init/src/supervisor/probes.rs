//! Readiness and health checks in the engine: when to try, what a result means.
//!
//! A running service has one probe at a time: its readiness check until it passes, then its
//! health check. `exec` checks are child processes the engine spawns (the event loop reaps
//! them, like every child); `tcp` and `http` checks go to the [`Checker`], whose results come
//! back through [`Supervisor::on_check_result`]. Either way an attempt has a deadline, after
//! which it counts as failed (and an `exec` check is killed).
//!
//! Readiness: `retries` failures in a row stop the service, which is then restarted within
//! its budget (or put in maintenance with `restart = never`). Health: the first failure
//! makes the service `degraded`, `retries` in a row restart it (with `restart = never` it
//! stays degraded), and a success makes it `online` again.

use std::time::Duration;

use nix::sys::signal::Signal;
use ramkey_image::check::Check;
use ramkey_image::service::RestartPolicy;

use super::engine::{InFlight, Phase, Supervisor, Then};
use super::spawner::{CheckOutcome, CheckTicket, Checker, Launch, Spawner};
use crate::base::clock::Clock;

impl<S: Spawner, K: Checker, C: Clock> Supervisor<S, K, C> {
    /// The result of a `tcp` or `http` check the [`Checker`] ran. Results for a check that
    /// is no longer awaited (the service stopped, or it timed out) are ignored.
    pub fn on_check_result(&mut self, ticket: CheckTicket, outcome: CheckOutcome) {
        let found = self
            .svcs
            .iter()
            .position(|s| s.probe.in_flight.is_some_and(|f| f.ticket == ticket));
        if let Some(i) = found {
            self.check_done(i, outcome);
            self.settle();
        }
    }

    /// Starts a due check of service `i` and fails one past its deadline.
    pub(super) fn check_timers(&mut self, i: usize, now: Duration) {
        if !matches!(self.svcs[i].phase, Phase::Running { .. }) {
            return;
        }
        match self.svcs[i].probe.in_flight {
            Some(f) if f.deadline <= now => {
                if let Some(pid) = f.pid {
                    self.spawner.signal(pid, Signal::SIGKILL);
                }
                self.check_done(i, Err("no answer in time".to_string()));
            }
            None if self.svcs[i].probe.next_at.is_some_and(|t| t <= now) => self.start_check(i, now),
            _ => {}
        }
    }

    /// Forgets the check under way (the service stopped); an `exec` check is killed.
    pub(super) fn cancel_check(&mut self, i: usize) {
        let probe = &mut self.svcs[i].probe;
        probe.next_at = None;
        probe.failures = 0;
        if let Some(InFlight { pid: Some(pid), .. }) = probe.in_flight.take() {
            self.spawner.signal(pid, Signal::SIGKILL);
        }
    }

    fn start_check(&mut self, i: usize, now: Duration) {
        let Phase::Running { ready, .. } = self.svcs[i].phase else {
            return;
        };
        let spec = &self.graph.specs[i];
        let Some(probe) = (if ready { &spec.health } else { &spec.readiness }) else {
            self.svcs[i].probe.next_at = None;
            return;
        };
        self.next_ticket += 1;
        let ticket = CheckTicket(self.next_ticket);
        let timeout = Duration::from_secs(u64::from(probe.timeout_secs));
        let mut flight = InFlight {
            ticket,
            deadline: now + timeout,
            pid: None,
        };
        let mut failed = None;
        match &probe.check {
            Check::Exec { argv } => match self.spawner.spawn(&Launch::check(spec, argv)) {
                Ok(pid) => flight.pid = Some(pid),
                Err(e) => failed = Some(format!("could not run the check: {e}")),
            },
            check => self.checker.start(ticket, &spec.name, check, timeout),
        }
        let state = &mut self.svcs[i].probe;
        state.next_at = None;
        state.in_flight = Some(flight);
        if let Some(why) = failed {
            self.check_done(i, Err(why));
        }
    }

    /// One attempt of service `i`'s current check finished.
    pub(super) fn check_done(&mut self, i: usize, outcome: CheckOutcome) {
        let now = self.now();
        self.svcs[i].probe.in_flight = None;
        let Phase::Running {
            pid,
            ready,
            degraded,
            started,
        } = self.svcs[i].phase
        else {
            return;
        };
        let spec = &self.graph.specs[i];
        let Some(probe) = (if ready { &spec.health } else { &spec.readiness }) else {
            return;
        };
        let (retries, policy) = (probe.retries, spec.restart);
        let interval = |p: &ramkey_image::check::Probe| now + Duration::from_secs(u64::from(p.interval_secs));
        let mut next_at = Some(interval(probe));
        let running = |ready, degraded| Phase::Running {
            pid,
            ready,
            degraded,
            started,
        };
        let failures = match outcome {
            Ok(()) => 0,
            Err(_) => self.svcs[i].probe.failures + 1,
        };
        self.svcs[i].probe.failures = failures;
        match (ready, outcome) {
            (false, Ok(())) => {
                next_at = spec.health.as_ref().map(interval);
                self.enter(i, running(true, false), "ready: the readiness check passed");
            }
            (false, Err(e)) if failures >= retries => {
                let why = format!("readiness check failed {failures} times: {e}");
                self.stop(i, Then::Recover(why.clone()), why);
                return;
            }
            (false, Err(e)) => {
                let why = format!("readiness check failed ({failures} of {retries}): {e}");
                self.enter(i, running(false, false), why);
            }
            (true, Ok(())) if degraded => self.enter(i, running(true, false), "the health check passes again"),
            (true, Ok(())) => {}
            (true, Err(e)) if failures >= retries && policy != RestartPolicy::Never => {
                let why = format!("health check failed {failures} times: {e}");
                self.stop(i, Then::Recover(why.clone()), why);
                return;
            }
            (true, Err(e)) if failures >= retries => {
                let why = format!("health check failed {failures} times: {e}; not restarted (restart = never)");
                self.enter(i, running(true, true), why);
            }
            (true, Err(e)) => {
                let why = format!("health check failed ({failures} of {retries}): {e}");
                self.enter(i, running(true, true), why);
            }
        }
        self.svcs[i].probe.next_at = next_at;
    }
}
