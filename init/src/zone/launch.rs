//! `ramkey-zone NAME`: the launcher PID 1's supervisor runs for each zone. It joins the
//! zone's cgroup, forks the zone's PID 1 into a new PID namespace, gives it its macvlan
//! interface once it has its own network namespace, then waits for it, forwarding the stop
//! signal; its exit status is the zone's.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{ZoneError, ZoneSpec, inside, macvlan_name};
use crate::base::log::Level;
use crate::base::paths::Paths;
use crate::net::netlink::{Netlink, RouteSocket};
use crate::net::source_check::{self, ZoneSource};
use crate::supervisor::State;
use crate::supervisor::protocol::{Request, Response};
use crate::sys;

/// The byte the launcher sends when the zone's interface is in place (or not needed).
pub const NET_READY: u8 = b'n';
/// The byte the launcher sends when the interface could not be made.
pub const NET_FAILED: u8 = b'x';

/// Runs the launcher for the zone named by `args[0]`; returns the exit status.
pub fn main(args: &[String]) -> i32 {
    if let [flag, name] = args
        && flag == "--ready"
    {
        return match ready(name) {
            Ok(()) => 0,
            Err(why) => {
                eprintln!("zone {name}: not ready: {why}");
                1
            }
        };
    }
    let Some(name) = args.first() else {
        eprintln!("usage: ramkey-zone NAME | --ready NAME (run by PID 1 for each personality)");
        return 2;
    };
    match run(name) {
        Ok(code) => code,
        Err(e) => {
            crate::error!("zone {name}: {e}");
            1
        }
    }
}

fn run(name: &str) -> Result<i32, ZoneError> {
    let paths = Paths::system();
    let spec = ZoneSpec::read(paths.root(), name)?;
    let not_started = |e| ZoneError::NotStarted(Box::new(e));
    let base = super::ids::base(&spec.state_dir).map_err(not_started)?;
    // The supervisor moves the launcher into the zone's cgroup just after starting it; do it
    // here too, so that the zone's processes are inside it however fast they fork. A zone
    // outside its cgroup would run without its caps and its device program: it does not start.
    let procs = spec.cgroup.join("cgroup.procs");
    std::fs::write(&procs, std::process::id().to_string())
        .map_err(|source| not_started(ZoneError::JoinCgroup { procs, source }))?;
    // The device program of the zone's last run: off until the new root is built (the zone's
    // PID 1 attaches the loop device of its image first, then restricts the cgroup again).
    sys::devices::release(&spec.cgroup).map_err(|e| not_started(e.into()))?;
    let signals = sys::signalfd(&[Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD])?;
    nix::sched::unshare(CloneFlags::CLONE_NEWPID).map_err(ZoneError::call("unshare(CLONE_NEWPID)"))?;
    let (from_child, to_parent) = std::io::pipe().map_err(ZoneError::Pipe)?;
    let (from_parent, to_child) = std::io::pipe().map_err(ZoneError::Pipe)?;
    // Setup failures also go to the console, where an administrator watching the boot is;
    // the zone's log (this process's output) has them too.
    let console = std::fs::OpenOptions::new().write(true).open(paths.console()).ok();
    let Some(child) = sys::confine::fork()? else {
        // The zone's PID 1: its status goes back up through `main`.
        drop((from_child, to_child, signals));
        return Ok(inside::run(&paths, &spec, base, console, to_parent, from_parent));
    };
    drop((to_parent, from_parent));
    // This launcher stays in the zone's cgroup (as host root, in the host's namespaces, out
    // of the zone's sight) to wait for its PID 1: the zone's own out-of-memory kill must
    // never pick it, or a zone could end its own supervision. Set after the fork, so the
    // zone's processes keep the default.
    if let Err(e) = std::fs::write(paths.proc_of("self").join("oom_score_adj"), "-1000") {
        crate::warn!("zone {name}: the launcher stays killable by the zone's OOM: {e}");
    }
    let pid_file = pid_file(&paths, name);
    if let Err(e) = std::fs::write(&pid_file, child.to_string()) {
        crate::warn!("zone {name}: {}: {e}", pid_file.display());
    }
    let checked = give_network(&spec, base, child, from_child.into(), to_child.into(), console);
    let status = wait(name, child, &signals);
    // The zone's frames are gone with its macvlan; so goes the filter that let them out.
    if let Some(checked) = checked {
        unguard(name, checked);
    }
    status
}

/// Where the launcher notes the zone's PID 1 (as the host sees it).
fn pid_file(paths: &Paths, name: &str) -> std::path::PathBuf {
    ZoneSpec::file(paths.root(), name, "pid")
}

/// `ramkey-zone --ready NAME`, the zone service's readiness check: the zone is set up and
/// every one of its services is online, or has finished cleanly (a one-shot), or is disabled.
/// Asked over the zone's own control socket.
pub fn ready(name: &str) -> Result<(), ZoneError> {
    let paths = Paths::system();
    let pid = std::fs::read_to_string(pid_file(&paths, name)).map_err(ZoneError::NoPid1)?;
    // The socket is in the zone's /run, which the zone controls: found beneath its root.
    let root = paths.proc_of(pid.trim()).join("root");
    let socket =
        sys::beneath::socket(&root, Path::new(crate::runtime::control::SOCKET)).map_err(ZoneError::ControlSocket)?;
    let timeout = std::time::Duration::from_secs(3);
    let at = sys::beneath::fd_path(&paths.proc(), &socket);
    let services = match crate::runtime::control::call(&at, &Request::Svcs { all: true }, timeout) {
        Ok(Response::Svcs { services }) => services,
        Ok(other) => return Err(ZoneError::UnexpectedAnswer(Box::new(other))),
        Err(e) => return Err(ZoneError::ControlCall(e)),
    };
    let waiting = waiting(&services);
    if waiting.is_empty() {
        Ok(())
    } else {
        Err(ZoneError::Waiting(waiting))
    }
}

