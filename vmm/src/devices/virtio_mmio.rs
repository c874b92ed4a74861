//! The virtio-mmio transport, version 2 (the register layout of virtio 1.x, section 4.2.2):
//! a register window on the MMIO bus in front of a [`VirtioDevice`], split virtqueues from
//! `virtio-queue`, and an interrupt raised through an eventfd that KVM injects (an irqfd).
//! A write to `QueueNotify` processes the queue at once, on the vCPU thread that wrote it;
//! a device with input of its own (virtio-net's RX thread) calls [`MmioTransport::notify`].
//! Everything the driver writes is untrusted: a queue the device cannot use is ignored, and
//! a device error sets `DEVICE_NEEDS_RESET` instead of stopping the VMM.

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::BusDevice;

/// "virt", little-endian.
const MAGIC: u32 = 0x7472_6976;
const VERSION: u32 = 2;
/// "RMKY": the subsystem vendor id the driver sees.
const VENDOR: u32 = 0x594b_4d52;

/// Device status bits (virtio 1.x, 2.1).
pub const ACKNOWLEDGE: u32 = 1;
pub const DRIVER: u32 = 2;
pub const DRIVER_OK: u32 = 4;
pub const FEATURES_OK: u32 = 8;
pub const DEVICE_NEEDS_RESET: u32 = 0x40;

/// `InterruptStatus` bits: a used buffer, a configuration change.
pub const INT_USED_RING: u32 = 1;
pub const INT_CONFIG: u32 = 2;

/// Feature bit every modern device offers.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Where the device-specific configuration starts in the window.
const CONFIG: u64 = 0x100;

/// A device behind the transport: what it is, what it offers, and the work on its queues.
pub trait VirtioDevice: Send {
    /// The virtio device id (2 = block).
    fn device_type(&self) -> u32;
    /// The feature bits offered (with [`VIRTIO_F_VERSION_1`]).
    fn features(&self) -> u64;
    /// The largest size of each queue; their number is the device's queue count.
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads the device's configuration space at `offset`.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Takes the buffers the driver made available on queue `index`; whether any was used.
    fn process(&mut self, index: usize, queue: &mut Queue, mem: &GuestMemoryMmap) -> Result<bool, virtio_queue::Error>;
    /// The driver reset the device (wrote 0 to `Status`).
    fn reset(&mut self) {}
}

/// One virtio-mmio device: its registers' state, its queues, its interrupt.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemoryMmap,
    interrupt: EventFd,
    queues: Vec<Queue>,
    queue_select: u32,
    device_features_select: u32,
    driver_features_select: u32,
    driver_features: u64,
    status: u32,
    interrupt_status: u32,
}

impl std::fmt::Debug for MmioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioTransport")
            .field("device_type", &self.device.device_type())
            .field("status", &self.status)
            .finish()
    }
}

impl MmioTransport {
    /// Puts `device` behind a transport; `interrupt` is its irqfd.
    pub fn new(device: Box<dyn VirtioDevice>, mem: GuestMemoryMmap, interrupt: EventFd) -> MmioTransport {
        let queues = device
            .queue_max_sizes()
            .iter()
            .filter_map(|&max| Queue::new(max).ok())
            .collect();
        MmioTransport {
            device,
            mem,
            interrupt,
            queues,
            queue_select: 0,
            device_features_select: 0,
            driver_features_select: 0,
            driver_features: 0,
            status: 0,
            interrupt_status: 0,
        }
    }

