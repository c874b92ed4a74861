//! How a reaped child ended, as `waitpid` reports it: the supervisor's view of an exit,
//! defined here so that the syscall layer reports it without reaching up into the
//! supervisor.

use std::fmt;

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It called `exit` with this status.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl Exit {
    /// Exit status 0.
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }

    /// The pid and exit of a reaped child; `None` for stops, continues and `StillAlive`.
    pub fn from_wait(status: WaitStatus) -> Option<(Pid, Exit)> {
        match status {
            WaitStatus::Exited(pid, code) => Some((pid, Exit::Code(code))),
            WaitStatus::Signaled(pid, signal, _core) => Some((pid, Exit::Signal(signal as i32))),
            _ => None,
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(code) => write!(f, "status {code}"),
            Exit::Signal(n) => match Signal::try_from(n) {
                Ok(signal) => write!(f, "signal {n} ({})", signal.as_str()),
                Err(_) => write!(f, "signal {n}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_read_well() {
        assert_eq!(Exit::Code(1).to_string(), "status 1");
        assert_eq!(Exit::Signal(9).to_string(), "signal 9 (SIGKILL)");
        assert!(Exit::Code(0).success());
        assert!(!Exit::Signal(15).success());
        let reaped = Exit::from_wait(WaitStatus::Exited(Pid::from_raw(7), 3));
        assert_eq!(reaped, Some((Pid::from_raw(7), Exit::Code(3))));
    }
}
