//! The supervisor inside PID 1's event loop: starting the platform services, their output
//! pumped into one log per service, exits, timers and check results passed to the engine,
//! control requests answered, and the orderly stop at shutdown with its console lines.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::unistd::Pid;

use crate::base::clock::{BootClock, Clock};
use crate::runtime::services::{self, Definitions};
use crate::runtime::shutdown::{self, Action};
use crate::supervisor::accounts::Accounts;
use crate::supervisor::cgroup::CgroupTree;
use crate::supervisor::logfile::{self, LogSink, Rotation};
use crate::supervisor::process::Output;
use crate::supervisor::protocol::{self, Request, Response, SystemInfo};
use crate::supervisor::state::ServiceStatus;
use crate::supervisor::{Exit, NetChecker, ProcessSpawner, Settled, State, Supervisor};

/// The supervisor as PID 1 runs it.
pub type Platform = Supervisor<ProcessSpawner, NetChecker, BootClock>;

/// How long the services get, all together, to stop at shutdown.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);
/// The most lines one `log` request returns.
const MAX_LOG_LINES: usize = 10_000;

/// The supervisor and what the loop keeps around it.
#[derive(Debug)]
pub struct Supervision {
    sup: Platform,
    checker_fd: OwnedFd,
    outputs: Vec<Output>,
    sinks: BTreeMap<String, LogSink>,
    log_dir: PathBuf,
    info: SystemInfo,
    /// During shutdown: when each service began stopping; `None` once reported stopped.
    stopping: BTreeMap<String, Option<Duration>>,
    deadline: Option<Duration>,
    /// Whether the `services: running` (or `degraded`) line has been said.
    settled_said: bool,
}

impl Supervision {
    /// Loads `defs`, logs their problems, and starts every service. `root` is `/` on the
    /// box (account files, `/var/log/ramkey`); `cgroup_root` is `/sys/fs/cgroup`, or `None`
    /// in a zone, whose caps are the zone's cgroup as a whole.
    pub fn start(
        defs: Definitions,
        root: &Path,
        cgroup_root: Option<&Path>,
        info: SystemInfo,
    ) -> std::io::Result<Self> {
        let log_dir = root.join(services::LOG_DIR);
        if let Err(e) = std::fs::create_dir_all(&log_dir) {
            crate::warn!("services: {}: {e}; service output is lost", log_dir.display());
        }
        let cgroups = cgroup_root.map(CgroupTree::new).and_then(|tree| match tree.prepare() {
            Ok(()) => Some(tree),
            Err(e) => {
                crate::warn!("services: {e}; services run without cgroups or caps");
                None
            }
        });
        let checker = NetChecker::localhost()?;
        let checker_fd = checker.wake_fd().try_clone_to_owned()?;
        let spawner = ProcessSpawner::new(Accounts::new(root), cgroups);
        for e in &defs.errors {
            crate::notice!("services: {e}; skipped");
        }
        let (mut sup, problems) = Supervisor::new(defs.specs, spawner, checker, BootClock);
        for problem in &problems {
            crate::notice!("{}", services::problem_line(problem));
        }
        for name in &defs.disabled {
            let _ignored = sup.disable(name);
        }
        sup.start_all();
        let mut this = Supervision {
            sup,
            checker_fd,
            outputs: Vec::new(),
            sinks: BTreeMap::new(),
            log_dir,
            info,
            stopping: BTreeMap::new(),
            deadline: None,
            settled_said: false,
        };
        let status = this.sup.status();
        let started = status.iter().filter(|s| s.pid.is_some()).count();
        let broken = status.iter().filter(|s| s.state == State::Maintenance).count();
        crate::notice!("services: {started} started, {broken} in maintenance");
        this.collect_outputs();
        Ok(this)
    }

