//! The `ramkey-vmm` program: its command line parsed, the VM run, and the exit code and
//! one line on stderr that say how it ended (see [`crate::outcome::code`]). The VMM's own
//! binary and Ramkey's multi-call PID 1 binary (as `ramkey-vmm`) both run it.

use std::time::Instant;

use crate::VmmError;
use crate::cli::{self, UsageError};
use crate::outcome::code;

/// Runs the VMM with `args` (without the program name); returns the exit code.
pub fn main(args: impl Iterator<Item = String>) -> i32 {
    let opts = match cli::parse(args) {
        Ok(opts) => opts,
        Err(UsageError::Help) => {
            println!("{}", cli::USAGE);
            return 0;
        }
        Err(e) => {
            eprintln!("ramkey-vmm: {e}\n{}", cli::USAGE);
            return code::USAGE;
        }
    };
    let started = Instant::now();
    match crate::run(&opts) {
        Ok(ended) => {
            eprintln!("{}", ended.outcome.line(started.elapsed(), ended.memory));
            ended.outcome.code()
        }
        Err(VmmError::NoKvm(e)) => {
            eprintln!("ramkey-vmm: {e}");
            code::NO_KVM
        }
        Err(e) => {
            eprintln!("ramkey-vmm: cannot start the VM: {e}");
            code::INTERNAL
        }
    }
}
