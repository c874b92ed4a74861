//! Boot tests: the built platform under QEMU (TCG), checked on the serial console.

use std::time::Duration;

use xtask::artifacts;
use xtask::qemu::{Machine, Spec};

const BOOT: Duration = Duration::from_secs(180);
const SHUTDOWN: Duration = Duration::from_secs(60);

#[test]
fn boots_to_ready_and_powers_off_on_the_power_button() {
    let platform = artifacts::platform().unwrap();
    let spec = Spec::direct("boot-poweroff", &platform, "ramkey.log=debug").user_net(&[]);
    let mut vm = Machine::start(&spec).unwrap();
    vm.expect("ramkey: init started", BOOT).unwrap();
    let (ready_at, line) = vm.expect("ramkey: ready", BOOT).unwrap();
    eprintln!("ready after {:.2}s: {line}", ready_at.as_secs_f64());
    vm.refute("RECOVERY MODE").unwrap();
    // Coldplug loaded the NIC's driver and the ACPI power button's through their modaliases.
    for module in ["virtio_net", "button", "evdev"] {
        let loaded = format!("loaded module {module}");
        let found = vm.lines().iter().any(|(_, l)| l.contains(&loaded));
        assert!(found, "{module} not loaded\n{}", vm.tail());
    }

    vm.monitor("system_powerdown").unwrap();
    vm.expect("ramkey: shutdown requested: power button", SHUTDOWN).unwrap();
    vm.expect("ramkey: unmount", SHUTDOWN).unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    let status = vm.wait_exit(SHUTDOWN).unwrap();
    assert!(status.success(), "QEMU exited with {status}\n{}", vm.tail());
    vm.refute("Kernel panic").unwrap();
}

#[test]
fn recovery_mode_keeps_pid1_alive_until_the_power_button() {
    let platform = artifacts::platform().unwrap();
    let spec = Spec::direct("recovery", &platform, "ramkey.recovery");
    let mut vm = Machine::start(&spec).unwrap();
    vm.expect("ramkey: RECOVERY MODE: ", BOOT).unwrap();
    vm.refute("ramkey: ready").unwrap();
    // Give the machine a moment: PID 1 must still be there, not exited into a panic.
    std::thread::sleep(Duration::from_secs(2));
    vm.refute("Kernel panic").unwrap();
    vm.monitor("system_powerdown").unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success());
}
