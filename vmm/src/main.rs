//! `ramkey-vmm`: boots a Linux kernel in a KVM virtual machine with a serial console on
//! stdin/stdout, and exits with a code and one line on stderr that say how the VM ended
//! (see `ramkey_vmm::outcome::code` and `ramkey_vmm::program`).

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(ramkey_vmm::program::main(std::env::args().skip(1)) as u8)
}
