//! Restart policies, backoff timing, the restart budget and `clear`.

use super::*;

#[test]
fn backoff_doubles_up_to_its_cap() {
    let (mut sup, clock) = boot(vec![budget(svc("flaky", &[], &[]), 10, 60)]);
    let mut delays = Vec::new();
    for n in 1..=5 {
        exit(&mut sup, "flaky", 1);
        assert_eq!(state(&sup, "flaky"), State::Starting);
        let deadline = sup.next_deadline().unwrap();
        delays.push(deadline - clock.since_boot());
        // Nothing happens before the deadline.
        clock.set(deadline - Duration::from_millis(1));
        sup.on_timer();
        assert_eq!(sup.spawner().starts("flaky"), n);
        next(&mut sup, &clock);
        assert_eq!(sup.spawner().starts("flaky"), n + 1);
        assert_eq!(state(&sup, "flaky"), State::Online);
    }
    let secs: Vec<u64> = delays.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [1, 2, 4, 4, 4]);
    assert_eq!(sup.service_status("flaky").unwrap().restarts, 5);
}

#[test]
fn the_reason_says_when_and_why() {
    let (mut sup, _clock) = boot(vec![svc("flaky", &[], &[])]);
    let pid = sup.spawner().pid_of("flaky").unwrap();
    sup.on_exit(pid, Exit::Signal(11));
    assert_eq!(
        reason(&sup, "flaky"),
        "restarting in 1 s (last exit: signal 11 (SIGSEGV))"
    );
    let status = sup.service_status("flaky").unwrap();
    let states: Vec<State> = status.history.iter().map(|t| t.state).collect();
    assert_eq!(states, [State::Offline, State::Online, State::Starting]);
    assert_eq!(status.since_ms, 5000);
    assert_eq!(status.pid, None);
}

#[test]
fn the_budget_puts_a_service_in_maintenance_and_clear_starts_it() {
    let (mut sup, clock) = boot(vec![budget(svc("crashy", &[], &[]), 5, 60)]);
    for _ in 0..5 {
        exit(&mut sup, "crashy", 1);
        next(&mut sup, &clock);
    }
    assert_eq!(sup.spawner().starts("crashy"), 6);
    exit(&mut sup, "crashy", 1);
    assert_eq!(state(&sup, "crashy"), State::Maintenance);
    assert_eq!(reason(&sup, "crashy"), "restarted 5 times in 60 s; last exit: status 1");
    assert_eq!(sup.next_deadline(), None, "nothing is timed in maintenance");
    assert_eq!(
        sup.restart("crashy").unwrap_err().to_string(),
        "service `crashy` is maintenance: use `svcadm clear` first"
    );
    sup.clear("crashy").unwrap();
    assert_eq!(sup.spawner().starts("crashy"), 7);
    assert_eq!(state(&sup, "crashy"), State::Online);
    assert_eq!(sup.service_status("crashy").unwrap().restarts, 0);
    // The budget is fresh, and so is the backoff.
    exit(&mut sup, "crashy", 1);
    assert_eq!(next(&mut sup, &clock), Duration::from_secs(1));
    assert!(sup.clear("crashy").is_err());
}

#[test]
fn the_budget_window_slides() {
    let (mut sup, clock) = boot(vec![budget(svc("slow", &[], &[]), 2, 10)]);
    exit(&mut sup, "slow", 1);
    next(&mut sup, &clock);
    exit(&mut sup, "slow", 1);
    next(&mut sup, &clock);
    // Two restarts in the last 10 s: a third must wait for the window to move on.
    clock.advance(Duration::from_secs(10));
    exit(&mut sup, "slow", 1);
    assert_eq!(state(&sup, "slow"), State::Starting);
}

#[test]
fn a_long_run_resets_the_backoff() {
    let (mut sup, clock) = boot(vec![budget(svc("svc", &[], &[]), 10, 60)]);
    for _ in 0..3 {
        exit(&mut sup, "svc", 1);
        next(&mut sup, &clock);
    }
    exit(&mut sup, "svc", 1);
    assert_eq!(next(&mut sup, &clock), Duration::from_secs(4));
    clock.advance(Duration::from_secs(60));
    exit(&mut sup, "svc", 1);
    assert_eq!(next(&mut sup, &clock), Duration::from_secs(1));
}

#[test]
fn each_policy_decides_on_the_exit_status() {
    let (mut sup, _clock) = boot(vec![
        policy(svc("always", &[], &[]), RestartPolicy::Always),
        policy(svc("onfail", &[], &[]), RestartPolicy::OnFailure),
        policy(svc("never", &[], &[]), RestartPolicy::Never),
        policy(svc("never-ok", &[], &[]), RestartPolicy::Never),
    ]);
    exit(&mut sup, "always", 0);
    exit(&mut sup, "onfail", 0);
    exit(&mut sup, "never", 2);
    exit(&mut sup, "never-ok", 0);
    assert_eq!(state(&sup, "always"), State::Starting);
    assert_eq!(reason(&sup, "always"), "restarting in 1 s (last exit: status 0)");
    assert_eq!(state(&sup, "onfail"), State::Offline);
    assert_eq!(state(&sup, "never"), State::Maintenance);
    assert_eq!(reason(&sup, "never"), "exited with status 2; restart = never");
    assert_eq!(
        reason(&sup, "never-ok"),
        "exited with status 0; not restarted (restart = never)"
    );
}

#[test]
fn a_program_that_cannot_start_is_retried_then_maintenance() {
    let clock = ManualClock::default();
    let mut spawner = FakeSpawner::default();
    spawner.failing.insert("ghost".into());
    let specs = vec![budget(svc("ghost", &[], &[]), 2, 60)];
    let (mut sup, _) = Supervisor::new(specs, spawner, FakeChecker::default(), clock.clone());
    sup.start_all();
    assert_eq!(
        reason(&sup, "ghost"),
        "restarting in 1 s (could not start: /usr/bin/ghost: entity not found)"
    );
    next(&mut sup, &clock);
    next(&mut sup, &clock);
    assert_eq!(state(&sup, "ghost"), State::Maintenance);
    assert_eq!(
        reason(&sup, "ghost"),
        "restarted 2 times in 60 s; could not start: /usr/bin/ghost: entity not found"
    );
}
