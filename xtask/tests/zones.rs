//! Boot tests of zones under QEMU (TCG): the real `web` personality (nginx, built with
//! mmdebstrap) runs in a zone with its own address on the admin NIC and answers HTTP through
//! a host forward to that address; its page comes from its volume on the pool and survives
//! a reboot; a tampered image and one signed by an untrusted key are refused with their
//! reasons while `web` and `office` still start; from inside `web` (`ramkeyctl personality
//! console`) the host's processes and files and the `office` zone's processes and files are
//! out of sight, `chroot` is refused, a memory hog is OOM-killed in the zone's cgroup and a
//! fork bomb stops at `pids.max`; after that the host and `web` keep serving, and `office`
//! (dnsmasq, on a second NIC wired to a second QEMU box) hands that box and a zone on it
//! DHCP leases, which they renew, and answers DNS for local names. Swaps keep the volume; a
//! broken image rolls back.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ramkey_builder::config_cmd::{self, Target};
use ramkey_builder::flash::sysfs::Sysfs;
use ramkey_builder::run::{Boot, Forward, Link, RunOptions};
use xtask::artifacts;
use xtask::qemu::{Machine, Spec};

const BOOT: Duration = Duration::from_secs(300);
const SHUTDOWN: Duration = Duration::from_secs(120);
const WEB_ADDRESS: &str = "10.0.2.16";
/// root's console password on the appliance.
const PASSWORD: &str = "secret";
/// The `office` zone's address on the network it shares with the client box.
const OFFICE_ADDRESS: &str = "192.168.1.1";

/// The appliance's config; with `lan` (the NIC wired to the client box), also the `office`
/// zone on it.
fn config(trusted: &str, lan: Option<Link>) -> String {
    let mut text = format!(
        r#"version = 1
hostname = "zonebox"

[admin]
password_hash = "{hash}"

[[nic]]
tag = "admin"
name = "eth0"
ip = "10.0.2.15/24"
gateway = "10.0.2.2"

[dns]
resolvers = ["10.0.2.3"]

[images]
trusted_keys = ["{trusted}"]

[[personality]]
name = "web"
image = "personalities/web-1.0.0.rkimg"
nic = "admin"
ip = "{WEB_ADDRESS}/24"
gateway = "10.0.2.2"

[[personality]]
name = "tampered"
image = "personalities/tampered.rkimg"
nic = "admin"
ip = "10.0.2.17/24"

[[personality]]
name = "stranger"
image = "personalities/stranger.rkimg"
nic = "admin"
ip = "10.0.2.18/24"
"#,
        hash = artifacts::password_hash(PASSWORD).unwrap()
    );
    if let Some(lan) = lan {
        text.push_str(&format!(
            r#"
[[nic]]
tag = "lan"
mac = "{mac}"

[[personality]]
name = "office"
image = "personalities/office-1.0.0.rkimg"
nic = "lan"
ip = "{OFFICE_ADDRESS}/24"

[personality.settings]
hosts = "printer=192.168.1.5"
lease-time = "2m"
"#,
            mac = lan.mac()
        ));
    }
    text
}

/// The stick: the config above, the `web` image, a copy with one payload byte flipped, a
/// copy signed by a key the config does not trust and, with `lan`, the `office` image.
fn stick(name: &str, lan: Option<Link>) -> PathBuf {
    let web = artifacts::personality("web").unwrap();
    let (_, trusted) = artifacts::test_key().unwrap();
    let image = artifacts::usb_copy(name).unwrap();
    let work = artifacts::target_dir().join("ramkey/run").join(format!("{name}.files"));
    std::fs::create_dir_all(&work).unwrap();
    let tampered = work.join("tampered.rkimg");
    let mut bytes = std::fs::read(&web).unwrap();
    bytes[4096 * 3] ^= 0x55;
    std::fs::write(&tampered, bytes).unwrap();
    let stranger = work.join("stranger.rkimg");
    artifacts::resigned(&web, &stranger).unwrap();
    let config_file = work.join("config.toml");
    std::fs::write(&config_file, config(&trusted, lan)).unwrap();
    let probe = work.join("probe.toml");
    std::fs::write(&probe, PROBE).unwrap();
    let escape = PathBuf::from(env!("CARGO_BIN_EXE_zone-escape"));
    let office = lan.map(|_| artifacts::personality("office").unwrap());
    let mut files = vec![
        (web.as_path(), "::/personalities/web-1.0.0.rkimg"),
        (&tampered, "::/personalities/tampered.rkimg"),
        (&stranger, "::/personalities/stranger.rkimg"),
        (&config_file, "::/config.toml"),
        (&probe, "::/services.d/probe.toml"),
        (&escape, "::/zone-escape"),
    ];
    if let Some(office) = &office {
        files.push((office, "::/personalities/office-1.0.0.rkimg"));
    }
    artifacts::put_on_stick(&image, &files).unwrap();
    image
}

