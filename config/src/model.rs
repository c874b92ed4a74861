//! The validated config: what the init acts on. Built only by [`crate::Config::parse`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;
use serde::de::{self, Visitor};

pub use crate::cluster::{Cluster, ClusterNode};
pub use crate::keys::{SshKey, TrustedKey};
pub use crate::net::{Cidr, HostPort, MacAddr};

/// A valid version-1 usbkey config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The box's host name (one RFC 1123 label).
    pub hostname: String,
    /// An IANA time zone name; `UTC` when the file names none.
    pub timezone: String,
    /// Root's SSH keys and console password.
    pub admin: Admin,
    /// The NICs, in file order.
    pub nics: Vec<Nic>,
    /// Resolvers and search domains.
    pub dns: Dns,
    /// NTP servers (host names or addresses).
    pub ntp_servers: Vec<String>,
    /// The pool, if the file has a `[pool]` section.
    pub pool: Option<Pool>,
    /// Logging settings.
    pub log: Log,
    /// The personalities, in file order.
    pub personalities: Vec<Personality>,
    /// Keys trusted to sign personality images (`[images] trusted_keys`).
    pub trusted_keys: Vec<TrustedKey>,
    /// Image repositories (`[images] sources`): `http://` or `https://` URLs of folders
    /// with an `index.json`, as `ramkey image publish` writes them.
    pub image_sources: Vec<String>,
    /// Certificates of the CAs trusted for `https://` imports besides the built-in
    /// Mozilla roots (`[images] ca_certs`), DER, each checked to be one PEM certificate.
    pub image_ca_certs: Vec<Vec<u8>>,
    /// Platform upgrades (`[upgrade]`).
    pub upgrade: Upgrade,
    /// The Prometheus endpoint (`[metrics]`); off when `None`.
    pub metrics: Option<Metrics>,
    /// The HA pair this box is one node of (`[cluster]`); a single box when `None`.
    pub cluster: Option<Cluster>,
}

impl Config {
    /// The NIC with this tag.
    #[must_use]
    pub fn nic(&self, tag: &str) -> Option<&Nic> {
        self.nics.iter().find(|n| n.tag == tag)
    }

    /// The personality with this name.
    #[must_use]
    pub fn personality(&self, name: &str) -> Option<&Personality> {
        self.personalities.iter().find(|p| p.name == name)
    }
}

/// `[admin]`: root's access.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admin {
    /// Root's `authorized_keys`; without one the box runs no SSH server.
    pub authorized_keys: Vec<SshKey>,
    /// A crypt(3) hash (`$6$` or `$y$`) for the console; `None` locks the password.
    pub password_hash: Option<String>,
    /// `[admin.ssh]`: where the SSH server listens.
    pub ssh: Ssh,
}

/// `[admin.ssh]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssh {
    /// The TCP port (default 22).
    pub port: u16,
    /// The NIC tags it listens on; empty: every platform NIC (never a zone's).
    pub nics: Vec<String>,
}

impl Default for Ssh {
    fn default() -> Ssh {
        Ssh {
            port: 22,
            nics: Vec::new(),
        }
    }
}

/// How a NIC is chosen among the box's interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// By MAC address (stable across kernels and slots).
    Mac(MacAddr),
    /// By kernel interface name (`eth0`, `enp3s0`).
    Name(String),
}

/// How an interface gets its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// DHCP (DHCPv4).
    Dhcp,
    /// A static address with its prefix length.
    Static {
        /// The host address.
        addr: IpAddr,
        /// The prefix length.
        prefix: u8,
    },
}

impl Addressing {
    /// The static address as a CIDR, if static.
    #[must_use]
    pub fn cidr(self) -> Option<Cidr> {
        match self {
            Self::Dhcp => None,
            Self::Static { addr, prefix } => Some(Cidr { addr, prefix }),
        }
    }
}

/// A `[[nic]]`: a physical interface given a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// The tag personalities refer to (`admin`, `external`, ...).
    pub tag: String,
    /// How the interface is found.
    pub selector: Selector,
    /// Its address; `None` for an interface that only carries personalities.
    pub ip: Option<Addressing>,
    /// The default gateway reached through it.
    pub gateway: Option<IpAddr>,
    /// An 802.1Q VLAN id, 1-4094.
    pub vlan: Option<u16>,
    /// The MTU, 68-9000.
    pub mtu: Option<u16>,
}

/// `[dns]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    /// Resolver addresses, in order.
    pub resolvers: Vec<IpAddr>,
    /// Search domains, in order.
    pub search: Vec<String>,
}

/// The pool's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filesystem {
    /// ext4 (one disk).
    Ext4,
    /// btrfs (one disk, or mirrored).
    Btrfs,
}

/// `[pool]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Disks by their `/dev/disk/by-id` names; empty means "the disk labelled `ramkey-pool`".
    pub disks: Vec<String>,
    /// The filesystem to create or expect.
    pub filesystem: Filesystem,
    /// The disks (ids from `disks` and `mirror`) that may be formatted when blank:
    /// `create = "virtio-XYZ"` confirms that disk, `create = ["a", "b"]` a mirror. Empty:
    /// nothing is formatted.
    pub create: Vec<String>,
    /// Disks (by id) mirroring `disks` (btrfs raid1).
    pub mirror: Vec<String>,
    /// A btrfs mirror missing a disk is mounted degraded read-write (`true`), or only
    /// read-only with the box otherwise diskless (`false`, the default).
    pub allow_degraded: bool,
}

