//! The config's `[[nic]]`s put on the box: each NIC found by MAC or name, renamed to its tag
//! (or given a VLAN link named after the tag), its MTU, a static address and gateway or a
//! DHCP lease, then `/etc/resolv.conf` from `[dns]` or the leases. All through netlink.
//!
//! Nothing here fails the boot: a NIC that is missing or refuses a setting is a warning, and
//! the others are still configured.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use ramkey_config::{Addressing, Dns, Nic, Selector};

use crate::base::clock::Clock;
use crate::net::dhcp::{self, Lease};
use crate::net::http::format_mac;
use crate::net::netlink::{IFF_LOOPBACK, Link, Netlink, NetlinkError};
use crate::net::renew::HeldLease;
use crate::net::{CARRIER_WAIT, NIC_WAIT, NetError, NetReport, OpenTransport, poll_links};

/// The longest interface name the kernel takes (`IFNAMSIZ - 1`).
const IFNAME_MAX: usize = 15;

/// What was done, for the boot state and `ramkeyctl status`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// One line per NIC configured, as logged.
    pub lines: Vec<String>,
    /// Leases to renew.
    pub leases: Vec<HeldLease>,
    /// What went wrong, one entry per NIC or setting.
    pub failures: Vec<String>,
    /// The `resolv.conf` written, if any.
    pub resolv_conf: Option<String>,
}

/// The effects and settings of one run.
pub struct Env<'a> {
    /// rtnetlink.
    pub netlink: &'a mut dyn Netlink,
    /// DHCP sockets.
    pub open: &'a mut OpenTransport<'a>,
    /// The boot clock.
    pub clock: &'a dyn Clock,
    /// Waits between link listings.
    pub pause: &'a mut dyn FnMut(Duration),
    /// Where `resolv.conf` goes.
    pub resolv_conf: &'a Path,
    /// Sent with DHCP requests (option 12).
    pub hostname: Option<&'a str>,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

fn matches(nic: &Nic, link: &Link) -> bool {
    link.is_ethernet()
        && match &nic.selector {
            Selector::Mac(mac) => link.mac == Some(mac.0),
            Selector::Name(name) => link.name == *name,
        }
}

fn selector_text(nic: &Nic) -> String {
    match &nic.selector {
        Selector::Mac(mac) => format!("MAC {mac}"),
        Selector::Name(name) => format!("name {name}"),
    }
}

fn usable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Applies `nics` and `dns`. `pxe` is the lease the PXE boot already holds (never asked twice).
pub fn apply(env: &mut Env<'_>, nics: &[Nic], dns: &Dns, pxe: Option<&NetReport>) -> Applied {
    let mut out = Applied::default();
    let all_found = |links: &[Link]| nics.iter().all(|n| links.iter().any(|l| matches(n, l)));
    let links = match poll_links(env.netlink, env.clock, env.pause, NIC_WAIT, all_found) {
        Ok((links, _)) => links,
        Err(e) => {
            crate::warn!("{e}");
            out.failures.push(e.to_string());
            return out;
        }
    };
    if let Some(lo) = links.iter().find(|l| l.flags & IFF_LOOPBACK != 0) {
        env.netlink
            .set_up(lo.index)
            .unwrap_or_else(|e| crate::warn!("network: lo: {e}"));
    }
    // Selectors match the names the kernel gave; `now` follows the renames.
    let mut now = links.clone();
    let mut have_gateway = false;
    for nic in nics {
        let Some(link) = links.iter().find(|l| matches(nic, l)) else {
            let seen: Vec<String> = now
                .iter()
                .filter(|l| l.is_ethernet())
                .map(|l| format!("{} {}", l.name, format_mac(l.mac.unwrap_or_default())))
                .collect();
            let msg = format!(
                "network: {}: no interface with {} (found: {})",
                nic.tag,
                selector_text(nic),
                if seen.is_empty() {
                    "none".to_owned()
                } else {
                    seen.join(", ")
                }
            );
            crate::warn!("{msg}");
            out.failures.push(msg);
            continue;
        };
        let is_pxe = pxe.is_some_and(|r| r.link.index == link.index);
        match one_nic(env, nic, link, &mut now, is_pxe) {
            Ok((index, ifname, note)) => {
                let held = pxe
                    .filter(|_| is_pxe)
                    .map(|r| (r.lease.clone(), "DHCP lease from the PXE boot"));
                address(
                    env,
                    nic,
                    (index, &ifname, link),
                    note,
                    held,
                    &mut have_gateway,
                    &mut out,
                );
            }
            Err(e) => {
                let msg = format!(
                    "network: {}: {} ({}): {e}",
                    nic.tag,
                    link.name,
                    format_mac(link.mac.unwrap_or_default())
                );
                crate::warn!("{msg}");
                out.failures.push(msg);
            }
        }
    }
    write_resolv_conf(env.resolv_conf, dns, pxe, &mut out);
    out
}

