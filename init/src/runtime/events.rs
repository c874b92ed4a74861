//! The event loop of PID 1: one `poll(2)` over signals, uevents, power buttons, the
//! services (exits, timers, checks, output pipes), the control socket and the results of
//! DHCP lease renewals, which run on threads of their own ([`Renewals`]): a silent DHCP
//! server never holds up reaping, control answers or uevents.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

use crate::devices::modprobe::{Modprobe, ModuleLoader};
use crate::devices::power::PowerButtons;
use crate::devices::uevent::{UeventError, UeventSocket};
use crate::devices::{coldplug, hotplug};
use crate::net::renew::{HeldLease, Renewals, renew_on_box};
use crate::runtime::control::ControlServer;
use crate::runtime::shutdown::{Action, Request};
use crate::runtime::supervise::Supervision;
use crate::supervisor::protocol::Response;
use crate::supervisor::state::ServiceStatus;
use crate::sys;

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
    /// The services; `None` in recovery mode.
    pub services: Option<Supervision>,
    /// The control socket; `None` when it could not be bound.
    pub control: Option<ControlServer>,
    /// The DHCP leases in use, renewed when due (T1, or a retry after a failed renewal).
    pub leases: Vec<HeldLease>,
    /// Judged at every turn until it is done (the platform's trial boot).
    pub judge: Option<Box<dyn Judge>>,
}

/// Something judged at every turn of the loop from the services' states, which may ask
/// for a shutdown: the trial boot of a new platform (`upgrade::trial`).
pub trait Judge: std::fmt::Debug {
    /// Judges with the services' `statuses` (`None` in recovery mode) at `now` (since the
    /// kernel started). Returns whether it is done, and a shutdown to begin.
    fn judge(&mut self, statuses: Option<&[ServiceStatus]>, now: Duration) -> (bool, Option<Request>);
}

/// What one readable fd is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Signals,
    Uevents,
    Button(usize),
    Checks,
    Output(usize),
    Control(usize),
    Renewals,
}

impl EventLoop {
    /// Waits for events until one asks for a shutdown; stops the services in order (up to
    /// [`crate::runtime::supervise::SHUTDOWN_DEADLINE`]), then returns the request.
    pub fn run(&mut self) -> Result<Request, EventError> {
        let mut renewals = Renewals::new(Arc::new(renew_on_box));
        let mut pending: Option<Request> = None;
        loop {
            if let Some(request) = self.turn(&mut renewals, &mut pending)? {
                return Ok(request);
            }
        }
    }

    /// One turn of the loop: due lease renewals started (never waited for), the services'
    /// timers, one `poll(2)` and what it found. Returns the shutdown request once the
    /// services have stopped for it.
    fn turn(&mut self, renewals: &mut Renewals, pending: &mut Option<Request>) -> Result<Option<Request>, EventError> {
        let now = sys::boottime();
        renewals.start_due(&self.leases, now);
        if let Some(services) = self.services.as_mut() {
            services.tick(now);
        }
        if let Some(request) = pending.as_ref()
            && self.services.as_ref().is_none_or(|s| s.shutdown_finished(now))
        {
            return Ok(Some(request.clone()));
        }
        let paths: Vec<PathBuf> = self.buttons.devices().map(|(p, _)| p.to_owned()).collect();
        let ready = self.wait(now, renewals)?;
        // Cheap when nothing came (one non-blocking read); without a wake pipe, the only way.
        renewals.apply(&mut self.leases, sys::boottime());
        let mut outputs = Vec::new();
        let mut control = Vec::new();
        let mut asked = None;
        for (source, is_ready) in ready {
            match source {
                Source::Signals if is_ready => asked = asked.or(self.handle_signals()),
                Source::Uevents if is_ready => self.handle_uevents(),
                Source::Button(i) if is_ready => {
                    if let Some(path) = paths.get(i)
                        && self.buttons.read_pressed(path)
                    {
                        asked = asked.or(Some(Request {
                            action: Action::Poweroff,
                            reason: format!("power button ({})", path.display()),
                        }));
                    }
                }
                Source::Checks if is_ready => {
                    if let Some(s) = self.services.as_mut() {
                        s.on_checks();
                    }
                }
                Source::Output(_) => outputs.push(is_ready),
                Source::Control(_) => control.push(is_ready),
                _ => {}
            }
        }
        if let Some(s) = self.services.as_mut() {
            s.pump(&outputs);
        }
        if let Some(server) = self.control.as_mut() {
            let services = &mut self.services;
            server.on_ready(&control, sys::boottime(), &mut |request| match services.as_mut() {
                Some(s) => {
                    let (response, shutdown) = s.answer(request);
                    asked = asked.take().or(shutdown);
                    response
                }
                None => Response::Error {
                    message: "no services run in recovery mode".into(),
                },
            });
        }
        if let Some(judge) = self.judge.as_mut() {
            let statuses = self.services.as_ref().map(Supervision::statuses);
            let (done, shutdown) = judge.judge(statuses.as_deref(), sys::boottime());
            asked = asked.or(shutdown);
            if done {
                self.judge = None;
            }
        }
        if let Some(request) = asked
            && pending.is_none()
        {
            crate::notice!("shutdown requested: {}", request.reason);
            if let Some(s) = self.services.as_mut() {
                s.begin_shutdown(sys::boottime());
            }
            *pending = Some(request);
        }
        Ok(None)
    }

