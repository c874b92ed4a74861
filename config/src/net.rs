//! Network value checks: CIDR addresses, MACs, host names, interface names, `host:port`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address with its prefix length, as written in CIDR form (`192.168.1.2/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The host address.
    pub addr: IpAddr,
    /// The prefix length (0..=32 for IPv4, 0..=128 for IPv6).
    pub prefix: u8,
}

impl Cidr {
    fn max_prefix(addr: IpAddr) -> u8 {
        if addr.is_ipv4() { 32 } else { 128 }
    }

    fn mask(self) -> u128 {
        let bits = u32::from(Self::max_prefix(self.addr));
        let prefix = u32::from(self.prefix);
        if prefix == 0 {
            0
        } else {
            (u128::MAX << (bits - prefix)) & width_mask(bits)
        }
    }

    fn bits(addr: IpAddr) -> u128 {
        match addr {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        }
    }

    fn from_bits(v4: bool, bits: u128) -> IpAddr {
        if v4 {
            // The value was masked to 32 bits; the fallback is never taken.
            IpAddr::V4(Ipv4Addr::from(u32::try_from(bits).unwrap_or(u32::MAX)))
        } else {
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }

    /// The network address (host bits zero).
    #[must_use]
    pub fn network(self) -> IpAddr {
        Self::from_bits(self.addr.is_ipv4(), Self::bits(self.addr) & self.mask())
    }

    /// The broadcast address (host bits one); for IPv6 the last address of the subnet.
    #[must_use]
    pub fn broadcast(self) -> IpAddr {
        let bits = u32::from(Self::max_prefix(self.addr));
        let all = Self::bits(self.addr) | (!self.mask() & width_mask(bits));
        Self::from_bits(self.addr.is_ipv4(), all)
    }

    /// Whether `other` is inside this subnet.
    #[must_use]
    pub fn contains(self, other: IpAddr) -> bool {
        other.is_ipv4() == self.addr.is_ipv4() && Self::bits(other) & self.mask() == Self::bits(self.addr) & self.mask()
    }

    /// Why this address cannot be a host's: the network or broadcast address of its subnet.
    /// /31 and /32 (/127 and /128) are exempt; IPv6 has no broadcast.
    #[must_use]
    pub fn host_problem(self) -> Option<&'static str> {
        let max = Self::max_prefix(self.addr);
        if self.prefix + 1 >= max {
            return None;
        }
        if self.addr == self.network() {
            return Some("it is the network address of its subnet");
        }
        if self.addr.is_ipv4() && self.addr == self.broadcast() {
            return Some("it is the broadcast address of its subnet");
        }
        None
    }

    /// The subnet in CIDR form (`192.168.1.0/24`).
    #[must_use]
    pub fn subnet(self) -> Self {
        Self {
            addr: self.network(),
            prefix: self.prefix,
        }
    }
}

fn width_mask(bits: u32) -> u128 {
    if bits >= 128 { u128::MAX } else { (1u128 << bits) - 1 }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| "expected ADDRESS/PREFIX, e.g. 192.168.1.2/24".to_owned())?;
        let addr: IpAddr = addr.parse().map_err(|_| format!("{addr:?} is not an IP address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("{prefix:?} is not a prefix length"))?;
        if prefix > Self::max_prefix(addr) {
            return Err(format!("prefix /{prefix} is longer than /{}", Self::max_prefix(addr)));
        }
        Ok(Self { addr, prefix })
    }
}

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for MacAddr {
    type Err = String;

    /// Accepts `aa:bb:cc:dd:ee:ff` or `aa-bb-...`, and SmartOS's unpadded `0:c:29:1:2:3`.
    fn from_str(s: &str) -> Result<Self, String> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let parts: Vec<&str> = s.split(sep).collect();
        if parts.len() != 6 {
            return Err("expected six hex octets, e.g. 52:54:00:12:34:56".to_owned());
        }
        let mut out = [0u8; 6];
        for (slot, part) in out.iter_mut().zip(&parts) {
            if part.is_empty() || part.len() > 2 {
                return Err(format!("{part:?} is not a hex octet"));
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| format!("{part:?} is not a hex octet"))?;
        }
        Ok(Self(out))
    }
}

/// Why `s` is not an RFC 1123 host label (1-63 letters, digits and inner hyphens).
#[must_use]
pub fn label_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        Some("it is empty")
    } else if s.len() > 63 {
        Some("it is longer than 63 characters")
    } else if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Some("only letters, digits and '-' are allowed")
    } else if s.starts_with('-') || s.ends_with('-') {
        Some("it cannot start or end with '-'")
    } else {
        None
    }
}

