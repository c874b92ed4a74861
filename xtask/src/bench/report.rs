//! The report: per system and figure the median, min and max over the runs, ratios against
//! the busybox and systemd peers, Ramkey's step timeline; as `report.md` and `report.json`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde_json::{Value, json};

use super::measure::{CMDLINE, MEMORY_MB, Sample};

/// One system's results.
#[derive(Debug, Clone)]
pub struct SystemResult {
    pub name: &'static str,
    pub what: &'static str,
    /// Compressed bytes of what it boots besides the shared kernel (the initramfs).
    pub size: Option<u64>,
    pub samples: Vec<Sample>,
    /// Why a figure is missing or the system is not measured, or how it differs.
    pub note: Option<String>,
}

/// Median, min and max.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(values: &[f64]) -> Option<Stats> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stats {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// The figures, in table order: key, column title, unit, and how to read it from a sample.
type Getter = fn(&Sample) -> Option<f64>;
const FIGURES: &[(&str, &str, &str, Getter)] = &[
    ("kernel_zero", "QEMU start → kernel", "s", |s| Some(s.kernel_zero)),
    ("init", "→ /init", "s", |s| Some(s.init)),
    ("http", "→ HTTP 200", "s", |s| s.http),
    ("init_to_http", "/init → HTTP 200", "s", |s| {
        s.http.map(|h| h - s.init)
    }),
    ("ready", "→ ready", "s", |s| s.ready),
    ("mem_used", "RAM used", "MiB", |s| {
        s.mem_used_kib.map(|k| k as f64 / 1024.0)
    }),
    ("mem_resident", "RAM resident", "MiB", |s| {
        s.mem_resident_kib.map(|k| k as f64 / 1024.0)
    }),
];

impl SystemResult {
    pub fn stats(&self, key: &str) -> Option<Stats> {
        let (_, _, _, get) = FIGURES.iter().find(|f| f.0 == key)?;
        let values: Vec<f64> = self.samples.iter().filter_map(get).collect();
        Stats::of(&values)
    }
}

fn cell(stats: Option<Stats>, unit: &str, missing: &str) -> String {
    match stats {
        Some(s) if unit == "MiB" => format!("{:.0} ({:.0}–{:.0})", s.median, s.min, s.max),
        Some(s) => format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max),
        None => missing.to_string(),
    }
}

fn size_cell(size: Option<u64>) -> String {
    match size {
        Some(b) if b >= 1 << 20 => format!("{:.1} MB", b as f64 / 1e6),
        Some(b) => format!("{:.1} KB", b as f64 / 1e3),
        None => "—".into(),
    }
}

/// `x` to two significant digits (`1.4`, `0.36`, `0.012`, `23`).
fn two_digits(x: f64) -> String {
    let decimals = if x > 0.0 {
        (1 - x.log10().floor() as i32).max(0)
    } else {
        1
    };
    format!("{x:.0$}", decimals as usize)
}

/// A ratio of exact figures (sizes): two significant digits.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{}×", two_digits(a / b)),
        _ => "—".into(),
    }
}

/// A ratio of measured figures: of the medians, with the range the runs allow (this
/// system's fastest over the peer's slowest, to its slowest over the peer's fastest), two
/// significant digits each: `1.4× (1.3–1.6)`.
fn ratio_range(a: Option<Stats>, b: Option<Stats>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.min > 0.0 => format!(
            "{}× ({}–{})",
            two_digits(a.median / b.median),
            two_digits(a.min / b.max),
            two_digits(a.max / b.min)
        ),
        _ => "—".into(),
    }
}

/// Context that goes with every report.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub runs: u32,
    pub kernel: String,
    pub kernel_size: u64,
    pub qemu: String,
    pub accel: String,
    pub host_cpus: usize,
}

