//! virtio-net (virtio 1.x, 5.1) on a tap device: an RX queue (0) and a TX queue (1),
//! features `VERSION_1`, `MAC` and `STATUS` (the link is always up). The tap is opened
//! without `IFF_VNET_HDR`: the device offers no checksum or segmentation offload, so every
//! 12-byte `virtio_net_hdr_v1` is empty, and the device strips it on TX and writes a zeroed
//! one (`num_buffers` 1) on RX. TX runs on the `QueueNotify` (the vCPU thread); RX runs on a
//! thread ([`spawn_rx`]) that waits in epoll for the tap to be readable, but only while the
//! driver has RX buffers posted; otherwise it waits for the driver's next RX notify. A frame
//! that does not fit the driver's buffer, or a TX chain that is no frame, is dropped as a NIC
//! would; a used ring that cannot be written is a device error.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::virtio_mmio::{MmioTransport, VIRTIO_F_VERSION_1, VirtioDevice};

/// The virtio device id of a network card.
pub const DEVICE_TYPE: u32 = 1;
/// Feature bits (virtio 1.x, 5.1.3).
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
pub const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
/// `virtio_net_config.status`: the link is up.
const VIRTIO_NET_S_LINK_UP: u16 = 1;
/// The header before every frame: `virtio_net_hdr_v1` (with `num_buffers`).
pub const HEADER_LEN: usize = 12;
/// The largest frame moved: a 64 KiB IP packet and its Ethernet header.
pub const MAX_FRAME: usize = 65_550;
const QUEUE_SIZE: u16 = 256;
pub const RX: usize = 0;
pub const TX: usize = 1;

/// A virtio-net device over a tap (or anything that reads and writes one frame per call).
pub struct Net {
    tap: File,
    mac: [u8; 6],
    frame: Vec<u8>,
    /// The driver has no RX buffer posted: the RX thread waits for `rx_kick`, not the tap.
    starved: Arc<AtomicBool>,
    rx_kick: EventFd,
    dropped: u64,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net").field("mac", &self.mac).finish()
    }
}

impl Net {
    pub fn new(tap: File, mac: [u8; 6]) -> std::io::Result<Net> {
        Ok(Net {
            tap,
            mac,
            frame: vec![0; HEADER_LEN + MAX_FRAME],
            starved: Arc::new(AtomicBool::new(true)),
            rx_kick: EventFd::new(libc::EFD_NONBLOCK)?,
            dropped: 0,
        })
    }

    /// Frames dropped so far: too big for the driver's buffer, or not sent by the tap.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Moves frames from the tap into the driver's RX buffers until one side runs out.
    fn receive(&mut self, queue: &mut Queue, mem: &GuestMemoryMmap) -> Result<bool, virtio_queue::Error> {
        let mut used = false;
        let starved = loop {
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                break true;
            };
            let head = chain.head_index();
            let Ok(mut writer) = chain.writer(mem) else {
                // Buffers outside guest memory: returned unused.
                queue.add_used(mem, head, 0)?;
                used = true;
                continue;
            };
            let n = match self.tap.read(&mut self.frame[HEADER_LEN..]) {
                Ok(n) => n,
                Err(_) => {
                    // Nothing to read (EAGAIN) or a tap error: keep the buffer for later.
                    queue.go_to_previous_position();
                    break false;
                }
            };
            let len = HEADER_LEN + n;
            if len > writer.available_bytes() {
                self.dropped += 1;
                queue.go_to_previous_position();
                continue;
            }
            self.frame[..HEADER_LEN].fill(0);
            self.frame[10] = 1; // num_buffers
            let written = writer.write_all(&self.frame[..len]).map_or(0, |()| len as u32);
            queue.add_used(mem, head, written)?;
            used = true;
        };
        let was = self.starved.swap(starved, Ordering::SeqCst);
        if was && !starved {
            // Buffers came back: the RX thread watches the tap again.
            let _ = self.rx_kick.write(1);
        }
        Ok(used)
    }

    /// Sends every frame the driver queued for transmission to the tap.
    fn transmit(&mut self, queue: &mut Queue, mem: &GuestMemoryMmap) -> Result<bool, virtio_queue::Error> {
        let mut used = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let frame = chain.reader(mem).ok().and_then(|mut reader| {
                let len = reader.available_bytes();
                (len > HEADER_LEN && len <= self.frame.len())
                    .then(|| reader.read_exact(&mut self.frame[..len]).ok().map(|()| len))
                    .flatten()
            });
            // A frame the tap does not take (full, down) is lost, as on a wire.
            let sent = frame.is_some_and(|len| self.tap.write(&self.frame[HEADER_LEN..len]).is_ok());
            self.dropped += u64::from(!sent);
            queue.add_used(mem, head, 0)?;
            used = true;
        }
        Ok(used)
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        DEVICE_TYPE
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    /// `struct virtio_net_config`: the MAC, then the status; the rest is not offered.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut config = [0u8; 0x10];
        config[..6].copy_from_slice(&self.mac);
        config[6..8].copy_from_slice(&VIRTIO_NET_S_LINK_UP.to_le_bytes());
        let start = (offset as usize).min(config.len());
        let end = start.saturating_add(data.len()).min(config.len());
        data.fill(0);
        data[..end - start].copy_from_slice(&config[start..end]);
    }

    fn process(&mut self, index: usize, queue: &mut Queue, mem: &GuestMemoryMmap) -> Result<bool, virtio_queue::Error> {
        let result = match index {
            RX => self.receive(queue, mem),
            TX => self.transmit(queue, mem),
            _ => Ok(false),
        };
        if result.is_err() {
            self.starved.store(true, Ordering::SeqCst);
        }
        result
    }

    fn reset(&mut self) {
        self.starved.store(true, Ordering::SeqCst);
    }
}