fn pool_disk(name: &str) -> PathBuf {
    artifacts::empty_pool(name).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn boot(name: &str, image: &Path, pool: &Path, port: u16, links: &[Link]) -> Machine {
    let mut opts = RunOptions::new(Boot::Usb { image: image.into() });
    opts.pool = Some(pool.into());
    opts.links = links.to_vec();
    opts.state_dir = Some(artifacts::target_dir().join("ramkey/run").join(name));
    opts.forwards = vec![Forward {
        host: port,
        guest: 80,
        address: Some(WEB_ADDRESS.parse().unwrap()),
    }];
    let mut spec = Spec::run(name, &opts).unwrap();
    if !links.is_empty() {
        // Every frame on the link to the client box, as the wire sees it.
        spec.args.extend([
            "-object".to_string(),
            format!(
                "filter-dump,id=lan-capture,netdev=link0,file={}",
                capture(name).display()
            ),
        ]);
    }
    Machine::start(&spec).unwrap()
}

/// Where [`boot`] captures the link to the client box (pcap).
fn capture(name: &str) -> PathBuf {
    artifacts::target_dir()
        .join("ramkey/run")
        .join(format!("{name}.lan.pcap"))
}

/// The frames of a pcap file (QEMU's `filter-dump`: a 24-byte header, then per frame a
/// 16-byte record header whose third word is the captured length).
fn frames(pcap: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(pcap).unwrap_or_else(|e| panic!("{}: {e}", pcap.display()));
    let mut frames = Vec::new();
    let mut at = 24;
    while let Some(header) = bytes.get(at..at + 16) {
        let len = u32::from_le_bytes(header[8..12].try_into().unwrap()) as usize;
        let Some(frame) = bytes.get(at + 16..at + 16 + len) else {
            break;
        };
        frames.push(frame.to_vec());
        at += 16 + len;
    }
    frames
}

/// The answer to `GET path` through the forward, once it is a 200.
fn http(port: u16, path: &str) -> String {
    xtask::http::wait_ok(port, path, BOOT).unwrap()
}

/// What no console line of these boots contains (they refuse images on purpose, so
/// `error:` lines are expected).
const ALIVE: &[&str] = &[
    "Kernel panic",
    "ramkey: error: PANIC",
    "RECOVERY MODE",
    "services: not started",
];

fn power_off(mut vm: Machine) {
    vm.monitor("system_powerdown").unwrap();
    vm.expect_line("ramkey: unmount /pool: ok", SHUTDOWN).unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}

/// What the probe service (below) printed for `key`: the rest of its `probe: key ` line.
fn probe(vm: &mut Machine, key: &str) -> String {
    let needle = format!("probe: {key} ");
    let (_, line) = vm.expect(&needle, BOOT).unwrap();
    line.split_once(&needle)
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

/// Reads what the probe found from inside the zone, through `ramkeyctl personality console`;
/// returns office's MAC.
fn isolation(vm: &mut Machine) -> String {
    vm.expect("probe: list", BOOT).unwrap();
    // In name order; each row prefixed, so that no console line of PID 1 (`zone office: ...`)
    // can be taken for one.
    let (_, office) = vm.expect("probe: row office ", BOOT).unwrap();
    assert!(
        office.contains("office 1.0.0") && office.contains("online") && office.contains("192.168.1.1/24"),
        "{office}"
    );
    // The two refused at boot are listed with PID 1's reason.
    let (_, stranger) = vm.expect("probe: row stranger ", BOOT).unwrap();
    assert!(
        stranger.contains(" refused ") && stranger.contains("which is not trusted"),
        "{stranger}"
    );
    let (_, tampered) = vm.expect("probe: row tampered ", BOOT).unwrap();
    assert!(
        tampered.contains(" refused ") && tampered.contains("payload sha256 mismatch"),
        "{tampered}"
    );
    let (_, web) = vm.expect("probe: row web ", BOOT).unwrap();
    assert!(
        web.contains("web 1.0.0") && web.contains("online") && web.contains("10.0.2.16/24"),
        "{web}"
    );
    assert!(web.contains("of 256 MiB"), "memory of its cap: {web}");
    // The same, as JSON (`--json` before the subcommand, as with any other command).
    let json = probe(vm, "json-list");
    let web_json = json
        .split("},{")
        .find(|zone| zone.contains(r#""name":"web""#))
        .unwrap_or_default();
    for field in [
        r#""image":"web""#,
        r#""version":"1.0.0""#,
        r#""state":"online""#,
        r#""address":"10.0.2.16/24""#,
        r#""memory_cap_mib":256"#,
    ] {
        assert!(web_json.contains(field), "{field} in {json}");
    }
    assert_eq!(probe(vm, "hostname"), "web");
    assert_eq!(probe(vm, "pid1"), "/usr/sbin/ramkey-zone web");
    assert_eq!(probe(vm, "host-processes-seen"), "0");
    let files = probe(vm, "host-files");
    assert!(
        files.contains("'/usbkey': No such file") && files.contains("'/pool': No such file"),
        "{files}"
    );
    let other = probe(vm, "other-zone-files");
    assert!(
        other.contains("'/usr/sbin/dnsmasq': No such file")
            && other.contains("'/usr/local/sbin/ramkey-office-start': No such file"),
        "{other}"
    );
    // The host sees office's dnsmasq (and a child serving a TCP probe, at times), so the
    // check below would see it too if it leaked into the zone.
    let host = probe(vm, "host-sees-office");
    assert!(host.parse::<u32>().unwrap_or(0) >= 1, "host-sees-office {host}");
    assert_eq!(probe(vm, "zone-sees-office"), "0");
    let chroot = probe(vm, "chroot");
    assert!(chroot.contains("Operation not permitted"), "{chroot}");
    let unfiltered = probe(vm, "chroot-host");
    assert!(unfiltered.contains("No such file"), "{unfiltered}");
    zone_processes(vm);
    // Before the fork bomb, whose sleepers fill the zone's pids.max for a while.
    let office_mac = escapes(vm);
    assert_eq!(probe(vm, "hog-exit"), "137", "the memory hog is killed");
    let oom = probe(vm, "oom-kills");
    assert!(oom.parse::<u32>().unwrap_or(0) >= 1, "memory.events oom_kill: {oom}");
    let forks = probe(vm, "pids-max-hits");
    assert!(forks.parse::<u32>().unwrap_or(0) >= 1, "pids.events max: {forks}");
    vm.expect("probe: done", BOOT).unwrap();
    office_mac
}

/// Capabilities no process of the `web` zone holds, effective or bounding: DAC_READ_SEARCH
/// (2), NET_ADMIN (12), NET_RAW (13), SYS_MODULE (16), SYS_RAWIO (17), SYS_CHROOT (18),
/// SYS_PTRACE (19), SYS_ADMIN (21), SYS_BOOT (22), SYS_TIME (25), MKNOD (27), PERFMON (38),
/// BPF (39).
const NEVER_IN_WEB: u64 = 1 << 2
    | 1 << 12
    | 1 << 13
    | 1 << 16
    | 1 << 17
    | 1 << 18
    | 1 << 19
    | 1 << 21
    | 1 << 22
    | 1 << 25
    | 1 << 27
    | 1 << 38
    | 1 << 39;

/// The probe's `zone-proc` lines: every process in web's cgroup, read from the host's
/// `/proc`. Those of the zone run with no_new_privs, in seccomp filter mode, without the
/// dangerous capabilities and in namespaces of their own; the zone's PID 1 and nginx are
/// among them. The one process there in the host's namespaces is the launcher, out of the
/// zone's sight, which the zone's OOM kill never picks.
fn zone_processes(vm: &mut Machine) {
    const HOST: &str = "mnt,pid,net,uts,ipc,cgroup,user,";
    let (mut names, mut launchers) = (Vec::new(), Vec::new());
    loop {
        let (_, line) = vm.expect("probe: zone-proc", BOOT).unwrap();
        if line.contains("probe: zone-procs-end") {
            break;
        }
        let fields: Vec<(&str, &str)> = line
            .split_once("probe: zone-proc ")
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .filter_map(|f| f.split_once(':'))
            .collect();
        let field = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let Some(name) = field("Name") else {
            continue; // it exited between the listing and the read
        };
        if field("shared") == Some(HOST) {
            assert_eq!((name, field("oom")), ("ramkey-zone", Some("-1000")), "{line}");
            launchers.push(line.clone());
            continue;
        }
        assert_eq!(field("NoNewPrivs"), Some("1"), "{line}");
        assert_eq!(field("Seccomp"), Some("2"), "{line}");
        // Host uids of web's range (its root at the range's base, nginx's workers above).
        let uid: u32 = field("Uid").and_then(|u| u.parse().ok()).unwrap_or(0);
        assert!(uid >= 1 << 20, "a zone process runs as host uid {uid}: {line}");
        for set in ["CapEff", "CapBnd"] {
            let caps = field(set).and_then(|hex| u64::from_str_radix(hex, 16).ok());
            assert_eq!(caps.map(|c| c & NEVER_IN_WEB), Some(0), "{set}: {line}");
        }
        assert_eq!(field("shared"), Some(""), "namespaces shared with the host: {line}");
        names.push(name.to_string());
    }
    for want in ["ramkey-zone", "nginx"] {
        assert!(names.iter().any(|n| n == want), "no {want} among {names:?}");
    }
    assert_eq!(launchers.len(), 1, "{launchers:?}");
    eprintln!(
        "web zone's processes, checked from the host: {}; and its launcher: {}",
        names.join(" "),
        launchers[0]
    );
}

/// What each attack of `zone-escape` (run in `web` as its root, then its spoofing in
/// `office`) got back, and the host checked afterwards; returns office's MAC.
fn escapes(vm: &mut Machine) -> String {
    let core_pattern = probe(vm, "host-core-pattern-before");
    let modprobe = probe(vm, "host-modprobe-before");
    let attacks = [
        // The zone's root is not the kernel's root: refused before the read-only mount.
        ("core_pattern", "Permission denied"),
        ("modprobe", "Permission denied"),
        ("drop_caches", "Permission denied"),
        ("sysrq", "Permission denied"),
        ("kcore", "masked, reads 0 bytes"),
        ("mknod-tmp", "Operation not permitted"),
        ("mknod-volume", "Operation not permitted"),
        ("clone-newuser", "Operation not permitted"),
        ("unshare-user", "Operation not permitted"),
        ("unshare-mount", "Operation not permitted"),
        ("unshare-net", "Operation not permitted"),
        ("fsopen", "Operation not permitted"),
        ("mount", "Operation not permitted"),
        // PID 1's namespace files are out of reach for the zone's root: refused at `open`.
        ("setns", "Permission denied"),
    ];
    let privileges = [
        ("capset-sys-admin", "Operation not permitted"),
        ("finit_module", "Operation not permitted"),
        ("ptrace-pid1", "Operation not permitted"),
    ];
    let interfaces = [
        ("setuid-outside-range", "Invalid argument"),
        ("chown-outside-range", "Invalid argument"),
        ("io_uring", "Operation not permitted"),
        ("userfaultfd", "Operation not permitted"),
        ("bpf", "Operation not permitted"),
        ("packet-socket", "Operation not permitted"),
    ];
    // In the order zone-escape tries them.
    let mut seen = Vec::new();
    let mut refused = |vm: &mut Machine, attacks: &[(&str, &str)]| {
        for (name, error) in attacks {
            let (_, line) = vm.expect(&format!("escape: {name}"), BOOT).unwrap();
            assert!(line.contains(&format!("refused ({error}")), "{line}");
            seen.push(line);
        }
    };
    refused(vm, &attacks);
    // Neither the zone's processes nor its PID 1 hold CAP_SYS_ADMIN (21), CAP_MKNOD (27)
    // or CAP_NET_RAW (13).
    let mut caps = Vec::new();
    for who in ["capeff-self", "capeff-pid1"] {
        let (_, line) = vm.expect(&format!("escape: {who}: "), BOOT).unwrap();
        let hex = line.rsplit(' ').next().unwrap_or_default();
        let set = u64::from_str_radix(hex, 16).unwrap_or(u64::MAX);
        assert_eq!(set & (1 << 21 | 1 << 27 | 1 << 13), 0, "{line}");
        caps.push(line);
    }
    refused(vm, &privileges);
    // The zone's root is the unprivileged host uid at the start of web's range.
    let (_, map) = vm.expect("escape: uid-map: 0 ", BOOT).unwrap();
    let base: u32 = map.rsplit(' ').nth(1).and_then(|b| b.parse().ok()).unwrap_or(0);
    assert!(base >= 1 << 20 && map.ends_with(" 65536"), "{map}");
    refused(vm, &interfaces);
    seen.extend(caps);
    seen.push(map);
    vm.expect("escape: done", BOOT).unwrap();
    let office_mac = spoofs(vm);
    assert_eq!(probe(vm, "host-core-pattern"), core_pattern);
    assert_eq!(probe(vm, "host-modprobe"), modprobe);
    // What the zone's root wrote to its volume is the range's on the pool, not the host's.
    let owner = probe(vm, "volume-file-owner");
    assert_eq!(owner, format!("{base}:{base}"), "{owner}");
    // Even host root, moved into the zone's cgroup, cannot read the pool disk.
    let device = probe(vm, "device-program");
    assert!(device.contains("Operation not permitted"), "{device}");
    eprintln!("escape suite, in the web zone as its root:\n{}", seen.join("\n"));
    eprintln!("host root in web's cgroup reading the pool disk: {device}");
    office_mac
}

/// What `zone-escape spoof`, run in `office` (granted `NET_RAW` and `NET_ADMIN`), got
/// back; whether its frames reached the wire is [`nothing_spoofed_reached_the_wire`]'s to
/// say. Returns office's MAC.
fn spoofs(vm: &mut Machine) -> String {
    let (_, own) = vm.expect("spoof: own-mac: ", BOOT).unwrap();
    let mac = own.rsplit(' ').next().unwrap_or_default().to_string();
    // Locally administered, unicast: the zone's own, not the NIC's.
    let first = u8::from_str_radix(mac.get(..2).unwrap_or("00"), 16).unwrap_or(0);
    assert_eq!(first & 3, 2, "{own}");
    // A frame the source check drops comes back to the sender as `ENOBUFS` (the egress
    // filter's `TC_ACT_SHOT` is `NET_XMIT_DROP`).
    let dropped = "refused (No buffer space available";
    let (_, own) = vm.expect("spoof: arp-own: ", BOOT).unwrap();
    assert!(own.ends_with("sent 42 bytes"), "{own}");
    for name in ["arp-claiming-another", "udp-from-another", "vlan-tagged"] {
        let (_, line) = vm.expect(&format!("spoof: {name}: "), BOOT).unwrap();
        assert!(line.contains(dropped), "{line}");
    }
    // The kernel keeps a zone from taking the host's MAC; with NET_ADMIN it may make one
    // up, and what it sends from it goes nowhere.
    let (_, host) = vm.expect("escape: mac-of-the-host: ", BOOT).unwrap();
    assert!(host.contains("refused (Address already in use"), "{host}");
    let (_, made_up) = vm.expect("escape: mac-made-up: ", BOOT).unwrap();
    assert!(made_up.contains("SUCCEEDED"), "{made_up}");
    let (_, line) = vm.expect("spoof: arp-from-made-up-mac: ", BOOT).unwrap();
    assert!(line.contains(dropped), "{line}");
    let (_, restored) = vm.expect("escape: mac-restored: ", BOOT).unwrap();
    assert!(restored.contains("SUCCEEDED"), "{restored}");
    vm.expect("spoof: done", BOOT).unwrap();
    mac
}

/// Of the frames `zone-escape spoof` sent to 192.168.1.77, only office's own ARP reply,
/// from its own MAC and address, is on the wire: the source check on the host's `lan` NIC
/// dropped the ARP reply claiming the printer's address, the datagram from it, the tagged
/// frame and the one from a made-up MAC.
fn nothing_spoofed_reached_the_wire(pcap: &Path, office_mac: &str) {
    let frames = frames(pcap);
    assert!(
        frames.len() > 10,
        "{} frames captured in {}",
        frames.len(),
        pcap.display()
    );
    let target = [192, 168, 1, 77];
    let mac = |f: &[u8]| {
        f[6..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let to_target: Vec<&Vec<u8>> = frames.iter().filter(|f| f.windows(4).any(|w| w == target)).collect();
    let described: Vec<String> = to_target
        .iter()
        .map(|f| {
            format!(
                "from {} type {:02x}{:02x}: {:02x?}",
                mac(f),
                f[12],
                f[13],
                &f[14..f.len().min(42)]
            )
        })
        .collect();
    eprintln!("frames to 192.168.1.77 on the wire:\n{}", described.join("\n"));
    assert_eq!(to_target.len(), 1, "{described:#?}");
    let own = to_target[0];
    assert_eq!(mac(own), office_mac);
    assert_eq!(own[12..14], [0x08, 0x06], "ARP");
    assert_eq!(own[28..32], [192, 168, 1, 1], "office's own address");
}

/// `ramkeyctl personality console web` typed at the serial console as an administrator
/// would: the zone's shell gets a pseudo-terminal of its own, not the console, what is typed
/// reaches it, and the console is the host shell's again afterwards. (Typed lines split
/// their markers with `""`, so only the output matches.)
fn console_session(vm: &mut Machine) {
    vm.login("root", PASSWORD, BOOT).unwrap();
    // The fork bomb's sleepers outlive the shell that started them by up to 20 s.
    vm.send(
        "while [ $(cat /sys/fs/cgroup/ramkey/zone-web/pids.current) -gt 64 ]; do sleep 1; done; \
         echo \"web-\"\"calm\"\n",
    )
    .unwrap();
    vm.expect("web-calm", BOOT).unwrap();
    // `ramkeyctl status` names the pool the box runs on.
    vm.send("ramkeyctl status | grep '^pool'\n").unwrap();
    let (_, pool) = vm.expect("pool:      ext4 on /dev/vd", BOOT).unwrap();
    assert!(
        pool.contains("(virtio-ramkey-pool)") && pool.contains(" free of "),
        "{pool}"
    );
    vm.send(
        "ramkeyctl personality console web -- /bin/sh -c \
         'echo \"zone-\"\"fd0 $(readlink /proc/self/fd/0)\"; [ -t 0 ] && echo \"zone-\"\"tty\"; \
         read line; echo \"zone-\"\"read $line\"'\n",
    )
    .unwrap();
    let (_, fd0) = vm.expect("zone-fd0 ", BOOT).unwrap();
    assert!(!fd0.contains("ttyS0") && !fd0.contains("console"), "{fd0}");
    vm.expect("zone-tty", BOOT).unwrap();
    vm.send("typed-in-the-zone\n").unwrap();
    vm.expect("zone-read typed-in-the-zone", BOOT).unwrap();
    // Back at busybox's prompt, its line editor asks the terminal where the cursor is and
    // may take part of the next typed line for the answer: type until the shell runs one,
    // each time after a Ctrl-C that drops what is left of the last (a line without quotes,
    // so that a lost half never leaves the shell waiting for a closing one).
    let back = (0..10)
        .find_map(|_| {
            vm.send("\u{3}").unwrap();
            vm.send("h=host; echo back-on-the-$h $(tty)\n").unwrap();
            vm.expect("back-on-the-host ", Duration::from_secs(10)).ok()
        })
        .map(|(_, line)| line)
        .unwrap_or_else(|| panic!("the host shell never answered\n{}", vm.tail()));
    assert!(back.contains("ttyS0") || back.contains("console"), "{back}");
    eprintln!("console session: the zone's stdin was {fd0}; afterwards the host shell on {back}");
}

/// A one-shot platform service, put on the stick, that checks the zone from the inside with
/// `ramkeyctl personality console` and prints `probe: ...` lines on the console. Its own
/// command line carries a marker the zone must not see.
const PROBE: &str = r#"name = "probe"
restart = "never"
argv = ["/bin/sh", "-c", '''
until [ "$(ramkeyctl personality list 2>/dev/null | grep -c ' online ')" -ge 2 ]; do sleep 1; done
c() { ramkeyctl personality console web -- /bin/sh -c "$1" 2>&1; }
# dnsmasq's own command line; the bracket keeps this script from matching itself.
office='keep-in-[f]oreground'

cg=/sys/fs/cgroup/ramkey/zone-web
{
  echo "probe: list"; ramkeyctl personality list | sed "s/^/probe: row /"
  echo "probe: json-list $(ramkeyctl --json personality list | tr -d ' \n')"
  echo "probe: hostname $(c 'cat /proc/sys/kernel/hostname')"
  echo "probe: pid1 $(c 'tr "\0" " " </proc/1/cmdline')"
  echo "probe: host-processes-seen $(c 'grep -l isolation-probe-[m]arker /proc/[0-9]*/cmdline 2>/dev/null | wc -l')"
  echo "probe: host-files $(c 'ls /usbkey /pool 2>&1 | tr "\n" " "')"
  echo "probe: other-zone-files $(c 'ls /usr/sbin/dnsmasq /usr/local/sbin/ramkey-office-start 2>&1 | tr "\n" " "')"
  echo "probe: host-sees-office $(grep -l -e "$office" /proc/[0-9]*/cmdline 2>/dev/null | wc -l)"
  echo "probe: zone-sees-office $(c "grep -l -e '$office' /proc/[0-9]*/cmdline 2>/dev/null | wc -l")"
  # chroot(2) looks the path up before it checks the capability: without the seccomp
  # filter a missing directory answers ENOENT, so EPERM here is the filter's answer alone.
  echo "probe: chroot $(c '/usr/sbin/chroot /no-such-dir /bin/true 2>&1 | head -1')"
  echo "probe: chroot-host $(chroot /no-such-dir /bin/true 2>&1 | head -1)"
  # The zone's own processes, seen from the host (not through the console, which confines
  # itself): name, no_new_privs, seccomp mode, capabilities, namespaces shared with the host.
  for p in $(cat $(find $cg -name cgroup.procs)); do
    ns=$(for n in mnt pid net uts ipc cgroup user; do [ "$(readlink /proc/$p/ns/$n)" = "$(readlink /proc/1/ns/$n)" ] && printf '%s,' $n; done)
    echo "probe: zone-proc $(awk '/^(Name|Uid|NoNewPrivs|Seccomp|CapEff|CapBnd):/{printf "%s%s ", $1, $2}' /proc/$p/status 2>/dev/null)oom:$(cat /proc/$p/oom_score_adj 2>/dev/null) shared:$ns"
  done
  echo "probe: zone-procs-end"
  disk=$(awk '$2=="/pool"{print $1}' /proc/mounts); disk=${disk#/dev/}
  echo "probe: host-core-pattern-before $(cat /proc/sys/kernel/core_pattern)"
  echo "probe: host-modprobe-before $(cat /proc/sys/kernel/modprobe)"
  c "cat >/tmp/zone-escape && chmod 755 /tmp/zone-escape && /tmp/zone-escape $(cat /sys/class/block/$disk/dev)" </usbkey/zone-escape
  ramkeyctl personality console office -- /bin/sh -c "cat >/tmp/zone-escape && chmod 755 /tmp/zone-escape && /tmp/zone-escape spoof 192.168.1.1 $(cat /sys/class/net/lan/address)" </usbkey/zone-escape 2>&1
  echo "probe: host-core-pattern $(cat /proc/sys/kernel/core_pattern)"
  echo "probe: host-modprobe $(cat /proc/sys/kernel/modprobe)"
  echo "probe: volume-file-owner $(stat -c %u:%g /pool/instances/web/volumes/www/written-by-zone-root 2>&1)"
  echo "probe: device-program $(sh -c "echo \$\$ >$cg/cgroup.procs && head -c 512 /dev/$disk | wc -c" 2>&1 | tr '\n' ' ')"
  echo "probe: hog-exit $(c 'head -c 600M /dev/zero | tail >/dev/null; echo $?' | tail -1)"
  echo "probe: oom-kills $(sed -n 's/^oom_kill //p' $cg/memory.events)"
  c 'i=0; while [ $i -lt 400 ]; do sleep 20 & i=$((i+1)); done; wait' >/dev/null
  echo "probe: pids-max-hits $(sed -n 's/^max //p' $cg/pids.events)"
  echo "probe: done"
} >/dev/console 2>&1
''', "isolation-probe-marker"]
"#;

/// The client box: a copy of the stick with DHCP on its end of the link to the appliance's
/// `lan`, the `web` personality in a zone in RAM taking its own lease there, and a one-shot
/// service that asks the DNS server its lease named for local names and waits for the zone's
/// lease to be renewed, printing `lookup: ...` lines.
fn client(lan: Link) -> Machine {
    let name = "zones-client";
    let image = artifacts::usb_copy(name).unwrap();
    let work = artifacts::target_dir().join("ramkey/run").join(format!("{name}.files"));
    std::fs::create_dir_all(&work).unwrap();
    let config = work.join("config.toml");
    let (mac, (_, trusted)) = (lan.mac(), artifacts::test_key().unwrap());
    std::fs::write(
        &config,
        format!(
            r#"version = 1
hostname = "client"

[[nic]]
tag = "lan"
mac = "{mac}"
ip = "dhcp"

[images]
trusted_keys = ["{trusted}"]

[[personality]]
name = "web"
image = "personalities/web-1.0.0.rkimg"
nic = "lan"
ip = "dhcp"
"#
        ),
    )
    .unwrap();
    let lookup = work.join("lookup.toml");
    std::fs::write(&lookup, LOOKUP).unwrap();
    let web = artifacts::personality("web").unwrap();
    artifacts::put_on_stick(
        &image,
        &[
            (&config, "::/config.toml"),
            (&lookup, "::/services.d/lookup.toml"),
            (&web, "::/personalities/web-1.0.0.rkimg"),
        ],
    )
    .unwrap();
    let mut opts = RunOptions::new(Boot::Usb { image });
    opts.links = vec![lan];
    opts.state_dir = Some(artifacts::target_dir().join("ramkey/run").join(name));
    Machine::start(&Spec::run(name, &opts).unwrap()).unwrap()
}

const LOOKUP: &str = r#"name = "lookup"
restart = "never"
argv = ["/bin/sh", "-c", '''
{
  echo "lookup: resolver $(sed -n 's/^nameserver //p' /etc/resolv.conf | head -1)"
  echo "lookup: printer $(nslookup printer.office.lan 2>&1 | tr '\n' ' ')"
  echo "lookup: self $(nslookup client.office.lan 2>&1 | tr '\n' ' ')"
  until ramkeyctl personality list 2>/dev/null | grep -q ' online '; do sleep 1; done
  echo "lookup: zone $(ramkeyctl personality list | grep '^web ')"
  until ramkeyctl personality log web | grep -q 'DHCP lease .* renewed'; do sleep 2; done
  echo "lookup: zone-renewed $(ramkeyctl personality log web | grep 'DHCP lease .* renewed' | head -1)"
  echo "lookup: done"
} >/dev/console 2>&1
''']
"#;

/// Boots the client box on `lan` and checks the `office` zone leased it an address and
/// answers DNS for a name from its settings and for the client's own name.
fn office_serves_the_client(lan: Link) {
    let mut client = client(lan.peer());
    let (_, lease) = client.expect("ramkey: network: lan ", BOOT).unwrap();
    assert!(lease.contains("DHCP in"), "{lease}");
    let address = lease
        .split_once("network: lan ")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(address, _)| address.to_string())
        .unwrap();
    assert!(
        address.starts_with("192.168.1."),
        "a lease from office's range: {lease}"
    );
    eprintln!("client: {lease}");
    let (_, resolver) = client.expect("lookup: resolver ", BOOT).unwrap();
    assert!(resolver.ends_with(&format!("resolver {OFFICE_ADDRESS}")), "{resolver}");
    let (_, printer) = client.expect("lookup: printer ", BOOT).unwrap();
    assert!(printer.contains("Address: 192.168.1.5"), "{printer}");
    let (_, own) = client.expect("lookup: self ", BOOT).unwrap();
    assert!(own.contains(&format!("Address: {address}")), "{own}");
    // The leases are two minutes long (office's lease-time): both are renewed at T1, a
    // minute in, by the zone's event loop and by the platform's.
    let (_, zone) = client.expect("lookup: zone ", BOOT).unwrap();
    assert!(zone.contains("online") && zone.contains(" 192.168.1."), "{zone}");
    let (_, zone_renewed) = client.expect("lookup: zone-renewed ", BOOT).unwrap();
    assert!(zone_renewed.contains("renewed for 120 s"), "{zone_renewed}");
    client.expect("lookup: done", BOOT).unwrap();
    // The platform's lease came first, so its renewal is usually on the console already.
    let renewed = format!("ramkey: network: lan: DHCP lease {address}/24 renewed for 120 s");
    if !client.lines().iter().any(|(_, line)| line.contains(&renewed)) {
        client.expect(&renewed, BOOT).unwrap();
    }
    eprintln!("client: {zone_renewed}");
    client.monitor("system_powerdown").unwrap();
    client.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(client.wait_exit(SHUTDOWN).unwrap().success(), "{}", client.tail());
}

fn debugfs(disk: &Path, write: bool, commands: &str) -> String {
    let script = disk.with_extension("debugfs");
    std::fs::write(&script, commands).unwrap();
    let mut cmd = Command::new("debugfs");
    if write {
        cmd.arg("-w");
    }
    let out = cmd
        .arg("-f")
        .arg(&script)
        .arg(disk)
        .output()
        .expect("debugfs (e2fsprogs)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn zones_serve_isolated_keep_their_volumes_and_bad_images_are_refused() {
    let name = "zones-web";
    let lan = Link::Listen(free_port());
    let image = stick(name, Some(lan));
    let disk = pool_disk(name);
    let port = free_port();

    let mut vm = boot(name, &image, &disk, port, &[lan]);
    vm.forbid(ALIVE).unwrap();
    // The personalities are verified in config order.
    vm.expect("ramkey: zone web: image web 1.0.0 verified", BOOT).unwrap();
    let (_, tampered) = vm.expect("zone tampered: refused: ", BOOT).unwrap();
    assert!(tampered.contains("payload sha256 mismatch"), "{tampered}");
    let (_, stranger) = vm.expect("zone stranger: refused: ", BOOT).unwrap();
    assert!(stranger.contains("which is not trusted"), "{stranger}");
    let (_, up) = vm.expect("ramkey: zone web: up in ", BOOT).unwrap();
    let started = Instant::now();
    let page = http(port, "/");
    eprintln!(
        "web zone: {up}; first HTTP 200 {} ms after that line (wall clock, TCG)",
        started.elapsed().as_millis()
    );
    assert!(page.contains("It works"), "{page}");
    let office_mac = isolation(&mut vm);
    console_session(&mut vm);
    // The host and both zones survived the memory hog and the fork bomb.
    assert!(http(port, "/").contains("It works"));
    office_serves_the_client(lan);
    power_off(vm);
    nothing_spoofed_reached_the_wire(&capture(name), &office_mac);
    // The zone let go of the pool before it was unmounted: nothing is left in the journal.
    let header = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&disk)
        .output()
        .expect("dumpe2fs (e2fsprogs)");
    let header = String::from_utf8_lossy(&header.stdout);
    assert!(
        header.contains("Filesystem state:         clean") && !header.contains("needs_recovery"),
        "the pool was not unmounted cleanly:\n{header}"
    );

    // The page lives in the volume on the pool: replace it there, on the host.
    let listing = debugfs(&disk, false, "ls -l /instances/web/volumes/www\n");
    assert!(listing.contains("index.html"), "{listing}");
    let marker = disk.with_extension("marker.html");
    std::fs::write(&marker, "<p>written to the volume before this boot</p>\n").unwrap();
    debugfs(
        &disk,
        true,
        &format!(
            "cd /instances/web/volumes/www\nrm index.html\nwrite {} index.html\n",
            marker.display()
        ),
    );

    assert!(artifacts::stick_mtools("mdel", &image, &["::/services.d/probe.toml"]).unwrap());
    // The client's lease is in office's volume.
    let leases = debugfs(&disk, false, "cat /instances/office/volumes/leases/dnsmasq.leases\n");
    assert!(leases.contains(" client "), "{leases}");

    // A symlink in office's writable layer where its volume is mounted, as a zone that
    // owned the parent directory could leave it: followed, zone setup (host root) would
    // make a directory in web's volume and mount office's leases there.
    debugfs(
        &disk,
        true,
        "mkdir /instances/office/upper/var\nmkdir /instances/office/upper/var/lib\n\
         symlink /instances/office/upper/var/lib/misc /pool/instances/web/volumes/www/planted\n",
    );
    let planted = debugfs(&disk, false, "stat /instances/office/upper/var/lib/misc\n");
    assert!(planted.contains("Type: symlink"), "{planted}");

    let mut vm = boot(&format!("{name}-again"), &image, &disk, port, &[lan]);
    vm.expect("ramkey: zone web: image web 1.0.0 verified", BOOT).unwrap();
    let page = http(port, "/");
    assert!(page.contains("written to the volume before this boot"), "{page}");
    let (_, office) = vm.expect("zone office: not started: ", BOOT).unwrap();
    assert!(
        office.contains("/var/lib/misc in the zone is a symlink or not a directory"),
        "{office}"
    );
    power_off(vm);
    let www = debugfs(&disk, false, "ls -l /instances/web/volumes/www\n");
    assert!(!www.contains("planted"), "setup followed the planted symlink: {www}");
}

/// `web` as version `version`, changed by `edit` (given the copy's folder).
fn web_variant(name: &str, version: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    artifacts::personality_variant(name, "web", version, edit).unwrap()
}

/// Swaps `web` to v2, then to a broken v3, from a one-shot service on the box, printing
/// `swap: ...` lines on the console.
const SWAPPER: &str = r#"name = "swapper"
restart = "never"
argv = ["/bin/sh", "-c", '''
until ramkeyctl personality list 2>/dev/null | grep -q ' online '; do sleep 1; done
# The boot gate records the first image as the last good one; let it finish first.
until ramkeyctl svcs -a 2>/dev/null | grep zone-gate-web | grep -q offline; do sleep 1; done
say() { echo "swap: $*" >/dev/console; }
until ramkeyctl personality list 2>/dev/null | grep '^kv ' | grep -q ' online '; do sleep 1; done
say "kv $(ramkeyctl personality console kv -- /bin/sh -c 'redis-cli set k stored; redis-cli get k; stat -c %U /var/lib/redis; ls /var/lib/redis' 2>&1 | tr '\n' ' ')"
say "import-tampered $(ramkeyctl personality import /usbkey/personalities/tampered.rkimg 2>&1 | tail -1)"
imported=$(ramkeyctl personality import /usbkey/personalities/web-2.0.0.rkimg 2>&1 | tail -1)
say "import $imported"
v2=$(echo "$imported" | sed -n 's/.* as \([^;]*\);.*/\1/p')
# Another personality's image, and (after the swap to v2 below) an older web, are refused.
say "other-personality $(ramkeyctl personality swap web /usbkey/personalities/kv-1.0.0.rkimg 2>&1 | tail -1)"
# A file the zone changes outside its volumes: gone with the image it was changed under.
plant() { ramkeyctl personality console web -- /bin/sh -c 'echo planted >/etc/zone-was-here; cat /etc/zone-was-here'; }
planted() { ramkeyctl personality console web -- /bin/sh -c 'cat /etc/zone-was-here 2>&1; echo "volume $(cat /srv/www/swap-marker)"'; }
# A marker no image or seed has, in the volume: it must be there after each swap.
mark=$(cat /proc/sys/kernel/random/uuid)
ramkeyctl personality console web -- /bin/sh -c "echo $mark >/srv/www/swap-marker"
say "marker $mark"
say "planted-v1 $(plant 2>&1)"
say "v2 $(ramkeyctl personality swap web $v2 2>&1 | tail -1)"
say "config-v2 $(ramkeyctl config get personality.web.image 2>&1)"
say "downgrade $(ramkeyctl personality swap web /usbkey/personalities/web-1.0.0.rkimg 2>&1 | tail -1)"
# A key taken out of the config is distrusted at once, without a reboot.
keys=$(ramkeyctl config get images.trusted_keys)
ramkeyctl config set 'images.trusted_keys=[]' >/dev/null
say "key-removed $(ramkeyctl personality swap web $v2 2>&1 | tail -1)"
ramkeyctl config set "images.trusted_keys=$keys" >/dev/null
say "after-swap $(planted 2>&1 | tr '\n' ' ')"
say "planted-v2 $(plant 2>&1)"
t0=$(date +%s)
out=$(ramkeyctl personality swap web /usbkey/personalities/web-3.0.0.rkimg --wait 40 2>&1; echo "exit $?")
say "v3 after $(( $(date +%s) - t0 )) s: $(echo "$out" | tr '\n' ' ')"
say "list $(ramkeyctl personality list | grep '^web ')"
say "after-rollback $(planted 2>&1 | tr '\n' ' ')"
# The zone's own log on the host, and a service's log inside it (v2's seed says a line).
say "log-zone $(ramkeyctl personality log web | grep -c 'starting its services')"
# The seed's last line reaches its log a moment after the zone is online: wait up to 10 s.
seedlog() {
  n=0
  while [ $n -lt 20 ]; do
    line=$(ramkeyctl personality log web seed 2>&1 | tail -1)
    case "$line" in *checked) break ;; esac
    sleep 0.5; n=$((n + 1))
  done
  echo "$line"
}
say "log-seed $(seedlog)"
# Waits for web to be online; after 120 s says what the zone and its log show instead.
online() {
  n=0
  until ramkeyctl personality list | grep '^web ' | grep -q ' online '; do
    sleep 1; n=$((n+1))
    if [ $n -ge 120 ]; then
      say "stuck $(ramkeyctl personality list | grep '^web ') LOG $(ramkeyctl personality log web 2>&1 | tail -n 20 | tr '\n' ' ')"
      return 1
    fi
  done
}
say "stop $(ramkeyctl personality stop web 2>&1) $(ramkeyctl personality list | grep '^web ')"
say "start $(ramkeyctl personality start web 2>&1)"
online
# Back to the image before the last kept swap (v1: the failed v3 does not count), then to v2.
say "rollback $(ramkeyctl personality rollback web 2>&1 | tail -1)"
say "rollback-again $(ramkeyctl personality rollback web 2>&1 | tail -1)"
say done
''']
"#;

#[test]
fn swap_keeps_the_volume_and_a_broken_image_rolls_back() {
    let name = "zones-swap";
    let v2 = web_variant("web-v2", "2.0.0", |dir| {
        artifacts::add_version_page(dir, "2.0.0");
        let seed = dir.join("files/usr/local/sbin/ramkey-web-seed");
        let mut text = std::fs::read_to_string(&seed).unwrap();
        text.push_str("echo \"seed: $www checked\"\n");
        std::fs::write(seed, text).unwrap();
    });
    let v3 = web_variant("web-v3", "3.0.0", |dir| {
        std::fs::write(
            dir.join("files/etc/nginx/nginx.conf"),
            "this is not an nginx configuration;\n",
        )
        .unwrap();
    });
    let image = stick(name, None);
    // kv (redis, running as `redis`, its data in a volume) beside web.
    let kv = artifacts::personality("kv").unwrap();
    let config = artifacts::target_dir().join(format!("ramkey/run/{name}.files/config.toml"));
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[[personality]]\nname = \"kv\"\nimage = \"personalities/kv-1.0.0.rkimg\"\nnic = \"admin\"\n\
         ip = \"10.0.2.19/24\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let swapper = artifacts::target_dir().join("ramkey/run/swapper.toml");
    std::fs::write(&swapper, SWAPPER).unwrap();
    assert!(artifacts::stick_mtools("mdel", &image, &["::/services.d/probe.toml"]).unwrap());
    artifacts::put_on_stick(
        &image,
        &[
            (&v2, "::/personalities/web-2.0.0.rkimg"),
            (&v3, "::/personalities/web-3.0.0.rkimg"),
            (&swapper, "::/services.d/swapper.toml"),
            (&kv, "::/personalities/kv-1.0.0.rkimg"),
            (&config, "::/config.toml"),
        ],
    )
    .unwrap();
    let disk = pool_disk(name);
    let port = free_port();

    let mut vm = boot(name, &image, &disk, port, &[]);
    vm.forbid(ALIVE).unwrap();
    vm.expect("ramkey: zone web: web 1.0.0 came up; kept as the last good image", BOOT)
        .unwrap();
    // redis answers, as `redis`, from its volume.
    let (_, kv) = vm.expect("swap: kv ", BOOT).unwrap();
    assert!(kv.contains("OK stored redis"), "{kv}");
    let (_, refused) = vm.expect("swap: import-tampered ", BOOT).unwrap();
    assert!(
        refused.contains("refused: ") && refused.contains("payload sha256 mismatch"),
        "{refused}"
    );
    // Kept under a name that says its bytes: web-2.0.0-<16 digits of the payload's sha256>.
    let (_, imported) = vm.expect("swap: import ", BOOT).unwrap();
    let kept_image = imported
        .split_once(" as ")
        .and_then(|(_, rest)| rest.split_once(';'))
        .map(|(path, _)| path.to_string())
        .unwrap_or_default();
    assert!(
        imported.contains("imported web 2.0.0 as /pool/images/web-2.0.0-")
            && kept_image.len() == "/pool/images/web-2.0.0-".len() + 16 + ".rkimg".len(),
        "{imported}"
    );
    let (_, other) = vm.expect("swap: other-personality ", BOOT).unwrap();
    assert!(
        other.contains("is image kv 1.0.0, and zone web runs web: a swap keeps the personality"),
        "{other}"
    );
    let (_, marker) = vm.expect("swap: marker ", BOOT).unwrap();
    let marker = marker.rsplit(' ').next().unwrap().to_string();
    assert_eq!(marker.len(), 36, "a uuid: {marker}");
    let kept = format!("volume {marker}");
    let (_, planted) = vm.expect("swap: planted-v1 ", BOOT).unwrap();
    assert!(planted.ends_with("planted"), "{planted}");
    let (_, swapped) = vm.expect("swap: v2 ", BOOT).unwrap();
    assert!(swapped.contains("swapped web 1.0.0 -> web 2.0.0 in "), "{swapped}");
    assert!(swapped.contains("the usbkey config names it"), "{swapped}");
    // What the swap wrote to the stick, read back before the rollback rewrites it.
    let (_, config) = vm.expect("swap: config-v2 ", BOOT).unwrap();
    assert!(config.ends_with(&format!("config-v2 {kept_image}")), "{config}");
    let (_, downgrade) = vm.expect("swap: downgrade ", BOOT).unwrap();
    assert!(
        downgrade.contains("refused: web 1.0.0 is older than 2.0.0, which zone web has run"),
        "{downgrade}"
    );
    let (_, untrusted) = vm.expect("swap: key-removed ", BOOT).unwrap();
    assert!(
        untrusted.contains("refused: no [images] trusted_keys in the config"),
        "{untrusted}"
    );
    for after in ["after-swap", "planted-v2"] {
        let (_, line) = vm.expect(&format!("swap: {after} "), BOOT).unwrap();
        if after == "after-swap" {
            assert!(
                line.contains("/etc/zone-was-here: No such file") && line.contains(&kept),
                "{line}"
            );
        } else {
            assert!(line.ends_with("planted"), "{line}");
        }
    }
    let (_, rolled) = vm.expect("swap: v3 ", BOOT).unwrap();
    assert!(rolled.contains("rolled back from web 3.0.0: "), "{rolled}");
    assert!(
        rolled.contains("running web 2.0.0 again") && rolled.contains("exit 1"),
        "{rolled}"
    );
    let (_, list) = vm.expect("swap: list ", BOOT).unwrap();
    assert!(
        list.contains("web 2.0.0") && list.contains("online") && list.contains("rolled back from web 3.0.0"),
        "{list}"
    );
    let (_, after) = vm.expect("swap: after-rollback ", BOOT).unwrap();
    assert!(
        after.contains("/etc/zone-was-here: No such file") && after.contains(&kept),
        "{after}"
    );
    let (_, log) = vm.expect("swap: log-zone ", BOOT).unwrap();
    assert!(
        log.rsplit(' ').next().and_then(|n| n.parse::<u32>().ok()) >= Some(1),
        "{log}"
    );
    let (_, log) = vm.expect("swap: log-seed ", BOOT).unwrap();
    assert!(log.ends_with("seed: /srv/www checked"), "{log}");
    let (_, stop) = vm.expect("swap: stop ", BOOT).unwrap();
    assert!(
        stop.contains("zone-web: disabled") && stop.contains(" disabled"),
        "{stop}"
    );
    let (_, start) = vm.expect("swap: start ", BOOT).unwrap();
    assert!(start.ends_with("zone-web: enabled"), "{start}");
    let (_, back) = vm.expect("swap: rollback ", BOOT).unwrap();
    assert!(back.contains("swapped web 2.0.0 -> web 1.0.0 in "), "{back}");
    let (_, again) = vm.expect("swap: rollback-again ", BOOT).unwrap();
    assert!(again.contains("swapped web 1.0.0 -> web 2.0.0 in "), "{again}");
    vm.expect("swap: done", BOOT).unwrap();
    eprintln!("{swapped}\n{rolled}\n{back}\n{again}");
    // v2 serves, from the volume v1 seeded.
    assert!(http(port, "/version.html").contains("web 2.0.0"));
    assert!(http(port, "/").contains("It works"));
    power_off(vm);

    // The broken image put in the config on the stick: the boot gate falls back to v2.
    assert!(artifacts::stick_mtools("mdel", &image, &["::/services.d/swapper.toml"]).unwrap());
    let pair = "personality.web.image=\"personalities/web-3.0.0.rkimg\"".to_string();
    config_cmd::set(&Target::Disk(image.clone()), &[pair], &Sysfs::host()).unwrap();
    let mut vm = boot(&format!("{name}-gate"), &image, &disk, port, &[]);
    vm.expect(
        "ramkey: zone web: image changed since the last boot (web 2.0.0 -> web 3.0.0); web 2.0.0 is kept to fall back to",
        BOOT,
    )
    .unwrap();
    let (_, gate) = vm
        .expect("ramkey: zone web: rolled back from web 3.0.0: ", BOOT)
        .unwrap();
    assert!(gate.contains("running web 2.0.0 again"), "{gate}");
    assert!(http(port, "/version.html").contains("web 2.0.0"));
    power_off(vm);
}

/// `cargo xtask demo`'s appliance, booted as the demo boots it: `web` answers through its
/// forward and `office` answers the `dig` the demo prints for a name from its `hosts`.
#[test]
fn the_demo_serves_web_and_office_answers_dns() {
    let demo = xtask::tasks::Demo::prepare("zones-demo", true).unwrap();
    let mut vm = Machine::start(&Spec::run("zones-demo", &demo.opts).unwrap()).unwrap();
    vm.expect_running(BOOT).unwrap();
    vm.expect("ramkey: zone office: office 1.0.0 came up", BOOT).unwrap();
    assert!(http(demo.http, "/").contains("It works"));
    let dig = demo.dig("web.office.lan");
    let start = Instant::now();
    let answer = loop {
        let out = Command::new(&dig[0])
            .args(&dig[1..])
            .arg("+short")
            .output()
            .expect("dig (bind9-dnsutils)");
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // QEMU accepts the connection before anything listens behind it.
        if out.status.success() || start.elapsed() > BOOT {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(answer, "10.0.2.16", "{}", dig.join(" "));
    power_off(vm);
}
