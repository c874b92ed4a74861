//! Coldplug's module loads overlapped: each load of the [`Pipeline`]'s queue in its own
//! thread, started as soon as the one before it has run its init.
//!
//! Every `finit_module(2)` of a module without `async_probe` ends in `async_synchronize_full()`
//! (`do_init_module` in Linux 6.1): it returns only once every asynchronous probe in
//! the system is done. The SATA ports `ahci` probes asynchronously take ~330 ms under TCG,
//! while nothing runs; loaded one after another, every later load waited for them. Here each
//! load runs in its own thread, and the next starts when the kernel announces that the
//! module has run its init (the `add@/module/NAME` uevent, sent just before that wait) or its
//! `finit_module` returned: module inits still run one at a time, in the queue's order, so
//! devices register (and NICs get their names) in the same order on every boot, and the waits
//! overlap the next loads. Coldplug returns only when every `finit_module` has returned, as
//! before: the disks the controllers found are there for the `pool` step.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::devices::modprobe::{
    Announced, DeviceFeed, FeedError, LoadOutcome, ModprobeError, ModuleLoader, SharedLoader,
};
use crate::devices::pipeline::{Pipeline, Start};
use crate::devices::uevent::{Uevent, UeventError, UeventSocket};

impl Pipeline<'_> {
    /// Loads the queue, each module in its own thread, starting the next one when the
    /// previous one has run its init; handles the announcements meanwhile (new devices are
    /// queued, lost announcements call `rescan`). Returns when the queue is empty, every load
    /// has returned and nothing is announced; `Err` with the feed's errno when it broke (the
    /// loads still returned; the caller goes on without it).
    pub fn run_overlapped<E>(
        &mut self,
        loader: &dyn SharedLoader,
        feed: &mut dyn DeviceFeed,
        wanted: &dyn Fn(&str) -> bool,
        rescan: &mut dyn FnMut() -> Result<Vec<String>, E>,
    ) -> Result<Result<(), Errno>, E> {
        let Ok((wake_r, wake_w)) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK) else {
            self.run_here(&mut Shared(loader));
            return Ok(Ok(()));
        };
        let (tx, rx) = mpsc::channel::<Returned>();
        std::thread::scope(|scope| {
            let mut loads = InFlight::default();
            let mut broken = None;
            loop {
                if loads.initialising.is_none()
                    && let Some(start) = self.next()
                {
                    let returned = (tx.clone(), &wake_w);
                    let job = start.clone();
                    let spawned = std::thread::Builder::new()
                        .name("modload".into())
                        .stack_size(256 << 10)
                        .spawn_scoped(scope, move || load_and_say(loader, job, returned));
                    match spawned {
                        Ok(_) => loads.started(&start.module),
                        Err(e) => {
                            crate::warn!("cannot start a thread to load {}: {e}; loading it here", start.module);
                            let result = loader.load(&start.module, &start.path, &start.params);
                            self.finished(&start, result);
                        }
                    }
                    continue;
                }
                let idle = loads.idle();
                if !idle {
                    wait_readable(&wake_r, broken.is_none().then(|| feed.as_fd()));
                }
                drain(&wake_r);
                for (start, result) in rx.try_iter() {
                    loads.returned(&start.module);
                    self.finished(&start, result);
                }
                if broken.is_none() {
                    broken = self.hear(feed, &mut loads, wanted, rescan)?;
                }
                if idle && self.is_empty() {
                    return Ok(broken.map_or(Ok(()), Err));
                }
            }
        })
    }

    /// Takes what the feed announced: new devices are queued, a finished init lets the next
    /// load start; lost announcements rescan sysfs. The feed's errno when it broke.
    fn hear<E>(
        &mut self,
        feed: &mut dyn DeviceFeed,
        loads: &mut InFlight,
        wanted: &dyn Fn(&str) -> bool,
        rescan: &mut dyn FnMut() -> Result<Vec<String>, E>,
    ) -> Result<Option<Errno>, E> {
        match feed.drain() {
            Ok(announced) => {
                let mut added = Vec::new();
                for a in announced {
                    match a {
                        Announced::Device(alias) => added.push(alias),
                        Announced::Module(name) => {
                            loads.initialised(&name);
                            self.initialised(&name);
                        }
                    }
                }
                self.devices(&added, wanted);
            }
            Err(FeedError::Lost) => {
                crate::warn!("uevents were lost during coldplug; scanning sysfs again");
                let found = rescan()?;
                self.devices(&found, wanted);
            }
            Err(FeedError::Broken(e)) => return Ok(Some(e)),
        }
        Ok(None)
    }
}

