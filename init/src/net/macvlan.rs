//! The macvlan link a zone gets: created on the personality's NIC directly inside the
//! zone's network namespace (`ip link add link PARENT name NAME netns PID type macvlan mode
//! bridge`), so that it never appears in the host's; and the macvtap a VM gets, in the host's.

use super::links::new_child_link;
use super::netlink::{NetlinkError, RouteSocket, push_attr};

const IFLA_ADDRESS: u16 = 1;
const IFLA_NET_NS_PID: u16 = 19;
const IFLA_MACVLAN_MODE: u16 = 1;
/// Zones on one NIC talk to each other directly; the host's own address on that NIC does
/// not see them (a macvlan property), so the host reaches a zone through the network.
const MACVLAN_MODE_BRIDGE: u32 = 4;

/// `RTM_NEWLINK` creating macvlan `name` with `mac` on `parent` in the network namespace of
/// `pid`.
pub fn new_macvlan(seq: u32, parent: u32, name: &str, pid: u32, mac: [u8; 6]) -> Vec<u8> {
    let mut data = Vec::new();
    push_attr(&mut data, IFLA_MACVLAN_MODE, &MACVLAN_MODE_BRIDGE.to_ne_bytes());
    new_child_link(
        seq,
        parent,
        name,
        b"macvlan",
        &data,
        &[(IFLA_NET_NS_PID, &pid.to_ne_bytes()), (IFLA_ADDRESS, &mac)],
    )
}

/// `RTM_NEWLINK` creating macvtap `name` with `mac` on `parent`, in bridge mode, in this
/// network namespace (its character device `/dev/tapINDEX` is where a VM's NIC reads and
/// writes its frames).
pub fn new_macvtap(seq: u32, parent: u32, name: &str, mac: [u8; 6]) -> Vec<u8> {
    let mut data = Vec::new();
    push_attr(&mut data, IFLA_MACVLAN_MODE, &MACVLAN_MODE_BRIDGE.to_ne_bytes());
    new_child_link(seq, parent, name, b"macvtap", &data, &[(IFLA_ADDRESS, &mac)])
}

impl RouteSocket {
    /// Creates macvlan `name` with `mac` on `parent` inside the network namespace of
    /// process `pid`.
    pub fn add_macvlan(&mut self, parent: u32, name: &str, pid: u32, mac: [u8; 6]) -> Result<(), NetlinkError> {
        self.request("RTM_NEWLINK (macvlan)", |seq| new_macvlan(seq, parent, name, pid, mac))
            .map(drop)
    }

    /// Creates macvtap `name` with `mac` on `parent` in this network namespace.
    pub fn add_macvtap(&mut self, parent: u32, name: &str, mac: [u8; 6]) -> Result<(), NetlinkError> {
        self.request("RTM_NEWLINK (macvtap)", |seq| new_macvtap(seq, parent, name, mac))
            .map(drop)
    }

    /// Deletes link `index`.
    pub fn delete_link(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.request("RTM_DELLINK", |seq| super::netlink::delete_link(seq, index))
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_parent_the_namespace_and_the_kind() {
        let m = new_macvlan(3, 2, "eth0", 4242, [2, 1, 2, 3, 4, 5]);
        let has = |needle: &[u8]| m.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"eth0\0"));
        assert!(has(b"macvlan"));
        assert!(has(&[8, 0, 19, 0, 0x92, 0x10, 0, 0])); // IFLA_NET_NS_PID = 4242
        assert!(has(&[8, 0, 5, 0, 2, 0, 0, 0])); // IFLA_LINK = 2
        assert!(has(&[10, 0, 1, 0, 2, 1, 2, 3, 4, 5])); // IFLA_ADDRESS
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize, m.len());
    }
}
