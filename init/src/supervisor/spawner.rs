//! The effects the engine asks for, behind traits: spawning and signalling processes
//! ([`Spawner`]) and network checks ([`Checker`]). The real ones are in `process.rs` and
//! `checker.rs`, the recording fakes in `fake.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use ramkey_image::check::Check;
use ramkey_image::service::{Caps, ServiceSpec};

/// What a spawned process is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The service's main process: its own cgroup and its output to the service's log.
    Service,
    /// An `exec` readiness or health check: the service's user and environment, no output.
    Check,
}

/// One process to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch<'a> {
    /// The service it belongs to.
    pub service: &'a str,
    /// Main process or check.
    pub purpose: Purpose,
    /// Command and arguments; `argv[0]` is absolute.
    pub argv: &'a [String],
    /// Environment on top of the minimal default.
    pub env: &'a BTreeMap<String, String>,
    /// User name or number; root when absent.
    pub user: Option<&'a str>,
    /// Group name or number; the user's primary group when absent.
    pub group: Option<&'a str>,
    /// Working directory; `/` when absent.
    pub workdir: Option<&'a str>,
    /// Resource caps (only for [`Purpose::Service`]).
    pub caps: Caps,
}

impl<'a> Launch<'a> {
    /// The main process of `spec`.
    pub fn service(spec: &'a ServiceSpec) -> Self {
        Self::check(spec, &spec.argv).with_purpose(Purpose::Service)
    }

    /// An `exec` check running `argv` as `spec`'s user.
    pub fn check(spec: &'a ServiceSpec, argv: &'a [String]) -> Self {
        Launch {
            service: &spec.name,
            purpose: Purpose::Check,
            argv,
            env: &spec.env,
            user: spec.user.as_deref(),
            group: spec.group.as_deref(),
            workdir: spec.workdir.as_deref(),
            caps: spec.caps,
        }
    }

    fn with_purpose(mut self, purpose: Purpose) -> Self {
        self.purpose = purpose;
        self
    }
}

/// A process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// `user` or `group` names nobody in `/etc/passwd` or `/etc/group`.
    #[error("unknown {kind} `{name}` (not in /etc/{file})", file = if *kind == "user" { "passwd" } else { "group" })]
    UnknownAccount {
        /// `user` or `group`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// The account files could not be read.
    #[error("reading {path}: {source}")]
    Accounts {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// fork/exec failed (e.g. `ENOENT` for a missing program).
    #[error("{program}: {source}")]
    Exec {
        /// `argv[0]`.
        program: String,
        /// The error.
        source: std::io::Error,
    },
    /// The service has caps but could not be placed in its cgroup; it was killed.
    #[error("cgroup: {0}")]
    Cgroup(#[from] super::cgroup::CgroupError),
    /// A pipe for the output could not be made.
    #[error("output pipe: {0}")]
    Pipe(std::io::Error),
}

/// Starts and signals processes. Exits are not the spawner's business: the event loop reaps
/// every child and tells the engine ([`super::Supervisor::on_exit`]).
pub trait Spawner {
    /// Starts a process and returns its pid (also its process group).
    fn spawn(&mut self, launch: &Launch<'_>) -> Result<Pid, SpawnError>;

    /// Sends `signal` to the process group of `pid`; an error (it already exited) is
    /// ignored.
    fn signal(&mut self, pid: Pid, signal: Signal);

    /// Kills everything left in the service's cgroup: at the stop timeout, and once its
    /// main process has been reaped (so that no stray child outlives a restart).
    fn kill_rest(&mut self, service: &str);
}

/// Where a network check's result goes: the event loop passes it to
/// [`super::Supervisor::on_check_result`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckTicket(pub u64);

/// The outcome of one check attempt: `Err` holds what went wrong, for the reason line.
pub type CheckOutcome = Result<(), String>;

/// Runs `tcp` and `http` checks without blocking the engine; the result comes back later
/// with the same ticket. (`exec` checks are processes: the engine spawns them.)
pub trait Checker {
    /// Starts one attempt that must finish within `timeout`.
    fn start(&mut self, ticket: CheckTicket, service: &str, check: &Check, timeout: Duration);
}
