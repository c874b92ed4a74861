//! A DHCPv4 client for the boot: DISCOVER, OFFER, REQUEST, ACK, with the broadcast flag.
//!
//! Packets are built and parsed with `dhcproto`; the exchange runs over a
//! [`DhcpTransport`] (a UDP socket bound to the interface on the box, a script in tests).

use std::net::Ipv4Addr;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Encodable};

use crate::base::clock::Clock;

/// How long each attempt waits for an answer; the sum bounds the whole exchange.
pub const ATTEMPT_WAITS: &[Duration] = &[
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(3),
    Duration::from_secs(4),
];

/// The DHCP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    /// Sending or receiving failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A packet could not be built.
    #[error("cannot build a DHCP packet: {0}")]
    Encode(String),
    /// No lease within the time allowed.
    #[error("no DHCP lease after {attempts} attempts in {} ms ({last})", elapsed.as_millis())]
    NoLease {
        /// Attempts made.
        attempts: usize,
        /// Time spent.
        elapsed: Duration,
        /// What happened last: no offer, no ack, a NAK.
        last: &'static str,
    },
}

/// Sends and receives DHCP packets for one interface.
pub trait DhcpTransport {
    /// Broadcasts one packet to the servers (port 67).
    fn send(&mut self, packet: &[u8]) -> std::io::Result<()>;
    /// Waits up to `timeout` for one packet; `Ok(None)` on timeout.
    fn recv(&mut self, timeout: Duration) -> std::io::Result<Option<Vec<u8>>>;
}

/// What a server gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Our address.
    pub address: Ipv4Addr,
    /// Prefix length from the subnet mask (24 when the server sent none).
    pub prefix: u8,
    /// The first router.
    pub router: Option<Ipv4Addr>,
    /// DNS servers.
    pub dns: Vec<Ipv4Addr>,
    /// The domain name (option 15).
    pub domain: Option<String>,
    /// The server that answered.
    pub server: Option<Ipv4Addr>,
    /// Lease time in seconds.
    pub lease_secs: Option<u32>,
    /// Renewal time (T1, option 58) in seconds; half the lease time when absent.
    pub renew_secs: Option<u32>,
}

/// The shortest renewal time kept: a server that offers a 1-second lease (or a T1 of 0)
/// must not make PID 1's loop renew without pause.
pub const MIN_T1_SECS: u32 = 10;

impl Lease {
    /// Seconds after the ACK when the lease should be renewed (T1, at least
    /// [`MIN_T1_SECS`]); `None` for an infinite lease (or one without a lease time).
    pub fn t1(&self) -> Option<u32> {
        let t1 = match (self.renew_secs, self.lease_secs) {
            (_, Some(u32::MAX)) | (_, None) => return None,
            (Some(t1), Some(lease)) if t1 < lease => t1,
            (_, Some(lease)) => lease / 2,
        };
        Some(t1.max(MIN_T1_SECS))
    }
}

/// A domain name a server may put in `resolv.conf`'s `search` line: letters, digits, `-`
/// and `.`, at most 253 bytes. Anything else (a newline followed by `nameserver ...`) is
/// dropped, not written.
pub fn is_domain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A parsed server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// OFFER, ACK or NAK.
    pub kind: MessageType,
    /// The lease it describes.
    pub lease: Lease,
}

/// Prefix length of a contiguous subnet mask; `None` for a mask with holes.
pub fn prefix_of(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then(|| u8::try_from(ones).unwrap_or(32))
}

fn request_base(xid: u32, mac: [u8; 6], kind: MessageType, hostname: Option<&str>) -> Message {
    let unspecified = Ipv4Addr::UNSPECIFIED;
    let mut msg = Message::new_with_id(xid, unspecified, unspecified, unspecified, unspecified, &mac);
    msg.set_flags(Flags::default().set_broadcast());
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    let mut client_id = vec![1u8];
    client_id.extend_from_slice(&mac);
    opts.insert(DhcpOption::ClientIdentifier(client_id));
    opts.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::DomainName,
        OptionCode::AddressLeaseTime,
        OptionCode::Renewal,
    ]));
    opts.insert(DhcpOption::MaxMessageSize(1500));
    if let Some(name) = hostname.filter(|h| !h.is_empty()) {
        opts.insert(DhcpOption::Hostname(name.to_owned()));
    }
    msg
}

