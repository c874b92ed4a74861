//! Tests of the source check: the programs are loaded into and run by the kernel
//! (`BPF_PROG_TEST_RUN`) on hand-made frames, and the qdisc and filters are installed on
//! the loopback device of a network namespace of the test's own. They need root (as
//! `cargo xtask test` runs them) and fail without it.

use super::*;
use crate::net::netlink::Netlink;

const ZONE: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
const HOST: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const STRANGER: [u8; 6] = [0x02, 0x66, 0x66, 0x66, 0x66, 0x66];
const OWN_IP: [u8; 4] = [192, 168, 1, 1];
const GATEWAY: [u8; 4] = [192, 168, 1, 254];

const OK: u32 = TC_ACT_OK as u32;
const SHOT: u32 = TC_ACT_SHOT as u32;
const UNSPEC: u32 = TC_ACT_UNSPEC as u32;

fn ethernet(source: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&source);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    // Padded to the 60 bytes of a minimal frame, as a NIC would.
    f.resize(f.len().max(60), 0);
    f
}

/// An ARP reply from `source`, whose ARP header says `sender_mac` has `sender_ip`.
fn arp(source: [u8; 6], sender_mac: [u8; 6], sender_ip: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0, 1, 8, 0, 6, 4, 0, 2];
    p.extend_from_slice(&sender_mac);
    p.extend_from_slice(&sender_ip);
    p.extend_from_slice(&[0xff; 6]);
    p.extend_from_slice(&GATEWAY);
    ethernet(source, 0x0806, &p)
}

/// A UDP packet from `source` with IPv4 source address `ip` (checksums left zero).
fn ipv4(source: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0];
    p.extend_from_slice(&ip);
    p.extend_from_slice(&GATEWAY);
    p.extend_from_slice(&[0, 68, 0, 67, 0, 8, 0, 0]);
    ethernet(source, 0x0800, &p)
}

fn run(insns: &[Insn], frame: &[u8]) -> u32 {
    let prog = bpf::load(KIND, insns).unwrap_or_else(|e| panic!("the kernel refused the program: {e}"));
    bpf::test_run(&prog, frame).unwrap_or_else(|e| panic!("{e} (this test needs root)"))
}

fn static_zone() -> Vec<Insn> {
    zone_program(ZoneSource {
        mac: ZONE,
        ipv4: Some(Ipv4Addr::from(OWN_IP)),
    })
}

#[test]
fn a_zone_with_a_static_address_sends_only_as_itself() {
    let prog = static_zone();
    let cases: [(&str, Vec<u8>, u32); 10] = [
        ("own ARP reply", arp(ZONE, ZONE, OWN_IP), OK),
        ("ARP probe", arp(ZONE, ZONE, [0; 4]), OK),
        ("ARP claiming the gateway", arp(ZONE, ZONE, GATEWAY), SHOT),
        ("ARP naming another MAC", arp(ZONE, STRANGER, OWN_IP), SHOT),
        ("own IPv4", ipv4(ZONE, OWN_IP), OK),
        ("IPv4 from the gateway's address", ipv4(ZONE, GATEWAY), SHOT),
        ("IPv4 from 0.0.0.0", ipv4(ZONE, [0; 4]), SHOT),
        ("IPv6", ethernet(ZONE, 0x86dd, &[0x60; 40]), SHOT),
        ("802.1Q tag in the frame", ethernet(ZONE, 0x8100, &[0, 5, 8, 0]), SHOT),
        ("another MAC's frame", arp(STRANGER, STRANGER, GATEWAY), UNSPEC),
    ];
    for (what, frame, expected) in cases {
        assert_eq!(run(&prog, &frame), expected, "{what}");
    }
}

#[test]
fn a_zone_on_dhcp_is_held_to_its_mac() {
    let prog = zone_program(ZoneSource { mac: ZONE, ipv4: None });
    assert_eq!(run(&prog, &ipv4(ZONE, [0; 4])), OK, "DHCP discover");
    assert_eq!(run(&prog, &ipv4(ZONE, OWN_IP)), OK);
    assert_eq!(run(&prog, &arp(ZONE, ZONE, OWN_IP)), OK);
    assert_eq!(run(&prog, &arp(ZONE, STRANGER, OWN_IP)), SHOT);
    assert_eq!(run(&prog, &ethernet(ZONE, 0x8100, &[0, 5, 8, 0])), SHOT);
    assert_eq!(run(&prog, &ipv4(STRANGER, OWN_IP)), UNSPEC);
}

#[test]
fn the_host_filter_passes_only_the_nics_own_mac() {
    let prog = host_program(HOST);
    assert_eq!(run(&prog, &arp(HOST, HOST, GATEWAY)), OK);
    assert_eq!(run(&prog, &ethernet(HOST, 0x86dd, &[0x60; 40])), OK);
    assert_eq!(run(&prog, &arp(STRANGER, STRANGER, OWN_IP)), SHOT);
    assert_eq!(run(&prog, &ipv4(ZONE, OWN_IP)), SHOT);
}

#[test]
fn zone_macs_are_stable_local_unicast_and_differ_by_zone_and_box() {
    let web = zone_mac(HOST, "web");
    assert_eq!(web, zone_mac(HOST, "web"));
    assert_eq!(web[0] & 0x03, 0x02, "locally administered, unicast: {web:02x?}");
    assert_ne!(web, zone_mac(HOST, "office"));
    assert_ne!(web, zone_mac(STRANGER, "web"));
}

#[test]
fn filter_messages_name_egress_the_priority_and_direct_action() {
    let m = new_filter(7, 3, 5, 42, "ramkey_zone_web");
    let has = |needle: &[u8]| m.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"bpf\0"));
    assert!(has(b"ramkey_zone_web\0"));
    assert!(has(&EGRESS_PARENT.to_ne_bytes()));
    assert!(has(&filter_info(5).to_ne_bytes()));
    assert!(has(&[8, 0, 8, 0, 1, 0, 0, 0]), "TCA_BPF_FLAGS direct action");
    assert!(has(&[8, 0, 6, 0, 42, 0, 0, 0]), "TCA_BPF_FD");
    assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize, m.len());
}

/// Installs, replaces and removes the filters on `lo` in a network namespace of a thread of
/// its own (`unshare(CLONE_NEWNET)` moves only the calling thread).
#[test]
fn the_kernel_takes_the_qdisc_and_the_filters() {
    let outcome = std::thread::spawn(|| -> Result<(), String> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("unshare(CLONE_NEWNET): {e} (this test needs root)"))?;
        let mut socket = RouteSocket::open().map_err(|e| e.to_string())?;
        let lo = socket
            .links()
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|l| l.name == "lo")
            .ok_or("no lo")?;
        let source = ZoneSource {
            mac: ZONE,
            ipv4: Some(Ipv4Addr::from(OWN_IP)),
        };
        install(&mut socket, lo.index, [0; 6], "web", source, 3).map_err(|e| format!("install: {e}"))?;
        // A restart of the zone installs again: the qdisc exists, the filters are replaced.
        install(&mut socket, lo.index, [0; 6], "web", source, 3).map_err(|e| format!("again: {e}"))?;
        remove(&mut socket, lo.index, 3).map_err(|e| format!("remove: {e}"))?;
        remove(&mut socket, lo.index, 3).map_err(|e| format!("remove again: {e}"))
    })
    .join()
    .expect("the test thread panicked");
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