const TAP: u64 = 0;
const KICK: u64 = 1;

/// What the RX thread shares with the device: the tap, the kick and the starved flag.
#[derive(Debug)]
pub struct RxHandle {
    tap: File,
    kick: EventFd,
    starved: Arc<AtomicBool>,
}

impl Net {
    /// The RX thread's share of the device, taken before the device goes behind its transport.
    pub fn rx_handle(&self) -> std::io::Result<RxHandle> {
        Ok(RxHandle {
            tap: self.tap.try_clone()?,
            kick: self.rx_kick.try_clone()?,
            starved: Arc::clone(&self.starved),
        })
    }
}

/// Starts the RX thread of a [`Net`] (`rx`, its [`Net::rx_handle`]), which sits behind `transport`: it waits (epoll, no
/// timeout) for the tap to be readable while the driver has RX buffers, or for the driver
/// to post some, and then processes the RX queue through the transport, which raises the
/// interrupt. A tap that reports an error or a hang-up (deleted while in use) stops the
/// thread, so it cannot spin on it.
pub fn spawn_rx(rx: RxHandle, transport: Arc<Mutex<MmioTransport>>) -> std::io::Result<()> {
    let RxHandle { tap, kick, starved } = rx;
    let epoll = Epoll::new()?;
    epoll.ctl(
        ControlOperation::Add,
        tap.as_raw_fd(),
        EpollEvent::new(EventSet::empty(), TAP),
    )?;
    epoll.ctl(
        ControlOperation::Add,
        kick.as_raw_fd(),
        EpollEvent::new(EventSet::IN, KICK),
    )?;
    std::thread::Builder::new().name("net-rx".into()).spawn(move || {
        let mut events = [EpollEvent::default(); 2];
        let mut watching = false;
        loop {
            let want = !starved.load(Ordering::SeqCst);
            if want != watching {
                let set = if want { EventSet::IN } else { EventSet::empty() };
                if let Err(e) = epoll.ctl(ControlOperation::Modify, tap.as_raw_fd(), EpollEvent::new(set, TAP)) {
                    eprintln!("ramkey-vmm: net: the RX thread stops: {e}");
                    return;
                }
                watching = want;
            }
            let n = match epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("ramkey-vmm: net: the RX thread stops: {e}");
                    return;
                }
            };
            for event in &events[..n] {
                if event.data() == KICK {
                    let _ = kick.read();
                } else if event.event_set().intersects(EventSet::ERROR | EventSet::HANG_UP) {
                    // The tap went away (deleted under us): epoll would report it forever.
                    eprintln!("ramkey-vmm: net: the tap failed; the RX thread stops");
                    return;
                } else {
                    let mut transport = transport.lock().unwrap_or_else(|e| e.into_inner());
                    transport.notify(RX as u32);
                }
            }
        }
    })?;
    Ok(())
}

/// The default MAC of the NIC on tap `name`: QEMU's locally administered prefix 52:54:00 and
/// three bytes of the name's FNV-1a hash, so the same tap always gets the same address.
pub fn default_mac(name: &str) -> [u8; 6] {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let [a, b, c, ..] = hash.to_le_bytes();
    [0x52, 0x54, 0x00, a, b, c]
}