    /// The fd that is readable when check results wait.
    pub fn checker_fd(&self) -> BorrowedFd<'_> {
        self.checker_fd.as_fd()
    }

    /// The services' output pipes, in the order [`Supervision::pump`] takes readiness.
    pub fn output_fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.outputs.iter().map(|o| o.fd.as_fd())
    }

    /// How long the loop may sleep, from `now` (since boot).
    pub fn timeout(&self, now: Duration) -> Option<Duration> {
        let next = [self.sup.next_deadline(), self.deadline].into_iter().flatten().min()?;
        Some(next.saturating_sub(now))
    }

    /// Fires the engine's timers when due.
    pub fn tick(&mut self, now: Duration) {
        if self.sup.next_deadline().is_some_and(|at| at <= now) {
            self.sup.on_timer();
        }
        self.after_event();
    }

    /// Reaped children: services' and checks' exits go to the engine, orphans are ignored.
    pub fn on_exits(&mut self, exits: &[(Pid, Exit)]) {
        for &(pid, exit) in exits {
            self.sup.on_exit(pid, exit);
        }
        self.after_event();
    }

    /// The checker's wake-up fd was readable.
    pub fn on_checks(&mut self) {
        for (ticket, outcome) in self.sup.checker_mut().drain() {
            self.sup.on_check_result(ticket, outcome);
        }
        self.after_event();
    }

    /// Copies the readable output pipes (readiness in [`Supervision::output_fds`] order) into
    /// the logs; pipes at end of file are closed.
    pub fn pump(&mut self, ready: &[bool]) {
        let now = SystemTime::now();
        for i in (0..self.outputs.len()).rev() {
            if !ready.get(i).copied().unwrap_or(false) {
                continue;
            }
            let output = &self.outputs[i];
            let sink = self
                .sinks
                .entry(output.service.clone())
                .or_insert_with(|| LogSink::new(&self.log_dir, &output.service, Rotation::default()));
            let done = sink.pump(output.fd.as_fd(), now).unwrap_or_else(|e| {
                crate::warn!("{}: {e}", output.service);
                true
            });
            if done {
                self.outputs.swap_remove(i);
            }
        }
    }

    /// What `status` says besides the services, to complete after the boot (its timeline).
    pub fn info_mut(&mut self) -> &mut SystemInfo {
        &mut self.info
    }

    /// Every service's status.
    pub fn statuses(&self) -> Vec<ServiceStatus> {
        self.sup.status()
    }

    /// Answers a control request; a `reboot` or `poweroff` also returns the shutdown to run.
    pub fn answer(&mut self, request: Request) -> (Response, Option<shutdown::Request>) {
        let done = |message: String| Response::Done { message };
        let error = |message: String| Response::Error { message };
        let response = match request {
            Request::Status => {
                let status = self.sup.status();
                let uptime = crate::supervisor::state::millis(self.sup.clock().since_boot());
                let mut summary = protocol::summary(&status, uptime, self.sup.shutting_down());
                summary.system = self.info.clone();
                Response::Status { status: summary }
            }
            Request::Svcs { all } => Response::Svcs {
                services: protocol::select(self.sup.status(), all),
            },
            Request::Svcadm { action, service } => {
                use protocol::Action as A;
                let result = match action {
                    A::Enable => self.sup.enable(&service).map(|()| "enabled"),
                    A::Disable => self.sup.disable(&service).map(|()| "disabled"),
                    A::Restart => self.sup.restart(&service).map(|()| "restarting"),
                    A::Clear => self.sup.clear(&service).map(|()| "cleared"),
                };
                self.after_event();
                match result {
                    Ok(what) => done(format!("{service}: {what}")),
                    Err(e) => error(e.to_string()),
                }
            }
            Request::Log { service, lines } => match self.sup.service_status(&service) {
                None => error(format!("no service named `{service}`")),
                Some(_) => match logfile::tail(&self.log_dir, &service, lines.min(MAX_LOG_LINES)) {
                    Ok(lines) => Response::Log { service, lines },
                    Err(e) => error(e.to_string()),
                },
            },
            Request::Reboot | Request::Poweroff => {
                let (action, word) = match request {
                    Request::Reboot => (Action::Reboot, "reboot"),
                    _ => (Action::Poweroff, "poweroff"),
                };
                let shutdown = shutdown::Request {
                    action,
                    reason: format!("ramkeyctl {word}"),
                };
                let message = format!("stopping the services, then {}", action.word());
                return (done(message), Some(shutdown));
            }
        };
        (response, None)
    }

    /// Starts the orderly stop (reverse dependency order) with an overall deadline.
    pub fn begin_shutdown(&mut self, now: Duration) {
        if self.deadline.is_none() {
            self.deadline = Some(now + SHUTDOWN_DEADLINE);
            self.sup.begin_shutdown();
            self.after_event();
        }
    }

    /// True once every service has stopped, or the deadline has passed (then says who is
    /// left; the kill-all that follows ends them).
    pub fn shutdown_finished(&self, now: Duration) -> bool {
        if self.sup.shutdown_done() {
            return true;
        }
        if self.deadline.is_some_and(|d| d <= now) {
            let left: Vec<String> = self
                .sup
                .status()
                .into_iter()
                .filter(|s| s.pid.is_some())
                .map(|s| s.name)
                .collect();
            crate::warn!(
                "services still running after {} s: {}",
                SHUTDOWN_DEADLINE.as_secs(),
                left.join(", ")
            );
            return true;
        }
        false
    }

    /// Once per boot (from the first event after the `ready` line), when no service is on
    /// its way up any more: `services: running (N
    /// online)` when every enabled service is up and healthy, else `services: degraded`
    /// with each one that is not, and why. Tests and operators wait for this line, not
    /// for `ready` (which only says the boot steps are done).
    pub fn say_settled(&mut self) {
        if self.settled_said {
            return;
        }
        let Some(settled) = self.sup.settled() else {
            return;
        };
        self.settled_said = true;
        match settled.down.is_empty() {
            true => crate::notice!("{}", settled_line(&settled)),
            false => crate::warn!("{}", settled_line(&settled)),
        }
    }

    fn collect_outputs(&mut self) {
        self.outputs.extend(self.sup.spawner_mut().take_outputs());
    }

    /// After every event: new pipes, and during shutdown the stop lines in order.
    fn after_event(&mut self) {
        self.collect_outputs();
        if self.deadline.is_none() {
            self.say_settled();
            return;
        }
        let now = self.sup.clock().since_boot();
        let status = self.sup.status();
        for s in &status {
            if let Some(Some(began)) = self.stopping.get(&s.name)
                && s.state != State::Stopping
            {
                let ms = now.saturating_sub(*began).as_millis();
                crate::notice!("stopped {} in {ms} ms", s.name);
                self.stopping.insert(s.name.clone(), None);
            }
        }
        for s in &status {
            if s.state == State::Stopping && !self.stopping.contains_key(&s.name) {
                crate::notice!("stopping {}", s.name);
                self.stopping.insert(s.name.clone(), Some(now));
            }
        }
    }
}

/// The line that says where the services settled.
fn settled_line(settled: &Settled) -> String {
    if settled.down.is_empty() {
        return format!("services: running ({} online)", settled.online);
    }
    let down: Vec<String> = settled
        .down
        .iter()
        .map(|(name, state, reason)| format!("{name} {state}: {reason}"))
        .collect();
    format!("services: degraded ({} online; {})", settled.online, down.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settled_line_names_what_is_down_and_why() {
        let mut settled = Settled {
            online: 4,
            down: vec![],
        };
        assert_eq!(settled_line(&settled), "services: running (4 online)");
        settled
            .down
            .push(("web".into(), State::Maintenance, "restarted 5 times in 60 s".into()));
        assert_eq!(
            settled_line(&settled),
            "services: degraded (4 online; web maintenance: restarted 5 times in 60 s)"
        );
    }
}
