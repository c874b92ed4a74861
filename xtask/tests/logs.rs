//! Boot test of logs leaving the box (QEMU, TCG): a collector on the host gets PID 1's, a
//! platform service's and a zone's lines as RFC 5424 with the box's name; lines written
//! while it is down arrive once, in order, when it is back; past `[log] buffer` the stream
//! says how many were dropped.

#[path = "observe/collector.rs"]
mod collector;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use collector::{Collector, Message};
use ramkey_builder::run::{Boot, Forward, RunOptions};
use xtask::artifacts;
use xtask::qemu::{Machine, Spec};
use xtask::ssh::{self, free_port, keygen};

const BOOT: Duration = Duration::from_secs(240);
const HOST: &str = "logbox";

/// A one-shot that writes `seq K of N` for K in 1..=N, N read from /run/count.
const COUNTER: &str = "name = \"counter\"\nrestart = \"never\"\nargv = [\"/bin/sh\", \"-c\", \
    \"n=$(cat /run/count 2>/dev/null || echo 0); i=1; while [ $i -le $n ]; do echo \\\"seq $i of $n\\\"; i=$((i+1)); done\"]\n";

/// The `seq K of N` lines of one run, in arrival order.
fn run_of(messages: &[Message], n: u32) -> Vec<u32> {
    let tail = format!(" of {n}");
    messages
        .iter()
        .filter(|m| m.app == "counter")
        .filter_map(|m| m.text.strip_prefix("seq ")?.strip_suffix(&tail)?.parse().ok())
        .collect()
}

