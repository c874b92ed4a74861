//! The device model: a [`Bus`] maps address ranges to [`BusDevice`]s. The VMM has two, one
//! for port I/O (the serial port, the i8042, the CMOS clock, the ACPI sleep register) and one for MMIO (the
//! virtio-mmio devices, [`virtio_mmio`], from [`crate::layout::MMIO_GAP_START`]: the
//! [`block`] disks and the [`net`] NIC on a [`tap`]).
//! A vCPU's `IoIn`/`IoOut`/`MmioRead`/`MmioWrite` exit is dispatched here.

pub mod block;
pub mod cmos;
pub mod i8042;
pub mod net;
pub mod power;
pub mod serial;
pub mod tap;
pub mod virtio_mmio;

use std::sync::{Arc, Mutex};

/// A device on a bus: reads and writes at an offset from the start of its range.
pub trait BusDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between the bus and whoever else feeds it (the serial's input thread).
pub type Shared = Arc<Mutex<dyn BusDevice>>;

/// Two devices claimed overlapping ranges.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bus range {start:#x}+{len:#x} overlaps a device already there")]
pub struct Overlap {
    pub start: u64,
    pub len: u64,
}

/// Address ranges and their devices, sorted by start.
#[derive(Default)]
pub struct Bus {
    ranges: Vec<(u64, u64, Shared)>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranges: Vec<String> = self.ranges.iter().map(|(s, l, _)| format!("{s:#x}+{l:#x}")).collect();
        f.debug_struct("Bus").field("ranges", &ranges).finish()
    }
}

impl Bus {
    /// Puts `device` at `[start, start + len)`.
    pub fn insert(&mut self, start: u64, len: u64, device: Shared) -> Result<(), Overlap> {
        let end = start + len;
        if len == 0 || self.ranges.iter().any(|(s, l, _)| start < s + l && *s < end) {
            return Err(Overlap { start, len });
        }
        let at = self.ranges.partition_point(|(s, _, _)| *s < start);
        self.ranges.insert(at, (start, len, device));
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(u64, &Shared)> {
        let i = self.ranges.partition_point(|(s, _, _)| *s <= addr).checked_sub(1)?;
        let (start, len, device) = &self.ranges[i];
        (addr < start + len).then_some((addr - start, device))
    }

    /// A read at `addr`; with no device there, every bit reads 1 (an empty ISA bus).
    /// Returns whether a device answered.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((offset, device)) => {
                device.lock().unwrap_or_else(|e| e.into_inner()).read(offset, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// A write at `addr`; dropped when no device is there. Returns whether one took it.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((offset, device)) => {
                device.lock().unwrap_or_else(|e| e.into_inner()).write(offset, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Remembers the last write and answers reads with its offset.
    #[derive(Default)]
    struct Probe {
        last: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Probe {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.last.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn accesses_reach_the_device_at_their_offset_and_nothing_else() {
        let probe = Arc::new(Mutex::new(Probe::default()));
        let mut bus = Bus::default();
        bus.insert(0x3f8, 8, probe.clone()).unwrap();
        bus.insert(0x60, 1, Arc::new(Mutex::new(Probe::default()))).unwrap();
        assert_eq!(
            bus.insert(0x3fc, 8, probe.clone()),
            Err(Overlap { start: 0x3fc, len: 8 })
        );
        assert!(bus.insert(0x3f0, 9, probe.clone()).is_err());
        assert!(bus.insert(0x400, 0, probe.clone()).is_err());

        let mut data = [0u8; 1];
        assert!(bus.read(0x3fd, &mut data));
        assert_eq!(data, [5]);
        assert!(bus.write(0x3f8, b"A"));
        assert!(!bus.write(0x3f7, b"B"));
        assert!(!bus.write(0x400, b"C"));
        assert_eq!(probe.lock().unwrap().last, vec![(0, b"A".to_vec())]);
        // An empty port reads as all ones.
        let mut empty = [0u8; 2];
        assert!(!bus.read(0x80, &mut empty));
        assert_eq!(empty, [0xff, 0xff]);
    }
}
