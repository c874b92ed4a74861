//! Keeping DHCP leases: each [`HeldLease`] knows when it must be renewed (T1, or a retry
//! after a failure). The event loop hands due leases to [`Renewals`], which renews each on
//! a thread of its own, so that a silent server never holds up PID 1 (reaping, control
//! requests, uevents); the loop applies the results as they come.

use std::io::{PipeReader, PipeWriter, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use super::dhcp::{self, DhcpError, DhcpTransport, Lease};
use super::netlink::{Netlink, NetlinkError, RouteSocket};
use crate::base::clock::{BootClock, Clock};

/// The pause before trying again after a failed renewal (or half the time left, if less).
pub const RETRY: Duration = Duration::from_secs(60);

/// Renewing a lease failed.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// The DHCP exchange failed.
    #[error("DHCP renewal on {ifname}: {source}")]
    Dhcp {
        /// The interface.
        ifname: String,
        /// Why.
        source: DhcpError,
    },
    /// The renewal thread could not start, or panicked.
    #[error("DHCP renewal on {ifname}: {why}")]
    Thread {
        /// The interface.
        ifname: String,
        /// What went wrong.
        why: String,
    },
    /// The renewed lease could not be put on the interface.
    #[error("DHCP renewal on {ifname}: {source}")]
    Netlink {
        /// The interface.
        ifname: String,
        /// Why.
        source: NetlinkError,
    },
}

/// A lease in use on an interface, with its schedule (times since boot, `CLOCK_BOOTTIME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    /// The config's tag for the NIC (`admin`), or the interface name without a config.
    pub tag: String,
    /// The interface name now (after any rename).
    pub ifname: String,
    /// The interface index.
    pub index: u32,
    /// The NIC's MAC.
    pub mac: [u8; 6],
    /// The host name sent with each request (option 12).
    pub hostname: Option<String>,
    /// What the server gave last.
    pub lease: Lease,
    /// When the last ACK came.
    pub obtained_at: Duration,
    /// When to renew (T1); `Duration::MAX` for an infinite lease.
    pub renew_at: Duration,
    /// When the lease runs out; `Duration::MAX` for an infinite lease.
    pub expires_at: Duration,
}

impl HeldLease {
    /// A lease obtained at `now`, scheduled from its T1 and lease time.
    pub fn new(
        tag: &str,
        ifname: &str,
        index: u32,
        mac: [u8; 6],
        hostname: Option<&str>,
        lease: Lease,
        now: Duration,
    ) -> Self {
        let mut held = HeldLease {
            tag: tag.to_owned(),
            ifname: ifname.to_owned(),
            index,
            mac,
            hostname: hostname.map(str::to_owned),
            lease,
            obtained_at: now,
            renew_at: Duration::MAX,
            expires_at: Duration::MAX,
        };
        held.schedule(now);
        held
    }

    fn schedule(&mut self, now: Duration) {
        self.obtained_at = now;
        self.renew_at = self
            .lease
            .t1()
            .map_or(Duration::MAX, |t1| now + Duration::from_secs(u64::from(t1)));
        self.expires_at = match self.lease.lease_secs {
            Some(u32::MAX) | None => Duration::MAX,
            Some(secs) => now + Duration::from_secs(u64::from(secs)),
        };
    }

    /// True when the renewal time has come.
    pub fn due(&self, now: Duration) -> bool {
        now >= self.renew_at
    }
}

#[cfg(test)]
/// The earliest renewal time among `leases` (for the event loop's timer).
pub fn next_renewal(leases: &[HeldLease]) -> Option<Duration> {
    leases.iter().map(|l| l.renew_at).filter(|t| *t != Duration::MAX).min()
}

