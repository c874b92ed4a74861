//! The serial console: vm-superio's 8250 UART at COM1 (port 0x3f8, IRQ 4), its output to
//! the VMM's stdout, its input from the VMM's stdin, its interrupt an eventfd that KVM
//! injects (an irqfd).

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::BusDevice;

/// COM1's ports and interrupt line.
pub const COM1_PORT: u64 = 0x3f8;
pub const COM1_PORTS: u64 = 8;
pub const COM1_IRQ: u32 = 4;

/// An interrupt raised by writing to an eventfd (registered with KVM as an irqfd).
#[derive(Debug)]
pub struct EventFdTrigger(pub EventFd);

impl Trigger for EventFdTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// Where the guest's console output goes.
pub type Output = Box<dyn Write + Send>;

/// The UART on the port bus.
pub struct SerialPort {
    uart: Serial<EventFdTrigger, vm_superio::serial::NoEvents, Output>,
}

impl std::fmt::Debug for SerialPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SerialPort")
    }
}

impl SerialPort {
    pub fn new(interrupt: EventFd, out: Output) -> SerialPort {
        SerialPort {
            uart: Serial::new(EventFdTrigger(interrupt), out),
        }
    }

    /// Queues keyboard input for the guest; how many bytes fitted in the FIFO.
    pub fn input(&mut self, bytes: &[u8]) -> usize {
        self.uart.enqueue_raw_bytes(bytes).unwrap_or(0)
    }
}

impl BusDevice for SerialPort {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let [byte] = data {
            *byte = self.uart.read(offset as u8);
        } else {
            data.fill(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let [byte] = data {
            // A failed interrupt or console write loses output, not the VM.
            let _ = self.uart.write(offset as u8, *byte);
            if offset == 0 {
                let _ = self.uart.writer_mut().flush();
            }
        }
    }
}

/// The VMM's stdout, written through at once (the console is read as it comes).
pub fn stdout() -> Output {
    Box::new(std::io::stdout())
}

/// Feeds `input` (the VMM's stdin) to the guest's serial port from a thread, until it ends.
pub fn feed<R: Read + Send + 'static>(port: Arc<Mutex<SerialPort>>, mut input: R) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok(n @ 1..) = input.read(&mut buf) {
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                let taken = port.lock().unwrap_or_else(|e| e.into_inner()).input(rest);
                rest = &rest[taken..];
                if !rest.is_empty() {
                    // The FIFO is full: let the guest read it.
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Console output kept in memory.
    #[derive(Clone, Default)]
    pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bytes_written_to_the_data_port_reach_the_output_and_input_can_be_read() {
        let out = Captured::default();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut port = SerialPort::new(irq.try_clone().unwrap(), Box::new(out.clone()));
        for b in b"hi\n" {
            port.write(0, &[*b]);
        }
        assert_eq!(out.0.lock().unwrap().as_slice(), b"hi\n");
        // Enable the received-data interrupt (IER bit 0), queue input, read it back.
        port.write(1, &[1]);
        assert_eq!(port.input(b"ok"), 2);
        assert_eq!(irq.read().unwrap(), 1, "input raised the interrupt");
        let mut lsr = [0u8];
        port.read(5, &mut lsr);
        assert_eq!(lsr[0] & 1, 1, "data ready");
        let mut byte = [0u8];
        port.read(0, &mut byte);
        assert_eq!(&byte, b"o");
    }
}
