//! The sender against real sockets on loopback: a collector that reads gets every frame in
//! order (a note of dropped lines first), one that never reads leaves them in the backlog
//! without blocking, a closed port is retried later with the lines kept.

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use super::*;

fn remote(port: u16) -> Remote {
    format!("tcp://127.0.0.1:{port}").parse().unwrap()
}

fn frame(n: usize) -> Vec<u8> {
    let origin = Origin {
        app: "t".into(),
        msgid: None,
        pid1: false,
    };
    syslog::frame("box", &origin, &format!("line {n}"), std::time::UNIX_EPOCH)
}

#[test]
fn a_reading_collector_gets_the_note_then_every_frame_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    for n in 0..100 {
        spool.push(&frame(n)).unwrap();
    }
    spool.dropped = 7;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut sender = Sender::new(remote(listener.local_addr().unwrap().port()));
    sender.pump(&mut spool, "box").unwrap();
    assert_eq!((spool.lines(), spool.dropped, sender.sent), (0, 0, 101));
    let (mut conn, _) = listener.accept().unwrap();
    drop(sender);
    let mut got = String::new();
    conn.read_to_string(&mut got).unwrap();
    let first = got.find("7 lines dropped here").unwrap();
    assert!(first < got.find("line 0").unwrap());
    assert!(got.find("line 98").unwrap() < got.find("line 99").unwrap());
}

#[test]
fn a_collector_that_never_reads_leaves_the_lines_waiting_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 64 << 20).unwrap();
    let big = "x".repeat(4000);
    let origin = Origin {
        app: "t".into(),
        msgid: None,
        pid1: false,
    };
    for _ in 0..8000 {
        spool
            .push(&syslog::frame("box", &origin, &big, std::time::UNIX_EPOCH))
            .unwrap();
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut sender = Sender::new(remote(listener.local_addr().unwrap().port()));
    let start = Instant::now();
    for _ in 0..5 {
        sender.pump(&mut spool, "box").unwrap();
    }
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    assert!(spool.lines() > 0 && sender.sent < 8000, "sent {}", sender.sent);
    drop(listener);
}

#[test]
fn a_closed_port_is_retried_later_and_the_lines_stay() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    spool.push(&frame(1)).unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut sender = Sender::new(remote(port));
    sender.pump(&mut spool, "box").unwrap();
    assert!(
        sender.problem.as_deref().unwrap().contains("refused"),
        "{:?}",
        sender.problem
    );
    assert_eq!(spool.lines(), 1);
    // Within the backoff nothing is tried again, even with a collector listening now.
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    sender.pump(&mut spool, "box").unwrap();
    assert_eq!(spool.lines(), 1);
    sender.retry_at = Instant::now();
    sender.pump(&mut spool, "box").unwrap();
    assert_eq!(spool.lines(), 0);
    drop(listener);
}
