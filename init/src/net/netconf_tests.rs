//! Tests of [`super::apply`] with the recording netlink fake, which renames and creates links.

use dhcproto::v4::MessageType;
use ramkey_config::Config;

use super::*;
use crate::base::clock::FakeClock;
use crate::net::dhcp::fake::{Log, open_servers};
use crate::net::netlink::fake::{RecordingNetlink, ether};

fn run(fake: &mut RecordingNetlink, config: &str, pxe: Option<&NetReport>) -> (Applied, Vec<String>, String) {
    let config = Config::parse(config, "config.toml").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    let log = Log::default();
    let mut open = open_servers(|_| true, &log);
    let clock = FakeClock::new(Duration::from_secs(4), Duration::from_millis(20));
    let mut pause = |_| {};
    let applied = apply(
        &mut Env {
            netlink: fake,
            open: &mut open,
            clock: &clock,
            pause: &mut pause,
            resolv_conf: &resolv,
            hostname: Some(&config.hostname),
        },
        &config.nics,
        &config.dns,
        pxe,
    );
    let resolv = std::fs::read_to_string(&resolv).unwrap_or_default();
    let log = log.borrow().clone();
    (applied, log, resolv)
}

const STATIC: &str = "version = 1\nhostname = \"box1\"\n[[nic]]\ntag = \"admin\"\nmac = \"52:54:00:12:34:02\"\n\
    ip = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\nmtu = 1400\n[dns]\nresolvers = [\"10.0.2.3\"]\nsearch = [\"lan\"]\n";

#[test]
fn static_nic_by_mac_is_renamed_and_addressed() {
    let mut fake = RecordingNetlink::with(vec![ether(2, "eth0", 1), ether(3, "eth1", 2)]);
    let (applied, dhcp, resolv) = run(&mut fake, STATIC, None);
    assert!(applied.failures.is_empty(), "{:?}", applied.failures);
    assert_eq!(
        fake.calls,
        [
            "down eth1",
            "rename eth1 admin",
            "mtu admin 1400",
            "up admin",
            "addr admin 10.0.2.15/24",
            "route admin via 10.0.2.2"
        ]
    );
    assert_eq!(
        applied.lines,
        ["network: admin 10.0.2.15/24 via 10.0.2.2 (static; 52:54:00:12:34:02, was eth1, mtu 1400)"]
    );
    assert!(dhcp.is_empty());
    assert_eq!(
        resolv,
        "# written by the Ramkey init from [dns] in the config\nsearch lan\nnameserver 10.0.2.3\n"
    );
}

#[test]
fn dhcp_with_hostname_vlan_and_a_missing_nic() {
    let config = "version = 1\nhostname = \"box2\"\n[[nic]]\ntag = \"admin\"\nname = \"eth0\"\nip = \"dhcp\"\n\
        [[nic]]\ntag = \"external\"\nname = \"eth0\"\nvlan = 20\nip = \"192.168.20.2/24\"\ngateway = \"192.168.20.1\"\n\
        [[nic]]\ntag = \"storage\"\nmac = \"02:00:00:00:00:09\"\n";
    let mut fake = RecordingNetlink::with(vec![ether(2, "eth0", 1)]);
    let (applied, dhcp, resolv) = run(&mut fake, config, None);
    assert_eq!(applied.failures.len(), 1, "{:?}", applied.failures);
    assert!(applied.failures[0].starts_with("network: storage: no interface with MAC 02:00:00:00:00:09 (found: admin"));
    assert_eq!(dhcp, ["open admin", "admin Discover box2", "admin Request box2"]);
    assert!(
        applied.lines[0].starts_with("network: admin 10.0.2.15/24 via 10.0.2.2 dns 10.0.2.3 (DHCP in "),
        "{:?}",
        applied.lines
    );
    assert_eq!(
        applied.lines[1],
        "network: external 192.168.20.2/24 (gateway 192.168.20.1 unused) (static; VLAN 20 on admin 52:54:00:12:34:01)"
    );
    assert!(
        fake.calls.contains(&"vlan admin external 20".to_owned()),
        "{:?}",
        fake.calls
    );
    assert_eq!(applied.leases.len(), 1);
    assert_eq!(applied.leases[0].hostname.as_deref(), Some("box2"));
    assert_eq!(
        applied.leases[0].renew_at,
        applied.leases[0].obtained_at + Duration::from_secs(600)
    );
    assert!(resolv.contains("nameserver 10.0.2.3\n"), "{resolv}");
}

#[test]
fn the_pxe_lease_is_not_asked_again() {
    let mut fake = RecordingNetlink::with(vec![ether(2, "eth0", 1)]);
    let bytes = dhcp::fixture_reply(
        MessageType::Ack,
        1,
        [0x52, 0x54, 0, 0x12, 0x34, 1],
        Ipv4Addr::new(10, 0, 2, 15),
    );
    let lease = dhcp::parse_reply(&bytes, 1, [0x52, 0x54, 0, 0x12, 0x34, 1])
        .unwrap()
        .lease;
    let pxe = NetReport {
        link: ether(2, "eth0", 1),
        lease,
        dhcp_time: Duration::from_millis(30),
    };
    let config = "version = 1\nhostname = \"b\"\n[[nic]]\ntag = \"admin\"\nname = \"eth0\"\nip = \"dhcp\"\n";
    let (applied, dhcp, _) = run(&mut fake, config, Some(&pxe));
    assert!(dhcp.is_empty(), "{dhcp:?}");
    assert!(!fake.calls.iter().any(|c| c.starts_with("rename")), "{:?}", fake.calls);
    assert!(
        applied.lines[0].contains("(DHCP lease from the PXE boot, lease 86400 s; 52:54:00:12:34:01, interface eth0)"),
        "{:?}",
        applied.lines
    );
}