/// `aa:bb:cc:dd:ee:ff`, lowercase, as the guest's sysfs shows it.
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixDatagram;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::desc::split::Descriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Address, Bytes, GuestAddress};

    const WRITE: u16 = 2;
    const BUF: u64 = 0x1_0000;

    /// A device whose "tap" is one end of a datagram socket pair (one frame per message, as
    /// a tap); the other end is returned.
    fn net() -> (Net, UnixDatagram) {
        let (ours, theirs) = UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        (
            Net::new(File::from(OwnedFd::from(ours)), [0x52, 0x54, 0, 1, 2, 3]).unwrap(),
            theirs,
        )
    }

    /// A queue with one single-descriptor chain of `len` bytes at `addr`; runs queue `index`
    /// and returns the used ring's index and the first entry's length.
    fn run(net: &mut Net, mem: &GuestMemoryMmap, index: usize, addr: u64, len: u32, flags: u16) -> (u16, u32) {
        let mock = MockSplitQueue::create(mem, GuestAddress(0x8000), 16);
        let raw = [RawDescriptor::from(Descriptor::new(addr, len, flags, 0))];
        mock.add_desc_chains(&raw, 0).unwrap();
        let mut queue: Queue = mock.create_queue().unwrap();
        net.process(index, &mut queue, mem).unwrap();
        let idx: u16 = mem.read_obj(mock.used_addr().unchecked_add(2)).unwrap();
        let used_len: u32 = mem.read_obj(mock.used_addr().unchecked_add(8)).unwrap();
        (idx, used_len)
    }

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    #[test]
    fn a_frame_from_the_tap_lands_in_an_rx_buffer_behind_an_empty_header() {
        let (mut net, peer) = net();
        let mem = memory();
        assert!(
            net.starved.load(Ordering::SeqCst),
            "no buffers before the driver posts some"
        );
        peer.send(b"an ethernet frame").unwrap();
        assert_eq!(run(&mut net, &mem, RX, BUF, 2048, WRITE), (1, 12 + 17));
        let mut got = [0u8; 29];
        mem.read_slice(&mut got, GuestAddress(BUF)).unwrap();
        assert_eq!(got[..12], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], "num_buffers 1");
        assert_eq!(&got[12..], b"an ethernet frame");
        // The one buffer is used: the thread waits for the driver, not the tap.
        assert!(net.starved.load(Ordering::SeqCst));
        // A buffer and an empty tap: the buffer is kept and the RX thread is kicked to watch
        // the tap again.
        assert_eq!(run(&mut net, &mem, RX, BUF, 2048, WRITE).0, 0, "nothing used");
        assert!(!net.starved.load(Ordering::SeqCst));
        assert_eq!(net.rx_kick.read().unwrap(), 1);
        peer.send(b"later").unwrap();
        assert_eq!(run(&mut net, &mem, RX, BUF, 2048, WRITE), (1, 12 + 5));
        // A reset forgets the buffers.
        net.reset();
        assert!(net.starved.load(Ordering::SeqCst));
    }

    #[test]
    fn frames_too_big_or_buffers_outside_memory_do_not_panic() {
        let (mut net, peer) = net();
        let mem = memory();
        peer.send(&[7u8; 100]).unwrap();
        assert_eq!(run(&mut net, &mem, RX, BUF, 64, WRITE), (0, 0), "dropped, buffer kept");
        assert_eq!(net.dropped(), 1);
        peer.send(b"x").unwrap();
        assert_eq!(
            run(&mut net, &mem, RX, 0xfff0_0000, 2048, WRITE),
            (1, 0),
            "returned unused"
        );
        // TX: a chain outside memory, a header alone and a read-only-for-us buffer are dropped.
        assert_eq!(run(&mut net, &mem, TX, 0xfff0_0000, 64, 0), (1, 0));
        assert_eq!(run(&mut net, &mem, TX, BUF, 12, 0), (1, 0));
        assert_eq!(run(&mut net, &mem, TX, BUF, u32::MAX, 0), (1, 0));
        assert_eq!(net.dropped(), 4);
        assert_eq!(run(&mut net, &mem, 2, BUF, 64, 0), (0, 0), "no third queue");
    }

    #[test]
    fn a_tx_frame_reaches_the_tap_without_its_header() {
        let (mut net, peer) = net();
        let mem = memory();
        mem.write_slice(&[0xee; 12], GuestAddress(BUF)).unwrap();
        mem.write_slice(b"frame out", GuestAddress(BUF + 12)).unwrap();
        assert_eq!(run(&mut net, &mem, TX, BUF, 21, 0), (1, 0));
        let mut got = [0u8; 64];
        let n = peer.recv(&mut got).unwrap();
        assert_eq!(&got[..n], b"frame out");
        assert_eq!(net.dropped(), 0);
    }

    #[test]
    fn the_configuration_space_holds_the_mac_and_a_link_that_is_up() {
        let (net, _) = net();
        assert_eq!(
            net.features(),
            VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS
        );
        assert_eq!(net.queue_max_sizes().len(), 2);
        let mut config = [0xffu8; 8];
        net.read_config(0, &mut config);
        assert_eq!(config, [0x52, 0x54, 0, 1, 2, 3, 1, 0]);
        let mut tail = [0xffu8; 4];
        net.read_config(u64::MAX, &mut tail);
        assert_eq!(tail, [0; 4]);
        assert_eq!(mac_string(&default_mac("tap0")), mac_string(&default_mac("tap0")));
        assert!(mac_string(&default_mac("tap0")).starts_with("52:54:00:"));
    }
}
