//! Ramkey PID 1: early mounts, kernel command line, coldplug, the usbkey or the network,
//! the config, the event loop, shutdown.
//!
//! `main.rs` only calls [`pid1::run`]; everything else is here, testable without root.
//! All `unsafe` code and raw syscalls live in [`sys`]: the compiler refuses `unsafe` anywhere else.

#![deny(unsafe_code)]

pub mod base;
pub mod boot;
pub mod ctl;
pub mod devices;
pub mod net;
pub mod pid1;
pub mod runtime;
pub mod storage;
pub mod supervisor;
#[allow(unsafe_code)]
pub mod sys;
pub mod zone;

#[cfg(test)]
mod layers;
