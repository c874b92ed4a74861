//! SNTP (RFC 4330) at boot: one request to each numeric server of `[ntp]` in turn, within
//! [`WAIT`] in all; the first good answer sets `CLOCK_REALTIME`. Failing is a warning.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use crate::base::clock::Clock;
use crate::net::KernelNetwork;

/// The whole wait at boot, over all servers.
pub const WAIT: Duration = Duration::from_secs(2);
/// Seconds from 1900 (NTP era 0) to 1970.
const UNIX_OFFSET: u64 = 2_208_988_800;
/// The packet size without extensions.
const LEN: usize = 48;

/// Why a server's answer was not used.
#[derive(Debug, thiserror::Error)]
pub enum NtpError {
    /// No usable server in the config.
    #[error("no server could be resolved to an address")]
    NoServer,
    /// Sending or receiving failed (or timed out).
    #[error("{server}: {source}")]
    Io {
        /// The server.
        server: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The answer is not a usable server reply.
    #[error("{server}: {reason}")]
    Bad {
        /// The server.
        server: SocketAddr,
        /// What is wrong.
        reason: &'static str,
    },
    /// The answer is a time this box must not take.
    #[error("{server}: {reason}")]
    Insane {
        /// The server.
        server: SocketAddr,
        /// Why, with the times.
        reason: String,
    },
    /// The kernel refused the new time.
    #[error("clock_settime: {0}")]
    SetClock(nix::errno::Errno),
}

/// What the sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    /// The server that answered.
    pub server: SocketAddr,
    /// The time set, since the Unix epoch.
    pub set_to: Duration,
    /// The correction in milliseconds (positive: the clock was behind).
    pub offset_ms: i64,
    /// The round trip.
    pub rtt: Duration,
}

fn to_ntp(t: Duration) -> [u8; 8] {
    let secs = (t.as_secs() + UNIX_OFFSET) as u32;
    let frac = ((u64::from(t.subsec_nanos()) << 32) / 1_000_000_000) as u32;
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&secs.to_be_bytes());
    b[4..].copy_from_slice(&frac.to_be_bytes());
    b
}

fn from_ntp(b: &[u8]) -> Option<Duration> {
    let secs = u64::from(u32::from_be_bytes(b.get(..4)?.try_into().ok()?));
    let frac = u64::from(u32::from_be_bytes(b.get(4..8)?.try_into().ok()?));
    // Era 1 starts in 2036: seconds below the offset belong to it.
    let secs = if secs >= UNIX_OFFSET {
        secs - UNIX_OFFSET
    } else {
        secs + (1 << 32) - UNIX_OFFSET
    };
    Some(Duration::new(secs, ((frac * 1_000_000_000) >> 32) as u32))
}

/// A client request (version 4, mode 3) carrying `now` as its transmit time.
pub fn request(now: Duration) -> [u8; LEN] {
    let mut p = [0u8; LEN];
    p[0] = 0x23;
    p[40..48].copy_from_slice(&to_ntp(now));
    p
}

/// The server's transmit time from a reply to `sent`.
pub fn parse(server: SocketAddr, reply: &[u8], sent: &[u8; LEN]) -> Result<Duration, NtpError> {
    let bad = |reason| NtpError::Bad { server, reason };
    if reply.len() < LEN {
        return Err(bad("short reply"));
    }
    if reply[0] & 0x7 != 4 {
        return Err(bad("not a server reply"));
    }
    if reply[0] >> 6 == 3 || reply[1] == 0 {
        return Err(bad("server not synchronized (kiss-o'-death or alarm)"));
    }
    if reply[24..32] != sent[40..48] {
        return Err(bad("reply to another request"));
    }
    from_ntp(&reply[40..48]).ok_or_else(|| bad("bad timestamp"))
}

