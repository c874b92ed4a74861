//! Keeping DHCP leases: each [`HeldLease`] knows when it must be renewed (T1); the event
//! loop calls [`renew_due`] from a timer set to [`next_renewal`].

use std::net::Ipv4Addr;
use std::time::Duration;

use super::dhcp::{self, DhcpError, DhcpTransport, Lease};
use super::netlink::{Netlink, NetlinkError, RouteSocket};
use crate::clock::Clock;

/// The pause before trying again after a failed renewal (or half the time left, if less).
pub const RETRY: Duration = Duration::from_secs(60);

/// Renewing a lease failed.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// The DHCP exchange failed.
    #[error("DHCP renewal on {ifname}: {source}")]
    Dhcp {
        /// The interface.
        ifname: String,
        /// Why.
        source: DhcpError,
    },
    /// The renewed lease could not be put on the interface.
    #[error("DHCP renewal on {ifname}: {source}")]
    Netlink {
        /// The interface.
        ifname: String,
        /// Why.
        source: NetlinkError,
    },
}

/// A lease in use on an interface, with its schedule (times since boot, `CLOCK_BOOTTIME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    /// The config's tag for the NIC (`admin`), or the interface name without a config.
    pub tag: String,
    /// The interface name now (after any rename).
    pub ifname: String,
    /// The interface index.
    pub index: u32,
    /// The NIC's MAC.
    pub mac: [u8; 6],
    /// The host name sent with each request (option 12).
    pub hostname: Option<String>,
    /// What the server gave last.
    pub lease: Lease,
    /// When the last ACK came.
    pub obtained_at: Duration,
    /// When to renew (T1); `Duration::MAX` for an infinite lease.
    pub renew_at: Duration,
    /// When the lease runs out; `Duration::MAX` for an infinite lease.
    pub expires_at: Duration,
}

impl HeldLease {
    /// A lease obtained at `now`, scheduled from its T1 and lease time.
    pub fn new(
        tag: &str,
        ifname: &str,
        index: u32,
        mac: [u8; 6],
        hostname: Option<&str>,
        lease: Lease,
        now: Duration,
    ) -> Self {
        let mut held = HeldLease {
            tag: tag.to_owned(),
            ifname: ifname.to_owned(),
            index,
            mac,
            hostname: hostname.map(str::to_owned),
            lease,
            obtained_at: now,
            renew_at: Duration::MAX,
            expires_at: Duration::MAX,
        };
        held.schedule(now);
        held
    }

    fn schedule(&mut self, now: Duration) {
        self.obtained_at = now;
        self.renew_at = self
            .lease
            .t1()
            .map_or(Duration::MAX, |t1| now + Duration::from_secs(u64::from(t1)));
        self.expires_at = match self.lease.lease_secs {
            Some(u32::MAX) | None => Duration::MAX,
            Some(secs) => now + Duration::from_secs(u64::from(secs)),
        };
    }

    /// True when the renewal time has come.
    pub fn due(&self, now: Duration) -> bool {
        now >= self.renew_at
    }
}

/// The earliest renewal time among `leases` (for the event loop's timer).
pub fn next_renewal(leases: &[HeldLease]) -> Option<Duration> {
    leases.iter().map(|l| l.renew_at).filter(|t| *t != Duration::MAX).min()
}

/// Renews one lease over `transport`: on ACK the address (and a changed router) is put on
/// the interface again and the lease rescheduled; on failure the next attempt is set
/// [`RETRY`] later (or halfway to expiry, whichever is sooner).
pub fn renew(
    held: &mut HeldLease,
    transport: &mut dyn DhcpTransport,
    netlink: &mut dyn Netlink,
    clock: &dyn Clock,
) -> Result<(), RenewError> {
    let now = clock.since_boot();
    let xid = u32::from_be_bytes([held.mac[2], held.mac[3], held.mac[4], held.mac[5]]) ^ now.subsec_nanos();
    let result = dhcp::renew_exchange(transport, held.mac, &held.lease, held.hostname.as_deref(), clock, xid);
    let lease = match result {
        Ok(lease) => lease,
        Err(source) => {
            let left = held.expires_at.saturating_sub(now) / 2;
            held.renew_at = now + RETRY.min(left).max(Duration::from_secs(1));
            return Err(RenewError::Dhcp {
                ifname: held.ifname.clone(),
                source,
            });
        }
    };
    let nl = |source| RenewError::Netlink {
        ifname: held.ifname.clone(),
        source,
    };
    netlink
        .add_address(held.index, lease.address, lease.prefix)
        .map_err(nl)?;
    if lease.router != held.lease.router
        && let Some(router) = lease.router
    {
        netlink.add_default_route(held.index, router).map_err(nl)?;
    }
    held.lease = lease;
    held.schedule(clock.since_boot());
    Ok(())
}

