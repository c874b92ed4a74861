//! The event loop of PID 1: one `poll(2)` over signals, uevents and power buttons.

use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

use crate::modprobe::{Modprobe, ModuleLoader};
use crate::power::PowerButtons;
use crate::shutdown::{Action, Request};
use crate::sys;
use crate::uevent::{UeventError, UeventSocket};
use crate::{coldplug, hotplug};

/// The event loop failed in a way it cannot go on from.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// `poll(2)` failed.
    #[error("poll failed: {0}")]
    Poll(Errno),
}

/// The signals PID 1 handles; they are blocked and read from a signalfd.
pub const SIGNALS: &[Signal] = &[
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGPWR,
];

/// The shutdown a signal asks for (busybox conventions); `None` for SIGCHLD and others.
pub fn request_for_signal(signo: i32) -> Option<Request> {
    let (action, reason) = match Signal::try_from(signo).ok()? {
        Signal::SIGTERM => (Action::Reboot, "SIGTERM"),
        Signal::SIGINT => (Action::Reboot, "SIGINT (ctrl-alt-del)"),
        Signal::SIGUSR1 => (Action::Halt, "SIGUSR1"),
        Signal::SIGUSR2 => (Action::Poweroff, "SIGUSR2"),
        Signal::SIGPWR => (Action::Poweroff, "SIGPWR"),
        _ => return None,
    };
    Some(Request {
        action,
        reason: reason.to_owned(),
    })
}

/// Everything the loop watches.
#[derive(Debug)]
pub struct EventLoop {
    /// Blocked signals, readable here.
    pub signals: SignalFd,
    /// Kernel uevents; `None` when the socket could not be opened.
    pub uevents: Option<UeventSocket>,
    /// Open power-button devices.
    pub buttons: PowerButtons,
    /// Loads modules for new devices; `None` without a module index.
    pub modprobe: Option<Modprobe>,
    /// The module loader.
    pub loader: Box<dyn ModuleLoader>,
    /// Where `input/event*` live (`/dev`).
    pub dev_root: PathBuf,
    /// Where sysfs is mounted (`/sys`), for rescans after lost uevents.
    pub sys_root: PathBuf,
}

impl EventLoop {
    /// Waits for events until one asks for a shutdown, and returns that request.
    pub fn run(&mut self) -> Result<Request, EventError> {
        loop {
            let paths: Vec<PathBuf> = self.buttons.devices().map(|(p, _)| p.to_owned()).collect();
            let (signal_ready, uevent_ready, button_ready) = {
                let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
                if let Some(u) = &self.uevents {
                    fds.push(PollFd::new(u.as_fd(), PollFlags::POLLIN));
                }
                let uevent_index = self.uevents.as_ref().map(|_| fds.len() - 1);
                let first_button = fds.len();
                fds.extend(
                    self.buttons
                        .devices()
                        .map(|(_, f)| PollFd::new(f.as_fd(), PollFlags::POLLIN)),
                );
                match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(EventError::Poll(e)),
                }
                let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
                (
                    fds.first().is_some_and(ready),
                    uevent_index.and_then(|i| fds.get(i)).is_some_and(ready),
                    fds.get(first_button..)
                        .unwrap_or_default()
                        .iter()
                        .map(ready)
                        .collect::<Vec<_>>(),
                )
            };
            if signal_ready && let Some(request) = self.handle_signals() {
                return Ok(request);
            }
            if uevent_ready {
                self.handle_uevents();
            }
            for (path, ready) in paths.iter().zip(button_ready) {
                if ready && self.buttons.read_pressed(path) {
                    return Ok(Request {
                        action: Action::Poweroff,
                        reason: format!("power button ({})", path.display()),
                    });
                }
            }
        }
    }

    fn handle_signals(&mut self) -> Option<Request> {
        loop {
            match sys::read_signal(&self.signals) {
                Ok(Some(signo)) if signo == Signal::SIGCHLD as i32 => {
                    let reaped = sys::reap_children();
                    crate::debug!("reaped {} children", reaped.count);
                }
                Ok(Some(signo)) => match request_for_signal(signo) {
                    Some(request) => return Some(request),
                    None => crate::debug!("ignoring signal {signo}"),
                },
                Ok(None) => return None,
                Err(e) => {
                    crate::warn!("{e}");
                    return None;
                }
            }
        }
    }

    fn handle_uevents(&mut self) {
        loop {
            let Some(socket) = &self.uevents else {
                return;
            };
            match socket.next() {
                Ok(Some(event)) => hotplug::handle_uevent(
                    &event,
                    self.modprobe.as_mut(),
                    self.loader.as_mut(),
                    &mut self.buttons,
                    &self.dev_root,
                ),
                Ok(None) => return,
                Err(UeventError::Recv(Errno::ENOBUFS)) => {
                    crate::warn!("uevents were lost (ENOBUFS); rescanning devices");
                    self.rescan();
                }
                Err(e) => {
                    crate::warn!("{e}; no longer watching uevents");
                    self.uevents = None;
                    return;
                }
            }
        }
    }

    fn rescan(&mut self) {
        if let Some(modprobe) = self.modprobe.as_mut() {
            let clock = crate::clock::BootClock;
            match coldplug::coldplug(&self.sys_root, modprobe, self.loader.as_mut(), &clock, &|_| true) {
                Ok(report) => crate::info!("{}", report.summary()),
                Err(e) => crate::warn!("rescan: {e}"),
            }
        }
        self.buttons.scan(&self.dev_root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_map_to_busybox_actions() {
        let action = |s: Signal| request_for_signal(s as i32).map(|r| r.action);
        assert_eq!(action(Signal::SIGTERM), Some(Action::Reboot));
        assert_eq!(action(Signal::SIGINT), Some(Action::Reboot));
        assert_eq!(action(Signal::SIGUSR1), Some(Action::Halt));
        assert_eq!(action(Signal::SIGUSR2), Some(Action::Poweroff));
        assert_eq!(action(Signal::SIGPWR), Some(Action::Poweroff));
        assert_eq!(action(Signal::SIGCHLD), None);
        assert_eq!(action(Signal::SIGHUP), None);
        assert_eq!(request_for_signal(0), None);
        assert_eq!(request_for_signal(12345), None);
    }

    #[test]
    fn every_handled_signal_is_in_the_mask() {
        for signo in 1..=31 {
            if request_for_signal(signo).is_some() {
                let signal = Signal::try_from(signo).unwrap();
                assert!(SIGNALS.contains(&signal), "{signal}");
            }
        }
    }
}
