//! A [`Snapshot`] in the Prometheus text format (0.0.4), through the `prometheus` crate:
//! a registry made for the scrape, one family per metric, encoded by its `TextEncoder`.
//!
//! Names follow Prometheus's conventions: the `ramkey_` prefix, base units (bytes,
//! seconds), `_total` on counters, a state as a label of a 0/1 gauge. A family whose
//! source could not be read is left out (the `ramkey_metrics_source_up` gauge says which).
//! `docs/observability.md` lists every name; a test checks that the list and this file agree.

use std::collections::BTreeMap;

use prometheus::{CounterVec, Encoder, GaugeVec, Opts, Registry, TextEncoder};

use super::read::Snapshot;
use crate::supervisor::State;

/// Every service state, for the state-set gauge.
const STATES: [State; 7] = [
    State::Disabled,
    State::Offline,
    State::Starting,
    State::Online,
    State::Degraded,
    State::Maintenance,
    State::Stopping,
];

/// The pool's health words (`SystemInfo::pool_health`).
pub const POOL_HEALTH: [&str; 4] = ["ok", "degraded", "read-only", "diskless"];

/// The exporter's own figures, kept across scrapes.
#[derive(Debug, Clone, Default)]
pub struct Exporter {
    /// Scrapes answered (this one included).
    pub scrapes: u64,
    /// The process's CPU time, in seconds.
    pub cpu_seconds: f64,
    /// How long this scrape took to read its sources, in seconds.
    pub last_duration: f64,
    /// Answers sent, by status code (this one not yet).
    pub requests: BTreeMap<u16, u64>,
}

/// The registry of one scrape.
struct Out(Registry);

impl Out {
    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
        let family = GaugeVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(family.clone()))?;
        Ok(family)
    }

    fn counter(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<CounterVec> {
        let family = CounterVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(family.clone()))?;
        Ok(family)
    }

    /// One gauge without labels.
    fn one(&self, name: &str, help: &str, value: f64) -> prometheus::Result<()> {
        self.gauge(name, help, &[])?.with_label_values::<&str>(&[]).set(value);
        Ok(())
    }
}

/// The gauges of the [`super::read::More`] sources that were read.
fn more(out: &Out, s: &Snapshot) -> prometheus::Result<()> {
    for gauge in s.more.iter().filter_map(|(_, read)| read.as_ref().ok()).flatten() {
        let family = out.gauge(gauge.name, gauge.help, gauge.labels)?;
        for (values, value) in &gauge.samples {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            family.get_metric_with_label_values(&values)?.set(*value);
        }
    }
    Ok(())
}

