//! Tests of the network step with the recording netlink fake and scripted DHCP servers.

use super::dhcp::fake::{Log, open_servers};
use super::netlink::fake::{RecordingNetlink, ether, lo};
use super::*;
use crate::base::clock::FakeClock;

fn run(netlink: &mut RecordingNetlink, serving: &'static str) -> (Result<NetReport, NetError>, Vec<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    let log = Log::default();
    let mut open = open_servers(|name| name == serving, &log);
    let clock = FakeClock::new(Duration::from_secs(4), Duration::from_millis(20));
    let mut pauses = 0;
    let mut pause = |_| pauses += 1;
    let result = configure(netlink, &mut open, &clock, &mut pause, &resolv, None);
    let resolv = std::fs::read_to_string(&resolv).unwrap_or_default();
    let log = log.borrow().clone();
    (result, log, resolv)
}

#[test]
fn second_nic_gets_the_lease() {
    let mut nl = RecordingNetlink::with(vec![lo(), ether(2, "eth0", 1), ether(3, "eth1", 2)]);
    let (result, log, resolv) = run(&mut nl, "eth1");
    let report = result.unwrap();
    assert_eq!(report.link.name, "eth1");
    assert_eq!(nl.calls[..3], ["up lo", "up eth0", "up eth1"]);
    assert_eq!(nl.calls[3..], ["addr eth1 10.0.2.15/24", "route eth1 via 10.0.2.2"]);
    assert_eq!(log.iter().filter(|l| l.starts_with("eth0")).count(), 4, "{log:?}");
    assert_eq!(log.iter().filter(|l| l.starts_with("eth1")).count(), 2, "{log:?}");
    assert!(resolv.contains("nameserver 10.0.2.3\n"), "{resolv}");
    let line = report.line();
    assert!(
        line.starts_with("network: eth1 (52:54:00:12:34:02) got 10.0.2.15/24 router 10.0.2.2 dns 10.0.2.3 by DHCP in "),
        "{line}"
    );
}

#[test]
fn late_nic_is_waited_for() {
    let mut nl = RecordingNetlink::with(vec![lo()]);
    nl.late = Some((3, ether(2, "eth0", 1)));
    let (result, _, _) = run(&mut nl, "eth0");
    assert_eq!(result.unwrap().link.name, "eth0");
}

#[test]
fn no_nic_and_no_lease_are_errors() {
    let mut nl = RecordingNetlink::with(vec![lo()]);
    let (result, _, _) = run(&mut nl, "eth0");
    assert!(matches!(result, Err(NetError::NoNic)));
    assert_eq!(nl.calls, ["up lo"]);

    let mut nl = RecordingNetlink::with(vec![ether(2, "eth0", 1)]);
    let (result, _, _) = run(&mut nl, "none");
    let err = result.unwrap_err().to_string();
    assert!(
        err.starts_with("network: no DHCP lease on any interface: eth0: no DHCP lease"),
        "{err}"
    );
}

#[test]
fn resolv_conf_with_domain() {
    let lease = Lease {
        address: Ipv4Addr::new(10, 0, 0, 5),
        prefix: 8,
        router: None,
        dns: vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(9, 9, 9, 9)],
        domain: Some("lan".into()),
        server: None,
        lease_secs: None,
        renew_secs: None,
    };
    assert_eq!(
        resolv_conf_text("eth0", &lease),
        "# written by the Ramkey init from the DHCP lease on eth0\nsearch lan\nnameserver 1.1.1.1\nnameserver 9.9.9.9\n"
    );
}