/// The Markdown report.
pub fn markdown(systems: &[SystemResult], env: &Environment) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Runs: {} per system, alternating. Kernel {} ({} bytes, shared by all), {}, `-accel {} -M q35 -cpu max -smp 1 -m {MEMORY_MB}`, \
         `{CMDLINE}`{}, host {} CPUs. Times in seconds from QEMU start. RAM in MiB after boot: *used* = MemTotal − MemAvailable (what cannot be reclaimed: a zone's squashfs pages are page cache and count as available, a RAM root's files do not), *resident* = MemTotal − MemFree (every page in use, caches included: the same measure for all). Median (min–max).\n",
        env.runs,
        env.kernel,
        env.kernel_size,
        env.qemu,
        env.accel,
        if find(systems, "ramkey-stick").is_some() {
            " (ramkey-stick: the stick's own, see the notes)"
        } else {
            ""
        },
        env.host_cpus
    );
    md.push_str("| system | initramfs (gzip) |");
    for (_, title, _, _) in FIGURES {
        let _ = write!(md, " {title} |");
    }
    md.push_str(" RAM − floor |\n|---|---|");
    md.push_str(&"---|".repeat(FIGURES.len() + 1));
    md.push('\n');
    let floor_mem = find(systems, "floor").and_then(|f| f.stats("mem_used"));
    for sys in systems {
        let _ = write!(md, "| {} | {} |", sys.name, size_cell(sys.size));
        for (key, _, unit, _) in FIGURES {
            let missing = match (*key, sys.name) {
                (_, "ramkey-zone" | "ramkey-vm") => "pending",
                ("http" | "init_to_http", "ramkey-platform") => "not yet",
                ("mem_used" | "mem_resident", "ramkey-platform") => "n/a",
                _ => "—",
            };
            let _ = write!(md, " {} |", cell(sys.stats(key), unit, missing));
        }
        let over = match (sys.stats("mem_used"), floor_mem) {
            (Some(m), Some(f)) => format!("{:.0}", m.median - f.median),
            _ => "—".into(),
        };
        let _ = writeln!(md, " {over} |");
    }

    md.push_str(
        "\nRatios (this system ÷ peer): of the medians, and for times the range the runs allow \
         (this system's min ÷ the peer's max – its max ÷ the peer's min); RAM is used minus the floor's:\n\n",
    );
    md.push_str("| system | size ÷ busybox | size ÷ systemd | /init ÷ busybox | /init ÷ systemd | HTTP ÷ busybox | HTTP ÷ systemd | RAM ÷ busybox | RAM ÷ systemd |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|\n");
    let stats = |s: Option<&SystemResult>, key: &str| s.and_then(|s| s.stats(key));
    let median = |s: Option<&SystemResult>, key: &str| stats(s, key).map(|st| st.median);
    let over_floor = |s: Option<&SystemResult>| median(s, "mem_used").and_then(|m| floor_mem.map(|f| m - f.median));
    let busybox = find(systems, "busybox");
    let systemd = find(systems, "systemd");
    for sys in systems {
        let size = sys.size.map(|b| b as f64);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            sys.name,
            ratio(size, busybox.and_then(|b| b.size).map(|b| b as f64)),
            ratio(size, systemd.and_then(|b| b.size).map(|b| b as f64)),
            ratio_range(stats(Some(sys), "init"), stats(busybox, "init")),
            ratio_range(stats(Some(sys), "init"), stats(systemd, "init")),
            ratio_range(stats(Some(sys), "http"), stats(busybox, "http")),
            ratio_range(stats(Some(sys), "http"), stats(systemd, "http")),
            ratio(over_floor(Some(sys)), over_floor(busybox)),
            ratio(over_floor(Some(sys)), over_floor(systemd)),
        );
    }

    for ramkey in ["ramkey-platform", "ramkey-stick", "ramkey-zone", "ramkey-vm"]
        .into_iter()
        .filter_map(|name| find(systems, name).filter(|r| !r.samples.is_empty()))
    {
        let _ = write!(
            md,
            "\n{}: the init's timeline (`ramkey: timeline` lines) and the zone, ms: median (min–max):\n\n| step | duration |\n|---|---|\n",
            ramkey.name
        );
        for (name, s) in named_stats(ramkey, |s| &s.steps, 1.0) {
            let _ = writeln!(md, "| {name} | {:.0} ({:.0}–{:.0}) |", s.median, s.min, s.max);
        }
    }
    for zone in ["ramkey-zone", "ramkey-vm"]
        .into_iter()
        .filter_map(|name| find(systems, name))
    {
        let readings = named_stats(zone, |s| &s.zone_kib, 1.0 / 1024.0);
        if !readings.is_empty() {
            let _ = write!(
                md,
                "\n{}: the personality's memory once it is online, MiB: median (min–max). `processes`: the \
                 launcher and the zone's PID 1 (PSS; the init's pages shared with the platform's PID 1 count in \
                 part); `cgroup`: the zone's `memory.current` (nginx, the page cache it charged, kernel memory; for \
                 a VM, the guest RAM it touched and the VMM); `vmm`: the VMM's PSS and its resident memory outside \
                 the guest's RAM:\n\n| reading | MiB |\n|---|---|\n",
                zone.name
            );
            for (name, s) in readings {
                let _ = writeln!(md, "| {name} | {:.1} ({:.1}–{:.1}) |", s.median, s.min, s.max);
            }
        }
    }
    for sys in systems {
        let parts = named_stats(sys, |s| &s.ram_kib, 1.0 / 1024.0);
        if parts.is_empty() {
            continue;
        }
        let _ = write!(
            md,
            "\n{}: where the RAM goes, at the second memory reading, MiB: median (min–max). RAM files: what the \
             kernel unpacked from the initramfs, never reclaimable (with /run); page cache: files read, mostly the \
             packed platform's, reclaimable:\n\n| part | MiB |\n|---|---|\n",
            sys.name
        );
        for (name, s) in parts {
            let _ = writeln!(md, "| {name} | {:.1} ({:.1}–{:.1}) |", s.median, s.min, s.max);
        }
    }
    md.push_str("\nNotes:\n\n");
    for sys in systems {
        let _ = writeln!(
            md,
            "- **{}**: {}{}",
            sys.name,
            sys.what,
            sys.note.as_ref().map(|n| format!(" {n}")).unwrap_or_default()
        );
    }
    md
}

