//! The kernel's devices: uevents (`uevent`), coldplug at boot and hotplug after it, the
//! power button and input devices (`power`), the module index and loader (`modules`,
//! `modprobe`) and coldplug's queue of loads (`pipeline`), run overlapped (`overlap`). Imports `sys` and `base`.

pub mod coldplug;
pub mod hotplug;
pub mod modprobe;
pub mod modules;
pub mod overlap;
pub mod pipeline;
pub mod power;
pub mod uevent;