#[test]
fn logs_leave_the_box_and_none_is_lost() {
    let name = "observe-logs";
    let keys = tempfile::tempdir().unwrap();
    let key = keygen(keys.path(), "operator");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let known_hosts = keys.path().join("known_hosts");
    let port = free_port();
    let frames = Arc::new(Mutex::new(Vec::new()));
    let collector = Collector::start(port, frames.clone());

    let config = format!(
        "{}\n[log]\nremote = \"tcp://10.0.2.2:{port}\"\nbuffer = \"64KiB\"\n",
        ssh::zone_box_config(HOST, public.trim(), &[])
    );
    let dir = keys.path();
    std::fs::write(dir.join("config.toml"), config).unwrap();
    std::fs::write(dir.join("counter.toml"), COUNTER).unwrap();
    let web = artifacts::personality("web").unwrap();
    let image = artifacts::usb_copy(name).unwrap();
    artifacts::put_on_stick(
        &image,
        &[
            (web.as_path(), "::/personalities/web-1.0.0.rkimg"),
            (&dir.join("config.toml"), "::/config.toml"),
            (&dir.join("counter.toml"), "::/services.d/counter.toml"),
        ],
    )
    .unwrap();
    let ssh_port = free_port();
    let mut opts = RunOptions::new(Boot::Usb { image });
    opts.pool = Some(artifacts::empty_pool(name).unwrap());
    opts.state_dir = Some(artifacts::target_dir().join("ramkey/run").join(name));
    opts.forwards = vec![Forward {
        host: ssh_port,
        guest: 22,
        address: None,
    }];
    let mut vm = Machine::start(&Spec::run(name, &opts).unwrap()).unwrap();
    vm.expect("ramkey: log: every line also goes to tcp://10.0.2.2:", BOOT)
        .unwrap();
    let sh = |command: &str| ssh::ssh_when_up(ssh_port, &key, &known_hosts, command, BOOT);

    // PID 1's lines, a platform service's and a zone's service's, each parseable RFC 5424
    // with the box's name, its origin as APP-NAME, facility daemon.
    let ready = collector.wait_for(BOOT, "PID 1's ready line", |m| {
        m.app == "ramkey" && m.text.starts_with("ready")
    });
    let seed = collector.wait_for(BOOT, "web's seed line", |m| m.app == "web" && m.msgid == "seed");
    assert!(seed.text.contains("seeded /srv/www"), "{seed:?}");
    sh("ramkeyctl status >/dev/null");
    let sshd = collector.wait_for(BOOT, "a line of sshd", |m| m.app == "sshd");
    for m in collector.messages() {
        assert_eq!(m.host, HOST, "{m:?}");
        assert!((24..32).contains(&m.pri), "{m:?}");
    }
    let warnings = collector.messages().iter().filter(|m| m.pri == 28).count();
    eprintln!("got {ready:?}\n{seed:?}\n{sshd:?}\n({warnings} warnings among them)");

    // The collector goes down; 200 lines are written; it comes back: each arrives once, in order.
    let frames = collector.stop();
    sh("echo 200 > /run/count && ramkeyctl svcadm restart counter");
    let tail = sh("sleep 2; ramkeyctl log counter -n 1");
    assert!(tail.contains("seq 200 of 200"), "{tail}");
    let collector = Collector::start(port, frames.clone());
    collector.wait_for(Duration::from_secs(60), "the last of 200 lines", |m| {
        m.text == "seq 200 of 200"
    });
    assert_eq!(run_of(&collector.messages(), 200), (1..=200).collect::<Vec<_>>());

    // Down again, and 3000 lines: more than a 64 KiB backlog holds. The stream says how many
    // were dropped, where they were, and the newest arrive in order after it.
    let frames = collector.stop();
    sh("echo 3000 > /run/count && ramkeyctl svcadm restart counter");
    let tail = sh("sleep 2; ramkeyctl log counter -n 1");
    assert!(tail.contains("seq 3000 of 3000"), "{tail}");
    let collector = Collector::start(port, frames);
    collector.wait_for(Duration::from_secs(60), "the last of 3000 lines", |m| {
        m.text == "seq 3000 of 3000"
    });
    let all = collector.messages();
    let note = all
        .iter()
        .position(|m| m.app == "logship" && m.text.contains("lines dropped here"))
        .unwrap_or_else(|| panic!("no note of dropped lines"));
    let dropped: u32 = all[note].text.split(' ').next().unwrap().parse().unwrap();
    let kept = run_of(&all[note..], 3000);
    let first = kept[0];
    assert_eq!(
        kept,
        (first..=3000).collect::<Vec<_>>(),
        "the lines after the note have no gap"
    );
    assert!(
        run_of(&all[..note], 3000).is_empty(),
        "nothing of the run came before the note"
    );
    assert!(dropped >= first - 1, "{dropped} dropped, the first kept is {first}");
    eprintln!("after the overflow: {dropped} lines dropped (noted), seq {first}..=3000 kept");

    // With the collector up: how fast lines go, how late they arrive, what the shipper costs.
    let cpu = || -> u64 {
        let stat = sh("cat /sys/fs/cgroup/ramkey/logship/cpu.stat");
        stat.lines()
            .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse().ok())
            .unwrap()
    };
    let before = cpu();
    sh("echo 2000 > /run/count && ramkeyctl svcadm restart counter");
    collector.wait_for(Duration::from_secs(60), "the last of 2000 lines", |m| {
        m.text == "seq 2000 of 2000"
    });
    let used = cpu() - before;
    let all = collector.messages();
    let run: Vec<&Message> = all
        .iter()
        .filter(|m| m.app == "counter" && m.text.ends_with(" of 2000"))
        .collect();
    assert_eq!(run.len(), 2000);
    let span = run[1999].arrived.duration_since(run[0].arrived).unwrap();
    let mut delays: Vec<Duration> = run.iter().map(|m| m.delay()).collect();
    delays.sort();
    eprintln!(
        "measured: 2000 lines arrived over {:.2} s ({:.0} lines/s, the counter's pace under TCG); \
         delay written -> received median {} ms, max {} ms; the shipper used {} ms of CPU for them",
        span.as_secs_f64(),
        2000.0 / span.as_secs_f64(),
        delays[1000].as_millis(),
        delays[1999].as_millis(),
        used / 1000
    );
    drop(vm);
}
