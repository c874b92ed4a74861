//! What `ramkey run` wires the machine's network to: host ports forwarded to the guest
//! ([`Forward`]) and further NICs joined to another machine's or to a hub ([`Link`]).

use std::fmt;
use std::str::FromStr;

/// A host port forwarded to a guest port: `HOST:GUEST`, or `HOST:ADDRESS:GUEST` to reach a
/// zone's own address on QEMU's user network (`8080:10.0.2.16:80`); TCP, host side on
/// 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub host: u16,
    pub guest: u16,
    /// The guest address; the box's own (QEMU's first DHCP address) when absent.
    pub address: Option<std::net::Ipv4Addr>,
}

impl FromStr for Forward {
    type Err = String;

    fn from_str(s: &str) -> Result<Forward, String> {
        let (host, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not HOST:GUEST or HOST:ADDRESS:GUEST (e.g. 8080:80)"))?;
        let (address, guest) = match rest.rsplit_once(':') {
            Some((address, guest)) => (
                Some(
                    address
                        .parse()
                        .map_err(|_| format!("{address:?} in {s:?} is not an IPv4 address"))?,
                ),
                guest,
            ),
            None => (None, rest),
        };
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{p:?} in {s:?} is not a port number (1-65535)"))
        };
        Ok(Forward {
            host: port(host)?,
            guest: port(guest)?,
            address,
        })
    }
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            Some(a) => write!(f, "127.0.0.1:{} -> {a}:{}", self.host, self.guest),
            None => write!(f, "127.0.0.1:{} -> guest port {}", self.host, self.guest),
        }
    }
}

/// A further NIC wired to another machine's: Ethernet frames over a TCP connection on
/// 127.0.0.1 (QEMU's socket netdev), so two `ramkey run`s share a network of their own — an
/// office appliance and a client, say. `listen:PORT` on the machine started first,
/// `connect:PORT` on the other. Or `udp:LOCAL:REMOTE`: one UDP datagram per frame from
/// 127.0.0.1:LOCAL to 127.0.0.1:REMOTE (QEMU's dgram netdev), either straight to another
/// machine's `udp:REMOTE:LOCAL` or to a [`super::Hub`] on REMOTE that joins any number of
/// machines into one segment; a machine killed and started again on the same LOCAL port is
/// simply back on it. The NIC's MAC is fixed by the side and the port (`52:54:00:4c:..`
/// listening, `52:54:00:43:..` connecting, `52:54:00:55:..` with the LOCAL port over UDP), so
/// a config can select it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Listen(u16),
    Connect(u16),
    Udp { local: u16, remote: u16 },
}

impl Link {
    /// The NIC's MAC address, `aa:bb:..` as configs write it.
    pub fn mac(&self) -> String {
        let (side, port) = match self {
            Link::Listen(port) => (b'L', port),
            Link::Connect(port) => (b'C', port),
            Link::Udp { local, .. } => (b'U', local),
        };
        let [hi, lo] = port.to_be_bytes();
        format!("52:54:00:{side:02x}:{hi:02x}:{lo:02x}")
    }

    /// The other machine's end of this link (over UDP: the machine joined straight to this
    /// one, ports swapped).
    pub fn peer(&self) -> Link {
        match *self {
            Link::Listen(port) => Link::Connect(port),
            Link::Connect(port) => Link::Listen(port),
            Link::Udp { local, remote } => Link::Udp {
                local: remote,
                remote: local,
            },
        }
    }

    /// QEMU's `-netdev` value for this NIC, with the id `id`.
    pub(super) fn netdev(&self, id: &str) -> String {
        match self {
            Link::Listen(port) => format!("socket,id={id},listen=127.0.0.1:{port}"),
            Link::Connect(port) => format!("socket,id={id},connect=127.0.0.1:{port}"),
            Link::Udp { local, remote } => format!(
                "dgram,id={id},local.type=inet,local.host=127.0.0.1,local.port={local},\
                 remote.type=inet,remote.host=127.0.0.1,remote.port={remote}"
            ),
        }
    }
}

impl FromStr for Link {
    type Err = String;

    fn from_str(s: &str) -> Result<Link, String> {
        let bad = || {
            format!(
                "{s:?} is not listen:PORT, connect:PORT or udp:LOCAL:REMOTE \
                 (e.g. listen:7001 or udp:7101:7100)"
            )
        };
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
        let (side, rest) = s.split_once(':').ok_or_else(bad)?;
        match side {
            "listen" => Ok(Link::Listen(port(rest)?)),
            "connect" => Ok(Link::Connect(port(rest)?)),
            "udp" => {
                let (local, remote) = rest.split_once(':').ok_or_else(bad)?;
                let (local, remote) = (port(local)?, port(remote)?);
                if local == remote {
                    return Err(format!("{s:?} sends to its own port: LOCAL and REMOTE must differ"));
                }
                Ok(Link::Udp { local, remote })
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Link::Listen(port) => write!(f, "listening on 127.0.0.1:{port}, MAC {}", self.mac()),
            Link::Connect(port) => write!(f, "connected to 127.0.0.1:{port}, MAC {}", self.mac()),
            Link::Udp { local, remote } => write!(
                f,
                "UDP from 127.0.0.1:{local} to 127.0.0.1:{remote}, MAC {}",
                self.mac()
            ),
        }
    }
}
