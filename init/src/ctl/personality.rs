//! `ramkeyctl personality ...`: the zones, as `zoneadm list` and `zlogin` show them.
//!
//! `list` joins the zone specs PID 1 wrote at boot with the `zone-NAME` services' states and
//! the zones' cgroups; `start|stop|restart` steer those services; `log` reads the launcher's
//! log or a service's log in the zone's writable layer; `console` ([`super::console`])
//! enters the zone's namespaces under the zone's own confinement and runs a shell (or a
//! command) there.

use std::fmt::Write as _;
use std::path::Path;

use std::time::Duration;

use super::{ask, swap, unexpected};
use crate::base::paths::Paths;
use crate::supervisor::protocol::{Action, Request, Response};
use crate::supervisor::{ServiceStatus, State};
use crate::zone::ZoneSpec;
use ramkey_image::runtime::Runtime;

/// Carries out `personality ARGS`; returns what to print.
pub fn run(args: &[String]) -> Result<String, String> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["list"] | [] => list(),
        [verb @ ("start" | "stop" | "restart"), name] => {
            spec(name)?;
            let action = match *verb {
                "start" => Action::Enable,
                "stop" => Action::Disable,
                _ => Action::Restart,
            };
            let service = ZoneSpec::service_name(name);
            match ask(&Request::Svcadm { action, service })? {
                Response::Done { message } => Ok(format!("{message}\n")),
                other => Err(unexpected(&other)),
            }
        }
        ["swap", name, image, options @ ..] => {
            let (mut wait, mut allow_downgrade) = (swap::DEFAULT_WAIT, false);
            let mut options = options.iter();
            while let Some(option) = options.next() {
                match *option {
                    "--allow-downgrade" => allow_downgrade = true,
                    "--wait" => {
                        let secs = options.next().unwrap_or(&"");
                        let secs: u64 = secs
                            .parse()
                            .map_err(|_| format!("--wait {secs:?} is not a number of seconds"))?;
                        wait = Duration::from_secs(secs);
                    }
                    other => return Err(format!("swap: unknown option `{other}`")),
                }
            }
            swap::swap(name, image, wait, allow_downgrade)
        }
        ["rollback", name] => swap::rollback(name, swap::DEFAULT_WAIT),
        ["import", source] => {
            super::import::import(Paths::system().root(), &super::import::Source::parse(source))
        }
        ["gate", name] => swap::gate(name),
        ["log", name] => log(name, None),
        ["log", name, service] => log(name, Some(service)),
        ["console", name] => {
            let spec = spec(name)?;
            if spec.runtime == Runtime::Vm {
                return crate::vm::console::attach(name, &crate::vm::file(name, crate::vm::CONSOLE_SOCKET));
            }
            super::console::run(&spec, zone_init(name)?, &["/bin/sh".to_string()])
        }
        ["console", name, "--", command @ ..] if !command.is_empty() => {
            let spec = spec(name)?;
            if spec.runtime == Runtime::Vm {
                return Err(format!(
                    "{name} is a VM: its console is its serial port (`ramkeyctl personality console {name}`), \
                     it runs no command of the host's"
                ));
            }
            let argv: Vec<String> = command.iter().map(|s| (*s).to_string()).collect();
            super::console::run(&spec, zone_init(name)?, &argv)
        }
        _ => Err(
            "usage: ramkeyctl personality list | start|stop|restart NAME | swap NAME IMAGE [--wait SECS] [--allow-downgrade] | \
                  rollback NAME | import FILE|-|URL | log NAME [SERVICE] | console NAME [-- COMMAND...]"
                .into(),
        ),
    }
}

fn spec(name: &str) -> Result<ZoneSpec, String> {
    ZoneSpec::read(Paths::system().root(), name)
        .map_err(|e| format!("no personality {name:?} started at boot ({e}); `ramkeyctl personality list` shows them"))
}

/// Every service PID 1 supervises, disabled ones too.
pub(super) fn statuses() -> Result<Vec<ServiceStatus>, String> {
    match ask(&Request::Svcs { all: true })? {
        Response::Svcs { services } => Ok(services),
        other => Err(unexpected(&other)),
    }
}

/// One zone as `personality list` shows it (and `--json` prints it).
#[derive(Debug, serde::Serialize)]
pub struct Zone {
    /// The personality's name.
    pub name: String,
    /// The image's name.
    pub image: String,
    /// The image's version.
    pub version: String,
    /// `zone`, or `vm` with its vCPUs and guest memory.
    pub kind: String,
    /// Its service's state (`online`, `maintenance`, ...).
    pub state: String,
    /// Its address, or `dhcp` before it leased one.
    pub address: String,
    /// Bytes of memory in use, when its cgroup says.
    pub memory_bytes: Option<u64>,
    /// Its memory cap in MiB, when it has one.
    pub memory_cap_mib: Option<u32>,
    /// Whether its writable root is kept across images.
    pub persistent_root: bool,
    /// Why it is in that state (a rollback's note, the service's reason).
    pub reason: String,
}

/// `personality ARGS --json`: the zones as a list for `list`, the message of the others.
pub fn run_json(args: &[String]) -> Result<serde_json::Value, String> {
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["list"] | [] => serde_json::to_value(zones()?).map_err(|e| e.to_string()),
        ["console", ..] => Err("personality console is a terminal session: it has no --json form".into()),
        _ => Ok(serde_json::json!({ "message": run(args)?.trim_end() })),
    }
}

