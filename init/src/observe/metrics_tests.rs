//! Tests of the exporter: the text rendered from fixture `/proc`, `/sys` and cgroup files
//! and canned PID 1 answers, checked the way `promtool check metrics` checks it; the HTTP
//! side on loopback; a port that is taken, retried.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use super::http::tests::pair;
use super::render::Exporter;
use super::*;
use crate::supervisor::protocol::{BootStep, BootTimeline, SystemInfo, SystemStatus, summary};
use crate::supervisor::{ServiceStatus, State};

fn put(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A box under a temporary root: two CPUs, an `admin` NIC, a zone `web` with caps and one
/// `kv` without, a service's cgroup that is no zone, slot b.
pub(super) fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    put(
        r,
        "proc/meminfo",
        "MemTotal:        1000 kB\nMemFree:          200 kB\nMemAvailable:     600 kB\nBuffers:            10 kB\nCached:           300 kB\nSwapCached:         0 kB\nShmem:             50 kB\n",
    );
    put(
        r,
        "proc/stat",
        "cpu  100 0 50 1000 5 1 2 0 0 0\ncpu0 50 0 25 500 2 1 1 0 0 0\ncpu1 50 0 25 500 3 0 1 0 0 0\nintr 1 2\nctxt 42\n",
    );
    put(r, "proc/loadavg", "0.50 0.25 0.10 2/120 4242\n");
    put(r, "proc/uptime", "123.45 200.00\n");
    put(
        r,
        "proc/cmdline",
        "BOOT_IMAGE=/platform/b/vmlinuz console=ttyS0 ramkey.slot=b\n",
    );
    put(r, "proc/sys/kernel/osrelease", "6.1.0-28-amd64\n");
    put(
        r,
        "etc/os-release",
        "NAME=Ramkey\nVERSION_ID=0.1.0\nPRETTY_NAME=\"Ramkey 0.1.0\"\n",
    );
    for (nic, state, rx) in [("lo", "unknown", "1"), ("admin", "up", "5000")] {
        put(r, &format!("sys/class/net/{nic}/operstate"), &format!("{state}\n"));
        put(
            r,
            &format!("sys/class/net/{nic}/statistics/rx_bytes"),
            &format!("{rx}\n"),
        );
        put(r, &format!("sys/class/net/{nic}/statistics/tx_bytes"), "700\n");
    }
    let web = "sys/fs/cgroup/ramkey/zone-web";
    put(r, &format!("{web}/memory.current"), "33554432\n");
    put(r, &format!("{web}/memory.max"), "134217728\n");
    put(
        r,
        &format!("{web}/cpu.stat"),
        "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
    );
    put(r, &format!("{web}/cpu.max"), "50000 100000\n");
    put(r, &format!("{web}/pids.current"), "7\n");
    put(r, &format!("{web}/pids.max"), "256\n");
    put(
        r,
        &format!("{web}/memory.events"),
        "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
    );
    let kv = "sys/fs/cgroup/ramkey/zone-kv";
    put(r, &format!("{kv}/memory.current"), "1048576\n");
    put(r, &format!("{kv}/memory.max"), "max\n");
    put(r, &format!("{kv}/cpu.max"), "max 100000\n");
    put(r, "sys/fs/cgroup/ramkey/sshd/memory.current", "4096\n");
    put(r, "sys/fs/cgroup/ramkey/zone-gate-web/memory.current", "8192\n");
    std::fs::create_dir_all(r.join("pool")).unwrap();
    dir
}

fn svc(name: &str, state: State, restarts: u32, started_ms: Option<u64>) -> ServiceStatus {
    ServiceStatus {
        name: name.into(),
        state,
        since_ms: 0,
        reason: String::new(),
        pid: started_ms.map(|_| 42),
        restarts,
        started_ms,
        history: Vec::new(),
    }
}

fn services() -> Vec<ServiceStatus> {
    vec![
        svc("sshd", State::Online, 0, Some(5_000)),
        svc("zone-web", State::Online, 2, Some(9_000)),
        svc("crasher", State::Maintenance, 5, None),
    ]
}

fn status() -> SystemStatus {
    let mut status = summary(&services(), 60_000, false);
    status.system = SystemInfo {
        pool_health: "ok".into(),
        pool_disks: (1, 1),
        timeline: Some(Box::new(BootTimeline {
            init_start_ms: 2_100,
            ready_ms: 6_500,
            steps: vec![
                BootStep {
                    name: "early-mounts".into(),
                    start_ms: 2_105,
                    duration_ms: 3,
                },
                BootStep {
                    name: "services".into(),
                    start_ms: 6_400,
                    duration_ms: 90,
                },
            ],
        })),
        ..SystemInfo::default()
    };
    status
}

/// PID 1 as it answers on the box.
pub(super) fn pid1_answers(request: &Request) -> Result<Response, String> {
    Ok(match request {
        Request::Svcs { .. } => Response::Svcs { services: services() },
        Request::Status => Response::Status { status: status() },
        other => Response::Error {
            message: format!("not asked in these tests: {other:?}"),
        },
    })
}

