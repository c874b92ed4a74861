//! ACPI power-off for a hardware-reduced machine: the FADT's sleep control and sleep status
//! registers are one byte at port [`SLEEP_PORT`] (as in Cloud Hypervisor), and the DSDT's
//! `\_S5_` package says S5 is sleep type [`S5_SLEEP_TYPE`]. A guest `poweroff` (Linux's
//! `acpi_hw_extended_sleep`) writes `SLP_TYP << 2 | SLP_EN` there, which ends the VM as a
//! power-off. Reads answer 0 (no wake status): the guest never sees itself wake.

use super::BusDevice;
use crate::outcome::{Outcome, Stop};

/// The sleep control and status register.
pub const SLEEP_PORT: u64 = 0x3c0;
pub const SLEEP_PORTS: u64 = 1;
/// The S5 (soft off) sleep type, as `\_S5_` announces it.
pub const S5_SLEEP_TYPE: u8 = 5;
/// `SLP_EN` in the sleep control register; `SLP_TYP` sits in bits 2–4.
const SLEEP_ENABLE: u8 = 1 << 5;

/// The sleep control register on the port bus.
#[derive(Debug)]
pub struct Power {
    stop: Stop,
}

impl Power {
    pub fn new(stop: Stop) -> Power {
        Power { stop }
    }
}

impl BusDevice for Power {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let [byte] = data
            && byte & SLEEP_ENABLE != 0
            && (byte >> 2) & 7 == S5_SLEEP_TYPE
        {
            self.stop.report(Outcome::PoweredOff { how: "ACPI S5".into() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_slp_en_with_the_s5_type_powers_off() {
        let stop = Stop::default();
        let mut power = Power::new(stop.clone());
        // Linux clears the wake status first, then sleeps; S3 (type 1) is not a power-off.
        power.write(0, &[0x80]);
        power.write(0, &[1 << 2 | SLEEP_ENABLE]);
        power.write(0, &[5 << 2]);
        power.write(0, &[0x34, 0]);
        assert!(!stop.is_reported());
        let mut status = [0xff];
        power.read(0, &mut status);
        assert_eq!(status, [0]);
        power.write(0, &[0x34]);
        assert_eq!(stop.wait(), Outcome::PoweredOff { how: "ACPI S5".into() });
    }
}
