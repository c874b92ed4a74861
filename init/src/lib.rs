//! Ramkey PID 1: early mounts, kernel command line, coldplug, the event loop, shutdown.
//!
//! `main.rs` only calls [`pid1::run`]; everything else is here, testable without root.

pub mod clock;
pub mod cmdline;
pub mod log;
pub mod modprobe;
pub mod modules;
pub mod sys;
pub mod timeline;
