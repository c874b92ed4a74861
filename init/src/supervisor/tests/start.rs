//! Boot: ordering, parallel start, cycles, missing dependencies, blocked chains.

use super::*;

#[test]
fn independent_services_start_together_and_dependents_wait_for_readiness() {
    let mut db = svc("db", &[], &[]);
    db.readiness = Some(tcp_probe(5432));
    let specs = vec![
        svc("worker", &[], &["web"]),
        svc("web", &["db"], &["cache"]),
        db,
        svc("cache", &[], &[]),
    ];
    let (mut sup, clock) = boot(specs);
    // One step: everything without unmet dependencies.
    assert_eq!(sup.spawner().started_services(), ["db", "cache"]);
    assert_eq!(state(&sup, "db"), State::Starting);
    assert_eq!(state(&sup, "cache"), State::Online);
    assert_eq!(reason(&sup, "web"), "waiting for db (starting)");
    assert_eq!(state(&sup, "web"), State::Offline);
    // `after` a service that is itself waiting: wait too.
    assert_eq!(reason(&sup, "worker"), "waiting for web (offline)");
    // The first readiness attempt comes within a second.
    assert_eq!(next(&mut sup, &clock), Duration::from_secs(1));
    let ticket = sup.checker_mut().last_ticket("db").unwrap();
    assert_eq!(sup.checker_mut().started[0].2, Check::Tcp { port: 5432 });
    sup.on_check_result(ticket, Ok(()));
    assert_eq!(state(&sup, "db"), State::Online);
    assert_eq!(reason(&sup, "db"), "ready: the readiness check passed");
    assert_eq!(sup.spawner().started_services(), ["db", "cache", "web", "worker"]);
    assert!(sup.status().iter().all(|s| s.state == State::Online));
}

#[test]
fn after_is_ordering_only() {
    let mut setup = policy(svc("setup", &[], &[]), RestartPolicy::Never);
    setup.readiness = Some(tcp_probe(1));
    let (mut sup, _clock) = boot(vec![setup, svc("app", &[], &["setup"])]);
    assert_eq!(sup.spawner().started_services(), ["setup"]);
    exit(&mut sup, "setup", 1);
    assert_eq!(state(&sup, "setup"), State::Maintenance);
    assert_eq!(reason(&sup, "setup"), "exited with status 1; restart = never");
    // Its failure does not hold back what is only after it.
    assert_eq!(state(&sup, "app"), State::Online);
}

#[test]
fn a_one_shot_that_exits_zero_releases_what_is_after_it() {
    let mut migrate = svc("migrate", &[], &[]);
    migrate.readiness = Some(tcp_probe(1));
    let (mut sup, _clock) = boot(vec![migrate, svc("app", &[], &["migrate"])]);
    exit(&mut sup, "migrate", 0);
    assert_eq!(state(&sup, "migrate"), State::Offline);
    assert_eq!(
        reason(&sup, "migrate"),
        "exited with status 0; not restarted (restart = on-failure)"
    );
    assert_eq!(state(&sup, "app"), State::Online);
}

#[test]
fn cycles_are_named_and_the_rest_starts() {
    let (mut sup, _clock, problems) = load(vec![
        svc("a", &["b"], &[]),
        svc("b", &["c"], &[]),
        svc("c", &[], &["a"]),
        svc("d", &["c"], &[]),
        svc("e", &[], &[]),
        svc("f", &[], &["a"]),
    ]);
    assert_eq!(problems[0].to_string(), "cycle: a -> b -> c -> a");
    sup.start_all();
    for name in ["a", "b", "c"] {
        assert_eq!(state(&sup, name), State::Maintenance);
        assert_eq!(reason(&sup, name), "cycle: a -> b -> c -> a");
    }
    assert_eq!(state(&sup, "d"), State::Maintenance);
    assert_eq!(reason(&sup, "d"), "requires `c`: cycle: a -> b -> c -> a");
    assert_eq!(sup.spawner().started_services(), ["e", "f"]);
    let err = sup.clear("a").unwrap_err().to_string();
    assert_eq!(
        err,
        "service `a` cannot run until its definition is fixed: cycle: a -> b -> c -> a"
    );
}

