//! The i8042 keyboard controller, as much of it as a Linux guest probes, and its CPU
//! reset: a guest `reboot` (the kernel with `reboot=k`) writes 0xFE to the command port
//! 0x64, which ends the VM as a guest reboot (Firecracker's way of letting a guest stop).
//! The controller answers the kernel's probe — the configuration byte (CTR), the output
//! port, the self-test — so that the i8042 driver does not wait for timeouts (about 2 s
//! of a nested guest's boot); keyboard bytes get an ACK. vm-superio's `I8042Device` does
//! only the reset, and its status of 0 makes the probe time out.
//!
//! The keyboard port can also type: [`I8042::ctrl_alt_del`] queues the scancodes of
//! Ctrl-Alt-Del, pressed and released (set 2: the configuration byte has no translation bit,
//! so Linux's i8042 driver runs the port untranslated), and raises IRQ 1 for each byte, as
//! Firecracker's `SendCtrlAltDel` does. The guest's atkbd turns them into the key
//! combination, and its kernel reboots or signals its PID 1.

use std::collections::VecDeque;

use vmm_sys_util::eventfd::EventFd;

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

/// The keyboard's interrupt line.
pub const KBD_IRQ: u32 = 1;
/// The configuration byte's "keyboard interrupt enabled" bit.
const CTR_KBD_INT: u8 = 0x01;
/// Ctrl, Alt and Delete pressed, then released, in scancode set 2.
pub const CTRL_ALT_DEL: [u8; 11] = [0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14];
/// Bytes the output buffer holds (a real controller holds one; the keyboard a few more).
const OUTPUT_MAX: usize = 16;

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
    /// The bytes the guest reads from port 0x60, in order.
    output: VecDeque<u8>,
    /// IRQ 1, when the controller is wired to one.
    interrupt: Option<EventFd>,
}

impl I8042 {
    pub fn new(stop: Stop) -> I8042 {
        I8042 {
            stop,
            status: STATUS_SYSTEM | STATUS_KBD_ENABLED,
            ctr: CTR_DEFAULT,
            output_port: OUTPUT_PORT_DEFAULT,
            pending: None,
            output: VecDeque::new(),
            interrupt: None,
        }
    }

    /// Wires the keyboard's interrupt to `interrupt` (an irqfd for [`KBD_IRQ`]).
    pub fn with_interrupt(mut self, interrupt: EventFd) -> I8042 {
        self.interrupt = Some(interrupt);
        self
    }

    fn respond(&mut self, byte: u8) {
        self.output.push_back(byte);
        self.status |= STATUS_OUTPUT_FULL;
    }

    /// Raises the keyboard interrupt if a byte waits and the guest enabled it.
    fn raise(&self) {
        if let Some(irq) = &self.interrupt
            && !self.output.is_empty()
            && self.ctr & CTR_KBD_INT != 0
        {
            // A failed eventfd write loses one interrupt; the byte stays readable.
            let _ = irq.write(1);
        }
    }

    /// Types Ctrl-Alt-Del on the keyboard; false if the output buffer has no room for it.
    pub fn ctrl_alt_del(&mut self) -> bool {
        if self.output.len() + CTRL_ALT_DEL.len() > OUTPUT_MAX {
            return false;
        }
        let idle = self.output.is_empty();
        for byte in CTRL_ALT_DEL {
            self.respond(byte);
        }
        if idle {
            self.raise();
        }
        true
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
            CMD_RESET_CPU => self.stop.report(Outcome::Rebooted {
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
                let byte = self.output.pop_front().unwrap_or(0);
                if self.output.is_empty() {
                    self.status &= !STATUS_OUTPUT_FULL;
                } else {
                    // One byte per interrupt, as the guest's handler reads them.
                    self.raise();
                }
                byte
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
            Outcome::Rebooted {
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

    #[test]
    fn ctrl_alt_del_is_typed_one_interrupt_per_byte() {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut kbd = I8042::new(Stop::default()).with_interrupt(irq.try_clone().unwrap());
        assert!(kbd.ctrl_alt_del());
        assert_eq!(irq.read().unwrap(), 1, "the first byte's interrupt");
        let mut typed = Vec::new();
        let mut byte = [0u8];
        loop {
            kbd.read(COMMAND, &mut byte);
            if byte[0] & STATUS_OUTPUT_FULL == 0 {
                break;
            }
            kbd.read(DATA, &mut byte);
            typed.push(byte[0]);
        }
        assert_eq!(typed, CTRL_ALT_DEL);
        assert_eq!(irq.read().unwrap(), 10, "one more interrupt per byte left");
        // A full buffer refuses the next one; with the interrupt disabled, no interrupt.
        assert!(kbd.ctrl_alt_del());
        assert!(!kbd.ctrl_alt_del());
        assert_eq!(irq.read().unwrap(), 1);
        let mut quiet = I8042::new(Stop::default()).with_interrupt(irq.try_clone().unwrap());
        quiet.write(COMMAND, &[CMD_WRITE_CTR]);
        quiet.write(DATA, &[0]);
        assert!(quiet.ctrl_alt_del());
        assert!(irq.read().is_err(), "no interrupt while the guest disabled it");
    }
}
