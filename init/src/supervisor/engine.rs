//! The engine: a state machine over the services, driven by the event loop's events
//! (boot, exits, timers, check results, commands). It never blocks and never sleeps: the
//! loop polls with [`Supervisor::next_deadline`] as its timeout.
//!
//! Each event ends with `settle` (`settle.rs`); the checks are in `probes.rs`, the
//! administrator's commands and shutdown in `control.rs`.

use std::collections::VecDeque;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use ramkey_image::service::{RestartPolicy, ServiceSpec};

use super::backoff::{self, RestartWindow};
use super::graph::{Graph, LoadProblem};
pub(super) use super::phase::{InFlight, Phase, Probing, Svc, Then};
use super::spawner::{Checker, Launch, Spawner};
use super::state::{Exit, HISTORY, Transition, millis, secs};
use crate::base::clock::Clock;

/// The service supervisor. `S` starts processes, `K` runs network checks, `C` tells time.
#[derive(Debug)]
pub struct Supervisor<S: Spawner, K: Checker, C: Clock> {
    pub(super) graph: Graph,
    pub(super) svcs: Vec<Svc>,
    pub(super) spawner: S,
    pub(super) checker: K,
    pub(super) clock: C,
    pub(super) booted: bool,
    pub(super) shutting_down: bool,
    pub(super) next_ticket: u64,
    /// Services that left `online`/`degraded` since the last settle.
    pub(super) went_down: Vec<usize>,
}

impl<S: Spawner, K: Checker, C: Clock> Supervisor<S, K, C> {
    /// Loads the services; nothing runs until [`Supervisor::start_all`]. Broken services
    /// (see [`LoadProblem`]) are in maintenance with the problem as their reason.
    pub fn new(specs: Vec<ServiceSpec>, spawner: S, checker: K, clock: C) -> (Self, Vec<LoadProblem>) {
        let (graph, problems) = Graph::load(specs);
        let now = clock.since_boot();
        let svcs = graph
            .broken
            .iter()
            .map(|broken| {
                let (phase, reason) = match broken {
                    Some(why) => (Phase::Maintenance, why.clone()),
                    None => (Phase::Waiting, "waiting for boot".to_string()),
                };
                let state = phase.state();
                Svc {
                    phase,
                    state,
                    since: now,
                    history: VecDeque::from([Transition {
                        state,
                        at_ms: millis(now),
                        reason: reason.clone(),
                    }]),
                    reason,
                    restarts: 0,
                    failures: 0,
                    window: RestartWindow::default(),
                    probe: Probing::default(),
                }
            })
            .collect();
        let sup = Supervisor {
            graph,
            svcs,
            spawner,
            checker,
            clock,
            booted: false,
            shutting_down: false,
            next_ticket: 0,
            went_down: Vec::new(),
        };
        (sup, problems)
    }

    /// Boot: starts every enabled service whose dependencies are ready, in parallel.
    pub fn start_all(&mut self) {
        self.booted = true;
        self.settle();
    }

