//! The boot tier of `cargo xtask test`: every boot test of every test binary as its own
//! process, two at a time across binaries (not binary after binary, where a binary's last
//! long test leaves a core idle), the longest first. The appliance and the test
//! personalities are built once, before any test starts, and the test processes reuse them
//! ([`artifacts::PREBUILT`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::artifacts::{self, workspace_root};

/// QEMU boots at a time: the CI machine has 2 cores and each TCG guest keeps one busy.
const SLOTS: usize = 2;

/// One test: its binary and its name.
#[derive(Debug, Clone)]
struct Job {
    binary: PathBuf,
    /// The integration test's name (`zones`), the binary's file name without cargo's hash.
    group: String,
    test: String,
}

impl Job {
    fn id(&self) -> String {
        format!("{}::{}", self.group, self.test)
    }
}

/// Where each run's seconds per test are kept, to start the longest first next time.
fn times_file() -> PathBuf {
    artifacts::target_dir().join("ramkey/test-times.tsv")
}

/// Until a run has measured them: the test binaries from the longest tests to the shortest
/// (as measured on 2 cores, December 2026).
const LONGEST_FIRST: &[&str] = &[
    "vm_personalities",
    "cluster",
    "upgrade",
    "zones",
    "pool",
    "trust",
    "remote",
    "observe",
    "config",
    "supervisor",
    "media",
    "boot",
    "vm",
    "platform",
    "bench_smoke",
];