/// The text of a scrape.
pub fn render(s: &Snapshot, e: &Exporter) -> prometheus::Result<String> {
    let out = Out(Registry::new());
    node(&out, s)?;
    nics(&out, s)?;
    pool(&out, s)?;
    services(&out, s)?;
    zones(&out, s)?;
    boot(&out, s)?;
    more(&out, s)?;
    exporter(&out, s, e)?;
    let mut text = Vec::new();
    TextEncoder::new().encode(&out.0.gather(), &mut text)?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

fn node(out: &Out, s: &Snapshot) -> prometheus::Result<()> {
    let Ok(node) = &s.node else { return Ok(()) };
    for (name, bytes) in &node.memory {
        let help = format!("The {name} memory of meminfo, in bytes.");
        out.one(&format!("ramkey_node_memory_{name}_bytes"), &help, *bytes as f64)?;
    }
    let cpu = out.counter(
        "ramkey_node_cpu_seconds_total",
        "CPU time spent in each mode, summed over the CPUs.",
        &["mode"],
    )?;
    for (mode, seconds) in &node.cpu {
        cpu.with_label_values(&[*mode]).inc_by(*seconds);
    }
    out.one("ramkey_node_cpus", "CPUs the kernel runs on.", node.cpus as f64)?;
    for (window, load) in ["1", "5", "15"].iter().zip(node.load) {
        let help = format!("Load average over {window} minute(s).");
        out.one(&format!("ramkey_node_load{window}"), &help, load)?;
    }
    out.one(
        "ramkey_node_uptime_seconds",
        "Time since the kernel started.",
        node.uptime,
    )
}

fn nics(out: &Out, s: &Snapshot) -> prometheus::Result<()> {
    let Ok(nics) = &s.nics else { return Ok(()) };
    let up = out.gauge(
        "ramkey_nic_up",
        "1 when the interface's operational state is up.",
        &["nic"],
    )?;
    let mut families = BTreeMap::new();
    for nic in nics {
        up.with_label_values(&[nic.name.as_str()])
            .set(f64::from(u8::from(nic.up)));
        for (name, value) in &nic.counters {
            let family = match families.get(name) {
                Some(family) => family,
                None => {
                    let words = name.replace('_', " ");
                    let help = format!("The interface's {words} (its statistics/ counters).");
                    let family = out.counter(&format!("ramkey_nic_{name}_total"), &help, &["nic"])?;
                    families.entry(*name).or_insert(family)
                }
            };
            family.with_label_values(&[nic.name.as_str()]).inc_by(*value as f64);
        }
    }
    Ok(())
}

fn pool(out: &Out, s: &Snapshot) -> prometheus::Result<()> {
    let Ok(status) = &s.status else { return Ok(()) };
    let info = &status.system;
    let health = out.gauge(
        "ramkey_pool_health",
        "1 for the pool's health (ok, degraded, read-only, diskless), 0 for the others.",
        &["health"],
    )?;
    for word in POOL_HEALTH {
        health
            .with_label_values(&[word])
            .set(f64::from(u8::from(info.pool_health == word)));
    }
    let (attached, devices) = info.pool_disks;
    out.one("ramkey_pool_disks", "Disks of the pool attached.", f64::from(attached))?;
    let missing = f64::from(devices.saturating_sub(attached));
    out.one(
        "ramkey_pool_disks_missing",
        "Disks the pool's filesystem has that are not attached.",
        missing,
    )?;
    if let Some(Ok(space)) = &s.pool {
        out.one(
            "ramkey_pool_size_bytes",
            "Size of the pool's filesystem.",
            space.size as f64,
        )?;
        let help = "Bytes of the pool still free for use.";
        out.one("ramkey_pool_available_bytes", help, space.available as f64)?;
        out.one("ramkey_pool_used_bytes", "Bytes of the pool in use.", space.used as f64)?;
    }
    Ok(())
}

fn services(out: &Out, s: &Snapshot) -> prometheus::Result<()> {
    let Ok(services) = &s.services else { return Ok(()) };
    let state = out.gauge(
        "ramkey_service_state",
        "1 for the service's state (svcs), 0 for the others.",
        &["service", "state"],
    )?;
    let restarts = out.counter(
        "ramkey_service_restarts_total",
        "Restarts since boot (svcadm clear starts again from 0).",
        &["service"],
    )?;
    let uptime = out.gauge(
        "ramkey_service_uptime_seconds",
        "Time since the service's running process started; 0 when none runs.",
        &["service"],
    )?;
    for service in services {
        let name = service.name.as_str();
        for each in STATES {
            let on = f64::from(u8::from(each == service.state));
            state.with_label_values(&[name, each.as_str()]).set(on);
        }
        restarts.with_label_values(&[name]).inc_by(f64::from(service.restarts));
        let up = service.started_ms.map_or(0, |at| s.now_ms.saturating_sub(at));
        uptime.with_label_values(&[name]).set(up as f64 / 1000.0);
    }
    Ok(())
}

fn zones(out: &Out, s: &Snapshot) -> prometheus::Result<()> {
    let Ok(zones) = &s.zones else { return Ok(()) };
    let gauges = [
        (
            "ramkey_zone_memory_bytes",
            "Memory the zone's cgroup uses (memory.current).",
        ),
        (
            "ramkey_zone_memory_max_bytes",
            "The zone's memory cap (memory.max); absent without one.",
        ),
        (
            "ramkey_zone_cpu_max_cores",
            "The zone's CPU cap in CPUs (cpu.max quota / period); absent without one.",
        ),
        (
            "ramkey_zone_pids",
            "Processes and threads in the zone's cgroup (pids.current).",
        ),
        (
            "ramkey_zone_pids_max",
            "The zone's cap on processes and threads (pids.max); absent without one.",
        ),
    ];
    let mut families = Vec::new();
    for (name, help) in gauges {
        families.push(out.gauge(name, help, &["zone"])?);
    }
    let cpu = out.counter(
        "ramkey_zone_cpu_seconds_total",
        "CPU time the zone's cgroup used (cpu.stat usage_usec).",
        &["zone"],
    )?;
    let ooms = out.counter(
        "ramkey_zone_oom_kills_total",
        "Processes of the zone killed at its memory cap (memory.events oom_kill).",
        &["zone"],
    )?;
    for zone in zones {
        let label = [zone.name.as_str()];
        let values = [
            zone.memory.map(|v| v as f64),
            zone.memory_max.map(|v| v as f64),
            zone.cpu_max,
            zone.pids.map(|v| v as f64),
            zone.pids_max.map(|v| v as f64),
        ];
        for (family, value) in families.iter().zip(values) {
            if let Some(value) = value {
                family.with_label_values(&label).set(value);
            }
        }
        if let Some(seconds) = zone.cpu_seconds {
            cpu.with_label_values(&label).inc_by(seconds);
        }
        if let Some(kills) = zone.oom_kills {
            ooms.with_label_values(&label).inc_by(kills as f64);
        }
    }
    Ok(())
}

fn boot(out: &Out, s: &Snapshot) -> prometheus::Result<()> {
    let platform = &s.platform;
    let info = out.gauge(
        "ramkey_platform_info",
        "1, labelled with the platform's version, its kernel and the slot it booted from (none: PXE or direct).",
        &["version", "kernel", "slot"],
    )?;
    info.with_label_values(&[
        platform.version.as_str(),
        platform.kernel.as_str(),
        platform.slot.as_str(),
    ])
    .set(1.0);
    let Some(timeline) = s.status.as_ref().ok().and_then(|s| s.system.timeline.as_ref()) else {
        return Ok(());
    };
    let secs = |ms: u64| ms as f64 / 1000.0;
    let start = out.gauge(
        "ramkey_boot_step_start_seconds",
        "When each boot step started, since the kernel started (the console's timeline lines).",
        &["step"],
    )?;
    let duration = out.gauge(
        "ramkey_boot_step_duration_seconds",
        "How long each boot step took.",
        &["step"],
    )?;
    for step in &timeline.steps {
        start.with_label_values(&[step.name.as_str()]).set(secs(step.start_ms));
        duration
            .with_label_values(&[step.name.as_str()])
            .set(secs(step.duration_ms));
    }
    let help = "When PID 1 started, since the kernel started.";
    out.one("ramkey_boot_init_start_seconds", help, secs(timeline.init_start_ms))?;
    let help = "When the boot was done (ramkey: ready), since the kernel started.";
    out.one("ramkey_boot_ready_seconds", help, secs(timeline.ready_ms))
}

fn exporter(out: &Out, s: &Snapshot, e: &Exporter) -> prometheus::Result<()> {
    let up = out.gauge(
        "ramkey_metrics_source_up",
        "1 when the source was read for this scrape; 0 leaves its metrics out (the log says why).",
        &["source"],
    )?;
    for (source, failed) in s.sources() {
        up.with_label_values(&[source])
            .set(f64::from(u8::from(failed.is_none())));
    }
    let scrapes = out.counter("ramkey_metrics_scrapes_total", "Scrapes answered.", &[])?;
    scrapes.with_label_values::<&str>(&[]).inc_by(e.scrapes as f64);
    let cpu = out.counter("ramkey_metrics_cpu_seconds_total", "CPU time the exporter used.", &[])?;
    cpu.with_label_values::<&str>(&[]).inc_by(e.cpu_seconds);
    let help = "How long this scrape took to read its sources.";
    out.one("ramkey_metrics_scrape_duration_seconds", help, e.last_duration)?;
    let requests = out.counter(
        "ramkey_metrics_http_requests_total",
        "Requests answered before this one, by status code.",
        &["code"],
    )?;
    for (code, count) in &e.requests {
        requests
            .with_label_values(&[code.to_string().as_str()])
            .inc_by(*count as f64);
    }
    Ok(())
}
