//! `cargo xtask bench build`: how long `xtask::artifacts::build_platform` takes, cold (an
//! empty kernel unpack cache: a temporary `RAMKEY_CACHE` holding only a copy of the kernel
//! `.deb`, so nothing is downloaded) and warm (the normal cache), each in a child process
//! (`bench build-once`) so the cache location is set through its environment; and how long
//! `ramkey image build` takes for each personality, cold (the image cache bypassed:
//! mmdebstrap, mksquashfs, signing) and warm (a cache hit).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ramkey_builder::initramfs::Compression;
use serde_json::json;

use super::report::Stats;
use crate::artifacts;

/// The child's side: one build into `out`, its wall time on stdout.
pub fn build_once(out: &Path) -> Result<()> {
    let start = Instant::now();
    artifacts::build_platform(out, Compression::Gzip)?;
    println!("build-seconds {:.3}", start.elapsed().as_secs_f64());
    Ok(())
}

fn child(out: &Path, cache: Option<&Path>) -> Result<f64> {
    let exe = std::env::current_exe().context("finding the xtask binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["bench", "build-once"]).arg(out);
    if let Some(cache) = cache {
        cmd.env("RAMKEY_CACHE", cache);
    }
    let output = cmd.output().context("running bench build-once")?;
    if !output.status.success() {
        bail!(
            "bench build-once failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("build-seconds ")?.trim().parse().ok())
        .with_context(|| format!("no build-seconds line in {text:?}"))
}

/// One personality's build times: name, cold seconds, warm seconds, image bytes.
type ImageTimes = (&'static str, Vec<f64>, Vec<f64>, u64);

/// The three personalities built `runs` times cold and warm each.
fn image_builds(runs: u32, work: &Path) -> Result<Vec<ImageTimes>> {
    let (key, _) = artifacts::test_key()?;
    let mut out = Vec::new();
    for name in ["web", "office", "kv"] {
        let definition = artifacts::workspace_root().join("personalities").join(name);
        let (mut cold, mut warm, mut size) = (Vec::new(), Vec::new(), 0);
        for run in 1..=runs {
            for use_cache in [false, true] {
                let opts = ramkey_builder::image_cmd::build::BuildOptions {
                    out: work.join("images"),
                    key: key.clone(),
                    cache: Some(work.join("image-cache")),
                    use_cache,
                    epoch: None,
                    progress: false,
                    vm: false,
                };
                let start = Instant::now();
                let report = ramkey_builder::image_cmd::build::build(&definition, &opts)?;
                let seconds = start.elapsed().as_secs_f64();
                size = report.size;
                if use_cache { &mut warm } else { &mut cold }.push(seconds);
                eprintln!(
                    "bench build: {name} run {run}/{runs}: {} {seconds:.2} s",
                    if use_cache { "warm" } else { "cold" }
                );
            }
        }
        out.push((name, cold, warm, size));
    }
    Ok(out)
}

/// Runs `runs` cold and `runs` warm builds, alternating, and writes `build.md` / `build.json`.
pub fn run(runs: u32, out_dir: &Path) -> Result<()> {
    let kernel = artifacts::kernel()?;
    let work = out_dir.join("build-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    // Once so that the init binary is compiled and cargo's part is the same in both.
    child(&work.join("platform"), None)?;
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let cache = work.join(format!("cache-{run}"));
        let debs = cache.join("debs");
        std::fs::create_dir_all(&debs)?;
        let name = kernel.deb.file_name().context("kernel .deb name")?;
        std::fs::copy(&kernel.deb, debs.join(name))?;
        let c = child(&work.join("platform"), Some(&cache))?;
        std::fs::remove_dir_all(&cache)?;
        let w = child(&work.join("platform"), None)?;
        eprintln!("bench build: run {run}/{runs}: cold {c:.2} s, warm {w:.2} s");
        cold.push(c);
        warm.push(w);
    }
    let images = image_builds(runs, &work)?;
    let _ = std::fs::remove_dir_all(&work);
    let (c, w) = (
        Stats::of(&cold).context("no runs")?,
        Stats::of(&warm).context("no runs")?,
    );
    let mut md = format!(
        "Platform build (`xtask::artifacts::build_platform`, gzip), {runs} runs each, seconds: median (min–max).\n\
         Cold = empty kernel unpack cache (the kernel .deb copied in, not downloaded); the static init is already compiled in both.\n\n\
         | build | time |\n|---|---|\n"
    );
    for (name, s) in [("cold", c), ("warm", w)] {
        let _ = writeln!(md, "| {name} | {:.2} ({:.2}–{:.2}) |", s.median, s.min, s.max);
    }
    md.push_str(
        "\nPersonality images (`ramkey image build`), seconds: median (min–max); cold bypasses the image cache, \
         warm is a cache hit.\n\n| personality | cold | warm | image size |\n|---|---|---|---|\n",
    );
    for (name, cold, warm, size) in &images {
        let (c, w) = (Stats::of(cold).context("no runs")?, Stats::of(warm).context("no runs")?);
        let _ = writeln!(
            md,
            "| {name} | {:.1} ({:.1}–{:.1}) | {:.2} ({:.2}–{:.2}) | {:.1} MB |",
            c.median,
            c.min,
            c.max,
            w.median,
            w.min,
            w.max,
            *size as f64 / 1e6
        );
    }
    std::fs::create_dir_all(out_dir)?;
    std::fs::write(out_dir.join("build.md"), &md)?;
    let json = json!({ "runs": runs, "kernel": kernel.release, "cold_s": cold, "warm_s": warm,
        "cold": {"median": c.median, "min": c.min, "max": c.max},
        "warm": {"median": w.median, "min": w.min, "max": w.max},
        "images": images.iter().map(|(n, c, w, size)| json!({"name": n, "cold_s": c, "warm_s": w, "bytes": size})).collect::<Vec<_>>() });
    std::fs::write(out_dir.join("build.json"), serde_json::to_string_pretty(&json)? + "\n")?;
    print!("{md}");
    Ok(())
}