/// Why `s` is not a DNS name (dot-separated labels, 253 characters at most).
#[must_use]
pub fn domain_problem(s: &str) -> Option<&'static str> {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.len() > 253 {
        return Some("it is longer than 253 characters");
    }
    s.split('.').find_map(label_problem)
}

/// Why `s` is not a host name or IP address.
#[must_use]
pub fn host_problem(s: &str) -> Option<&'static str> {
    if s.parse::<IpAddr>().is_ok() {
        None
    } else {
        domain_problem(s)
    }
}

/// Why `s` is not a Linux interface name (1-15 bytes, no '/', ':' or whitespace).
#[must_use]
pub fn ifname_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() || s.len() > 15 {
        Some("an interface name has 1 to 15 characters")
    } else if s == "." || s == ".." || s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        Some("an interface name has no '/', ':' or spaces")
    } else {
        None
    }
}

/// Why `s` is not a tag or name: a lowercase letter, then letters, digits, '_' or '-' (1-32).
#[must_use]
pub fn ident_problem(s: &str) -> Option<&'static str> {
    let mut chars = s.chars();
    match chars.next() {
        None => Some("it is empty"),
        Some(c) if !c.is_ascii_lowercase() => Some("it must start with a lowercase letter"),
        _ if s.len() > 32 => Some("it is longer than 32 characters"),
        _ if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') => {
            Some("only lowercase letters, digits, '_' and '-' are allowed")
        }
        _ => None,
    }
}

/// A `host:port` pair (`logs.example.com:514`, `10.0.0.5:514`, `[2001:db8::1]:514`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// A host name or IP address.
    pub host: String,
    /// The port, 1-65535.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, port) = rest.split_once("]:").ok_or("expected [IPV6]:PORT")?;
            if host.parse::<Ipv6Addr>().is_err() {
                return Err(format!("{host:?} is not an IPv6 address"));
            }
            (host, port)
        } else {
            let (host, port) = s
                .rsplit_once(':')
                .ok_or("expected HOST:PORT, e.g. logs.example.com:514")?;
            if let Some(problem) = host_problem(host) {
                return Err(format!("host {host:?}: {problem}"));
            }
            (host, port)
        };
        let port: u16 = port.parse().map_err(|_| format!("{port:?} is not a port"))?;
        if port == 0 {
            return Err("port 0 is not a port".to_owned());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().expect("valid cidr")
    }

    #[test]
    fn cidr_math() {
        let c = cidr("192.168.1.7/24");
        assert_eq!(c.subnet().to_string(), "192.168.1.0/24");
        assert_eq!(c.broadcast().to_string(), "192.168.1.255");
        assert!(c.contains("192.168.1.1".parse().expect("ip")));
        assert!(!c.contains("192.168.2.1".parse().expect("ip")));
        assert!(!c.contains("::1".parse().expect("ip")));
        assert!(cidr("10.0.0.0/31").host_problem().is_none());
        assert!(cidr("10.0.0.0/8").host_problem().is_some());
        assert!(cidr("10.255.255.255/8").host_problem().is_some());
        assert!(cidr("0.0.0.0/0").contains("8.8.8.8".parse().expect("ip")));
        assert!(cidr("2001:db8::/64").host_problem().is_some());
        assert!(cidr("2001:db8::ffff:ffff:ffff:ffff/64").host_problem().is_none());
        assert!("10.0.0.1/33".parse::<Cidr>().is_err());
        assert!("10.0.0.1".parse::<Cidr>().is_err());
    }

    #[test]
    fn macs_names_and_ports() {
        assert_eq!(
            "0:c:29:1:2:3".parse::<MacAddr>().expect("mac").to_string(),
            "00:0c:29:01:02:03"
        );
        assert!("00:0c:29:01:02".parse::<MacAddr>().is_err());
        assert!("00:0c:29:01:02:xyz".parse::<MacAddr>().is_err());
        assert!(label_problem("box-1").is_none());
        assert!(label_problem("-box").is_some());
        assert!(label_problem("a.b").is_some());
        assert!(domain_problem("example.com.").is_none());
        assert!(ifname_problem("eth0").is_none());
        assert!(ifname_problem("a/b").is_some());
        assert_eq!("[::1]:514".parse::<HostPort>().expect("hp").port, 514);
        assert_eq!(
            "logs.example.com:514".parse::<HostPort>().expect("hp").host,
            "logs.example.com"
        );
        assert!("logs:0".parse::<HostPort>().is_err());
        assert!("logs".parse::<HostPort>().is_err());
    }
}