    /// A child was reaped: a service's main process or an `exec` check. Unknown pids
    /// (orphans reparented to PID 1) are ignored.
    pub fn on_exit(&mut self, pid: Pid, exit: Exit) {
        if let Some(i) = self
            .svcs
            .iter()
            .position(|s| s.probe.in_flight.is_some_and(|f| f.pid == Some(pid)))
        {
            let outcome = if exit.success() {
                Ok(())
            } else {
                Err(format!("exited with {exit}"))
            };
            self.check_done(i, outcome);
            self.settle();
            return;
        }
        let Some(i) = self.svcs.iter().position(|s| s.phase.pid() == Some(pid)) else {
            return;
        };
        let now = self.now();
        let spec = &self.graph.specs[i];
        let (name, policy, window) = (spec.name.clone(), spec.restart, spec.budget.window_secs);
        self.spawner.kill_rest(&name);
        self.cancel_check(i);
        match self.svcs[i].phase.clone() {
            Phase::Running { started, .. } => {
                let restart = match policy {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => !exit.success(),
                    RestartPolicy::Never => false,
                };
                if self.shutting_down {
                    self.enter(i, Phase::Exited, format!("exited with {exit} during shutdown"));
                } else if restart {
                    if now.saturating_sub(started) >= Duration::from_secs(u64::from(window)) {
                        // It ran a whole budget window: the next restart starts the
                        // backoff over.
                        self.svcs[i].failures = 0;
                    }
                    self.restart_later(i, format!("last exit: {exit}"));
                } else if exit.success() {
                    let why = format!("exited with {exit}; not restarted (restart = {})", policy_name(policy));
                    self.enter(i, Phase::Exited, why);
                } else {
                    self.enter(i, Phase::Maintenance, format!("exited with {exit}; restart = never"));
                }
            }
            Phase::Stopping { then, .. } => match then {
                Then::Restart => self.enter(i, Phase::Waiting, "restarting (requested by the administrator)"),
                Then::Recover(why) if policy == RestartPolicy::Never => self.enter(i, Phase::Maintenance, why),
                Then::Recover(why) => self.restart_later(i, why),
                Then::Disable => self.enter(i, Phase::Disabled, "disabled by the administrator"),
                Then::Wait => self.enter(i, Phase::Waiting, "waiting for dependencies"),
                Then::Shutdown => self.enter(i, Phase::Exited, format!("stopped for shutdown ({exit})")),
            },
            _ => {}
        }
        self.settle();
    }

    /// Call when [`Supervisor::next_deadline`] has passed: restart delays, stop timeouts
    /// (SIGKILL), checks due and checks that took too long.
    pub fn on_timer(&mut self) {
        let now = self.now();
        for i in 0..self.svcs.len() {
            match self.svcs[i].phase.clone() {
                Phase::Backoff { until } if until <= now => {
                    self.enter(i, Phase::Waiting, "restart delay over");
                }
                Phase::Stopping {
                    pid,
                    kill_at: Some(at),
                    then,
                } if at <= now => {
                    let spec = &self.graph.specs[i];
                    let why = format!("did not stop within {} s; sent SIGKILL", spec.stop_timeout_secs);
                    let name = spec.name.clone();
                    self.spawner.signal(pid, Signal::SIGKILL);
                    self.spawner.kill_rest(&name);
                    let phase = Phase::Stopping {
                        pid,
                        kill_at: None,
                        then,
                    };
                    self.enter(i, phase, why);
                }
                _ => {}
            }
            self.check_timers(i, now);
        }
        self.settle();
    }

    /// When [`Supervisor::on_timer`] must next be called; `None` when nothing is timed.
    pub fn next_deadline(&self) -> Option<Duration> {
        let mut next: Option<Duration> = None;
        let mut consider = |t: Option<Duration>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for svc in &self.svcs {
            match svc.phase {
                Phase::Backoff { until } => consider(Some(until)),
                Phase::Stopping { kill_at, .. } => consider(kill_at),
                Phase::Running { .. } => match svc.probe.in_flight {
                    Some(f) => consider(Some(f.deadline)),
                    None => consider(svc.probe.next_at),
                },
                _ => {}
            }
        }
        next
    }

    /// The spawner, e.g. to collect the output pipes of new processes.
    pub fn spawner_mut(&mut self) -> &mut S {
        &mut self.spawner
    }

    #[cfg(test)]
    /// The spawner, read-only.
    pub fn spawner(&self) -> &S {
        &self.spawner
    }