/// The servers of `[ntp]` (port 123 unless given as `addr:port` or `name:port`), host names
/// resolved by `net`; those that cannot be are logged and skipped.
pub fn servers(names: &[String], net: &mut dyn Sntp) -> Vec<SocketAddr> {
    names
        .iter()
        .filter_map(|n| {
            if let Ok(addr) = n.parse::<SocketAddr>() {
                return Some(addr);
            }
            if let Ok(ip) = n.parse::<IpAddr>() {
                return Some(SocketAddr::new(ip, 123));
            }
            let (name, port) = match n.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>())) {
                Some((h, Ok(port))) => (h, port),
                _ => (n.as_str(), 123),
            };
            net.resolve(name)
                .map(|ip| SocketAddr::new(ip, port))
                .map_err(|e| crate::warn!("ntp: {n}: {e}"))
                .ok()
        })
        .collect()
}

/// The largest step a box whose clock is already past [`Sanity::floor`] takes from one
/// answer: more is a wrong or hostile server (a box whose clock is before the floor has no
/// time to keep, and takes any time after it).
pub const MAX_STEP: Duration = Duration::from_secs(24 * 3600);

/// What an answer must satisfy before it sets the clock.
#[derive(Debug, Clone, Copy)]
pub struct Sanity {
    /// No time before this (the platform's build time, since the Unix epoch): a box is never
    /// running before it was built.
    pub floor: Duration,
    /// The largest step from a clock that is already past the floor.
    pub max_step: Duration,
}

impl Sanity {
    /// Checks `set_to` against the clock as it was (`was`); the reason when refused.
    fn check(&self, set_to: Duration, was: Duration) -> Result<(), String> {
        let date = |t: Duration| crate::base::clock::rfc3339(std::time::UNIX_EPOCH + t);
        if set_to < self.floor {
            return Err(format!(
                "answered {}, before this platform was built ({}): refused",
                date(set_to),
                date(self.floor)
            ));
        }
        if was >= self.floor && set_to.abs_diff(was) > self.max_step {
            return Err(format!(
                "answered {}, {} h from the clock ({}), more than the {} h a running clock is stepped by: refused",
                date(set_to),
                set_to.abs_diff(was).as_secs() / 3600,
                date(was),
                self.max_step.as_secs() / 3600
            ));
        }
        Ok(())
    }
}

/// The platform's build time: every file of the initramfs carries it (`SOURCE_DATE_EPOCH`),
/// `init` (the initramfs's `/init`, `Paths::init`) among them.
pub fn build_time(init: &Path) -> Duration {
    std::fs::metadata(init)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default()
}

/// The effects of the clock sync: SNTP exchanges, then setting the clock.
pub trait Sntp {
    /// Sends one SNTP request to `server` and waits up to `timeout` for the answer.
    fn exchange(&mut self, server: SocketAddr, request: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>>;
    /// Sets `CLOCK_REALTIME` to this time since the Unix epoch.
    fn set_clock(&mut self, since_epoch: Duration) -> Result<(), nix::errno::Errno>;
    /// A host name's address.
    fn resolve(&mut self, name: &str) -> Result<IpAddr, String>;
}

impl Sntp for KernelNetwork {
    fn resolve(&mut self, name: &str) -> Result<IpAddr, String> {
        super::resolve::resolve_with(&self.resolv_conf, name)
    }

