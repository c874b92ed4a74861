//! Recording fakes for the engine's effects, and a clock the test sets: the engine's tests
//! (and the event loop's) run without processes, sockets or waiting.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use ramkey_image::check::Check;

use super::spawner::{CheckTicket, Checker, Launch, Purpose, SpawnError, Spawner};
use crate::base::clock::Clock;

/// A clock that only moves when told; clones share the time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Rc<Cell<Duration>>,
}

impl ManualClock {
    /// Moves the time forward.
    pub fn advance(&self, by: Duration) {
        self.now.set(self.now.get() + by);
    }

    /// Sets the time.
    pub fn set(&self, to: Duration) {
        self.now.set(to);
    }
}

impl Clock for ManualClock {
    fn since_boot(&self) -> Duration {
        self.now.get()
    }
}

/// One process the fake started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spawned {
    /// The pid it was given.
    pub pid: Pid,
    /// Its service.
    pub service: String,
    /// Main process or check.
    pub purpose: Purpose,
    /// Its argv.
    pub argv: Vec<String>,
}

/// A spawner that records what it is asked; pids count up from 100.
#[derive(Debug, Default)]
pub struct FakeSpawner {
    /// Every spawn, in order.
    pub spawned: Vec<Spawned>,
    /// Every signal sent, in order.
    pub signals: Vec<(Pid, Signal)>,
    /// Every `kill_rest`, in order.
    pub killed_rest: Vec<String>,
    /// Services whose spawn fails (as if `argv[0]` did not exist).
    pub failing: BTreeSet<String>,
    next_pid: i32,
}

impl FakeSpawner {
    /// The pid of the latest main process of `service`.
    pub fn pid_of(&self, service: &str) -> Option<Pid> {
        self.spawned
            .iter()
            .rev()
            .find(|s| s.service == service && s.purpose == Purpose::Service)
            .map(|s| s.pid)
    }

    /// How many main processes of `service` were started.
    pub fn starts(&self, service: &str) -> usize {
        self.spawned
            .iter()
            .filter(|s| s.service == service && s.purpose == Purpose::Service)
            .count()
    }

    /// The services started, in order (main processes only).
    pub fn started_services(&self) -> Vec<&str> {
        self.spawned
            .iter()
            .filter(|s| s.purpose == Purpose::Service)
            .map(|s| s.service.as_str())
            .collect()
    }

    /// The signals sent to `pid`.
    pub fn signals_to(&self, pid: Pid) -> Vec<Signal> {
        self.signals
            .iter()
            .filter(|(p, _)| *p == pid)
            .map(|(_, s)| *s)
            .collect()
    }
}

impl Spawner for FakeSpawner {
    fn spawn(&mut self, launch: &Launch<'_>) -> Result<Pid, SpawnError> {
        if self.failing.contains(launch.service) && launch.purpose == Purpose::Service {
            return Err(SpawnError::Exec {
                program: launch.argv[0].clone(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        self.next_pid += 1;
        let pid = Pid::from_raw(100 + self.next_pid);
        self.spawned.push(Spawned {
            pid,
            service: launch.service.to_string(),
            purpose: launch.purpose,
            argv: launch.argv.to_vec(),
        });
        Ok(pid)
    }

    fn signal(&mut self, pid: Pid, signal: Signal) {
        self.signals.push((pid, signal));
    }

    fn kill_rest(&mut self, service: &str) {
        self.killed_rest.push(service.to_string());
    }
}

/// A checker that records the checks it is asked to start; the test answers them.
#[derive(Debug, Default)]
pub struct FakeChecker {
    /// Every check started: ticket, service, check.
    pub started: Vec<(CheckTicket, String, Check)>,
}

impl FakeChecker {
    /// The ticket of the latest check started for `service`.
    pub fn last_ticket(&self, service: &str) -> Option<CheckTicket> {
        self.started
            .iter()
            .rev()
            .find(|(_, s, _)| s == service)
            .map(|(t, _, _)| *t)
    }
}

impl Checker for FakeChecker {
    fn start(&mut self, ticket: CheckTicket, service: &str, check: &Check, _timeout: Duration) {
        self.started.push((ticket, service.to_string(), check.clone()));
    }
}
