//! The real [`Checker`]: each `tcp` or `http` attempt runs on a short-lived thread with its
//! timeout, and its result waits in a channel; a byte on a pipe wakes the event loop, which
//! then calls [`NetChecker::drain`] and passes the results to the engine.
//!
//! Threads rather than non-blocking sockets in the loop: a check is a connect and at most
//! one small read, seldom (every few seconds per service), and a thread keeps the loop and
//! the engine free of half-open sockets. PID 1 never waits on them.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use ramkey_image::check::Check;

use super::spawner::{CheckOutcome, CheckTicket, Checker};

/// Runs network checks on threads.
#[derive(Debug)]
pub struct NetChecker {
    host: IpAddr,
    tx: Sender<(CheckTicket, CheckOutcome)>,
    rx: Receiver<(CheckTicket, CheckOutcome)>,
    wake_reader: std::io::PipeReader,
    wake_writer: Arc<std::io::PipeWriter>,
}

impl NetChecker {
    /// `tcp` checks connect to `host` (`127.0.0.1` for platform services).
    pub fn new(host: IpAddr) -> std::io::Result<Self> {
        let (wake_reader, wake_writer) = std::io::pipe()?;
        nix::fcntl::fcntl(
            &wake_reader,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        let (tx, rx) = channel();
        Ok(NetChecker {
            host,
            tx,
            rx,
            wake_reader,
            wake_writer: Arc::new(wake_writer),
        })
    }

    /// On `127.0.0.1`.
    pub fn localhost() -> std::io::Result<Self> {
        Self::new(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Readable when results are waiting: poll it in the event loop.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake_reader.as_fd()
    }

    /// The results that have arrived.
    pub fn drain(&mut self) -> Vec<(CheckTicket, CheckOutcome)> {
        let mut buf = [0u8; 256];
        while matches!((&self.wake_reader).read(&mut buf), Ok(n) if n > 0) {}
        self.rx.try_iter().collect()
    }
}

impl Checker for NetChecker {
    fn start(&mut self, ticket: CheckTicket, service: &str, check: &Check, timeout: Duration) {
        let (tx, wake) = (self.tx.clone(), Arc::clone(&self.wake_writer));
        let (check, host) = (check.clone(), self.host);
        let spawned = std::thread::Builder::new()
            .name(format!("check-{service}"))
            .spawn(move || {
                let outcome = match check {
                    Check::Tcp { port } => tcp(SocketAddr::new(host, port), timeout),
                    Check::Http { url, expect_status } => http(&url, expect_status, timeout),
                    Check::Exec { .. } => Err("exec checks are processes, not network checks".into()),
                };
                let _ignored = tx.send((ticket, outcome));
                let _ignored = (&*wake).write(&[1]);
            });
        if let Err(e) = spawned {
            let _ignored = self.tx.send((ticket, Err(format!("no thread for the check: {e}"))));
            let _ignored = (&*self.wake_writer).write(&[1]);
        }
    }
}

/// A TCP connect within `timeout`.
pub fn tcp(addr: SocketAddr, timeout: Duration) -> CheckOutcome {
    TcpStream::connect_timeout(&addr, timeout)
        .map(drop)
        .map_err(|e| format!("connect {addr}: {e}"))
}

/// An HTTP/1.0 GET of a plain `http://` URL whose status must be `expect`.
pub fn http(url: &str, expect: u16, timeout: Duration) -> CheckOutcome {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: not http://"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    let io = |e: std::io::Error| format!("{url}: {e}");
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: ramkey-supervisor\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 4096 {
        match stream.read(&mut buf).map_err(io)? {
            0 => break,
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("{url}: not an HTTP answer"))?;
    if status == expect {
        Ok(())
    } else {
        Err(format!("{url}: status {status}, expected {expect}"))
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;

    use super::*;

    fn serve_once(answer: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            s.write_all(answer.as_bytes()).unwrap();
        });
        port
    }

    #[test]
    fn http_compares_the_status() {
        let t = Duration::from_secs(5);
        let port = serve_once("HTTP/1.1 200 OK\r\n\r\nfine");
        assert_eq!(http(&format!("http://127.0.0.1:{port}/health"), 200, t), Ok(()));
        let port = serve_once("HTTP/1.0 503 Busy\r\n\r\n");
        let err = http(&format!("http://127.0.0.1:{port}"), 200, t).unwrap_err();
        assert!(err.ends_with("status 503, expected 200"), "{err}");
    }

    fn wait_for(checker: &mut NetChecker) -> (CheckTicket, CheckOutcome) {
        for _ in 0..500 {
            if let Some(result) = checker.drain().pop() {
                return result;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no check result within 5 s");
    }

    #[test]
    fn checker_reports_through_the_wake_pipe() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut checker = NetChecker::localhost().unwrap();
        let t = Duration::from_secs(5);
        checker.start(CheckTicket(7), "web", &Check::Tcp { port }, t);
        assert_eq!(wait_for(&mut checker), (CheckTicket(7), Ok(())));
        drop(listener);
        // A port that refuses: bound but not listening, so that no other test can take it
        // (a port freed by `drop` can be handed to a test running alongside).
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, socket};
        let closed = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
        bind(closed.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).unwrap();
        let port = getsockname::<SockaddrIn>(closed.as_raw_fd()).unwrap().port();
        checker.start(CheckTicket(8), "web", &Check::Tcp { port }, t);
        let (ticket, outcome) = wait_for(&mut checker);
        assert_eq!(ticket, CheckTicket(8));
        assert!(outcome.as_ref().is_err_and(|e| e.contains("refused")), "{outcome:?}");
    }
}
