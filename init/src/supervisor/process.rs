//! The real [`Spawner`]: `std::process::Command`, each service in its own process group and
//! cgroup, its stdout and stderr on one pipe for its log.
//!
//! `Command` sets the uid and gid (dropping supplementary groups when PID 1 is root), the
//! working directory, a clean environment and the process group; it does not reset the
//! signal mask that PID 1 blocks for its signalfd, so [`crate::sys::unblock_signals_on_exec`]
//! adds a `pre_exec` step (the only `unsafe`, in `sys.rs`) that does. See `cgroup.rs` for
//! the placement race of spawning without code of our own between `fork` and `exec`.

use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use ramkey_image::service::Caps;

use super::accounts::Accounts;
use super::cgroup::CgroupTree;
use super::spawner::{Launch, Purpose, SpawnError, Spawner};

/// `PATH` for every service unless its environment sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The read end of a service's output pipe, for its [`super::LogSink`].
#[derive(Debug)]
pub struct Output {
    /// The service.
    pub service: String,
    /// Non-blocking read end; end of file when the process (and its children) are gone.
    pub fd: OwnedFd,
}

/// Starts real processes.
#[derive(Debug)]
pub struct ProcessSpawner {
    accounts: Accounts,
    cgroups: Option<CgroupTree>,
    outputs: Vec<Output>,
}

impl ProcessSpawner {
    /// Resolves users with `accounts`; places services in `cgroups` when given (call
    /// [`CgroupTree::prepare`] first).
    pub fn new(accounts: Accounts, cgroups: Option<CgroupTree>) -> Self {
        ProcessSpawner {
            accounts,
            cgroups,
            outputs: Vec::new(),
        }
    }

    /// The output pipes of the services started since the last call.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// Creates the service's cgroup with its caps. A failure is fatal to the spawn only when
    /// the service has caps; otherwise it runs without its own cgroup.
    fn cgroup_for(&self, launch: &Launch<'_>) -> Result<Option<&CgroupTree>, SpawnError> {
        let Some(tree) = &self.cgroups else {
            return Ok(None);
        };
        match tree.configure(launch.service, &launch.caps) {
            Ok(()) => Ok(Some(tree)),
            Err(e) if has_caps(&launch.caps) => Err(e.into()),
            Err(e) => {
                crate::warn!("{}: no cgroup of its own: {e}", launch.service);
                Ok(None)
            }
        }
    }
}

fn has_caps(caps: &Caps) -> bool {
    caps.memory_mib.is_some() || caps.cpu_percent.is_some() || caps.pids.is_some()
}

