//! The stub resolver against loopback UDP servers made here with `simple-dns`.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use simple_dns::rdata::{A, AAAA, RData};
use simple_dns::{CLASS, Packet, PacketFlag, RCODE, ResourceRecord};

use super::*;

/// How a test server answers a query: `None` stays silent.
type Reply = fn(&Packet) -> Option<Packet<'static>>;

/// A server on a loopback port answering every query with `reply`.
fn server(reply: Reply) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let query = Packet::parse(&buf[..n]).unwrap();
            if let Some(answer) = reply(&query) {
                let _ = socket.send_to(&answer.build_bytes_vec().unwrap(), from);
            }
        }
    });
    addr
}

/// A reply to `query` with its question and `records` of `rcode`.
fn reply_with(query: &Packet, id: u16, rcode: RCODE, records: Vec<RData<'static>>) -> Packet<'static> {
    let mut p = Packet::new_reply(id);
    p.set_flags(PacketFlag::RECURSION_AVAILABLE);
    *p.rcode_mut() = rcode;
    let question = query.questions[0].clone().into_owned();
    for rdata in records {
        p.answers
            .push(ResourceRecord::new(question.qname.clone(), CLASS::IN, 60, rdata));
    }
    p.questions.push(question);
    p
}

fn wanted(query: &Packet) -> TYPE {
    match query.questions[0].qtype {
        simple_dns::QTYPE::TYPE(t) => t,
        _ => TYPE::A,
    }
}

fn get(name: &str, servers: &[SocketAddr]) -> Result<IpAddr, String> {
    resolve(name, servers, Duration::from_millis(300))
}

#[test]
fn an_a_record_is_the_address() {
    let s = server(|q| {
        let ip = A {
            address: u32::from(Ipv4Addr::new(10, 0, 2, 2)),
        };
        Some(reply_with(q, q.id(), RCODE::NoError, vec![RData::A(ip)]))
    });
    assert_eq!(get("images.ramkey.test", &[s]).unwrap(), IpAddr::from([10, 0, 2, 2]));
}

#[test]
fn without_an_a_record_the_aaaa_record_is_taken() {
    let s = server(|q| {
        let records = match wanted(q) {
            TYPE::AAAA => vec![RData::AAAA(AAAA { address: 1 })],
            _ => vec![],
        };
        Some(reply_with(q, q.id(), RCODE::NoError, records))
    });
    assert_eq!(get("v6.ramkey.test", &[s]).unwrap(), "::1".parse::<IpAddr>().unwrap());
}

#[test]
fn a_silent_server_is_passed_over_and_no_such_name_ends_the_search() {
    let silent = server(|_| None);
    let nx = server(|q| Some(reply_with(q, q.id(), RCODE::NameError, vec![])));
    let good = server(|q| {
        let ip = A {
            address: u32::from(Ipv4Addr::new(192, 0, 2, 7)),
        };
        Some(reply_with(q, q.id(), RCODE::NoError, vec![RData::A(ip)]))
    });
    assert_eq!(get("x.test", &[silent, good]).unwrap(), IpAddr::from([192, 0, 2, 7]));
    let e = get("x.test", &[nx, good]).unwrap_err();
    assert!(e.contains("says there is no such name"), "{e}");
    let e = get("x.test", &[silent]).unwrap_err();
    assert!(e.contains("no answer within"), "{e}");
}

#[test]
fn answers_to_other_queries_are_not_taken() {
    let forger = server(|q| {
        let ip = A {
            address: u32::from(Ipv4Addr::new(203, 0, 113, 66)),
        };
        Some(reply_with(
            q,
            q.id().wrapping_add(1),
            RCODE::NoError,
            vec![RData::A(ip)],
        ))
    });
    let e = get("x.test", &[forger]).unwrap_err();
    assert!(e.contains("no answer within"), "{e}");
}

#[test]
fn the_servers_come_from_resolv_conf_and_none_is_said() {
    let text = "# written by ramkey\nsearch lan\nnameserver 10.0.2.3\nnameserver fd00::53\nnameserver bogus\n";
    assert_eq!(
        nameservers(text),
        ["10.0.2.3".parse::<IpAddr>().unwrap(), "fd00::53".parse().unwrap()]
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    let e = resolve_with(&path, "images.example.com").unwrap_err();
    assert!(e.contains("names no nameserver; set [dns] resolvers"), "{e}");
}
