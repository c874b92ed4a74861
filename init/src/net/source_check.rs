//! The source check on a NIC that zones hang off: what leaves the box through it carries
//! the sender's own MAC and address, so a zone granted `NET_RAW` or `NET_ADMIN` cannot
//! spoof another host on the LAN (an ARP reply for the gateway's address, a packet from
//! someone else's address, a frame from a MAC it made up, a VLAN it was not given).
//!
//! A macvlan in bridge mode has no source check of its own, and a zone with `NET_ADMIN`
//! owns everything in its network namespace, filters on its own interface included. So the
//! check sits on the host's side, on the parent NIC's egress (tc `clsact`), where every frame
//! a macvlan sends to the wire passes (`macvlan_queue_xmit` hands it to the parent's
//! `dev_queue_xmit`). Two kinds of eBPF classifier (direct action), one filter each:
//!
//! - one per zone, at the zone's own priority, for frames from the zone's MAC (every other
//!   frame goes on to the next filter): only ARP and IPv4, untagged; an ARP's sender MAC is
//!   the zone's; with a static address, an ARP's sender address is that address (or 0.0.0.0,
//!   a probe) and an IPv4 packet's source is that address. A zone on DHCP is held to its
//!   MAC only (its address is the DHCP server's to give). The filter goes when the zone does.
//! - one for the host, last: frames from the NIC's own MAC pass, all others are dropped —
//!   a zone that changed its MAC to one nobody gave it. (The kernel refuses a macvlan the
//!   parent's MAC or another macvlan's, `EADDRINUSE`.)
//!
//! Frames between two zones on the same NIC do not pass the parent's egress (bridge mode
//! delivers them directly) and are not checked here.

use std::net::Ipv4Addr;

use super::netlink::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NetlinkError, RouteSocket, message, push_attr};
use crate::sys::bpf::{self, Insn, R0, R1, R2, R3, R4, R5};

/// What the zone filter lets out: frames from `mac`, and with `ipv4`, only from that address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneSource {
    /// The zone's MAC, the one its macvlan was made with.
    pub mac: [u8; 6],
    /// Its static address; `None` on DHCP.
    pub ipv4: Option<Ipv4Addr>,
}

/// The host's filter runs after every zone's (filters run in priority order, lowest first).
pub const HOST_PRIORITY: u16 = 0xc000;

/// A zone's MAC: locally administered, unicast, from the parent NIC's MAC and the zone's
/// name — the same on every boot (so a DHCP server gives the zone the same lease) and, with
/// the parent's MAC in it, different on every box.
pub fn zone_mac(parent: [u8; 6], zone: &str) -> [u8; 6] {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(b"ramkey zone mac\0")
        .chain_update(parent)
        .chain_update(zone.as_bytes())
        .finalize();
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&digest[..6]);
    mac[0] = (mac[0] & 0xfc) | 0x02;
    mac
}

/// Installs the checks on the NIC `index` whose own MAC is `own`: the `clsact` qdisc (if
/// missing), the host's filter, and the zone's at `priority` (replacing what a zone at that
/// priority had before).
pub fn install(
    socket: &mut RouteSocket,
    index: u32,
    own: [u8; 6],
    zone: &str,
    source: ZoneSource,
    priority: u16,
) -> Result<(), NetlinkError> {
    match socket.request("RTM_NEWQDISC (clsact)", |seq| new_clsact(seq, index)) {
        Ok(_)
        | Err(NetlinkError::Refused {
            source: nix::errno::Errno::EEXIST,
            ..
        }) => {}
        Err(e) => return Err(e),
    }
    let host = bpf::load(KIND, &host_program(own))?;
    let fd = u32::try_from(std::os::fd::AsRawFd::as_raw_fd(&host)).unwrap_or(0);
    socket.request("RTM_NEWTFILTER (host)", |seq| {
        new_filter(seq, index, HOST_PRIORITY, fd, "ramkey_host")
    })?;
    let program = bpf::load(KIND, &zone_program(source))?;
    let fd = u32::try_from(std::os::fd::AsRawFd::as_raw_fd(&program)).unwrap_or(0);
    let name = format!("ramkey_zone_{zone}");
    socket
        .request("RTM_NEWTFILTER (zone)", |seq| {
            new_filter(seq, index, priority, fd, &name)
        })
        .map(drop)
    // The program fds close here; each filter holds its own reference.
}

/// Removes the zone filter at `priority` from NIC `index` (gone already is fine).
pub fn remove(socket: &mut RouteSocket, index: u32, priority: u16) -> Result<(), NetlinkError> {
    match socket.request("RTM_DELTFILTER", |seq| del_filter(seq, index, priority)) {
        Ok(_)
        | Err(NetlinkError::Refused {
            source: nix::errno::Errno::ENOENT | nix::errno::Errno::EINVAL,
            ..
        }) => Ok(()),
        Err(e) => Err(e),
    }
}

