//! What the administrator asks (`svcadm enable|disable|restart|clear`), shutdown, and the
//! status `svcs` shows.
//!
//! Shutdown goes in reverse dependency order: a service is sent its stop signal once nothing
//! still running `requires` it or is `after` it; independent services stop in parallel.
//! After each one's `stop_timeout_secs` it gets SIGKILL.

use super::engine::{Phase, Supervisor, Then};
use super::spawner::{Checker, Spawner};
use super::state::{ServiceStatus, State, millis};
use crate::base::clock::Clock;

/// A command the supervisor refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No service has this name.
    #[error("no service named `{0}`")]
    Unknown(String),
    /// The definition is broken (cycle, missing dependency, invalid); `clear` cannot fix it.
    #[error("service `{service}` cannot run until its definition is fixed: {reason}")]
    Broken {
        /// The service.
        service: String,
        /// The load problem.
        reason: String,
    },
    /// `clear` of a service that is not in maintenance.
    #[error("service `{service}` is not in maintenance (it is {state})")]
    NotInMaintenance {
        /// The service.
        service: String,
        /// Its state.
        state: State,
    },
    /// `restart` of a disabled service or one in maintenance.
    #[error("service `{service}` is {state}: use `svcadm {hint}` first")]
    NotRunnable {
        /// The service.
        service: String,
        /// Its state.
        state: State,
        /// `enable` or `clear`.
        hint: &'static str,
    },
    /// The system is shutting down.
    #[error("the system is shutting down")]
    ShuttingDown,
}

impl<S: Spawner, K: Checker, C: Clock> Supervisor<S, K, C> {
    /// `svcadm enable`: a disabled service waits for its dependencies, then starts; one
    /// still stopping after a `disable` starts again once it has stopped.
    pub fn enable(&mut self, name: &str) -> Result<(), CommandError> {
        let i = self.command_target(name)?;
        match &mut self.svcs[i].phase {
            Phase::Disabled => {
                self.enter(i, Phase::Waiting, "enabled by the administrator");
                self.settle();
            }
            Phase::Stopping { then, .. } if *then == Then::Disable => *then = Then::Restart,
            _ => {}
        }
        Ok(())
    }

    /// `svcadm disable`: stops the service (and what requires it) and keeps it stopped.
    pub fn disable(&mut self, name: &str) -> Result<(), CommandError> {
        let i = self.command_target(name)?;
        match self.svcs[i].phase {
            Phase::Disabled => {}
            Phase::Running { .. } | Phase::Stopping { .. } => {
                self.stop(i, Then::Disable, "stopping: disabled by the administrator".into());
            }
            _ => self.enter(i, Phase::Disabled, "disabled by the administrator"),
        }
        self.settle();
        Ok(())
    }

    /// `svcadm restart`: stops and starts the service at once, without using its budget.
    pub fn restart(&mut self, name: &str) -> Result<(), CommandError> {
        let i = self.command_target(name)?;
        let state = self.svcs[i].state;
        match self.svcs[i].phase {
            Phase::Disabled | Phase::Maintenance => {
                let hint = if state == State::Disabled { "enable" } else { "clear" };
                return Err(CommandError::NotRunnable {
                    service: name.to_string(),
                    state,
                    hint,
                });
            }
            Phase::Running { .. } | Phase::Stopping { .. } => {
                self.stop(i, Then::Restart, "stopping: restart requested".into());
            }
            Phase::Backoff { .. } | Phase::Exited => {
                self.enter(i, Phase::Waiting, "restart requested by the administrator");
            }
            Phase::Waiting => {}
        }
        self.settle();
        Ok(())
    }

    /// `svcadm clear`: takes the service out of maintenance, forgets its restarts and
    /// starts it.
    pub fn clear(&mut self, name: &str) -> Result<(), CommandError> {
        let i = self.command_target(name)?;
        if self.svcs[i].phase != Phase::Maintenance {
            return Err(CommandError::NotInMaintenance {
                service: name.to_string(),
                state: self.svcs[i].state,
            });
        }
        let svc = &mut self.svcs[i];
        svc.window.clear();
        svc.failures = 0;
        svc.restarts = 0;
        self.enter(i, Phase::Waiting, "cleared by the administrator");
        self.settle();
        Ok(())
    }

    /// Starts the shutdown: nothing starts or restarts any more, and services are stopped
    /// in reverse dependency order as their dependents exit. Call
    /// [`Supervisor::shutdown_done`] after each event to know when all have exited.
    pub fn begin_shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        for i in 0..self.svcs.len() {
            match self.svcs[i].phase.clone() {
                Phase::Waiting | Phase::Backoff { .. } => {
                    self.enter(i, Phase::Exited, "not started: the system is shutting down");
                }
                Phase::Stopping { pid, kill_at, .. } => {
                    let then = Then::Shutdown;
                    self.svcs[i].phase = Phase::Stopping { pid, kill_at, then };
                }
                _ => {}
            }
        }
        self.settle();
    }

    /// True once shutdown has begun and no service process is left.
    pub fn shutdown_done(&self) -> bool {
        self.shutting_down && self.svcs.iter().all(|s| s.phase.pid().is_none())
    }

    /// True after [`Supervisor::begin_shutdown`].
    pub fn shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Stops every running service that nothing alive depends on; true if it stopped one.
    pub(super) fn shutdown_step(&mut self) -> bool {
        let mut stopped = false;
        for i in 0..self.svcs.len() {
            if !matches!(self.svcs[i].phase, Phase::Running { .. }) {
                continue;
            }
            let needed = (0..self.svcs.len())
                .any(|j| j != i && self.svcs[j].phase.pid().is_some() && self.graph.waits_for(j, i));
            if !needed {
                self.stop(i, Then::Shutdown, "stopping: the system is shutting down".into());
                stopped = true;
            }
        }
        stopped
    }

    /// Every service, in definition order.
    pub fn status(&self) -> Vec<ServiceStatus> {
        (0..self.svcs.len()).map(|i| self.status_of(i)).collect()
    }

    /// One service by name.
    pub fn service_status(&self, name: &str) -> Option<ServiceStatus> {
        self.graph.find(name).map(|i| self.status_of(i))
    }

    fn status_of(&self, i: usize) -> ServiceStatus {
        let svc = &self.svcs[i];
        ServiceStatus {
            name: self.graph.specs[i].name.clone(),
            state: svc.state,
            since_ms: millis(svc.since),
            reason: svc.reason.clone(),
            pid: svc.phase.pid().map(|p| p.as_raw()),
            restarts: svc.restarts,
            started_ms: match svc.phase {
                Phase::Running { started, .. } => Some(millis(started)),
                _ => None,
            },
            history: svc.history.iter().cloned().collect(),
        }
    }

    fn command_target(&self, name: &str) -> Result<usize, CommandError> {
        if self.shutting_down {
            return Err(CommandError::ShuttingDown);
        }
        let i = self
            .graph
            .find(name)
            .ok_or_else(|| CommandError::Unknown(name.to_string()))?;
        match &self.graph.broken[i] {
            Some(reason) => Err(CommandError::Broken {
                service: name.to_string(),
                reason: reason.clone(),
            }),
            None => Ok(i),
        }
    }
}
