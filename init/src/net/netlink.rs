//! The few rtnetlink messages PID 1 needs, hand-rolled over a `NETLINK_ROUTE` socket:
//! list links, set a link up or down, rename it, set its MTU, create a VLAN on it, add an
//! IPv4 address, add a default route.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;

use super::links::new_vlan;
use crate::sys::{self, SysError};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub(super) const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 0x1;
pub(super) const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
pub(super) const NLM_F_EXCL: u16 = 0x200;
pub(super) const NLM_F_CREATE: u16 = 0x400;
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const IFLA_ADDRESS: u16 = 1;
pub(super) const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
pub(super) const IFLA_LINK: u16 = 5;
pub(super) const IFLA_LINKINFO: u16 = 18;
pub(super) const IFLA_INFO_KIND: u16 = 1;
pub(super) const IFLA_INFO_DATA: u16 = 2;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_DHCP: u8 = 16;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;
const HEADER: usize = 16;

/// `IFF_UP`.
pub const IFF_UP: u32 = 0x1;
/// `IFF_LOOPBACK`.
pub const IFF_LOOPBACK: u32 = 0x8;
/// `IFF_LOWER_UP`: the link has carrier.
pub const IFF_LOWER_UP: u32 = 0x1_0000;
/// `ARPHRD_ETHER`: an Ethernet link.
pub const ARPHRD_ETHER: u16 = 1;

/// A netlink request failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be opened.
    #[error("netlink: {0}")]
    Socket(#[from] SysError),
    /// Sending or receiving failed (`EAGAIN`: no answer within the timeout).
    #[error("netlink {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The errno.
        source: Errno,
    },
    /// The kernel refused the request.
    #[error("netlink {op}: the kernel answered {source}")]
    Refused {
        /// The request.
        op: &'static str,
        /// The errno from the kernel's `NLMSG_ERROR`.
        source: Errno,
    },
}

/// A network interface, as `RTM_GETLINK` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The interface index.
    pub index: u32,
    /// The name, e.g. `eth0`.
    pub name: String,
    /// The hardware address, for Ethernet links.
    pub mac: Option<[u8; 6]>,
    /// `ARPHRD_*` type.
    pub kind: u16,
    /// `IFF_*` flags.
    pub flags: u32,
}

impl Link {
    /// True for an Ethernet interface (not loopback).
    pub fn is_ethernet(&self) -> bool {
        self.kind == ARPHRD_ETHER && self.flags & IFF_LOOPBACK == 0 && self.mac.is_some()
    }

    /// True when the link reports carrier.
    pub fn has_carrier(&self) -> bool {
        self.flags & IFF_LOWER_UP != 0
    }
}

/// The link and address operations the network step uses; a recording fake in tests.
pub trait Netlink {
    /// Every interface.
    fn links(&mut self) -> Result<Vec<Link>, NetlinkError>;
    /// Sets `IFF_UP` on the interface.
    fn set_up(&mut self, index: u32) -> Result<(), NetlinkError>;
    /// Adds (or replaces) `addr/prefix` on the interface, with its broadcast address.
    fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), NetlinkError>;
    /// Adds (or replaces) the default route via `gateway` on the interface.
    fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<(), NetlinkError>;
    /// Clears `IFF_UP` (a link is renamed only while down).
    fn set_down(&mut self, index: u32) -> Result<(), NetlinkError>;
    /// Renames the interface (`IFLA_IFNAME`); the link must be down.
    fn rename(&mut self, index: u32, name: &str) -> Result<(), NetlinkError>;
    /// Sets the MTU (`IFLA_MTU`).
    fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetlinkError>;
    /// Creates an 802.1Q link `name` with `id` on `parent` (an existing one is fine).
    fn add_vlan(&mut self, parent: u32, name: &str, id: u16) -> Result<(), NetlinkError>;
}

pub(super) fn push_attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// A netlink message: header, then `body` (the fixed struct and its attributes).
pub fn message(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER + body.len());
    let len = u32::try_from(HEADER + body.len()).unwrap_or(u32::MAX);
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

pub(super) fn ifinfomsg(index: u32, flags: u32, change: u32) -> Vec<u8> {
    let mut b = vec![AF_UNSPEC, 0, 0, 0];
    b.extend_from_slice(&index.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&change.to_ne_bytes());
    b
}

