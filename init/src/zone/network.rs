//! The zone's network, set up by its PID 1 inside the zone's namespaces: the launcher's
//! macvlan renamed `eth0` with the personality's static address or a DHCP lease, `lo`, the
//! default route and `/etc/resolv.conf` — the platform's own network code, as on the host;
//! then a static address is announced with gratuitous ARP.

use std::fs;
use std::net::IpAddr;

use ramkey_config::{Addressing, Dns, Nic, Selector};

use super::{LEASE_FILE, MACVLAN_PREFIX, ZONE_IFNAME, ZoneError, ZoneSpec};
use crate::base::paths::Paths;
use crate::net::KernelNetwork;
use crate::net::netlink::{Netlink, RouteSocket};
use crate::net::renew::HeldLease;

/// Loopback, then the zone's interface with its static address or a DHCP lease, the
/// default route and `/etc/resolv.conf`, through the platform's own network code; returns
/// the lease to renew. `paths` are the zone's own (it entered its root).
pub fn configure(paths: &Paths, spec: &ZoneSpec) -> Result<Vec<HeldLease>, ZoneError> {
    let ip = match spec.ip.as_deref() {
        None => None,
        Some("dhcp") => Some(Addressing::Dhcp),
        Some(cidr) => {
            let (addr, prefix) = cidr
                .split_once('/')
                .ok_or_else(|| ZoneError::NoPrefix(cidr.to_string()))?;
            let cidr = || cidr.to_string();
            Some(Addressing::Static {
                addr: addr
                    .parse()
                    .map_err(|source| ZoneError::Address { cidr: cidr(), source })?,
                prefix: prefix
                    .parse()
                    .map_err(|source| ZoneError::Prefix { cidr: cidr(), source })?,
            })
        }
    };
    // The launcher's macvlan (next to `lo` and any tunnel devices the kernel puts in every
    // namespace), or in a VM guest its virtio NIC; the network code names it `eth0`.
    let made = match &spec.nic {
        None => String::new(),
        Some(_) => {
            let links = RouteSocket::open()
                .and_then(|mut s| s.links())
                .map_err(ZoneError::Links)?;
            links
                .into_iter()
                .map(|l| l.name)
                .find(|n| n.starts_with(MACVLAN_PREFIX) || n == super::GUEST_IFNAME)
                .ok_or(ZoneError::NoLauncherInterface)?
        }
    };
    let nics: Vec<Nic> = spec
        .nic
        .iter()
        .map(|_| Nic {
            tag: ZONE_IFNAME.to_string(),
            selector: Selector::Name(made.clone()),
            ip,
            gateway: spec.gateway.as_deref().and_then(|g| g.parse::<IpAddr>().ok()),
            vlan: None,
            mtu: None,
        })
        .collect();
    let dns = Dns {
        resolvers: spec.resolvers.iter().filter_map(|r| r.parse().ok()).collect(),
        search: spec.search.clone(),
    };
    let mut net = KernelNetwork {
        resolv_conf: paths.resolv_conf(),
    };
    let applied = net.apply_nics(&crate::base::clock::BootClock, &nics, &dns, Some(&spec.name));
    for line in &applied.lines {
        crate::notice!("zone {}: {line}", spec.name);
    }
    if let Some(held) = applied.leases.first() {
        let (address, prefix) = crate::net::renew::address(held);
        let file = paths.root().join(LEASE_FILE);
        if let Err(e) = fs::write(&file, format!("{address}/{prefix}\n")) {
            crate::warn!("zone {}: {}: {e}", spec.name, file.display());
        }
    }
    if let Some(failure) = applied.failures.first() {
        return Err(ZoneError::Network(failure.clone()));
    }
    if let Some(ip) = spec.static_ipv4().filter(|_| spec.nic.is_some()) {
        announce(&spec.name, ip);
    }
    Ok(applied.leases)
}

/// Announces the zone's static address with gratuitous ARP on its interface; a failure is
/// only a warning (neighbours then learn the address when they next ask).
fn announce(zone: &str, ip: std::net::Ipv4Addr) {
    let links = RouteSocket::open().and_then(|mut s| s.links());
    let link = links.iter().flatten().find(|l| l.name == ZONE_IFNAME);
    let sent = match link.and_then(|l| Some((l.index, l.mac?))) {
        Some((index, mac)) => crate::net::arp::announce(index, mac, ip).map_err(|e| e.to_string()),
        None => Err(format!("no {ZONE_IFNAME} with a MAC")),
    };
    if let Err(e) = sent {
        crate::warn!("zone {zone}: announcing {ip} (gratuitous ARP): {e}");
    }
}
