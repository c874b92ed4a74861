//! Boot tests of what leaves the box for a fleet's dashboards and log store (QEMU, TCG): one
//! box booted from the stick under SeaBIOS, with a pool, the `web` zone, SSH and
//! `[metrics] listen = "admin:9100"`, reached through host forwards. Its metrics pass
//! Debian's `promtool check metrics`, name the node, the NICs, the pool, the services, the
//! zone, the boot timeline and the platform's version and slot; another path is a 404, said
//! once in the exporter's log; the zone cannot reach the endpoint; a memory hog in `web`
//! shows in `ramkey_zone_memory_bytes`. With `[log] remote` pointing at a collector on the
//! host ([`collector`]), PID 1's, a platform service's and the zone's lines arrive as RFC 5424
//! with the box's name; lines written while the collector is down arrive once, in order, when
//! it is back; past `[log] buffer` the stream says how many were dropped. Every check runs on
//! the same boot.

#[path = "observe/collector.rs"]
mod collector;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use collector::{Collector, Message};
use ramkey_builder::run::{Boot, Forward, RunOptions};
use xtask::artifacts;
use xtask::qemu::{Machine, Spec};
use xtask::ssh::{self, free_port, keygen, text};

const BOOT: Duration = Duration::from_secs(300);
const SHUTDOWN: Duration = Duration::from_secs(120);
/// The box's address on QEMU's user network, where the forwards go.
const BOX: &str = "10.0.2.15";
/// The metrics port in the config.
const METRICS_PORT: u16 = 9100;
/// What the hog holds in the zone.
const HOG_MIB: u64 = 64;
const MIB: f64 = (1u64 << 20) as f64;

/// The box under test and how to reach it.
struct Box {
    vm: Machine,
    ssh_port: u16,
    metrics_port: u16,
    key: PathBuf,
    known_hosts: PathBuf,
    _keys: tempfile::TempDir,
}

impl Box {
    /// `COMMAND` over SSH as root; its standard output, or a failed test.
    fn ssh(&self, command: &str) -> String {
        let out = ssh::ssh(self.ssh_port, &self.key, &self.known_hosts, "yes", command);
        assert!(out.status.success(), "ssh {command}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `COMMAND` over SSH, running in the background.
    fn ssh_spawn(&self, command: &str) -> Child {
        ssh::client("ssh", self.ssh_port, &self.key, &self.known_hosts)
            .args(["-o", "StrictHostKeyChecking=yes", "root@127.0.0.1", command])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `GET path` on the metrics forward: the status and the body.
    fn get(&self, path: &str) -> (u16, String) {
        get(self.metrics_port, path)
    }

    /// A scrape that must succeed: its body.
    fn scrape(&self) -> String {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        body
    }
}

/// One HTTP/1.1 `GET` on 127.0.0.1:`port`: the status and the body.
fn get(port: u16, path: &str) -> (u16, String) {
    let timeout = Duration::from_secs(20);
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), timeout).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: box\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_owned())
}

/// The samples of a scrape, by their whole name with labels (`ramkey_zone_memory_bytes{zone="web"}`).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The one sample called `name`, or a failed test.
fn sample(text: &str, name: &str) -> f64 {
    *samples(text)
        .get(name)
        .unwrap_or_else(|| panic!("no sample {name} in the scrape:\n{text}"))
}

/// A one-shot that writes `seq K of N` for K in 1..=N, N read from /run/count.
const COUNTER: &str = "name = \"counter\"\nrestart = \"never\"\nargv = [\"/bin/sh\", \"-c\", \
    \"n=$(cat /run/count 2>/dev/null || echo 0); i=1; while [ $i -le $n ]; do echo \\\"seq $i of $n\\\"; i=$((i+1)); done\"]\n";
/// The box's name, as the collector must see it.
const HOST: &str = "observed";

