//! Boot tests of the config on the box (QEMU, TCG): a static address and host name set with
//! `ramkey config` reach a service through a host forward; a NIC chosen by MAC keeps its
//! address whatever the discovery order; DHCP on QEMU's user network with router and DNS;
//! a config broken after a good boot falls back to `config.toml.good`; a 64 MiB config is
//! too large to read, and the box goes to recovery mode, or with a good copy boots on it,
//! without a panic or the OOM killer. The time from the config read to the network being up
//! is printed, not asserted.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use ramkey_builder::config_cmd::{self, Target};
use ramkey_builder::flash::sysfs::Sysfs;
use ramkey_builder::run::{Boot, Forward, RunOptions};
use xtask::artifacts;
use xtask::qemu::{Machine, Spec};

const BOOT: Duration = Duration::from_secs(240);
const SHUTDOWN: Duration = Duration::from_secs(90);
/// A static address QEMU's DHCP server never hands out (it leases from 10.0.2.15 up, one
/// per client): seeing it proves the config set it, not DHCP.
const STATIC: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 2, 77);
fn mcopy(image: &Path, text: &str, dest: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, text).unwrap();
    artifacts::put_on_stick(image, &[(&file, dest)]).unwrap();
}

fn set(image: &Path, pairs: &[&str]) {
    let pairs: Vec<String> = pairs.iter().map(|p| (*p).to_owned()).collect();
    config_cmd::set(&Target::Disk(image.into()), &pairs, &Sysfs::host()).unwrap();
}

fn options(name: &str, image: &Path) -> RunOptions {
    let mut opts = RunOptions::new(Boot::Usb { image: image.into() });
    opts.state_dir = Some(artifacts::target_dir().join("ramkey/run").join(name));
    opts
}

fn power_off(mut vm: Machine) {
    vm.monitor("system_powerdown").unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}

