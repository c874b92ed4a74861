//! An Ethernet hub over UDP on 127.0.0.1 ([`Hub`]): the segment that machines started with
//! `--link udp:LOCAL:PORT` share, for tests with two boxes and a client (and by hand with
//! `ramkey hub PORT`).
//!
//! QEMU's dgram netdev sends each Ethernet frame as one datagram from its LOCAL port to the
//! hub's. The hub learns every sender's address from what it receives and sends each frame
//! on to every other sender it has learned: a hub floods, it needs no MAC table. A machine
//! killed and started again on the same LOCAL port has the same address, so it is served as
//! before. [`Hub::cut`] pulls the whole segment's cable, [`Hub::isolate`] one member's.
//! [`Hub::keep`] keeps the frames of one EtherType that pass, for a test to read.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the hub's thread looks at its stop flag when no frame arrives.
const POLL: Duration = Duration::from_millis(100);

/// The largest datagram (an Ethernet frame, jumbo or not) the hub passes on.
const MAX_FRAME: usize = 65536;

/// The most frames [`Hub::keep`] keeps; later ones are not kept.
const MAX_KEPT: usize = 10_000;

/// A running hub: one UDP socket on 127.0.0.1:PORT served by a thread, stopped on drop.
#[derive(Debug)]
pub struct Hub {
    port: u16,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What the hub's thread and its owner share.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    cut: AtomicBool,
    /// The LOCAL ports of members whose frames are dropped, to and from.
    isolated: Mutex<BTreeSet<u16>>,
    /// Every sender learned, in the order they first sent.
    members: Mutex<Vec<SocketAddr>>,
    /// The EtherType whose frames are kept, and those kept.
    keep: Mutex<Option<(u16, Vec<Seen>)>>,
    received: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

/// A frame the hub kept ([`Hub::keep`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// When the hub received it.
    pub at: Instant,
    /// The LOCAL port of the member that sent it.
    pub from: u16,
    /// The Ethernet frame, from its destination MAC on.
    pub frame: Vec<u8>,
}

/// The hub's frame counts since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Frames received from members.
    pub received: u64,
    /// Copies sent on to other members.
    pub forwarded: u64,
    /// Frames (or copies) dropped: cut, isolated, or a send that failed.
    pub dropped: u64,
}

