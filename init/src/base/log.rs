//! Console logger: `[    1.234567] ramkey: message` lines, one `write(2)` per line.
//!
//! A small hand-written logger rather than `tracing`: PID 1 logs before `/proc` exists,
//! must write each line with a single syscall so that kernel messages never split it,
//! and the console line format is a contract with the boot tests. `tracing` plus a
//! subscriber would add size and a formatting layer we would have to override anyway.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime};

/// How much the console shows, set by `ramkey.log=LEVEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Only errors.
    Error = 0,
    /// Errors and warnings.
    Warn = 1,
    /// The default: the boot story.
    Info = 2,
    /// Everything, e.g. each module loaded.
    Debug = 3,
}

/// A log level name that is not one of `error|warn|info|debug`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogError {
    /// The `ramkey.log=` value is not a level.
    #[error("unknown log level {0:?} (expected error, warn, info or debug)")]
    UnknownLevel(String),
}

impl FromStr for Level {
    type Err = LogError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "error" | "err" => Ok(Level::Error),
            "warn" | "warning" => Ok(Level::Warn),
            "info" => Ok(Level::Info),
            "debug" => Ok(Level::Debug),
            _ => Err(LogError::UnknownLevel(s.to_owned())),
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Sets the most verbose level that reaches the console.
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// True when messages at `level` are shown.
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Formats seconds like the kernel's `printk` prefix, `[%5lu.%06lu]`.
pub fn timestamp(since_boot: Duration) -> String {
    format!("[{:5}.{:06}]", since_boot.as_secs(), since_boot.subsec_micros())
}

/// Formats seconds with 3 decimals, as the timeline lines print them.
pub fn secs3(d: Duration) -> String {
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

/// Builds one complete console line, newline included.
pub fn format_line(since_boot: Duration, level: Level, message: fmt::Arguments<'_>) -> String {
    let tag = match level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        Level::Info => "",
        Level::Debug => "debug: ",
    };
    format!("{} ramkey: {tag}{message}\n", timestamp(since_boot))
}

/// Writes one line to `out` — a console opened by a process whose own output is a log
/// file (the zone launcher, a one-shot service) — whatever the level.
pub fn to_console(out: &mut impl std::io::Write, level: Level, message: fmt::Arguments<'_>) {
    let line = format_line(crate::sys::boottime(), level, message);
    let _ = out.write_all(line.as_bytes());
}

/// Writes one message to the console if its level is enabled (and to PID 1's own log).
pub fn log(level: Level, message: fmt::Arguments<'_>) {
    if enabled(level) {
        let line = format_line(crate::sys::boottime(), level, message);
        crate::sys::write_console(line.as_bytes());
        tee(&line);
    }
}

/// Writes one untagged message whatever the level: the lines the boot tests match.
pub fn notice(message: fmt::Arguments<'_>) {
    let line = format_line(crate::sys::boottime(), Level::Info, message);
    crate::sys::write_console(line.as_bytes());
    tee(&line);
}

/// Where PID 1's lines go besides the console: its own log file, which `ramkeyctl log` shows
/// and the log shipper sends on. Given the time and the line without its console prefix.
pub type Tee = Box<dyn FnMut(SystemTime, &str) + Send>;

/// What happens to a line besides the console.
enum TeeState {
    /// Nothing (every program but PID 1).
    Off,
    /// PID 1 before its log file can be opened: the lines wait here, the oldest dropped past
    /// [`EARLY_LIMIT`] bytes (with a count written first when they are replayed).
    Early {
        lines: VecDeque<(SystemTime, String)>,
        bytes: usize,
        dropped: usize,
    },
    /// Into the log file.
    On(Tee),
}

static TEE: Mutex<TeeState> = Mutex::new(TeeState::Off);

/// The most PID 1 holds of its own lines before its log file is opened.
const EARLY_LIMIT: usize = 256 << 10;

thread_local! {
    /// Set while this thread is inside the tee, so that a line logged from within it goes
    /// only to the console instead of deadlocking.
    static IN_TEE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// PID 1, at its start: keep the lines from now on for [`attach_tee`].
pub fn hold_early_lines() {
    with_tee(|t| {
        if matches!(t, TeeState::Off) {
            *t = TeeState::Early {
                lines: VecDeque::new(),
                bytes: 0,
                dropped: 0,
            };
        }
    });
}

/// Sends every line to `tee` from now on, the held ones first.
pub fn attach_tee(mut tee: Tee) {
    with_tee(|t| {
        if let TeeState::Early { lines, dropped, .. } = t {
            if *dropped > 0 {
                let note = format!("warning: {dropped} earlier lines of this boot are only on the console");
                tee(lines.front().map_or_else(SystemTime::now, |l| l.0), &note);
            }
            for (at, line) in lines.drain(..) {
                tee(at, &line);
            }
        }
        *t = TeeState::On(tee);
    });
}

/// Stops the tee (its file is closed, e.g. before the pool is unmounted).
pub fn detach_tee() {
    with_tee(|t| *t = TeeState::Off);
}

fn with_tee(f: impl FnOnce(&mut TeeState)) {
    if IN_TEE.with(|c| c.replace(true)) {
        return;
    }
    let mut state = TEE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut state);
    drop(state);
    IN_TEE.with(|c| c.set(false));
}

/// `line` is a whole console line; the tee gets it without the `[ time] ramkey: ` prefix.
fn tee(line: &str) {
    let text = line.split_once("] ramkey: ").map_or(line, |(_, rest)| rest).trim_end();
    with_tee(|t| match t {
        TeeState::Off => {}
        TeeState::Early { lines, bytes, dropped } => {
            lines.push_back((SystemTime::now(), text.to_owned()));
            *bytes += text.len();
            while *bytes > EARLY_LIMIT {
                let Some((_, old)) = lines.pop_front() else { break };
                *bytes -= old.len();
                *dropped += 1;
            }
        }
        TeeState::On(tee) => tee(SystemTime::now(), text),
    });
}

/// Logs a line that is always shown (timeline, ready, recovery, shutdown).
#[macro_export]
macro_rules! notice {
    ($($arg:tt)*) => { $crate::base::log::notice(format_args!($($arg)*)) };
}

/// Logs at info level: `info!("mounted {}", path)`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::base::log::log($crate::base::log::Level::Info, format_args!($($arg)*)) };
}