/// `RTM_GETLINK` dump request.
pub fn get_links(seq: u32) -> Vec<u8> {
    message(RTM_GETLINK, NLM_F_DUMP, seq, &ifinfomsg(0, 0, 0))
}

/// `RTM_NEWLINK` setting `IFF_UP` on `index`.
pub fn set_up(seq: u32, index: u32) -> Vec<u8> {
    message(RTM_NEWLINK, NLM_F_ACK, seq, &ifinfomsg(index, IFF_UP, IFF_UP))
}

/// `RTM_DELLINK` deleting `index`.
pub fn delete_link(seq: u32, index: u32) -> Vec<u8> {
    message(RTM_DELLINK, NLM_F_ACK, seq, &ifinfomsg(index, 0, 0))
}

/// `RTM_NEWLINK` clearing `IFF_UP` on `index`.
pub fn set_down(seq: u32, index: u32) -> Vec<u8> {
    message(RTM_NEWLINK, NLM_F_ACK, seq, &ifinfomsg(index, 0, IFF_UP))
}

/// `RTM_NEWLINK` renaming `index` to `name`.
pub fn set_name(seq: u32, index: u32, name: &str) -> Vec<u8> {
    let mut b = ifinfomsg(index, 0, 0);
    let mut text = name.as_bytes().to_vec();
    text.push(0);
    push_attr(&mut b, IFLA_IFNAME, &text);
    message(RTM_NEWLINK, NLM_F_ACK, seq, &b)
}

/// `RTM_NEWLINK` setting the MTU of `index`.
pub fn set_mtu(seq: u32, index: u32, mtu: u32) -> Vec<u8> {
    let mut b = ifinfomsg(index, 0, 0);
    push_attr(&mut b, IFLA_MTU, &mtu.to_ne_bytes());
    message(RTM_NEWLINK, NLM_F_ACK, seq, &b)
}

/// `RTM_NEWADDR` for `addr/prefix` with its broadcast address.
pub fn new_address(seq: u32, index: u32, addr: Ipv4Addr, prefix: u8) -> Vec<u8> {
    let mut b = vec![AF_INET, prefix, 0, RT_SCOPE_UNIVERSE];
    b.extend_from_slice(&index.to_ne_bytes());
    push_attr(&mut b, IFA_LOCAL, &addr.octets());
    push_attr(&mut b, IFA_ADDRESS, &addr.octets());
    let host_mask = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    let broadcast = Ipv4Addr::from(u32::from(addr) | host_mask);
    push_attr(&mut b, IFA_BROADCAST, &broadcast.octets());
    message(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, seq, &b)
}

/// `RTM_NEWROUTE` for `default via gateway dev index proto dhcp`.
pub fn new_default_route(seq: u32, index: u32, gateway: Ipv4Addr) -> Vec<u8> {
    let mut b = vec![
        AF_INET,
        0,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_DHCP,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
    ];
    b.extend_from_slice(&0u32.to_ne_bytes());
    push_attr(&mut b, RTA_GATEWAY, &gateway.octets());
    push_attr(&mut b, RTA_OIF, &index.to_ne_bytes());
    message(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, seq, &b)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// One message of a datagram: `(type, seq, body)`.
pub fn split(datagram: &[u8]) -> Vec<(u16, u32, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while let (Some(len), Some(kind), Some(seq)) =
        (u32_at(datagram, at), u16_at(datagram, at + 4), u32_at(datagram, at + 8))
    {
        let len = len as usize;
        let Some(body) = datagram.get(at + HEADER..at + len) else {
            break;
        };
        out.push((kind, seq, body));
        at += len.next_multiple_of(4).max(HEADER);
    }
    out
}

/// Parses an `RTM_NEWLINK` body into a [`Link`].
pub fn parse_link(body: &[u8]) -> Option<Link> {
    let kind = u16_at(body, 2)?;
    let index = u32_at(body, 4)?;
    let flags = u32_at(body, 8)?;
    let (mut name, mut mac) = (None, None);
    let mut at = 16;
    while let (Some(len), Some(attr)) = (u16_at(body, at), u16_at(body, at + 2)) {
        let len = usize::from(len);
        let payload = body.get(at + 4..at + len.max(4))?;
        match attr {
            IFLA_IFNAME => {
                let text = payload.split(|&b| b == 0).next().unwrap_or_default();
                name = Some(String::from_utf8_lossy(text).into_owned());
            }
            IFLA_ADDRESS => mac = <[u8; 6]>::try_from(payload).ok(),
            _ => {}
        }
        at += len.next_multiple_of(4).max(4);
    }
    Some(Link {
        index,
        name: name?,
        mac,
        kind,
        flags,
    })
}

/// The errno of an `NLMSG_ERROR` body (0 = success, an ACK).
pub fn parse_error(body: &[u8]) -> Option<i32> {
    Some(u32_at(body, 0)? as i32)
}

/// The real rtnetlink socket.
#[derive(Debug)]
pub struct RouteSocket {
    fd: OwnedFd,
    seq: u32,
}

impl RouteSocket {
    /// Opens the socket; each answer is awaited at most 2 s.
    pub fn open() -> Result<Self, NetlinkError> {
        Ok(RouteSocket {
            fd: sys::route_socket(Duration::from_secs(2))?,
            seq: 0,
        })
    }

    pub(super) fn request(
        &mut self,
        op: &'static str,
        build: impl FnOnce(u32) -> Vec<u8>,
    ) -> Result<Vec<Link>, NetlinkError> {
        self.seq += 1;
        let seq = self.seq;
        let io = |source| NetlinkError::Io { op, source };
        sys::send(self.fd.as_fd(), &build(seq)).map_err(io)?;
        let mut links = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = sys::recv_wait(self.fd.as_fd(), &mut buf).map_err(io)?;
            for (kind, got, body) in split(buf.get(..n).unwrap_or_default()) {
                if got != seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(links),
                    NLMSG_ERROR => match parse_error(body) {
                        Some(0) | None => return Ok(links),
                        Some(e) => {
                            return Err(NetlinkError::Refused {
                                op,
                                source: Errno::from_raw(-e),
                            });
                        }
                    },
                    RTM_NEWLINK => links.extend(parse_link(body)),
                    _ => {}
                }
            }
        }
    }
}

