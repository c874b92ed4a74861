//! Tests of [`super::apply`] with a netlink fake that renames and creates links.

use std::cell::RefCell;
use std::rc::Rc;

use dhcproto::Decodable;
use dhcproto::v4::{Message, MessageType};
use ramkey_config::Config;

use super::*;
use crate::base::clock::FakeClock;
use crate::net::dhcp::DhcpTransport;
use crate::net::netlink::{ARPHRD_ETHER, IFF_LOWER_UP, IFF_UP};

#[derive(Default)]
struct Fake {
    links: Vec<Link>,
    calls: Vec<String>,
}

impl Fake {
    fn name(&self, index: u32) -> String {
        self.links
            .iter()
            .find(|l| l.index == index)
            .map(|l| l.name.clone())
            .unwrap_or_default()
    }
}

impl Netlink for Fake {
    fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        Ok(self.links.clone())
    }
    fn set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.calls.push(format!("up {}", self.name(index)));
        for l in self.links.iter_mut().filter(|l| l.index == index) {
            l.flags |= IFF_UP | IFF_LOWER_UP;
        }
        Ok(())
    }
    fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), NetlinkError> {
        self.calls.push(format!("addr {} {addr}/{prefix}", self.name(index)));
        Ok(())
    }
    fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<(), NetlinkError> {
        self.calls.push(format!("route {} via {gateway}", self.name(index)));
        Ok(())
    }
    fn set_down(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.calls.push(format!("down {}", self.name(index)));
        Ok(())
    }
    fn rename(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        self.calls.push(format!("rename {} {name}", self.name(index)));
        for l in self.links.iter_mut().filter(|l| l.index == index) {
            l.name = name.to_owned();
        }
        Ok(())
    }
    fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        self.calls.push(format!("mtu {} {mtu}", self.name(index)));
        Ok(())
    }
    fn add_vlan(&mut self, parent: u32, name: &str, id: u16) -> Result<(), NetlinkError> {
        self.calls.push(format!("vlan {} {name} {id}", self.name(parent)));
        let index = 100 + u32::from(id);
        self.links.push(Link {
            index,
            name: name.to_owned(),
            mac: None,
            kind: ARPHRD_ETHER,
            flags: 0,
        });
        Ok(())
    }
}

fn link(index: u32, name: &str, last: u8) -> Link {
    Link {
        index,
        name: name.into(),
        mac: Some([0x52, 0x54, 0, 0x12, 0x34, last]),
        kind: ARPHRD_ETHER,
        flags: 0,
    }
}

struct Server(Vec<Vec<u8>>, Rc<RefCell<Vec<String>>>);

impl DhcpTransport for Server {
    fn send(&mut self, packet: &[u8]) -> std::io::Result<()> {
        let m = Message::from_bytes(packet).unwrap();
        let kind = m.opts().msg_type().unwrap();
        let host = match m.opts().get(dhcproto::v4::OptionCode::Hostname) {
            Some(dhcproto::v4::DhcpOption::Hostname(h)) => h.clone(),
            _ => "-".into(),
        };
        self.1.borrow_mut().push(format!("{kind:?} {host}"));
        let mac: [u8; 6] = m.chaddr()[..6].try_into().unwrap();
        let answer = if kind == MessageType::Discover {
            MessageType::Offer
        } else {
            MessageType::Ack
        };
        self.0
            .push(dhcp::fixture_reply(answer, m.xid(), mac, Ipv4Addr::new(10, 0, 2, 15)));
        Ok(())
    }
    fn recv(&mut self, _: Duration) -> std::io::Result<Option<Vec<u8>>> {
        Ok((!self.0.is_empty()).then(|| self.0.remove(0)))
    }
}

fn run(fake: &mut Fake, config: &str, pxe: Option<&NetReport>) -> (Applied, Vec<String>, String) {
    let config = Config::parse(config, "config.toml").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    let log = Rc::new(RefCell::new(Vec::new()));
    let log2 = log.clone();
    let mut open = move |name: &str| -> std::io::Result<Box<dyn DhcpTransport>> {
        log2.borrow_mut().push(format!("open {name}"));
        Ok(Box::new(Server(vec![], log2.clone())))
    };
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
    let mut fake = Fake {
        links: vec![link(2, "eth0", 1), link(3, "eth1", 2)],
        ..Fake::default()
    };
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
    let mut fake = Fake {
        links: vec![link(2, "eth0", 1)],
        ..Fake::default()
    };
    let (applied, dhcp, resolv) = run(&mut fake, config, None);
    assert_eq!(applied.failures.len(), 1, "{:?}", applied.failures);
    assert!(applied.failures[0].starts_with("network: storage: no interface with MAC 02:00:00:00:00:09 (found: admin"));
    assert_eq!(dhcp, ["open admin", "Discover box2", "Request box2"]);
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
    let mut fake = Fake {
        links: vec![link(2, "eth0", 1)],
        ..Fake::default()
    };
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
        link: link(2, "eth0", 1),
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
