//! Tests of the network step with a recording netlink fake and scripted DHCP servers.

use std::cell::RefCell;
use std::rc::Rc;

use dhcproto::Decodable;
use dhcproto::v4::{Message, MessageType};

use super::netlink::{ARPHRD_ETHER, IFF_LOOPBACK, IFF_LOWER_UP, IFF_UP};
use super::*;
use crate::base::clock::FakeClock;

#[derive(Default)]
struct FakeNetlink {
    links: Vec<Link>,
    calls: Vec<String>,
    /// Links listed from this `links()` call on (NICs that come late).
    late: Option<(usize, Link)>,
    listed: usize,
}

impl Netlink for FakeNetlink {
    fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        self.listed += 1;
        if let Some((after, link)) = &self.late
            && self.listed > *after
        {
            self.links.push(link.clone());
            self.late = None;
        }
        Ok(self.links.clone())
    }
    fn set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.calls.push(format!("up {index}"));
        for l in self.links.iter_mut().filter(|l| l.index == index) {
            l.flags |= IFF_UP | IFF_LOWER_UP;
        }
        Ok(())
    }
    fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), NetlinkError> {
        self.calls.push(format!("addr {index} {addr}/{prefix}"));
        Ok(())
    }
    fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<(), NetlinkError> {
        self.calls.push(format!("route {index} via {gateway}"));
        Ok(())
    }
    fn set_down(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.calls.push(format!("down {index}"));
        Ok(())
    }
    fn rename(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        self.calls.push(format!("rename {index} {name}"));
        Ok(())
    }
    fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        self.calls.push(format!("mtu {index} {mtu}"));
        Ok(())
    }
    fn add_vlan(&mut self, parent: u32, name: &str, id: u16) -> Result<(), NetlinkError> {
        self.calls.push(format!("vlan {parent} {name} {id}"));
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

fn lo() -> Link {
    Link {
        index: 1,
        name: "lo".into(),
        mac: Some([0; 6]),
        kind: 772,
        flags: IFF_LOOPBACK,
    }
}

/// A DHCP server that answers only on `serving` (by interface name).
struct Server {
    name: String,
    serving: bool,
    queue: Vec<Vec<u8>>,
    log: Rc<RefCell<Vec<String>>>,
}

impl DhcpTransport for Server {
    fn send(&mut self, packet: &[u8]) -> std::io::Result<()> {
        let m = Message::from_bytes(packet).unwrap();
        let kind = m.opts().msg_type().unwrap();
        self.log.borrow_mut().push(format!("{} {kind:?}", self.name));
        if self.serving {
            let mac: [u8; 6] = m.chaddr()[..6].try_into().unwrap();
            let answer = if kind == MessageType::Discover {
                MessageType::Offer
            } else {
                MessageType::Ack
            };
            self.queue
                .push(dhcp::fixture_reply(answer, m.xid(), mac, Ipv4Addr::new(10, 0, 2, 15)));
        }
        Ok(())
    }
    fn recv(&mut self, _: Duration) -> std::io::Result<Option<Vec<u8>>> {
        Ok((!self.queue.is_empty()).then(|| self.queue.remove(0)))
    }
}

fn run(netlink: &mut FakeNetlink, serving: &'static str) -> (Result<NetReport, NetError>, Vec<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    let log = Rc::new(RefCell::new(Vec::new()));
    let log2 = log.clone();
    let mut open = move |name: &str| -> std::io::Result<Box<dyn DhcpTransport>> {
        Ok(Box::new(Server {
            name: name.into(),
            serving: name == serving,
            queue: vec![],
            log: log2.clone(),
        }))
    };
    let clock = FakeClock::new(Duration::from_secs(4), Duration::from_millis(20));
    let mut pauses = 0;
    let mut pause = |_| pauses += 1;
    let result = configure(netlink, &mut open, &clock, &mut pause, &resolv, None);
    let resolv = std::fs::read_to_string(&resolv).unwrap_or_default();
    let log = log.borrow().clone();
    (result, log, resolv)
}

#[test]
fn second_nic_gets_the_lease() {
    let mut nl = FakeNetlink {
        links: vec![lo(), link(2, "eth0", 1), link(3, "eth1", 2)],
        ..Default::default()
    };
    let (result, log, resolv) = run(&mut nl, "eth1");
    let report = result.unwrap();
    assert_eq!(report.link.name, "eth1");
    assert_eq!(nl.calls[..3], ["up 1", "up 2", "up 3"]);
    assert_eq!(nl.calls[3..], ["addr 3 10.0.2.15/24", "route 3 via 10.0.2.2"]);
    assert_eq!(log.iter().filter(|l| l.starts_with("eth0")).count(), 4, "{log:?}");
    assert_eq!(log.iter().filter(|l| l.starts_with("eth1")).count(), 2, "{log:?}");
    assert!(resolv.contains("nameserver 10.0.2.3\n"), "{resolv}");
    let line = report.line();
    assert!(
        line.starts_with("network: eth1 (52:54:00:12:34:02) got 10.0.2.15/24 router 10.0.2.2 dns 10.0.2.3 by DHCP in "),
        "{line}"
    );
}

#[test]
fn late_nic_is_waited_for() {
    let mut nl = FakeNetlink {
        links: vec![lo()],
        late: Some((3, link(2, "eth0", 1))),
        ..Default::default()
    };
    let (result, _, _) = run(&mut nl, "eth0");
    assert_eq!(result.unwrap().link.name, "eth0");
}

#[test]
fn no_nic_and_no_lease_are_errors() {
    let mut nl = FakeNetlink {
        links: vec![lo()],
        ..Default::default()
    };
    let (result, _, _) = run(&mut nl, "eth0");
    assert!(matches!(result, Err(NetError::NoNic)));
    assert_eq!(nl.calls, ["up 1"]);

    let mut nl = FakeNetlink {
        links: vec![link(2, "eth0", 1)],
        ..Default::default()
    };
    let (result, _, _) = run(&mut nl, "none");
    let err = result.unwrap_err().to_string();
    assert!(
        err.starts_with("network: no DHCP lease on any interface: eth0: no DHCP lease"),
        "{err}"
    );
}

#[test]
fn resolv_conf_with_domain() {
    let lease = Lease {
        address: Ipv4Addr::new(10, 0, 0, 5),
        prefix: 8,
        router: None,
        dns: vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(9, 9, 9, 9)],
        domain: Some("lan".into()),
        server: None,
        lease_secs: None,
        renew_secs: None,
    };
    assert_eq!(
        resolv_conf_text("eth0", &lease),
        "# written by the Ramkey init from the DHCP lease on eth0\nsearch lan\nnameserver 1.1.1.1\nnameserver 9.9.9.9\n"
    );
}