    fn selected(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_select as usize)
    }

    fn raise(&mut self, why: u32) {
        self.interrupt_status |= why;
        // A failed eventfd write loses one interrupt; the driver still sees the used ring.
        let _ = self.interrupt.write(1);
    }

    fn reset(&mut self) {
        for q in &mut self.queues {
            q.reset();
        }
        self.queue_select = 0;
        self.device_features_select = 0;
        self.driver_features_select = 0;
        self.driver_features = 0;
        self.status = 0;
        self.interrupt_status = 0;
        self.device.reset();
    }

    fn set_status(&mut self, mut status: u32) {
        if status == 0 {
            return self.reset();
        }
        let newly = status & !self.status;
        if newly & FEATURES_OK != 0 && self.driver_features & !self.device.features() != 0 {
            // The driver took a feature the device did not offer: refuse FEATURES_OK.
            status &= !FEATURES_OK;
        }
        self.status = status;
    }

    /// Processes queue `index` (a `QueueNotify`, or a device's own thread with new input)
    /// if the device is live and the queue usable, and raises the interrupt if needed.
    pub fn notify(&mut self, index: u32) {
        if self.status & DRIVER_OK == 0 || self.status & DEVICE_NEEDS_RESET != 0 {
            return;
        }
        let Some(queue) = self.queues.get_mut(index as usize) else {
            return;
        };
        if !queue.ready() || !queue.is_valid(&self.mem) {
            return;
        }
        match self.device.process(index as usize, queue, &self.mem) {
            Ok(true) => {
                if queue.needs_notification(&self.mem).unwrap_or(true) {
                    self.raise(INT_USED_RING);
                }
            }
            Ok(false) => {}
            Err(_) => {
                self.status |= DEVICE_NEEDS_RESET;
                self.raise(INT_CONFIG);
            }
        }
    }

    fn register(&mut self, offset: u64) -> u32 {
        let features = self.device.features();
        match offset {
            0x00 => MAGIC,
            0x04 => VERSION,
            0x08 => self.device.device_type(),
            0x0c => VENDOR,
            0x10 => match self.device_features_select {
                0 => features as u32,
                1 => (features >> 32) as u32,
                _ => 0,
            },
            0x34 => self.selected().map_or(0, |q| u32::from(q.max_size())),
            0x44 => self.selected().map_or(0, |q| u32::from(q.ready())),
            0x60 => self.interrupt_status,
            0x70 => self.status,
            _ => 0, // ConfigGeneration (0xfc) included: the configuration never changes.
        }
    }

    fn set_register(&mut self, offset: u64, v: u32) {
        let queue_writable = self.status & DRIVER_OK == 0;
        match offset {
            0x14 => self.device_features_select = v,
            0x20 if self.status & FEATURES_OK == 0 => match self.driver_features_select {
                0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v),
                1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32),
                _ => {}
            },
            0x24 => self.driver_features_select = v,
            0x30 => self.queue_select = v,
            0x50 => self.notify(v),
            0x64 => self.interrupt_status &= !v,
            0x70 => self.set_status(v),
            _ if queue_writable => {
                let Some(q) = self.selected() else { return };
                match offset {
                    0x38 => q.set_size(v as u16),
                    0x44 => q.set_ready(v == 1),
                    0x80 => q.set_desc_table_address(Some(v), None),
                    0x84 => q.set_desc_table_address(None, Some(v)),
                    0x90 => q.set_avail_ring_address(Some(v), None),
                    0x94 => q.set_avail_ring_address(None, Some(v)),
                    0xa0 => q.set_used_ring_address(Some(v), None),
                    0xa4 => q.set_used_ring_address(None, Some(v)),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG {
            self.device.read_config(offset - CONFIG, data);
        } else if data.len() == 4 {
            data.copy_from_slice(&self.register(offset).to_le_bytes());
        } else {
            data.fill(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        // The configuration space is read-only for the devices here; registers are 32-bit.
        if let Ok(word) = <[u8; 4]>::try_from(data)
            && offset < CONFIG
        {
            self.set_register(offset, u32::from_le_bytes(word));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestAddress;

    /// A device with one queue of 16 that counts the notifications it gets.
    struct Counter {
        calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        fail: bool,
    }

    impl VirtioDevice for Counter {
        fn device_type(&self) -> u32 {
            2
        }
        fn features(&self) -> u64 {
            VIRTIO_F_VERSION_1 | 1 << 9
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16]
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn process(&mut self, _: usize, _: &mut Queue, _: &GuestMemoryMmap) -> Result<bool, virtio_queue::Error> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.fail {
                Err(virtio_queue::Error::InvalidChain)
            } else {
                Ok(true)
            }
        }
    }

    fn transport(fail: bool) -> (MmioTransport, std::sync::Arc<std::sync::atomic::AtomicUsize>, EventFd) {
        let calls = std::sync::Arc::default();
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let device = Counter {
            calls: std::sync::Arc::clone(&calls),
            fail,
        };
        let t = MmioTransport::new(Box::new(device), mem, irq.try_clone().unwrap());
        (t, calls, irq)
    }

    fn read(t: &mut MmioTransport, offset: u64) -> u32 {
        let mut data = [0u8; 4];
        t.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    fn write(t: &mut MmioTransport, offset: u64, v: u32) {
        t.write(offset, &v.to_le_bytes());
    }

    /// The Linux driver's sequence up to DRIVER_OK, with queue 0 at 0x1000/0x2000/0x3000.
    fn bring_up(t: &mut MmioTransport) {
        write(t, 0x70, ACKNOWLEDGE | DRIVER);
        write(t, 0x24, 1);
        write(t, 0x20, 1); // VERSION_1
        write(t, 0x70, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        assert_ne!(read(t, 0x70) & FEATURES_OK, 0);
        write(t, 0x30, 0);
        assert_eq!(read(t, 0x34), 16);
        write(t, 0x38, 16);
        for (reg, at) in [(0x80, 0x1000), (0x90, 0x2000), (0xa0, 0x3000)] {
            write(t, reg, at);
            write(t, reg + 4, 0);
        }
        write(t, 0x44, 1);
        write(t, 0x70, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    }

    #[test]
    fn the_registers_identify_a_version_2_device_and_its_features() {
        let (mut t, _, _) = transport(false);
        assert_eq!(read(&mut t, 0x00), 0x7472_6976);
        assert_eq!(read(&mut t, 0x04), 2);
        assert_eq!(read(&mut t, 0x08), 2);
        assert_eq!(read(&mut t, 0x10), 1 << 9);
        write(&mut t, 0x14, 1);
        assert_eq!(read(&mut t, 0x10), 1);
        write(&mut t, 0x30, 1);
        assert_eq!(read(&mut t, 0x34), 0, "no second queue");
        let mut byte = [0u8; 1];
        t.read(0x104, &mut byte);
        assert_eq!(byte, [4], "the configuration space at any width");
        t.read(0x00, &mut byte);
        assert_eq!(byte, [0], "registers are 32-bit");
    }

    #[test]
    fn a_feature_the_device_did_not_offer_is_refused() {
        let (mut t, _, _) = transport(false);
        write(&mut t, 0x70, ACKNOWLEDGE | DRIVER);
        write(&mut t, 0x20, 1 << 28); // VIRTIO_RING_F_INDIRECT_DESC, not offered
        write(&mut t, 0x70, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        assert_eq!(read(&mut t, 0x70) & FEATURES_OK, 0);
    }

    #[test]
    fn a_notify_runs_the_device_and_raises_the_interrupt_only_when_live() {
        let (mut t, calls, irq) = transport(false);
        write(&mut t, 0x50, 0);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0, "before DRIVER_OK");
        bring_up(&mut t);
        assert_eq!(read(&mut t, 0x44), 1);
        write(&mut t, 0x50, 0);
        write(&mut t, 0x50, 7); // no such queue
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(irq.read().unwrap(), 1);
        assert_eq!(read(&mut t, 0x60), INT_USED_RING);
        write(&mut t, 0x64, INT_USED_RING);
        assert_eq!(read(&mut t, 0x60), 0);
        // Reset: status, queues and interrupt state go back to zero.
        write(&mut t, 0x70, 0);
        assert_eq!((read(&mut t, 0x70), read(&mut t, 0x44)), (0, 0));
    }

    #[test]
    fn queues_outside_guest_memory_are_ignored_and_device_errors_ask_for_a_reset() {
        let (mut t, calls, _) = transport(false);
        bring_up(&mut t);
        write(&mut t, 0x70, 0);
        write(&mut t, 0x70, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        write(&mut t, 0x38, 16);
        write(&mut t, 0x80, 0xfff0_0000); // beyond the 1 MiB of memory
        write(&mut t, 0x44, 1);
        write(&mut t, 0x70, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
        write(&mut t, 0x50, 0);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);

        let (mut t, _, irq) = transport(true);
        bring_up(&mut t);
        write(&mut t, 0x50, 0);
        assert_ne!(read(&mut t, 0x70) & DEVICE_NEEDS_RESET, 0);
        assert_eq!(read(&mut t, 0x60), INT_CONFIG);
        assert_eq!(irq.read().unwrap(), 1);
    }
}