/// A load's result, sent by its thread.
type Returned = (Start, Result<LoadOutcome, ModprobeError>);

/// The loads running in their threads.
#[derive(Debug, Default)]
struct InFlight {
    /// The module whose init has not been announced or returned yet: no other load starts.
    initialising: Option<String>,
    /// Loads whose `finit_module` has not returned.
    running: usize,
}

impl InFlight {
    fn started(&mut self, module: &str) {
        self.initialising = Some(module.to_owned());
        self.running += 1;
    }

    fn initialised(&mut self, module: &str) {
        if self.initialising.as_deref() == Some(module) {
            self.initialising = None;
        }
    }

    fn returned(&mut self, module: &str) {
        self.initialised(module);
        self.running = self.running.saturating_sub(1);
    }

    fn idle(&self) -> bool {
        self.initialising.is_none() && self.running == 0
    }
}

/// A loading thread: loads, sends the result (a panic is a failure), wakes the coordinator.
fn load_and_say(loader: &dyn SharedLoader, job: Start, (tx, wake_w): (mpsc::Sender<Returned>, &OwnedFd)) {
    let result =
        catch_unwind(AssertUnwindSafe(|| loader.load(&job.module, &job.path, &job.params))).unwrap_or_else(|_| {
            Err(ModprobeError::Panicked {
                module: job.module.clone(),
            })
        });
    let _ = tx.send((job, result));
    wake(wake_w);
}

/// A [`SharedLoader`] as a [`ModuleLoader`].
#[derive(Debug)]
pub struct Shared<'a>(pub &'a dyn SharedLoader);

impl std::fmt::Debug for dyn SharedLoader + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedLoader")
    }
}

impl ModuleLoader for Shared<'_> {
    fn load(&mut self, name: &str, path: &std::path::Path, params: &str) -> Result<LoadOutcome, ModprobeError> {
        self.0.load(name, path, params)
    }
}

fn wake(fd: &OwnedFd) {
    // A full pipe is as good as a written byte: the reader wakes either way.
    let _ = nix::unistd::write(fd, b"x");
}

fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 64];
    while matches!(nix::unistd::read(fd, &mut buf), Ok(n) if n > 0) {}
}

/// Waits until a load has finished or the feed has something; a timeout bounds each wait
/// (the caller looks again either way).
fn wait_readable(wake: &OwnedFd, feed: Option<BorrowedFd<'_>>) {
    let mut fds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
    if let Some(feed) = feed {
        fds.push(PollFd::new(feed, PollFlags::POLLIN));
    }
    let timeout = PollTimeout::try_from(Duration::from_secs(1)).unwrap_or(PollTimeout::MAX);
    let _ = nix::poll::poll(&mut fds, timeout);
}

/// What a uevent announces to coldplug: a device added with its modalias, or a module that has
/// run its init (`add@/module/NAME`).
pub fn announced(event: &Uevent) -> Option<Announced> {
    if let Some(alias) = event.added_modalias() {
        return Some(Announced::Device(alias.to_owned()));
    }
    let name = event.devpath.rsplit('/').next()?;
    (event.action == "add" && event.var("SUBSYSTEM") == Some("module") && !name.is_empty())
        .then(|| Announced::Module(name.to_owned()))
}

impl DeviceFeed for UeventSocket {
    fn drain(&mut self) -> Result<Vec<Announced>, FeedError> {
        let mut out = Vec::new();
        loop {
            match self.next() {
                Ok(Some(event)) => out.extend(announced(&event)),
                Ok(None) => return Ok(out),
                Err(UeventError::Recv(Errno::ENOBUFS)) => return Err(FeedError::Lost),
                Err(UeventError::Recv(e)) => return Err(FeedError::Broken(e)),
                Err(UeventError::Open(_)) => return Err(FeedError::Broken(Errno::EBADF)),
            }
        }
    }
}

#[cfg(test)]
#[path = "overlap_tests.rs"]
pub mod tests;