/// Renames (or creates the VLAN link), sets the MTU, brings the link up. Returns the index
/// and name of the interface that gets the address, and a note for the console line.
fn one_nic(
    env: &mut Env<'_>,
    nic: &Nic,
    link: &Link,
    now: &mut Vec<Link>,
    is_pxe: bool,
) -> Result<(u32, String, String), NetlinkError> {
    let mac = format_mac(link.mac.unwrap_or_default());
    let mut note = mac.clone();
    let current = now
        .iter()
        .find(|l| l.index == link.index)
        .map_or(link.name.clone(), |l| l.name.clone());
    let taken = |now: &[Link], name: &str| now.iter().any(|l| l.name == name);
    let (mut index, mut ifname) = (link.index, current.clone());
    if let Some(id) = nic.vlan {
        env.netlink.set_up(link.index)?;
        let name = if usable_name(&nic.tag) && !taken(now, &nic.tag) {
            nic.tag.clone()
        } else {
            format!("{current}.{id}")
        };
        env.netlink.add_vlan(link.index, &name, id)?;
        let made = env.netlink.links()?.into_iter().find(|l| l.name == name);
        let made = made.ok_or(NetlinkError::Refused {
            op: "RTM_NEWLINK (vlan)",
            source: nix::errno::Errno::ENODEV,
        })?;
        index = made.index;
        note = format!("VLAN {id} on {current} {mac}");
        now.push(made);
        ifname = name;
    } else if nic.tag != current && usable_name(&nic.tag) && !taken(now, &nic.tag) && !is_pxe {
        env.netlink.set_down(link.index)?;
        match env.netlink.rename(link.index, &nic.tag) {
            Ok(()) => {
                note = format!("{mac}, was {current}");
                for l in now.iter_mut().filter(|l| l.index == link.index) {
                    l.name = nic.tag.clone();
                }
                ifname = nic.tag.clone();
            }
            Err(e) => crate::warn!("network: {}: cannot rename {current} to {}: {e}", nic.tag, nic.tag),
        }
    } else if ifname != nic.tag {
        note = format!("{mac}, interface {ifname}");
    }
    if let Some(mtu) = nic.mtu {
        env.netlink.set_mtu(index, u32::from(mtu))?;
        note.push_str(&format!(", mtu {mtu}"));
    }
    env.netlink.set_up(index)?;
    Ok((index, ifname, note))
}

/// Puts the NIC's address on: static, DHCP (or the PXE lease), or none.
fn address(
    env: &mut Env<'_>,
    nic: &Nic,
    (index, ifname, link): (u32, &str, &Link),
    note: String,
    pxe_lease: Option<(Lease, &str)>,
    have_gateway: &mut bool,
    out: &mut Applied,
) {
    let fail = |out: &mut Applied, e: &dyn std::fmt::Display| {
        let msg = format!("network: {}: {e}", nic.tag);
        crate::warn!("{msg}");
        out.failures.push(msg);
    };
    let gateway = |g: Option<IpAddr>| match g {
        Some(IpAddr::V4(g)) => Some(g),
        _ => None,
    };
    let line = match nic.ip {
        None => format!("network: {} up, no address ({note})", nic.tag),
        Some(Addressing::Static {
            addr: IpAddr::V6(a),
            prefix,
        }) => {
            return fail(out, &format!("{a}/{prefix}: IPv6 addresses are not applied yet"));
        }
        Some(Addressing::Static {
            addr: IpAddr::V4(addr),
            prefix,
        }) => {
            if let Err(e) = env.netlink.add_address(index, addr, prefix) {
                return fail(out, &e);
            }
            let via = route(env, nic, index, gateway(nic.gateway), have_gateway, out);
            format!("network: {} {addr}/{prefix}{via} (static; {note})", nic.tag)
        }
        Some(Addressing::Dhcp) => {
            let (lease, how) = match pxe_lease {
                Some((lease, how)) => (lease, how.to_owned()),
                None => match obtain(env, index, ifname, link) {
                    Ok((lease, took)) => (lease, format!("DHCP in {} ms", took.as_millis())),
                    Err(e) => return fail(out, &e),
                },
            };
            if let Err(e) = env.netlink.add_address(index, lease.address, lease.prefix) {
                return fail(out, &e);
            }
            let via = route(
                env,
                nic,
                index,
                gateway(nic.gateway).or(lease.router),
                have_gateway,
                out,
            );
            let dns: Vec<String> = lease.dns.iter().map(Ipv4Addr::to_string).collect();
            let dns = if dns.is_empty() {
                String::new()
            } else {
                format!(" dns {}", dns.join(","))
            };
            let line = format!(
                "network: {} {}/{}{via}{dns} ({how}, lease {} s; {note})",
                nic.tag,
                lease.address,
                lease.prefix,
                lease.lease_secs.map_or_else(|| "?".to_owned(), |s| s.to_string())
            );
            let mac = link.mac.unwrap_or_default();
            let now = env.clock.since_boot();
            out.leases
                .push(HeldLease::new(&nic.tag, ifname, index, mac, env.hostname, lease, now));
            line
        }
    };
    crate::notice!("{line}");
    out.lines.push(line);
}