/// Logs at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::base::log::log($crate::base::log::Level::Warn, format_args!($($arg)*)) };
}

/// Logs at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::base::log::log($crate::base::log::Level::Error, format_args!($($arg)*)) };
}

/// Logs at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::base::log::log($crate::base::log::Level::Debug, format_args!($($arg)*)) };
}

/// Installs a panic hook that writes the panic and its location to the console.
///
/// The default hook is replaced so that the message is one timestamped line; unwinding
/// then continues to the `catch_unwind` in [`crate::pid1`], which enters recovery mode.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(non-string payload)");
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        log(Level::Error, format_args!("PANIC{location}: {payload}"));
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_matches_kernel_format() {
        assert_eq!(timestamp(Duration::from_micros(1_234_567)), "[    1.234567]");
        assert_eq!(timestamp(Duration::from_secs(123_456)), "[123456.000000]");
    }

    #[test]
    fn line_has_prefix_tag_and_newline() {
        let line = format_line(Duration::from_millis(2500), Level::Warn, format_args!("x {}", 1));
        assert_eq!(line, "[    2.500000] ramkey: warning: x 1\n");
        let line = format_line(Duration::ZERO, Level::Info, format_args!("ready"));
        assert_eq!(line, "[    0.000000] ramkey: ready\n");
    }

    #[test]
    fn levels_parse_and_order() {
        assert_eq!("DEBUG".parse::<Level>(), Ok(Level::Debug));
        assert_eq!("warn".parse::<Level>(), Ok(Level::Warn));
        assert!("loud".parse::<Level>().is_err());
        assert!(Level::Error < Level::Debug);
    }

    #[test]
    fn the_tee_gets_held_lines_then_live_ones_without_the_console_prefix() {
        let got = std::sync::Arc::new(Mutex::new(Vec::new()));
        tee("[    0.1] ramkey: before anyone holds\n");
        hold_early_lines();
        tee("[    0.2] ramkey: early\n");
        let sink = got.clone();
        attach_tee(Box::new(move |_, line| sink.lock().unwrap().push(line.to_owned())));
        tee("[    0.3] ramkey: warning: live\n");
        detach_tee();
        tee("[    0.4] ramkey: after\n");
        // Other tests of this binary may log meanwhile: look only at this test's lines.
        let got = got.lock().unwrap();
        let ours: Vec<_> = got
            .iter()
            .filter(|l| ["before", "early", "live", "after"].iter().any(|w| l.contains(w)))
            .collect();
        assert_eq!(ours, ["early", "warning: live"]);
    }

    #[test]
    fn secs3_rounds_down_to_millis() {
        assert_eq!(secs3(Duration::from_micros(1_234_999)), "1.234");
        assert_eq!(secs3(Duration::from_millis(50)), "0.050");
    }
}
