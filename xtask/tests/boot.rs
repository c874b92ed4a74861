//! Boot tests of the platform by direct kernel boot under QEMU (TCG): the failure paths of
//! PID 1. The boot media (USB stick, PXE) are tested in `media.rs`.

use std::time::Duration;

use xtask::artifacts;
use xtask::qemu::{Machine, Spec};

const BOOT: Duration = Duration::from_secs(180);
const SHUTDOWN: Duration = Duration::from_secs(60);
/// How long recovery mode is watched for staying up.
const STAY: Duration = Duration::from_secs(5);
/// Lines recovery mode never prints: it does not go on to `ready`, and PID 1 neither
/// panics nor dies.
const ALIVE: &[&str] = &["ramkey: ready", "ramkey: error: PANIC", "Kernel panic"];

#[test]
fn no_stick_and_no_config_url_is_recovery_mode_not_a_panic() {
    let platform = artifacts::platform().unwrap();
    let spec = Spec::direct("no-stick", &platform, "ramkey.key_wait=3");
    let mut vm = Machine::start(&spec).unwrap();
    vm.forbid(ALIVE).unwrap();
    vm.expect("ramkey: RECOVERY MODE: no usbkey", BOOT).unwrap();
    vm.expect("power button", BOOT).unwrap();
    // PID 1 stays up in recovery mode (a PID 1 that exits is a kernel panic).
    vm.refute_for("Kernel panic", STAY).unwrap();
    vm.monitor("system_powerdown").unwrap();
    vm.expect("ramkey: shutdown requested: power button", SHUTDOWN).unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}

#[test]
fn recovery_mode_on_request_keeps_pid1_alive_until_ctrl_alt_del() {
    let platform = artifacts::platform().unwrap();
    let spec = Spec::direct("recovery", &platform, "ramkey.recovery");
    let mut vm = Machine::start(&spec).unwrap();
    vm.forbid(ALIVE).unwrap();
    vm.expect("ramkey: RECOVERY MODE: requested on the kernel command line", BOOT)
        .unwrap();
    vm.refute_for("Kernel panic", STAY).unwrap();
    // Ctrl-Alt-Del on the keyboard: PID 1 gets SIGINT and reboots in order.
    vm.monitor("sendkey ctrl-alt-delete").unwrap();
    vm.expect("ramkey: shutdown requested: SIGINT (ctrl-alt-del)", SHUTDOWN)
        .unwrap();
    vm.expect_line("ramkey: reboot", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}