/// The `N` of `network: up N ms after the config was read`.
fn network_up_ms(vm: &mut Machine) -> u64 {
    let (_, line) = vm.expect("ramkey: network: up ", BOOT).unwrap();
    let ms = line.split("network: up ").nth(1).and_then(|r| r.split(' ').next());
    ms.and_then(|m| m.parse().ok()).unwrap_or_else(|| panic!("{line}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

const HTTPD: &str = "name = \"httpd\"\nargv = [\"/bin/sh\", \"-c\", \"mkdir -p /run/www && echo hello-from-box1 > \
    /run/www/index.html && exec /bin/busybox httpd -f -p 8080 -h /run/www\"]\n";

#[test]
fn static_address_and_hostname_reach_a_service_through_a_forward() {
    let image = artifacts::usb_copy("config-static").unwrap();
    set(
        &image,
        &[
            "hostname=box1",
            "nic.admin.ip=10.0.2.77/24",
            "nic.admin.gateway=10.0.2.2",
            "nic.admin.mtu=1400",
        ],
    );
    mcopy(&image, HTTPD, "::/services.d/httpd.toml");
    let port = free_port();
    let mut opts = options("config-static", &image);
    opts.forwards = vec![Forward {
        host: port,
        guest: 8080,
        address: Some(STATIC),
    }];
    let mut vm = Machine::start(&Spec::run("config-static", &opts).unwrap()).unwrap();
    vm.expect("ramkey: config: /usbkey/config.toml: ok (hostname box1)", BOOT)
        .unwrap();
    vm.expect("ramkey: identity: hostname box1", BOOT).unwrap();
    vm.expect(
        "ramkey: network: admin 10.0.2.77/24 via 10.0.2.2 (static; 52:54:00:12:34:56, was eth0, mtu 1400)",
        BOOT,
    )
    .unwrap();
    let ms = network_up_ms(&mut vm);
    vm.expect("ramkey: config: saved /usbkey/config.toml.good", BOOT)
        .unwrap();
    // The stick's default config gives root no SSH key: no sshd, and the console says why.
    vm.expect(
        "ramkey: ssh: off: no admin.authorized_keys in config.toml; add one with: ramkey config",
        BOOT,
    )
    .unwrap();
    vm.expect_running(BOOT).unwrap();
    let body = xtask::http::wait_ok(port, "/index.html", Duration::from_secs(120)).unwrap();
    assert!(body.contains("hello-from-box1"), "{body}");
    eprintln!("static: network up {ms} ms after the config was read");
    power_off(vm);
}

const BY_MAC: &str = "version = 1\nhostname = \"bymac\"\n[[nic]]\ntag = \"admin\"\nmac = \"52:54:00:aa:00:02\"\n\
    ip = \"10.0.2.78/24\"\ngateway = \"10.0.2.2\"\n\
    [[nic]]\ntag = \"external\"\nmac = \"52:54:00:aa:00:01\"\nvlan = 20\nip = \"192.168.20.2/24\"\n";

/// Two NICs with fixed MACs; `swapped` puts the second one first on the PCI bus.
fn two_nics(name: &str, image: &Path, swapped: bool) -> Spec {
    let mut spec = Spec::run(name, &options(name, image)).unwrap();
    let first = spec.args.iter().position(|a| a == "virtio-net-pci,netdev=n0").unwrap();
    spec.args[first] = "virtio-net-pci,netdev=n0,mac=52:54:00:aa:00:01".into();
    let second = [
        "-device".to_owned(),
        "virtio-net-pci,netdev=n1,mac=52:54:00:aa:00:02".to_owned(),
    ];
    let at = if swapped { first - 1 } else { first + 1 };
    spec.args.splice(at..at, second);
    spec.args.extend(["-netdev".into(), "user,id=n1".into()]);
    spec
}

#[test]
fn the_nic_chosen_by_mac_gets_the_address_in_either_discovery_order() {
    let image = artifacts::usb_copy("config-mac").unwrap();
    mcopy(&image, BY_MAC, "::/config.toml");
    let mut was = Vec::new();
    for swapped in [false, true] {
        let mut vm = Machine::start(&two_nics("config-mac", &image, swapped)).unwrap();
        let (_, line) = vm
            .expect(
                "ramkey: network: admin 10.0.2.78/24 via 10.0.2.2 (static; 52:54:00:aa:00:02, was eth",
                BOOT,
            )
            .unwrap();
        was.push(line.rsplit("was ").next().unwrap_or_default().to_owned());
        // A VLAN on the other NIC, also found by its MAC (the kernel loads 8021q on demand).
        let (_, vlan) = vm
            .expect(
                "ramkey: network: external 192.168.20.2/24 (static; VLAN 20 on eth",
                BOOT,
            )
            .unwrap();
        assert!(vlan.ends_with(" 52:54:00:aa:00:01)"), "{vlan}");
        vm.expect("(2 of 2 NICs configured)", BOOT).unwrap();
        vm.expect_running(BOOT).unwrap();
        power_off(vm);
    }
    assert_ne!(
        was[0], was[1],
        "the kernel names differ between the two orders: {was:?}"
    );
}

/// An SNTP server on the host's 127.0.0.1:123 (the guest's 10.0.2.2:123) whose clock is
/// an hour ahead; answers until the test ends.
fn sntp_server_an_hour_ahead() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:123")
        .expect("binding UDP 127.0.0.1:123 for the NTP test (the tests run as root)");
    std::thread::spawn(move || {
        let mut request = [0u8; 48];
        while let Ok((n, from)) = socket.recv_from(&mut request) {
            if n < 48 {
                continue;
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            let ahead = now + Duration::from_secs(3600);
            let mut ntp = [0u8; 8];
            ntp[..4].copy_from_slice(&((ahead.as_secs() + 2_208_988_800) as u32).to_be_bytes());
            ntp[4..].copy_from_slice(&(((u64::from(ahead.subsec_nanos())) << 32) / 1_000_000_000).to_be_bytes()[4..]);
            let mut reply = [0u8; 48];
            reply[0] = 0x24; // version 4, server
            reply[1] = 1; // stratum 1
            reply[24..32].copy_from_slice(&request[40..48]); // originate = the request's transmit
            reply[32..40].copy_from_slice(&ntp);
            reply[40..48].copy_from_slice(&ntp);
            let _ = socket.send_to(&reply, from);
        }
    });
}

/// A one-shot service that halts the box (SIGUSR1 to PID 1, busybox's convention) once the
/// boot has settled.
const HALTER: &str =
    "name = \"halter\"\nrestart = \"never\"\nargv = [\"/bin/sh\", \"-c\", \"sleep 5; kill -USR1 1\"]\n";

#[test]
fn dhcp_gets_the_address_router_and_dns_then_ntp_time_then_halts() {
    let image = artifacts::usb_copy("config-dhcp").unwrap();
    set(&image, &["hostname=dhcpbox", "ntp.servers=[\"10.0.2.2\"]"]);
    mcopy(&image, HALTER, "::/services.d/halter.toml");
    sntp_server_an_hour_ahead();
    let mut vm = Machine::start(&Spec::run("config-dhcp", &options("config-dhcp", &image)).unwrap()).unwrap();
    vm.expect(
        "ramkey: network: admin 10.0.2.15/24 via 10.0.2.2 dns 10.0.2.3 (DHCP in ",
        BOOT,
    )
    .unwrap();
    vm.expect("ramkey: network: /etc/resolv.conf: nameserver 10.0.2.3", BOOT)
        .unwrap();
    let ms = network_up_ms(&mut vm);
    let (_, ntp) = vm
        .expect("ramkey: ntp: clock set from 10.0.2.2 (offset +", BOOT)
        .unwrap();
    let offset: f64 = ntp
        .split("(offset +")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{ntp}"));
    assert!((3590.0..3610.0).contains(&offset), "an hour ahead: {ntp}");
    vm.expect_running(BOOT).unwrap();
    eprintln!("dhcp: network up {ms} ms after the config was read; {ntp}");
    // Halt: the services stop, the disks are synced, and the machine stays on (halted).
    vm.expect("ramkey: shutdown requested: SIGUSR1", BOOT).unwrap();
    vm.expect_line("ramkey: unmount /usbkey: ok", SHUTDOWN).unwrap();
    vm.expect_line("ramkey: halt", SHUTDOWN).unwrap();
    vm.pull_the_plug().unwrap();
}

/// A one-shot service that prints `ramkeyctl status` on the console.
const STATUS: &str =
    "name = \"status\"\nrestart = \"never\"\nargv = [\"/bin/sh\", \"-c\", \"ramkeyctl status >/dev/console 2>&1\"]\n";

#[test]
fn a_config_broken_after_a_good_boot_falls_back_to_the_good_copy() {
    let image = artifacts::usb_copy("config-broken").unwrap();
    set(&image, &["hostname=goodbox"]);
    let mut vm = Machine::start(&Spec::run("config-good", &options("config-broken", &image)).unwrap()).unwrap();
    vm.expect("ramkey: config: saved /usbkey/config.toml.good", BOOT)
        .unwrap();
    vm.expect_running(BOOT).unwrap();
    power_off(vm);

    mcopy(
        &image,
        "version = 1\nhostname = \"badbox\"\nbogus = 1\n",
        "::/config.toml",
    );
    // What `ramkeyctl status` says on the box booted from the good copy.
    mcopy(&image, STATUS, "::/services.d/status.toml");
    let mut vm = Machine::start(&Spec::run("config-broken", &options("config-broken", &image)).unwrap()).unwrap();
    // The broken config is not saved as the good one.
    vm.forbid(&["config: saved"]).unwrap();
    vm.expect("ramkey: config: /usbkey/config.toml:3:1: unknown key `bogus`", BOOT)
        .unwrap();
    vm.expect(
        "ramkey: config: using the last good config /usbkey/config.toml.good",
        BOOT,
    )
    .unwrap();
    vm.expect("ramkey: identity: hostname goodbox", BOOT).unwrap();
    vm.expect("ramkey: network: admin 10.0.2.15/24", BOOT).unwrap();
    vm.expect_running(BOOT).unwrap();
    let (_, status) = vm.expect("config:    /usbkey/config.toml.good (", BOOT).unwrap();
    assert!(status.contains("unknown key `bogus`"), "{status}");
    power_off(vm);
}

/// What a box reading a huge config never prints: a panic, PID 1's death, the OOM killer.
const NO_PANIC_NO_OOM: &[&str] = &["Kernel panic", "ramkey: error: PANIC", "Out of memory", "oom-kill"];
/// The console line of a config over the cap (`config_load::read_capped`).
const TOO_LARGE: &str = "ramkey: config: /usbkey/config.toml: cannot read it: too large (over 1024 KiB)";

#[test]
fn a_64_mib_config_is_too_large_the_box_boots_on_the_good_copy_else_recovery() {
    let image = artifacts::usb_copy("config-huge").unwrap();
    // 64 MiB: a valid head, then zeros (sparse here; the FAT stores every byte).
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("config.toml");
    std::fs::write(&huge, "version = 1\nhostname = \"hugebox\"\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&huge)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    artifacts::put_on_stick(&image, &[(&huge, "::/config.toml")]).unwrap();

    // No good copy: recovery mode, PID 1 up and answering the power button.
    let spec = Spec::run("config-huge-recovery", &options("config-huge", &image)).unwrap();
    let mut vm = Machine::start(&spec).unwrap();
    let mut forbidden = NO_PANIC_NO_OOM.to_vec();
    forbidden.push("ramkey: ready");
    vm.forbid(&forbidden).unwrap();
    vm.expect(TOO_LARGE, BOOT).unwrap();
    vm.expect("ramkey: RECOVERY MODE: no usable config: /usbkey/config.toml", BOOT)
        .unwrap();
    vm.refute_for("Kernel panic", Duration::from_secs(5)).unwrap();
    vm.monitor("system_powerdown").unwrap();
    vm.expect("ramkey: shutdown requested: power button", SHUTDOWN).unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());

    // A good copy beside it (as a good boot leaves it): the box runs on that.
    let good = dir.path().join("config.toml.good");
    std::fs::write(
        &good,
        "version = 1\nhostname = \"goodbox\"\n[[nic]]\ntag = \"admin\"\nname = \"eth0\"\nip = \"dhcp\"\n",
    )
    .unwrap();
    artifacts::put_on_stick(&image, &[(&good, "::/config.toml.good")]).unwrap();
    mcopy(&image, STATUS, "::/services.d/status.toml");
    let mut vm = Machine::start(&Spec::run("config-huge", &options("config-huge", &image)).unwrap()).unwrap();
    let mut forbidden = NO_PANIC_NO_OOM.to_vec();
    forbidden.push("config: saved");
    vm.forbid(&forbidden).unwrap();
    vm.expect(TOO_LARGE, BOOT).unwrap();
    vm.expect(
        "ramkey: config: using the last good config /usbkey/config.toml.good",
        BOOT,
    )
    .unwrap();
    vm.expect("ramkey: identity: hostname goodbox", BOOT).unwrap();
    vm.expect_running(BOOT).unwrap();
    let (_, status) = vm.expect("config:    /usbkey/config.toml.good (", BOOT).unwrap();
    assert!(status.contains("too large"), "{status}");
    power_off(vm);
}