/// Builds what the tests share, then runs every boot test; fails naming each failed test.
pub fn run() -> Result<()> {
    let started = Instant::now();
    let prebuilt = prebuild()?;
    let mut jobs = Vec::new();
    for (group, binary) in test_binaries()? {
        for test in list(&binary)? {
            jobs.push(Job {
                binary: binary.clone(),
                group: group.clone(),
                test,
            });
        }
    }
    order(&mut jobs, &read_times());
    eprintln!(
        "xtask: {} boot tests, {SLOTS} at a time (logs: target/ramkey/logs/test-*.out)",
        jobs.len()
    );
    let results = run_jobs(jobs, &prebuilt)?;
    let mut times = read_times();
    let mut failed = Vec::new();
    for (job, ok, took) in &results {
        times.insert(job.id(), took.as_secs());
        if !ok {
            failed.push(job.id());
        }
    }
    write_times(&times);
    let mut by_time: Vec<_> = results.iter().collect();
    by_time.sort_by_key(|(_, _, took)| std::cmp::Reverse(*took));
    eprintln!("xtask: boot tests by time:");
    for (job, ok, took) in by_time {
        let verdict = if *ok { "ok" } else { "FAILED" };
        eprintln!("  {:>5} s  {verdict:<6} {}", took.as_secs(), job.id());
    }
    eprintln!("xtask: boot tier took {} s", started.elapsed().as_secs());
    if !failed.is_empty() {
        bail!("{} boot test(s) failed: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}

/// The appliance, the personalities the tests boot, and the accelerator probe, once.
fn prebuild() -> Result<String> {
    let appliance = artifacts::appliance()?;
    let mut prebuilt = vec![format!("appliance={}", appliance.display())];
    for name in ["web", "office", "kv"] {
        let image = artifacts::personality(name)?;
        prebuilt.push(format!("{name}={}", image.display()));
    }
    let _ = crate::qemu::accel();
    Ok(prebuilt.join(";"))
}

/// `cargo test -p xtask --tests --no-run`: each integration test's name and executable.
fn test_binaries() -> Result<Vec<(String, PathBuf)>> {
    let out = Command::new("cargo")
        .args([
            "test",
            "-p",
            "xtask",
            "--tests",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the boot tests failed");
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_test = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "test"));
        if message["reason"] != "compiler-artifact" || !is_test {
            continue;
        }
        if let (Some(name), Some(exe)) = (message["target"]["name"].as_str(), message["executable"].as_str()) {
            binaries.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    if binaries.is_empty() {
        bail!("cargo built no boot test binaries");
    }
    Ok(binaries)
}

/// The tests in one binary (`--list --format terse`: `name: test` lines).
fn list(binary: &Path) -> Result<Vec<String>> {
    let out = Command::new(binary)
        .args(["--list", "--format", "terse"])
        .output()
        .with_context(|| format!("listing the tests of {}", binary.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect())
}

/// The longest first: by the last run's times, else by [`LONGEST_FIRST`]; a test never
/// timed goes before the timed ones of its rank.
fn order(jobs: &mut [Job], times: &BTreeMap<String, u64>) {
    let rank = |job: &Job| LONGEST_FIRST.iter().position(|g| *g == job.group).unwrap_or(0);
    jobs.sort_by_key(|job| match times.get(&job.id()) {
        Some(secs) => (std::cmp::Reverse(*secs), 0),
        None => (std::cmp::Reverse(u64::MAX), rank(job)),
    });
}

/// Runs the jobs, [`SLOTS`] at a time; each one's output goes to its log, which is printed
/// when it fails.
fn run_jobs(jobs: Vec<Job>, prebuilt: &str) -> Result<Vec<(Job, bool, Duration)>> {
    let logs = crate::qemu::log_dir();
    std::fs::create_dir_all(&logs)?;
    let mut queue = jobs.into_iter();
    let mut running: Vec<(Job, Child, Instant, PathBuf)> = Vec::new();
    let mut results = Vec::new();
    loop {
        while running.len() < SLOTS {
            let Some(job) = queue.next() else { break };
            let log = logs.join(format!("test-{}-{}.out", job.group, job.test));
            let out = File::create(&log)?;
            let child = Command::new(&job.binary)
                .args(["--exact", &job.test, "--nocapture", "--test-threads=1"])
                .current_dir(workspace_root().join("xtask"))
                .env(artifacts::PREBUILT, prebuilt)
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
                .with_context(|| format!("starting {}", job.binary.display()))?;
            eprintln!("xtask: start {}", job.id());
            running.push((job, child, Instant::now(), log));
        }
        if running.is_empty() {
            return Ok(results);
        }
        let mut i = 0;
        while i < running.len() {
            let Some(status) = running[i].1.try_wait()? else {
                i += 1;
                continue;
            };
            let (job, _, began, log) = running.swap_remove(i);
            let took = began.elapsed();
            let ok = status.success();
            if ok {
                eprintln!("xtask: ok     {} in {} s", job.id(), took.as_secs());
            } else {
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                eprintln!(
                    "xtask: FAILED {} in {} s ({status}); its output ({}):\n{output}",
                    job.id(),
                    took.as_secs(),
                    log.display()
                );
            }
            results.push((job, ok, took));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn read_times() -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(times_file()).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once('\t'))
        .filter_map(|(id, secs)| Some((id.to_string(), secs.parse().ok()?)))
        .collect()
}

fn write_times(times: &BTreeMap<String, u64>) {
    let text: String = times.iter().map(|(id, secs)| format!("{id}\t{secs}\n")).collect();
    let _ = std::fs::write(times_file(), text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(group: &str, test: &str) -> Job {
        Job {
            binary: PathBuf::from(group),
            group: group.into(),
            test: test.into(),
        }
    }

    #[test]
    fn the_longest_go_first_and_untimed_tests_before_timed_ones() {
        let mut jobs = vec![
            job("boot", "recovery"),
            job("zones", "swap"),
            job("pool", "mirror"),
            job("zones", "serve"),
        ];
        order(&mut jobs, &BTreeMap::new());
        let ids: Vec<String> = jobs.iter().map(Job::id).collect();
        assert_eq!(ids, ["zones::swap", "zones::serve", "pool::mirror", "boot::recovery"]);

        let times = BTreeMap::from([("zones::swap".into(), 200), ("zones::serve".into(), 400)]);
        order(&mut jobs, &times);
        let ids: Vec<String> = jobs.iter().map(Job::id).collect();
        assert_eq!(ids, ["pool::mirror", "boot::recovery", "zones::serve", "zones::swap"]);
    }
}
