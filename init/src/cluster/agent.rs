//! `ramkey-cluster`, the agent: brings each resource's DRBD device up (its backing file on
//! the pool, created on a blank pool), writes keepalived's and DRBD's configuration, then
//! follows keepalived's state changes, one at a time and always towards the latest: MASTER
//! promotes the resources, anything else demotes them. Stopped (SIGTERM: a shutdown, a
//! reboot), it demotes them and takes DRBD down ([`disks::take_down`]) before it exits.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

use super::{Places, Plan, Resource, disks, drbd, say};
use crate::base::paths::Paths;
use crate::runtime::control;
use crate::supervisor::protocol::{Action, Request, Response};
use crate::supervisor::state::State;
use crate::supervisor::{CommandError, ServiceStatus};
use crate::zone::ZoneSpec;

/// How long a promotion waits for DRBD to allow it (the peer's death noticed, a fresh
/// pair connected) and a demotion for the zone to stop.
const PATIENCE: Duration = Duration::from_secs(60);

/// Not a keepalived state: the agent was asked to stop.
const STOP: &str = "stop";

/// Runs the agent; returns on a setup failure (exit status 1) or once stopped (0).
pub fn main() -> i32 {
    let paths = Paths::system();
    let places = Places::new(&paths);
    // Before any thread starts, so that every thread has them blocked.
    let signals = crate::sys::signalfd(&[Signal::SIGTERM, Signal::SIGINT])
        .map_err(|e| say(&paths, &format!("cluster: SIGTERM will not take DRBD down: {e}")))
        .ok();
    // A restarted agent is not ready until it has set DRBD up again.
    let _ = fs::remove_file(places.ready());
    let plan = match Plan::read(&places) {
        Ok(plan) => plan,
        Err(e) => {
            say(&paths, &format!("cluster: not started: {e}"));
            return 1;
        }
    };
    let started = Instant::now();
    if let Err(e) = disks::setup(&paths, &places, &plan) {
        say(&paths, &format!("cluster: not started: {e}"));
        return 1;
    }
    say(
        &paths,
        &format!(
            "cluster: DRBD up for {} in {} ms; waiting for keepalived",
            names(&plan),
            started.elapsed().as_millis()
        ),
    );
    let _ = fs::write(places.ready(), "");
    follow(&paths, &places, &plan, signals);
    0
}

fn names(plan: &Plan) -> String {
    plan.resources
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// keepalived's states from its FIFO, the latest acted on.
fn follow(paths: &Paths, places: &Places, plan: &Plan, signals: Option<SignalFd>) {
    let (tx, rx) = mpsc::channel();
    if let Some(signals) = signals {
        let tx = tx.clone();
        std::thread::spawn(move || {
            loop {
                let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
                let _ = nix::poll::poll(&mut fds, PollTimeout::NONE);
                if let Ok(Some(_)) = crate::sys::read_signal(&signals) {
                    let _ = tx.send(STOP.to_string());
                    return;
                }
            }
        });
    }
    let fifo = places.fifo();
    std::thread::spawn(move || {
        // Read and write, so that keepalived's restarts never give us an end of file.
        let Ok(file) = fs::OpenOptions::new().read(true).write(true).open(&fifo) else {
            return;
        };
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            if let Some(state) = instance_state(&line)
                && tx.send(state).is_err()
            {
                return;
            }
        }
    });
    let mut held = false;
    while let Ok(mut state) = rx.recv() {
        let mut stop = state == STOP;
        while let Ok(newer) = rx.try_recv() {
            stop |= newer == STOP;
            state = newer;
        }
        if stop {
            release(paths, places, plan, "stopping");
            disks::take_down(paths, places, plan);
            return;
        }
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let _ = fs::write(places.role(), format!("{state} {since}\n"));
        let master = state == "MASTER";
        if master == held && !master {
            continue;
        }
        if master {
            say(
                paths,
                &format!("cluster: keepalived says MASTER: taking {}", names(plan)),
            );
            let done = "DRBD primary, volumes mounted, zone starting";
            for line in each(paths, plan, "promoted", done, |r| promote(paths, places, r)) {
                let _ = fs::write(places.unpromoted(), format!("{line}\n"));
                say(paths, &format!("{line}; handing over to the peer"));
            }
        } else {
            let _ = fs::remove_file(places.unpromoted());
            release(paths, places, plan, &format!("keepalived says {state}"));
        }
        held = master;
    }
}

/// Demotes every resource, saying why (`cause`) and how it went.
fn release(paths: &Paths, places: &Places, plan: &Plan, cause: &str) {
    say(paths, &format!("cluster: {cause}: releasing {}", names(plan)));
    let done = "zone stopped, unmounted, DRBD secondary";
    for line in each(paths, plan, "demoted", done, |r| demote(paths, places, r)) {
        say(paths, &line);
    }
}

/// Does `act` to each resource and says how long it took (`done`: what that was); returns
/// the failures' lines (`cluster: NAME: not VERB: why`).
fn each(
    paths: &Paths,
    plan: &Plan,
    verb: &str,
    done: &str,
    act: impl Fn(&Resource) -> Result<(), String>,
) -> Vec<String> {
    let started = Instant::now();
    let mut failed = Vec::new();
    for r in &plan.resources {
        match act(r) {
            Ok(()) => say(
                paths,
                &format!(
                    "cluster: {}: {verb} in {} ms ({done})",
                    r.name,
                    started.elapsed().as_millis()
                ),
            ),
            Err(e) => failed.push(format!("cluster: {}: not {verb}: {e}", r.name)),
        }
    }
    failed
}