fn encode(msg: &Message) -> Result<Vec<u8>, DhcpError> {
    msg.to_vec().map_err(|e| DhcpError::Encode(e.to_string()))
}

/// A DHCPDISCOVER.
pub fn discover(xid: u32, mac: [u8; 6], hostname: Option<&str>) -> Result<Vec<u8>, DhcpError> {
    encode(&request_base(xid, mac, MessageType::Discover, hostname))
}

/// A DHCPREQUEST for the offered address (selecting state).
pub fn request(xid: u32, mac: [u8; 6], offer: &Lease, hostname: Option<&str>) -> Result<Vec<u8>, DhcpError> {
    let mut msg = request_base(xid, mac, MessageType::Request, hostname);
    msg.opts_mut().insert(DhcpOption::RequestedIpAddress(offer.address));
    if let Some(server) = offer.server {
        msg.opts_mut().insert(DhcpOption::ServerIdentifier(server));
    }
    encode(&msg)
}

/// Parses a server's reply to our `xid` and `mac`; `None` for anything else.
pub fn parse_reply(bytes: &[u8], xid: u32, mac: [u8; 6]) -> Option<Reply> {
    let msg = Message::from_bytes(bytes).ok()?;
    if msg.opcode() != Opcode::BootReply || msg.xid() != xid || msg.chaddr().get(..6)? != mac {
        return None;
    }
    let opts = msg.opts();
    let kind = opts.msg_type()?;
    let prefix = match opts.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(mask)) => prefix_of(*mask).unwrap_or(24),
        _ => 24,
    };
    let router = match opts.get(OptionCode::Router) {
        Some(DhcpOption::Router(routers)) => routers.first().copied(),
        _ => None,
    };
    let dns = match opts.get(OptionCode::DomainNameServer) {
        Some(DhcpOption::DomainNameServer(servers)) => servers.clone(),
        _ => Vec::new(),
    };
    let domain = match opts.get(OptionCode::DomainName) {
        Some(DhcpOption::DomainName(d)) => Some(d.clone()).filter(|d| is_domain_name(d)),
        _ => None,
    };
    let server = match opts.get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(s)) => Some(*s),
        _ => None,
    };
    let lease_secs = match opts.get(OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(t)) => Some(*t),
        _ => None,
    };
    let renew_secs = match opts.get(OptionCode::Renewal) {
        Some(DhcpOption::Renewal(t)) => Some(*t),
        _ => None,
    };
    Some(Reply {
        kind,
        lease: Lease {
            address: msg.yiaddr(),
            prefix,
            router,
            dns,
            domain,
            server,
            lease_secs,
            renew_secs,
        },
    })
}

/// A DHCPREQUEST renewing `lease` (`ciaddr` set, no requested address or server id:
/// broadcast, so that any server that knows the lease may answer, as in REBINDING).
pub fn renewal(xid: u32, mac: [u8; 6], lease: &Lease, hostname: Option<&str>) -> Result<Vec<u8>, DhcpError> {
    let mut msg = request_base(xid, mac, MessageType::Request, hostname);
    msg.set_ciaddr(lease.address);
    encode(&msg)
}