/// Boots the stick with a pool, `web` (256 MiB cap), root's key, `[metrics]`, `[log] remote`
/// to the collector on the host's `log_port` (a 64 KiB backlog) and the `counter` service.
fn boot_box(name: &str, log_port: u16) -> Box {
    let keys = tempfile::tempdir().unwrap();
    let key = keygen(keys.path(), "operator");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let known_hosts = keys.path().join("known_hosts");
    let web = artifacts::personality("web").unwrap();
    let config = keys.path().join("config.toml");
    let text = ssh::zone_box_config(HOST, public.trim(), &[]).replace("memory = \"128M\"", "memory = \"256M\"")
        + &format!("\n[metrics]\nlisten = \"admin:{METRICS_PORT}\"\n")
        + &format!("\n[log]\nremote = \"tcp://10.0.2.2:{log_port}\"\nbuffer = \"64KiB\"\n");
    std::fs::write(&config, text).unwrap();
    let counter = keys.path().join("counter.toml");
    std::fs::write(&counter, COUNTER).unwrap();
    let image = artifacts::usb_copy(name).unwrap();
    artifacts::put_on_stick(
        &image,
        &[
            (web.as_path(), "::/personalities/web-1.0.0.rkimg"),
            (&config, "::/config.toml"),
            (&counter, "::/services.d/counter.toml"),
        ],
    )
    .unwrap();
    let (ssh_port, metrics_port) = (free_port(), free_port());
    let mut opts = RunOptions::new(Boot::Usb { image });
    opts.pool = Some(artifacts::empty_pool(name).unwrap());
    opts.state_dir = Some(artifacts::target_dir().join("ramkey/run").join(name));
    let to_box = |host, guest| Forward {
        host,
        guest,
        address: Some(BOX.parse().unwrap()),
    };
    opts.forwards = vec![to_box(ssh_port, 22), to_box(metrics_port, METRICS_PORT)];
    let mut vm = Machine::start(&Spec::run(name, &opts).unwrap()).unwrap();
    vm.forbid(&[
        "Kernel panic",
        "ramkey: error: PANIC",
        "RECOVERY MODE",
        "services: not started",
    ])
    .unwrap();
    vm.expect("ramkey: log: every line also goes to tcp://10.0.2.2:", BOOT)
        .unwrap();
    vm.expect(
        &format!("ramkey: metrics: ramkey-metrics on admin (NIC admin) port {METRICS_PORT}"),
        BOOT,
    )
    .unwrap();
    vm.expect("ramkey: zone web: web 1.0.0 came up", BOOT).unwrap();
    ssh::ssh_when_up(ssh_port, &key, &known_hosts, "true", BOOT);
    Box {
        vm,
        ssh_port,
        metrics_port,
        key,
        known_hosts,
        _keys: keys,
    }
}

