//! The service supervisor (SMF on Linux): service definitions in, processes supervised.
//!
//! The engine ([`Supervisor`]) is a pure state machine: the PID 1 event loop feeds it events
//! (boot, reaped children, timers, check results, administrator commands) and it acts
//! through small traits ([`Spawner`], [`Checker`], [`Clock`](crate::base::clock::Clock)), so that
//! all of it is tested with fakes. The rest of the module is what the loop needs around it:
//! the real spawner with per-service cgroups, per-service log files, and the control
//! socket's protocol.
//!
//! The event loop's side, in order:
//!
//! 1. `let (mut sup, problems) = Supervisor::new(specs, spawner, checker, BootClock);` then
//!    log the problems and call [`Supervisor::start_all`].
//! 2. poll with a timeout until [`Supervisor::next_deadline`] (a time since boot); when it
//!    passes call [`Supervisor::on_timer`].
//! 3. on SIGCHLD reap every child with `waitpid(-1, WNOHANG)` and pass each to
//!    [`Supervisor::on_exit`] ([`Exit::from_wait`]); unknown pids are ignored.
//! 4. after every call collect the new output pipes ([`ProcessSpawner::take_outputs`]) and
//!    feed their bytes to a [`LogSink`] per service; drain the [`NetChecker`]'s results into
//!    [`Supervisor::on_check_result`] when its wake-up fd is readable.
//! 5. answer control requests ([`protocol`]) with [`Supervisor::status`],
//!    `enable`/`disable`/`restart`/`clear` and [`logfile::tail`].
//! 6. to go down: [`Supervisor::begin_shutdown`], keep looping until
//!    [`Supervisor::shutdown_done`] (or an overall deadline), then the usual kill-all.

pub mod accounts;
pub mod backoff;
pub mod cgroup;
pub mod checker;
mod control;
mod engine;
#[cfg(test)]
pub mod fake;
pub mod graph;
pub mod logfile;
mod phase;
mod probes;
pub mod process;
pub mod protocol;
mod settle;
pub mod spawner;
pub mod state;

pub use checker::NetChecker;
pub use control::CommandError;
pub use engine::Supervisor;
pub use graph::LoadProblem;
pub use process::ProcessSpawner;
pub use settle::Settled;
pub use state::{Exit, ServiceStatus, State};

#[cfg(test)]
mod tests;
