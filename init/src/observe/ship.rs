//! The log shipper, platform service [`APP`] (`/usr/sbin/ramkey-logship`): follows every log
//! of the box ([`sources`]), frames each line as RFC 5424 ([`syslog`]), keeps the frames in a
//! bounded backlog ([`spool`]: on the pool, or in RAM without one) and sends them to
//! `[log] remote` ([`send`]). PID 1 and the services only ever write their files, so a
//! collector that is down or slow never blocks them.

pub mod send;
pub mod sources;
pub mod spool;
pub mod syslog;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ramkey_config::{Log, Remote};
use ramkey_image::service::{RestartPolicy, ServiceSpec};

use crate::base::paths::Paths;

/// The service's name.
pub const APP: &str = "logship";
/// The program, under the root (a name of the init binary).
pub const PROGRAM: &str = "usr/sbin/ramkey-logship";
/// Its backlog and read positions, under the root (`/var` is the pool's when there is one).
pub const STATE_DIR: &str = "var/lib/ramkey/logship";
/// The read positions, in [`STATE_DIR`].
const CURSORS: &str = "cursors";
/// How often the logs are looked at.
const TICK: Duration = Duration::from_millis(200);
/// How often the backlog and the read positions are written down.
const SYNC: Duration = Duration::from_secs(1);

/// The service PID 1 runs when `[log] remote` is set; `instances` is where the zones' state
/// folders are (on the pool, or in RAM).
pub fn service(log: &Log, instances: &Path) -> Option<ServiceSpec> {
    let remote = log.remote.as_ref()?;
    let argv = vec![
        format!("/{PROGRAM}"),
        remote.to_string(),
        log.buffer.to_string(),
        instances.display().to_string(),
    ];
    let mut spec = ServiceSpec::new(APP, argv);
    spec.restart = RestartPolicy::Always;
    Some(spec)
}

/// `ramkey-logship REMOTE BUFFER_BYTES INSTANCES_DIR`; runs until killed.
pub fn main(args: &[String]) -> i32 {
    let [remote, buffer, instances] = args else {
        eprintln!("usage: ramkey-logship tcp://HOST:PORT|udp://HOST:PORT BUFFER_BYTES INSTANCES_DIR");
        return 2;
    };
    let (remote, buffer) = match (remote.parse::<Remote>(), buffer.parse::<u64>()) {
        (Ok(r), Ok(b)) => (r, b),
        (Err(e), _) => {
            eprintln!("ramkey-logship: {remote}: {e}");
            return 2;
        }
        (_, Err(e)) => {
            eprintln!("ramkey-logship: buffer {buffer}: {e}");
            return 2;
        }
    };
    let paths = Paths::system();
    match run(&paths, remote, buffer, Path::new(instances)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ramkey-logship: {e}");
            1
        }
    }
}

fn run(paths: &Paths, remote: Remote, buffer: u64, instances: &Path) -> std::io::Result<()> {
    let root = paths.root();
    let state = root.join(STATE_DIR);
    let mut spool = spool::Spool::open(&state, buffer)?;
    let mut sources = sources::Sources::load(&std::fs::read_to_string(state.join(CURSORS)).unwrap_or_default());
    let log_dir = root.join(crate::runtime::services::LOG_DIR);
    let host = hostname(paths);
    eprintln!(
        "sending every log line to {remote} as {host}; backlog up to {buffer} bytes in {} ({} lines waiting)",
        state.display(),
        spool.lines()
    );
    let terminate = crate::sys::signalfd(&[nix::sys::signal::Signal::SIGTERM]).ok();
    let mut sender = send::Sender::new(remote);
    let mut synced = Instant::now();
    let mut push_failed = false;
    let mut stalled = false;
    loop {
        // While the collector takes lines, read no more than the backlog has room for: the
        // rest waits in the files. While it cannot be reached or takes nothing, read all: the
        // backlog then drops its oldest lines and counts them.
        let room = if sender.reachable() && !stalled {
            buffer.saturating_sub(spool.backlog())
        } else {
            u64::MAX
        };
        let (mut taken, mut full) = (0u64, false);
        let read = sources.pass(
            &log_dir,
            instances,
            crate::runtime::services::LOG_DIR,
            &mut |origin, line| {
                let frame = syslog::frame(&host, origin, line, std::time::SystemTime::now());
                if taken + frame.len() as u64 > room {
                    full = true;
                    return false;
                }
                taken += frame.len() as u64;
                match spool.push(&frame) {
                    Ok(()) => push_failed = false,
                    Err(e) if !push_failed => {
                        eprintln!("cannot keep a line in {}: {e}", state.display());
                        push_failed = true;
                    }
                    Err(_) => {}
                }
                true
            },
        );
        let before = sender.sent;
        sender.pump(&mut spool, &host)?;
        stalled = sender.reachable() && spool.lines() > 0 && sender.sent == before;
        let stop = terminate
            .as_ref()
            .is_some_and(|fd| matches!(crate::sys::read_signal(fd), Ok(Some(_))));
        let moved = read > 0 || sender.sent != before;
        if moved && synced.elapsed() >= SYNC || stop {
            save(&mut spool, &sources, &state);
            synced = Instant::now();
        }
        if stop {
            return Ok(());
        }
        // A pass that stopped at the backlog's room goes on at once.
        if !full || stalled {
            std::thread::sleep(TICK);
        }
    }
}

/// The backlog first, then the read positions: a crash in between sends a line twice at
/// worst, never loses one.
fn save(spool: &mut spool::Spool, sources: &sources::Sources, state: &Path) {
    let cursors: PathBuf = state.join(CURSORS);
    let tmp = state.join("cursors.new");
    let saved = spool
        .sync()
        .and_then(|()| std::fs::write(&tmp, sources.save()))
        .and_then(|()| std::fs::rename(&tmp, &cursors));
    if let Err(e) = saved {
        eprintln!("cannot write {}: {e}", state.display());
    }
}

/// The box's name as the kernel has it.
fn hostname(paths: &Paths) -> String {
    std::fs::read_to_string(paths.proc().join("sys/kernel/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "-".into())
}