/// The endpoint: promtool accepts it, it names what docs/observability.md promises, it
/// answers another path with a 404 said once, a zone cannot reach it; prints its latency
/// and cost.
fn metrics_are_served(b: &Box) {
    let text = xtask::http::wait_ok(b.metrics_port, "/metrics", BOOT).unwrap();
    let text = text
        .split_once("\r\n\r\n")
        .map_or(text.as_str(), |(_, body)| body)
        .to_owned();
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; `cargo xtask deps` installs it)");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}\n{text}",
        ssh::text(&checked)
    );

    let all = samples(&text);
    let ones = [
        "ramkey_pool_health{health=\"ok\"}",
        "ramkey_nic_up{nic=\"admin\"}",
        "ramkey_service_state{service=\"sshd\",state=\"online\"}",
        "ramkey_service_state{service=\"zone-web\",state=\"online\"}",
        "ramkey_service_state{service=\"ramkey-metrics\",state=\"online\"}",
    ];
    for name in ones {
        assert_eq!(sample(&text, name), 1.0, "{name}");
    }
    for source in ["node", "nics", "cgroups", "pid1", "pool"] {
        assert_eq!(
            sample(&text, &format!("ramkey_metrics_source_up{{source=\"{source}\"}}")),
            1.0
        );
    }
    let positive = [
        "ramkey_node_memory_available_bytes",
        "ramkey_node_cpu_seconds_total{mode=\"idle\"}",
        "ramkey_node_uptime_seconds",
        "ramkey_nic_receive_bytes_total{nic=\"admin\"}",
        "ramkey_pool_size_bytes",
        "ramkey_pool_used_bytes",
        "ramkey_service_uptime_seconds{service=\"zone-web\"}",
        "ramkey_zone_memory_bytes{zone=\"web\"}",
        "ramkey_zone_cpu_seconds_total{zone=\"web\"}",
        "ramkey_zone_pids{zone=\"web\"}",
        "ramkey_boot_step_duration_seconds{step=\"coldplug\"}",
        "ramkey_boot_step_start_seconds{step=\"services\"}",
        "ramkey_boot_ready_seconds",
    ];
    for name in positive {
        assert!(sample(&text, name) > 0.0, "{name} is not positive:\n{text}");
    }
    assert_eq!(sample(&text, "ramkey_zone_memory_max_bytes{zone=\"web\"}"), 256.0 * MIB);
    // web's gate (the one-shot service zone-gate-web) has a cgroup too, but is no zone.
    assert!(!text.contains("zone=\"gate-web\""), "{text}");
    let version = env!("CARGO_PKG_VERSION");
    let info = all
        .keys()
        .find(|k| k.starts_with("ramkey_platform_info{"))
        .unwrap_or_else(|| panic!("no ramkey_platform_info:\n{text}"));
    assert!(
        info.contains("slot=\"a\"") && info.contains(&format!("version=\"{version}\"")),
        "{info}"
    );
    assert!(sample(&text, "ramkey_node_load1") >= 0.0);

    // Another path: a 404 with the way to the metrics, said once in the exporter's log.
    let (status, body) = b.get("/nope");
    assert_eq!(
        (status, body.as_str()),
        (404, "no page /nope: the metrics are at /metrics\n")
    );
    assert_eq!(b.get("/").0, 404);
    let log = b.ssh("ramkeyctl log ramkey-metrics");
    assert!(
        log.contains(&format!("metrics: listening on admin port {METRICS_PORT}")),
        "{log}"
    );
    assert_eq!(log.matches("no such page").count(), 1, "the 404s said once:\n{log}");

    // The zone, in its own network namespace, cannot reach the endpoint.
    let reached = b.ssh(&format!(
        "ramkeyctl personality console web -- /bin/bash -c \
         'timeout 5 bash -c \": >/dev/tcp/{BOX}/{METRICS_PORT}\" 2>/dev/null && echo reached || echo not-reached'"
    ));
    assert_eq!(reached.trim(), "not-reached", "from the web zone");

    // Latency and cost: 20 scrapes in a row.
    let before = b.scrape();
    let mut took: Vec<Duration> = (0..20)
        .map(|_| {
            let start = Instant::now();
            b.scrape();
            start.elapsed()
        })
        .collect();
    let after = b.scrape();
    took.sort();
    let scrapes = sample(&after, "ramkey_metrics_scrapes_total") - sample(&before, "ramkey_metrics_scrapes_total");
    let cpu = sample(&after, "ramkey_metrics_cpu_seconds_total") - sample(&before, "ramkey_metrics_cpu_seconds_total");
    eprintln!(
        "observe: {} scrapes through the forward: median {} ms, max {} ms; exporter CPU {:.1} ms per scrape \
         (in the guest, TCG); reading the sources {:.1} ms; {} bytes, {} samples",
        took.len(),
        took[took.len() / 2].as_millis(),
        took[took.len() - 1].as_millis(),
        cpu / scrapes * 1000.0,
        sample(&after, "ramkey_metrics_scrape_duration_seconds") * 1000.0,
        after.len(),
        samples(&after).len()
    );
}

/// A hog holding [`HOG_MIB`] in `web` for a while: the zone's memory gauge rises by most of it.
/// Returns the hog, which ends on its own 40 s after it started.
fn zone_memory_shows_in_the_metrics(b: &Box) -> Child {
    let gauge = "ramkey_zone_memory_bytes{zone=\"web\"}";
    let before = sample(&b.scrape(), gauge);
    // tail keeps a line that never ends in memory until its input closes, 40 s later.
    let hog = b.ssh_spawn(&format!(
        "ramkeyctl personality console web -- /bin/sh -c \
         '{{ head -c {HOG_MIB}M /dev/zero; sleep 40; }} | tail >/dev/null; echo hog-done'"
    ));
    let start = Instant::now();
    let mut peak = before;
    while peak - before < 0.75 * HOG_MIB as f64 * MIB {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{gauge} went from {:.1} MiB to at most {:.1} MiB while the hog held {HOG_MIB} MiB",
            before / MIB,
            peak / MIB
        );
        std::thread::sleep(Duration::from_secs(1));
        peak = peak.max(sample(&b.scrape(), gauge));
    }
    eprintln!(
        "observe: {gauge} rose from {:.1} MiB to {:.1} MiB with the {HOG_MIB} MiB hog, seen after {:.1} s",
        before / MIB,
        peak / MIB,
        start.elapsed().as_secs_f64()
    );
    hog
}