impl Hub {
    /// Binds 127.0.0.1:`port` (0: any free port, see [`Hub::port`]) and starts serving it.
    pub fn start(port: u16) -> io::Result<Hub> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, port))?;
        socket.set_read_timeout(Some(POLL))?;
        let port = socket.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new().name(format!("hub-{port}")).spawn({
            let shared = Arc::clone(&shared);
            move || serve(&socket, &shared)
        })?;
        Ok(Hub {
            port,
            shared,
            thread: Some(thread),
        })
    }

    /// The UDP port the hub listens on: machines link with `udp:LOCAL:PORT`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cuts the segment (`true`: every frame is dropped, as with the cable pulled) or joins it
    /// again (`false`).
    pub fn cut(&self, cut: bool) {
        self.shared.cut.store(cut, Ordering::SeqCst);
    }

    /// Cuts one member off (`true`) or joins it again (`false`): the member sending from
    /// 127.0.0.1:`local_port` (its `udp:LOCAL:..`) neither reaches the others nor hears them.
    /// It may be isolated before it first sends.
    pub fn isolate(&self, local_port: u16, isolated: bool) {
        let mut set = lock(&self.shared.isolated);
        if isolated {
            set.insert(local_port);
        } else {
            set.remove(&local_port);
        }
    }

    /// Keeps, from now on, every frame of `ethertype` (0x0806: ARP) that a member sends and
    /// the hub passes on (not those it drops), up to 10 000; see [`Hub::kept`].
    pub fn keep(&self, ethertype: u16) {
        *lock(&self.shared.keep) = Some((ethertype, Vec::new()));
    }

    /// The frames kept since [`Hub::keep`], in the order received.
    pub fn kept(&self) -> Vec<Seen> {
        lock(&self.shared.keep)
            .as_ref()
            .map(|(_, seen)| seen.clone())
            .unwrap_or_default()
    }

    /// The members learned so far, in the order they first sent.
    pub fn members(&self) -> Vec<SocketAddr> {
        lock(&self.shared.members).clone()
    }

    /// The frame counts so far.
    pub fn stats(&self) -> HubStats {
        let s = &self.shared;
        HubStats {
            received: s.received.load(Ordering::SeqCst),
            forwarded: s.forwarded.load(Ordering::SeqCst),
            dropped: s.dropped.load(Ordering::SeqCst),
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A lock that a panicked holder did not spoil: the sets it guards stay consistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The hub's thread: receives frames until stopped and floods each to the other members.
fn serve(socket: &UdpSocket, shared: &Shared) {
    let mut buf = vec![0u8; MAX_FRAME];
    while !shared.stop.load(Ordering::SeqCst) {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            // The poll's timeout, a signal, or an ICMP error a gone member left behind.
            Err(_) => continue,
        };
        shared.received.fetch_add(1, Ordering::SeqCst);
        let targets = {
            let mut members = lock(&shared.members);
            if !members.contains(&from) {
                members.push(from);
            }
            let isolated = lock(&shared.isolated);
            if shared.cut.load(Ordering::SeqCst) || isolated.contains(&from.port()) {
                shared.dropped.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            members
                .iter()
                .filter(|m| **m != from)
                .partition::<Vec<SocketAddr>, _>(|m| !isolated.contains(&m.port()))
        };
        let (to, cut_off) = targets;
        if let Some((ethertype, seen)) = lock(&shared.keep).as_mut()
            && buf[..len].get(12..14) == Some(&ethertype.to_be_bytes()[..])
            && seen.len() < MAX_KEPT
        {
            seen.push(Seen {
                at: Instant::now(),
                from: from.port(),
                frame: buf[..len].to_vec(),
            });
        }
        shared.dropped.fetch_add(cut_off.len() as u64, Ordering::SeqCst);
        for member in to {
            let counter = match socket.send_to(&buf[..len], member) {
                Ok(_) => &shared.forwarded,
                // A member that is gone (being restarted, say) misses the frame, as on a wire.
                Err(_) => &shared.dropped,
            };
            counter.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member: a plain UDP socket on 127.0.0.1, as QEMU's dgram netdev is.
    fn member() -> UdpSocket {
        let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        s
    }

    fn port(s: &UdpSocket) -> u16 {
        s.local_addr().unwrap().port()
    }

    fn send(s: &UdpSocket, hub: &Hub, frame: &[u8]) {
        s.send_to(frame, (Ipv4Addr::LOCALHOST, hub.port())).unwrap();
    }

    /// The next frame `s` receives, or `None` after the read timeout.
    fn recv(s: &UdpSocket) -> Option<Vec<u8>> {
        let mut buf = [0u8; 2048];
        s.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
    }

    /// Three members, each of which has sent once (so the hub knows them all), inboxes empty.
    fn segment(hub: &Hub) -> [UdpSocket; 3] {
        let ms = [member(), member(), member()];
        for m in &ms {
            send(m, hub, b"hello");
        }
        for m in &ms {
            while recv(m).is_some() {}
        }
        assert_eq!(hub.members().len(), 3);
        ms
    }

    #[test]
    fn a_frame_reaches_every_other_member_and_not_its_sender() {
        let hub = Hub::start(0).unwrap();
        let [a, b, c] = segment(&hub);
        send(&a, &hub, b"frame from a");
        assert_eq!(recv(&b).as_deref(), Some(&b"frame from a"[..]));
        assert_eq!(recv(&c).as_deref(), Some(&b"frame from a"[..]));
        assert_eq!(recv(&a), None);
        assert_eq!(hub.members(), [&a, &b, &c].map(|m| m.local_addr().unwrap()).to_vec());
        let stats = hub.stats();
        assert_eq!(stats.received, 4);
        // hello from b reached a; hello from c reached a and b; the frame reached b and c.
        assert_eq!(stats.forwarded, 5);
    }

    #[test]
    fn kept_frames_are_those_of_the_ethertype_passed_on() {
        let hub = Hub::start(0).unwrap();
        let [a, b, c] = segment(&hub);
        let frame = |ethertype: [u8; 2]| {
            [[0xff; 6], [2; 6]]
                .concat()
                .into_iter()
                .chain(ethertype)
                .chain(*b"data")
        };
        let arp: Vec<u8> = frame([0x08, 0x06]).collect();
        let ipv4: Vec<u8> = frame([0x08, 0x00]).collect();
        send(&a, &hub, &arp);
        // Passed on before keeping began: not kept.
        assert_eq!(recv(&b), Some(arp.clone()));
        hub.keep(0x0806);
        send(&a, &hub, &ipv4);
        send(&b, &hub, &arp);
        hub.isolate(port(&c), true);
        send(&c, &hub, &arp);
        while recv(&a).is_some() || recv(&b).is_some() {}
        let kept = hub.kept();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!((kept[0].from, &kept[0].frame), (port(&b), &arp));
    }

    #[test]
    fn a_cut_segment_drops_every_frame_until_joined_again() {
        let hub = Hub::start(0).unwrap();
        let [a, b, c] = segment(&hub);
        hub.cut(true);
        send(&a, &hub, b"lost");
        send(&b, &hub, b"lost too");
        assert_eq!(recv(&a), None);
        assert_eq!(recv(&b), None);
        assert_eq!(recv(&c), None);
        hub.cut(false);
        send(&c, &hub, b"back");
        assert_eq!(recv(&a).as_deref(), Some(&b"back"[..]));
        assert_eq!(recv(&b).as_deref(), Some(&b"back"[..]));
    }

    #[test]
    fn an_isolated_member_neither_reaches_nor_hears_the_others() {
        let hub = Hub::start(0).unwrap();
        let [a, b, c] = segment(&hub);
        hub.isolate(port(&b), true);
        send(&a, &hub, b"to all but b");
        assert_eq!(recv(&c).as_deref(), Some(&b"to all but b"[..]));
        assert_eq!(recv(&b), None);
        send(&b, &hub, b"from b");
        assert_eq!(recv(&a), None);
        assert_eq!(recv(&c), None);
        hub.isolate(port(&b), false);
        send(&b, &hub, b"b is back");
        assert_eq!(recv(&a).as_deref(), Some(&b"b is back"[..]));
        assert_eq!(recv(&c).as_deref(), Some(&b"b is back"[..]));
    }

    #[test]
    fn a_member_restarted_on_its_port_is_served_again_and_drop_frees_the_port() {
        let hub = Hub::start(0).unwrap();
        let [a, b, c] = segment(&hub);
        let b_port = port(&b);
        drop(b);
        // A frame while b is gone is lost for b only.
        send(&a, &hub, b"while b is down");
        assert_eq!(recv(&c).as_deref(), Some(&b"while b is down"[..]));
        let b = UdpSocket::bind((Ipv4Addr::LOCALHOST, b_port)).unwrap();
        b.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        send(&a, &hub, b"b restarted");
        assert_eq!(recv(&b).as_deref(), Some(&b"b restarted"[..]));
        assert_eq!(hub.members().len(), 3);

        let hub_port = hub.port();
        drop(hub);
        let again = Hub::start(hub_port).unwrap();
        assert_eq!(again.port(), hub_port);
    }
}
