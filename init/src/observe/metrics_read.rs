//! What a scrape reads, each source from files under an injectable root ([`Paths`]):
//! `/proc` (memory, CPU, load, uptime), `/sys/class/net` (each NIC's counters), the zones'
//! cgroups under `/sys/fs/cgroup/ramkey`, the pool's `statvfs`, `/etc/os-release`, the
//! kernel command line, and PID 1's answers on the control socket.

use std::fs;
use std::path::Path;

use crate::base::cmdline::Cmdline;
use crate::base::paths::Paths;
use crate::supervisor::ServiceStatus;
use crate::supervisor::protocol::{Request, Response, SystemStatus};

/// `/proc/stat`'s clock ticks per second: USER_HZ, 100 on every Linux ABI.
const USER_HZ: f64 = 100.0;

/// The cgroup folder of a zone is its service's: `zone-NAME` (`zone::ZoneSpec::service_name`).
pub const ZONE_PREFIX: &str = "zone-";

/// `/proc/meminfo` fields and the names of their gauges (`ramkey_node_memory_NAME_bytes`).
const MEMINFO: &[(&str, &str)] = &[
    ("MemTotal", "total"),
    ("MemFree", "free"),
    ("MemAvailable", "available"),
    ("Buffers", "buffers"),
    ("Cached", "cached"),
    ("Shmem", "shmem"),
];

/// `/proc/stat`'s `cpu` columns, in order.
const CPU_MODES: &[&str] = &["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];

/// A NIC's statistics files and their counters' names (`ramkey_nic_NAME_total`).
const NIC_COUNTERS: &[(&str, &str)] = &[
    ("rx_bytes", "receive_bytes"),
    ("tx_bytes", "transmit_bytes"),
    ("rx_packets", "receive_packets"),
    ("tx_packets", "transmit_packets"),
    ("rx_errors", "receive_errors"),
    ("tx_errors", "transmit_errors"),
    ("rx_dropped", "receive_drops"),
    ("tx_dropped", "transmit_drops"),
];

/// The box as a whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    /// `(name, bytes)` from [`MEMINFO`].
    pub memory: Vec<(&'static str, u64)>,
    /// `(mode, seconds)` summed over the CPUs.
    pub cpu: Vec<(&'static str, f64)>,
    /// How many CPUs `/proc/stat` lists.
    pub cpus: u64,
    /// The 1, 5 and 15 minute load averages.
    pub load: [f64; 3],
    /// Seconds since boot.
    pub uptime: f64,
}

/// One network interface of the host's namespace (a NIC, as the boot named it: its tag).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Nic {
    /// The interface's name.
    pub name: String,
    /// Its `operstate` is `up`.
    pub up: bool,
    /// `(name, value)` from [`NIC_COUNTERS`].
    pub counters: Vec<(&'static str, u64)>,
}

/// A zone's cgroup: what it uses and its caps (`None`: no cap, or not readable).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Zone {
    /// The personality's name.
    pub name: String,
    /// `memory.current`.
    pub memory: Option<u64>,
    /// `memory.max`.
    pub memory_max: Option<u64>,
    /// `cpu.stat` `usage_usec`, in seconds.
    pub cpu_seconds: Option<f64>,
    /// `cpu.max` as CPUs (quota / period).
    pub cpu_max: Option<f64>,
    /// `pids.current`.
    pub pids: Option<u64>,
    /// `pids.max`.
    pub pids_max: Option<u64>,
    /// `memory.events` `oom_kill`.
    pub oom_kills: Option<u64>,
}

/// The pool's filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Space {
    /// Its size.
    pub size: u64,
    /// What an unprivileged writer may still use.
    pub available: u64,
    /// What is used.
    pub used: u64,
}

/// The platform that runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Platform {
    /// `VERSION_ID` of `/etc/os-release`.
    pub version: String,
    /// The kernel release.
    pub kernel: String,
    /// `ramkey.slot=` (`a`, `b`), `none` without one (PXE, a kernel booted directly).
    pub slot: String,
}

/// A gauge family that a part of the platform above this folder reads for the exporter
/// (the HA pair's, [`More`]): its name, help and label names, and each sample's label
/// values and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Gauge {
    /// `ramkey_...`.
    pub name: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
    /// The label names.
    pub labels: &'static [&'static str],
    /// Each sample: its label values (as many as `labels`) and its value.
    pub samples: Vec<(Vec<String>, f64)>,
}