impl Spawner for ProcessSpawner {
    fn spawn(&mut self, launch: &Launch<'_>) -> Result<Pid, SpawnError> {
        let ids = self.accounts.resolve(launch.user, launch.group)?;
        let tree = match launch.purpose {
            Purpose::Service => self.cgroup_for(launch)?,
            Purpose::Check => None,
        };
        let program = launch.argv.first().cloned().unwrap_or_default();
        let mut cmd = Command::new(&program);
        cmd.args(&launch.argv[1.min(launch.argv.len())..])
            .env_clear()
            .env("PATH", DEFAULT_PATH)
            .envs(launch.env)
            .current_dir(launch.workdir.unwrap_or("/"))
            .process_group(0)
            .stdin(Stdio::null());
        crate::sys::unblock_signals_on_exec(&mut cmd);
        if launch.user.is_some() || launch.group.is_some() {
            cmd.uid(ids.uid).gid(ids.gid);
        }
        let reader = match launch.purpose {
            Purpose::Service => {
                let (reader, writer) = std::io::pipe().map_err(SpawnError::Pipe)?;
                cmd.stdout(writer.try_clone().map_err(SpawnError::Pipe)?).stderr(writer);
                Some(reader)
            }
            Purpose::Check => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
                None
            }
        };
        let child = cmd.spawn().map_err(|source| SpawnError::Exec { program, source })?;
        // Close our copies of the pipe's write end, so that the reader sees end of file.
        drop(cmd);
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        // `Child` neither waits nor kills on drop: the event loop reaps it.
        drop(child);
        if let Some(tree) = tree
            && let Err(e) = tree.add(launch.service, pid)
        {
            if has_caps(&launch.caps) {
                let _ignored = kill(pid, Signal::SIGKILL);
                return Err(e.into());
            }
            crate::warn!("{}: not placed in its cgroup: {e}", launch.service);
        }
        if let Some(reader) = reader {
            let fd = OwnedFd::from(reader);
            fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(|e| SpawnError::Pipe(e.into()))?;
            self.outputs.push(Output {
                service: launch.service.to_string(),
                fd,
            });
        }
        Ok(pid)
    }

    fn signal(&mut self, pid: Pid, signal: Signal) {
        if killpg(pid, signal) == Err(Errno::ESRCH) {
            let _ignored = kill(pid, signal);
        }
    }

    fn kill_rest(&mut self, service: &str) {
        if let Some(tree) = &self.cgroups
            && let Err(e) = tree.kill(service)
        {
            crate::debug!("{service}: cgroup.kill: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Read;

    use nix::sys::wait::{WaitStatus, waitpid};
    use ramkey_image::service::ServiceSpec;

    use super::*;

    #[test]
    fn runs_a_process_with_its_env_workdir_and_output_pipe() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = ServiceSpec::new(
            "echo",
            vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo $GREETING; pwd; echo oops >&2".into(),
            ],
        );
        spec.env = BTreeMap::from([("GREETING".to_string(), "hello".to_string())]);
        spec.workdir = Some(dir.path().display().to_string());
        let mut spawner = ProcessSpawner::new(Accounts::new("/"), None);
        let pid = spawner.spawn(&Launch::service(&spec)).unwrap();
        assert_eq!(waitpid(pid, None).unwrap(), WaitStatus::Exited(pid, 0));
        let mut outputs = spawner.take_outputs();
        assert_eq!(outputs.len(), 1);
        let mut text = String::new();
        std::fs::File::from(outputs.remove(0).fd)
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(
            text,
            format!("hello\n{}\noops\n", dir.path().canonicalize().unwrap().display())
        );
    }

    #[test]
    fn children_start_with_no_blocked_signals() {
        use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
        // PID 1 blocks the signals it reads from its signalfd; children must not inherit that.
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGTERM);
        mask.add(Signal::SIGCHLD);
        let mut old = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old)).unwrap();
        let spec = ServiceSpec::new(
            "mask",
            // Not through a shell: shells clear their mask themselves and would hide it.
            vec!["/bin/grep".into(), "SigBlk".into(), "/proc/self/status".into()],
        );
        let mut spawner = ProcessSpawner::new(Accounts::new("/"), None);
        let pid = spawner.spawn(&Launch::service(&spec));
        pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None).unwrap();
        let pid = pid.unwrap();
        waitpid(pid, None).unwrap();
        // The pipe is non-blocking (the event loop's), and a child another test forks at
        // the same moment may hold its write end until it execs: read on until the end.
        let mut file = std::fs::File::from(spawner.take_outputs().remove(0).fd);
        let (mut bytes, mut buf) = (Vec::new(), [0u8; 512]);
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("{e}"),
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(text.split_whitespace().nth(1), Some("0000000000000000"), "{text}");
    }

    #[test]
    fn a_missing_program_is_an_exec_error() {
        let spec = ServiceSpec::new("ghost", vec!["/nonexistent/ghost".into()]);
        let mut spawner = ProcessSpawner::new(Accounts::new("/"), None);
        let err = spawner.spawn(&Launch::service(&spec)).unwrap_err().to_string();
        assert!(err.starts_with("/nonexistent/ghost: "), "{err}");
        assert!(spawner.take_outputs().is_empty());
    }
}