/// A log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    Info,
    /// Debug messages.
    Debug,
    /// Everything.
    Trace,
}

/// `[upgrade]`: platform upgrades.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// Seconds after the kernel starts by which a trial boot of a new platform must have
    /// every service and zone that ran before online again, or it is rejected (default 120).
    pub commit_deadline: u64,
}

impl Default for Upgrade {
    fn default() -> Self {
        Self { commit_deadline: 120 }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// Where every log line is also sent (RFC 5424 syslog); `None` keeps logs on the box.
    pub remote: Option<Remote>,
    /// The most lines the shipper holds for a collector that is down, in bytes (on the pool,
    /// or in RAM without one); past it the oldest go, counted.
    pub buffer: u64,
    /// The console's level, unless the kernel command line says `ramkey.log=`.
    pub level: LogLevel,
}

impl Log {
    /// `[log] buffer` when the file does not say.
    pub const DEFAULT_BUFFER: u64 = 16 << 20;
}

impl Default for Log {
    fn default() -> Self {
        Self {
            remote: None,
            buffer: Self::DEFAULT_BUFFER,
            level: LogLevel::Info,
        }
    }
}

/// How lines travel to a syslog collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// RFC 6587 octet-counted frames on a TCP stream.
    Tcp,
    /// One RFC 5426 datagram per line.
    Udp,
}

/// `[log] remote`: `tcp://HOST:PORT` or `udp://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// TCP or UDP.
    pub transport: Transport,
    /// The collector.
    pub target: HostPort,
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        };
        write!(f, "{scheme}://{}", self.target)
    }
}

impl std::str::FromStr for Remote {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("{text:?} names no transport"))?;
        let transport = match scheme {
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            other => return Err(format!("unknown transport {other:?} (expected tcp or udp)")),
        };
        let target = rest.trim_end_matches('/').parse()?;
        Ok(Remote { transport, target })
    }
}

/// `[metrics]`: where the Prometheus endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// The `[[nic]]` tag whose address it listens on.
    pub nic: String,
    /// The TCP port.
    pub port: u16,
}

/// A value in a personality's `settings` (SmartOS `customer_metadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingValue {
    /// A string.
    String(String),
    /// An integer.
    Integer(i64),
    /// A boolean.
    Bool(bool),
}

impl fmt::Display for SettingValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(s) => f.write_str(s),
            Self::Integer(i) => write!(f, "{i}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

struct SettingVisitor;

impl Visitor<'_> for SettingVisitor {
    type Value = SettingValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, an integer or a boolean")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<SettingValue, E> {
        Ok(SettingValue::String(v.to_owned()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<SettingValue, E> {
        Ok(SettingValue::Integer(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<SettingValue, E> {
        i64::try_from(v)
            .map(SettingValue::Integer)
            .map_err(|_| E::custom("integer too large"))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<SettingValue, E> {
        Ok(SettingValue::Bool(v))
    }
}

impl<'de> Deserialize<'de> for SettingValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SettingVisitor)
    }
}

/// A `[[personality]]`: an image run as a zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Personality {
    /// Its unique name.
    pub name: String,
    /// The image file (`personalities/web-1.2.rkimg` on the usbkey, or a pool path).
    pub image: String,
    /// The tag of the NIC its macvlan interface hangs off.
    pub nic: Option<String>,
    /// Its own address on that NIC.
    pub ip: Option<Addressing>,
    /// Its default gateway.
    pub gateway: Option<IpAddr>,
    /// Memory cap in bytes (`memory.max`).
    pub memory: Option<u64>,
    /// CPU cap as a number of CPUs (`cpu.max`), e.g. 1.5.
    pub cpu: Option<f64>,
    /// Process cap (`pids.max`).
    pub pids: Option<u32>,
    /// Free settings handed to the personality.
    pub settings: BTreeMap<String, SettingValue>,
    /// Whether the init starts it.
    pub enabled: bool,
    /// Whether its writable root survives a change of image (by default it is reset: only
    /// the image's volumes persist). `[personality.volumes]` is refused: see
    /// `validate_volumes`.
    pub persistent_root: bool,
    /// Whether the zone may start an image older than the highest version it has come up
    /// on (by default such a downgrade is refused at boot).
    pub allow_downgrade: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_name_their_transport() {
        let r: Remote = "tcp://logs.example.com:6514".parse().unwrap();
        assert_eq!((r.transport, r.target.port), (Transport::Tcp, 6514));
        assert_eq!(r.to_string(), "tcp://logs.example.com:6514");
        assert_eq!(
            "udp://[::1]:514".parse::<Remote>().unwrap().to_string(),
            "udp://[::1]:514"
        );
        assert!("logs:514".parse::<Remote>().unwrap_err().contains("names no transport"));
        assert!(
            "tls://logs:514"
                .parse::<Remote>()
                .unwrap_err()
                .contains("unknown transport")
        );
        assert!("tcp://logs".parse::<Remote>().is_err());
    }
}
