//! Bringing the services in line after each event: what `requires` a service that went
//! down stops, every waiting service whose dependencies are ready starts (all in the same
//! step: the parallel start), and during shutdown what nothing depends on any more stops.

use super::engine::Supervisor;
use super::phase::{Phase, Then};
use super::spawner::{Checker, Spawner};
use super::state::State;
use crate::base::clock::Clock;

/// Where the services stand once none is on its way up any more (systemd's `running` or
/// `degraded`): what a boot's `services: running` or `services: degraded` line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// How many services are online.
    pub online: usize,
    /// The enabled services that are not up and will not come up by themselves (in
    /// maintenance, or waiting for one that is), or are up but failing their health check:
    /// name, state, reason.
    pub down: Vec<(String, State, String)>,
}

impl<S: Spawner, K: Checker, C: Clock> Supervisor<S, K, C> {
    /// Brings everything in line after an event; see the module documentation.
    pub(super) fn settle(&mut self) {
        loop {
            let mut progress = false;
            while let Some(i) = self.went_down.pop() {
                progress = true;
                if !self.shutting_down {
                    self.requirement_down(i);
                }
            }
            if self.shutting_down {
                progress |= self.shutdown_step();
            } else if self.booted {
                for i in 0..self.svcs.len() {
                    if self.svcs[i].phase != Phase::Waiting {
                        continue;
                    }
                    match self.blocker(i) {
                        Some(why) => self.enter(i, Phase::Waiting, why),
                        None => {
                            self.launch(i);
                            progress = true;
                        }
                    }
                }
            }
            if !progress && self.went_down.is_empty() {
                return;
            }
        }
    }

    /// `None` while any service is on its way (starting, waiting out a restart delay,
    /// waiting for a dependency that is coming, stopping); then where they all stand.
    pub fn settled(&self) -> Option<Settled> {
        let mut settled = Settled {
            online: 0,
            down: Vec::new(),
        };
        for (i, svc) in self.svcs.iter().enumerate() {
            let down = match svc.phase {
                Phase::Disabled | Phase::Exited => false,
                Phase::Running {
                    ready: true, degraded, ..
                } => {
                    settled.online += usize::from(!degraded);
                    degraded
                }
                Phase::Maintenance => true,
                Phase::Waiting if self.blocked(i, self.svcs.len()) => true,
                Phase::Waiting | Phase::Backoff { .. } | Phase::Running { .. } | Phase::Stopping { .. } => {
                    return None;
                }
            };
            if down {
                let name = self.graph.specs[i].name.clone();
                settled.down.push((name, svc.state, svc.reason.clone()));
            }
        }
        Some(settled)
    }

    /// Service `i` went down: what `requires` it stops, or stops waiting out a delay.
    fn requirement_down(&mut self, i: usize) {
        let name = &self.graph.specs[i].name;
        let why = format!("stopping: requires {name}, which is {}", self.svcs[i].state);
        let dependents: Vec<usize> = self.graph.required_by(i).collect();
        for j in dependents {
            match self.svcs[j].phase {
                Phase::Running { .. } => self.stop(j, Then::Wait, why.clone()),
                Phase::Backoff { .. } => self.enter(j, Phase::Waiting, "waiting for dependencies"),
                _ => {}
            }
        }
    }

    /// Why service `i` cannot start yet, if it cannot.
    fn blocker(&self, i: usize) -> Option<String> {
        let waiting = |d: usize| {
            Some(format!(
                "waiting for {} ({})",
                self.graph.specs[d].name, self.svcs[d].state
            ))
        };
        if let Some(&d) = self.graph.requires[i].iter().find(|&&d| !self.svcs[d].state.is_up()) {
            return waiting(d);
        }
        let d = *self.graph.after[i].iter().find(|&&d| self.pending(d))?;
        waiting(d)
    }

    /// True when service `d` is on its way up (so what is `after` it waits).
    fn pending(&self, d: usize) -> bool {
        match self.svcs[d].phase {
            Phase::Backoff { .. } | Phase::Running { ready: false, .. } => true,
            Phase::Waiting => !self.blocked(d, self.svcs.len()),
            _ => false,
        }
    }

    /// True when waiting service `d` cannot start without the administrator: something it
    /// requires, transitively, is in maintenance, disabled or ended.
    fn blocked(&self, d: usize, depth: usize) -> bool {
        depth == 0
            || self.graph.requires[d].iter().any(|&k| match self.svcs[k].phase {
                Phase::Maintenance | Phase::Disabled | Phase::Exited => true,
                Phase::Waiting => self.blocked(k, depth - 1),
                _ => false,
            })
    }
}