/// The services of a zone (or guest) that it still waits for: not online, not disabled,
/// and not a one-shot that finished; each with its state and reason.
pub fn waiting(services: &[crate::supervisor::ServiceStatus]) -> Vec<String> {
    services
        .iter()
        .filter(|s| {
            let finished = s.state == State::Offline && s.pid.is_none() && s.reason.starts_with("exited with");
            !(finished || matches!(s.state, State::Online | State::Disabled))
        })
        .map(|s| format!("{} {} ({})", s.name, s.state, s.reason))
        .collect()
}

/// Waits for the child to have its own network namespace, creates its interface there
/// with the source check on the parent NIC, and tells it so; returns the NIC and the
/// priority of the check. A failure is logged and shown on `console` too, above the zone's
/// own "not started" line.
fn give_network(
    spec: &ZoneSpec,
    base: u32,
    child: Pid,
    from_child: OwnedFd,
    to_child: OwnedFd,
    console: Option<std::fs::File>,
) -> Option<(u32, u16)> {
    let mut from_child = std::fs::File::from(from_child);
    let mut to_child = std::fs::File::from(to_child);
    let mut byte = [0u8; 1];
    if from_child.read_exact(&mut byte).is_err() {
        return None; // The child died before unsharing; `wait` reports its status.
    }
    let mut checked = None;
    let answer = match &spec.nic {
        None => NET_READY,
        Some(nic) => match macvlan(spec, base, nic, child) {
            Ok(check) => {
                checked = Some(check);
                NET_READY
            }
            Err(e) => {
                let line = format!("zone {}: network: {e}", spec.name);
                crate::error!("{line}");
                if let Some(mut console) = console {
                    crate::base::log::to_console(&mut console, Level::Error, format_args!("{line}"));
                }
                NET_FAILED
            }
        },
    };
    let _ = to_child.write_all(&[answer]);
    checked
}

/// Creates the macvlan interface on host NIC `nic` inside `child`'s network namespace, with
/// the zone's own MAC, and the source check for it on `nic` (the zone does not start
/// without it); returns the NIC's index and the check's priority.
fn macvlan(spec: &ZoneSpec, base: u32, nic: &str, child: Pid) -> Result<(u32, u16), ZoneError> {
    let mut socket = RouteSocket::open().map_err(ZoneError::Netlink)?;
    let links = socket.links().map_err(ZoneError::Netlink)?;
    let parent = links
        .iter()
        .find(|l| l.name == nic)
        .ok_or_else(|| ZoneError::NoNic(nic.to_string()))?;
    let own = parent.mac.ok_or_else(|| ZoneError::NoMac(nic.to_string()))?;
    let mac = spec.mac.unwrap_or_else(|| source_check::zone_mac(own, &spec.name));
    let pid = u32::try_from(child.as_raw()).unwrap_or(0);
    socket
        .add_macvlan(parent.index, &macvlan_name(child.as_raw()), pid, mac)
        .map_err(|source| ZoneError::Macvlan {
            nic: nic.to_string(),
            source,
        })?;
    guard(spec, base, &mut socket, nic, (parent.index, own), mac)
}

/// Installs the source check on host NIC `nic` (its index and own MAC) for the zone's (or
/// VM's) frames from `mac`; returns the NIC's index and the check's priority, for
/// [`unguard`].
pub fn guard(
    spec: &ZoneSpec,
    base: u32,
    socket: &mut RouteSocket,
    nic: &str,
    (index, own): (u32, [u8; 6]),
    mac: [u8; 6],
) -> Result<(u32, u16), ZoneError> {
    let priority = u16::try_from(super::ids::slot(base) + 1)
        .ok()
        .filter(|p| *p < source_check::HOST_PRIORITY)
        .ok_or(ZoneError::TooManyZones)?;
    let source = ZoneSource {
        mac,
        ipv4: spec.static_ipv4(),
    };
    source_check::install(socket, index, own, &spec.name, source, priority).map_err(|source| {
        ZoneError::SourceCheck {
            nic: nic.to_string(),
            source,
        }
    })?;
    Ok((index, priority))
}

/// Removes the source check [`guard`] installed (the zone's frames are gone with its link).
pub fn unguard(name: &str, (index, priority): (u32, u16)) {
    let removed = RouteSocket::open().and_then(|mut s| source_check::remove(&mut s, index, priority));
    if let Err(e) = removed {
        crate::warn!("zone {name}: removing its source check: {e}");
    }
}

/// Forwards SIGTERM/SIGINT to the zone's PID 1 and returns its exit status when it ends.
fn wait(name: &str, child: Pid, signals: &SignalFd) -> Result<i32, ZoneError> {
    loop {
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(ZoneError::call("poll")(e)),
        }
        while let Some(signo) = sys::read_signal(signals)? {
            if signo != Signal::SIGCHLD as i32 {
                if let Ok(signal) = Signal::try_from(signo) {
                    let _ = kill(child, signal);
                }
                continue;
            }
            match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => {
                    crate::notice!("zone {name}: stopped (exit status {code})");
                    return Ok(code);
                }
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    crate::notice!("zone {name}: killed by {signal}");
                    return Ok(128 + signal as i32);
                }
                _ => {}
            }
        }
    }
}
