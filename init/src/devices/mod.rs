//! The kernel's devices: uevents (`uevent`), coldplug at boot and hotplug after it, the
//! power button and input devices (`power`), the module index and loader (`modules`,
//! `modprobe`). Imports `sys` and `base`.

pub mod coldplug;
pub mod hotplug;
pub mod modprobe;
pub mod modules;
pub mod power;
pub mod uevent;
