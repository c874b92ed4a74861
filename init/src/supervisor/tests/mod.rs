//! Engine tests with the fake spawner, checker and clock: the test plays the event loop.

use std::time::Duration;

use ramkey_image::check::{Check, Probe};
use ramkey_image::service::{Backoff, RestartBudget, RestartPolicy, ServiceSpec};

use super::fake::{FakeChecker, FakeSpawner, ManualClock};
use super::{Exit, LoadProblem, State, Supervisor};
use crate::base::clock::Clock;

mod checks;
mod commands;
mod restarts;
mod shutdown;
mod start;

type Sup = Supervisor<FakeSpawner, FakeChecker, ManualClock>;

fn svc(name: &str, requires: &[&str], after: &[&str]) -> ServiceSpec {
    let mut s = ServiceSpec::new(name, vec![format!("/usr/bin/{name}")]);
    s.requires = requires.iter().map(|s| s.to_string()).collect();
    s.after = after.iter().map(|s| s.to_string()).collect();
    s.backoff = Backoff {
        initial_ms: 1000,
        max_ms: 4000,
    };
    s
}

fn tcp_probe(port: u16) -> Probe {
    Probe {
        check: Check::Tcp { port },
        interval_secs: 2,
        timeout_secs: 1,
        retries: 3,
    }
}

fn load(specs: Vec<ServiceSpec>) -> (Sup, ManualClock, Vec<LoadProblem>) {
    let clock = ManualClock::default();
    clock.set(Duration::from_secs(5));
    let (sup, problems) = Supervisor::new(specs, FakeSpawner::default(), FakeChecker::default(), clock.clone());
    (sup, clock, problems)
}

fn boot(specs: Vec<ServiceSpec>) -> (Sup, ManualClock) {
    let (mut sup, clock, _) = load(specs);
    sup.start_all();
    (sup, clock)
}

fn state(sup: &Sup, name: &str) -> State {
    sup.service_status(name).unwrap().state
}

fn reason(sup: &Sup, name: &str) -> String {
    sup.service_status(name).unwrap().reason
}

/// The latest main process of `name` exits with `code`.
fn exit(sup: &mut Sup, name: &str, code: i32) {
    let pid = sup.spawner().pid_of(name).unwrap();
    sup.on_exit(pid, Exit::Code(code));
}

/// Moves the clock to the next deadline and fires it; returns how far it moved.
fn next(sup: &mut Sup, clock: &ManualClock) -> Duration {
    let now = sup.clock().since_boot();
    let deadline = sup.next_deadline().expect("a deadline");
    clock.set(deadline.max(now));
    sup.on_timer();
    deadline.saturating_sub(now)
}

fn policy(mut s: ServiceSpec, restart: RestartPolicy) -> ServiceSpec {
    s.restart = restart;
    s
}

fn budget(mut s: ServiceSpec, max_restarts: u32, window_secs: u32) -> ServiceSpec {
    s.budget = RestartBudget {
        max_restarts,
        window_secs,
    };
    s
}
