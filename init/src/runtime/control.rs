//! The control socket `/run/ramkey/control.sock`: `ramkeyctl` talks to PID 1 here.
//!
//! One request per connection: the client connects, writes one JSON line
//! ([`crate::supervisor::protocol`]), reads one JSON line back, and the server closes. The
//! socket is mode 0600 and every peer's uid is checked with `SO_PEERCRED`: only root is
//! answered. Everything is non-blocking and driven by the PID 1 event loop, with bounds: at
//! most [`MAX_CONNECTIONS`] clients at once, [`MAX_REQUEST`] bytes per request, and
//! [`REQUEST_TIMEOUT`] to send it; answers are written with a short write timeout.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::base::paths::CONTROL_SOCKET;
use crate::supervisor::protocol::{self, Request, Response};

/// Where the socket lives on the box (the paths module's [`CONTROL_SOCKET`]).
pub const SOCKET: &str = CONTROL_SOCKET;
/// The longest request line accepted.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Clients served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a client has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing an answer may block the loop at most.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// The socket could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("control socket {path}: {op}: {source}")]
pub struct ControlError {
    /// The socket path.
    pub path: PathBuf,
    /// What failed.
    pub op: &'static str,
    /// The error.
    pub source: io::Error,
}

/// A client that has not sent its whole request yet.
#[derive(Debug)]
struct Connection {
    stream: UnixStream,
    uid: Option<u32>,
    buf: Vec<u8>,
    deadline: Duration,
}

/// The listening socket and its clients.
#[derive(Debug)]
pub struct ControlServer {
    listener: UnixListener,
    connections: Vec<Connection>,
}

impl ControlServer {
    /// Binds `path` (replacing a stale socket), mode 0600, non-blocking.
    pub fn bind(path: &Path) -> Result<Self, ControlError> {
        let fail = |op| {
            move |source| ControlError {
                path: path.to_owned(),
                op,
                source,
            }
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail("creating its directory"))?;
        }
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(fail("removing the old socket")(e)),
            _ => {}
        }
        let listener = UnixListener::bind(path).map_err(fail("bind"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail("chmod 0600"))?;
        listener.set_nonblocking(true).map_err(fail("set non-blocking"))?;
        Ok(ControlServer {
            listener,
            connections: Vec::new(),
        })
    }

    /// The fds to poll for reading: the listener first (when more clients fit), then each
    /// client. Pass the readiness in the same order to [`ControlServer::on_ready`].
    pub fn poll_fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds = Vec::with_capacity(self.connections.len() + 1);
        if self.connections.len() < MAX_CONNECTIONS {
            fds.push(self.listener.as_fd());
        }
        fds.extend(self.connections.iter().map(|c| c.stream.as_fd()));
        fds
    }

    /// When the oldest waiting client times out.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.connections.iter().map(|c| c.deadline).min()
    }

    /// Handles readiness (in [`ControlServer::poll_fds`] order) at time `now` (since boot):
    /// accepts clients, reads requests, and answers each complete one with `answer`.
    /// Clients past their deadline are dropped.
    pub fn on_ready(&mut self, ready: &[bool], now: Duration, answer: &mut dyn FnMut(Request) -> Response) {
        let listening = self.connections.len() < MAX_CONNECTIONS;
        let (accept, clients) = if listening {
            (
                ready.first().copied().unwrap_or(false),
                ready.get(1..).unwrap_or_default(),
            )
        } else {
            (false, ready)
        };
        let mut done = Vec::new();
        for (i, ready) in clients.iter().enumerate() {
            if *ready && self.connections.get_mut(i).is_some_and(|c| c.read_request(answer)) {
                done.push(i);
            }
        }
        for i in done.into_iter().rev() {
            self.connections.remove(i);
        }
        self.connections.retain(|c| c.deadline > now);
        if accept {
            self.accept(now);
        }
    }

    fn accept(&mut self, now: Duration) {
        while self.connections.len() < MAX_CONNECTIONS {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = stream.set_nonblocking(true) {
                        crate::warn!("control: {e}");
                        continue;
                    }
                    let uid = crate::sys::peer_uid(&stream)
                        .inspect_err(|e| crate::warn!("control: {e}"))
                        .ok();
                    self.connections.push(Connection {
                        stream,
                        uid,
                        buf: Vec::new(),
                        deadline: now + REQUEST_TIMEOUT,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    crate::warn!("control: accept: {e}");
                    return;
                }
            }
        }
    }
}

