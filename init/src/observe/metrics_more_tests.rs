//! Tests of the gauges handed to the exporter from above its folder ([`read::More`]).

use super::render::Exporter;
use super::tests::{fixture, pid1_answers};
use super::*;

fn more_ok(_: &Paths) -> Option<Result<Vec<read::Gauge>, String>> {
    Some(Ok(vec![read::Gauge {
        name: "ramkey_more_things",
        help: "Things from above.",
        labels: &["thing"],
        samples: vec![(vec!["a".into()], 2.0), (vec!["b".into()], 0.0)],
    }]))
}

fn more_failing(_: &Paths) -> Option<Result<Vec<read::Gauge>, String>> {
    Some(Err("plan.json: unreadable".into()))
}

fn more_absent(_: &Paths) -> Option<Result<Vec<read::Gauge>, String>> {
    None
}

#[test]
fn gauges_from_above_are_rendered_and_a_failing_source_is_down_and_said() {
    let dir = fixture();
    let zones = ["web".to_owned()];
    let mut failed = Vec::new();
    let more: [(&'static str, read::More); 3] = [("ok", more_ok), ("failing", more_failing), ("absent", more_absent)];
    let snapshot = read::collect(
        &Paths::new(dir.path()),
        &zones,
        &pid1_answers,
        &more,
        &mut |source, why| {
            failed.push(format!("{source}: {why}"));
        },
    );
    let text = render::render(&snapshot, &Exporter::default()).unwrap();
    assert!(text.contains("ramkey_more_things{thing=\"a\"} 2\n"), "{text}");
    assert!(text.contains("ramkey_more_things{thing=\"b\"} 0\n"), "{text}");
    assert!(text.contains("ramkey_metrics_source_up{source=\"ok\"} 1\n"), "{text}");
    assert!(
        text.contains("ramkey_metrics_source_up{source=\"failing\"} 0\n"),
        "{text}"
    );
    assert!(!text.contains("source=\"absent\""), "{text}");
    assert_eq!(failed, ["failing: plan.json: unreadable"]);
}