/// Renews one lease over `transport`: on ACK the address (and a changed router) is put on
/// the interface again and the lease rescheduled; on failure the next attempt is set
/// [`RETRY`] later (or halfway to expiry, whichever is sooner).
pub fn renew(
    held: &mut HeldLease,
    transport: &mut dyn DhcpTransport,
    netlink: &mut dyn Netlink,
    clock: &dyn Clock,
) -> Result<(), RenewError> {
    let now = clock.since_boot();
    let xid = u32::from_be_bytes([held.mac[2], held.mac[3], held.mac[4], held.mac[5]]) ^ now.subsec_nanos();
    let result = dhcp::renew_exchange(transport, held.mac, &held.lease, held.hostname.as_deref(), clock, xid);
    let lease = match result {
        Ok(lease) => lease,
        Err(source) => {
            retry_later(held, now);
            return Err(RenewError::Dhcp {
                ifname: held.ifname.clone(),
                source,
            });
        }
    };
    let nl = |source| RenewError::Netlink {
        ifname: held.ifname.clone(),
        source,
    };
    netlink
        .add_address(held.index, lease.address, lease.prefix)
        .map_err(nl)?;
    if lease.router != held.lease.router
        && let Some(router) = lease.router
    {
        netlink.add_default_route(held.index, router).map_err(nl)?;
    }
    held.lease = lease;
    held.schedule(clock.since_boot());
    Ok(())
}

/// One lease's renewal as a thread runs it: the exchange and, on ACK, the address put on
/// the interface again ([`renew_on_box`] on the box, fakes in tests).
pub type Renewer = dyn Fn(&mut HeldLease) -> Result<(), RenewError> + Send + Sync;

/// Renews `held` on the box: a UDP socket on port 68 bound to its interface, an rtnetlink
/// socket, then [`renew`] (about 3 s when no server answers).
pub fn renew_on_box(held: &mut HeldLease) -> Result<(), RenewError> {
    let socket = crate::sys::dhcp_socket(&held.ifname).map_err(|e| RenewError::Dhcp {
        ifname: held.ifname.clone(),
        source: DhcpError::Io {
            op: "opening the DHCP socket",
            source: std::io::Error::other(e),
        },
    })?;
    let mut transport = super::UdpTransport { socket };
    let mut netlink = RouteSocket::open().map_err(|source| RenewError::Netlink {
        ifname: held.ifname.clone(),
        source,
    })?;
    renew(held, &mut transport, &mut netlink, &BootClock)
}

/// The next attempt after a failed renewal at `now`: [`RETRY`] later, or halfway to expiry
/// if that is sooner, but at least a second.
fn retry_later(held: &mut HeldLease, now: Duration) {
    let left = held.expires_at.saturating_sub(now) / 2;
    held.renew_at = now + RETRY.min(left).max(Duration::from_secs(1));
}

/// What a renewal thread sends back: the lease (the slot it holds in the loop's list), as
/// the renewal left it, and the outcome.
struct Done {
    slot: usize,
    held: HeldLease,
    outcome: Result<(), RenewError>,
}

/// The renewals in flight. The event loop never waits for a DHCP server: each due lease
/// is renewed on a thread of its own (a copy of it), at most one per lease; the result comes
/// back through a channel, and a byte on a pipe wakes the loop ([`Renewals::wake_fd`]),
/// which applies it ([`Renewals::apply`]). The same shape as the supervisor's checker.
pub struct Renewals {
    renewer: Arc<Renewer>,
    in_flight: Vec<usize>,
    tx: Sender<Done>,
    rx: Receiver<Done>,
    wake: Option<(PipeReader, Arc<PipeWriter>)>,
}

impl std::fmt::Debug for Renewals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renewals")
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

/// How often the loop looks for results when it has no wake pipe (none could be made).
const POLL_WITHOUT_PIPE: Duration = Duration::from_secs(1);

