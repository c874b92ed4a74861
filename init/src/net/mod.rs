//! The network: netlink (`netlink`, `links`, `macvlan`), DHCP and lease renewal (`dhcp`,
//! `renew`), HTTP (`http`, and `http_stream` for large bodies), SNTP (`ntp`), the config's
//! NICs applied (`netconf`) and the source check on the NICs zones hang off
//! (`source_check`). Imports `sys` and `base`.
//!
//! This file: the boot network for PXE boots: links up, DHCP on each NIC until one gets a lease,
//! address, default route and `/etc/resolv.conf`; then HTTP for the config URL. The boot's
//! network effects are traits that each do one thing ([`LinkSetup`], [`http::Fetch`],
//! [`Hostname`], [`ntp::Sntp`]), [`Network`] all of them, so that the boot can be tested
//! with fakes.

pub mod arp;
pub mod conn;
pub mod dhcp;
pub mod http;
pub mod http_stream;
pub mod links;
pub mod macvlan;
pub mod netconf;
pub mod netlink;
pub mod ntp;
pub mod renew;
pub mod resolve;
pub mod source_check;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use ramkey_config::{Config, Dns, Nic};

use crate::base::clock::Clock;
use crate::net::netconf::Applied;
use dhcp::{DhcpTransport, Lease};
use http::Fetch;
use netlink::{Link, Netlink, NetlinkError, RouteSocket};
use ntp::Sntp;

/// How long to wait for a first Ethernet interface to exist.
pub const NIC_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for carrier on any interface after setting them up.
pub const CARRIER_WAIT: Duration = Duration::from_secs(3);
/// How often links are listed again while waiting.
const POLL: Duration = Duration::from_millis(100);

/// The network could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A netlink request failed.
    #[error("network: {0}")]
    Netlink(#[from] NetlinkError),
    /// No Ethernet interface appeared.
    #[error("network: no Ethernet interface appeared within {} s (is the NIC's driver in the platform?)", NIC_WAIT.as_secs())]
    NoNic,
    /// No interface got a DHCP lease.
    #[error("network: no DHCP lease on any interface: {0}")]
    NoLease(String),
}

/// What the network step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetReport {
    /// The admin NIC: the one that got the lease.
    pub link: Link,
    /// The lease.
    pub lease: Lease,
    /// The time from the first DHCP packet to the lease.
    pub dhcp_time: Duration,
}

impl NetReport {
    /// The MAC of the admin NIC.
    pub fn mac(&self) -> [u8; 6] {
        self.link.mac.unwrap_or_default()
    }

    /// The console line, e.g. `network: eth0 (52:54:00:12:34:56) got 10.0.2.15/24 router
    /// 10.0.2.2 dns 10.0.2.3 by DHCP in 35 ms`.
    pub fn line(&self) -> String {
        let l = &self.lease;
        let router = l.router.map_or_else(|| "(none)".to_owned(), |r| r.to_string());
        let dns = if l.dns.is_empty() {
            "(none)".to_owned()
        } else {
            l.dns.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(",")
        };
        format!(
            "network: {} ({}) got {}/{} router {router} dns {dns} by DHCP in {} ms",
            self.link.name,
            http::format_mac(self.mac()),
            l.address,
            l.prefix,
            self.dhcp_time.as_millis()
        )
    }
}

/// Sets the links up: DHCP for a PXE boot, the config's NICs, or DHCP everywhere.
pub trait LinkSetup {
    /// Brings up the links and gets a DHCP lease on one NIC.
    fn configure(&mut self, clock: &dyn Clock, hostname: Option<&str>) -> Result<NetReport, NetError>;
    /// Applies the config's NICs and DNS ([`crate::net::netconf::apply`]).
    fn apply_config(&mut self, clock: &dyn Clock, config: &Config, pxe: Option<&NetReport>, resolv: &Path) -> Applied;
    /// DHCP on every NIC, for recovery without a config ([`crate::net::netconf::dhcp_everywhere`]).
    fn dhcp_everywhere(&mut self, clock: &dyn Clock, resolv: &Path) -> Applied;
}

/// Sets the host name.
pub trait Hostname {
    /// `sethostname(2)`.
    fn set_hostname(&mut self, name: &str) -> Result<(), Errno>;
}

/// The network effects the boot uses: links, HTTP, host name, SNTP and the clock; the
/// real ones on the box ([`KernelNetwork`]), fakes in tests.
pub trait Network: LinkSetup + Fetch + Hostname + Sntp {}

