//! Ramkey PID 1: early mounts, kernel command line, coldplug, the event loop, shutdown.
//!
//! `main.rs` only calls [`pid1::run`]; everything else is here, testable without root.
//! All `unsafe` code and raw syscalls live in [`sys`].

pub mod boot;
pub mod clock;
pub mod cmdline;
pub mod coldplug;
pub mod events;
pub mod log;
pub mod modprobe;
pub mod modules;
pub mod mounts;
pub mod paths;
pub mod pid1;
pub mod power;
pub mod recovery;
pub mod shutdown;
pub mod sys;
pub mod timeline;
pub mod uevent;