impl Netlink for RouteSocket {
    fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        self.request("RTM_GETLINK", get_links)
    }

    fn set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.request("RTM_NEWLINK", |seq| set_up(seq, index)).map(drop)
    }

    fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), NetlinkError> {
        match self.request("RTM_NEWADDR", |seq| new_address(seq, index, addr, prefix)) {
            Err(NetlinkError::Refused {
                source: Errno::EEXIST, ..
            }) => Ok(()),
            other => other.map(drop),
        }
    }

    fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<(), NetlinkError> {
        match self.request("RTM_NEWROUTE", |seq| new_default_route(seq, index, gateway)) {
            Err(NetlinkError::Refused {
                source: Errno::EEXIST, ..
            }) => Ok(()),
            other => other.map(drop),
        }
    }

    fn set_down(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.request("RTM_NEWLINK", |seq| set_down(seq, index)).map(drop)
    }

    fn rename(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        self.request("RTM_NEWLINK (rename)", |seq| set_name(seq, index, name))
            .map(drop)
    }

    fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        self.request("RTM_NEWLINK (mtu)", |seq| set_mtu(seq, index, mtu))
            .map(drop)
    }

    fn add_vlan(&mut self, parent: u32, name: &str, id: u16) -> Result<(), NetlinkError> {
        match self.request("RTM_NEWLINK (vlan)", |seq| new_vlan(seq, parent, name, id)) {
            Err(NetlinkError::Refused {
                source: Errno::EEXIST, ..
            }) => Ok(()),
            other => other.map(drop),
        }
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! The one [`Netlink`] fake.

    use std::net::Ipv4Addr;

    use super::{ARPHRD_ETHER, IFF_LOOPBACK, IFF_LOWER_UP, IFF_UP, Link, Netlink, NetlinkError};

    /// An Ethernet link `name` with MAC 52:54:00:12:34:`last`, down.
    pub(crate) fn ether(index: u32, name: &str, last: u8) -> Link {
        Link {
            index,
            name: name.into(),
            mac: Some([0x52, 0x54, 0, 0x12, 0x34, last]),
            kind: ARPHRD_ETHER,
            flags: 0,
        }
    }

    /// The loopback link, index 1.
    pub(crate) fn lo() -> Link {
        Link {
            index: 1,
            name: "lo".into(),
            mac: Some([0; 6]),
            kind: 772,
            flags: IFF_LOOPBACK,
        }
    }

    /// Links kept in memory, changed as the calls say (up sets carrier too; down leaves the
    /// flags; a rename renames,
    /// a VLAN is a new link with index 100 + id); each change recorded as a line naming the
    /// link as it was called then (by index when there is no such link), e.g. `up eth0`,
    /// `addr admin 10.0.2.15/24`. `late` adds a link once `links` has been listed that
    /// many times (a NIC that comes late).
    #[derive(Debug, Default)]
    pub(crate) struct RecordingNetlink {
        /// The links.
        pub(crate) links: Vec<Link>,
        /// The changes, in order.
        pub(crate) calls: Vec<String>,
        /// A link that appears after that many listings.
        pub(crate) late: Option<(usize, Link)>,
        listed: usize,
    }

    impl RecordingNetlink {
        /// A netlink with these links.
        pub(crate) fn with(links: Vec<Link>) -> Self {
            RecordingNetlink {
                links,
                ..RecordingNetlink::default()
            }
        }

        fn name(&self, index: u32) -> String {
            self.links
                .iter()
                .find(|l| l.index == index)
                .map_or_else(|| index.to_string(), |l| l.name.clone())
        }

        fn record(&mut self, what: &str, index: u32, rest: &str) {
            let line = format!("{what} {} {rest}", self.name(index));
            self.calls.push(line.trim_end().to_owned());
        }

        fn link(&mut self, index: u32) -> impl Iterator<Item = &mut Link> {
            self.links.iter_mut().filter(move |l| l.index == index)
        }
    }

    impl Netlink for RecordingNetlink {
        fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
            self.listed += 1;
            if let Some((_, link)) = self.late.take_if(|(after, _)| self.listed > *after) {
                self.links.push(link);
            }
            Ok(self.links.clone())
        }

        fn set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
            self.record("up", index, "");
            self.link(index).for_each(|l| l.flags |= IFF_UP | IFF_LOWER_UP);
            Ok(())
        }

        fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), NetlinkError> {
            self.record("addr", index, &format!("{addr}/{prefix}"));
            Ok(())
        }

        fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<(), NetlinkError> {
            self.record("route", index, &format!("via {gateway}"));
            Ok(())
        }

        fn set_down(&mut self, index: u32) -> Result<(), NetlinkError> {
            self.record("down", index, "");
            Ok(())
        }

        fn rename(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
            self.record("rename", index, name);
            self.link(index).for_each(|l| l.name = name.to_owned());
            Ok(())
        }

        fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
            self.record("mtu", index, &mtu.to_string());
            Ok(())
        }

        fn add_vlan(&mut self, parent: u32, name: &str, id: u16) -> Result<(), NetlinkError> {
            self.record("vlan", parent, &format!("{name} {id}"));
            self.links.push(Link {
                index: 100 + u32::from(id),
                name: name.to_owned(),
                mac: None,
                kind: ARPHRD_ETHER,
                flags: 0,
            });
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::links::IFLA_VLAN_ID;

    #[test]
    fn set_up_message_layout() {
        let m = set_up(7, 2);
        assert_eq!(m.len(), 32);
        assert_eq!(u32_at(&m, 0), Some(32));
        assert_eq!(u16_at(&m, 4), Some(RTM_NEWLINK));
        assert_eq!(u16_at(&m, 6), Some(NLM_F_REQUEST | NLM_F_ACK));
        assert_eq!(u32_at(&m, 8), Some(7));
        assert_eq!(u32_at(&m, 20), Some(2), "ifi_index");
        assert_eq!(u32_at(&m, 24), Some(IFF_UP), "ifi_flags");
        assert_eq!(u32_at(&m, 28), Some(IFF_UP), "ifi_change");
    }

    #[test]
    fn address_message_has_local_address_and_broadcast() {
        let m = new_address(1, 3, Ipv4Addr::new(10, 0, 2, 15), 24);
        assert_eq!(u16_at(&m, 4), Some(RTM_NEWADDR));
        assert_eq!(u32_at(&m, 0), Some(m.len() as u32));
        assert_eq!(&m[16..20], &[AF_INET, 24, 0, 0]);
        assert_eq!(u32_at(&m, 20), Some(3));
        // Three attributes of 8 bytes: IFA_LOCAL, IFA_ADDRESS, IFA_BROADCAST.
        assert_eq!(m.len(), 24 + 3 * 8);
        assert_eq!(u16_at(&m, 26), Some(IFA_LOCAL));
        assert_eq!(&m[28..32], &[10, 0, 2, 15]);
        assert_eq!(u16_at(&m, 42), Some(IFA_BROADCAST));
        assert_eq!(&m[44..48], &[10, 0, 2, 255]);
        let host = new_address(1, 3, Ipv4Addr::new(10, 0, 2, 15), 32);
        assert_eq!(&host[44..48], &[10, 0, 2, 15]);
        let all = new_address(1, 3, Ipv4Addr::new(10, 0, 2, 15), 0);
        assert_eq!(&all[44..48], &[255, 255, 255, 255]);
    }

    #[test]
    fn route_message() {
        let m = new_default_route(9, 4, Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(u16_at(&m, 4), Some(RTM_NEWROUTE));
        assert_eq!(
            &m[16..24],
            &[
                AF_INET,
                0,
                0,
                0,
                RT_TABLE_MAIN,
                RTPROT_DHCP,
                RT_SCOPE_UNIVERSE,
                RTN_UNICAST
            ]
        );
        assert_eq!(u16_at(&m, 30), Some(RTA_GATEWAY));
        assert_eq!(&m[32..36], &[10, 0, 2, 2]);
        assert_eq!(u16_at(&m, 38), Some(RTA_OIF));
        assert_eq!(u32_at(&m, 40), Some(4));
    }

    #[test]
    fn link_dump_parses() {
        let mut body = ifinfomsg(2, IFF_UP | IFF_LOWER_UP, 0);
        body[2..4].copy_from_slice(&ARPHRD_ETHER.to_ne_bytes());
        push_attr(&mut body, IFLA_IFNAME, b"eth0\0");
        push_attr(&mut body, 99, &[1, 2, 3]);
        push_attr(&mut body, IFLA_ADDRESS, &[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        let mut datagram = message(RTM_NEWLINK, 0, 5, &body);
        datagram.extend(message(NLMSG_DONE, 0, 5, &[0, 0, 0, 0]));
        let parts = split(&datagram);
        assert_eq!(parts.len(), 2);
        let link = parse_link(parts[0].2).unwrap();
        assert_eq!(link.name, "eth0");
        assert_eq!(link.index, 2);
        assert_eq!(link.mac, Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert!(link.is_ethernet() && link.has_carrier());
        assert_eq!(parts[1].0, NLMSG_DONE);
        assert_eq!(parse_error(&(-17i32).to_ne_bytes()), Some(-17));
    }

    #[test]
    fn rename_mtu_and_vlan_messages() {
        let m = set_name(1, 2, "admin");
        assert_eq!(u32_at(&m, 0), Some(m.len() as u32));
        assert_eq!(u16_at(&m, 34), Some(IFLA_IFNAME));
        assert_eq!(&m[36..42], b"admin\0");
        let m = set_mtu(1, 2, 9000);
        assert_eq!(u16_at(&m, 34), Some(IFLA_MTU));
        assert_eq!(u32_at(&m, 36), Some(9000));
        let m = set_down(1, 2);
        assert_eq!(u32_at(&m, 24), Some(0), "ifi_flags");
        assert_eq!(u32_at(&m, 28), Some(IFF_UP), "ifi_change");
        let m = new_vlan(1, 2, "external", 20);
        assert_eq!(
            u16_at(&m, 6),
            Some(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
        );
        // ifname (4 + 9 -> 16), link (8), linkinfo: 4 + kind (8) + data (4 + 8) = 24.
        assert_eq!(m.len(), 32 + 16 + 8 + 24);
        assert_eq!(u16_at(&m, 50), Some(IFLA_LINK));
        assert_eq!(u32_at(&m, 52), Some(2));
        assert_eq!(u16_at(&m, 58), Some(IFLA_LINKINFO));
        assert_eq!(u16_at(&m, 62), Some(IFLA_INFO_KIND));
        assert_eq!(&m[64..68], b"vlan");
        assert_eq!(u16_at(&m, 70), Some(IFLA_INFO_DATA));
        assert_eq!(u16_at(&m, 74), Some(IFLA_VLAN_ID));
        assert_eq!(u16_at(&m, 76), Some(20));
    }

    #[test]
    fn truncated_input_does_not_panic() {
        assert!(split(&[1, 2, 3]).is_empty());
        let m = set_up(1, 1);
        assert_eq!(split(&m[..20]).len(), 0);
        assert_eq!(parse_link(&[0; 8]), None);
        let mut body = ifinfomsg(1, 0, 0);
        push_attr(&mut body, IFLA_IFNAME, b"lo\0");
        body.truncate(body.len() - 2);
        assert_eq!(parse_link(&body), None);
    }
}
