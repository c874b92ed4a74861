//! Time since the kernel started, behind a trait so that tests control it, and the
//! wall-clock dates the log and the pool's records are written with.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
#[cfg(test)]
pub struct FakeClock {
    now: std::cell::Cell<Duration>,
    step: Duration,
}

#[cfg(test)]
impl FakeClock {
    /// Starts at `start`; every reading returns the current value and then adds `step`.
    pub fn new(start: Duration, step: Duration) -> Self {
        FakeClock {
            now: std::cell::Cell::new(start),
            step,
        }
    }
}

#[cfg(test)]
impl Clock for FakeClock {
    fn since_boot(&self) -> Duration {
        let now = self.now.get();
        self.now.set(now + self.step);
        now
    }
}

/// `2024-05-01T12:00:00.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_millis(1_714_564_800_123);
        assert_eq!(rfc3339(t), "2024-05-01T12:00:00.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
