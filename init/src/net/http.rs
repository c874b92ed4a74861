//! A minimal HTTP/1.0 GET, over TCP or TLS ([`super::conn`]), for the config URL and image
//! indexes (bodies up to [`MAX_BODY`]); [`super::http_stream`] streams larger ones.
//!
//! The PID 1 is statically linked against glibc, which cannot resolve host names (no NSS):
//! [`Url::resolve`] asks the box's nameservers itself ([`super::resolve`]).

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::conn::Trust;

/// The largest body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// Fetching a URL failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Neither an `http://` nor an `https://` URL.
    #[error("{url}: only http:// and https:// URLs are supported")]
    Scheme {
        /// The URL.
        url: String,
    },
    /// The host is a name that could not be resolved.
    #[error("{url}: {reason}")]
    HostName {
        /// The URL.
        url: String,
        /// Why not.
        reason: String,
    },
    /// The URL is malformed.
    #[error("{url}: {reason}")]
    Malformed {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Connecting, sending or receiving failed.
    #[error("{op} {addr}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The server.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS handshake failed or the certificate was refused.
    #[error("{addr}: {reason}")]
    Tls {
        /// The server.
        addr: SocketAddr,
        /// What went wrong and what to do.
        reason: String,
    },
    /// The answer is not HTTP.
    #[error("bad HTTP response: {0}")]
    BadResponse(&'static str),
    /// The server answered with another status than 200.
    #[error("HTTP status {status} ({reason})")]
    Status {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// The body is larger than [`MAX_BODY`].
    #[error("{addr} did not finish its answer within {:.1} s (it sent {got} bytes); the config server is too slow or stuck", total.as_secs_f64())]
    Deadline {
        /// The server.
        addr: SocketAddr,
        /// The overall deadline.
        total: Duration,
        /// Bytes read by then.
        got: usize,
    },
    #[error("the body is larger than {MAX_BODY} bytes")]
    TooLarge,
    /// The body is shorter than its `Content-Length`.
    #[error("the body has {got} of {expected} bytes")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// `Content-Length`.
        expected: usize,
    },
}

/// A parsed `http[s]://ADDRESS[:PORT]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The URL as given.
    pub text: String,
    /// `https://`.
    pub tls: bool,
    /// The host's name, when the URL names it rather than giving an address.
    pub name: Option<String>,
    /// The server's address and port.
    pub addr: SocketAddr,
    /// The `Host:` header value.
    pub host: String,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses a URL with a numeric host.
    pub fn parse(text: &str) -> Result<Url, HttpError> {
        Url::parse_with(text, |_| Err("a host name where an address was expected".into()))
    }

    /// Parses a URL, resolving a host name with the nameservers of the `resolv.conf` at
    /// `resolv_conf`.
    pub fn resolve(text: &str, resolv_conf: &std::path::Path) -> Result<Url, HttpError> {
        Url::parse_with(text, |name| super::resolve::resolve_with(resolv_conf, name))
    }

    /// Parses a URL, `resolve` turning a host name into an address.
    pub fn parse_with(text: &str, resolve: impl FnOnce(&str) -> Result<IpAddr, String>) -> Result<Url, HttpError> {
        let url = text.to_owned();
        let (tls, rest) = match (text.strip_prefix("http://"), text.strip_prefix("https://")) {
            (Some(rest), _) => (false, rest),
            (None, Some(rest)) => (true, rest),
            (None, None) => return Err(HttpError::Scheme { url }),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        let malformed = |reason| HttpError::Malformed {
            url: url.clone(),
            reason,
        };
        if authority.contains('@') {
            return Err(malformed("user names in URLs are not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| malformed("unclosed [ in the host"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(malformed("the URL has no host"));
        }
        let port = match port {
            None | Some("") if tls => 443,
            None | Some("") => 80,
            Some(p) => p.parse().map_err(|_| malformed("the port is not a number"))?,
        };
        let (ip, name) = match host.parse::<IpAddr>() {
            Ok(ip) => (ip, None),
            Err(_) if !host.contains(|c: char| c.is_ascii_alphabetic()) => {
                return Err(malformed("the host is neither an address nor a name"));
            }
            Err(_) => {
                let ip = resolve(host).map_err(|reason| HttpError::HostName {
                    url: url.clone(),
                    reason,
                })?;
                (ip, Some(host.to_ascii_lowercase()))
            }
        };
        Ok(Url {
            text: url,
            tls,
            name,
            addr: SocketAddr::new(ip, port),
            host: authority.to_owned(),
            path,
        })
    }
}

impl Url {
    /// The host as a certificate names it: the name, or the address without brackets.
    pub fn server_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.addr.ip().to_string())
    }
}

/// Replaces `${mac}` with the MAC in iPXE's form (`52:54:00:12:34:56`, lowercase).
pub fn substitute_mac(url: &str, mac: [u8; 6]) -> String {
    url.replace("${mac}", &format_mac(mac))
}

/// A MAC address as lowercase colon-separated hex.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The request bytes for `url`.
pub fn request(url: &Url) -> String {
    format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: ramkey-init\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.path, url.host
    )
}

/// Checks a response's head (status line and headers, without the blank line): a 200
/// answer, and its `Content-Length` if it has one.
pub fn parse_head(head: &[u8]) -> Result<Option<usize>, HttpError> {
    let head = std::str::from_utf8(head).map_err(|_| HttpError::BadResponse("headers are not text"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::BadResponse("not an HTTP/1.x status line"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(HttpError::BadResponse("no status code"))?;
    if status != 200 {
        return Err(HttpError::Status {
            status,
            reason: parts.next().unwrap_or_default().to_owned(),
        });
    }
    lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.trim().parse::<usize>())
        .transpose()
        .map_err(|_| HttpError::BadResponse("Content-Length is not a number"))
}

/// Where the head ends: the index of the blank line's `\r\n\r\n`.
pub fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n")
}

/// GETs `url` with `timeout` for connecting and for each read, and `total` for the whole
/// exchange (a server that sends a byte now and then never ends a per-read timeout); the
/// body of a 200 answer.
pub fn get(url: &Url, timeout: Duration, total: Duration, trust: &Trust) -> Result<Vec<u8>, HttpError> {
    let addr = url.addr;
    let started = std::time::Instant::now();
    let mut body = super::http_stream::open(url, timeout, trust)?;
    if body.length.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(HttpError::TooLarge);
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = total.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(HttpError::Deadline {
                addr,
                total,
                got: out.len(),
            });
        }
        body.set_read_timeout(left.min(timeout))
            .map_err(|source| HttpError::Io {
                op: "configuring",
                addr,
                source,
            })?;
        match body.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) if out.len() + n > MAX_BODY => return Err(HttpError::TooLarge),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // The read ran into the overall deadline: said at the top of the loop.
            Err(e)
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
                    && started.elapsed() >= total => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && body.length.is_some() => {
                return Err(HttpError::Truncated {
                    got: out.len(),
                    expected: body.length.map_or(0, |n| n as usize),
                });
            }
            Err(source) => {
                return Err(HttpError::Io {
                    op: "reading from",
                    addr,
                    source,
                });
            }
        }
    }
}

