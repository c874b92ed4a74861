//! Plain HTTP/1.0 GETs through a host port forward, for the boot tests and the bench, and a
//! host folder served over HTTP to the box under test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// One `GET path` on 127.0.0.1:`port`; the whole answer when its status is 200. `timeout`
/// bounds the connect, the write and each read.
pub fn get_ok(port: u16, path: &str, timeout: Duration) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut answer = Vec::new();
    // A read that times out ends the answer; the status line decides.
    let _ = stream.take(1 << 20).read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.lines().next()?;
    (status.starts_with("HTTP/1.") && status.split_whitespace().nth(1) == Some("200")).then_some(text)
}

/// [`get_ok`] until it answers or `deadline` passes: QEMU accepts a forwarded connection
/// before anything listens behind it.
pub fn wait_ok(port: u16, path: &str, deadline: Duration) -> Result<String> {
    let start = Instant::now();
    loop {
        if let Some(answer) = get_ok(port, path, Duration::from_secs(5)) {
            return Ok(answer);
        }
        if start.elapsed() > deadline {
            bail!(
                "no HTTP 200 for GET {path} through 127.0.0.1:{port} within {} s",
                deadline.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server that answers each connection with the next of `answers`.
    fn serve(answers: &'static [&'static str]) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for (answer, stream) in answers.iter().zip(listener.incoming()) {
                let mut stream = stream.unwrap();
                let mut request = [0u8; 256];
                let n = stream.read(&mut request).unwrap();
                assert!(request[..n].starts_with(b"GET /page HTTP/1.0\r\n"));
                stream.write_all(answer.as_bytes()).unwrap();
            }
        });
        port
    }

    #[test]
    fn only_a_200_counts() {
        let port = serve(&[
            "HTTP/1.1 404 Not Found\r\n\r\n",
            "garbage",
            "HTTP/1.1 200 OK\r\n\r\nthe page",
        ]);
        let timeout = Duration::from_secs(5);
        assert_eq!(get_ok(port, "/page", timeout), None);
        assert_eq!(get_ok(port, "/page", timeout), None);
        assert!(get_ok(port, "/page", timeout).unwrap().ends_with("the page"));
    }

    #[test]
    fn waiting_ends_with_an_error_that_names_the_request() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = wait_ok(port, "/x", Duration::ZERO).unwrap_err().to_string();
        assert!(err.contains("GET /x through 127.0.0.1:"), "{err}");
    }
}

/// `python3 -m http.server` serving `dir` on a free loopback port (QEMU's user network
/// reaches it from the box as 10.0.2.2), over plain HTTP or TLS; killed when dropped.
#[derive(Debug)]
pub struct Served {
    child: std::process::Child,
    port: u16,
}

/// Python's `http.server` behind TLS: `DIR PORT CERT KEY`.
const TLS_SERVER: &str = r#"
import functools, http.server, ssl, sys
folder, port, cert, key = sys.argv[1:5]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

impl Served {
    /// Starts it over plain HTTP and waits until it accepts connections.
    pub fn start(dir: &std::path::Path) -> Served {
        let port = crate::ssh::free_port();
        let mut command = std::process::Command::new("python3");
        command
            .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .arg(port.to_string());
        Served::spawn(command, port)
    }

    /// Starts it over TLS with the PEM files `cert` (the chain) and `key`.
    pub fn start_tls(dir: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) -> Served {
        let port = crate::ssh::free_port();
        let mut command = std::process::Command::new("python3");
        command
            .args(["-c", TLS_SERVER])
            .arg(dir)
            .arg(port.to_string())
            .args([cert, key]);
        Served::spawn(command, port)
    }

    fn spawn(mut command: std::process::Command, port: u16) -> Served {
        let child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 on the host");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "python3's http.server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Served { child, port }
    }

    /// The loopback port it serves on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
