//! `svcadm enable|disable|restart|clear` and their refusals.

use nix::sys::signal::Signal;

use super::*;
use crate::supervisor::control::CommandError;

#[test]
fn disable_stops_it_and_what_requires_it_and_enable_brings_them_back() {
    let (mut sup, _clock) = boot(vec![svc("db", &[], &[]), svc("web", &["db"], &[])]);
    let (db, web) = (
        sup.spawner().pid_of("db").unwrap(),
        sup.spawner().pid_of("web").unwrap(),
    );
    sup.disable("db").unwrap();
    assert_eq!(state(&sup, "db"), State::Stopping);
    assert_eq!(reason(&sup, "db"), "stopping: disabled by the administrator");
    assert_eq!(state(&sup, "web"), State::Stopping);
    assert_eq!(sup.spawner().signals, [(db, Signal::SIGTERM), (web, Signal::SIGTERM)]);
    sup.on_exit(db, Exit::Signal(15));
    sup.on_exit(web, Exit::Signal(15));
    assert_eq!(state(&sup, "db"), State::Disabled);
    assert_eq!(reason(&sup, "web"), "waiting for db (disabled)");
    assert_eq!(sup.status().iter().filter(|s| s.pid.is_some()).count(), 0);
    sup.enable("db").unwrap();
    assert_eq!(state(&sup, "db"), State::Online);
    assert_eq!(state(&sup, "web"), State::Online);
    assert_eq!(sup.spawner().starts("web"), 2);
}

#[test]
fn enable_while_a_disable_is_still_stopping_it_starts_it_again() {
    let (mut sup, _clock) = boot(vec![svc("web", &[], &[])]);
    let pid = sup.spawner().pid_of("web").unwrap();
    sup.disable("web").unwrap();
    assert_eq!(state(&sup, "web"), State::Stopping);
    // `personality stop` then `start` at once: the zone is still on its way down.
    sup.enable("web").unwrap();
    sup.on_exit(pid, Exit::Signal(15));
    assert_eq!(state(&sup, "web"), State::Online);
    assert_eq!(sup.spawner().starts("web"), 2);
}

#[test]
fn restart_stops_and_starts_without_backoff_or_budget() {
    let mut spec = svc("web", &[], &[]);
    spec.stop_signal = ramkey_image::service::StopSignal::Sigquit;
    let (mut sup, _clock) = boot(vec![spec]);
    let pid = sup.spawner().pid_of("web").unwrap();
    sup.restart("web").unwrap();
    assert_eq!(sup.spawner().signals_to(pid), [Signal::SIGQUIT]);
    sup.on_exit(pid, Exit::Code(0));
    assert_eq!(sup.spawner().starts("web"), 2);
    assert_eq!(state(&sup, "web"), State::Online);
    assert_eq!(sup.service_status("web").unwrap().restarts, 0);
}

#[test]
fn refusals_say_why() {
    let (mut sup, _clock) = boot(vec![svc("web", &[], &[])]);
    assert_eq!(sup.enable("nope"), Err(CommandError::Unknown("nope".into())));
    assert_eq!(
        sup.clear("web").unwrap_err().to_string(),
        "service `web` is not in maintenance (it is online)"
    );
    sup.disable("web").unwrap();
    exit(&mut sup, "web", 0);
    assert_eq!(
        sup.restart("web").unwrap_err().to_string(),
        "service `web` is disabled: use `svcadm enable` first"
    );
    sup.disable("web").unwrap();
    sup.begin_shutdown();
    assert_eq!(sup.enable("web"), Err(CommandError::ShuttingDown));
}

#[test]
fn disable_before_boot_keeps_it_off() {
    let (mut sup, _clock, _) = load(vec![svc("a", &[], &[]), svc("b", &[], &[])]);
    sup.disable("a").unwrap();
    sup.start_all();
    assert_eq!(sup.spawner().started_services(), ["b"]);
    assert_eq!(state(&sup, "a"), State::Disabled);
}