    /// One `poll(2)`; returns each watched fd and whether it is readable.
    fn wait(&mut self, now: Duration, renewals: &Renewals) -> Result<Vec<(Source, bool)>, EventError> {
        let mut sources = vec![Source::Signals];
        let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
        let mut add = |source, fd| {
            sources.push(source);
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        };
        if let Some(u) = &self.uevents {
            add(Source::Uevents, u.as_fd());
        }
        for (i, (_, f)) in self.buttons.devices().enumerate() {
            add(Source::Button(i), f.as_fd());
        }
        let mut timeout = None;
        if let Some(s) = &self.services {
            add(Source::Checks, s.checker_fd());
            for (i, fd) in s.output_fds().enumerate() {
                add(Source::Output(i), fd);
            }
            timeout = s.timeout(now);
        }
        if let Some(c) = &self.control {
            for (i, fd) in c.poll_fds().into_iter().enumerate() {
                add(Source::Control(i), fd);
            }
            let control = c.next_deadline().map(|d| d.saturating_sub(now));
            timeout = [timeout, control].into_iter().flatten().min();
        }
        if let Some(fd) = renewals.wake_fd() {
            add(Source::Renewals, fd);
        }
        let renewal = renewals.deadline(&self.leases, now).map(|at| at.saturating_sub(now));
        // A judge looks once a second at least.
        let judge = self.judge.as_ref().map(|_| Duration::from_secs(1));
        timeout = [timeout, renewal, judge].into_iter().flatten().min();
        // Round up, so that a deadline a fraction of a millisecond away does not spin.
        let timeout = match timeout {
            None => PollTimeout::NONE,
            Some(t) => {
                PollTimeout::try_from(t.as_millis().saturating_add(1).min(60_000) as i32).unwrap_or(PollTimeout::MAX)
            }
        };
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(Vec::new()),
            Err(e) => return Err(EventError::Poll(e)),
        }
        let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
        Ok(sources.into_iter().zip(fds.iter().map(ready)).collect())
    }

    fn handle_signals(&mut self) -> Option<Request> {
        let mut asked = None;
        loop {
            match sys::read_signal(&self.signals) {
                Ok(Some(signo)) if signo == Signal::SIGCHLD as i32 => {
                    let reaped = sys::reap_children();
                    crate::debug!("reaped {} children", reaped.count);
                    if let Some(s) = self.services.as_mut() {
                        s.on_exits(&reaped.exits);
                    }
                }
                Ok(Some(signo)) => match request_for_signal(signo) {
                    Some(request) => asked = asked.or(Some(request)),
                    None => crate::debug!("ignoring signal {signo}"),
                },
                Ok(None) => return asked,
                Err(e) => {
                    crate::warn!("{e}");
                    return asked;
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
            let clock = crate::base::clock::BootClock;
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

    /// A loop with nothing to watch but `leases`.
    fn bare_loop(leases: Vec<HeldLease>) -> EventLoop {
        EventLoop {
            signals: sys::signalfd(&[]).unwrap(),
            uevents: None,
            buttons: crate::devices::power::PowerButtons::default(),
            modprobe: None,
            loader: Box::new(crate::devices::modprobe::RecordingLoader::default()),
            dev_root: PathBuf::from("/nonexistent"),
            sys_root: PathBuf::from("/nonexistent"),
            services: None,
            control: None,
            leases,
            judge: None,
        }
    }

    fn lease(name: &str, renew_at: Duration) -> HeldLease {
        use crate::net::dhcp;
        use dhcproto::v4::MessageType;
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let bytes = dhcp::fixture_reply(MessageType::Ack, 1, mac, std::net::Ipv4Addr::new(10, 0, 2, 15));
        let reply = dhcp::parse_reply(&bytes, 1, mac).unwrap().lease;
        let mut held = HeldLease::new(name, name, 2, mac, None, reply, Duration::ZERO);
        held.renew_at = renew_at;
        held
    }

    #[test]
    fn a_silent_dhcp_server_does_not_hold_up_the_loop() {
        use crate::net::dhcp::DhcpError;
        use crate::net::renew::{RETRY, RenewError};
        use std::sync::Mutex;
        use std::time::Instant;
        // `silent` waits for the test (or 10 s; a real silent exchange takes 3 s), then
        // fails; `quick` is renewed at once.
        let (gate, wait) = std::sync::mpsc::channel::<()>();
        let wait = Mutex::new(wait);
        let renewer = move |held: &mut HeldLease| {
            let now = sys::boottime();
            if held.ifname == "silent" {
                let _ = wait.lock().unwrap().recv_timeout(Duration::from_secs(10));
                held.renew_at = sys::boottime() + RETRY;
                let (attempts, elapsed, last) = (2, Duration::from_secs(3), "no ACK");
                let source = DhcpError::NoLease {
                    attempts,
                    elapsed,
                    last,
                };
                return Err(RenewError::Dhcp {
                    ifname: held.ifname.clone(),
                    source,
                });
            }
            held.obtained_at = now;
            held.renew_at = now + Duration::from_secs(600);
            Ok(())
        };
        let mut renewals = Renewals::new(Arc::new(renewer));
        let now = sys::boottime();
        let soon = now + Duration::from_millis(300);
        let far = now + Duration::from_secs(20);
        let mut events = bare_loop(vec![lease("silent", now), lease("quick", soon), lease("far", far)]);
        let mut pending = None;
        let t0 = Instant::now();
        // The first turn starts the silent renewal and waits only until `quick` is due.
        assert_eq!(events.turn(&mut renewals, &mut pending).unwrap(), None);
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the loop waited {:?}",
            t0.elapsed()
        );
        assert_eq!(renewals.in_flight(), 1);
        // The next turns renew `quick` and apply its result while `silent` is still out.
        for _ in 0..5 {
            if events.leases[1].renew_at > far {
                break;
            }
            assert_eq!(events.turn(&mut renewals, &mut pending).unwrap(), None);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the loop waited {:?}",
            t0.elapsed()
        );
        assert!(events.leases[1].renew_at > far, "quick renewed: {:?}", events.leases[1]);
        assert_eq!(events.leases[0].renew_at, now, "silent still in flight");
        assert_eq!(renewals.in_flight(), 1);
        // The silent server's failure is applied when it comes: the retry a minute later.
        drop(gate);
        assert_eq!(events.turn(&mut renewals, &mut pending).unwrap(), None);
        assert_eq!(renewals.in_flight(), 0);
        assert!(events.leases[0].renew_at >= now + RETRY, "{:?}", events.leases[0]);
        assert_eq!(events.leases[2].renew_at, far);
        assert_eq!(pending, None);
    }

    /// Asks for a reboot at its second look, without services (recovery mode).
    #[derive(Debug, Default)]
    struct Impatient {
        looks: Vec<bool>,
    }

    impl Judge for Impatient {
        fn judge(&mut self, statuses: Option<&[ServiceStatus]>, _now: Duration) -> (bool, Option<Request>) {
            self.looks.push(statuses.is_some());
            if self.looks.len() < 2 {
                return (false, None);
            }
            let reboot = Request {
                action: Action::Reboot,
                reason: "judged".into(),
            };
            (true, Some(reboot))
        }
    }

    #[test]
    fn a_judge_looks_every_second_and_its_reboot_starts_the_shutdown() {
        let mut events = bare_loop(Vec::new());
        events.judge = Some(Box::new(Impatient::default()));
        let mut renewals = Renewals::new(Arc::new(|_: &mut HeldLease| Ok(())));
        let mut pending = None;
        let t0 = std::time::Instant::now();
        assert_eq!(events.turn(&mut renewals, &mut pending).unwrap(), None);
        assert!(events.judge.is_some() && pending.is_none());
        // The second turn comes from the judge's own timeout: nothing else would wake it.
        assert_eq!(events.turn(&mut renewals, &mut pending).unwrap(), None);
        assert!(t0.elapsed() < Duration::from_secs(5), "waited {:?}", t0.elapsed());
        assert!(events.judge.is_none(), "done: no longer judged");
        assert_eq!(pending.map(|r| r.reason), Some("judged".to_owned()));
    }
}
