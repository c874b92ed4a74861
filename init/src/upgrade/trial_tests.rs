//! Tests of judging a trial boot from the services' states.

use super::*;
use crate::storage::mounts::fake::RecordingMounter;
use crate::supervisor::state::Transition;
use crate::upgrade::loaders::tests::{SYSLINUX_CFG, stick};
use crate::upgrade::state::Outcome;

fn status(name: &str, state: SvcState, reason: &str) -> ServiceStatus {
    ServiceStatus {
        name: name.into(),
        state,
        since_ms: 0,
        reason: reason.into(),
        pid: None,
        restarts: 0,
        started_ms: None,
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

#[test]
fn a_commit_cut_short_is_finished_at_the_next_boot_and_only_then() {
    let dir = stick(SYSLINUX_CFG);
    let root = dir.path();
    std::fs::create_dir(root.join("platform")).unwrap();
    // Cut after the state said "committed b", before the loaders heard of it.
    loaders::arm(root, Slot::B, 1, "Ramkey 0.2.0", "0.2.0").unwrap();
    let state = State {
        trial: None,
        last: Some(Outcome {
            slot: "b".into(),
            version: "0.2.0".into(),
            committed: true,
            reason: "ready".into(),
            at: 1,
        }),
    };
    state.write(root).unwrap();
    let stick = Stick {
        node: "/dev/sda1".into(),
        mount: root.to_owned(),
    };
    let mut mounter = RecordingMounter::default();
    assert_eq!(at_boot(&stick, Some(Slot::A), &mut mounter), None);
    assert!(loaders::is_committed(root, Slot::B), "finished");
    assert_eq!(mounter.mounts.len(), 2, "remounted read-write, then read-only");
    assert_eq!(at_boot(&stick, Some(Slot::B), &mut mounter), None);
    assert_eq!(
        mounter.mounts.len(),
        2,
        "nothing left to finish: the stick stays read-only"
    );
    assert_eq!(State::read(root).unwrap(), state, "the record is kept");
}
