//! Readiness and health checks: network checks through the checker, exec checks as
//! processes, timeouts, degraded and restarts.

use nix::sys::signal::Signal;

use super::*;
use crate::supervisor::spawner::Purpose;

fn with_health(mut s: ServiceSpec, probe: Probe) -> ServiceSpec {
    s.health = Some(probe);
    s
}

/// Fires the next check of `name` and answers it.
fn answer(sup: &mut Sup, clock: &ManualClock, name: &str, outcome: Result<(), &str>) {
    let before = sup.checker_mut().started.len();
    next(sup, clock);
    assert_eq!(
        sup.checker_mut().started.len(),
        before + 1,
        "a check should have started"
    );
    let ticket = sup.checker_mut().last_ticket(name).unwrap();
    sup.on_check_result(ticket, outcome.map_err(str::to_string));
}

#[test]
fn health_failures_degrade_then_restart() {
    let (mut sup, clock) = boot(vec![with_health(svc("web", &[], &[]), tcp_probe(80))]);
    let pid = sup.spawner().pid_of("web").unwrap();
    // Health checks come every interval (2 s).
    assert_eq!(sup.next_deadline(), Some(Duration::from_secs(7)));
    answer(&mut sup, &clock, "web", Ok(()));
    assert_eq!(state(&sup, "web"), State::Online);
    answer(&mut sup, &clock, "web", Err("connection refused"));
    assert_eq!(state(&sup, "web"), State::Degraded);
    assert_eq!(reason(&sup, "web"), "health check failed (1 of 3): connection refused");
    answer(&mut sup, &clock, "web", Ok(()));
    assert_eq!(state(&sup, "web"), State::Online);
    assert_eq!(reason(&sup, "web"), "the health check passes again");
    for _ in 0..3 {
        answer(&mut sup, &clock, "web", Err("connection refused"));
    }
    assert_eq!(state(&sup, "web"), State::Stopping);
    assert_eq!(reason(&sup, "web"), "health check failed 3 times: connection refused");
    assert_eq!(sup.spawner().signals_to(pid), [Signal::SIGTERM]);
    sup.on_exit(pid, Exit::Signal(15));
    assert_eq!(
        reason(&sup, "web"),
        "restarting in 1 s (health check failed 3 times: connection refused)"
    );
    next(&mut sup, &clock);
    assert_eq!(sup.spawner().starts("web"), 2);
    assert_eq!(state(&sup, "web"), State::Online);
}

#[test]
fn with_restart_never_a_failing_service_stays_degraded() {
    let spec = policy(with_health(svc("web", &[], &[]), tcp_probe(80)), RestartPolicy::Never);
    let (mut sup, clock) = boot(vec![spec, svc("app", &["web"], &[])]);
    for _ in 0..4 {
        answer(&mut sup, &clock, "web", Err("timed out"));
    }
    assert_eq!(state(&sup, "web"), State::Degraded);
    assert_eq!(
        reason(&sup, "web"),
        "health check failed 4 times: timed out; not restarted (restart = never)"
    );
    // Degraded still counts as up for what requires it.
    assert_eq!(state(&sup, "app"), State::Online);
    assert!(sup.spawner().signals.is_empty());
}

#[test]
fn readiness_failures_restart_the_service() {
    let mut spec = svc("db", &[], &[]);
    spec.readiness = Some(tcp_probe(5432));
    let (mut sup, clock) = boot(vec![spec]);
    answer(&mut sup, &clock, "db", Err("refused"));
    assert_eq!(state(&sup, "db"), State::Starting);
    assert_eq!(reason(&sup, "db"), "readiness check failed (1 of 3): refused");
    answer(&mut sup, &clock, "db", Err("refused"));
    answer(&mut sup, &clock, "db", Err("refused"));
    assert_eq!(state(&sup, "db"), State::Stopping);
    assert_eq!(reason(&sup, "db"), "readiness check failed 3 times: refused");
}

#[test]
fn exec_checks_are_processes_and_are_killed_at_their_timeout() {
    let mut spec = svc("app", &[], &[]);
    let probe = Probe {
        check: Check::Exec {
            argv: vec!["/usr/bin/app-ready".into()],
        },
        interval_secs: 5,
        timeout_secs: 2,
        retries: 2,
    };
    spec.readiness = Some(probe);
    let (mut sup, clock) = boot(vec![spec]);
    next(&mut sup, &clock);
    let check = sup.spawner().spawned.last().unwrap().clone();
    assert_eq!(check.purpose, Purpose::Check);
    assert_eq!(check.argv, ["/usr/bin/app-ready"]);
    // It hangs: killed after 2 s and counted as a failure.
    assert_eq!(next(&mut sup, &clock), Duration::from_secs(2));
    assert_eq!(sup.spawner().signals_to(check.pid), [Signal::SIGKILL]);
    assert_eq!(
        reason(&sup, "app"),
        "readiness check failed (1 of 2): no answer in time"
    );
    // Its late exit is ignored; the next attempt exits 0.
    sup.on_exit(check.pid, Exit::Signal(9));
    assert_eq!(next(&mut sup, &clock), Duration::from_secs(5));
    let second = sup.spawner().spawned.last().unwrap().pid;
    sup.on_exit(second, Exit::Code(0));
    assert_eq!(state(&sup, "app"), State::Online);
    // A stale network result is ignored too.
    sup.on_check_result(crate::supervisor::spawner::CheckTicket(999), Err("late".into()));
    assert_eq!(state(&sup, "app"), State::Online);
}
