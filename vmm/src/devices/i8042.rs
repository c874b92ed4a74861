//! The i8042 keyboard controller, as much of it as a Linux guest probes, and its CPU
//! reset: a guest `reboot` (the kernel with `reboot=k`) writes 0xFE to the command port
//! 0x64, which ends the VM as a guest reboot (Firecracker's way of letting a guest stop).
//! The controller answers the kernel's probe — the configuration byte (CTR), the output
//! port, the self-test — so that the i8042 driver does not wait for timeouts (about 2 s
//! of a nested guest's boot); keyboard bytes get an ACK. vm-superio's `I8042Device` does
//! only the reset, and its status of 0 makes the probe time out.

use super::BusDevice;
use crate::outcome::{Outcome, Stop};

/// The controller's ports: data at 0x60, command/status at 0x64 (offset 4).
pub const I8042_PORT: u64 = 0x60;
pub const I8042_PORTS: u64 = 5;
const DATA: u64 = 0;
const COMMAND: u64 = 4;

/// Status register bits.
const STATUS_OUTPUT_FULL: u8 = 0x01;
const STATUS_SYSTEM: u8 = 0x04;
const STATUS_COMMAND_DATA: u8 = 0x08;
const STATUS_KBD_ENABLED: u8 = 0x10;

/// Controller commands.
const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KBD_TEST: u8 = 0xab;
const CMD_READ_OUTPUT_PORT: u8 = 0xd0;
const CMD_WRITE_OUTPUT_PORT: u8 = 0xd1;
const CMD_RESET_CPU: u8 = 0xfe;

/// The configuration byte at power-on: keyboard interrupt on, POST passed.
const CTR_DEFAULT: u8 = 0x05;
/// The output port: the A20 gate open, no reset asserted.
const OUTPUT_PORT_DEFAULT: u8 = 0x03;
const SELF_TEST_OK: u8 = 0x55;
const ACK: u8 = 0xfa;

/// The controller on the port bus.
#[derive(Debug)]
pub struct I8042 {
    stop: Stop,
    status: u8,
    ctr: u8,
    output_port: u8,
    /// The command waiting for its data byte on port 0x60.
    pending: Option<u8>,
    /// The byte the guest reads from port 0x60.
    output: Option<u8>,
}

impl I8042 {
    pub fn new(stop: Stop) -> I8042 {
        I8042 {
            stop,
            status: STATUS_SYSTEM | STATUS_KBD_ENABLED,
            ctr: CTR_DEFAULT,
            output_port: OUTPUT_PORT_DEFAULT,
            pending: None,
            output: None,
        }
    }

    fn respond(&mut self, byte: u8) {
        self.output = Some(byte);
        self.status |= STATUS_OUTPUT_FULL;
    }

    fn command(&mut self, command: u8) {
        match command {
            CMD_READ_CTR => self.respond(self.ctr),
            CMD_READ_OUTPUT_PORT => self.respond(self.output_port),
            CMD_SELF_TEST => self.respond(SELF_TEST_OK),
            CMD_KBD_TEST => self.respond(0),
            CMD_WRITE_CTR | CMD_WRITE_OUTPUT_PORT => {
                self.pending = Some(command);
                self.status |= STATUS_COMMAND_DATA;
            }
            CMD_RESET_CPU => self.stop.report(Outcome::Stopped {
                how: "i8042 reset".into(),
            }),
            // Enabling or disabling the ports, the aux port's commands: nothing to do.
            _ => {}
        }
    }

    fn data(&mut self, byte: u8) {
        self.status &= !STATUS_COMMAND_DATA;
        match self.pending.take() {
            Some(CMD_WRITE_CTR) => self.ctr = byte,
            Some(_) => {
                // The output port: bit 0 clear pulls the CPU's reset line.
                self.output_port = byte;
                if byte & 1 == 0 {
                    self.command(CMD_RESET_CPU);
                }
            }
            // A byte for the keyboard: acknowledged, never acted on.
            None => self.respond(ACK),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let byte = match offset {
            DATA => {
                self.status &= !STATUS_OUTPUT_FULL;
                self.output.take().unwrap_or(0)
            }
            COMMAND => self.status,
            _ => 0xff,
        };
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = byte;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data) {
            (DATA, [byte]) => self.data(*byte),
            (COMMAND, [byte]) => self.command(*byte),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::devices::Bus;

    fn controller() -> (Bus, Stop) {
        let stop = Stop::default();
        let mut bus = Bus::default();
        bus.insert(I8042_PORT, I8042_PORTS, Arc::new(Mutex::new(I8042::new(stop.clone()))))
            .unwrap();
        (bus, stop)
    }

    fn inb(bus: &Bus, port: u64) -> u8 {
        let mut byte = [0u8];
        assert!(bus.read(port, &mut byte));
        byte[0]
    }

    #[test]
    fn writing_0xfe_to_port_0x64_is_a_guest_reboot() {
        let (bus, stop) = controller();
        assert_eq!(
            inb(&bus, 0x64) & 0b10,
            0,
            "input buffer empty: the kernel's kb_wait ends"
        );
        bus.write(0x60, &[0xfe]);
        assert!(!stop.is_reported(), "0xFE to the keyboard is not a reset");
        bus.write(0x64, &[0xfe]);
        assert_eq!(
            stop.wait(),
            Outcome::Stopped {
                how: "i8042 reset".into()
            }
        );
    }

    #[test]
    fn pulling_the_output_port_s_reset_line_is_a_reboot_too() {
        let (bus, stop) = controller();
        bus.write(0x64, &[CMD_WRITE_OUTPUT_PORT]);
        bus.write(0x60, &[0x02]);
        assert!(stop.is_reported());
    }

    #[test]
    fn the_kernel_s_probe_is_answered() {
        let (bus, stop) = controller();
        // Self-test, then the CTR read back after a write, as i8042_controller_init does.
        bus.write(0x64, &[CMD_SELF_TEST]);
        assert_eq!(inb(&bus, 0x64) & STATUS_OUTPUT_FULL, STATUS_OUTPUT_FULL);
        assert_eq!(inb(&bus, 0x60), SELF_TEST_OK);
        assert_eq!(inb(&bus, 0x64) & STATUS_OUTPUT_FULL, 0);
        bus.write(0x64, &[CMD_READ_CTR]);
        assert_eq!(inb(&bus, 0x60), CTR_DEFAULT);
        bus.write(0x64, &[CMD_WRITE_CTR]);
        assert_eq!(inb(&bus, 0x64) & STATUS_COMMAND_DATA, STATUS_COMMAND_DATA);
        bus.write(0x60, &[0x47]);
        bus.write(0x64, &[CMD_READ_CTR]);
        assert_eq!(inb(&bus, 0x60), 0x47);
        bus.write(0x60, &[0xf4]);
        assert_eq!(inb(&bus, 0x60), ACK);
        assert!(!stop.is_reported());
    }
}