/// The state of our instance in a keepalived FIFO line (`INSTANCE "ramkey" MASTER 150`);
/// not the events it reports the same way (`MASTER_RX_LOWER_PRI`: the master heard a
/// lower-priority advert, and stays master).
fn instance_state(line: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    (words.next()? == "INSTANCE").then_some(())?;
    (words.next()?.trim_matches('"') == super::INSTANCE).then_some(())?;
    let state = words.next()?;
    ["MASTER", "BACKUP", "FAULT", "STOP", "DELETED"]
        .contains(&state)
        .then(|| state.to_string())
}

fn promote(paths: &Paths, places: &Places, r: &Resource) -> Result<(), String> {
    let conf = places.drbd_conf();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let d = drbd::device(&paths.proc(), r.minor).ok_or("DRBD does not show the device")?;
        if d.roles.0 == "Primary" {
            break;
        }
        let fresh_pair = d.cstate == "Connected" && d.disks == ("Inconsistent".into(), "Inconsistent".into());
        // Two blank disks: this one becomes the source of the first full sync, after which
        // the two are the same block for block (`new-current-uuid --clear-bitmap` would skip
        // the sync and leave them differing wherever nothing was written yet).
        let force = fresh_pair && places.fresh(&r.name).exists();
        let args: &[&str] = if force {
            &["primary", "--force", &r.name]
        } else {
            &["primary", &r.name]
        };
        let tried = drbd::adm(&conf, args);
        if tried.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            let hint = if d.disks.0 == "UpToDate" {
                String::new()
            } else {
                format!(
                    "; if the peer's copy is lost for good, take this one: drbdadm primary --force {}",
                    r.name
                )
            };
            return Err(format!(
                "DRBD is {} {}/{} {}/{}: {}{hint}",
                d.cstate,
                d.roles.0,
                d.roles.1,
                d.disks.0,
                d.disks.1,
                tried.err().unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let device = places.device(r.minor);
    if !has_ext4(&device) {
        let mut mkfs = std::process::Command::new("mkfs.ext4");
        mkfs.args(["-q", "-L", &r.name]).arg(&device);
        crate::sys::unblock_signals_on_exec(&mut mkfs);
        let out = mkfs.output().map_err(|e| format!("mkfs.ext4: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mkfs.ext4 {}: {}",
                device.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let _ = fs::remove_file(places.fresh(&r.name));
    fs::create_dir_all(&r.volumes).map_err(|e| format!("{}: {e}", r.volumes.display()))?;
    match nix::mount::mount(
        Some(&device),
        &r.volumes,
        Some("ext4"),
        MsFlags::MS_NOATIME,
        None::<&str>,
    ) {
        Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
        Err(e) => return Err(format!("mounting {} on {}: {e}", device.display(), r.volumes.display())),
    }
    svcadm(paths, Action::Enable, &ZoneSpec::service_name(&r.name))
}

/// Stops the resource's zone, unmounts its volumes and makes DRBD secondary. While the box
/// shuts down, PID 1 refuses `svcadm` and stops the zone itself: then this waits for that.
fn demote(paths: &Paths, places: &Places, r: &Resource) -> Result<(), String> {
    let service = ZoneSpec::service_name(&r.name);
    let stopped: fn(&ServiceStatus) -> bool = match svcadm(paths, Action::Disable, &service) {
        Ok(()) => |s| s.state == State::Disabled,
        Err(e) if e == CommandError::ShuttingDown.to_string() => |s| s.pid.is_none(),
        Err(e) => return Err(e),
    };
    let deadline = Instant::now() + PATIENCE;
    while status(paths, &service).is_some_and(|s| !stopped(&s)) {
        if Instant::now() > deadline {
            return Err(format!("{service} did not stop in {} s", PATIENCE.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    match nix::mount::umount2(&r.volumes, MntFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(format!("unmounting {}: {e}", r.volumes.display())),
    }
    let d = drbd::device(&paths.proc(), r.minor);
    if d.is_some_and(|d| d.roles.0 == "Primary") {
        drbd::adm(&places.drbd_conf(), &["secondary", &r.name])?;
    }
    Ok(())
}

/// Whether `device` holds an ext4 (or ext2/3) filesystem: its superblock's magic.
fn has_ext4(device: &Path) -> bool {
    let mut head = [0u8; 1082];
    fs::File::open(device)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head[1080..1082] == [0x53, 0xef])
}

fn svcadm(paths: &Paths, action: Action, service: &str) -> Result<(), String> {
    let request = Request::Svcadm {
        action,
        service: service.to_string(),
    };
    match control::call(&paths.control_socket(), &request, Duration::from_secs(15)) {
        Ok(Response::Error { message }) => Err(message),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("asking PID 1 to {action:?} {service}: {e}")),
    }
}

/// A service's status, from PID 1.
fn status(paths: &Paths, service: &str) -> Option<ServiceStatus> {
    match control::call(
        &paths.control_socket(),
        &Request::Svcs { all: true },
        Duration::from_secs(15),
    ) {
        Ok(Response::Svcs { services }) => services.into_iter().find(|s| s.name == service),
        _ => None,
    }
}

/// A service's state, from PID 1.
pub fn state(paths: &Paths, service: &str) -> Option<State> {
    status(paths, service).map(|s| s.state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_instances_state_from_keepalived_lines() {
        assert_eq!(
            instance_state("INSTANCE \"ramkey\" MASTER 150").as_deref(),
            Some("MASTER")
        );
        assert_eq!(instance_state("INSTANCE \"ramkey\" FAULT 0").as_deref(), Some("FAULT"));
        assert_eq!(instance_state("INSTANCE \"other\" MASTER 150"), None);
        assert_eq!(instance_state("INSTANCE \"ramkey\" MASTER_RX_LOWER_PRI 150"), None);
        assert_eq!(instance_state("GROUP \"ramkey\" MASTER"), None);
    }
}