/// The `seq K of N` lines of one run of `counter`, in arrival order.
fn run_of(messages: &[Message], n: u32) -> Vec<u32> {
    let tail = format!(" of {n}");
    messages
        .iter()
        .filter(|m| m.app == "counter")
        .filter_map(|m| m.text.strip_prefix("seq ")?.strip_suffix(&tail)?.parse().ok())
        .collect()
}

/// Has `counter` write `n` lines, and waits until its log on the box has the last.
fn count_to(b: &Box, n: u32) {
    b.ssh(&format!("echo {n} > /run/count && ramkeyctl svcadm restart counter"));
    let start = Instant::now();
    while !b.ssh("ramkeyctl log counter -n 1").contains(&format!("seq {n} of {n}")) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "counter never wrote {n} lines"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The collector gets the box's lines; none is lost while it is down; an overflow of the
/// backlog is said in the stream. Prints the shipper's pace, delay and CPU.
fn logs_leave_the_box(b: &Box, collector: Collector, port: u16) {
    // PID 1's lines, a platform service's and a zone's service's, each parseable RFC 5424
    // with the box's name, its origin as APP-NAME, facility daemon.
    let ready = collector.wait_for(BOOT, "PID 1's ready line", |m| {
        m.app == "ramkey" && m.text.starts_with("ready in")
    });
    let seed = collector.wait_for(BOOT, "web's seed line", |m| m.app == "web" && m.msgid == "seed");
    assert!(seed.text.contains("seeded /srv/www"), "{seed:?}");
    let sshd = collector.wait_for(BOOT, "sshd's line", |m| {
        m.app == "sshd" && m.text.contains("Accepted publickey")
    });
    assert!(!sshd.text.ends_with('\r'), "{sshd:?}");
    for m in collector.messages() {
        assert_eq!(m.host, HOST, "{m:?}");
        assert!((24..32).contains(&m.pri), "{m:?}");
    }
    eprintln!("logs: got {ready:?}\n{seed:?}\n{sshd:?}");

    // The collector goes down; 200 lines are written; it comes back: each arrives once, in order.
    let frames = collector.stop();
    count_to(b, 200);
    let collector = Collector::start(port, frames);
    collector.wait_for(Duration::from_secs(60), "the last of 200 lines", |m| {
        m.text == "seq 200 of 200"
    });
    assert_eq!(run_of(&collector.messages(), 200), (1..=200).collect::<Vec<_>>());

    // Down again, and 3000 lines: more than a 64 KiB backlog holds. The stream says how many
    // were dropped where they were, and the newest arrive in order after it.
    let frames = collector.stop();
    count_to(b, 3000);
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
    eprintln!("logs: after the overflow {dropped} lines dropped (noted), seq {first}..=3000 kept");

    // With the collector up: how fast lines go, how late they arrive, what the shipper costs.
    let cpu = || -> u64 {
        let stat = b.ssh("cat /sys/fs/cgroup/ramkey/logship/cpu.stat");
        stat.lines()
            .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse().ok())
            .unwrap()
    };
    let before = cpu();
    b.ssh("echo 2000 > /run/count && ramkeyctl svcadm restart counter");
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
        "logs: 2000 lines arrived over {:.2} s ({:.0} lines/s, the counter's pace under TCG); \
         written -> received median {} ms, max {} ms; the shipper used {} ms of CPU for them",
        span.as_secs_f64(),
        2000.0 / span.as_secs_f64(),
        delays[1000].as_millis(),
        delays[1999].as_millis(),
        used / 1000
    );
}

fn power_off(mut vm: Machine) {
    vm.monitor("system_powerdown").unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}

#[test]
fn logs_and_metrics_leave_the_box() {
    let started = Instant::now();
    let log_port = free_port();
    let collector = Collector::start(log_port, Default::default());
    let b = boot_box("observe", log_port);
    eprintln!(
        "observe: booted, zone and SSH up in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    metrics_are_served(&b);
    let hog = zone_memory_shows_in_the_metrics(&b);
    logs_leave_the_box(&b, collector, log_port);
    let out = hog.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hog-done"),
        "{}",
        text(&out)
    );
    power_off(b.vm);
    eprintln!("observe: done in {:.0} s", started.elapsed().as_secs_f64());
}