fn list() -> Result<String, String> {
    let zones = zones()?;
    if zones.is_empty() {
        return Ok("no personalities in the config\n".into());
    }
    let mut out = format!(
        "{:<12} {:<20} {:<20} {:<12} {:<18} {:<20} {}\n",
        "NAME", "IMAGE", "KIND", "STATE", "ADDRESS", "MEMORY", "REASON"
    );
    for zone in zones {
        let memory = match (zone.memory_bytes, zone.memory_cap_mib) {
            (Some(used), Some(cap)) => format!("{} MiB of {cap} MiB", used >> 20),
            (Some(used), None) => format!("{} MiB", used >> 20),
            (None, _) => "-".to_string(),
        };
        let mut reason = zone.reason;
        if zone.persistent_root {
            reason.insert_str(0, "root kept across images; ");
        }
        let _ = writeln!(
            out,
            "{:<12} {:<20} {:<20} {:<12} {:<18} {:<20} {}",
            zone.name,
            format!("{} {}", zone.image, zone.version),
            zone.kind,
            zone.state,
            zone.address,
            memory,
            reason
        );
    }
    Ok(out)
}

/// Every zone PID 1 planned at boot, with its service's state and its cgroup's memory.
fn zones() -> Result<Vec<Zone>, String> {
    let paths = Paths::system();
    let specs = ZoneSpec::all(paths.root());
    // Refused at boot: never a service, shown with PID 1's reason.
    let mut zones: Vec<Zone> = crate::zone::refused(paths.root())
        .into_iter()
        .map(|(name, reason)| Zone {
            name,
            image: "-".into(),
            version: String::new(),
            kind: "-".into(),
            state: "refused".into(),
            address: "-".into(),
            memory_bytes: None,
            memory_cap_mib: None,
            persistent_root: false,
            reason,
        })
        .collect();
    if specs.is_empty() {
        return Ok(zones);
    }
    let services = statuses()?;
    for spec in &specs {
        let status = services.iter().find(|s| s.name == ZoneSpec::service_name(&spec.name));
        let state = status.map_or("unknown".to_string(), |s| s.state.to_string());
        let rollback = ZoneSpec::file(paths.root(), &spec.name, swap::ROLLBACK_NOTE);
        let reason = match std::fs::read_to_string(rollback) {
            Ok(note) => note.trim_end().to_string(),
            Err(_) => status.map_or(String::new(), |s| s.reason.clone()),
        };
        let memory_bytes = std::fs::read_to_string(spec.cgroup.join("memory.current"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        zones.push(Zone {
            name: spec.name.clone(),
            image: spec.image_name.clone(),
            version: spec.version.clone(),
            kind: match spec.runtime {
                Runtime::Zone => "zone".into(),
                Runtime::Vm => format!("vm {} vCPU {} MiB", spec.vm.vcpus, spec.vm.memory_mib),
            },
            state,
            address: address(spec, status),
            memory_bytes,
            memory_cap_mib: spec.caps.memory_mib,
            persistent_root: spec.persistent_root,
            reason,
        });
    }
    zones.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(zones)
}

/// The zone's address: the configured one, or on DHCP the one it leased (`status` is its
/// service's).
fn address(spec: &ZoneSpec, status: Option<&ServiceStatus>) -> String {
    match spec.ip.as_deref() {
        Some("dhcp") => zone_init_of(&spec.name, status)
            .ok()
            .and_then(|pid| {
                let root = Paths::system().proc_of(pid).join("root");
                crate::sys::beneath::read(&root, Path::new(crate::zone::LEASE_FILE), 256).ok()
            })
            .map_or_else(|| "dhcp".to_string(), |a| a.trim().to_string()),
        other => other.unwrap_or("-").to_string(),
    }
}

/// How much of a zone service's log `personality log` shows: its last 4 MiB.
const LOG_LIMIT: u64 = 4 << 20;

fn log(name: &str, service: Option<&str>) -> Result<String, String> {
    let spec = spec(name)?;
    let Some(service) = service else {
        let request = Request::Log {
            service: ZoneSpec::service_name(name),
            lines: crate::supervisor::protocol::DEFAULT_LOG_LINES,
        };
        return match ask(&request)? {
            Response::Log { lines, .. } => Ok(lines.iter().map(|l| format!("{l}\n")).collect()),
            other => Err(unexpected(&other)),
        };
    };
    // What the zone writes to its /var/log/ramkey lands in its writable layer, which the
    // zone controls: read beneath it, never through its symlinks, and only the end.
    let path = Path::new(crate::runtime::services::LOG_DIR).join(format!("{service}.log"));
    crate::sys::beneath::read(&spec.state_dir.join("upper"), &path, LOG_LIMIT)
        .map_err(|e| format!("{e} (is {service:?} a service of {name}?)"))
}

/// The zone's PID 1: the launcher's only child.
fn zone_init(name: &str) -> Result<i32, String> {
    let service = ZoneSpec::service_name(name);
    zone_init_of(name, statuses()?.iter().find(|s| s.name == service))
}

/// The zone's PID 1, from the status of its service.
fn zone_init_of(name: &str, status: Option<&ServiceStatus>) -> Result<i32, String> {
    let launcher = status
        .filter(|s| s.state != State::Disabled)
        .and_then(|s| s.pid)
        .ok_or_else(|| format!("zone {name} is not running (`ramkeyctl personality start {name}`)"))?;
    let children = std::fs::read_to_string(
        Paths::system()
            .proc_of(launcher)
            .join(format!("task/{launcher}/children")),
    )
    .unwrap_or_default();
    children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("zone {name} is still starting; try again"))
}