/// Renews, on the box, every lease that is due (a UDP socket on port 68 bound to each
/// interface, an rtnetlink socket); logs the outcome of each. Returns the next renewal time.
pub fn renew_due(leases: &mut [HeldLease], clock: &dyn Clock) -> Option<Duration> {
    let now = clock.since_boot();
    for held in leases.iter_mut().filter(|l| l.due(now)) {
        let outcome = crate::sys::dhcp_socket(&held.ifname)
            .map_err(|e| RenewError::Dhcp {
                ifname: held.ifname.clone(),
                source: DhcpError::Io {
                    op: "opening the DHCP socket",
                    source: std::io::Error::other(e),
                },
            })
            .and_then(|socket| {
                let mut transport = super::UdpTransport { socket };
                let mut netlink = RouteSocket::open().map_err(|source| RenewError::Netlink {
                    ifname: held.ifname.clone(),
                    source,
                })?;
                renew(held, &mut transport, &mut netlink, clock)
            });
        match outcome {
            Ok(()) => crate::notice!("{}", renewed_line(held)),
            Err(e) => {
                held.renew_at = held.renew_at.max(now + Duration::from_secs(1));
                crate::warn!(
                    "network: {e}; trying again in {} s",
                    held.renew_at.saturating_sub(now).as_secs()
                );
            }
        }
    }
    next_renewal(leases)
}

/// `network: admin: DHCP lease 10.0.2.15/24 renewed for 86400 s (next renewal in 43200 s)`.
pub fn renewed_line(held: &HeldLease) -> String {
    let secs = |t: Option<u32>| t.map_or_else(|| "ever".to_owned(), |s| format!("{s} s"));
    format!(
        "network: {}: DHCP lease {}/{} renewed for {} (next renewal in {})",
        held.tag,
        held.lease.address,
        held.lease.prefix,
        secs(held.lease.lease_secs),
        secs(held.lease.t1())
    )
}

/// The address of a held lease, for status displays.
pub fn address(held: &HeldLease) -> (Ipv4Addr, u8) {
    (held.lease.address, held.lease.prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use dhcproto::Decodable;
    use dhcproto::v4::{Message, MessageType};

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    struct Acks(Vec<Vec<u8>>, bool);

    impl DhcpTransport for Acks {
        fn send(&mut self, packet: &[u8]) -> std::io::Result<()> {
            let m = Message::from_bytes(packet).unwrap();
            if self.1 {
                self.0
                    .push(dhcp::fixture_reply(MessageType::Ack, m.xid(), MAC, m.ciaddr()));
            }
            Ok(())
        }
        fn recv(&mut self, _: Duration) -> std::io::Result<Option<Vec<u8>>> {
            Ok((!self.0.is_empty()).then(|| self.0.remove(0)))
        }
    }

    #[derive(Default)]
    struct Calls(Vec<String>);

    impl Netlink for Calls {
        fn links(&mut self) -> Result<Vec<super::super::netlink::Link>, NetlinkError> {
            Ok(vec![])
        }
        fn set_up(&mut self, _: u32) -> Result<(), NetlinkError> {
            Ok(())
        }
        fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), NetlinkError> {
            self.0.push(format!("addr {index} {addr}/{prefix}"));
            Ok(())
        }
        fn add_default_route(&mut self, index: u32, gw: Ipv4Addr) -> Result<(), NetlinkError> {
            self.0.push(format!("route {index} via {gw}"));
            Ok(())
        }
        fn set_down(&mut self, _: u32) -> Result<(), NetlinkError> {
            Ok(())
        }
        fn rename(&mut self, _: u32, _: &str) -> Result<(), NetlinkError> {
            Ok(())
        }
        fn set_mtu(&mut self, _: u32, _: u32) -> Result<(), NetlinkError> {
            Ok(())
        }
        fn add_vlan(&mut self, _: u32, _: &str, _: u16) -> Result<(), NetlinkError> {
            Ok(())
        }
    }

    fn held(now: Duration) -> HeldLease {
        let bytes = dhcp::fixture_reply(MessageType::Ack, 1, MAC, Ipv4Addr::new(10, 0, 2, 15));
        let lease = dhcp::parse_reply(&bytes, 1, MAC).unwrap().lease;
        HeldLease::new("admin", "admin", 2, MAC, Some("box1"), lease, now)
    }

    #[test]
    fn scheduled_at_t1_and_renewed() {
        let mut h = held(Duration::from_secs(10));
        assert_eq!(h.renew_at, Duration::from_secs(610));
        assert_eq!(h.expires_at, Duration::from_secs(86410));
        assert!(!h.due(Duration::from_secs(609)) && h.due(Duration::from_secs(610)));
        assert_eq!(next_renewal(std::slice::from_ref(&h)), Some(Duration::from_secs(610)));
        let clock = FakeClock::new(Duration::from_secs(700), Duration::from_millis(10));
        let mut nl = Calls::default();
        renew(&mut h, &mut Acks(vec![], true), &mut nl, &clock).unwrap();
        assert_eq!(nl.0, ["addr 2 10.0.2.15/24"]);
        assert!(h.renew_at > Duration::from_secs(1300), "{:?}", h.renew_at);
        assert!(renewed_line(&h).starts_with("network: admin: DHCP lease 10.0.2.15/24 renewed for 86400 s"));
    }

    #[test]
    fn failure_retries_a_minute_later() {
        let mut h = held(Duration::ZERO);
        let clock = FakeClock::new(Duration::from_secs(600), Duration::from_millis(100));
        let err = renew(&mut h, &mut Acks(vec![], false), &mut Calls::default(), &clock).unwrap_err();
        assert!(
            err.to_string().starts_with("DHCP renewal on admin: no DHCP lease"),
            "{err}"
        );
        assert_eq!(h.renew_at, Duration::from_secs(660));
    }
}
