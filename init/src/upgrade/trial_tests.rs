//! Tests of judging a trial boot from the services' states.

use super::*;
use crate::supervisor::state::Transition;

fn status(name: &str, state: SvcState, reason: &str) -> ServiceStatus {
    ServiceStatus {
        name: name.into(),
        state,
        since_ms: 0,
        reason: reason.into(),
        pid: None,
        restarts: 0,
        history: Vec::new(),
    }
}

fn watch(expect: &[&str]) -> Watch {
    Watch {
        slot: Slot::B,
        version: "0.2.0".into(),
        expect: expect.iter().map(|s| s.to_string()).collect(),
        deadline: Duration::from_secs(120),
    }
}

#[test]
fn a_trial_commits_when_everything_that_ran_before_is_online() {
    let w = watch(&["sshd", "web"]);
    let mut now = vec![
        status("sshd", SvcState::Online, ""),
        status("web", SvcState::Starting, "waiting for its check"),
        status("other", SvcState::Maintenance, "not expected, not judged"),
    ];
    assert_eq!(w.verdict(Some(&now), Duration::from_secs(30)), Verdict::Wait);
    now[1].state = SvcState::Online;
    assert_eq!(
        w.verdict(Some(&now), Duration::from_millis(41_500)),
        Verdict::Commit("ready, and back: sshd, web (41.5 s after boot)".into())
    );
    // A one-shot (a zone's gate) that came up and ended is back too; one that only ever
    // waited is not.
    let w = watch(&["sshd", "zone-gate-web"]);
    now.push(status("zone-gate-web", SvcState::Offline, "waiting for zone-web"));
    assert_eq!(w.verdict(Some(&now), Duration::from_secs(50)), Verdict::Wait);
    let gate = now.last_mut().unwrap();
    gate.history.push(Transition {
        state: SvcState::Online,
        at_ms: 40_000,
        reason: "started".into(),
    });
    gate.reason = "exited with status 0; not restarted (restart = never)".into();
    assert!(matches!(
        w.verdict(Some(&now), Duration::from_secs(50)),
        Verdict::Commit(_)
    ));
    assert!(matches!(
        watch(&[]).verdict(Some(&[]), Duration::ZERO),
        Verdict::Commit(_)
    ));
}

#[test]
fn a_trial_is_rejected_at_the_deadline_or_when_a_service_is_given_up_on() {
    let w = watch(&["sshd", "web", "dns"]);
    let mut now = vec![
        status("sshd", SvcState::Online, ""),
        status("web", SvcState::Starting, "exited 1; restarting"),
    ];
    assert_eq!(w.verdict(Some(&now), Duration::from_secs(119)), Verdict::Wait);
    assert_eq!(
        w.verdict(Some(&now), Duration::from_secs(120)),
        Verdict::Reject(
            "not back 120 s after boot: web is starting (exited 1; restarting); dns is not defined on this platform"
                .into()
        )
    );
    // Given up on by the supervisor: rejected at once, not at the deadline.
    now[1] = status("web", SvcState::Maintenance, "exited 1 three times");
    assert_eq!(
        w.verdict(Some(&now), Duration::from_millis(30_250)),
        Verdict::Reject(
            "not back (30.2 s after boot): web is maintenance (exited 1 three times); dns is not defined on this platform"
                .into()
        )
    );
    assert_eq!(
        w.verdict(None, Duration::from_secs(5)),
        Verdict::Reject("the boot ended in recovery mode".into())
    );
}