    fn exchange(&mut self, server: SocketAddr, request: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        socket.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        socket.connect(server)?;
        socket.send(request)?;
        let mut buf = vec![0u8; 512];
        let n = socket.recv(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    fn set_clock(&mut self, since_epoch: Duration) -> Result<(), nix::errno::Errno> {
        let ts = nix::sys::time::TimeSpec::from_duration(since_epoch);
        nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts)
    }
}

/// Asks each server in turn until one answers within [`WAIT`] in all with a time that
/// passes `sanity`, then sets the clock. `realtime` reads `CLOCK_REALTIME` (since the Unix
/// epoch).
pub fn sync(
    names: &[String],
    net: &mut dyn Sntp,
    clock: &dyn Clock,
    realtime: &dyn Fn() -> Duration,
    sanity: Sanity,
) -> Result<Synced, Vec<NtpError>> {
    let servers = servers(names, net);
    if servers.is_empty() {
        return Err(vec![NtpError::NoServer]);
    }
    let start = clock.since_boot();
    let mut errors = Vec::new();
    for server in servers {
        let left = WAIT.saturating_sub(clock.since_boot().saturating_sub(start));
        if left.is_zero() {
            break;
        }
        let sent_at = realtime();
        let packet = request(sent_at);
        let t0 = clock.since_boot();
        let answer = net
            .exchange(server, &packet, left)
            .map_err(|source| NtpError::Io { server, source })
            .and_then(|reply| parse(server, &reply, &packet));
        let rtt = clock.since_boot().saturating_sub(t0);
        match answer {
            Ok(server_time) => {
                let set_to = server_time + rtt / 2;
                let was = sent_at + rtt;
                let offset_ms = set_to.as_millis() as i64 - was.as_millis() as i64;
                if let Err(reason) = sanity.check(set_to, was) {
                    errors.push(NtpError::Insane { server, reason });
                    continue;
                }
                net.set_clock(set_to).map_err(|e| vec![NtpError::SetClock(e)])?;
                return Ok(Synced {
                    server,
                    set_to,
                    offset_ms,
                    rtt,
                });
            }
            Err(e) => errors.push(e),
        }
    }
    Err(errors)
}

/// Runs [`sync`] and logs the outcome (the boot's `ntp` step); `init` is the initramfs's
/// `/init`, whose [`build_time`] is the clock's floor.
pub fn step(names: &[String], net: &mut dyn Sntp, clock: &dyn Clock, init: &Path) -> Option<Synced> {
    if names.is_empty() {
        crate::notice!("ntp: no servers in the config; the clock stays as the hardware clock set it");
        return None;
    }
    let realtime = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
    };
    let sanity = Sanity {
        floor: build_time(init),
        max_step: MAX_STEP,
    };
    match sync(names, net, clock, &realtime, sanity) {
        Ok(s) => {
            crate::notice!(
                "ntp: clock set from {} (offset {:+}.{:03} s, round trip {} ms)",
                s.server.ip(),
                s.offset_ms / 1000,
                (s.offset_ms % 1000).abs(),
                s.rtt.as_millis()
            );
            Some(s)
        }
        Err(errors) => {
            let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
            crate::warn!("ntp: the clock was not set: {}", all.join("; "));
            None
        }
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! The one [`Sntp`] fake.

    use std::net::{IpAddr, SocketAddr};
    use std::time::Duration;

    use super::{LEN, Sntp, to_ntp};

    /// A server that answers every request with `reply` (none: a timeout), except from the
    /// addresses in `silent`; records the servers asked and the times the clock was set to.
    #[derive(Debug, Default)]
    pub(crate) struct FakeSntp {
        /// The time every server says (since the Unix epoch).
        pub(crate) reply: Option<Duration>,
        /// Servers that never answer.
        pub(crate) silent: Vec<IpAddr>,
        /// The servers asked, in order.
        pub(crate) asked: Vec<SocketAddr>,
        /// The times the clock was set to.
        pub(crate) set: Vec<Duration>,
        /// The host names it resolves.
        pub(crate) names: Vec<(&'static str, IpAddr)>,
    }

    impl Sntp for FakeSntp {
        fn resolve(&mut self, name: &str) -> Result<IpAddr, String> {
            let known = self.names.iter().find(|(n, _)| *n == name);
            known
                .map(|(_, ip)| *ip)
                .ok_or_else(|| format!("cannot resolve {name:?}"))
        }

        fn exchange(&mut self, server: SocketAddr, req: &[u8], _: Duration) -> std::io::Result<Vec<u8>> {
            self.asked.push(server);
            let Some(t) = self.reply.filter(|_| !self.silent.contains(&server.ip())) else {
                return Err(std::io::ErrorKind::WouldBlock.into());
            };
            let mut p = [0u8; LEN];
            p[0] = 0x24;
            p[1] = 2;
            p[24..32].copy_from_slice(&req[40..48]);
            p[40..48].copy_from_slice(&to_ntp(t));
            Ok(p.to_vec())
        }

        fn set_clock(&mut self, t: Duration) -> Result<(), nix::errno::Errno> {
            self.set.push(t);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeSntp;
    use super::*;
    use crate::base::clock::FakeClock;

    /// No floor, any step.
    const ANY: Sanity = Sanity {
        floor: Duration::ZERO,
        max_step: Duration::MAX,
    };

    #[test]
    fn answers_before_the_build_or_far_from_a_running_clock_are_refused() {
        let clock = FakeClock::new(Duration::from_secs(5), Duration::from_millis(10));
        let built = Duration::from_secs(1_796_000_000); // 2026-11-30
        let sanity = Sanity {
            floor: built,
            max_step: MAX_STEP,
        };
        let names = ["10.0.2.2".to_owned()];
        // A server in 2023 while the box was built in 2026.
        let mut net = FakeSntp {
            reply: Some(Duration::from_secs(1_700_000_000)),
            ..FakeSntp::default()
        };
        let errors = sync(&names, &mut net, &clock, &|| Duration::ZERO, sanity).unwrap_err();
        let text = errors[0].to_string();
        assert!(text.contains("before this platform was built (2026-11-30"), "{text}");
        assert!(net.set.is_empty());
        // A running clock in 2026, a server saying 2031.
        net.reply = Some(built + Duration::from_secs(5 * 365 * 86400));
        let errors = sync(&names, &mut net, &clock, &|| built + Duration::from_secs(60), sanity).unwrap_err();
        assert!(errors[0].to_string().contains("more than the 24 h"), "{}", errors[0]);
        assert!(net.set.is_empty());
        // A box without a battery, its clock in 1970: any time after the build is taken.
        let s = sync(&names, &mut net, &clock, &|| Duration::ZERO, sanity).unwrap();
        assert_eq!(net.set, [s.set_to]);
        // A running clock an hour off is corrected.
        net.reply = Some(built + Duration::from_secs(3600));
        assert!(sync(&names, &mut net, &clock, &|| built, sanity).is_ok());
    }

    #[test]
    fn timestamps_round_trip() {
        let t = Duration::new(1_700_000_000, 250_000_000);
        let back = from_ntp(&to_ntp(t)).unwrap();
        assert!(back.abs_diff(t) < Duration::from_micros(1));
        assert_eq!(request(t)[0], 0x23);
    }

    #[test]
    fn second_server_sets_the_clock() {
        let mut net = FakeSntp {
            reply: Some(Duration::from_secs(1_700_000_100)),
            silent: vec![IpAddr::from([10, 0, 0, 1])],
            names: vec![("time.lan", IpAddr::from([10, 0, 0, 9]))],
            ..FakeSntp::default()
        };
        let clock = FakeClock::new(Duration::from_secs(5), Duration::from_millis(10));
        let names = ["pool.ntp.org", "10.0.0.1", "time.lan:1123", "10.0.2.2"].map(String::from);
        let s = sync(&names, &mut net, &clock, &|| Duration::from_secs(1_700_000_000), ANY).unwrap();
        assert_eq!(s.server, "10.0.0.9:1123".parse().unwrap());
        let asked: Vec<_> = net.asked.iter().map(ToString::to_string).collect();
        assert_eq!(
            asked,
            ["10.0.0.1:123", "10.0.0.9:1123"],
            "names that do not resolve are skipped"
        );
        assert_eq!(net.set.len(), 1);
        assert!((s.offset_ms - 100_000).abs() < 50, "{}", s.offset_ms);
    }

    #[test]
    fn failures_are_reported() {
        let mut net = FakeSntp::default();
        let clock = FakeClock::new(Duration::ZERO, Duration::from_millis(10));
        let errors = sync(&["10.0.0.1".to_owned()], &mut net, &clock, &|| Duration::ZERO, ANY).unwrap_err();
        assert_eq!(errors.len(), 1);
        let errors = sync(&["ntp.example".to_owned()], &mut net, &clock, &|| Duration::ZERO, ANY).unwrap_err();
        assert!(matches!(errors[0], NtpError::NoServer));
        let sent = request(Duration::ZERO);
        let server = "10.0.0.2:123".parse().unwrap();
        assert!(parse(server, &[0; 10], &sent).is_err());
        let mut kod = [0u8; LEN];
        kod[0] = 0x24;
        assert!(
            parse(server, &kod, &sent)
                .unwrap_err()
                .to_string()
                .contains("not synchronized")
        );
    }
}
