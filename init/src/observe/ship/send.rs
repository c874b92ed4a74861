//! The way to the collector: a TCP stream of octet-counted frames, or UDP datagrams. A
//! collector that is down, refuses, or closed the stream is retried with backoff (1 s
//! doubling to 10 s), each new reason said once; one that does not read leaves the frames
//! in the backlog. A frame leaves the backlog only once the kernel took all of it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use ramkey_config::{Remote, Transport};

use super::spool::Spool;
use super::syslog::{self, Origin};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The most frames sent in one pass, so that reading the sources keeps going.
const BURST: usize = 4096;

enum Link {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

/// A frame partly written to a stream: the rest must follow before any other.
struct Partial {
    frame: Vec<u8>,
    written: usize,
    notice: bool,
}

/// The connection and its retry state.
pub struct Sender {
    remote: Remote,
    link: Option<Link>,
    retry_at: Instant,
    backoff: Duration,
    problem: Option<String>,
    partial: Option<Partial>,
    /// Frames sent since the start.
    pub sent: u64,
}

impl Sender {
    /// Not connected yet; the first pass tries.
    pub fn new(remote: Remote) -> Sender {
        Sender {
            remote,
            link: None,
            retry_at: Instant::now(),
            backoff: Duration::from_secs(1),
            problem: None,
            partial: None,
            sent: 0,
        }
    }

    /// False after an attempt to reach the collector failed, until one succeeds.
    pub fn reachable(&self) -> bool {
        self.problem.is_none()
    }

    /// Sends from the backlog until it is empty, the collector stops taking, or a burst is
    /// done; `host` names the box in the note about dropped lines.
    pub fn pump(&mut self, spool: &mut Spool, host: &str) -> io::Result<()> {
        if self.link.is_none() {
            if spool.lines() == 0 && spool.dropped == 0 || Instant::now() < self.retry_at {
                return Ok(());
            }
            self.connect(spool);
        }
        for _ in 0..BURST {
            let Some(link) = self.link.as_mut() else { break };
            if self.partial.is_none() {
                if let Link::Tcp(stream) = link
                    && let Err(reason) = alive(stream)
                {
                    self.fail(&reason);
                    break;
                }
                self.partial = if spool.dropped > 0 {
                    Some(Partial {
                        frame: dropped_note(host, spool.dropped),
                        written: 0,
                        notice: true,
                    })
                } else {
                    match spool.peek()? {
                        Some(frame) => Some(Partial {
                            frame: frame.to_vec(),
                            written: 0,
                            notice: false,
                        }),
                        None => break,
                    }
                };
            }
            let Some(p) = self.partial.as_mut() else { break };
            let result = match link {
                Link::Tcp(stream) => stream.write(&p.frame[p.written..]),
                Link::Udp(socket) => socket.send(syslog::message(&p.frame)).map(|_| p.frame.len()),
            };
            match result {
                Ok(n) => p.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.fail(&e.to_string());
                    break;
                }
            }
            if p.written == p.frame.len() {
                if p.notice {
                    spool.dropped = 0;
                } else {
                    spool.take();
                }
                self.partial = None;
                self.sent += 1;
            }
        }
        Ok(())
    }

    fn connect(&mut self, spool: &Spool) {
        match open(&self.remote) {
            Ok(link) => {
                eprintln!(
                    "connected to {} ({} lines waiting{})",
                    self.remote,
                    spool.lines(),
                    if spool.dropped > 0 {
                        format!(", {} dropped", spool.dropped)
                    } else {
                        String::new()
                    }
                );
                self.link = Some(link);
                self.problem = None;
                self.backoff = Duration::from_secs(1);
            }
            Err(reason) => self.fail(&reason),
        }
    }

    /// Drops the link; says why when the reason is new; waits longer before the next try.
    fn fail(&mut self, reason: &str) {
        self.link = None;
        self.partial = None;
        if self.problem.as_deref() != Some(reason) {
            eprintln!("{}: {reason}; keeping the lines and retrying", self.remote);
            self.problem = Some(reason.to_owned());
        }
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

/// Resolves the collector's name (again at every attempt) and connects.
fn open(remote: &Remote) -> Result<Link, String> {
    let target = (remote.target.host.as_str(), remote.target.port);
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", remote.target.host))?
        .collect();
    let mut last = format!("{} resolves to no address", remote.target.host);
    for addr in addrs {
        let link = match remote.transport {
            Transport::Tcp => TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).and_then(|s| {
                s.set_nonblocking(true)?;
                s.set_nodelay(true)?;
                Ok(Link::Tcp(s))
            }),
            Transport::Udp => {
                let local: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    ([0u16; 8], 0).into()
                };
                UdpSocket::bind(local).and_then(|s| {
                    s.connect(addr)?;
                    s.set_nonblocking(true)?;
                    Ok(Link::Udp(s))
                })
            }
        };
        match link {
            Ok(link) => return Ok(link),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

/// Whether the collector still holds the stream: a collector that closed it (it was stopped)
/// has sent its FIN, and a frame written now would be lost.
fn alive(stream: &mut TcpStream) -> Result<(), String> {
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Err("the collector closed the connection".into()),
            // A collector has nothing to say; whatever it sent is read and left.
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The line that stands in the stream where lines were dropped.
fn dropped_note(host: &str, count: u64) -> Vec<u8> {
    let origin = Origin {
        app: super::APP.into(),
        msgid: None,
        pid1: false,
    };
    let text = format!(
        "<4>{count} lines dropped here: the collector did not take them and the backlog \
         reached [log] buffer"
    );
    syslog::frame(host, &origin, &text, std::time::SystemTime::now())
}

#[cfg(test)]
#[path = "send_tests.rs"]
mod tests;
