//! The life of PID 1: boot, event loop, shutdown; recovery mode on any failure.
//!
//! Architecture invariant: nothing here returns or exits. A panic is caught and turns
//! into recovery mode; a failed `reboot(2)` waits forever, still reaping.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crate::base::clock::{BootClock, Clock};
use crate::base::paths::Paths;
use crate::base::timeline::Timeline;
use crate::boot::recovery;
use crate::boot::{Boot, BootState};
use crate::devices::modprobe::KernelLoader;
use crate::net::KernelNetwork;
use crate::runtime::control::ControlServer;
use crate::runtime::events::{EventLoop, Judge, SIGNALS};
use crate::runtime::host_key::Stores;
use crate::runtime::login;
use crate::runtime::services;
use crate::runtime::shutdown::{self, KernelSystem};
use crate::runtime::sshd::{self, Ssh};
use crate::runtime::supervise::Supervision;
use crate::storage::mounts::KernelMounter;
use crate::storage::pool::PoolState;
use crate::supervisor::logfile::{LogSink, Rotation};
use crate::supervisor::protocol::{BootStep, BootTimeline, SystemInfo};
use crate::{observe, sys, upgrade, zone};
use ramkey_image::service::ServiceSpec;

/// Runs PID 1 with `/` as the root. Never returns.
pub fn run() -> ! {
    if std::env::var_os(crate::vm::GUEST_ENV).is_some() {
        crate::vm::guest::run();
    }
    let clock = BootClock;
    // Every line from here on also goes to PID 1's own log, once the pool is there.
    crate::base::log::hold_early_lines();
    let mut timeline = Timeline::new(clock.since_boot());
    crate::notice!("{}", timeline.started_line());
    // Block the signals first, so that none that arrives during boot is lost.
    let signals = sys::signalfd(SIGNALS);
    if let Err(e) = sys::disable_ctrl_alt_del() {
        crate::warn!("{e}; ctrl-alt-del will reboot at once");
    }

    let paths = Paths::system();
    let mut state = BootState::default();
    let mut loader = KernelLoader;
    let booted = catch_unwind(AssertUnwindSafe(|| {
        Boot {
            paths: &paths,
            clock: &clock,
            mounter: &mut KernelMounter,
            loader: &mut loader,
            watch_uevents: true,
            network: &mut KernelNetwork {
                resolv_conf: paths.root().join("etc/resolv.conf"),
            },
        }
        .run(&mut timeline, &mut state)
    }));
    let cause = match booted {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("panic during boot (see the PANIC line above)".to_owned()),
    };
    let judge = catch_unwind(AssertUnwindSafe(|| trial(&paths, &state))).unwrap_or_else(|_| {
        crate::error!("platform: panic while reading the trial state (see the PANIC line above)");
        None
    });
    let (mut services, mut control) = (None, None);
    match cause {
        None => {
            let started = catch_unwind(AssertUnwindSafe(|| {
                timeline.step(&clock, "services", || start_services(&paths, &mut state))
            }));
            match started {
                Ok((s, c)) => (services, control) = (s, c),
                Err(_) => crate::error!("services: panic while starting them (see the PANIC line above)"),
            }
            let ready = clock.since_boot();
            timeline.log_ready(ready);
            if let Some(services) = services.as_mut() {
                services.info_mut().timeline = Some(Box::new(boot_timeline(&timeline, ready)));
                services.say_settled();
            }
        }
        Some(cause) => {
            timeline.log_steps();
            recovery::announce(&cause);
            let prepared = catch_unwind(AssertUnwindSafe(|| {
                recovery::prepare(&paths, &mut state, &mut loader, &clock);
            }));
            if prepared.is_err() {
                crate::error!("recovery: panic while loading the power button modules");
            }
        }
    }

    let signals = match signals {
        Ok(signals) => signals,
        Err(e) => {
            crate::error!("{e}: cannot watch signals; waiting forever");
            sys::wait_forever();
        }
    };
    let mut events = EventLoop {
        signals,
        uevents: state.uevents.take(),
        buttons: std::mem::take(&mut state.buttons),
        modprobe: state.modprobe.take(),
        loader: Box::new(KernelLoader),
        dev_root: paths.dev(),
        sys_root: paths.sys(),
        services: services.take(),
        control: control.take(),
        leases: std::mem::take(&mut state.leases),
        judge: judge.map(|j| Box::new(j) as Box<dyn Judge>),
    };
    loop {
        match catch_unwind(AssertUnwindSafe(|| events.run())) {
            Ok(Ok(request)) => {
                // The services are stopped: close their log files, which live on the pool
                // under /var, so that the pool can really be unmounted (not just detached).
                drop(events.services.take());
                crate::base::log::detach_tee();
                let failed = catch_unwind(AssertUnwindSafe(|| {
                    shutdown::shutdown(&request, &paths.mounts(), &mut KernelSystem)
                }));
                match failed {
                    Ok(e) => crate::error!("{e}: the box could not {}", request.action.word()),
                    Err(_) => crate::error!("panic during shutdown"),
                }
                crate::error!("waiting forever");
                sys::wait_forever();
            }
            Ok(Err(e)) => recovery::announce(&e),
            Err(_) => recovery::announce(&"panic in the event loop (see the PANIC line above)"),
        }
        // Never spin: a loop that keeps failing retries once a second.
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Which platform slot booted and whether it is on trial ([`upgrade::trial`]); the trial
/// to judge, if it is one.
fn trial(paths: &Paths, state: &BootState) -> Option<upgrade::trial::Running> {
    let key = state.usbkey.as_ref()?;
    let stick = upgrade::trial::Stick {
        node: key.node.clone(),
        mount: paths.usbkey(),
    };
    let watch = upgrade::trial::at_boot(&stick, state.cmdline.slot, &mut KernelMounter)?;
    Some(upgrade::trial::Running { watch, stick })
}

/// The `services` boot step: account files, the platform services started, the control
/// socket bound.
fn start_services(paths: &Paths, state: &mut BootState) -> (Option<Supervision>, Option<ControlServer>) {
    let hash = state.config.as_ref().and_then(|c| c.admin.password_hash.as_deref());
    let console = login::decide(hash);
    let usbkey = state.usbkey.as_ref().map(|_| paths.usbkey());
    keep_own_log(paths);
    let mut defs = services::platform(paths.root(), &paths.sys(), &console, usbkey.as_deref());
    let ssh = ssh(paths, state, usbkey.as_deref());
    match &ssh {
        Ssh::On { spec, .. } => defs.specs.push(spec.as_ref().clone()),
        Ssh::Off { message } => crate::notice!("ssh: off: {message}"),
    }
    defs.specs.extend(log_shipper(paths, state));
    defs.specs.extend(metrics(state));
    defs.specs.extend(zones(paths, state, usbkey.as_deref()));
    let cluster = cluster(paths, state);
    defs.specs.extend(cluster.services);
    defs.disabled.extend(cluster.disabled);
    let control = ControlServer::bind(&paths.control_socket())
        .inspect_err(|e| crate::error!("{e}; ramkeyctl cannot reach PID 1"))
        .ok();
    let cgroups = paths.sys().join("fs/cgroup");
    let info = SystemInfo {
        ssh: ssh.status(),
        ..system_info(paths, state)
    };
    let services = Supervision::start(defs, paths.root(), Some(&cgroups), info)
        .inspect_err(|e| crate::error!("services: not started: {e}"))
        .ok();
    (services, control)
}

/// PID 1's lines, those of the boot so far first, into `ramkey.log` beside the services' logs
/// (on the pool when there is one: `/var` is the pool's by now).
fn keep_own_log(paths: &Paths) {
    let dir = paths.root().join(services::LOG_DIR);
    let mut sink = LogSink::new(dir, observe::ship::sources::PID1_LOG, Rotation::default());
    crate::base::log::attach_tee(Box::new(move |at, line| {
        let _ignored = sink.write(at, format!("{line}\n").as_bytes());
    }));
}

/// The log shipper ([`observe::ship`]) when `[log] remote` is set.
fn log_shipper(paths: &Paths, state: &BootState) -> Option<ServiceSpec> {
    let config = state.config.as_ref()?;
    let (instances, place) = match &state.pool {
        Some(PoolState::Mounted(m)) => (m.mount_point.join(zone::INSTANCES_DIR), "on the pool"),
        _ => (paths.root().join(zone::RAM_INSTANCES_DIR), "in RAM (no pool)"),
    };
    let spec = observe::ship::service(&config.log, &instances)?;
    if let Some(remote) = &config.log.remote {
        let buffer = match config.log.buffer {
            b if b >= 1 << 20 => format!("{} MiB", b >> 20),
            b => format!("{} KiB", b >> 10),
        };
        crate::notice!("log: every line also goes to {remote}, up to {buffer} held {place} while it is unreachable");
    }
    Some(spec)
}

/// The SSH server ([`sshd`]), its host key kept on the pool or else on the usbkey.
fn ssh(paths: &Paths, state: &BootState, usbkey: Option<&std::path::Path>) -> Ssh {
    let pool = match &state.pool {
        Some(PoolState::Mounted(m)) => Some(m.mount_point.as_path()),
        _ => None,
    };
    let node = state.usbkey.as_ref().map(|k| k.node.as_path());
    let mut mounter = KernelMounter;
    sshd::prepare(
        paths.root(),
        state.config.as_ref().map(|c| &c.admin),
        || Stores {
            pool,
            usbkey: node.zip(usbkey),
            mounter: &mut mounter,
        },
        &sshd::interface_addresses,
    )
}

/// The Prometheus exporter ([`observe::metrics`]) when the config has `[metrics]`, on the
/// interface of the NIC with that tag.
fn metrics(state: &BootState) -> Option<ServiceSpec> {
    let config = state.config.as_ref()?;
    let wanted = config.metrics.as_ref()?;
    // The boot renames each NIC to its tag; a DHCP lease records the name of one it did not
    // (a PXE boot's NIC).
    let interface = state
        .leases
        .iter()
        .find(|held| held.tag == wanted.nic)
        .map_or(wanted.nic.as_str(), |held| held.ifname.as_str());
    crate::notice!(
        "metrics: {} on {interface} (NIC {}) port {}",
        observe::metrics::SERVICE,
        wanted.nic,
        wanted.port
    );
    let zones: Vec<&str> = config.personalities.iter().map(|p| p.name.as_str()).collect();
    Some(observe::metrics::service(interface, wanted.port, &zones))
}

/// The boot's steps for `ramkeyctl status --json` and the metrics, done at `ready`.
fn boot_timeline(timeline: &Timeline, ready: Duration) -> BootTimeline {
    let ms = crate::supervisor::state::millis;
    BootTimeline {
        init_start_ms: ms(timeline.init_start),
        ready_ms: ms(ready),
        steps: timeline
            .steps
            .iter()
            .map(|s| BootStep {
                name: s.name.to_owned(),
                start_ms: ms(s.start),
                duration_ms: ms(s.duration),
            })
            .collect(),
    }
}

/// The zones of the config's personalities, as services (see [`crate::zone`]).
fn zones(paths: &Paths, state: &mut BootState, usbkey: Option<&std::path::Path>) -> Vec<ServiceSpec> {
    let Some(config) = state.config.as_ref().filter(|c| !c.personalities.is_empty()) else {
        return Vec::new();
    };
    if let Some(modprobe) = state.modprobe.as_mut() {
        for module in zone::plan::MODULES {
            if let Err(e) = modprobe.modprobe(module, &mut KernelLoader) {
                crate::warn!("zones: module {module}: {e}");
            }
        }
    }
    let version = paths.os_release_field("VERSION_ID").unwrap_or_else(|| "0".into());
    let pool = match &state.pool {
        Some(PoolState::Mounted(m)) => Some(m.mount_point.as_path()),
        _ => None,
    };
    let cgroups = paths.sys().join("fs/cgroup/ramkey");
    let places = zone::plan::Places {
        root: paths.root(),
        usbkey,
        pool,
        cgroups: &cgroups,
        version: &version,
    };
    let mut modprobe = state.modprobe.as_mut();
    let mut vms = || crate::vm::host::enable(paths, usbkey, modprobe.as_deref_mut());
    zone::plan::prepare(config, &places, &mut vms)
}

/// The HA pair's services ([`crate::cluster`]) when the config has `[cluster]`.
fn cluster(paths: &Paths, state: &mut BootState) -> crate::cluster::plan::Setup {
    let Some(config) = state.config.as_ref() else {
        return crate::cluster::plan::Setup::default();
    };
    let pool = match &state.pool {
        Some(PoolState::Mounted(m)) => Some(m.mount_point.as_path()),
        _ => None,
    };
    let mut modprobe = state.modprobe.as_mut();
    let mut load = |module: &str| match modprobe.as_deref_mut() {
        Some(m) => m
            .modprobe(module, &mut KernelLoader)
            .map(drop)
            .map_err(|e| e.to_string()),
        None => Err("no kernel modules on this platform".to_string()),
    };
    crate::cluster::plan::prepare(paths, config, pool, &mut load)
}

/// What `ramkeyctl status` says about the box: the platform, where the config in use came
/// from (the good copy when `config.toml` was invalid) and what was wrong, and the pool.
fn system_info(paths: &Paths, state: &BootState) -> SystemInfo {
    let platform = paths
        .os_release_field("PRETTY_NAME")
        .unwrap_or_else(|| "unknown".to_string());
    SystemInfo {
        platform,
        ..describe(state)
    }
}

/// A mounted pool's disks: attached, and how many its filesystem has.
fn disks(m: &crate::storage::pool::Mounted) -> (u32, u32) {
    let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    (count(m.nodes.len() as u64), count(m.devices))
}

/// The parts of [`system_info`] that come from the boot's state.
fn describe(state: &BootState) -> SystemInfo {
    let config_source = match state.config_source.as_str() {
        "" => "none".to_string(),
        source => source.to_string(),
    };
    let config_error = match (&state.config, &state.config_error) {
        (_, Some(e)) => Some(e.clone()),
        (None, None) => Some("not used: absent or invalid (the boot log has the details)".to_string()),
        (Some(_), None) => None,
    };
    let pool = state
        .pool
        .as_ref()
        .map_or_else(|| "none: the pool step did not run".to_string(), |p| p.to_string());
    let (pool_health, pool_disks) = match &state.pool {
        Some(PoolState::Mounted(m)) if m.degraded => ("degraded", disks(m)),
        Some(PoolState::Mounted(m)) => ("ok", disks(m)),
        Some(PoolState::ReadOnly(m)) => ("read-only", disks(m)),
        Some(PoolState::Diskless { .. }) | None => ("diskless", (0, 0)),
    };
    SystemInfo {
        platform: String::new(),
        config_source,
        config_error,
        pool,
        pool_health: pool_health.to_owned(),
        pool_disks,
        ..SystemInfo::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_the_good_copy_and_the_real_pool() {
        let mut state = BootState {
            config_source: "/usbkey/config.toml.good".into(),
            config_error: Some("/usbkey/config.toml:3:1: unknown key `bogus`".into()),
            pool: Some(PoolState::Diskless {
                refused: Vec::new(),
                problem: Some("mount failed".into()),
            }),
            ..BootState::default()
        };
        let info = describe(&state);
        assert_eq!(info.config_source, "/usbkey/config.toml.good");
        assert_eq!(
            info.config_error.as_deref(),
            Some("/usbkey/config.toml:3:1: unknown key `bogus`")
        );
        assert_eq!(info.pool, "diskless: data is lost at power-off (mount failed)");
        assert_eq!((info.pool_health.as_str(), info.pool_disks), ("diskless", (0, 0)));
        state.pool = None;
        state.config_error = None;
        state.config_source = String::new();
        let info = describe(&state);
        assert_eq!(info.config_source, "none");
        assert!(info.config_error.is_some_and(|e| e.starts_with("not used")));
        assert_eq!(info.pool, "none: the pool step did not run");
    }
}
