//! Ramkey PID 1: early mounts, kernel command line, coldplug, the usbkey or the network,
//! the config, the event loop, shutdown.
//!
//! `main.rs` only calls [`pid1::run`]; everything else is here, testable without root.
//! All `unsafe` code and raw syscalls live in [`sys`]: the compiler refuses `unsafe` anywhere else.

#![deny(unsafe_code)]

pub(crate) mod base;

pub use base::log::install_panic_hook;
pub use cluster::agent::main as cluster_agent;
pub use ctl::main as ramkeyctl;
pub use observe::ship::main as log_shipper;
pub use pid1::run as pid1;
pub use vm::launch::main as zone_launcher;
pub(crate) mod boot;
pub(crate) mod cluster;
pub(crate) mod ctl;
pub(crate) mod devices;
pub(crate) mod net;
pub(crate) mod observe;
pub(crate) mod pid1;
pub(crate) mod runtime;
pub(crate) mod storage;
pub(crate) mod supervisor;
#[allow(unsafe_code)]
pub(crate) mod sys;
pub(crate) mod upgrade;
pub(crate) mod vm;
pub(crate) mod zone;

/// `ramkey-metrics`, the Prometheus exporter, with the HA pair's gauges.
pub fn metrics_exporter(args: &[String]) -> i32 {
    observe::metrics::main(args, &[("cluster", cluster::metrics::gauges)])
}

#[cfg(test)]
mod layers;
