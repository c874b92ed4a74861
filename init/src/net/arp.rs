//! Gratuitous ARP: a zone with a static IPv4 address announces it when its interface comes
//! up, so that neighbours' ARP caches and switches' MAC tables follow an address that moved
//! (a cluster resource taken over by the other node, a box replaced), as keepalived and
//! Heartbeat's `send_arp` do for theirs.

use std::net::Ipv4Addr;

/// ARP's EtherType.
pub const ETHERTYPE: u16 = 0x0806;

/// ARP request (1) or reply (2).
const REQUEST: u16 = 1;
const REPLY: u16 = 2;

/// The ARP packet (without the Ethernet header) that announces `ip` at `mac`: sender and
/// target protocol address both `ip`, target hardware address zero.
pub fn announcement(mac: [u8; 6], ip: Ipv4Addr, reply: bool) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&(if reply { REPLY } else { REQUEST }).to_be_bytes());
    p[8..14].copy_from_slice(&mac);
    p[14..18].copy_from_slice(&ip.octets());
    p[24..28].copy_from_slice(&ip.octets());
    p
}

/// Announces `ip` on the interface `ifindex` whose MAC is `mac`: once as a request and once
/// as a reply, since neighbours differ in which of the two updates their cache.
pub fn announce(ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> Result<(), crate::sys::SysError> {
    let request = announcement(mac, ip, false);
    let reply = announcement(mac, ip, true);
    crate::sys::packet::broadcast(ifindex, ETHERTYPE, &[&request, &reply])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_names_the_address_as_sender_and_target() {
        let mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
        let p = announcement(mac, Ipv4Addr::new(192, 168, 50, 80), false);
        assert_eq!(
            p,
            [
                0, 1, 8, 0, 6, 4, 0, 1, // Ethernet, IPv4, 6 and 4 bytes, request
                0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 192, 168, 50, 80, // sender
                0, 0, 0, 0, 0, 0, 192, 168, 50, 80, // target
            ]
        );
        assert_eq!(announcement(mac, Ipv4Addr::new(192, 168, 50, 80), true)[6..8], [0, 2]);
    }
}
