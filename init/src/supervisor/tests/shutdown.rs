//! Shutdown: reverse dependency order, parallel siblings, SIGKILL after the stop timeout.

use nix::sys::signal::Signal;

use super::*;

fn signalled(sup: &Sup) -> Vec<(String, Signal)> {
    let spawned = &sup.spawner().spawned;
    sup.spawner()
        .signals
        .iter()
        .map(|(pid, sig)| {
            let name = spawned.iter().find(|s| s.pid == *pid).unwrap().service.clone();
            (name, *sig)
        })
        .collect()
}

#[test]
fn stops_in_reverse_dependency_order_with_siblings_in_parallel() {
    let mut db = svc("db", &[], &[]);
    db.stop_timeout_secs = 10;
    let specs = vec![
        db,
        svc("cache", &[], &[]),
        svc("web", &["db"], &["cache"]),
        svc("worker", &["web"], &[]),
        svc("ntp", &[], &[]),
    ];
    let (mut sup, clock) = boot(specs);
    assert_eq!(sup.status().iter().filter(|s| s.state == State::Online).count(), 5);
    sup.begin_shutdown();
    let term = |names: &[&str]| {
        names
            .iter()
            .map(|n| (n.to_string(), Signal::SIGTERM))
            .collect::<Vec<_>>()
    };
    // Nothing depends on worker or ntp: both at once.
    assert_eq!(signalled(&sup), term(&["worker", "ntp"]));
    assert!(!sup.shutdown_done());
    exit(&mut sup, "ntp", 0);
    assert_eq!(state(&sup, "ntp"), State::Offline);
    exit(&mut sup, "worker", 0);
    assert_eq!(signalled(&sup), term(&["worker", "ntp", "web"]));
    exit(&mut sup, "web", 0);
    // db and cache no longer have anyone running after them: together.
    assert_eq!(signalled(&sup), term(&["worker", "ntp", "web", "db", "cache"]));
    exit(&mut sup, "cache", 0);
    // db ignores SIGTERM: SIGKILL after its stop timeout, not before.
    clock.advance(Duration::from_secs(9));
    sup.on_timer();
    assert_eq!(signalled(&sup).len(), 5);
    assert_eq!(sup.next_deadline(), Some(Duration::from_secs(15)));
    assert_eq!(next(&mut sup, &clock), Duration::from_secs(1));
    assert_eq!(signalled(&sup).last().unwrap(), &("db".to_string(), Signal::SIGKILL));
    assert_eq!(reason(&sup, "db"), "did not stop within 10 s; sent SIGKILL");
    assert_eq!(sup.spawner().killed_rest.last().unwrap(), "db");
    assert!(!sup.shutdown_done());
    let pid = sup.spawner().pid_of("db").unwrap();
    sup.on_exit(pid, Exit::Signal(9));
    assert!(sup.shutdown_done());
    assert_eq!(reason(&sup, "db"), "stopped for shutdown (signal 9 (SIGKILL))");
    assert!(sup.status().iter().all(|s| s.pid.is_none()));
}

#[test]
fn nothing_restarts_or_starts_during_shutdown() {
    let mut slow = svc("slow", &[], &[]);
    slow.readiness = Some(tcp_probe(1));
    let specs = vec![slow, svc("flaky", &[], &[]), svc("late", &["slow"], &[])];
    let (mut sup, clock) = boot(specs);
    exit(&mut sup, "flaky", 1);
    assert_eq!(state(&sup, "flaky"), State::Starting);
    sup.begin_shutdown();
    assert_eq!(reason(&sup, "flaky"), "not started: the system is shutting down");
    assert_eq!(reason(&sup, "late"), "not started: the system is shutting down");
    assert_eq!(state(&sup, "slow"), State::Stopping);
    exit(&mut sup, "slow", 1);
    assert!(sup.shutdown_done());
    clock.advance(Duration::from_secs(60));
    sup.on_timer();
    assert_eq!(sup.spawner().starts("flaky"), 1);
    assert_eq!(sup.next_deadline(), None);
}

#[test]
fn a_service_that_exits_on_its_own_during_shutdown_is_not_restarted() {
    let (mut sup, _clock) = boot(vec![svc("db", &[], &[]), svc("web", &["db"], &[])]);
    sup.begin_shutdown();
    exit(&mut sup, "db", 1);
    assert_eq!(reason(&sup, "db"), "exited with status 1 during shutdown");
    assert_eq!(sup.spawner().starts("db"), 1);
    exit(&mut sup, "web", 0);
    assert!(sup.shutdown_done());
}