fn scrape(root: &Path, ask: &dyn Fn(&Request) -> Result<Response, String>) -> (String, Vec<String>) {
    let mut failed = Vec::new();
    let zones = ["web", "kv", "refused"].map(String::from);
    let mut snapshot = read::collect(&Paths::new(root), &zones, ask, &[], &mut |source, why| {
        failed.push(format!("{source}: {why}"));
    });
    snapshot.now_ms = 10_000;
    let exporter = Exporter {
        scrapes: 3,
        cpu_seconds: 0.25,
        last_duration: 0.002,
        requests: [(200, 2), (404, 1)].into_iter().collect(),
    };
    (render::render(&snapshot, &exporter).unwrap(), failed)
}

/// What `promtool check metrics` (Prometheus 2.42) checks that a renderer can get wrong:
/// every sample's family has HELP and TYPE lines, counters end in `_total` and nothing
/// else does, names carry the prefix, no family comes twice. Returns the family names.
fn lint(text: &str) -> BTreeSet<String> {
    let (mut helped, mut typed, mut seen) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(
                helped.insert(rest.split(' ').next().unwrap().to_owned()),
                "twice: {line}"
            );
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(typed.insert(name.to_owned()), "twice: {line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
        } else {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(name.starts_with("ramkey_"), "{line}");
            assert!(
                helped.contains(name) && typed.contains(name),
                "no HELP/TYPE before: {line}"
            );
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            seen.insert(name.to_owned());
        }
    }
    assert_eq!(seen, typed, "families without samples");
    seen
}

#[test]
fn a_fixture_box_renders_every_promised_family() {
    let dir = fixture();
    let (text, failed) = scrape(dir.path(), &pid1_answers);
    assert!(failed.is_empty(), "{failed:?}");
    lint(&text);
    for line in [
        "ramkey_node_memory_total_bytes 1024000",
        "ramkey_node_memory_available_bytes 614400",
        "ramkey_node_memory_shmem_bytes 51200",
        "ramkey_node_cpu_seconds_total{mode=\"idle\"} 10",
        "ramkey_node_cpu_seconds_total{mode=\"system\"} 0.5",
        "ramkey_node_cpus 2",
        "ramkey_node_load1 0.5",
        "ramkey_node_load15 0.1",
        "ramkey_node_uptime_seconds 123.45",
        "ramkey_nic_up{nic=\"admin\"} 1",
        "ramkey_nic_receive_bytes_total{nic=\"admin\"} 5000",
        "ramkey_nic_transmit_bytes_total{nic=\"admin\"} 700",
        "ramkey_pool_health{health=\"ok\"} 1",
        "ramkey_pool_health{health=\"diskless\"} 0",
        "ramkey_pool_disks 1",
        "ramkey_pool_disks_missing 0",
        "ramkey_service_state{service=\"crasher\",state=\"maintenance\"} 1",
        "ramkey_service_state{service=\"crasher\",state=\"online\"} 0",
        "ramkey_service_restarts_total{service=\"zone-web\"} 2",
        "ramkey_service_uptime_seconds{service=\"sshd\"} 5",
        "ramkey_service_uptime_seconds{service=\"crasher\"} 0",
        "ramkey_zone_memory_bytes{zone=\"web\"} 33554432",
        "ramkey_zone_memory_max_bytes{zone=\"web\"} 134217728",
        "ramkey_zone_cpu_seconds_total{zone=\"web\"} 2.5",
        "ramkey_zone_cpu_max_cores{zone=\"web\"} 0.5",
        "ramkey_zone_pids{zone=\"web\"} 7",
        "ramkey_zone_pids_max{zone=\"web\"} 256",
        "ramkey_zone_oom_kills_total{zone=\"web\"} 1",
        "ramkey_zone_memory_bytes{zone=\"kv\"} 1048576",
        "ramkey_boot_step_start_seconds{step=\"early-mounts\"} 2.105",
        "ramkey_boot_step_duration_seconds{step=\"services\"} 0.09",
        "ramkey_boot_init_start_seconds 2.1",
        "ramkey_boot_ready_seconds 6.5",
        "ramkey_platform_info{kernel=\"6.1.0-28-amd64\",slot=\"b\",version=\"0.1.0\"} 1",
        "ramkey_metrics_source_up{source=\"pool\"} 1",
        "ramkey_metrics_scrapes_total 3",
        "ramkey_metrics_cpu_seconds_total 0.25",
        "ramkey_metrics_http_requests_total{code=\"404\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
    }
    // No cap, no gauge; a service's cgroup, a zone's gate's, is no zone; a zone refused at
    // boot has no cgroup; lo is no NIC.
    assert!(!text.contains("ramkey_zone_memory_max_bytes{zone=\"kv\"}"), "{text}");
    for other in ["zone=\"sshd\"", "zone=\"gate-web\"", "zone=\"refused\"", "nic=\"lo\""] {
        assert!(!text.contains(other), "{other} in\n{text}");
    }
    assert!(text.contains("ramkey_pool_size_bytes "), "{text}");
}