fn find<'a>(systems: &'a [SystemResult], name: &str) -> Option<&'a SystemResult> {
    systems.iter().find(|s| s.name == name)
}

/// The statistics of named readings (`pick` from each sample), scaled by `scale`, in the
/// order the names first appear.
fn named_stats(sys: &SystemResult, pick: fn(&Sample) -> &[(String, u64)], scale: f64) -> Vec<(String, Stats)> {
    let mut names: Vec<&String> = Vec::new();
    for s in &sys.samples {
        for (n, _) in pick(s) {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    names
        .into_iter()
        .filter_map(|name| {
            let values: Vec<f64> = sys
                .samples
                .iter()
                .flat_map(|s| {
                    pick(s)
                        .iter()
                        .filter(|(n, _)| n == name)
                        .map(|(_, v)| *v as f64 * scale)
                })
                .collect();
            Stats::of(&values).map(|s| (name.clone(), s))
        })
        .collect()
}

/// The JSON report: environment, and per system the raw samples and the statistics.
pub fn json(systems: &[SystemResult], env: &Environment) -> Value {
    let stats_json =
        |s: Option<Stats>| s.map_or(Value::Null, |s| json!({"median": s.median, "min": s.min, "max": s.max}));
    let systems: Vec<Value> = systems
        .iter()
        .map(|sys| {
            let figures: serde_json::Map<String, Value> = FIGURES
                .iter()
                .map(|(key, _, unit, _)| {
                    let mut v = stats_json(sys.stats(key));
                    if let Value::Object(o) = &mut v {
                        o.insert("unit".into(), json!(unit));
                    }
                    ((*key).to_string(), v)
                })
                .collect();
            let samples: Vec<Value> = sys
                .samples
                .iter()
                .map(|s| {
                    json!({
                        "kernel_zero_s": s.kernel_zero,
                        "init_s": s.init,
                        "http_s": s.http,
                        "ready_s": s.ready,
                        "mem_used_kib": s.mem_used_kib,
                        "mem_resident_kib": s.mem_resident_kib,
                        "steps_ms": s.steps.iter().map(|(n, ms)| json!({"step": n, "duration_ms": ms})).collect::<Vec<_>>(),
                        "zone_memory_kib": s.zone_kib.iter().map(|(n, kib)| json!({"reading": n, "kib": kib})).collect::<Vec<_>>(),
                        "ram_parts_kib": s.ram_kib.iter().map(|(n, kib)| json!({"part": n, "kib": kib})).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "name": sys.name,
                "what": sys.what,
                "initramfs_bytes": sys.size,
                "note": sys.note,
                "figures": figures,
                "samples": samples,
            })
        })
        .collect();
    json!({
        "runs": env.runs,
        "kernel": env.kernel,
        "kernel_bytes": env.kernel_size,
        "qemu": env.qemu,
        "accel": env.accel,
        "machine": format!("-M q35 -cpu max -smp 1 -m {MEMORY_MB}"),
        "cmdline": CMDLINE,
        "host_cpus": env.host_cpus,
        "systems": systems,
    })
}

/// Writes `report.md` and `report.json` into `dir`.
pub fn write(dir: &Path, systems: &[SystemResult], env: &Environment) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.md"), markdown(systems, env))?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&json(systems, env))? + "\n",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_have_two_significant_digits_and_times_a_range() {
        assert_eq!(ratio(Some(36.0), Some(100.0)), "0.36×");
        assert_eq!(ratio(Some(1.0), Some(81.0)), "0.012×");
        assert_eq!(ratio(Some(230.0), Some(10.0)), "23×");
        let a = Stats::of(&[1.4, 1.5, 1.6]);
        let b = Stats::of(&[0.9, 1.0, 1.1]);
        assert_eq!(ratio_range(a, b), "1.5× (1.3–1.8)");
        assert_eq!(ratio_range(a, None), "—");
    }

    #[test]
    fn median_min_max() {
        let s = Stats::of(&[3.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
        assert_eq!(Stats::of(&[]), None);
    }

    #[test]
    fn named_readings_in_first_seen_order_scaled() {
        let sample = |readings: &[(&str, u64)]| Sample {
            zone_kib: readings.iter().map(|(n, v)| ((*n).to_string(), *v)).collect(),
            ..Sample::default()
        };
        let sys = SystemResult {
            name: "ramkey-zone",
            what: "",
            size: None,
            samples: vec![
                sample(&[("processes", 2048), ("cgroup", 10240)]),
                sample(&[("processes", 4096)]),
            ],
            note: None,
        };
        let stats = named_stats(&sys, |s| &s.zone_kib, 1.0 / 1024.0);
        let names: Vec<&str> = stats.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["processes", "cgroup"]);
        assert_eq!((stats[0].1.median, stats[0].1.min, stats[0].1.max), (3.0, 2.0, 4.0));
        assert_eq!(stats[1].1.median, 10.0);
        let md = markdown(std::slice::from_ref(&sys), &Environment::default());
        assert!(md.contains("| processes | 3.0 (2.0–4.0) |"), "{md}");
    }
}
