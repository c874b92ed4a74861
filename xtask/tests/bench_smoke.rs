//! Smoke test of the bench harness (not a benchmark: nothing about time is asserted): one
//! run of the busybox peer and of Ramkey's platform must produce both reports with numbers
//! in both rows.

use xtask::bench::{self, Options};

#[test]
fn bench_runs_once_on_busybox_and_ramkey_and_writes_the_reports() {
    let out = tempfile::tempdir().unwrap();
    let opts = Options::parse(&[
        "--runs".into(),
        "1".into(),
        "--only".into(),
        "busybox,ramkey-platform".into(),
        "--out".into(),
        out.path().to_string_lossy().into_owned(),
    ])
    .unwrap();
    bench::run(&opts).unwrap();

    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    // A change that breaks Ramkey's rows fails here, not only in a bench run by hand.
    for (system, figures) in [
        ("busybox", &["init", "http", "init_to_http", "mem_used"][..]),
        ("ramkey-platform", &["init", "http", "ready", "mem_used"][..]),
    ] {
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| {system} |")))
            .unwrap_or_else(|| panic!("no {system} row in report.md:\n{md}"));
        assert!(
            row.chars().any(|c| c.is_ascii_digit()),
            "{system} row without numbers: {row}"
        );
        let result = json["systems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == system)
            .unwrap_or_else(|| panic!("{system} in report.json"));
        for figure in figures {
            let median = &result["figures"][figure]["median"];
            assert!(
                median.as_f64().is_some_and(|m| m > 0.0),
                "{system} {figure} median is {median}"
            );
        }
        assert!(result["initramfs_bytes"].as_u64().is_some_and(|b| b > 0));
    }
}
