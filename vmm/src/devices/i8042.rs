//! The i8042 keyboard controller's one job here: the CPU reset. A guest `reboot` (the
//! kernel with `reboot=k`) writes 0xFE to its command port 0x64; vm-superio's
//! `I8042Device` turns that into a [`Stop`] with a "guest rebooted" outcome, as
//! Firecracker does. Status reads say "nothing pending", so the kernel's waits end.

use vm_superio::{I8042Device, Trigger};

use super::BusDevice;
use crate::outcome::{Outcome, Stop};

/// The controller's ports: data at 0x60, command/status at 0x64 (offset 4).
pub const I8042_PORT: u64 = 0x60;
pub const I8042_PORTS: u64 = 5;

/// Reports the guest's reset request as the VM's ending.
#[derive(Debug, Clone)]
pub struct ResetTrigger(pub Stop);

impl Trigger for ResetTrigger {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.report(Outcome::Stopped {
            how: "i8042 reset".into(),
        });
        Ok(())
    }
}

/// The controller on the port bus.
#[derive(Debug)]
pub struct I8042 {
    device: I8042Device<ResetTrigger>,
}

impl I8042 {
    pub fn new(stop: Stop) -> I8042 {
        I8042 {
            device: I8042Device::new(ResetTrigger(stop)),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let [byte] = data {
            *byte = self.device.read(offset as u8);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let [byte] = data {
            let _ = self.device.write(offset as u8, *byte);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::devices::Bus;

    #[test]
    fn writing_0xfe_to_port_0x64_is_a_guest_reboot() {
        let stop = Stop::default();
        let mut bus = Bus::default();
        bus.insert(I8042_PORT, I8042_PORTS, Arc::new(Mutex::new(I8042::new(stop.clone()))))
            .unwrap();
        let mut status = [0xffu8];
        assert!(bus.read(0x64, &mut status));
        assert_eq!(status[0] & 0b10, 0, "input buffer empty: the kernel's kb_wait ends");
        bus.write(0x64, &[0xaa]);
        bus.write(0x60, &[0xfe]);
        assert!(!stop.is_reported(), "only 0xFE on the command port resets");
        bus.write(0x64, &[0xfe]);
        assert_eq!(
            stop.wait(),
            Outcome::Stopped {
                how: "i8042 reset".into()
            }
        );
    }
}
