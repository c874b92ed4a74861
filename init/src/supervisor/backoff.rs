//! Restart delays (exponential, capped) and the restart budget (at most N per window).

use std::collections::VecDeque;
use std::time::Duration;

use ramkey_image::service::{Backoff, RestartBudget};

/// The delay before restart number `failures` (1 = the first): `initial * 2^(failures-1)`,
/// capped at `max`.
pub fn delay(backoff: &Backoff, failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(31);
    let ms = u64::from(backoff.initial_ms).saturating_mul(1 << shift);
    Duration::from_millis(ms.min(u64::from(backoff.max_ms)))
}

/// The restarts within the last window.
#[derive(Debug, Clone, Default)]
pub struct RestartWindow {
    times: VecDeque<Duration>,
}

impl RestartWindow {
    /// Records a restart at `now` if the budget allows one more; `false` when it is spent
    /// (`max_restarts` already happened within the last `window_secs`).
    pub fn try_restart(&mut self, now: Duration, budget: &RestartBudget) -> bool {
        let window = Duration::from_secs(u64::from(budget.window_secs));
        while self.times.front().is_some_and(|t| now.saturating_sub(*t) >= window) {
            self.times.pop_front();
        }
        if self.times.len() >= budget.max_restarts as usize {
            return false;
        }
        self.times.push_back(now);
        true
    }

    /// Forgets every restart (`svcadm clear`).
    pub fn clear(&mut self) {
        self.times.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let b = Backoff {
            initial_ms: 1000,
            max_ms: 5000,
        };
        let delays: Vec<u64> = (1..=5).map(|n| delay(&b, n).as_millis() as u64).collect();
        assert_eq!(delays, [1000, 2000, 4000, 5000, 5000]);
        assert_eq!(delay(&b, 200), Duration::from_secs(5));
    }

    #[test]
    fn budget_is_per_window() {
        let budget = RestartBudget {
            max_restarts: 2,
            window_secs: 10,
        };
        let mut w = RestartWindow::default();
        assert!(w.try_restart(Duration::from_secs(1), &budget));
        assert!(w.try_restart(Duration::from_secs(2), &budget));
        assert!(!w.try_restart(Duration::from_secs(3), &budget));
        // The first restart leaves the window at 11 s.
        assert!(w.try_restart(Duration::from_secs(11), &budget));
        w.clear();
        assert!(w.try_restart(Duration::from_secs(12), &budget));
    }
}