// rtnetlink message types and tc attributes of `<linux/rtnetlink.h>`, `<linux/pkt_sched.h>`
// and `<linux/pkt_cls.h>`.
const RTM_NEWQDISC: u16 = 36;
const RTM_NEWTFILTER: u16 = 44;
const RTM_DELTFILTER: u16 = 45;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_BPF_FD: u16 = 6;
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_FLAGS: u16 = 8;
const TCA_BPF_FLAG_ACT_DIRECT: u32 = 1;
/// The `clsact` qdisc's parent and handle (`TC_H_CLSACT`, `ffff:`).
const TC_H_CLSACT: u32 = 0xffff_fff1;
const CLSACT_HANDLE: u32 = 0xffff_0000;
/// Filters on egress hang off `ffff:fff3` (`TC_H_MIN_EGRESS`).
const EGRESS_PARENT: u32 = 0xffff_fff3;
/// `ETH_P_ALL` in network byte order, as `tcm_info`'s protocol half wants it.
const ALL_PROTOCOLS: u16 = 0x0003u16.to_be();

/// `struct tcmsg`.
fn tcmsg(index: u32, handle: u32, parent: u32, info: u32) -> Vec<u8> {
    let mut b = vec![0u8; 4];
    b.extend_from_slice(&index.to_ne_bytes());
    b.extend_from_slice(&handle.to_ne_bytes());
    b.extend_from_slice(&parent.to_ne_bytes());
    b.extend_from_slice(&info.to_ne_bytes());
    b
}

fn filter_info(priority: u16) -> u32 {
    (u32::from(priority) << 16) | u32::from(ALL_PROTOCOLS)
}

/// `tc qdisc add dev INDEX clsact`.
fn new_clsact(seq: u32, index: u32) -> Vec<u8> {
    let mut b = tcmsg(index, CLSACT_HANDLE, TC_H_CLSACT, 0);
    push_attr(&mut b, TCA_KIND, b"clsact\0");
    message(RTM_NEWQDISC, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq, &b)
}

/// `tc filter replace dev INDEX egress prio PRIORITY handle 1 bpf direct-action fd FD`.
fn new_filter(seq: u32, index: u32, priority: u16, fd: u32, name: &str) -> Vec<u8> {
    let mut b = tcmsg(index, 1, EGRESS_PARENT, filter_info(priority));
    push_attr(&mut b, TCA_KIND, b"bpf\0");
    let mut options = Vec::new();
    push_attr(&mut options, TCA_BPF_FD, &fd.to_ne_bytes());
    let mut text = name.as_bytes().to_vec();
    text.push(0);
    push_attr(&mut options, TCA_BPF_NAME, &text);
    push_attr(&mut options, TCA_BPF_FLAGS, &TCA_BPF_FLAG_ACT_DIRECT.to_ne_bytes());
    push_attr(&mut b, TCA_OPTIONS, &options);
    message(RTM_NEWTFILTER, NLM_F_ACK | NLM_F_CREATE, seq, &b)
}

/// `tc filter del dev INDEX egress prio PRIORITY`.
fn del_filter(seq: u32, index: u32, priority: u16) -> Vec<u8> {
    message(
        RTM_DELTFILTER,
        NLM_F_ACK,
        seq,
        &tcmsg(index, 0, EGRESS_PARENT, filter_info(priority)),
    )
}

const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const KIND: bpf::Kind = bpf::Kind {
    prog_type: BPF_PROG_TYPE_SCHED_CLS,
    attach_type: 0,
    name: "ramkey_source",
};

// What a direct-action classifier returns (`TC_ACT_*`).
const TC_ACT_UNSPEC: i32 = -1;
const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;

// Offsets in `struct __sk_buff`.
const SKB_VLAN_PRESENT: i16 = 20;
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;

// Offsets in an Ethernet frame carrying ARP or IPv4.
const ETH_SOURCE: i16 = 6;
const ETH_TYPE: i16 = 12;
const ETH_HEADER: i32 = 14;
const ARP_SENDER_MAC: i16 = 22;
const ARP_SENDER_IP: i16 = 28;
const ARP_END: i32 = 42;
const IPV4_SOURCE: i16 = 26;
const IPV4_END: i32 = 34;

/// An ethertype as the program reads it: the frame's two bytes as a native `u16`.
const fn ethertype(value: u16) -> u32 {
    u16::from_ne_bytes(value.to_be_bytes()) as u32
}

/// A MAC as the program reads it: a native `u32` of its first four bytes, a `u16` of the rest.
fn mac_words(mac: [u8; 6]) -> (u32, u32) {
    (
        u32::from_ne_bytes([mac[0], mac[1], mac[2], mac[3]]),
        u32::from(u16::from_ne_bytes([mac[4], mac[5]])),
    )
}

