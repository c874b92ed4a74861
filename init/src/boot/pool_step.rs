//! The `pool` boot step: runs [`PoolStep`] with the boot's effects after the `config` step.

use std::time::{Duration, SystemTime};

use crate::base::timeline::Timeline;
use crate::boot::{Boot, BootState};
use crate::devices::hotplug::{DeviceEvents, UeventWatch};

use crate::storage::pool::create::Tools;
use crate::storage::pool::{Devices, Input, PoolState, PoolStep};

/// Finds, creates or mounts the pool (see the module docs); never fails the boot: without a
/// pool the box runs diskless.
pub fn step(boot: &mut Boot<'_>, timeline: &mut Timeline, state: &mut BootState) -> PoolState {
    let (paths, clock) = (boot.paths, boot.clock);
    let config_text = config_text(boot, state);
    let (sys, dev) = (paths.sys(), paths.dev());
    let mut watch = Watch(UeventWatch {
        uevents: state.uevents.as_ref(),
        modprobe: state.modprobe.as_mut(),
        loader: &mut *boot.loader,
        buttons: &mut state.buttons,
        sys_root: &sys,
        dev_root: &dev,
    });
    let usbkey_disk = state.usbkey.as_ref().map(|k| k.device.disk.clone());
    let input = Input {
        config: state.config.as_ref().and_then(|c| c.pool.as_ref()),
        usbkey_disk: usbkey_disk.as_deref(),
        config_text: config_text.as_deref(),
        now: Some(SystemTime::now()),
    };
    let mut tools = Tools {
        root: paths.root().to_owned(),
    };
    let mut scrub = Tools {
        root: paths.root().to_owned(),
    };
    let mut pool = PoolStep {
        paths,
        clock,
        mounter: &mut *boot.mounter,
        mkfs: &mut tools,
        scrub: &mut scrub,
        devices: &mut watch,
    };
    timeline.step(clock, "pool", || pool.run(&input))
}

/// The text of the config in use, when it came from a file (the usbkey's config or its
/// good copy); a config fetched over HTTP is not kept.
fn config_text(boot: &Boot<'_>, state: &BootState) -> Option<String> {
    if let Some(text) = &state.config_text {
        return Some(text.clone());
    }
    let source = state.config_source.strip_prefix('/')?;
    state.config.as_ref()?;
    std::fs::read_to_string(boot.paths.root().join(source)).ok()
}

/// The boot's uevent waiter, which also loads the filesystem's module.
struct Watch<'a>(UeventWatch<'a>);

impl Devices for Watch<'_> {
    fn wait(&mut self, timeout: Duration) {
        self.0.wait(timeout);
    }

    fn modprobe(&mut self, module: &str) {
        let watch = &mut self.0;
        if let Some(modprobe) = watch.modprobe.as_deref_mut()
            && let Err(e) = modprobe.modprobe(module, &mut *watch.loader)
        {
            crate::warn!("pool: {e}; trying the mount anyway");
        }
    }
}
