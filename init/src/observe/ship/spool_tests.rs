//! The backlog keeps order across reopening, and counts what it drops past its bound.

use super::*;

fn frame(n: usize) -> Vec<u8> {
    let msg = format!("line {n:04}");
    format!("{} {msg}", msg.len()).into_bytes()
}

fn drain(spool: &mut Spool) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(f) = spool.peek().unwrap() {
        out.push(String::from_utf8(f.to_vec()).unwrap());
        spool.take();
    }
    out
}

#[test]
fn frames_come_out_in_order_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    for n in 0..300 {
        spool.push(&frame(n)).unwrap();
    }
    assert_eq!(spool.lines(), 300);
    for _ in 0..100 {
        assert!(spool.peek().unwrap().is_some());
        spool.take();
    }
    // A frame looked at but not taken is sent again after a restart.
    assert_eq!(spool.peek().unwrap(), Some(&b"9 line 0100"[..]));
    spool.sync().unwrap();
    drop(spool);
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!((spool.lines(), spool.dropped), (200, 0));
    let rest = drain(&mut spool);
    assert_eq!(rest.first().map(String::as_str), Some("9 line 0100"));
    assert_eq!(rest.last().map(String::as_str), Some("9 line 0299"));
    assert_eq!(rest.len(), 200);
    // Appending after everything was read goes on from there.
    spool.push(&frame(300)).unwrap();
    assert_eq!(drain(&mut spool), ["9 line 0300"]);
    assert_eq!(spool.backlog(), 0);
}

#[test]
fn past_the_bound_the_oldest_lines_go_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    // 16 KiB: segments of 2 KiB, 186 frames of 11 bytes each.
    let mut spool = Spool::open(dir.path(), 16 << 10).unwrap();
    for n in 0..5000 {
        spool.push(&frame(n)).unwrap();
    }
    assert!(spool.backlog() <= 16 << 10, "{}", spool.backlog());
    let kept = spool.lines();
    assert_eq!(spool.dropped + kept, 5000);
    assert!(spool.dropped > 3000, "{}", spool.dropped);
    let rest = drain(&mut spool);
    // What is left is the newest lines, in order, without a gap.
    let first: usize = rest[0][7..].parse().unwrap();
    assert_eq!(first as u64, spool.dropped);
    assert_eq!(rest.last().map(String::as_str), Some("9 line 4999"));
    assert_eq!(rest.len() as u64, kept);
    // The files left are one segment at most.
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(files <= 2, "{files}");
}

#[test]
fn a_frame_cut_short_by_a_crash_ends_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name(7)), b"9 line 00019 line 0002 12 trunc").unwrap();
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(spool.lines(), 2);
    spool.push(&frame(3)).unwrap();
    assert_eq!(drain(&mut spool), ["9 line 0001", "9 line 0002", "9 line 0003"]);
}
