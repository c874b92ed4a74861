//! A syslog collector for the boot tests: takes RFC 6587 octet-counted frames on a TCP port
//! of the host (the box reaches it at 10.0.2.2 through QEMU's user network) and keeps each
//! RFC 5424 message, parsed. Stopping it closes every connection, as a stopped rsyslog would.

use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One RFC 5424 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub pri: u8,
    pub timestamp: String,
    pub host: String,
    pub app: String,
    pub msgid: String,
    pub text: String,
    /// When the collector read it (the host's clock).
    pub arrived: SystemTime,
}

impl Message {
    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG`, with SD `-`; `None` for
    /// anything else.
    pub fn parse(raw: &str, arrived: SystemTime) -> Option<Message> {
        let rest = raw.strip_prefix('<')?;
        let (pri, rest) = rest.split_once('>')?;
        let rest = rest.strip_prefix("1 ")?;
        let mut f = rest.splitn(7, ' ');
        let (timestamp, host, app, _procid, msgid, sd) =
            (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
        if sd != "-" || !timestamp.ends_with('Z') || timestamp.len() < 20 {
            return None;
        }
        Some(Message {
            pri: pri.parse().ok().filter(|p| *p < 192)?,
            timestamp: timestamp.into(),
            host: host.into(),
            app: app.into(),
            msgid: msgid.into(),
            text: f.next().unwrap_or("").into(),
            arrived,
        })
    }

    /// From its TIMESTAMP (`YYYY-MM-DDTHH:MM:SS.mmmZ`, the box's clock) to its arrival.
    pub fn delay(&self) -> Duration {
        let n = |r: std::ops::Range<usize>| -> i64 { self.timestamp[r].parse().unwrap() };
        let (y, m, d) = (n(0..4), n(5..7), n(8..10));
        // Days from civil (Howard Hinnant's algorithm).
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
        let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
        let written = UNIX_EPOCH + Duration::from_millis(u64::try_from(secs * 1000 + n(20..23)).unwrap());
        self.arrived.duration_since(written).unwrap_or_default()
    }
}

/// The collector, running while this lives.
pub struct Collector {
    /// Every frame received, in order (raw text), across restarts.
    pub frames: Arc<Mutex<Vec<(SystemTime, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    pub fn start(port: u16, frames: Arc<Mutex<Vec<(SystemTime, String)>>>) -> Collector {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, sink) = (stop.clone(), frames.clone());
        let thread = std::thread::spawn(move || serve(&listener, &flag, &sink));
        Collector {
            frames,
            stop,
            thread: Some(thread),
        }
    }

    /// Closes the listener and every connection.
    pub fn stop(mut self) -> Arc<Mutex<Vec<(SystemTime, String)>>> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.frames.clone()
    }

    /// The parsed messages so far; panics on a frame that is not RFC 5424.
    pub fn messages(&self) -> Vec<Message> {
        messages(&self.frames)
    }

    /// Waits until a message satisfies `want`; panics with what arrived after `within`.
    pub fn wait_for(&self, within: Duration, what: &str, want: impl Fn(&Message) -> bool) -> Message {
        let start = Instant::now();
        loop {
            if let Some(m) = self.messages().into_iter().find(|m| want(m)) {
                return m;
            }
            if start.elapsed() > within {
                let got = self.messages();
                let tail: Vec<_> = got.iter().rev().take(20).collect();
                panic!(
                    "the collector never got {what}; {} messages, the last: {tail:#?}",
                    got.len()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

pub fn messages(frames: &Mutex<Vec<(SystemTime, String)>>) -> Vec<Message> {
    frames
        .lock()
        .unwrap()
        .iter()
        .map(|(at, f)| Message::parse(f, *at).unwrap_or_else(|| panic!("not RFC 5424: {f:?}")))
        .collect()
}

fn serve(listener: &TcpListener, stop: &AtomicBool, frames: &Mutex<Vec<(SystemTime, String)>>) {
    let mut conns: Vec<(TcpStream, Vec<u8>)> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        if let Ok((s, _)) = listener.accept() {
            s.set_nonblocking(true).unwrap();
            conns.push((s, Vec::new()));
        }
        let mut buf = [0u8; 65536];
        conns.retain_mut(|(s, pending)| {
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return false,
                    Ok(n) => {
                        pending.extend_from_slice(&buf[..n]);
                        take_frames(pending, frames);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                    Err(_) => return false,
                }
            }
        });
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Moves every whole `LEN SP MSG` frame from `pending` to `frames`.
fn take_frames(pending: &mut Vec<u8>, frames: &Mutex<Vec<(SystemTime, String)>>) {
    loop {
        let Some(space) = pending.iter().position(|&b| b == b' ') else {
            return;
        };
        let len: usize = std::str::from_utf8(&pending[..space])
            .ok()
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "not an octet count: {:?}",
                    String::from_utf8_lossy(&pending[..space.min(40)])
                )
            });
        if pending.len() < space + 1 + len {
            return;
        }
        let frame = String::from_utf8_lossy(&pending[space + 1..space + 1 + len]).into_owned();
        frames.lock().unwrap().push((SystemTime::now(), frame));
        pending.drain(..space + 1 + len);
    }
}