impl<T: LinkSetup + Fetch + Hostname + Sntp> Network for T {}

/// The real network: rtnetlink, UDP sockets bound to each NIC, TCP.
#[derive(Debug)]
pub struct KernelNetwork {
    /// Where `resolv.conf` is written (`/etc/resolv.conf`).
    pub resolv_conf: PathBuf,
}

impl LinkSetup for KernelNetwork {
    fn configure(&mut self, clock: &dyn Clock, hostname: Option<&str>) -> Result<NetReport, NetError> {
        let mut socket = RouteSocket::open()?;
        let mut open = |name: &str| -> std::io::Result<Box<dyn DhcpTransport>> {
            let socket = crate::sys::dhcp_socket(name).map_err(std::io::Error::other)?;
            Ok(Box::new(UdpTransport { socket }))
        };
        let mut pause = std::thread::sleep;
        configure(&mut socket, &mut open, clock, &mut pause, &self.resolv_conf, hostname)
    }

    fn apply_config(&mut self, clock: &dyn Clock, config: &Config, pxe: Option<&NetReport>, resolv: &Path) -> Applied {
        self.with_env(clock, resolv, Some(&config.hostname), |env| {
            crate::net::netconf::apply(env, &config.nics, &config.dns, pxe)
        })
    }

    fn dhcp_everywhere(&mut self, clock: &dyn Clock, resolv: &Path) -> Applied {
        self.with_env(clock, resolv, None, crate::net::netconf::dhcp_everywhere)
    }
}

impl Hostname for KernelNetwork {
    fn set_hostname(&mut self, name: &str) -> Result<(), Errno> {
        nix::unistd::sethostname(name)
    }
}

impl KernelNetwork {
    /// Applies `nics` and `dns` ([`crate::net::netconf::apply`]), e.g. inside a zone.
    pub fn apply_nics(&mut self, clock: &dyn Clock, nics: &[Nic], dns: &Dns, hostname: Option<&str>) -> Applied {
        let resolv = self.resolv_conf.clone();
        self.with_env(clock, &resolv, hostname, |env| {
            crate::net::netconf::apply(env, nics, dns, None)
        })
    }

    fn with_env(
        &mut self,
        clock: &dyn Clock,
        resolv_conf: &Path,
        hostname: Option<&str>,
        f: impl FnOnce(&mut crate::net::netconf::Env<'_>) -> Applied,
    ) -> Applied {
        let mut socket = match RouteSocket::open() {
            Ok(s) => s,
            Err(e) => {
                crate::warn!("network: {e}");
                return Applied {
                    failures: vec![e.to_string()],
                    ..Applied::default()
                };
            }
        };
        let mut open = |name: &str| -> std::io::Result<Box<dyn DhcpTransport>> {
            let socket = crate::sys::dhcp_socket(name).map_err(std::io::Error::other)?;
            Ok(Box::new(UdpTransport { socket }))
        };
        let mut pause = std::thread::sleep;
        let hostname = hostname.filter(|h| !h.is_empty());
        f(&mut crate::net::netconf::Env {
            netlink: &mut socket,
            open: &mut open,
            clock,
            pause: &mut pause,
            resolv_conf,
            hostname,
        })
    }
}

/// DHCP over a UDP socket on port 68, bound to one interface.
#[derive(Debug)]
pub struct UdpTransport {
    /// The socket, bound to port 68 on one interface.
    pub socket: UdpSocket,
}

impl DhcpTransport for UdpTransport {
    fn send(&mut self, packet: &[u8]) -> std::io::Result<()> {
        let to = SocketAddr::from((Ipv4Addr::BROADCAST, 67));
        self.socket.send_to(packet, to).map(drop)
    }

