//! `RTM_NEWLINK` messages that create a link on a parent link: the VLANs of `[[nic]] vlan`
//! and the macvlans zones get.

use super::netlink::{
    IFLA_IFNAME, IFLA_INFO_DATA, IFLA_INFO_KIND, IFLA_LINK, IFLA_LINKINFO, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    RTM_NEWLINK, ifinfomsg, message, push_attr,
};

pub(super) const IFLA_VLAN_ID: u16 = 1;

/// `RTM_NEWLINK` creating the VLAN link `name` (id `id`) on `parent` (`ip link add link
/// PARENT name NAME type vlan id ID`).
pub fn new_vlan(seq: u32, parent: u32, name: &str, id: u16) -> Vec<u8> {
    let mut data = Vec::new();
    push_attr(&mut data, IFLA_VLAN_ID, &id.to_ne_bytes());
    new_child_link(seq, parent, name, b"vlan", &data, &[])
}

/// `RTM_NEWLINK` creating link `name` of `kind` on `parent`, with `data` as its
/// `IFLA_INFO_DATA` and `extra` attributes (type, value) before the link info.
pub fn new_child_link(seq: u32, parent: u32, name: &str, kind: &[u8], data: &[u8], extra: &[(u16, &[u8])]) -> Vec<u8> {
    let mut b = ifinfomsg(0, 0, 0);
    let mut text = name.as_bytes().to_vec();
    text.push(0);
    push_attr(&mut b, IFLA_IFNAME, &text);
    push_attr(&mut b, IFLA_LINK, &parent.to_ne_bytes());
    for (kind, value) in extra {
        push_attr(&mut b, *kind, value);
    }
    let mut info = Vec::new();
    push_attr(&mut info, IFLA_INFO_KIND, kind);
    push_attr(&mut info, IFLA_INFO_DATA, data);
    push_attr(&mut b, IFLA_LINKINFO, &info);
    message(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq, &b)
}
