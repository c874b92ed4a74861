//! An HTTP/1.0 GET, over TCP or TLS, whose body is read as a stream (personality images, which may be far
//! larger than [`super::http::MAX_BODY`]): the head is read and checked, then the body is
//! whatever the connection carries until it closes, or `Content-Length` bytes.

use std::io::{Read, Write};
use std::time::Duration;

use super::conn::{self, Conn, Trust};
use super::http::{HttpError, Url, head_end, parse_head, request};

/// The longest head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// A 200 answer's body.
#[derive(Debug)]
pub struct Body {
    /// `Content-Length`, when the server sent it.
    pub length: Option<u64>,
    /// Body bytes read with the head.
    early: std::io::Cursor<Vec<u8>>,
    stream: Conn,
    /// Bytes of the body still to come when the length is known.
    left: Option<u64>,
}

/// Connects (an `https://` server's certificate checked against `trust`), sends the request
/// and reads the head; `timeout` bounds the connection and each read, so a server that stops
/// sending ends the download with an error.
pub fn open(url: &Url, timeout: Duration, trust: &Trust) -> Result<Body, HttpError> {
    let addr = url.addr;
    let io = |op| move |source| HttpError::Io { op, addr, source };
    let mut stream = conn::connect(url, timeout, trust)?;
    stream.write_all(request(url).as_bytes()).map_err(io("sending to"))?;
    stream.flush().map_err(io("sending to"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(end) = head_end(&head) {
            break end;
        }
        if head.len() > MAX_HEAD {
            return Err(HttpError::BadResponse("the headers never end"));
        }
        match stream.read(&mut buf) {
            Ok(0) => return Err(HttpError::BadResponse("no end of headers")),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io("reading from")(e)),
        }
    };
    let length = parse_head(&head[..end])?.map(|n| n as u64);
    let early = head.split_off(end + 4);
    Ok(Body {
        length,
        left: length,
        early: std::io::Cursor::new(early),
        stream,
    })
}

impl Body {
    /// Bounds each read that follows.
    pub fn set_read_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = match self.left {
            Some(0) => return Ok(0),
            Some(left) => buf.len().min(usize::try_from(left).unwrap_or(usize::MAX)),
            None => buf.len(),
        };
        let n = match self.early.read(&mut buf[..want])? {
            0 => self.stream.read(&mut buf[..want])?,
            n => n,
        };
        if let Some(left) = self.left.as_mut() {
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the server closed the connection {left} bytes before the end of the body"),
                ));
            }
            *left -= n as u64;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves `answer` once on a loopback port; returns its URL.
    fn serve(answer: Vec<u8>) -> Url {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request);
            let _ = conn.write_all(&answer);
        });
        Url::parse(&format!("http://127.0.0.1:{port}/web.rkimg")).unwrap()
    }

    fn fetch(answer: &[u8]) -> Result<(Option<u64>, Vec<u8>), String> {
        let mut body =
            open(&serve(answer.to_vec()), Duration::from_secs(5), &Trust::default()).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        body.read_to_end(&mut out).map_err(|e| e.to_string())?;
        Ok((body.length, out))
    }

    #[test]
    fn streams_a_body_larger_than_the_config_limit() {
        let big = vec![7u8; 3 << 20];
        let mut answer = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", big.len()).into_bytes();
        answer.extend_from_slice(&big);
        assert_eq!(fetch(&answer).unwrap(), (Some(big.len() as u64), big));
        assert_eq!(
            fetch(b"HTTP/1.0 200 OK\r\n\r\nto the end").unwrap(),
            (None, b"to the end".to_vec())
        );
    }

    #[test]
    fn a_short_body_a_404_and_garbage_are_errors() {
        let short = fetch(b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\nonly this").unwrap_err();
        assert!(short.contains("91 bytes before the end"), "{short}");
        let missing = fetch(b"HTTP/1.0 404 Not Found\r\n\r\n").unwrap_err();
        assert_eq!(missing, "HTTP status 404 (Not Found)");
        assert!(
            fetch(b"SSH-2.0-OpenSSH\r\n\r\n")
                .unwrap_err()
                .contains("not an HTTP/1.x")
        );
    }
}