    fn recv(&mut self, timeout: Duration) -> std::io::Result<Option<Vec<u8>>> {
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let mut buf = vec![0u8; 1500];
        match self.socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                buf.truncate(n);
                Ok(Some(buf))
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Opens a DHCP transport for the interface with this name.
pub type OpenTransport<'a> = dyn FnMut(&str) -> std::io::Result<Box<dyn DhcpTransport>> + 'a;

/// Lists links until `ready` accepts them or `limit` passes.
pub(crate) fn poll_links(
    netlink: &mut dyn Netlink,
    clock: &dyn Clock,
    pause: &mut dyn FnMut(Duration),
    limit: Duration,
    ready: impl Fn(&[Link]) -> bool,
) -> Result<(Vec<Link>, bool), NetError> {
    let start = clock.since_boot();
    loop {
        let links = netlink.links()?;
        if ready(&links) {
            return Ok((links, true));
        }
        if clock.since_boot().saturating_sub(start) >= limit {
            return Ok((links, false));
        }
        pause(POLL);
    }
}

/// Brings `lo` and every Ethernet link up, then runs DHCP on each NIC (those with carrier
/// first) until one gets a lease, and applies it.
pub fn configure(
    netlink: &mut dyn Netlink,
    open: &mut OpenTransport<'_>,
    clock: &dyn Clock,
    pause: &mut dyn FnMut(Duration),
    resolv_conf: &Path,
    hostname: Option<&str>,
) -> Result<NetReport, NetError> {
    let any_ethernet = |links: &[Link]| links.iter().any(Link::is_ethernet);
    let (links, found) = poll_links(netlink, clock, pause, NIC_WAIT, any_ethernet)?;
    if let Some(lo) = links.iter().find(|l| l.flags & netlink::IFF_LOOPBACK != 0) {
        netlink
            .set_up(lo.index)
            .unwrap_or_else(|e| crate::warn!("network: lo: {e}"));
    }
    if !found {
        return Err(NetError::NoNic);
    }
    for link in links.iter().filter(|l| l.is_ethernet()) {
        netlink
            .set_up(link.index)
            .unwrap_or_else(|e| crate::warn!("network: {}: {e}", link.name));
    }
    let carrier = |links: &[Link]| links.iter().any(|l| l.is_ethernet() && l.has_carrier());
    let (mut nics, _) = poll_links(netlink, clock, pause, CARRIER_WAIT, carrier)?;
    nics.retain(Link::is_ethernet);
    nics.sort_by_key(|l| (!l.has_carrier(), l.index));
    let mut failures = Vec::new();
    for nic in nics {
        let mac = nic.mac.unwrap_or_default();
        crate::info!(
            "network: DHCP on {} ({}{})",
            nic.name,
            http::format_mac(mac),
            if nic.has_carrier() { "" } else { ", no carrier" }
        );
        let start = clock.since_boot();
        let xid = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]) ^ start.subsec_nanos();
        let lease = open(&nic.name)
            .map_err(|source| dhcp::DhcpError::Io {
                op: "opening the DHCP socket",
                source,
            })
            .and_then(|mut t| dhcp::obtain(t.as_mut(), mac, hostname, clock, xid));
        match lease {
            Ok(lease) => {
                let dhcp_time = clock.since_boot().saturating_sub(start);
                apply(netlink, &nic, &lease, resolv_conf)?;
                return Ok(NetReport {
                    link: nic,
                    lease,
                    dhcp_time,
                });
            }
            Err(e) => {
                crate::warn!("network: {}: {e}", nic.name);
                failures.push(format!("{}: {e}", nic.name));
            }
        }
    }
    Err(NetError::NoLease(failures.join("; ")))
}

/// Puts the lease on the NIC: address, default route, `resolv.conf` (a warning if unwritable).
pub fn apply(netlink: &mut dyn Netlink, nic: &Link, lease: &Lease, resolv_conf: &Path) -> Result<(), NetError> {
    netlink.add_address(nic.index, lease.address, lease.prefix)?;
    if let Some(router) = lease.router {
        netlink.add_default_route(nic.index, router)?;
    }
    if !lease.dns.is_empty() {
        let text = resolv_conf_text(&nic.name, lease);
        if let Err(e) = std::fs::write(resolv_conf, text) {
            crate::warn!("network: cannot write {}: {e}", resolv_conf.display());
        }
    }
    Ok(())
}

/// The `resolv.conf` for the config's `[dns]`.
pub fn resolv_conf_static(dns: &ramkey_config::Dns) -> String {
    let mut text = "# written by the Ramkey init from [dns] in the config\n".to_owned();
    if !dns.search.is_empty() {
        text.push_str(&format!("search {}\n", dns.search.join(" ")));
    }
    for server in &dns.resolvers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    text
}

/// The `resolv.conf` for a lease.
pub fn resolv_conf_text(nic: &str, lease: &Lease) -> String {
    let mut text = format!("# written by the Ramkey init from the DHCP lease on {nic}\n");
    if let Some(domain) = &lease.domain {
        text.push_str(&format!("search {domain}\n"));
    }
    for server in &lease.dns {
        text.push_str(&format!("nameserver {server}\n"));
    }
    text
}

#[cfg(test)]
pub(crate) mod fake {
    //! The [`LinkSetup`] and [`Hostname`] fakes, and [`FakeNetwork`], one fake of each
    //! network trait in one [`Network`].

