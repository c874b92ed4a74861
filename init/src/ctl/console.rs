//! `ramkeyctl personality console NAME [-- COMMAND...]`, like `zlogin`: enters the zone's
//! namespaces and cgroup and runs a shell (or the command) there under the zone's own
//! confinement. When the administrator is at a terminal, the zone gets a new
//! pseudo-terminal and this process copies between the two: the administrator's terminal is
//! never handed to the zone.

use std::os::fd::{AsFd, OwnedFd};

use nix::sched::CloneFlags;
use nix::sys::wait::{WaitStatus, waitpid};

use crate::sys::terminal;
use crate::zone::ZoneSpec;

/// Runs `argv` in the zone `spec` whose PID 1 is `pid` (as the host sees it).
pub fn run(spec: &ZoneSpec, pid: i32, argv: &[String]) -> Result<String, String> {
    let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
    let at_terminal = [stdin.as_fd(), stdout.as_fd(), std::io::stderr().as_fd()]
        .into_iter()
        .any(terminal::is_terminal);
    // Opened on the host's devpts before anything is entered.
    let pty = if at_terminal {
        Some(terminal::open_pty(stdin.as_fd()).map_err(|e| e.to_string())?)
    } else {
        None
    };
    // Into the zone's cgroup first, so that what runs here counts against the zone's caps.
    let procs = spec.cgroup.join("cgroup.procs");
    std::fs::write(&procs, std::process::id().to_string()).map_err(|e| format!("{}: {e}", procs.display()))?;
    // Every namespace file is opened before any is entered: after the mount namespace,
    // this /proc is the zone's.
    let kinds = [
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ];
    let mut namespaces: Vec<(OwnedFd, CloneFlags)> = Vec::new();
    for (kind, flag) in kinds {
        let path = format!("/proc/{pid}/ns/{kind}");
        let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        namespaces.push((file.into(), flag));
    }
    for (fd, flag) in &namespaces {
        nix::sched::setns(fd, *flag).map_err(|e| format!("entering the zone's {flag:?} namespace: {e}"))?;
    }
    // The PID namespace applies to children: the command runs in a fork.
    let Some(child) = crate::sys::confine::fork().map_err(|e| e.to_string())? else {
        // In the child, an error returns through `main`, which exits with it.
        if let Some((master, slave)) = pty {
            drop(master);
            terminal::take_terminal(&slave).map_err(|e| e.to_string())?;
        }
        return crate::zone::inside::confine(spec, &[])
            .and_then(|()| exec(argv))
            .map(|()| String::new());
    };
    if let Some((master, slave)) = pty {
        drop(slave);
        let raw = terminal::RawMode::enter(stdin.as_fd()).ok();
        let copied = terminal::proxy(stdin.as_fd(), stdout.as_fd(), &master);
        drop(raw);
        copied.map_err(|e| e.to_string())?;
    }
    match waitpid(child, None) {
        Ok(WaitStatus::Exited(_, 0)) => Ok(String::new()),
        Ok(WaitStatus::Exited(_, code)) => Err(format!("{} exited with status {code}", argv[0])),
        other => Err(format!("{}: {other:?}", argv[0])),
    }
}

/// Replaces this process with `argv`; returns only on failure.
fn exec(argv: &[String]) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let error = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("TERM", std::env::var("TERM").unwrap_or_else(|_| "vt100".into()))
        .env("HOME", "/root")
        .current_dir("/")
        .exec();
    Err(format!("{}: {error}", argv[0]))
}
