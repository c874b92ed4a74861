//! The progress display of slow build steps: an indicatif spinner naming the step (hidden when
//! stderr is not a terminal), then one line with the step's time.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Shows steps as they run; silent when disabled.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    /// A display that prints only if `enabled`.
    pub fn new(enabled: bool) -> Progress {
        Progress { enabled }
    }

    /// Runs `f` under a spinner named `name`, then prints the step's time.
    pub fn step<T, E>(&self, name: &str, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let started = Instant::now();
        let spinner = self.enabled.then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
                bar.set_style(style);
            }
            bar.set_message(name.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        let result = f();
        if let Some(bar) = spinner {
            bar.finish_and_clear();
            let state = if result.is_ok() { "done" } else { "failed" };
            eprintln!("{name}: {state} in {:.1} s", started.elapsed().as_secs_f64());
        }
        result
    }
}
