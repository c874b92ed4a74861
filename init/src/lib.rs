//! Ramkey PID 1: early mounts, kernel command line, coldplug, the usbkey or the network,
//! the config, the event loop, shutdown.
//!
//! `main.rs` only calls [`pid1::run`]; everything else is here, testable without root.
//! All `unsafe` code and raw syscalls live in [`sys`]: the compiler refuses `unsafe` anywhere else.

#![deny(unsafe_code)]

pub mod blkid;
pub mod blockdev;
pub mod boot;
pub mod clock;
pub mod cmdline;
pub mod coldplug;
pub mod config_load;
pub mod control;
pub mod ctl;
pub mod ctl_config;
pub mod events;
pub mod good_config;
pub mod hotplug;
pub mod identity;
pub mod log;
pub mod login;
pub mod media;
pub mod modprobe;
pub mod modules;
pub mod mounts;
pub mod net;
pub mod netconf;
pub mod ntp;
pub mod paths;
pub mod pid1;
pub mod pool;
pub mod power;
pub mod recovery;
pub mod services;
pub mod shutdown;
pub mod supervise;
pub mod supervisor;
#[allow(unsafe_code)]
pub mod sys;
pub mod timeline;
pub mod uevent;
pub mod usbkey;
pub mod zone;