    use std::net::{Ipv4Addr, SocketAddr};
    use std::path::Path;
    use std::time::Duration;

    use nix::errno::Errno;
    use ramkey_config::Config;

    use super::http::fake::FakeFetch;
    use super::http::{Fetch, HttpError, Url};
    use super::ntp::Sntp;
    use super::ntp::fake::FakeSntp;
    use super::{Applied, Hostname, LinkSetup, NetError, NetReport};
    use crate::base::clock::Clock;
    use crate::net::dhcp::Lease;
    use crate::net::netlink::Link;

    /// QEMU's user-mode network as DHCP gives it to `eth0` (52:54:00:12:34:56).
    pub(crate) fn qemu_report() -> NetReport {
        NetReport {
            link: Link {
                index: 2,
                name: "eth0".into(),
                mac: Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
                kind: 1,
                flags: 0,
            },
            lease: Lease {
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24,
                router: Some(Ipv4Addr::new(10, 0, 2, 2)),
                dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
                domain: None,
                server: None,
                lease_secs: None,
                renew_secs: None,
            },
            dhcp_time: Duration::from_millis(12),
        }
    }

    /// Hands out `report` (none: no NIC) and applies nothing; records each call by name.
    #[derive(Debug, Default)]
    pub(crate) struct FakeLinks {
        /// What `configure` answers.
        pub(crate) report: Option<NetReport>,
        /// `configure`, `apply_config` or `dhcp_everywhere`, in order.
        pub(crate) calls: Vec<&'static str>,
    }

    impl LinkSetup for FakeLinks {
        fn configure(&mut self, _: &dyn Clock, _: Option<&str>) -> Result<NetReport, NetError> {
            self.calls.push("configure");
            self.report.clone().ok_or(NetError::NoNic)
        }

        fn apply_config(&mut self, _: &dyn Clock, _: &Config, _: Option<&NetReport>, _: &Path) -> Applied {
            self.calls.push("apply_config");
            Applied::default()
        }

        fn dhcp_everywhere(&mut self, _: &dyn Clock, _: &Path) -> Applied {
            self.calls.push("dhcp_everywhere");
            Applied::default()
        }
    }

    /// Records the host names set.
    #[derive(Debug, Default)]
    pub(crate) struct RecordingHostname(pub(crate) Vec<String>);

    impl Hostname for RecordingHostname {
        fn set_hostname(&mut self, name: &str) -> Result<(), Errno> {
            self.0.push(name.to_owned());
            Ok(())
        }
    }

    /// The boot's whole network: each trait answered by its own fake.
    #[derive(Debug, Default)]
    pub(crate) struct FakeNetwork {
        /// The links.
        pub(crate) links: FakeLinks,
        /// HTTP.
        pub(crate) http: FakeFetch,
        /// The host name.
        pub(crate) hostname: RecordingHostname,
        /// SNTP and the clock.
        pub(crate) sntp: FakeSntp,
    }

    impl LinkSetup for FakeNetwork {
        fn configure(&mut self, clock: &dyn Clock, hostname: Option<&str>) -> Result<NetReport, NetError> {
            self.links.configure(clock, hostname)
        }

        fn apply_config(
            &mut self,
            clock: &dyn Clock,
            config: &Config,
            pxe: Option<&NetReport>,
            resolv: &Path,
        ) -> Applied {
            self.links.apply_config(clock, config, pxe, resolv)
        }

        fn dhcp_everywhere(&mut self, clock: &dyn Clock, resolv: &Path) -> Applied {
            self.links.dhcp_everywhere(clock, resolv)
        }
    }

    impl Fetch for FakeNetwork {
        fn fetch(&mut self, url: &Url) -> Result<Vec<u8>, HttpError> {
            self.http.fetch(url)
        }

        fn pause(&mut self, duration: Duration) {
            self.http.pause(duration);
        }
    }

    impl Hostname for FakeNetwork {
        fn set_hostname(&mut self, name: &str) -> Result<(), Errno> {
            self.hostname.set_hostname(name)
        }
    }

    impl Sntp for FakeNetwork {
        fn exchange(&mut self, server: SocketAddr, request: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
            self.sntp.exchange(server, request, timeout)
        }

        fn set_clock(&mut self, since_epoch: Duration) -> Result<(), Errno> {
            self.sntp.set_clock(since_epoch)
        }

        fn resolve(&mut self, name: &str) -> Result<std::net::IpAddr, String> {
            self.sntp.resolve(name)
        }
    }
}

#[cfg(test)]
mod tests;
