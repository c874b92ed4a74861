//! The exporter's HTTP/1.1, as little as a scraper needs: one request per connection, its
//! head at most [`MAX_REQUEST`] bytes and sent within [`TIMEOUT`]; `GET` (or `HEAD`)
//! `/metrics` (a query string is ignored) is the one thing served, anything else gets a
//! 404, 405 or 400 with a line saying why, and every answer closes the connection.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// The longest request head accepted (request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// How long a client has to send its request, and a reply may take to write.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The one page served, `/metrics` (an HTTP path, not a file: kept without its slash, which
/// only `Paths` may write).
pub const PAGE: &str = "metrics";
/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a complete request asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// `GET /metrics` (`head`: `HEAD /metrics`).
    Metrics {
        /// Headers only.
        head: bool,
    },
    /// A path that is not served.
    NotFound(String),
    /// A method other than GET or HEAD.
    Method(String),
    /// Not an HTTP request line.
    Bad(String),
}

/// Why no complete request came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Nothing complete within the time.
    Timeout,
    /// A head longer than [`MAX_REQUEST`].
    TooLarge,
    /// The client closed before the end of its head.
    Closed,
    /// Reading failed.
    Io(String),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Timeout => write!(f, "no complete request within {} s", TIMEOUT.as_secs()),
            Fault::TooLarge => write!(f, "a request head over {MAX_REQUEST} bytes"),
            Fault::Closed => f.write_str("closed before the end of its request"),
            Fault::Io(e) => write!(f, "reading the request: {e}"),
        }
    }
}

impl Fault {
    /// The answer still worth sending, if any.
    pub fn answer(&self) -> Option<(u16, String)> {
        match self {
            Fault::Timeout => Some((408, format!("{self}\n"))),
            Fault::TooLarge => Some((431, format!("{self}\n"))),
            Fault::Closed | Fault::Io(_) => None,
        }
    }
}

/// Reads a request head from `stream` within `timeout` and says what it asks.
pub fn read_request(stream: &mut TcpStream, timeout: Duration) -> Result<Ask, Fault> {
    let deadline = Instant::now() + timeout;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Fault::Timeout);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| Fault::Io(e.to_string()))?;
        let n = match stream.read(&mut buf) {
            Ok(0) => return Err(Fault::Closed),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(Fault::Timeout);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Fault::Io(e.to_string())),
        };
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = find_end(&head) {
            return Ok(parse(&String::from_utf8_lossy(&head[..end])));
        }
        if head.len() > MAX_REQUEST {
            return Err(Fault::TooLarge);
        }
    }
}

/// Where the head ends (`\r\n\r\n`, or a bare `\n\n` from a sloppy client).
fn find_end(head: &[u8]) -> Option<usize> {
    let crlf = head.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = head.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What the request line of `head` asks.
pub fn parse(head: &str) -> Ask {
    let line = head.lines().next().unwrap_or_default();
    let words: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = words.as_slice() else {
        return Ask::Bad(format!("not an HTTP request line: {:?}", truncated(line)));
    };
    if !version.starts_with("HTTP/1.") {
        return Ask::Bad(format!("not HTTP/1.x: {:?}", truncated(version)));
    }
    let path = target.split('?').next().unwrap_or_default();
    match *method {
        "GET" | "HEAD" if path.strip_prefix('/') == Some(PAGE) => Ask::Metrics {
            head: *method == "HEAD",
        },
        "GET" | "HEAD" => Ask::NotFound(truncated(path)),
        other => Ask::Method(truncated(other)),
    }
}

/// At most 100 characters of what a client sent, for a log line.
fn truncated(text: &str) -> String {
    text.chars().take(100).collect()
}

/// The status and body for a request that is not served.
pub fn refusal(ask: &Ask) -> (u16, String) {
    match ask {
        Ask::Metrics { .. } => (200, String::new()),
        Ask::NotFound(path) => (404, format!("no page {path}: the metrics are at /{PAGE}\n")),
        Ask::Method(method) => (405, format!("method {method} is not served: use GET /{PAGE}\n")),
        Ask::Bad(why) => (400, format!("{why}\n")),
    }
}

/// A log line's words for a request that is not served.
pub fn describe(ask: &Ask) -> String {
    match ask {
        Ask::Metrics { .. } => format!("GET /{PAGE}"),
        Ask::NotFound(path) => format!("GET {path}: no such page (only /{PAGE} is served)"),
        Ask::Method(method) => format!("{method}: not served (GET /{PAGE} is)"),
        Ask::Bad(why) => why.clone(),
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

/// The whole answer: status line, headers, and `body` unless `head_only`.
pub fn response(code: u16, body: &str, head_only: bool) -> Vec<u8> {
    let content_type = if code == 200 {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let allow = if code == 405 { "Allow: GET, HEAD\r\n" } else { "" };
    let mut out = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        reason(code),
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// Writes the answer within `timeout` and closes the connection.
pub fn respond(stream: &mut TcpStream, code: u16, body: &str, head_only: bool, timeout: Duration) -> io::Result<()> {
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(&response(code, body, head_only))?;
    stream.shutdown(Shutdown::Write)
}

#[cfg(test)]
#[path = "metrics_http_tests.rs"]
pub(super) mod tests;
