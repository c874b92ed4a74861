//! PID 1 after the boot: the event loop (`events`), the supervision of services
//! (`supervise`, around the pure engine in `supervisor`), the platform's services
//! (`services`), the console login (`login`), the SSH server (`sshd`, its host key in
//! `host_key`), the control socket (`control`) and shutdown (`shutdown`). Imports everything
//! below it: `sys`, `base`, `devices`, `storage`, `net`, `supervisor`.

pub mod control;
pub mod events;
pub mod host_key;
pub mod login;
pub mod services;
pub mod shutdown;
pub mod sshd;
pub mod supervise;
