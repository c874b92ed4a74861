//! The boot media steps: the usbkey (or, with `ramkey.config=`, the network), then the config.

use ramkey_config::USBKEY_LABEL;

use crate::base::timeline::Timeline;
use crate::boot::config_load;
use crate::boot::{Boot, BootError, BootState};
use crate::devices::hotplug::UeventWatch;
use crate::storage::usbkey::{self, FoundKey};

/// Runs the steps `usbkey` + `config`, or `network` + `config` for a config URL.
pub fn run(boot: &mut Boot<'_>, timeline: &mut Timeline, state: &mut BootState) -> Result<(), BootError> {
    let clock = boot.clock;
    match state.cmdline.config.clone() {
        None => {
            timeline.step(clock, "usbkey", || find_and_mount(boot, state))?;
            let mount = boot.paths.usbkey();
            let loaded = timeline.step(clock, "config", || config_load::from_usbkey(&mount));
            state.set_config(loaded);
        }
        Some(url) => {
            config_load::check_url(&url)?;
            let network = &mut *boot.network;
            let report = timeline.step(clock, "network", || network.configure(clock, None))?;
            crate::notice!("{}", report.line());
            let mac = report.mac();
            state.network = Some(report);
            let keys = config_load::ConfigKeys::load(boot.paths.root());
            let loaded = timeline.step(clock, "config", || config_load::fetch(network, &url, mac, &keys))?;
            state.set_config(loaded);
        }
    }
    Ok(())
}

/// Waits for the usbkey (loading modules for late devices) and mounts it read-only.
fn find_and_mount(boot: &mut Boot<'_>, state: &mut BootState) -> Result<(), BootError> {
    let wanted = state.cmdline.key.clone().unwrap_or_else(|| USBKEY_LABEL.to_owned());
    let wait = state.cmdline.key_wait;
    let (sys, dev) = (boot.paths.sys(), boot.paths.dev());
    crate::notice!(
        "usbkey: waiting up to {} s for a FAT filesystem labelled {wanted}",
        usbkey::secs(wait)
    );
    let mut watch = UeventWatch {
        uevents: state.uevents.as_ref(),
        modprobe: state.modprobe.as_mut(),
        loader: &mut *boot.loader,
        buttons: &mut state.buttons,
        sys_root: &sys,
        dev_root: &dev,
    };
    let key: FoundKey = usbkey::wait_for_label(&sys, &dev, &wanted, wait, boot.clock, &mut watch)?;
    crate::notice!(
        "usbkey: found {} on {} after {} ms",
        key.label,
        key.node.display(),
        key.waited.as_millis()
    );
    usbkey::mount(
        &key,
        boot.paths,
        &mut *boot.mounter,
        state.modprobe.as_mut(),
        &mut *boot.loader,
    )?;
    crate::notice!("{}", usbkey::mounted_line(&key));
    state.usbkey = Some(key);
    Ok(())
}
