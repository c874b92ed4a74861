//! Recovery mode: say why on the console and keep the box reachable and stoppable.
//!
//! The event loop keeps running (reaping, signals, power button); only the boot
//! steps after the failure are skipped.

use std::fmt::Display;

use crate::base::clock::Clock;
use crate::base::paths::Paths;
use crate::boot::{self, BootState};
use crate::devices::modprobe::ModuleLoader;

/// Logs the recovery banner with its cause.
pub fn announce(cause: &dyn Display) {
    crate::notice!("RECOVERY MODE: {cause}");
    crate::notice!(
        "recovery: the power button (or SIGUSR2/SIGPWR to PID 1) powers the box off; \
         ctrl-alt-del reboots"
    );
}

/// Gets the power button working: opens the uevent socket and the module index if
/// the boot did not get that far, then loads only the ACPI button and evdev.
pub fn prepare(paths: &Paths, state: &mut BootState, loader: &mut dyn ModuleLoader, clock: &dyn Clock) {
    if state.uevents.is_none() {
        state.uevents = boot::open_uevents();
    }
    if state.modprobe.is_none() {
        match boot::open_modules(paths, &state.cmdline) {
            Ok(modprobe) => state.modprobe = Some(modprobe),
            Err(e) => crate::warn!("recovery: {e}"),
        }
    }
    if let Some(report) = boot::power_button_coldplug(paths, state, loader, clock) {
        crate::info!("recovery: {}", report.summary());
    }
    if state.buttons.is_empty() {
        crate::warn!("recovery: no power button found");
    }
}