    /// The checker, e.g. to collect finished check results.
    pub fn checker_mut(&mut self) -> &mut K {
        &mut self.checker
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    pub(super) fn now(&self) -> Duration {
        self.clock.since_boot()
    }

    /// Moves service `i` to `phase`, keeping the transition and its reason.
    pub(super) fn enter(&mut self, i: usize, phase: Phase, reason: impl Into<String>) {
        let reason = reason.into();
        let now = self.now();
        let state = phase.state();
        let svc = &mut self.svcs[i];
        let was_up = svc.state.is_up();
        svc.phase = phase;
        if state == svc.state && reason == svc.reason {
            return;
        }
        if state != svc.state {
            svc.since = now;
        }
        svc.state = state;
        svc.reason.clone_from(&reason);
        if svc.history.len() == HISTORY {
            svc.history.pop_front();
        }
        svc.history.push_back(Transition {
            state,
            at_ms: millis(now),
            reason,
        });
        if was_up && !state.is_up() {
            self.went_down.push(i);
        }
    }

    /// Starts the main process of service `i`.
    pub(super) fn launch(&mut self, i: usize) {
        let now = self.now();
        let spec = &self.graph.specs[i];
        match self.spawner.spawn(&Launch::service(spec)) {
            Ok(pid) => {
                let ready = spec.readiness.is_none();
                let (probe, reason) = if ready {
                    (spec.health.as_ref(), format!("running as pid {pid}"))
                } else {
                    let why = format!("started as pid {pid}; waiting for the readiness check");
                    (spec.readiness.as_ref(), why)
                };
                // The first readiness attempt comes soon, health checks every interval.
                let first = probe.map(|p| {
                    let interval = Duration::from_secs(u64::from(p.interval_secs));
                    now + if ready { interval } else { interval.min(FIRST_CHECK) }
                });
                self.svcs[i].probe = Probing {
                    next_at: first,
                    ..Default::default()
                };
                let phase = Phase::Running {
                    pid,
                    ready,
                    degraded: false,
                    started: now,
                };
                self.enter(i, phase, reason);
            }
            Err(e) => {
                let why = format!("could not start: {e}");
                if spec.restart == RestartPolicy::Never {
                    self.enter(i, Phase::Maintenance, why);
                } else {
                    self.restart_later(i, why);
                }
            }
        }
    }

    /// Schedules a restart with backoff, or puts the service in maintenance when its restart
    /// budget is spent. `last` says what happened (`"last exit: status 1"`).
    pub(super) fn restart_later(&mut self, i: usize, last: String) {
        let now = self.now();
        let spec = &self.graph.specs[i];
        let (budget, backoff) = (spec.budget, spec.backoff);
        let svc = &mut self.svcs[i];
        if !svc.window.try_restart(now, &budget) {
            let why = format!(
                "restarted {} times in {} s; {last}",
                budget.max_restarts, budget.window_secs
            );
            self.enter(i, Phase::Maintenance, why);
            return;
        }
        svc.failures += 1;
        svc.restarts += 1;
        let delay = backoff::delay(&backoff, svc.failures);
        let why = format!("restarting in {} s ({last})", secs(delay));
        self.enter(i, Phase::Backoff { until: now + delay }, why);
    }

    /// Sends the stop signal to a running service; SIGKILL follows after its stop timeout.
    pub(super) fn stop(&mut self, i: usize, then: Then, reason: String) {
        match self.svcs[i].phase.clone() {
            Phase::Running { pid, .. } => {
                self.cancel_check(i);
                let spec = &self.graph.specs[i];
                let signal = Signal::try_from(spec.stop_signal.number()).unwrap_or(Signal::SIGTERM);
                let kill_at = self.now() + Duration::from_secs(u64::from(spec.stop_timeout_secs));
                self.spawner.signal(pid, signal);
                let phase = Phase::Stopping {
                    pid,
                    kill_at: Some(kill_at),
                    then,
                };
                self.enter(i, phase, reason);
            }
            Phase::Stopping { pid, kill_at, .. } => {
                self.svcs[i].phase = Phase::Stopping { pid, kill_at, then };
            }
            _ => {}
        }
    }
}

/// The longest wait before the first readiness or health attempt.
const FIRST_CHECK: Duration = Duration::from_secs(1);

/// The policy as the definitions spell it.
pub(super) fn policy_name(policy: RestartPolicy) -> &'static str {
    match policy {
        RestartPolicy::Always => "always",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::Never => "never",
    }
}