/// Fetches URLs, pausing between attempts.
pub trait Fetch {
    /// Parses a URL (resolving a host name, on the box).
    fn url(&self, text: &str) -> Result<Url, HttpError> {
        Url::parse(text)
    }
    /// GETs a URL.
    fn fetch(&mut self, url: &Url) -> Result<Vec<u8>, HttpError>;
    /// Waits between retries.
    fn pause(&mut self, duration: Duration);
}

impl Fetch for crate::net::KernelNetwork {
    fn url(&self, text: &str) -> Result<Url, HttpError> {
        Url::resolve(text, &self.resolv_conf)
    }

    fn fetch(&mut self, url: &Url) -> Result<Vec<u8>, HttpError> {
        get(url, Duration::from_secs(5), Duration::from_secs(30), &Trust::default())
    }

    fn pause(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! The one [`Fetch`] fake.

    use std::collections::VecDeque;
    use std::time::Duration;

    use super::{Fetch, HttpError, Url};

    /// Answers each fetch with the next of `answers`, then with 404 once they are used up;
    /// records the URLs fetched and the pauses.
    #[derive(Debug, Default)]
    pub(crate) struct FakeFetch {
        /// The answers still to give, in order.
        pub(crate) answers: VecDeque<Result<Vec<u8>, HttpError>>,
        /// The URLs fetched.
        pub(crate) urls: Vec<String>,
        /// The pauses asked for.
        pub(crate) pauses: Vec<Duration>,
    }

    impl FakeFetch {
        /// A fetcher that answers `answers`, in order.
        pub(crate) fn answering(answers: impl IntoIterator<Item = Result<Vec<u8>, HttpError>>) -> Self {
            FakeFetch {
                answers: answers.into_iter().collect(),
                ..FakeFetch::default()
            }
        }
    }

    /// An HTTP status error.
    pub(crate) fn status(status: u16) -> HttpError {
        HttpError::Status {
            status,
            reason: "x".into(),
        }
    }

    impl Fetch for FakeFetch {
        fn fetch(&mut self, url: &Url) -> Result<Vec<u8>, HttpError> {
            self.urls.push(url.text.clone());
            self.answers.pop_front().unwrap_or_else(|| Err(status(404)))
        }

        fn pause(&mut self, duration: Duration) {
            self.pauses.push(duration);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn urls() {
        let u = Url::parse("http://10.0.2.2:8099/cfg/52:54:00:12:34:56.toml").unwrap();
        assert_eq!(u.addr, "10.0.2.2:8099".parse().unwrap());
        assert_eq!(u.path, "/cfg/52:54:00:12:34:56.toml");
        assert_eq!(u.host, "10.0.2.2:8099");
        let u = Url::parse("http://192.168.1.1").unwrap();
        assert_eq!((u.addr.port(), u.path.as_str()), (80, "/"));
        let u = Url::parse("http://[fd00::1]:81/x?a=b").unwrap();
        assert_eq!(u.addr, "[fd00::1]:81".parse().unwrap());
        assert_eq!(Url::parse("http://1.2.3.4?x").unwrap().path, "/?x");
        let u = Url::parse("https://10.0.2.2/images").unwrap();
        assert_eq!((u.tls, u.addr.port(), u.server_name()), (true, 443, "10.0.2.2".into()));
        let u = Url::parse("https://[fd00::1]:8443/").unwrap();
        assert_eq!((u.tls, u.server_name()), (true, "fd00::1".into()));
        assert!(!Url::parse("http://1.2.3.4/").unwrap().tls);
    }

    #[test]
    fn bad_urls_say_why() {
        let e = Url::parse("http://boot.example.com/c.toml").unwrap_err();
        assert!(
            e.to_string().contains("a host name where an address was expected"),
            "{e}"
        );
        let named = Url::parse_with("https://Images.Example.com:8443/x", |name| {
            assert_eq!(name, "Images.Example.com");
            Ok(IpAddr::from([192, 0, 2, 9]))
        })
        .unwrap();
        assert_eq!(named.addr, "192.0.2.9:8443".parse().unwrap());
        assert_eq!(
            (named.server_name(), named.host.as_str()),
            ("images.example.com".into(), "Images.Example.com:8443")
        );
        let e = Url::parse_with("http://nowhere.test/", |_| {
            Err("cannot resolve \"nowhere.test\": no".into())
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "http://nowhere.test/: cannot resolve \"nowhere.test\": no"
        );
        assert!(matches!(Url::parse("http://1.2.3/"), Err(HttpError::Malformed { .. })));
        assert!(matches!(Url::parse("ftp://1.2.3.4/"), Err(HttpError::Scheme { .. })));
        assert!(matches!(
            Url::parse("https://images.example.com/"),
            Err(HttpError::HostName { .. })
        ));
        assert!(matches!(
            Url::parse("http://1.2.3.4:x/"),
            Err(HttpError::Malformed { .. })
        ));
        assert!(matches!(Url::parse("http:///x"), Err(HttpError::Malformed { .. })));
        assert!(matches!(
            Url::parse("http://u@1.2.3.4/"),
            Err(HttpError::Malformed { .. })
        ));
    }

    #[test]
    fn mac_substitution() {
        let mac = [0x52, 0x54, 0x00, 0xAB, 0x34, 0x56];
        assert_eq!(
            substitute_mac("http://10.0.2.2:8099/${mac}.toml", mac),
            "http://10.0.2.2:8099/52:54:00:ab:34:56.toml"
        );
        assert_eq!(substitute_mac("http://h/x", mac), "http://h/x");
    }

    /// Answers one request on a loopback port with `answer`; the URL to GET.
    fn serve_once(answer: &'static [u8]) -> Url {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _ = s.read(&mut [0u8; 1024]);
            let _ = s.write_all(answer);
        });
        Url::parse(&format!("http://127.0.0.1:{port}/c.toml")).unwrap()
    }

    fn get_once(answer: &'static [u8]) -> Result<Vec<u8>, HttpError> {
        get(
            &serve_once(answer),
            Duration::from_secs(5),
            Duration::from_secs(10),
            &Trust::default(),
        )
    }

    #[test]
    fn responses() {
        let ok = b"HTTP/1.0 200 OK\r\nServer: x\r\nContent-Length: 5\r\n\r\nhello, extra";
        assert_eq!(get_once(ok).unwrap(), b"hello");
        let eof = b"HTTP/1.1 200 OK\r\n\r\nbody to eof";
        assert_eq!(get_once(eof).unwrap(), b"body to eof");
        let e = get_once(b"HTTP/1.0 404 File not found\r\n\r\n").unwrap_err();
        assert_eq!(e.to_string(), "HTTP status 404 (File not found)");
        assert!(matches!(
            get_once(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
            Err(HttpError::Truncated { got: 3, expected: 10 })
        ));
        assert!(matches!(
            get_once(b"HTTP/1.0 200 OK\r\nContent-Length: 99999999\r\n\r\n"),
            Err(HttpError::TooLarge)
        ));
        assert!(matches!(get_once(b"SSH-2.0\r\n\r\n"), Err(HttpError::BadResponse(_))));
        assert!(matches!(get_once(b"HTTP/1.0 200"), Err(HttpError::BadResponse(_))));
    }

    #[test]
    fn get_from_a_local_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\nversion = 1\n")
                .unwrap();
            req
        });
        let url = Url::parse(&format!("http://127.0.0.1:{port}/aa:bb.toml")).unwrap();
        let body = get(&url, Duration::from_secs(5), Duration::from_secs(10), &Trust::default()).unwrap();
        assert_eq!(body, b"version = 1\n");
        let req = server.join().unwrap();
        assert!(req.starts_with("GET /aa:bb.toml HTTP/1.0\r\nHost: 127.0.0.1:"), "{req}");
        // Nothing listens there any more.
        let gone = get(&url, Duration::from_secs(1), Duration::from_secs(2), &Trust::default());
        assert!(matches!(gone, Err(HttpError::Io { .. })));
    }

    #[test]
    fn a_server_that_trickles_meets_the_overall_deadline() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _ = s.read(&mut [0u8; 1024]);
            // A byte every 100 ms: every read is well inside the per-read timeout.
            for byte in b"HTTP/1.0 200 OK\r\n\r\n".iter().cycle().take(100) {
                if s.write_all(&[*byte]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let url = Url::parse(&format!("http://127.0.0.1:{port}/c.toml")).unwrap();
        // Without the deadline the whole trickle (10 s) reads as a 200 answer.
        let err = get(
            &url,
            Duration::from_secs(5),
            Duration::from_millis(700),
            &Trust::default(),
        )
        .unwrap_err();
        assert!(matches!(err, HttpError::Deadline { .. }), "{err}");
        assert!(
            err.to_string().contains("did not finish its answer within 0.7 s"),
            "{err}"
        );
        drop(server);
    }
}