#[test]
fn a_source_that_fails_is_left_out_and_said() {
    let dir = fixture();
    std::fs::remove_file(dir.path().join("proc/loadavg")).unwrap();
    let (text, failed) = scrape(dir.path(), &|_| {
        Err("cannot reach PID 1 at /run/ramkey/control.sock: refused".into())
    });
    lint(&text);
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed[0].starts_with("node: ") && failed[0].contains("loadavg"),
        "{failed:?}"
    );
    assert!(failed[1].starts_with("pid1: cannot reach PID 1"), "{failed:?}");
    assert!(text.contains("ramkey_metrics_source_up{source=\"pid1\"} 0\n"), "{text}");
    assert!(text.contains("ramkey_metrics_source_up{source=\"node\"} 0\n"), "{text}");
    assert!(
        text.contains("ramkey_metrics_source_up{source=\"cgroups\"} 1\n"),
        "{text}"
    );
    for gone in ["ramkey_node_", "ramkey_service_", "ramkey_pool_", "ramkey_boot_"] {
        assert!(!text.contains(gone), "{gone} in\n{text}");
    }
    // The zones come from the cgroups, not from PID 1; the platform is always there.
    assert!(text.contains("ramkey_zone_memory_bytes{zone=\"web\"}"), "{text}");
    assert!(text.contains("ramkey_platform_info{"), "{text}");
}

#[test]
fn the_docs_name_every_family() {
    let dir = fixture();
    let (text, _) = scrape(dir.path(), &pid1_answers);
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/observability.md");
    let docs = std::fs::read_to_string(docs).unwrap();
    for name in lint(&text) {
        assert!(
            docs.contains(&format!("`{name}`")),
            "docs/observability.md does not name `{name}`"
        );
    }
}

#[test]
fn a_scrape_and_a_wrong_path_over_tcp() {
    let dir = fixture();
    let paths = Paths::new(dir.path());
    let zones = ["web".to_owned()];
    let from = Sources {
        paths: &paths,
        zones: &zones,
        ask: &pid1_answers,
        more: &[],
    };
    let (mut exporter, mut said) = (Exporter::default(), Said::default());
    let mut get = |path: &str| {
        let (mut client, mut server) = pair();
        client
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: box\r\n\r\n").as_bytes())
            .unwrap();
        let peer = server.peer_addr().unwrap();
        answer(&mut server, peer, &from, &mut exporter, &mut said);
        drop(server);
        let mut text = String::new();
        client.read_to_string(&mut text).unwrap();
        text
    };
    let ok = get("/metrics");
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    let body = ok.split_once("\r\n\r\n").unwrap().1;
    lint(body);
    assert!(body.contains("ramkey_metrics_scrapes_total 1\n"), "{body}");
    assert!(get("/nope").starts_with("HTTP/1.1 404 Not Found\r\n"));
    assert!(get("/nope").starts_with("HTTP/1.1 404 Not Found\r\n"));
    let again = get("/metrics");
    assert!(
        again.contains("ramkey_metrics_http_requests_total{code=\"404\"} 2\n"),
        "{again}"
    );
    assert!(
        again.contains("ramkey_metrics_http_requests_total{code=\"200\"} 1\n"),
        "{again}"
    );
    // Said once: one entry for all the 404s.
    assert_eq!(said.0.iter().filter(|k| k.contains("404")).count(), 1, "{:?}", said.0);
}

#[test]
fn a_taken_port_is_retried_with_backoff_until_it_is_free() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut taken = Some(taken);
    let mut waits = Vec::new();
    let listener = listen_with_backoff("lo", port, &mut |d| {
        waits.push(d);
        if waits.len() == 3 {
            taken = None;
        }
    });
    assert_eq!(waits, [1, 2, 4].map(Duration::from_secs));
    assert_eq!(listener.local_addr().unwrap().port(), port);
    // Bound to lo: a connection to loopback gets in.
    TcpStream::connect(("127.0.0.1", port)).unwrap();
    // An interface that is not there (yet): retried the same way, the delay capped.
    assert_eq!(listen_on("no-such-nic0", 0).unwrap_err(), nix::errno::Errno::ENODEV);
}

#[test]
fn the_service_runs_the_link_with_caps() {
    let spec = service("admin", 9100, &["web", "office"]);
    assert_eq!(
        spec.argv,
        ["/usr/sbin/ramkey-metrics", "admin", "9100", "web", "office"]
    );
    assert_eq!(spec.name, "ramkey-metrics");
    assert!(spec.readiness.is_none() && spec.requires.is_empty());
    assert_eq!(spec.restart, RestartPolicy::Always);
    assert_eq!(main(&["admin".into()], &[]), 2);
    assert_eq!(main(&["admin".into(), "0".into()], &[]), 2);
}
