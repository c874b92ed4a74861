//! Time since the kernel started, behind a trait so that tests control it.

use std::time::Duration;

/// A monotonic clock counting from kernel start.
pub trait Clock {
    /// Time elapsed since the kernel started.
    fn since_boot(&self) -> Duration;
}

/// The real clock: `CLOCK_BOOTTIME`.
#[derive(Debug, Default, Clone, Copy)]
pub struct BootClock;

impl Clock for BootClock {
    fn since_boot(&self) -> Duration {
        crate::sys::boottime()
    }
}

/// A clock for tests: each reading advances by a fixed step.
#[derive(Debug)]
pub struct FakeClock {
    now: std::cell::Cell<Duration>,
    step: Duration,
}

impl FakeClock {
    /// Starts at `start`; every reading returns the current value and then adds `step`.
    pub fn new(start: Duration, step: Duration) -> Self {
        FakeClock {
            now: std::cell::Cell::new(start),
            step,
        }
    }
}

impl Clock for FakeClock {
    fn since_boot(&self) -> Duration {
        let now = self.now.get();
        self.now.set(now + self.step);
        now
    }
}
