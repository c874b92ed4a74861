//! Boot tests of the platform by direct kernel boot under QEMU (TCG): the failure paths of
//! PID 1. The boot media (USB stick, PXE) are tested in `media.rs`.

use std::time::Duration;

use xtask::artifacts;
use xtask::qemu::{Machine, Spec};

const BOOT: Duration = Duration::from_secs(180);
const SHUTDOWN: Duration = Duration::from_secs(60);

#[test]
fn no_stick_and_no_config_url_is_recovery_mode_not_a_panic() {
    let platform = artifacts::platform().unwrap();
    let spec = Spec::direct("no-stick", &platform, "ramkey.key_wait=3");
    let mut vm = Machine::start(&spec).unwrap();
    vm.expect("ramkey: RECOVERY MODE: no usbkey", BOOT).unwrap();
    vm.expect("power button", BOOT).unwrap();
    vm.refute("ramkey: ready").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    vm.refute("Kernel panic").unwrap();
    vm.monitor("system_powerdown").unwrap();
    vm.expect("ramkey: shutdown requested: power button", SHUTDOWN).unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}

#[test]
fn recovery_mode_on_request_keeps_pid1_alive_until_the_power_button() {
    let platform = artifacts::platform().unwrap();
    let spec = Spec::direct("recovery", &platform, "ramkey.recovery");
    let mut vm = Machine::start(&spec).unwrap();
    vm.expect("ramkey: RECOVERY MODE: requested on the kernel command line", BOOT)
        .unwrap();
    vm.refute("ramkey: ready").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    vm.refute("Kernel panic").unwrap();
    vm.monitor("system_powerdown").unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}