/// A source of more gauges, handed to the exporter from above: `None` where it does not
/// apply (a box without `[cluster]`), else the gauges or why they could not be read.
pub type More = fn(&Paths) -> Option<Result<Vec<Gauge>, String>>;

/// Everything one scrape read; a source that failed is `Err` with the reason.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Milliseconds since boot when it was read.
    pub now_ms: u64,
    /// The box.
    pub node: Result<Node, String>,
    /// The interfaces but `lo`.
    pub nics: Result<Vec<Nic>, String>,
    /// The zones' cgroups.
    pub zones: Result<Vec<Zone>, String>,
    /// The services, from PID 1.
    pub services: Result<Vec<ServiceStatus>, String>,
    /// PID 1's status: pool health and disks, the boot timeline.
    pub status: Result<SystemStatus, String>,
    /// The pool's space, when a pool is mounted.
    pub pool: Option<Result<Space, String>>,
    /// Version, kernel, slot.
    pub platform: Platform,
    /// The [`More`] sources that apply, by name.
    pub more: Vec<(&'static str, Result<Vec<Gauge>, String>)>,
}

impl Snapshot {
    /// Each source and whether it was read: `(name, reason it failed)`.
    pub fn sources(&self) -> Vec<(&'static str, Option<&str>)> {
        fn why<T>(r: &Result<T, String>) -> Option<&str> {
            r.as_ref().err().map(String::as_str)
        }
        let mut out = vec![
            ("node", why(&self.node)),
            ("nics", why(&self.nics)),
            ("cgroups", why(&self.zones)),
            ("pid1", why(&self.services).or(why(&self.status))),
        ];
        if let Some(pool) = &self.pool {
            out.push(("pool", why(pool)));
        }
        out.extend(self.more.iter().map(|(name, read)| (*name, why(read))));
        out
    }
}

/// Reads every source: files under `paths`, the cgroups of `zones`, PID 1 through `ask`,
/// each of `more`; `failed` hears of each source that could not be read (`(source, reason)`).
pub fn collect(
    paths: &Paths,
    zones: &[String],
    ask: &dyn Fn(&Request) -> Result<Response, String>,
    more: &[(&'static str, More)],
    failed: &mut dyn FnMut(&str, &str),
) -> Snapshot {
    let services = match ask(&Request::Svcs { all: true }) {
        Ok(Response::Svcs { services }) => Ok(services),
        Ok(other) => Err(format!("unexpected answer from PID 1: {other:?}")),
        Err(e) => Err(e),
    };
    let status = match ask(&Request::Status) {
        Ok(Response::Status { status }) => Ok(status),
        Ok(other) => Err(format!("unexpected answer from PID 1: {other:?}")),
        Err(e) => Err(e),
    };
    let mounted = status
        .as_ref()
        .is_ok_and(|s| !s.system.pool_health.is_empty() && s.system.pool_health != "diskless");
    let snapshot = Snapshot {
        now_ms: crate::supervisor::state::millis(crate::sys::boottime()),
        node: node(paths),
        nics: nics(&paths.sys().join("class/net")),
        zones: self::zones(&paths.sys().join("fs/cgroup/ramkey"), zones),
        services,
        status,
        pool: mounted.then(|| space(&paths.pool())),
        platform: platform(paths),
        more: more
            .iter()
            .filter_map(|(name, read)| Some((*name, read(paths)?)))
            .collect(),
    };
    for (source, why) in snapshot.sources() {
        if let Some(why) = why {
            failed(source, why);
        }
    }
    snapshot
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Memory, CPU, load and uptime from `/proc`.
pub fn node(paths: &Paths) -> Result<Node, String> {
    let proc = paths.proc();
    let meminfo = read(&proc.join("meminfo"))?;
    let memory = MEMINFO
        .iter()
        .filter_map(|(field, name)| {
            let line = meminfo.lines().find(|l| l.split(':').next() == Some(*field))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some((*name, kib * 1024))
        })
        .collect();
    let stat = read(&proc.join("stat"))?;
    let total = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some("cpu"))
        .ok_or_else(|| format!("{}: no cpu line", proc.join("stat").display()))?;
    let cpu = CPU_MODES
        .iter()
        .zip(total.split_whitespace().skip(1))
        .filter_map(|(mode, ticks)| Some((*mode, ticks.parse::<u64>().ok()? as f64 / USER_HZ)))
        .collect();
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u64;
    let loadavg = read(&proc.join("loadavg"))?;
    let mut load = [0.0; 3];
    for (slot, word) in load.iter_mut().zip(loadavg.split_whitespace()) {
        *slot = word
            .parse()
            .map_err(|_| format!("{}: {loadavg:?}", proc.join("loadavg").display()))?;
    }
    let uptime = read(&proc.join("uptime"))?;
    let uptime = uptime
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("{}: {uptime:?}", proc.join("uptime").display()))?;
    Ok(Node {
        memory,
        cpu,
        cpus,
        load,
        uptime,
    })
}

/// Every interface under `class_net` (`/sys/class/net`) but `lo`, by name.
pub fn nics(class_net: &Path) -> Result<Vec<Nic>, String> {
    let entries = fs::read_dir(class_net).map_err(|e| format!("{}: {e}", class_net.display()))?;
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| {
            let dir = class_net.join(&name);
            let counters = NIC_COUNTERS
                .iter()
                .filter_map(|(file, counter)| Some((*counter, number(&dir.join("statistics").join(file))?)))
                .collect();
            let up = fs::read_to_string(dir.join("operstate")).is_ok_and(|s| s.trim() == "up");
            Nic { name, up, counters }
        })
        .collect())
}