#[test]
fn a_missing_dependency_is_maintenance_and_a_missing_after_is_ignored() {
    let (mut sup, _clock, problems) = load(vec![svc("a", &["ghost"], &[]), svc("b", &[], &["phantom"])]);
    assert_eq!(problems.len(), 2);
    sup.start_all();
    assert_eq!(state(&sup, "a"), State::Maintenance);
    assert_eq!(reason(&sup, "a"), "service `a` requires `ghost`, which is not defined");
    assert_eq!(state(&sup, "b"), State::Online);
}

#[test]
fn a_requires_chain_waits_behind_maintenance() {
    let mut a = policy(svc("a", &[], &[]), RestartPolicy::Never);
    a.argv = vec!["/missing".into()];
    let specs = vec![a, svc("b", &["a"], &[]), svc("c", &["b"], &[]), svc("x", &[], &["c"])];
    let clock = ManualClock::default();
    let mut spawner = FakeSpawner::default();
    spawner.failing.insert("a".into());
    let (mut sup, _) = Supervisor::new(specs, spawner, FakeChecker::default(), clock);
    sup.start_all();
    assert_eq!(state(&sup, "a"), State::Maintenance);
    assert_eq!(reason(&sup, "a"), "could not start: /missing: entity not found");
    assert_eq!(state(&sup, "b"), State::Offline);
    assert_eq!(reason(&sup, "b"), "waiting for a (maintenance)");
    assert_eq!(reason(&sup, "c"), "waiting for b (offline)");
    // `x` is only after `c`, which cannot start: `x` does not wait for it.
    assert_eq!(state(&sup, "x"), State::Online);
    // Clearing `a` (its program is back) starts the chain.
    sup.spawner_mut().failing.clear();
    sup.clear("a").unwrap();
    assert_eq!(sup.spawner().started_services(), ["x", "a", "b", "c"]);
}

#[test]
fn a_required_service_going_down_stops_its_dependents_until_it_is_back() {
    let (mut sup, clock) = boot(vec![svc("db", &[], &[]), svc("web", &["db"], &[])]);
    let web = sup.spawner().pid_of("web").unwrap();
    exit(&mut sup, "db", 1);
    assert_eq!(state(&sup, "db"), State::Starting);
    assert_eq!(state(&sup, "web"), State::Stopping);
    assert_eq!(reason(&sup, "web"), "stopping: requires db, which is starting");
    assert_eq!(sup.spawner().signals_to(web), [nix::sys::signal::Signal::SIGTERM]);
    sup.on_exit(web, Exit::Signal(15));
    assert_eq!(reason(&sup, "web"), "waiting for db (starting)");
    assert_eq!(next(&mut sup, &clock), Duration::from_secs(1));
    assert_eq!(state(&sup, "db"), State::Online);
    assert_eq!(state(&sup, "web"), State::Online);
    assert_eq!(sup.spawner().starts("web"), 2);
}

#[test]
fn the_boot_settles_once_nothing_is_on_its_way_up() {
    let mut db = svc("db", &[], &[]);
    db.readiness = Some(tcp_probe(5432));
    let (mut sup, clock) = boot(vec![db, svc("web", &["db"], &[]), svc("cache", &[], &[])]);
    // db is starting and web waits for it: not settled.
    assert_eq!(sup.settled(), None);
    next(&mut sup, &clock);
    let ticket = sup.checker_mut().last_ticket("db").unwrap();
    sup.on_check_result(ticket, Ok(()));
    let settled = sup.settled().unwrap();
    assert_eq!((settled.online, settled.down.len()), (3, 0), "{settled:?}");
}

#[test]
fn a_boot_with_a_service_in_maintenance_settles_degraded_with_its_dependents() {
    let mut broken = policy(svc("db", &[], &[]), RestartPolicy::Never);
    broken.readiness = Some(tcp_probe(5432));
    let (mut sup, _clock) = boot(vec![broken, svc("web", &["db"], &[]), svc("cache", &[], &[])]);
    exit(&mut sup, "db", 1);
    let settled = sup.settled().unwrap();
    assert_eq!(settled.online, 1, "{settled:?}");
    let down: Vec<(&str, State)> = settled.down.iter().map(|(n, s, _)| (n.as_str(), *s)).collect();
    assert_eq!(down, [("db", State::Maintenance), ("web", State::Offline)]);
}
