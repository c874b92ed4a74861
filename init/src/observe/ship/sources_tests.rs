//! Following log files: whole lines once, in order, through rotations and restarts; a zone's
//! planted symlink or FIFO is not followed.

use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::supervisor::logfile::{LogSink, Rotation};

fn collect(sources: &mut Sources, log: &Path, instances: &Path) -> Vec<String> {
    let mut out = Vec::new();
    sources.pass(log, instances, "var/log/ramkey", &mut |o, l| {
        let who = match &o.msgid {
            Some(m) => format!("{}/{m}", o.app),
            None => o.app.clone(),
        };
        out.push(format!("{who}: {}", l.split_once(' ').map_or(l, |(_, t)| t)));
        true
    });
    out
}

#[test]
fn lines_are_read_once_in_order_through_rotations_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (log, instances) = (dir.path().join("log"), dir.path().join("instances"));
    let rotation = Rotation {
        max_bytes: 200,
        keep: 3,
    };
    let mut sink = LogSink::new(&log, "web", rotation);
    let t = UNIX_EPOCH + Duration::from_secs(1);
    sink.write(t, b"one\ntwo\nthr").unwrap();
    let mut sources = Sources::default();
    assert_eq!(collect(&mut sources, &log, &instances), ["web: one", "web: two"]);
    // The end of a line arrives; then enough to rotate twice before the next pass.
    sink.write(t, b"ee\n").unwrap();
    for n in 0..12 {
        sink.write(t, format!("line {n}\n").as_bytes()).unwrap();
    }
    assert!(log.join("web.log.2").exists());
    let got = collect(&mut sources, &log, &instances);
    let mut want = vec!["web: three".to_string()];
    want.extend((0..12).map(|n| format!("web: line {n}")));
    assert_eq!(got, want);
    // Saved and loaded (a restart of the shipper): nothing again, then only what is new.
    let mut sources = Sources::load(&sources.save());
    assert!(collect(&mut sources, &log, &instances).is_empty());
    sink.write(t, b"after\n").unwrap();
    assert_eq!(collect(&mut sources, &log, &instances), ["web: after"]);
}

#[test]
fn zones_are_read_beneath_their_layer_and_name_zone_and_service() {
    let dir = tempfile::tempdir().unwrap();
    let (log, instances) = (dir.path().join("log"), dir.path().join("instances"));
    std::fs::create_dir_all(&log).unwrap();
    std::fs::write(log.join("ramkey.log"), "2026-12-05T00:00:00.000Z warning: x\n").unwrap();
    let zone_logs = instances.join("web/upper/var/log/ramkey");
    std::fs::create_dir_all(&zone_logs).unwrap();
    std::fs::write(zone_logs.join("nginx.log"), "2026-12-05T00:00:00.000Z hello\n").unwrap();
    // What a hostile zone plants: a symlink to the host's files and a FIFO.
    std::fs::write(dir.path().join("secret"), "host secret\n").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), zone_logs.join("steal.log")).unwrap();
    nix::unistd::mkfifo(&zone_logs.join("block.log"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let evil = instances.join("evil/upper/var/log");
    std::fs::create_dir_all(&evil).unwrap();
    std::os::unix::fs::symlink(&log, evil.join("ramkey")).unwrap();
    let mut sources = Sources::default();
    let got = collect(&mut sources, &log, &instances);
    assert_eq!(got, ["ramkey: warning: x", "web/nginx: hello"]);
    let origin = |key: &str| sources.cursors.contains_key(key);
    assert!(origin("host/ramkey") && origin("zone/web/nginx") && !origin("zone/web/steal"));
}

#[test]
fn a_refused_line_waits_for_the_next_pass_also_in_a_rotated_file() {
    let dir = tempfile::tempdir().unwrap();
    let (log, instances) = (dir.path().join("log"), dir.path().join("instances"));
    let mut sink = LogSink::new(
        &log,
        "web",
        Rotation {
            max_bytes: 100,
            keep: 3,
        },
    );
    let t = UNIX_EPOCH;
    let mut sources = Sources::default();
    sink.write(t, b"a\n").unwrap();
    let take = |sources: &mut Sources, n: usize| {
        let mut got = Vec::new();
        sources.pass(&log, &instances, "var/log/ramkey", &mut |_, l| {
            if got.len() == n {
                return false;
            }
            got.push(l.split_once(' ').map_or(l, |(_, t)| t).to_owned());
            true
        });
        got
    };
    assert_eq!(take(&mut sources, 5), ["a"]);
    for n in 0..6 {
        sink.write(t, format!("line {n}\n").as_bytes()).unwrap();
    }
    assert!(log.join("web.log.1").exists());
    let mut all = Vec::new();
    for _ in 0..10 {
        all.extend(take(&mut sources, 2));
    }
    assert_eq!(all, (0..6).map(|n| format!("line {n}")).collect::<Vec<_>>());
}