/// A file holding one number; `None` when absent, unreadable or `max`.
fn number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The `KEY value` line `key` of a flat-keyed cgroup file (`cpu.stat`, `memory.events`).
fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The cgroups of the zones `names` under `base` (`/sys/fs/cgroup/ramkey`), by name; a zone
/// without one (never started: refused at boot) is left out.
pub fn zones(base: &Path, names: &[String]) -> Result<Vec<Zone>, String> {
    if !names.is_empty() && !base.is_dir() {
        return Err(format!("{}: no such folder (are cgroups mounted?)", base.display()));
    }
    let mut zones: Vec<Zone> = names
        .iter()
        .filter_map(|name| {
            let dir = base.join(format!("{ZONE_PREFIX}{name}"));
            if !dir.is_dir() {
                return None;
            }
            let cpu_max = fs::read_to_string(dir.join("cpu.max")).ok().and_then(|text| {
                let (quota, period) = text.trim().split_once(' ')?;
                Some(quota.parse::<f64>().ok()? / period.parse::<f64>().ok().filter(|p| *p > 0.0)?)
            });
            Some(Zone {
                name: name.clone(),
                memory: number(&dir.join("memory.current")),
                memory_max: number(&dir.join("memory.max")),
                cpu_seconds: keyed(&dir.join("cpu.stat"), "usage_usec").map(|us| us as f64 / 1e6),
                cpu_max,
                pids: number(&dir.join("pids.current")),
                pids_max: number(&dir.join("pids.max")),
                oom_kills: keyed(&dir.join("memory.events"), "oom_kill"),
            })
        })
        .collect();
    zones.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(zones)
}

/// The filesystem at `mount_point`.
pub fn space(mount_point: &Path) -> Result<Space, String> {
    let st = nix::sys::statvfs::statvfs(mount_point).map_err(|e| format!("statvfs {}: {e}", mount_point.display()))?;
    let frag = st.fragment_size();
    Ok(Space {
        size: st.blocks() * frag,
        available: st.blocks_available() * frag,
        used: st.blocks().saturating_sub(st.blocks_free()) * frag,
    })
}

/// Version, kernel and slot.
pub fn platform(paths: &Paths) -> Platform {
    let version = paths.os_release_field("VERSION_ID").unwrap_or_else(|| "unknown".into());
    let kernel = fs::read_to_string(paths.osrelease()).map_or_else(|_| "unknown".into(), |k| k.trim().to_owned());
    let slot = fs::read_to_string(paths.cmdline())
        .ok()
        .and_then(|text| Cmdline::parse(&text).slot)
        .map_or_else(|| "none".to_owned(), |s| s.to_string());
    Platform { version, kernel, slot }
}

/// The CPU time this process used, in seconds.
pub fn own_cpu_seconds() -> f64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
        .unwrap_or(0.0)
}
