//! Smoke test of the bench harness (not a benchmark: nothing about time is asserted): one
//! run of the busybox peer must produce both reports with numbers in busybox's row.

use xtask::bench::{self, Options};

#[test]
fn bench_runs_once_on_busybox_and_writes_the_reports() {
    let out = tempfile::tempdir().unwrap();
    let opts = Options::parse(&[
        "--runs".into(),
        "1".into(),
        "--only".into(),
        "busybox".into(),
        "--out".into(),
        out.path().to_string_lossy().into_owned(),
    ])
    .unwrap();
    bench::run(&opts).unwrap();

    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    let row = md
        .lines()
        .find(|l| l.starts_with("| busybox |"))
        .unwrap_or_else(|| panic!("no busybox row in report.md:\n{md}"));
    assert!(
        row.chars().any(|c| c.is_ascii_digit()),
        "busybox row without numbers: {row}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    let busybox = json["systems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "busybox")
        .expect("busybox in report.json");
    for figure in ["init", "http", "init_to_http", "mem_used"] {
        let median = &busybox["figures"][figure]["median"];
        assert!(
            median.as_f64().is_some_and(|m| m > 0.0),
            "busybox {figure} median is {median}"
        );
    }
    assert!(busybox["initramfs_bytes"].as_u64().is_some_and(|b| b > 0));
}