/// Adds the default route via `gateway` unless an earlier NIC has one; ` via G` for the line.
fn route(
    env: &mut Env<'_>,
    nic: &Nic,
    index: u32,
    gateway: Option<Ipv4Addr>,
    have_gateway: &mut bool,
    out: &mut Applied,
) -> String {
    let Some(gw) = gateway else {
        return String::new();
    };
    if *have_gateway {
        crate::warn!(
            "network: {}: default route via {gw} not added: an earlier NIC has one",
            nic.tag
        );
        return format!(" (gateway {gw} unused)");
    }
    match env.netlink.add_default_route(index, gw) {
        Ok(()) => {
            *have_gateway = true;
            format!(" via {gw}")
        }
        Err(e) => {
            let msg = format!("network: {}: default route via {gw}: {e}", nic.tag);
            crate::warn!("{msg}");
            out.failures.push(msg);
            String::new()
        }
    }
}

/// Waits briefly for carrier, then runs DHCP on the interface.
fn obtain(env: &mut Env<'_>, index: u32, ifname: &str, link: &Link) -> Result<(Lease, Duration), NetError> {
    let carrier = |links: &[Link]| links.iter().any(|l| l.index == index && l.has_carrier());
    poll_links(env.netlink, env.clock, env.pause, CARRIER_WAIT, carrier)?;
    let mac = link.mac.unwrap_or_default();
    let start = env.clock.since_boot();
    let xid = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]) ^ start.subsec_nanos();
    let lease = (env.open)(ifname)
        .map_err(|source| dhcp::DhcpError::Io {
            op: "opening the DHCP socket",
            source,
        })
        .and_then(|mut t| dhcp::obtain(t.as_mut(), mac, env.hostname, env.clock, xid))
        .map_err(|e| NetError::NoLease(format!("{ifname}: {e}")))?;
    Ok((lease, env.clock.since_boot().saturating_sub(start)))
}

/// `resolv.conf` from `[dns]` when it names resolvers, else from the first lease with DNS.
fn write_resolv_conf(path: &Path, dns: &Dns, pxe: Option<&NetReport>, out: &mut Applied) {
    let text = if dns.resolvers.is_empty() {
        let lease = out
            .leases
            .iter()
            .map(|h| (h.tag.as_str(), &h.lease))
            .chain(pxe.map(|r| (r.link.name.as_str(), &r.lease)))
            .find(|(_, l)| !l.dns.is_empty());
        match lease {
            Some((tag, lease)) => crate::net::resolv_conf_text(tag, lease),
            None => return,
        }
    } else {
        crate::net::resolv_conf_static(dns)
    };
    let shown: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    match std::fs::write(path, &text) {
        Ok(()) => crate::notice!("network: /etc/resolv.conf: {}", shown.join("; ")),
        Err(e) => {
            let msg = format!("network: cannot write {}: {e}", path.display());
            crate::warn!("{msg}");
            out.failures.push(msg);
        }
    }
    out.resolv_conf = Some(text);
}

/// Recovery without a config: every Ethernet NIC up, DHCP on each; each lease is applied
/// (the first router becomes the default route).
pub fn dhcp_everywhere(env: &mut Env<'_>) -> Applied {
    let any = |links: &[Link]| links.iter().any(Link::is_ethernet);
    let links = match poll_links(env.netlink, env.clock, env.pause, NIC_WAIT, any) {
        Ok((links, _)) => links,
        Err(e) => {
            return Applied {
                failures: vec![e.to_string()],
                ..Applied::default()
            };
        }
    };
    let nics: Vec<Nic> = links
        .iter()
        .filter(|l| l.is_ethernet())
        .map(|l| Nic {
            tag: l.name.clone(),
            selector: Selector::Name(l.name.clone()),
            ip: Some(Addressing::Dhcp),
            gateway: None,
            vlan: None,
            mtu: None,
        })
        .collect();
    apply(env, &nics, &Dns::default(), None)
}

#[cfg(test)]
#[path = "netconf_tests.rs"]
mod tests;