/// Forward jump targets, resolved when the program is complete.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    Out,
    Pass,
    Arp,
}

/// A program under construction: instructions, some of them jumps to a [`Label`].
#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    jumps: Vec<(usize, Label)>,
    labels: Vec<(Label, usize)>,
}

impl Asm {
    fn op(&mut self, insn: Insn) -> &mut Self {
        self.insns.push(insn);
        self
    }

    /// `insn` (a jump) goes to `label`.
    fn to(&mut self, insn: Insn, label: Label) -> &mut Self {
        self.jumps.push((self.insns.len(), label));
        self.op(insn)
    }

    fn label(&mut self, label: Label) -> &mut Self {
        self.labels.push((label, self.insns.len()));
        self
    }

    /// `r2` = the frame, `r3` = its end; out unless it is `len` bytes long at least.
    fn frame_of(&mut self, len: i32) -> &mut Self {
        self.op(bpf::mov_reg(R4, R2))
            .op(bpf::add(R4, len))
            .to(bpf::jgt_reg(R4, R3, 0), Label::Out)
    }

    /// Out unless the six bytes at `off` in the frame are `mac`.
    fn mac_at(&mut self, off: i16, mac: [u8; 6]) -> &mut Self {
        let (low, high) = mac_words(mac);
        self.op(bpf::ldx_w(R5, R2, off))
            .to(bpf::jne(R5, low, 0), Label::Out)
            .op(bpf::ldx_h(R5, R2, off + 4))
            .to(bpf::jne(R5, high, 0), Label::Out)
    }

    fn finish(mut self) -> Vec<Insn> {
        for (at, label) in self.jumps {
            let target = self.labels.iter().find(|(l, _)| *l == label).map(|(_, t)| *t);
            let target = target.unwrap_or(self.insns.len() - 1);
            // Programs here are a few dozen instructions long.
            self.insns[at].off = i16::try_from(target - at - 1).unwrap_or(i16::MAX);
        }
        self.insns
    }
}

/// The zone's filter (see the module's doc): its own frames pass or are dropped, frames of
/// other MACs go on to the next filter.
fn zone_program(source: ZoneSource) -> Vec<Insn> {
    let mut a = Asm::default();
    a.op(bpf::mov(R0, TC_ACT_UNSPEC))
        .op(bpf::ldx_w(R2, R1, SKB_DATA))
        .op(bpf::ldx_w(R3, R1, SKB_DATA_END))
        .frame_of(ETH_HEADER)
        .mac_at(ETH_SOURCE, source.mac)
        // The zone's frame: dropped unless it passes every check below.
        .op(bpf::mov(R0, TC_ACT_SHOT))
        .op(bpf::ldx_w(R5, R1, SKB_VLAN_PRESENT))
        .to(bpf::jne(R5, 0, 0), Label::Out)
        .op(bpf::ldx_h(R5, R2, ETH_TYPE))
        .to(bpf::jeq(R5, ethertype(0x0806), 0), Label::Arp)
        .to(bpf::jne(R5, ethertype(0x0800), 0), Label::Out)
        .frame_of(IPV4_END);
    if let Some(ip) = source.ipv4 {
        a.op(bpf::ldx_w(R5, R2, IPV4_SOURCE))
            .to(bpf::jne(R5, u32::from_ne_bytes(ip.octets()), 0), Label::Out);
    }
    a.to(bpf::ja(0), Label::Pass)
        .label(Label::Arp)
        .frame_of(ARP_END)
        .mac_at(ARP_SENDER_MAC, source.mac);
    if let Some(ip) = source.ipv4 {
        a.op(bpf::ldx_w(R5, R2, ARP_SENDER_IP))
            .to(bpf::jeq(R5, 0, 0), Label::Pass)
            .to(bpf::jne(R5, u32::from_ne_bytes(ip.octets()), 0), Label::Out);
    }
    a.label(Label::Pass)
        .op(bpf::mov(R0, TC_ACT_OK))
        .label(Label::Out)
        .op(bpf::exit());
    a.finish()
}

/// The host's filter: the NIC's own frames pass, every other MAC is dropped.
fn host_program(own: [u8; 6]) -> Vec<Insn> {
    let mut a = Asm::default();
    a.op(bpf::mov(R0, TC_ACT_SHOT))
        .op(bpf::ldx_w(R2, R1, SKB_DATA))
        .op(bpf::ldx_w(R3, R1, SKB_DATA_END))
        .frame_of(ETH_HEADER)
        .mac_at(ETH_SOURCE, own)
        .op(bpf::mov(R0, TC_ACT_OK))
        .label(Label::Out)
        .op(bpf::exit());
    a.finish()
}

#[cfg(test)]
#[path = "source_check_tests.rs"]
mod tests;
