//! Boot test of the HA pair under QEMU (TCG): two boxes, `alpha` and `beta`, boot from sticks
//! whose configs differ only in `hostname`, `[cluster] node` and their own addresses; a third
//! box, the client, fetches a page from `web` at its floating address every half second and
//! says on its console what it got. The boxes share the public segment with the client
//! through one hub and the cluster link (VRRP and DRBD) through another, both on 127.0.0.1.
//!
//! One run goes through what the issue asks: the pair comes up and serves; a page written
//! into web's volume on the node holding it is in the other node's DRBD replica; the holder
//! is killed (QEMU killed) and the other takes `web` and serves that page; the killed node
//! boots again, rejoins as backup, resyncs and takes nothing back until `ramkeyctl cluster
//! failover`, which loses nothing written meanwhile; the cluster link is cut while both run
//! (split brain): both nodes say so, neither copy is discarded, and the documented
//! resolution leaves one copy on both; a node put in standby hands `web` over and takes
//! nothing until `unstandby`; at power-off each node takes DRBD down and unmounts its pool
//! cleanly.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ramkey_builder::run::{Boot, Forward, Hub, Link, RunOptions};
use xtask::artifacts;
use xtask::qemu::{Machine, Spec};

const BOOT: Duration = Duration::from_secs(420);
const STEP: Duration = Duration::from_secs(180);
const SHUTDOWN: Duration = Duration::from_secs(120);
const PASSWORD: &str = "secret";
/// web's address: it floats with web between the nodes.
const FLOATING: &str = "192.168.50.80";
const SECRET: &str = "ramkey-pair-secret";
/// Where each node's Prometheus exporter listens, on its admin NIC (reached through a forward).
const METRICS_PORT: u16 = 9100;

/// One node: its name, priority, address on the public segment and on the cluster link.
struct Node {
    name: &'static str,
    priority: u8,
    public: &'static str,
    link: &'static str,
}

const ALPHA: Node = Node {
    name: "alpha",
    priority: 150,
    public: "192.168.50.1",
    link: "10.99.0.1",
};
const BETA: Node = Node {
    name: "beta",
    priority: 100,
    public: "192.168.50.2",
    link: "10.99.0.2",
};

/// The two hubs' ports and each machine's own port on them.
struct Wiring {
    public: u16,
    cluster: u16,
}

