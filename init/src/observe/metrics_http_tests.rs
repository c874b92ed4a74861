//! Tests of the exporter's HTTP: request lines parsed and refused with reasons, answers as
//! written, and clients that send nothing, too much or half a request.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use super::*;

#[test]
fn requests_are_parsed_and_refused_with_reasons() {
    assert_eq!(parse("GET /metrics HTTP/1.1\r\nHost: x"), Ask::Metrics { head: false });
    assert_eq!(parse("HEAD /metrics?x=1 HTTP/1.0"), Ask::Metrics { head: true });
    assert_eq!(parse("GET / HTTP/1.1"), Ask::NotFound("/".into()));
    assert_eq!(parse("POST /metrics HTTP/1.1"), Ask::Method("POST".into()));
    assert!(matches!(parse("hello"), Ask::Bad(_)));
    assert!(matches!(parse("GET /metrics SPDY/3"), Ask::Bad(_)));
    let (code, body) = refusal(&Ask::NotFound("/nope".into()));
    assert_eq!(
        (code, body.as_str()),
        (404, "no page /nope: the metrics are at /metrics\n")
    );
    let text = String::from_utf8(response(405, "use GET\n", false)).unwrap();
    assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{text}");
    assert!(
        text.contains("\r\nAllow: GET, HEAD\r\n") && text.ends_with("\r\n\r\nuse GET\n"),
        "{text}"
    );
    let text = String::from_utf8(response(200, "x 1\n", true)).unwrap();
    assert!(
        text.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Content-Length: 4\r\n") && text.ends_with("\r\n\r\n"),
        "{text}"
    );
}

/// A connected pair on loopback: (the client's end, the server's end).
pub(crate) fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    (client, listener.accept().unwrap().0)
}

#[test]
fn a_silent_or_endless_client_cannot_hold_the_server() {
    let (_client, mut server) = pair();
    let start = std::time::Instant::now();
    assert_eq!(
        read_request(&mut server, Duration::from_millis(200)),
        Err(Fault::Timeout)
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    let (mut client, mut server) = pair();
    client.write_all(&vec![b'a'; MAX_REQUEST + 2048]).unwrap();
    assert_eq!(read_request(&mut server, Duration::from_secs(5)), Err(Fault::TooLarge));
    let (mut client, mut server) = pair();
    client.write_all(b"GET /metr").unwrap();
    drop(client);
    assert_eq!(read_request(&mut server, Duration::from_secs(5)), Err(Fault::Closed));
    assert_eq!(Fault::Timeout.answer().unwrap().0, 408);
}
