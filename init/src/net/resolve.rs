//! Host names to addresses for the box's own clients (image sources, the config URL, NTP):
//! a DNS stub resolver over UDP asking the `nameserver`s of `/etc/resolv.conf`, which the
//! network step writes from `[dns] resolvers` or the DHCP lease. The static PID 1 cannot use
//! glibc's resolver (no NSS), so the queries are built and read here with `simple-dns`.
//!
//! One A query per server in order (AAAA when there is no A), each with a random ID from a
//! random port, answered within [`TIMEOUT`]; the first answer with addresses wins, a name
//! error ends the search. No cache, no search domains: names are taken as fully qualified.

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use simple_dns::rdata::RData;
use simple_dns::{CLASS, Name, Packet, PacketFlag, Question, RCODE, TYPE};

/// How long one server is waited for.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// The `nameserver` lines of a `resolv.conf` text.
pub fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse().ok())
        .collect()
}

/// [`resolve`] with the servers of the `resolv.conf` at `path`; a message that says what
/// is wrong and what to do.
pub fn resolve_with(path: &Path, name: &str) -> Result<IpAddr, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let servers = nameservers(&text);
    if servers.is_empty() {
        return Err(format!(
            "cannot resolve {name:?}: {} names no nameserver; set [dns] resolvers in the usbkey config \
             (or use a numeric address)",
            path.display()
        ));
    }
    let servers: Vec<SocketAddr> = servers.into_iter().map(|ip| SocketAddr::new(ip, 53)).collect();
    resolve(name, &servers, TIMEOUT).map_err(|e| format!("cannot resolve {name:?}: {e}"))
}

/// The first address the `servers` give for `name`, A records before AAAA.
pub fn resolve(name: &str, servers: &[SocketAddr], timeout: Duration) -> Result<IpAddr, String> {
    let mut problems = Vec::new();
    for &server in servers {
        for kind in [TYPE::A, TYPE::AAAA] {
            match ask(name, kind, server, timeout) {
                Ok(Some(ip)) => return Ok(ip),
                Ok(None) => {}
                Err(Answer::NoSuchName) => return Err(format!("{server} says there is no such name")),
                Err(Answer::Stray) => {
                    problems.push(format!("{server}: only answers to other queries"));
                    break;
                }
                Err(Answer::Failed(why)) => {
                    problems.push(format!("{server}: {why}"));
                    break;
                }
            }
        }
    }
    if problems.is_empty() {
        Err(format!("no address for it ({} asked)", list(servers)))
    } else {
        Err(problems.join("; "))
    }
}

fn list(servers: &[SocketAddr]) -> String {
    servers.iter().map(SocketAddr::to_string).collect::<Vec<_>>().join(", ")
}

/// Why a server gave no address.
#[derive(Debug, PartialEq)]
enum Answer {
    /// NXDOMAIN: the name does not exist; other servers would say the same.
    NoSuchName,
    /// An answer to another query (late, or forged): not this one's.
    Stray,
    /// No usable answer from this server.
    Failed(String),
}

/// A random query ID (std's hasher keys come from the kernel's random source).
fn random_id() -> u16 {
    (std::collections::hash_map::RandomState::new().build_hasher().finish() & 0xffff) as u16
}

/// The query for `name`'s `kind` records, with recursion desired.
fn query(id: u16, name: &str, kind: TYPE) -> Result<Vec<u8>, String> {
    let mut packet = Packet::new_query(id);
    packet.set_flags(PacketFlag::RECURSION_DESIRED);
    let qname = Name::new(name).map_err(|e| format!("not a host name: {e}"))?;
    packet
        .questions
        .push(Question::new(qname, kind.into(), CLASS::IN.into(), false));
    packet.build_bytes_vec().map_err(|e| e.to_string())
}

/// The first address of an answer to query `id`; `None` for an answer without one.
fn read_answer(id: u16, bytes: &[u8]) -> Result<Option<IpAddr>, Answer> {
    let packet = Packet::parse(bytes).map_err(|e| Answer::Failed(format!("an unreadable answer: {e}")))?;
    if packet.id() != id || !packet.has_flags(PacketFlag::RESPONSE) {
        return Err(Answer::Stray);
    }
    match packet.rcode() {
        RCODE::NoError => {}
        RCODE::NameError => return Err(Answer::NoSuchName),
        other => return Err(Answer::Failed(format!("it answered {other:?}"))),
    }
    Ok(packet.answers.iter().find_map(|record| match &record.rdata {
        RData::A(a) => Some(IpAddr::V4(Ipv4Addr::from(a.address))),
        RData::AAAA(aaaa) => Some(IpAddr::V6(Ipv6Addr::from(aaaa.address))),
        _ => None,
    }))
}

/// One query to one server; answers to other queries (stale or spoofed) are skipped.
fn ask(name: &str, kind: TYPE, server: SocketAddr, timeout: Duration) -> Result<Option<IpAddr>, Answer> {
    let failed = |e: std::io::Error| Answer::Failed(e.to_string());
    let id = random_id();
    let bytes = query(id, name, kind).map_err(Answer::Failed)?;
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).map_err(failed)?;
    socket.connect(server).map_err(failed)?;
    socket.send(&bytes).map_err(failed)?;
    let started = Instant::now();
    let mut buf = [0u8; 1500];
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(Answer::Failed(format!("no answer within {} s", timeout.as_secs())));
        }
        socket.set_read_timeout(Some(left)).map_err(failed)?;
        match socket.recv(&mut buf) {
            Ok(n) => match read_answer(id, &buf[..n]) {
                Err(Answer::Stray) => {}
                answer => return answer,
            },
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failed(e)),
        }
    }
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
