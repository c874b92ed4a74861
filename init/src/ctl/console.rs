//! `ramkeyctl personality console NAME [-- COMMAND...]`, like `zlogin`: enters the zone's
//! namespaces and cgroup and runs a shell (or the command) there as the zone's root, under
//! the zone's own confinement. When the administrator is at a terminal, the zone gets a new
//! pseudo-terminal and this process copies between the two: the administrator's terminal is
//! never handed to the zone.

use std::os::fd::{AsFd, OwnedFd};

use nix::sched::CloneFlags;
use nix::sys::wait::{WaitStatus, waitpid};

use crate::base::paths::Paths;
use crate::sys::terminal;
use crate::zone::ZoneSpec;

/// What stands between the zone and the administrator's terminal.
enum Relay {
    /// A pseudo-terminal: the zone's side is `slave`.
    Pty { master: OwnedFd, slave: OwnedFd },
    /// A pipe for the `outputs` (1, 2) that are terminals; the zone's side is `write`.
    Pipe {
        read: OwnedFd,
        write: OwnedFd,
        outputs: Vec<i32>,
    },
    /// Nothing is a terminal.
    None,
}

/// Runs `argv` in the zone `spec` whose PID 1 is `pid` (as the host sees it).
pub fn run(spec: &ZoneSpec, pid: i32, argv: &[String]) -> Result<String, String> {
    let paths = Paths::system();
    let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
    // Opened before anything is entered (the pseudo-terminal on the host's devpts): an
    // interactive session gets a terminal of its own; output to a terminal goes through a
    // pipe; files and pipes are handed over as they are.
    let relay = if terminal::is_terminal(stdin.as_fd()) {
        let (master, slave) = terminal::open_pty(stdin.as_fd()).map_err(|e| e.to_string())?;
        Relay::Pty { master, slave }
    } else {
        let outputs: Vec<i32> = [(1, stdout.as_fd()), (2, std::io::stderr().as_fd())]
            .into_iter()
            .filter(|(_, fd)| terminal::is_terminal(*fd))
            .map(|(n, _)| n)
            .collect();
        if outputs.is_empty() {
            Relay::None
        } else {
            let (read, write) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
            Relay::Pipe {
                read: read.into(),
                write: write.into(),
                outputs,
            }
        }
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
        let path = paths.proc_of(pid).join("ns").join(kind);
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        namespaces.push((file.into(), flag));
    }
    // The user namespace last, in the child: inside it this process could not enter the
    // others (they belong to the host's) and would no longer be the host's root.
    let path = paths.proc_of(pid).join("ns/user");
    let user = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    for (fd, flag) in &namespaces {
        nix::sched::setns(fd, *flag).map_err(|e| format!("entering the zone's {flag:?} namespace: {e}"))?;
    }
    // The PID namespace applies to children: the command runs in a fork.
    let Some(child) = crate::sys::confine::fork().map_err(|e| e.to_string())? else {
        // In the child, an error returns through `main`, which exits with it.
        match relay {
            Relay::Pty { master, slave } => {
                drop(master);
                terminal::take_terminal(&slave).map_err(|e| e.to_string())?;
            }
            Relay::Pipe { read, write, outputs } => {
                drop(read);
                terminal::redirect(&write, &outputs).map_err(|e| e.to_string())?;
            }
            Relay::None => {}
        }
        return crate::zone::inside::become_zone_root(&user)
            .and_then(|()| crate::zone::inside::confine(&paths, spec, &[]))
            .map_err(String::from)
            .and_then(|()| exec(&paths, argv))
            .map(|()| String::new());
    };
    let copied = match relay {
        Relay::Pty { master, slave } => {
            drop(slave);
            let _raw = terminal::RawMode::enter(stdin.as_fd()).ok();
            terminal::proxy(Some(stdin.as_fd()), stdout.as_fd(), &master)
        }
        Relay::Pipe { read, write, outputs } => {
            drop(write);
            let stderr = std::io::stderr();
            let out = if outputs.contains(&1) {
                stdout.as_fd()
            } else {
                stderr.as_fd()
            };
            terminal::proxy(None, out, &read)
        }
        Relay::None => Ok(()),
    };
    copied.map_err(|e| e.to_string())?;
    match waitpid(child, None) {
        Ok(WaitStatus::Exited(_, 0)) => Ok(String::new()),
        Ok(WaitStatus::Exited(_, code)) => Err(format!("{} exited with status {code}", argv[0])),
        other => Err(format!("{}: {other:?}", argv[0])),
    }
}

/// Replaces this process with `argv` (in the zone: `paths` are its own); returns only on
/// failure.
fn exec(paths: &Paths, argv: &[String]) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let error = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("TERM", std::env::var("TERM").unwrap_or_else(|_| "vt100".into()))
        .env("HOME", paths.root_home())
        .current_dir(paths.root())
        .exec();
    Err(format!("{}: {error}", argv[0]))
}
