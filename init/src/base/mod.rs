//! What every other part of PID 1 stands on: where things are (`paths`), what time it is
//! (`clock`), the log and its macros (`log`), the boot timeline (`timeline`) and the kernel
//! command line (`cmdline`). Imports only `sys`.

pub mod clock;
pub mod cmdline;
pub mod log;
pub mod paths;
pub mod timeline;