impl Renewals {
    /// Renewals run by `renewer` ([`renew_on_box`] on the box).
    pub fn new(renewer: Arc<Renewer>) -> Self {
        let wake = std::io::pipe()
            .and_then(|(reader, writer)| {
                let nonblock = nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK);
                nix::fcntl::fcntl(&reader, nonblock)?;
                Ok((reader, Arc::new(writer)))
            })
            .inspect_err(|e| crate::warn!("network: no wake pipe for DHCP renewals ({e}); looking every second"))
            .ok();
        let (tx, rx) = channel();
        Renewals {
            renewer,
            in_flight: Vec::new(),
            tx,
            rx,
            wake,
        }
    }

    /// Starts a renewal thread for each of `leases` due at `now` with none in flight; returns
    /// at once.
    pub fn start_due(&mut self, leases: &[HeldLease], now: Duration) {
        for (slot, held) in leases.iter().enumerate() {
            if !held.due(now) || self.in_flight.contains(&slot) {
                continue;
            }
            self.in_flight.push(slot);
            let (renewer, tx, wake) = (Arc::clone(&self.renewer), self.tx.clone(), self.wake_writer());
            let mut copy = held.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("renew-{}", held.ifname))
                .spawn(move || {
                    let outcome = catch_unwind(AssertUnwindSafe(|| renewer(&mut copy))).unwrap_or_else(|_| {
                        retry_later(&mut copy, now);
                        Err(RenewError::Thread {
                            ifname: copy.ifname.clone(),
                            why: "the renewal panicked (see the PANIC line above)".into(),
                        })
                    });
                    send(&tx, wake.as_deref(), slot, copy, outcome);
                });
            if let Err(e) = spawned {
                let mut copy = held.clone();
                retry_later(&mut copy, now);
                let outcome = Err(RenewError::Thread {
                    ifname: held.ifname.clone(),
                    why: format!("no thread for the renewal: {e}"),
                });
                send(&self.tx, self.wake_writer().as_deref(), slot, copy, outcome);
            }
        }
    }

    fn wake_writer(&self) -> Option<Arc<PipeWriter>> {
        self.wake.as_ref().map(|(_, writer)| Arc::clone(writer))
    }

    /// Readable when results have arrived: poll it in the event loop (`None` without a pipe).
    pub fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.wake.as_ref().map(|(reader, _)| reader.as_fd())
    }

    #[cfg(test)]
    /// How many renewals are in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// When the loop must wake next for renewals: the earliest renewal time of a lease with
    /// none in flight (or, without a wake pipe, a second from `now` while one is in flight).
    pub fn deadline(&self, leases: &[HeldLease], now: Duration) -> Option<Duration> {
        let idle = leases
            .iter()
            .enumerate()
            .filter(|(slot, _)| !self.in_flight.contains(slot))
            .map(|(_, held)| held.renew_at)
            .filter(|t| *t != Duration::MAX)
            .min();
        let look = (self.wake.is_none() && !self.in_flight.is_empty()).then(|| now + POLL_WITHOUT_PIPE);
        idle.into_iter().chain(look).min()
    }

    /// Applies the results that have arrived to `leases` and logs each (a renewed lease, or
    /// the next attempt after a failure: never sooner than a second after `now`); returns how
    /// many came.
    pub fn apply(&mut self, leases: &mut [HeldLease], now: Duration) -> usize {
        if let Some((reader, _)) = &self.wake {
            let mut buf = [0u8; 64];
            while matches!((&*reader).read(&mut buf), Ok(n) if n > 0) {}
        }
        let mut count = 0;
        for done in self.rx.try_iter() {
            count += 1;
            self.in_flight.retain(|slot| *slot != done.slot);
            let Some(held) = leases.get_mut(done.slot).filter(|h| h.index == done.held.index) else {
                continue;
            };
            *held = done.held;
            match done.outcome {
                Ok(()) => crate::notice!("{}", renewed_line(held)),
                Err(e) => {
                    held.renew_at = held.renew_at.max(now + Duration::from_secs(1));
                    crate::warn!(
                        "network: {e}; trying again in {} s",
                        held.renew_at.saturating_sub(now).as_secs()
                    );
                }
            }
        }
        count
    }
}

/// Hands a result to the loop and wakes it.
fn send(tx: &Sender<Done>, wake: Option<&PipeWriter>, slot: usize, held: HeldLease, outcome: Result<(), RenewError>) {
    let _ignored = tx.send(Done { slot, held, outcome });
    if let Some(mut writer) = wake {
        let _ignored = writer.write(&[1]);
    }
}

