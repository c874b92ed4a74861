//! Waiting for late devices during boot: uevents load their modules while a step waits.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::devices::coldplug;
use crate::devices::modprobe::{Modprobe, ModuleLoader};
use crate::devices::power::PowerButtons;
use crate::devices::uevent::{Uevent, UeventError, UeventSocket};

/// Something a boot step can wait on while devices appear.
pub trait DeviceEvents {
    /// Waits up to `timeout` for device events and handles those that came
    /// (loading modules); returns early when some were handled.
    fn wait(&mut self, timeout: Duration);
}

impl std::fmt::Debug for dyn DeviceEvents + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceEvents")
    }
}

/// Handles one uevent: loads the modules for an added modalias, opens new power buttons.
pub fn handle_uevent(
    event: &Uevent,
    modprobe: Option<&mut Modprobe>,
    loader: &mut dyn ModuleLoader,
    buttons: &mut PowerButtons,
    dev_root: &Path,
) {
    crate::debug!("uevent {} {}", event.action, event.devpath);
    if let (Some(alias), Some(modprobe)) = (event.added_modalias(), modprobe) {
        let mut failures = 0;
        let n = coldplug::load_for_modalias(alias, modprobe, loader, &mut failures);
        if n > 0 {
            crate::info!("uevent: {n} modules loaded for {alias}");
        }
    }
    if event.is_input_event_device_added() {
        buttons.scan(dev_root);
    }
}

/// The real waiter: `poll(2)` on the uevent socket with a timeout (a plain sleep without it).
pub struct UeventWatch<'a> {
    /// The kernel uevent socket, if it could be opened.
    pub uevents: Option<&'a UeventSocket>,
    /// Loads modules for new devices.
    pub modprobe: Option<&'a mut Modprobe>,
    /// The module loader.
    pub loader: &'a mut dyn ModuleLoader,
    /// Power buttons, rescanned when an input device appears.
    pub buttons: &'a mut PowerButtons,
    /// sysfs, rescanned when uevents were lost.
    pub sys_root: &'a Path,
    /// `/dev`.
    pub dev_root: &'a Path,
}

impl std::fmt::Debug for UeventWatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UeventWatch")
            .field("uevents", &self.uevents)
            .field("sys_root", &self.sys_root)
            .finish_non_exhaustive()
    }
}

impl DeviceEvents for UeventWatch<'_> {
    fn wait(&mut self, timeout: Duration) {
        let Some(socket) = self.uevents else {
            std::thread::sleep(timeout);
            return;
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)) {
            Ok(0) | Err(Errno::EINTR) => return,
            Ok(_) => {}
            Err(e) => {
                crate::warn!("poll(uevents): {e}");
                std::thread::sleep(timeout);
                return;
            }
        }
        loop {
            match socket.next() {
                Ok(Some(event)) => handle_uevent(
                    &event,
                    self.modprobe.as_deref_mut(),
                    self.loader,
                    self.buttons,
                    self.dev_root,
                ),
                Ok(None) => return,
                Err(UeventError::Recv(Errno::ENOBUFS)) => {
                    crate::warn!("uevents were lost (ENOBUFS); rescanning devices");
                    if let Some(modprobe) = self.modprobe.as_deref_mut() {
                        let clock = crate::base::clock::BootClock;
                        if let Err(e) = coldplug::coldplug(self.sys_root, modprobe, self.loader, &clock, &|_| true) {
                            crate::warn!("rescan: {e}");
                        }
                    }
                }
                Err(e) => {
                    crate::warn!("{e}; waiting without uevents");
                    self.uevents = None;
                    return;
                }
            }
        }
    }
}

/// A waiter for tests: runs `on_wait` with the call number and records the timeouts.
#[cfg(test)]
pub struct FakeEvents<F: FnMut(usize)> {
    /// Called on each wait with its 0-based number (e.g. to add fake devices).
    pub on_wait: F,
    /// Every timeout asked for, in order.
    pub waits: Vec<Duration>,
}

#[cfg(test)]
impl<F: FnMut(usize)> std::fmt::Debug for FakeEvents<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeEvents").field("waits", &self.waits).finish()
    }
}

#[cfg(test)]
impl<F: FnMut(usize)> DeviceEvents for FakeEvents<F> {
    fn wait(&mut self, timeout: Duration) {
        let n = self.waits.len();
        self.waits.push(timeout);
        (self.on_wait)(n);
    }
}