impl Connection {
    /// Reads what is there; true when the connection is finished (answered or gone).
    fn read_request(&mut self, answer: &mut dyn FnMut(Request) -> Response) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    if self.buf.is_empty() {
                        return true;
                    }
                    let line = std::mem::take(&mut self.buf);
                    self.respond(&line, answer);
                    return true;
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                        let line = self.buf[..end].to_vec();
                        self.respond(&line, answer);
                        return true;
                    }
                    if self.buf.len() > MAX_REQUEST {
                        let message = format!("request longer than {MAX_REQUEST} bytes");
                        self.write(&Response::Error { message });
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => return true,
            }
        }
    }

    fn respond(&mut self, line: &[u8], answer: &mut dyn FnMut(Request) -> Response) {
        let response = match (self.uid, protocol::decode_request(&String::from_utf8_lossy(line))) {
            (Some(0), Ok(request)) => answer(request),
            (Some(0), Err(e)) => Response::Error { message: e.to_string() },
            (uid, _) => Response::Error {
                message: format!(
                    "permission denied: only root may use the control socket (you are uid {})",
                    uid.map_or_else(|| "unknown".to_string(), |u| u.to_string())
                ),
            },
        };
        self.write(&response);
    }

    fn write(&mut self, response: &Response) {
        let line = protocol::encode_response(response);
        let written = self
            .stream
            .set_nonblocking(false)
            .and_then(|()| self.stream.set_write_timeout(Some(WRITE_TIMEOUT)))
            .and_then(|()| self.stream.write_all(line.as_bytes()));
        if let Err(e) = written {
            crate::debug!("control: answering a client: {e}");
        }
    }
}

/// Sends one request to the socket at `path` and waits for the answer (the client side).
pub fn call(path: &Path, request: &Request, timeout: Duration) -> io::Result<Response> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(protocol::encode_request(request).as_bytes())?;
    let mut text = String::new();
    (&stream)
        .take(protocol::MAX_LINE as u64 * 64)
        .read_to_string(&mut text)?;
    let line = text.lines().next().unwrap_or_default();
    protocol::decode_response(line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::protocol::Action;

    fn serve(server: &mut ControlServer, rounds: usize) -> Vec<Request> {
        let mut seen = Vec::new();
        for _ in 0..rounds {
            let ready = vec![true; server.poll_fds().len()];
            server.on_ready(&ready, Duration::ZERO, &mut |r| {
                seen.push(r.clone());
                Response::Done {
                    message: format!("did {r:?}"),
                }
            });
            std::thread::sleep(Duration::from_millis(20));
        }
        seen
    }

    #[test]
    fn answers_one_request_per_connection_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/ramkey/control.sock");
        let mut server = ControlServer::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let client_path = path.clone();
        let client = std::thread::spawn(move || {
            let request = Request::Svcadm {
                action: Action::Clear,
                service: "web".into(),
            };
            call(&client_path, &request, Duration::from_secs(5)).unwrap()
        });
        let mut seen = Vec::new();
        for _ in 0..100 {
            seen.extend(serve(&mut server, 1));
            if client.is_finished() {
                break;
            }
        }
        let response = client.join().unwrap();
        // The socket file is ours: its owner is our uid.
        let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&path).unwrap());
        assert_eq!(seen.len(), usize::from(uid == 0));
        match response {
            Response::Done { message } => assert!(message.contains("Clear"), "{message}"),
            Response::Error { message } => {
                assert_ne!(uid, 0);
                assert!(message.starts_with("permission denied"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // Binding again replaces the stale socket.
        drop(server);
        ControlServer::bind(&path).unwrap();
    }

    #[test]
    fn bad_lines_get_an_error_and_slow_clients_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let mut server = ControlServer::bind(&path).unwrap();
        let mut bad = UnixStream::connect(&path).unwrap();
        bad.write_all(b"{\"version\":9}\n").unwrap();
        let _silent = UnixStream::connect(&path).unwrap();
        serve(&mut server, 3);
        let mut text = String::new();
        bad.read_to_string(&mut text).unwrap();
        assert!(text.contains("\"kind\":\"error\""), "{text}");
        assert_eq!(server.connections.len(), 1);
        server.on_ready(
            &[false, false],
            REQUEST_TIMEOUT + Duration::from_secs(1),
            &mut |_| unreachable!(),
        );
        assert!(server.connections.is_empty());
        assert!(server.next_deadline().is_none());
    }
}