/// Renews `lease`: REQUEST, then ACK (the new lease) or NAK (an error), two attempts.
pub fn renew_exchange(
    transport: &mut dyn DhcpTransport,
    mac: [u8; 6],
    lease: &Lease,
    hostname: Option<&str>,
    clock: &dyn Clock,
    xid: u32,
) -> Result<Lease, DhcpError> {
    let start = clock.since_boot();
    let mut last = "no ACK";
    for (attempt, wait) in ATTEMPT_WAITS.iter().take(2).enumerate() {
        let xid = xid.wrapping_add(u32::try_from(attempt).unwrap_or(0));
        transport
            .send(&renewal(xid, mac, lease, hostname)?)
            .map_err(io("sending DHCPREQUEST"))?;
        let deadline = clock.since_boot() + *wait;
        let kinds = [MessageType::Ack, MessageType::Nak];
        match await_reply(transport, clock, deadline, xid, mac, &kinds)? {
            Some(reply) if reply.kind == MessageType::Ack => {
                let mut new = reply.lease;
                if new.address.is_unspecified() {
                    new.address = lease.address;
                }
                return Ok(new);
            }
            Some(_) => {
                last = "NAK";
                break;
            }
            None => {}
        }
    }
    Err(DhcpError::NoLease {
        attempts: 2,
        elapsed: clock.since_boot().saturating_sub(start),
        last,
    })
}

fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> DhcpError {
    move |source| DhcpError::Io { op, source }
}

/// Waits until `deadline` for a reply of one of `kinds`; other packets are ignored.
fn await_reply(
    transport: &mut dyn DhcpTransport,
    clock: &dyn Clock,
    deadline: Duration,
    xid: u32,
    mac: [u8; 6],
    kinds: &[MessageType],
) -> Result<Option<Reply>, DhcpError> {
    loop {
        let now = clock.since_boot();
        if now >= deadline {
            return Ok(None);
        }
        let Some(packet) = transport.recv(deadline - now).map_err(io("receiving DHCP replies"))? else {
            return Ok(None);
        };
        if let Some(reply) = parse_reply(&packet, xid, mac).filter(|r| kinds.contains(&r.kind)) {
            return Ok(Some(reply));
        }
    }
}

/// Runs DISCOVER/OFFER/REQUEST/ACK, retrying with [`ATTEMPT_WAITS`]; the lease on ACK.
pub fn obtain(
    transport: &mut dyn DhcpTransport,
    mac: [u8; 6],
    hostname: Option<&str>,
    clock: &dyn Clock,
    first_xid: u32,
) -> Result<Lease, DhcpError> {
    let start = clock.since_boot();
    let mut last = "no offer";
    for (attempt, wait) in ATTEMPT_WAITS.iter().enumerate() {
        let xid = first_xid.wrapping_add(u32::try_from(attempt).unwrap_or(0));
        transport
            .send(&discover(xid, mac, hostname)?)
            .map_err(io("sending DHCPDISCOVER"))?;
        let deadline = clock.since_boot() + *wait;
        let Some(offer) = await_reply(transport, clock, deadline, xid, mac, &[MessageType::Offer])? else {
            continue;
        };
        transport
            .send(&request(xid, mac, &offer.lease, hostname)?)
            .map_err(io("sending DHCPREQUEST"))?;
        let deadline = clock.since_boot() + *wait;
        match await_reply(
            transport,
            clock,
            deadline,
            xid,
            mac,
            &[MessageType::Ack, MessageType::Nak],
        )? {
            Some(reply) if reply.kind == MessageType::Ack => {
                let mut lease = reply.lease;
                if lease.address.is_unspecified() {
                    lease.address = offer.lease.address;
                }
                return Ok(lease);
            }
            Some(_) => last = "NAK",
            None => last = "no ACK",
        }
    }
    Err(DhcpError::NoLease {
        attempts: ATTEMPT_WAITS.len(),
        elapsed: clock.since_boot().saturating_sub(start),
        last,
    })
}