/// `network: admin: DHCP lease 10.0.2.15/24 renewed for 86400 s (next renewal in 43200 s)`.
pub fn renewed_line(held: &HeldLease) -> String {
    let secs = |t: Option<u32>| t.map_or_else(|| "ever".to_owned(), |s| format!("{s} s"));
    format!(
        "network: {}: DHCP lease {}/{} renewed for {} (next renewal in {})",
        held.tag,
        held.lease.address,
        held.lease.prefix,
        secs(held.lease.lease_secs),
        secs(held.lease.t1())
    )
}

/// The address of a held lease, for status displays.
pub fn address(held: &HeldLease) -> (Ipv4Addr, u8) {
    (held.lease.address, held.lease.prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::FakeClock;
    use crate::net::dhcp::fake::FakeDhcpServer;
    use crate::net::netlink::fake::RecordingNetlink;
    use dhcproto::v4::MessageType;
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn held(now: Duration) -> HeldLease {
        let bytes = dhcp::fixture_reply(MessageType::Ack, 1, MAC, Ipv4Addr::new(10, 0, 2, 15));
        let lease = dhcp::parse_reply(&bytes, 1, MAC).unwrap().lease;
        HeldLease::new("admin", "admin", 2, MAC, Some("box1"), lease, now)
    }

    #[test]
    fn scheduled_at_t1_and_renewed() {
        let mut h = held(Duration::from_secs(10));
        assert_eq!(h.renew_at, Duration::from_secs(610));
        assert_eq!(h.expires_at, Duration::from_secs(86410));
        assert!(!h.due(Duration::from_secs(609)) && h.due(Duration::from_secs(610)));
        assert_eq!(next_renewal(std::slice::from_ref(&h)), Some(Duration::from_secs(610)));
        let clock = FakeClock::new(Duration::from_secs(700), Duration::from_millis(10));
        let mut nl = RecordingNetlink::default();
        renew(&mut h, &mut FakeDhcpServer::usual(), &mut nl, &clock).unwrap();
        assert_eq!(nl.calls, ["addr 2 10.0.2.15/24"]);
        assert!(h.renew_at > Duration::from_secs(1300), "{:?}", h.renew_at);
        assert!(renewed_line(&h).starts_with("network: admin: DHCP lease 10.0.2.15/24 renewed for 86400 s"));
    }

    #[test]
    fn failure_retries_a_minute_later() {
        let mut h = held(Duration::ZERO);
        let clock = FakeClock::new(Duration::from_secs(600), Duration::from_millis(100));
        let err = renew(
            &mut h,
            &mut FakeDhcpServer::silent(),
            &mut RecordingNetlink::default(),
            &clock,
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("DHCP renewal on admin: no DHCP lease"),
            "{err}"
        );
        assert_eq!(h.renew_at, Duration::from_secs(660));
    }

    /// What the renewal threads did.
    #[derive(Default)]
    struct Seen {
        runs: AtomicUsize,
        calls: Mutex<Vec<String>>,
    }

    /// A renewer using the real [`renew`] and clock over a gated [`FakeDhcpServer`].
    fn gated_server() -> (Sender<bool>, Arc<Seen>, Arc<Renewer>) {
        let (gate, rx) = channel();
        let rx = Arc::new(Mutex::new(rx));
        let seen = Arc::new(Seen::default());
        let record = Arc::clone(&seen);
        let renewer = move |held: &mut HeldLease| {
            record.runs.fetch_add(1, Ordering::SeqCst);
            let mut transport = FakeDhcpServer::usual();
            transport.gate = Some(Arc::clone(&rx));
            let mut nl = RecordingNetlink::default();
            let result = renew(held, &mut transport, &mut nl, &BootClock);
            record.calls.lock().unwrap().extend(nl.calls);
            result
        };
        (gate, seen, Arc::new(renewer))
    }

    /// A lease due at `now` (obtained 600 s before).
    fn due(now: Duration) -> HeldLease {
        let mut h = held(now.saturating_sub(Duration::from_secs(600)));
        h.renew_at = now;
        h
    }

    fn woken(renewals: &Renewals) -> bool {
        let mut fds = [PollFd::new(renewals.wake_fd().unwrap(), PollFlags::POLLIN)];
        nix::poll::poll(&mut fds, PollTimeout::from(5000u16)).unwrap() == 1
    }

    #[test]
    fn a_silent_server_does_not_hold_up_the_loop() {
        let (gate, seen, renewer) = gated_server();
        let mut renewals = Renewals::new(renewer);
        let now = crate::sys::boottime();
        let mut leases = vec![due(now)];
        let before = leases[0].clone();
        let t0 = Instant::now();
        renewals.start_due(&leases, now);
        renewals.start_due(&leases, now);
        // Waiting for the exchange would take 3 s (1 s and 2 s of silence).
        assert!(t0.elapsed() < Duration::from_millis(1500), "{:?}", t0.elapsed());
        assert_eq!(renewals.in_flight(), 1, "one renewal in flight per lease");
        assert_eq!(renewals.deadline(&leases, now), None, "no timer for a lease in flight");
        assert_eq!(renewals.apply(&mut leases, now), 0);
        assert_eq!(leases[0], before);
        drop(gate); // the rest of the silence at once
        assert!(woken(&renewals), "the loop is woken when the result comes");
        let later = crate::sys::boottime();
        assert_eq!(renewals.apply(&mut leases, later), 1);
        assert_eq!(renewals.in_flight(), 0);
        assert_eq!(seen.runs.load(Ordering::SeqCst), 1);
        let retry = leases[0].renew_at;
        assert!(
            retry >= now + RETRY && retry <= later + RETRY,
            "{retry:?} after {now:?}"
        );
        assert_eq!(leases[0].lease, before.lease);
        assert!(seen.calls.lock().unwrap().is_empty());
        assert_eq!(renewals.deadline(&leases, later), Some(retry));
    }

    #[test]
    fn the_renewed_lease_is_applied_when_it_comes() {
        let (gate, seen, renewer) = gated_server();
        let mut renewals = Renewals::new(renewer);
        let now = crate::sys::boottime();
        let mut leases = vec![due(now), held(now)];
        let before = leases.clone();
        renewals.start_due(&leases, now);
        assert_eq!(renewals.in_flight(), 1, "only the due lease");
        assert_eq!(renewals.apply(&mut leases, now), 0);
        assert_eq!(leases, before, "nothing changes before the answer");
        gate.send(true).unwrap();
        assert!(woken(&renewals));
        assert_eq!(renewals.apply(&mut leases, crate::sys::boottime()), 1);
        let h = &leases[0];
        assert!(h.obtained_at >= now);
        assert_eq!(h.renew_at, h.obtained_at + Duration::from_secs(600));
        assert_eq!(leases[1], before[1]);
        assert_eq!(*seen.calls.lock().unwrap(), ["addr 2 10.0.2.15/24"]);
        assert_eq!(renewals.deadline(&leases, now), Some(before[1].renew_at));
    }

    #[test]
    fn a_failure_comes_back_no_sooner_than_a_second_and_a_panic_is_a_failure() {
        // A failure that leaves the schedule where it was (a netlink error after the ACK).
        let renewer: Arc<Renewer> = Arc::new(|held: &mut HeldLease| {
            Err(RenewError::Thread {
                ifname: held.ifname.clone(),
                why: "test".into(),
            })
        });
        let mut renewals = Renewals::new(renewer);
        let now = crate::sys::boottime();
        let mut leases = vec![due(now)];
        renewals.start_due(&leases, now);
        assert!(woken(&renewals));
        assert_eq!(renewals.apply(&mut leases, now), 1);
        assert_eq!(leases[0].renew_at, now + Duration::from_secs(1));

        let mut renewals = Renewals::new(Arc::new(|_: &mut HeldLease| panic!("hostile input")));
        let mut leases = vec![due(now)];
        renewals.start_due(&leases, now);
        assert!(woken(&renewals));
        assert_eq!(renewals.apply(&mut leases, now), 1);
        assert_eq!(renewals.in_flight(), 0, "not stuck in flight");
        assert_eq!(leases[0].renew_at, now + RETRY);
    }
}
