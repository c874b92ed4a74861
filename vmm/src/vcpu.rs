//! A vCPU's thread: `KVM_RUN` in a loop, port and MMIO exits dispatched to the buses, every
//! other exit classified ([`crate::outcome::classify`]); the first ending is reported to
//! the [`Stop`] and ends the loop.

use std::sync::Arc;

use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::devices::Bus;
use crate::outcome::{Outcome, Stop, classify};

/// The buses a vCPU's exits go to.
#[derive(Debug, Clone, Default)]
pub struct Buses {
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
}

/// Runs `vcpu` until the VM ends (by this vCPU or another one's report).
pub fn run(mut vcpu: VcpuFd, id: u8, buses: &Buses, stop: &Stop) {
    while !stop.is_reported() {
        let outcome = match vcpu.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                buses.pio.read(u64::from(port), data);
                None
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                buses.pio.write(u64::from(port), data);
                None
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                buses.mmio.read(addr, data);
                None
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                buses.mmio.write(addr, data);
                None
            }
            Ok(exit) => classify(&exit, id),
            Err(e) if matches!(e.errno(), libc::EINTR | libc::EAGAIN) => None,
            Err(e) => Some(Outcome::Internal {
                why: format!("KVM_RUN on vcpu {id}: {e}"),
            }),
        };
        if let Some(outcome) = outcome {
            stop.report(outcome);
        }
    }
}