fn free_udp_port() -> u16 {
    // A TCP port free now is as good a guess for UDP; the hubs bind theirs first.
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn node_config(node: &Node, public: &Link, cluster: &Link, trusted: &str, hash: &str) -> String {
    format!(
        r#"version = 1
hostname = "{name}"

[admin]
password_hash = "{hash}"

[[nic]]
tag = "admin"
name = "eth0"
ip = "10.0.2.15/24"
gateway = "10.0.2.2"

[[nic]]
tag = "public"
mac = "{public_mac}"
ip = "{public}/24"

[[nic]]
tag = "cluster"
mac = "{cluster_mac}"
ip = "{link}/24"

[images]
trusted_keys = ["{trusted}"]

[metrics]
listen = "admin:{METRICS_PORT}"

[[personality]]
name = "web"
image = "personalities/web-1.0.0.rkimg"
nic = "public"
ip = "{FLOATING}/24"

[cluster]
node = "{name}"
link = "cluster"
secret = "{SECRET}"
resources = ["web"]
size = "64M"

[[cluster.nodes]]
name = "{a}"
address = "{a_link}"
priority = {a_priority}

[[cluster.nodes]]
name = "{b}"
address = "{b_link}"
priority = {b_priority}
"#,
        name = node.name,
        public_mac = public.mac(),
        public = node.public,
        cluster_mac = cluster.mac(),
        link = node.link,
        a = ALPHA.name,
        a_link = ALPHA.link,
        a_priority = ALPHA.priority,
        b = BETA.name,
        b_link = BETA.link,
        b_priority = BETA.priority,
    )
}

/// The client: fetches web's page through the floating address twice a second and says
/// what it got whenever that changes (`none` when nothing answered).
const CLIENT_PROBE: &str = r#"name = "client"
restart = "never"
argv = ["/bin/sh", "-c", '''
prev=start
while :; do
  # (Debian's busybox 1.35 wget crashes with -T: timeout bounds it instead.)
  now=$(timeout 3 wget -q -O - http://192.168.50.80/ha.html 2>/dev/null | head -c 64)
  [ -n "$now" ] || now=none
  if [ "$now" != "$prev" ]; then echo "client: got $now" >/dev/console; prev=$now; fi
  sleep 0.5
done
''']
"#;

fn client_config(public: &Link) -> String {
    format!(
        r#"version = 1
hostname = "client"

[[nic]]
tag = "admin"
name = "eth0"
ip = "10.0.2.15/24"
gateway = "10.0.2.2"

[[nic]]
tag = "public"
mac = "{mac}"
ip = "192.168.50.10/24"
"#,
        mac = public.mac()
    )
}

fn stick(name: &str, config: &str, extra: &[(&Path, &str)]) -> PathBuf {
    let image = artifacts::usb_copy(name).unwrap();
    let work = artifacts::target_dir().join("ramkey/run").join(format!("{name}.files"));
    std::fs::create_dir_all(&work).unwrap();
    let config_file = work.join("config.toml");
    std::fs::write(&config_file, config).unwrap();
    let mut files = vec![(config_file.as_path(), "::/config.toml")];
    files.extend_from_slice(extra);
    artifacts::put_on_stick(&image, &files).unwrap();
    image
}

/// Boots a machine; `metrics` is the host port forwarded to its exporter.
fn boot(name: &str, image: &Path, pool: Option<&Path>, links: &[Link], metrics: Option<u16>) -> Machine {
    let mut opts = RunOptions::new(Boot::Usb { image: image.into() });
    opts.pool = pool.map(Path::to_path_buf);
    opts.links = links.to_vec();
    opts.forwards = metrics
        .map(|host| Forward {
            host,
            guest: METRICS_PORT,
            address: Some("10.0.2.15".parse().unwrap()),
        })
        .into_iter()
        .collect();
    opts.state_dir = Some(artifacts::target_dir().join("ramkey/run").join(name));
    let mut vm = Machine::start(&Spec::run(name, &opts).unwrap()).unwrap();
    vm.forbid(&[
        "Kernel panic",
        "ramkey: error: PANIC",
        "RECOVERY MODE",
        "services: not started",
    ])
    .unwrap();
    vm
}

/// Runs `command` at the logged-in console and returns its output lines. Each line is
/// tagged with a number the typed command does not show (`o'"7"': ` is typed, `o7: ` printed).
fn sh(vm: &mut Machine, command: &str) -> Vec<String> {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    vm.send(&format!(
        "{{ {command} ; }} 2>&1 | sed 's/^/o'\"{n}\"': /'; echo \"e\"\"{n}.\"\n"
    ))
    .unwrap();
    let from = vm.lines().len();
    vm.expect(&format!("e{n}."), STEP).unwrap();
    let tag = format!("o{n}: ");
    vm.lines()[from.saturating_sub(1)..]
        .iter()
        .filter_map(|(_, l)| l.split_once(&tag).map(|(_, rest)| rest.to_string()))
        .collect()
}

/// Scrapes the exporter behind host port `port` until its text has every line of `wants`
/// (as the exposition format prints them); returns the cluster's lines of the last scrape.
fn await_metrics(port: u16, wants: &[&str]) -> String {
    let deadline = Instant::now() + STEP;
    loop {
        let text = xtask::http::wait_ok(port, "/metrics", STEP).unwrap();
        let ours: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("ramkey_cluster_") || l.starts_with("ramkey_drbd_") || l.contains("source=\"cluster\"")
            })
            .collect();
        if wants.iter().all(|w| ours.contains(w)) {
            return ours.join(" | ");
        }
        assert!(Instant::now() < deadline, "the metrics never had {wants:?}: {ours:?}");
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// `ramkeyctl cluster status`, one line.
fn status(vm: &mut Machine) -> String {
    sh(vm, "ramkeyctl cluster status").join(" | ")
}

/// Polls `ramkeyctl cluster status` until it contains every one of `wants`; returns it.
fn await_status(vm: &mut Machine, wants: &[&str]) -> String {
    let deadline = Instant::now() + STEP;
    loop {
        let now = status(vm);
        if wants.iter().all(|w| now.contains(w)) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "status never had {wants:?}: {now}\n{}",
            vm.tail()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Writes `token` into web's page through the zone on the node that runs it.
fn write_page(vm: &mut Machine, token: &str) {
    let out = sh(
        vm,
        &format!("ramkeyctl personality console web -- sh -c 'echo {token} >/srv/www/ha.html; cat /srv/www/ha.html'"),
    );
    assert!(
        out.iter().any(|l| l == token),
        "writing the page: {out:?}\n{}",
        vm.tail()
    );
}

/// The page in this node's DRBD replica, read from its backing file (the node is secondary:
/// the device cannot be opened, the file underneath can), once it is `want`: the primary's
/// ext4 writes its page cache out within its 5 s commit interval, and DRBD has each write
/// on both disks before it completes. Returns what the replica had last.
fn replica_page(vm: &mut Machine, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = sh(
            vm,
            "debugfs -R 'cat /www/ha.html' /pool/cluster/web.disk 2>&1 | grep -v '^debugfs '",
        )
        .join(" ");
        if page == want || Instant::now() > deadline {
            return page;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn token(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{what}-{nanos:08x}")
}

struct Pair {
    alpha: Machine,
    beta: Machine,
}

impl Pair {
    fn node(&mut self, name: &str) -> &mut Machine {
        if name == ALPHA.name {
            &mut self.alpha
        } else {
            &mut self.beta
        }
    }
}

/// The LOCAL port of a machine's link.
fn local(link: &Link) -> u16 {
    match link {
        Link::Udp { local, .. } => *local,
        other => panic!("not a UDP link: {other:?}"),
    }
}

/// How long after `since` the member on LOCAL port `from` announced the floating address
/// with a gratuitous ARP (sender and target address both the floating one, from the MAC
/// the frame comes from), as the public hub kept it; panics with what was kept if it did not.
fn announced(hub: &Hub, from: u16, since: Instant) -> Duration {
    let floating: std::net::Ipv4Addr = FLOATING.parse().unwrap();
    let kept = hub.kept();
    kept.iter()
        .filter(|seen| seen.from == from && seen.at >= since)
        .find(|seen| {
            let f = &seen.frame;
            f.len() >= 42 && f[28..32] == floating.octets() && f[38..42] == floating.octets() && f[22..28] == f[6..12]
        })
        .map(|seen| seen.at - since)
        .unwrap_or_else(|| {
            let arp: Vec<String> = kept
                .iter()
                .map(|seen| {
                    format!(
                        "from port {}: {:02x?}",
                        seen.from,
                        &seen.frame[..seen.frame.len().min(42)]
                    )
                })
                .collect();
            panic!(
                "no gratuitous ARP for {FLOATING} from port {from}; ARP kept:\n{}",
                arp.join("\n")
            )
        })
}

#[test]
fn a_pair_fails_over_rejoins_and_reports_a_split_brain_without_losing_data() {
    let web = artifacts::personality("web").unwrap();
    let (_, trusted) = artifacts::test_key().unwrap();
    let hash = artifacts::password_hash(PASSWORD).unwrap();
    let wiring = Wiring {
        public: free_udp_port(),
        cluster: free_udp_port(),
    };
    let public_hub = Hub::start(wiring.public).unwrap();
    let cluster_hub = Hub::start(wiring.cluster).unwrap();
    let wire = |hub: u16| Link::Udp {
        local: free_udp_port(),
        remote: hub,
    };
    let (a_pub, a_link, b_pub, b_link, c_pub) = (
        wire(wiring.public),
        wire(wiring.cluster),
        wire(wiring.public),
        wire(wiring.cluster),
        wire(wiring.public),
    );

    let web_file = (web.as_path(), "::/personalities/web-1.0.0.rkimg");
    let a_stick = stick(
        "cluster-alpha",
        &node_config(&ALPHA, &a_pub, &a_link, &trusted, &hash),
        &[web_file],
    );
    let b_stick = stick(
        "cluster-beta",
        &node_config(&BETA, &b_pub, &b_link, &trusted, &hash),
        &[web_file],
    );
    let work = artifacts::target_dir().join("ramkey/run/cluster-client.files");
    std::fs::create_dir_all(&work).unwrap();
    let probe = work.join("client.toml");
    std::fs::write(&probe, CLIENT_PROBE).unwrap();
    let c_stick = stick(
        "cluster-client",
        &client_config(&c_pub),
        &[(probe.as_path(), "::/services.d/client.toml")],
    );
    let a_pool = artifacts::empty_pool("cluster-alpha").unwrap();
    let b_pool = artifacts::empty_pool("cluster-beta").unwrap();

    let (a_metrics, b_metrics) = (free_udp_port(), free_udp_port());
    let metrics_of = |name: &str| if name == ALPHA.name { a_metrics } else { b_metrics };
    let mut client = boot("cluster-client", &c_stick, None, &[c_pub], None);
    let mut pair = Pair {
        alpha: boot(
            "cluster-alpha",
            &a_stick,
            Some(&a_pool),
            &[a_pub, a_link],
            Some(a_metrics),
        ),
        beta: boot(
            "cluster-beta",
            &b_stick,
            Some(&b_pool),
            &[b_pub, b_link],
            Some(b_metrics),
        ),
    };

    // Both come up; one takes web, and the client reaches it at the floating address.
    for vm in [&mut pair.alpha, &mut pair.beta] {
        vm.expect("cluster: DRBD up for web", BOOT).unwrap();
        vm.login("root", PASSWORD, STEP).unwrap();
    }
    let holder = {
        let deadline = Instant::now() + BOOT;
        loop {
            let a = status(&mut pair.alpha);
            let b = status(&mut pair.beta);
            if a.contains("resource web: here, online") {
                break ALPHA.name;
            }
            if b.contains("resource web: here, online") {
                break BETA.name;
            }
            assert!(Instant::now() < deadline, "nobody runs web\nalpha: {a}\nbeta: {b}");
            std::thread::sleep(Duration::from_secs(3));
        }
    };
    let other = if holder == ALPHA.name { BETA.name } else { ALPHA.name };
    eprintln!("{holder} holds web");
    let first = token("first");
    write_page(pair.node(holder), &first);
    client.expect(&format!("client: got {first}"), STEP).unwrap();
    let synced = await_status(
        pair.node(other),
        &[
            "drbd web: Connected Secondary/Primary UpToDate/UpToDate, 0 KiB out of sync",
            "resource web: on the peer",
        ],
    );
    eprintln!("{other}: {synced}");
    // The same, as Prometheus sees it on each node.
    let metrics = await_metrics(
        metrics_of(other),
        &[
            "ramkey_cluster_role{role=\"BACKUP\"} 1",
            "ramkey_drbd_connected{resource=\"web\"} 1",
            "ramkey_drbd_primary{resource=\"web\"} 0",
            "ramkey_drbd_disk_up_to_date{resource=\"web\",side=\"peer\"} 1",
            "ramkey_drbd_out_of_sync_bytes{resource=\"web\"} 0",
            "ramkey_cluster_split_brain{resource=\"web\"} 0",
            "ramkey_metrics_source_up{source=\"cluster\"} 1",
        ],
    );
    eprintln!("{other}'s metrics: {metrics}");
    await_metrics(
        metrics_of(holder),
        &[
            "ramkey_cluster_role{role=\"MASTER\"} 1",
            "ramkey_drbd_primary{resource=\"web\"} 1",
        ],
    );
    assert_eq!(
        replica_page(pair.node(other), &first),
        first,
        "the page in {other}'s replica"
    );

    // What the pair costs a node (reported, not asserted): keepalived's and the agent's
    // memory, the drbd module's, the box's.
    let cost = sh(
        pair.node(other),
        "for p in $(pidof keepalived) $(pidof ramkey-cluster); do echo $(cat /proc/$p/comm) $(grep VmRSS /proc/$p/status); done; \
         grep '^drbd ' /proc/modules | cut -d' ' -f1-2; grep -E 'MemTotal|MemAvailable' /proc/meminfo",
    );
    eprintln!("cost on {other}: {}", cost.join(" | "));
    // The files holding the pair's secret are root's alone.
    let modes = sh(
        pair.node(other),
        "cd /run/ramkey/cluster && stat -c '%a %n' plan.json keepalived.conf drbd.conf",
    );
    assert_eq!(
        modes,
        ["600 plan.json", "600 keepalived.conf", "600 drbd.conf"],
        "the modes of the files with the secret"
    );
    // The holder dies: the other takes web's address and data, and says so on the wire.
    public_hub.keep(0x0806);
    let public_port = |name: &str| local(if name == ALPHA.name { &a_pub } else { &b_pub });
    let killed = Instant::now();
    pair.node(holder).pull_the_plug().unwrap();
    client.expect("client: got none", STEP).unwrap();
    client.expect(&format!("client: got {first}"), STEP).unwrap();
    let failover = killed.elapsed();
    eprintln!("failover: {holder} killed -> the client served by {other} in {failover:?}");
    let garp = announced(&public_hub, public_port(other), killed);
    eprintln!("{other} announced {FLOATING} (gratuitous ARP) {garp:?} after the kill");
    let (_, promoted) = pair.node(other).expect("cluster: web: promoted in ", STEP).unwrap();
    eprintln!("{other}: {promoted}");
    let second = token("second");
    write_page(pair.node(other), &second);
    client.expect(&format!("client: got {second}"), STEP).unwrap();

    // The dead node boots again: a backup, resynced, taking nothing back.
    let (stick_of, pool_of, links_of) = if holder == ALPHA.name {
        (&a_stick, &a_pool, [a_pub, a_link])
    } else {
        (&b_stick, &b_pool, [b_pub, b_link])
    };
    let restarted = boot(
        &format!("cluster-{holder}-again"),
        stick_of,
        Some(pool_of),
        &links_of,
        Some(metrics_of(holder)),
    );
    if holder == ALPHA.name {
        pair.alpha = restarted;
    } else {
        pair.beta = restarted;
    }
    let back = pair.node(holder);
    back.expect("cluster: DRBD up for web", BOOT).unwrap();
    let rejoined = Instant::now();
    back.login("root", PASSWORD, STEP).unwrap();
    let rejoin = await_status(
        back,
        &[
            "role: BACKUP",
            "drbd web: Connected Secondary/Primary UpToDate/UpToDate, 0 KiB out of sync",
        ],
    );
    eprintln!(
        "{holder} rejoined (resynced within {:?} of its agent's start): {rejoin}",
        rejoined.elapsed()
    );
    assert_eq!(
        replica_page(pair.node(holder), &second),
        second,
        "the page in {holder}'s replica after the resync"
    );
    // The client was served all along: nothing changed for it while the node rejoined.
    let changed = client.expect("client: got", Duration::from_secs(3));
    assert!(
        changed.is_err(),
        "the client saw a change while {holder} rejoined: {changed:?}"
    );

    // Handed back on request, with what was written meanwhile.
    let asked = Instant::now();
    let handed = sh(pair.node(other), "ramkeyctl cluster failover").join(" ");
    assert!(
        handed.contains(&format!("failover: web handed to {holder} in ")),
        "{handed}"
    );
    eprintln!("{other}: {handed}");
    await_status(pair.node(holder), &["role: MASTER", "resource web: here, online"]);
    client.expect("client: got none", STEP).ok();
    client.expect(&format!("client: got {second}"), STEP).unwrap();
    await_status(pair.node(other), &["role: BACKUP", "resource web: on the peer"]);
    let garp = announced(&public_hub, public_port(holder), asked);
    eprintln!("{holder} announced {FLOATING} {garp:?} after the failover command");
    let again = sh(pair.node(other), "ramkeyctl cluster failover").join(" ");
    assert!(
        again.contains(&format!("failover: nothing to hand over: {holder} runs the resources")),
        "{again}"
    );

    // Split brain: the link is cut while both run; both take web and write to it.
    cluster_hub.cut(true);
    await_status(&mut pair.beta, &["role: MASTER", "resource web: here, online"]);
    await_status(&mut pair.alpha, &["role: MASTER", "resource web: here, online"]);
    let (kept, lost) = (token("alpha-side"), token("beta-side"));
    write_page(&mut pair.alpha, &kept);
    write_page(&mut pair.beta, &lost);
    cluster_hub.cut(false);
    // alpha has the higher priority: beta steps back; DRBD finds the two histories.
    for vm in [&mut pair.alpha, &mut pair.beta] {
        let (_, said) = vm.expect("cluster: SPLIT BRAIN on web", STEP).unwrap();
        eprintln!("{said}");
    }
    let beta_split = await_status(
        &mut pair.beta,
        &[
            "role: BACKUP",
            "resource web: not running on this node",
            "StandAlone Secondary/Unknown",
            "SPLIT BRAIN on web",
        ],
    );
    let alpha_split = await_status(&mut pair.alpha, &["role: MASTER", "StandAlone", "SPLIT BRAIN on web"]);
    for port in [a_metrics, b_metrics] {
        await_metrics(
            port,
            &[
                "ramkey_cluster_split_brain{resource=\"web\"} 1",
                "ramkey_drbd_connected{resource=\"web\"} 0",
            ],
        );
    }
    eprintln!("alpha: {alpha_split}\nbeta: {beta_split}");
    // Nothing discarded: each copy still has its own page.
    assert_eq!(replica_page(&mut pair.beta, &lost), lost, "beta's copy after the split");
    let alpha_page = sh(&mut pair.alpha, "cat /pool/instances/web/volumes/www/ha.html").join(" ");
    assert_eq!(alpha_page, kept, "alpha's copy after the split");

    // The documented resolution: beta's changes go, alpha's stay, on both.
    let discarded = sh(&mut pair.beta, "ramkeyctl cluster resolve web --discard-here").join(" ");
    assert!(discarded.contains("this node's copy is discarded"), "{discarded}");
    let keep = sh(&mut pair.alpha, "ramkeyctl cluster resolve web").join(" ");
    assert!(keep.contains("this node's copy is kept"), "{keep}");
    await_status(
        &mut pair.beta,
        &["drbd web: Connected Secondary/Primary UpToDate/UpToDate, 0 KiB out of sync"],
    );
    assert_eq!(
        replica_page(&mut pair.beta, &kept),
        kept,
        "beta's copy after the resolution"
    );
    await_metrics(
        b_metrics,
        &[
            "ramkey_cluster_split_brain{resource=\"web\"} 0",
            "ramkey_drbd_connected{resource=\"web\"} 1",
        ],
    );
    client.expect(&format!("client: got {kept}"), STEP).unwrap();

    // Standby: alpha hands web to beta and takes nothing until unstandby.
    let standby = sh(&mut pair.alpha, "ramkeyctl cluster standby").join(" ");
    assert!(standby.contains("standby: this node hands its resources"), "{standby}");
    await_status(&mut pair.beta, &["role: MASTER", "resource web: here, online"]);
    await_status(
        &mut pair.alpha,
        &["role: FAULT", ", standby", "resource web: on the peer"],
    );
    client.expect("client: got none", STEP).unwrap();
    client.expect(&format!("client: got {kept}"), STEP).unwrap();
    sh(&mut pair.alpha, "ramkeyctl cluster unstandby");
    await_status(&mut pair.alpha, &["role: BACKUP", "resource web: on the peer"]);

    // Both power off: beta, which runs web, releases it; each takes DRBD down and lets go of
    // its disk, so that the pool unmounts cleanly (not "busy ... detached").
    for vm in [&mut pair.alpha, &mut pair.beta] {
        vm.monitor("system_powerdown").unwrap();
    }
    pair.beta.expect("cluster: web: demoted in ", SHUTDOWN).unwrap();
    for vm in [&mut pair.alpha, &mut pair.beta] {
        vm.expect("cluster: web: DRBD down, /pool/cluster/web.disk released", SHUTDOWN)
            .unwrap();
        vm.expect_line("ramkey: unmount /pool: ok", SHUTDOWN).unwrap();
        vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
        assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
    }
    drop(public_hub);
}