/// A server reply for tests: `kind` to `xid`/`mac` offering `address` with the usual options.
#[cfg(test)]
pub fn fixture_reply(kind: MessageType, xid: u32, mac: [u8; 6], address: Ipv4Addr) -> Vec<u8> {
    let unspecified = Ipv4Addr::UNSPECIFIED;
    let mut msg = Message::new_with_id(xid, unspecified, address, unspecified, unspecified, &mac);
    msg.set_opcode(Opcode::BootReply);
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
    opts.insert(DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 2, 2)]));
    opts.insert(DhcpOption::DomainNameServer(vec![Ipv4Addr::new(10, 0, 2, 3)]));
    opts.insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 2)));
    opts.insert(DhcpOption::AddressLeaseTime(86400));
    opts.insert(DhcpOption::Renewal(600));
    msg.to_vec().unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod fake {
    //! The one [`DhcpTransport`] fake: a scripted server.

    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::net::Ipv4Addr;
    use std::rc::Rc;
    use std::sync::mpsc::Receiver;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use dhcproto::Decodable;
    use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};

    use super::{DhcpTransport, fixture_reply};

    /// The address the usual server hands out.
    pub(crate) const OFFERED: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

    /// The packets sent, one line each: `IFNAME KIND HOSTNAME` (`-` for no host name),
    /// shared between the test and the transports it opened.
    pub(crate) type Log = Rc<RefCell<Vec<String>>>;

    /// How the server answers a packet: the replies it queues.
    type Answer = Box<dyn FnMut(&Message) -> Vec<Vec<u8>>>;

    /// A DHCP server: each packet sent is answered by `answer` (queued, received in order),
    /// recorded in `sent` and logged; with a gate, each receive waits for the test to send
    /// `true` (up to its timeout; a dropped sender is silence at once), then gets the answer
    /// to the latest packet.
    pub(crate) struct FakeDhcpServer {
        /// The interface, for the log.
        pub(crate) ifname: String,
        answer: Answer,
        queue: VecDeque<Vec<u8>>,
        /// The packets sent.
        pub(crate) sent: Vec<Message>,
        /// The shared log.
        pub(crate) log: Log,
        /// The gate, if any.
        pub(crate) gate: Option<Arc<Mutex<Receiver<bool>>>>,
    }

    impl FakeDhcpServer {
        /// A server answering with `answer`.
        pub(crate) fn answering(answer: impl FnMut(&Message) -> Vec<Vec<u8>> + 'static) -> Self {
            FakeDhcpServer {
                ifname: String::new(),
                answer: Box::new(answer),
                queue: VecDeque::new(),
                sent: Vec::new(),
                log: Log::default(),
                gate: None,
            }
        }

        /// The usual server: an OFFER of [`OFFERED`] to a DISCOVER, an ACK to anything else.
        pub(crate) fn usual() -> Self {
            Self::answering(|m| {
                let mac: [u8; 6] = m.chaddr()[..6].try_into().unwrap_or_default();
                let kind = if m.opts().msg_type() == Some(MessageType::Discover) {
                    MessageType::Offer
                } else {
                    MessageType::Ack
                };
                vec![fixture_reply(kind, m.xid(), mac, OFFERED)]
            })
        }

        /// A server that never answers.
        pub(crate) fn silent() -> Self {
            Self::answering(|_| vec![])
        }
    }

    /// Opens a server on each interface, [`FakeDhcpServer::usual`] where `serving` says so
    /// and silent elsewhere, all logging to `log` (after `open IFNAME`).
    pub(crate) fn open_servers(
        serving: impl Fn(&str) -> bool,
        log: &Log,
    ) -> impl FnMut(&str) -> std::io::Result<Box<dyn DhcpTransport>> {
        let log = Rc::clone(log);
        move |name| {
            log.borrow_mut().push(format!("open {name}"));
            let mut server = if serving(name) {
                FakeDhcpServer::usual()
            } else {
                FakeDhcpServer::silent()
            };
            server.ifname = name.to_owned();
            server.log = Rc::clone(&log);
            Ok(Box::new(server))
        }
    }

    impl DhcpTransport for FakeDhcpServer {
        fn send(&mut self, packet: &[u8]) -> std::io::Result<()> {
            let m = Message::from_bytes(packet).map_err(std::io::Error::other)?;
            let host = match m.opts().get(OptionCode::Hostname) {
                Some(DhcpOption::Hostname(h)) => h.as_str(),
                _ => "-",
            };
            let kind = m.opts().msg_type().map_or_else(|| "?".to_owned(), |k| format!("{k:?}"));
            let line = format!("{} {kind} {host}", self.ifname);
            self.log.borrow_mut().push(line.trim_start().to_owned());
            self.queue.extend((self.answer)(&m));
            self.sent.push(m);
            Ok(())
        }

        fn recv(&mut self, timeout: Duration) -> std::io::Result<Option<Vec<u8>>> {
            let Some(gate) = &self.gate else {
                return Ok(self.queue.pop_front());
            };
            if gate.lock().map_or(true, |g| g.recv_timeout(timeout) != Ok(true)) {
                return Ok(None);
            }
            let latest = self.queue.pop_back();
            self.queue.clear();
            Ok(latest)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeDhcpServer;
    use super::*;
    use crate::base::clock::FakeClock;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

    fn clock() -> FakeClock {
        FakeClock::new(Duration::from_secs(5), Duration::from_millis(100))
    }

    #[test]
    fn discover_has_broadcast_flag_and_options() {
        let msg = Message::from_bytes(&discover(42, MAC, Some("box1")).unwrap()).unwrap();
        assert_eq!(msg.xid(), 42);
        assert!(msg.flags().broadcast());
        assert_eq!(&msg.chaddr()[..6], &MAC);
        assert_eq!(msg.opts().msg_type(), Some(MessageType::Discover));
        assert_eq!(
            msg.opts().get(OptionCode::Hostname),
            Some(&DhcpOption::Hostname("box1".into()))
        );
        assert!(msg.opts().get(OptionCode::ParameterRequestList).is_some());
        let anonymous = Message::from_bytes(&discover(1, MAC, None).unwrap()).unwrap();
        assert!(anonymous.opts().get(OptionCode::Hostname).is_none());
    }

    #[test]
    fn request_names_offer_and_server() {
        let offer = parse_reply(&fixture_reply(MessageType::Offer, 7, MAC, ADDR), 7, MAC).unwrap();
        let msg = Message::from_bytes(&request(7, MAC, &offer.lease, None).unwrap()).unwrap();
        assert_eq!(msg.opts().msg_type(), Some(MessageType::Request));
        assert_eq!(
            msg.opts().get(OptionCode::RequestedIpAddress),
            Some(&DhcpOption::RequestedIpAddress(ADDR))
        );
        assert_eq!(
            msg.opts().get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 2)))
        );
    }

    #[test]
    fn reply_parsing_checks_xid_and_mac() {
        let bytes = fixture_reply(MessageType::Ack, 9, MAC, ADDR);
        let reply = parse_reply(&bytes, 9, MAC).unwrap();
        assert_eq!(reply.kind, MessageType::Ack);
        assert_eq!(reply.lease.address, ADDR);
        assert_eq!(reply.lease.prefix, 24);
        assert_eq!(reply.lease.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(reply.lease.dns, vec![Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!(reply.lease.lease_secs, Some(86400));
        assert_eq!(reply.lease.t1(), Some(600));
        let mut half = reply.lease.clone();
        half.renew_secs = None;
        assert_eq!(half.t1(), Some(43200));
        half.lease_secs = Some(u32::MAX);
        assert_eq!(half.t1(), None);
        assert_eq!(parse_reply(&bytes, 10, MAC), None);
        assert_eq!(parse_reply(&bytes, 9, [0; 6]), None);
        assert_eq!(parse_reply(&discover(9, MAC, None).unwrap(), 9, MAC), None, "a request");
        assert_eq!(parse_reply(&[1, 2, 3], 9, MAC), None);
    }

    #[test]
    fn a_tiny_lease_or_a_zero_t1_renews_no_sooner_than_the_floor() {
        let reply = parse_reply(&fixture_reply(MessageType::Ack, 9, MAC, ADDR), 9, MAC).unwrap();
        let mut lease = reply.lease;
        (lease.lease_secs, lease.renew_secs) = (Some(1), None);
        assert_eq!(lease.t1(), Some(MIN_T1_SECS));
        (lease.lease_secs, lease.renew_secs) = (Some(3600), Some(0));
        assert_eq!(lease.t1(), Some(MIN_T1_SECS));
    }

    #[test]
    fn a_domain_that_would_add_lines_to_resolv_conf_is_dropped() {
        let mut bytes = Message::from_bytes(&fixture_reply(MessageType::Ack, 9, MAC, ADDR)).unwrap();
        bytes
            .opts_mut()
            .insert(DhcpOption::DomainName("lan\nnameserver 203.0.113.9".into()));
        let reply = parse_reply(&bytes.to_vec().unwrap(), 9, MAC).unwrap();
        assert_eq!(reply.lease.domain, None);
        bytes.opts_mut().insert(DhcpOption::DomainName("office.lan".into()));
        let reply = parse_reply(&bytes.to_vec().unwrap(), 9, MAC).unwrap();
        assert_eq!(reply.lease.domain.as_deref(), Some("office.lan"));
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix_of(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(prefix_of(Ipv4Addr::new(255, 255, 240, 0)), Some(20));
        assert_eq!(prefix_of(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(prefix_of(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(prefix_of(Ipv4Addr::new(255, 0, 255, 0)), None);
    }

    #[test]
    fn full_exchange() {
        let mut t = FakeDhcpServer::answering(|m: &Message| match m.opts().msg_type() {
            Some(MessageType::Discover) => vec![
                fixture_reply(MessageType::Offer, m.xid() + 1, MAC, ADDR), // stale xid
                fixture_reply(MessageType::Offer, m.xid(), MAC, ADDR),
            ],
            _ => vec![fixture_reply(MessageType::Ack, m.xid(), MAC, ADDR)],
        });
        let lease = obtain(&mut t, MAC, Some("box1"), &clock(), 100).unwrap();
        assert_eq!(lease.address, ADDR);
        assert_eq!(t.sent.len(), 2);
    }

    #[test]
    fn retries_after_silence_and_nak() {
        let mut discovers = 0;
        let mut t = FakeDhcpServer::answering(move |m: &Message| match m.opts().msg_type() {
            Some(MessageType::Discover) => {
                discovers += 1;
                if discovers == 1 {
                    vec![]
                } else {
                    vec![fixture_reply(MessageType::Offer, m.xid(), MAC, ADDR)]
                }
            }
            _ if discovers == 2 => vec![fixture_reply(MessageType::Nak, m.xid(), MAC, ADDR)],
            _ => vec![fixture_reply(MessageType::Ack, m.xid(), MAC, ADDR)],
        });
        let lease = obtain(&mut t, MAC, None, &clock(), 1).unwrap();
        assert_eq!(lease.address, ADDR);
        let kinds: Vec<_> = t.sent.iter().map(|m| m.opts().msg_type().unwrap()).collect();
        use MessageType::{Discover, Request};
        assert_eq!(kinds, [Discover, Discover, Request, Discover, Request]);
    }

    #[test]
    fn renewal_sends_ciaddr_and_takes_the_ack() {
        let mut t = FakeDhcpServer::answering(|m: &Message| vec![fixture_reply(MessageType::Ack, m.xid(), MAC, ADDR)]);
        let old = parse_reply(&fixture_reply(MessageType::Ack, 1, MAC, ADDR), 1, MAC)
            .unwrap()
            .lease;
        let new = renew_exchange(&mut t, MAC, &old, Some("box1"), &clock(), 5).unwrap();
        assert_eq!(new, old);
        assert_eq!(t.sent[0].ciaddr(), ADDR);
        assert!(t.sent[0].opts().get(OptionCode::RequestedIpAddress).is_none());
        let mut t = FakeDhcpServer::answering(|m: &Message| vec![fixture_reply(MessageType::Nak, m.xid(), MAC, ADDR)]);
        let err = renew_exchange(&mut t, MAC, &old, None, &clock(), 5).unwrap_err();
        assert!(err.to_string().contains("(NAK)"), "{err}");
        assert_eq!(t.sent.len(), 1);
    }

    #[test]
    fn silence_gives_no_lease() {
        let mut t = FakeDhcpServer::answering(|_: &Message| vec![]);
        let err = obtain(&mut t, MAC, None, &clock(), 1).unwrap_err();
        assert!(err.to_string().starts_with("no DHCP lease after 4 attempts"), "{err}");
        assert_eq!(t.sent.len(), 4);
    }
}
