//! The life of PID 1: boot, event loop, shutdown; recovery mode on any failure.
//!
//! Architecture invariant: nothing here returns or exits. A panic is caught and turns
//! into recovery mode; a failed `reboot(2)` waits forever, still reaping.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crate::boot::{Boot, BootState};
use crate::clock::{BootClock, Clock};
use crate::events::{EventLoop, SIGNALS};
use crate::modprobe::KernelLoader;
use crate::mounts::KernelMounter;
use crate::net::KernelNetwork;
use crate::paths::Paths;
use crate::shutdown::{self, KernelSystem};
use crate::timeline::Timeline;
use crate::{recovery, sys};

/// Runs PID 1 with `/` as the root. Never returns.
pub fn run() -> ! {
    let clock = BootClock;
    let mut timeline = Timeline::new(clock.since_boot());
    crate::log::install_panic_hook();
    crate::notice!("{}", timeline.started_line());
    // Block the signals first, so that none that arrives during boot is lost.
    let signals = sys::signalfd(SIGNALS);
    if let Err(e) = sys::disable_ctrl_alt_del() {
        crate::warn!("{e}; ctrl-alt-del will reboot at once");
    }

    let paths = Paths::new("/");
    let mut state = BootState::default();
    let mut loader = KernelLoader;
    let booted = catch_unwind(AssertUnwindSafe(|| {
        Boot {
            paths: &paths,
            clock: &clock,
            mounter: &mut KernelMounter,
            loader: &mut loader,
            watch_uevents: true,
            network: &mut KernelNetwork {
                resolv_conf: paths.root().join("etc/resolv.conf"),
            },
        }
        .run(&mut timeline, &mut state)
    }));
    let cause = match booted {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("panic during boot (see the PANIC line above)".to_owned()),
    };
    match cause {
        None => timeline.log_ready(clock.since_boot()),
        Some(cause) => {
            timeline.log_steps();
            recovery::announce(&cause);
            let prepared = catch_unwind(AssertUnwindSafe(|| {
                recovery::prepare(&paths, &mut state, &mut loader, &clock);
            }));
            if prepared.is_err() {
                crate::error!("recovery: panic while loading the power button modules");
            }
        }
    }

    let signals = match signals {
        Ok(signals) => signals,
        Err(e) => {
            crate::error!("{e}: cannot watch signals; waiting forever");
            sys::wait_forever();
        }
    };
    let mut events = EventLoop {
        signals,
        uevents: state.uevents.take(),
        buttons: std::mem::take(&mut state.buttons),
        modprobe: state.modprobe.take(),
        loader: Box::new(KernelLoader),
        dev_root: paths.dev(),
        sys_root: paths.sys(),
    };
    loop {
        match catch_unwind(AssertUnwindSafe(|| events.run())) {
            Ok(Ok(request)) => {
                let failed = catch_unwind(AssertUnwindSafe(|| {
                    shutdown::shutdown(&request, &paths.mounts(), &mut KernelSystem)
                }));
                match failed {
                    Ok(e) => crate::error!("{e}: the box could not {}", request.action.word()),
                    Err(_) => crate::error!("panic during shutdown"),
                }
                crate::error!("waiting forever");
                sys::wait_forever();
            }
            Ok(Err(e)) => recovery::announce(&e),
            Err(_) => recovery::announce(&"panic in the event loop (see the PANIC line above)"),
        }
        // Never spin: a loop that keeps failing retries once a second.
        std::thread::sleep(Duration::from_secs(1));
    }
}
