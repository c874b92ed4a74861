//! `ramkey-vmm`: boots a Linux kernel in a KVM virtual machine with a serial console on
//! stdin/stdout, and exits with a code and one line on stderr that say how the VM ended
//! (see `ramkey_vmm::outcome::code`).

use std::process::ExitCode;
use std::time::Instant;

use ramkey_vmm::VmmError;
use ramkey_vmm::cli::{self, UsageError};
use ramkey_vmm::outcome::code;

fn exit(code: i32) -> ExitCode {
    ExitCode::from(code as u8)
}

fn main() -> ExitCode {
    let opts = match cli::parse(std::env::args().skip(1)) {
        Ok(opts) => opts,
        Err(UsageError::Help) => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ramkey-vmm: {e}\n{}", cli::USAGE);
            return exit(code::USAGE);
        }
    };
    let started = Instant::now();
    match ramkey_vmm::run(&opts) {
        Ok(ended) => {
            eprintln!("{}", ended.outcome.line(started.elapsed(), ended.memory));
            exit(ended.outcome.code())
        }
        Err(VmmError::NoKvm(e)) => {
            eprintln!("ramkey-vmm: {e}");
            exit(code::NO_KVM)
        }
        Err(e) => {
            eprintln!("ramkey-vmm: cannot start the VM: {e}");
            exit(code::INTERNAL)
        }
    }
}
