//! The VM boot test: `ramkey-vmm` under nested KVM. An outer TCG guest (`-cpu max`, so
//! QEMU emulates AMD SVM) runs the static VMM first without `kvm_amd` (it must say, in one
//! line and with exit code 3, that there is no usable KVM), then loads the KVM modules, and
//! a one-instruction ELF that triple-faults must be reported as a guest crash (exit 4). Then
//! it boots the Debian kernel with a busybox initramfs in a 256 MiB VM twice; the inner
//! `/init` prints a marker, its uptime and its CPU count.
//! - The vmlinux on one vCPU, with two virtio-blk disks (virtio-mmio, announced in the VMM's
//!   ACPI tables): the guest must read the read-only one's first line and its serial, fail
//!   to write it, and write a line to the other that the outer guest then finds in the
//!   backing file. Its NIC is a macvtap's character device (`--net /dev/tapN,mac=MAC`): the
//!   guest's MAC must be the macvtap's, the guest must fetch the outer guest's page and
//!   4 MiB (timed, its size checked), and the outer guest must fetch the inner guest's page
//!   (a TCP connection started from the outer side). The VMM runs under its seccomp filter
//!   (`Seccomp: 2` in its `/proc/PID/status`). A line the outer guest writes to the
//!   VMM's stdin (a pipe, closed after it) must reach the guest's console; then SIGTERM to
//!   the VMM must make it type Ctrl-Alt-Del, the guest power off (ACPI S5), and the VMM
//!   exit 0.
//! - The bzImage on two vCPUs, its NIC on the tap `tap0` by name (the MAC derived from the
//!   name): it fetches the outer page, the outer guest fetches its page (started from the
//!   outer side, as over the macvtap), and it reboots, which the VMM reports with exit 5.
//!
//! See `xtask/src/nested.rs` and `docs/vms.md`.

use std::time::Duration;

use ramkey_vmm::devices::net::{default_mac, mac_string};
use xtask::nested::{
    self, BOOTS, CONSOLE_LINE, INNER_MARKER, INNER_PAGE, MACVTAP, OUTER_PAGE, RO_DISK_LINE, RW_DISK_LINE, TAP,
};
use xtask::qemu::{Machine, Spec};

/// Outer boot, VMM run, inner boot and reboot: ~20–30 s per nested boot under TCG
/// (FACTS.md); generous for a slow, busy host.
const OUTER_BOOT: Duration = Duration::from_secs(120);
const INNER_BOOT: Duration = Duration::from_secs(120);
const SHUTDOWN: Duration = Duration::from_secs(60);

#[test]
fn the_vmm_boots_a_linux_guest_under_nested_kvm_and_sees_it_end() {
    let vmm = nested::static_vmm().unwrap();
    let machine = nested::build(&vmm).unwrap();
    let spec = Spec {
        name: "vm-nested".into(),
        memory_mb: 1024,
        kernel: Some((machine.kernel, machine.initrd, "console=ttyS0 panic=-1 quiet".into())),
        args: Vec::new(),
    };
    let mut vm = Machine::start(&spec).unwrap();
    // A boot that should reboot and crashes instead misses its reboot line: "guest crashed"
    // is not forbidden, since the crash kernel must print it.
    vm.forbid(&["Kernel panic", "internal error", "cannot start the VM"])
        .unwrap();

    // Before kvm_amd: no /dev/kvm, one clear line, exit code 3 (never a panic).
    vm.expect("outer: running the VMM before kvm_amd is loaded", OUTER_BOOT)
        .unwrap();
    let (_, line) = vm
        .expect("ramkey-vmm: no usable KVM: /dev/kvm is missing", OUTER_BOOT)
        .unwrap();
    assert!(line.contains("load kvm_amd or kvm_intel"), "{line}");
    vm.expect_line("outer: vmm exit 3", OUTER_BOOT).unwrap();

    // After: each inner kernel boots to its /init on its vCPUs, reboots, and the VMM says so.
    vm.expect("outer: /dev/kvm is there", OUTER_BOOT).unwrap();
    vm.expect(&format!("outer: {TAP} is up"), OUTER_BOOT).unwrap();
    let (_, macvtap) = vm
        .expect(&format!("outer: {MACVTAP} is up: /dev/tap"), OUTER_BOOT)
        .unwrap();
    let macvtap_mac = macvtap
        .rsplit_once("mac ")
        .map(|(_, m)| m.to_string())
        .unwrap_or_default();

    // A guest that triple-faults is a crash, exit 4.
    vm.expect("outer: booting a guest that triple-faults", OUTER_BOOT)
        .unwrap();
    vm.expect(
        "ramkey-vmm: guest crashed: triple fault (KVM_EXIT_SHUTDOWN) on vcpu 0",
        INNER_BOOT,
    )
    .unwrap();
    vm.expect_line("outer: vmm exit 4", SHUTDOWN).unwrap();

    for boot in BOOTS {
        let label = boot.label;
        vm.expect(&format!("outer: booting the inner guest: {label}"), OUTER_BOOT)
            .unwrap();
        let (_, marker) = vm.expect(INNER_MARKER, INNER_BOOT).unwrap();
        assert!(marker.ends_with(&format!(", cpus {}", boot.vcpus)), "{label}: {marker}");
        if boot.full {
            // The ACPI DSDT announced both virtio-mmio windows; the guest's virtio_blk found
            // them, read the read-only disk and its GET_ID serial.
            let (_, holds) = vm.expect("inner: vda holds: ", INNER_BOOT).unwrap();
            assert!(holds.ends_with(&format!("holds: {RO_DISK_LINE}")), "{holds}");
            let (_, serial) = vm.expect("inner: vda serial: ", INNER_BOOT).unwrap();
            assert!(serial.ends_with("serial: ramkey-disk0"), "{serial}");
            // A write to the read-only disk fails (the VMM refuses it with IOERR even when the
            // guest ignores VIRTIO_BLK_F_RO); the guest sees the flag. A write to the
            // writable disk is flushed.
            let (_, write) = vm.expect("inner: vda write: ", INNER_BOOT).unwrap();
            assert!(write.ends_with("write: refused"), "{write}");
            let (_, flag) = vm.expect("inner: vda read-only flag: ", INNER_BOOT).unwrap();
            assert!(flag.ends_with("flag: 1"), "{flag}");
            vm.expect("inner: vdb line written", INNER_BOOT).unwrap();
            let (_, rates) = vm.expect("inner: 4 MiB read in ", INNER_BOOT).unwrap();
            eprintln!("vm test: {label}: {rates}");
        } else {
            vm.expect("inner: no disks", INNER_BOOT).unwrap();
        }
        // The NIC: the ACPI DSDT announced its window, and virtio_net found it with the
        // macvtap's MAC, or the one derived from the tap's name.
        let want_mac = if boot.full {
            macvtap_mac.clone()
        } else {
            mac_string(&default_mac(TAP))
        };
        assert_eq!(want_mac.len(), 17, "{macvtap_mac:?}");
        let (_, mac) = vm.expect("inner: eth0 mac ", INNER_BOOT).unwrap();
        assert!(mac.ends_with(&format!("mac {want_mac}")), "{label}: {mac}");
        // An HTTP GET from the guest: a TCP connection, frames both ways.
        let (_, page) = vm.expect("inner: fetched: ", INNER_BOOT).unwrap();
        assert!(page.ends_with(&format!("fetched: {OUTER_PAGE}")), "{page}");
        if !boot.full {
            // A TCP connection started from the outer side over the plain tap, tried since
            // before the guest booted.
            let (_, served) = vm
                .expect("outer: fetched from the inner guest over ", INNER_BOOT)
                .unwrap();
            assert!(served.ends_with(&format!("{TAP}: {INNER_PAGE}")), "{served}");
            // A guest reboot: exit 5.
            let (_, exit_line) = vm
                .expect("ramkey-vmm: guest rebooted (i8042 reset)", INNER_BOOT)
                .unwrap();
            assert!(exit_line.contains("(exit 5, peak RSS"), "{exit_line}");
            vm.expect_line("outer: vmm exit 5", SHUTDOWN).unwrap();
            eprintln!("vm test: {label}: {marker}\nvm test: {label}: {exit_line}");
            continue;
        }
        let (_, rate) = vm.expect("inner: 4 MiB fetched in ", INNER_BOOT).unwrap();
        let bytes: usize = rate
            .rsplit_once('(')
            .and_then(|(_, n)| n.split(' ').next()?.parse().ok())
            .unwrap_or(0);
        assert!(
            (4 << 20..(4 << 20) + 1024).contains(&bytes),
            "4 MiB and the headers: {rate}"
        );
        eprintln!("vm test: {label}: {rate}");
        // A TCP connection started from the outer side, through the macvlan and the macvtap.
        let (_, served) = vm.expect("outer: fetched from the inner guest: ", INNER_BOOT).unwrap();
        assert!(served.ends_with(&format!("guest: {INNER_PAGE}")), "{served}");
        // While the guest runs, every VMM thread is under its seccomp filter (mode 2).
        let (_, mode) = vm.expect("outer: vmm Seccomp:", INNER_BOOT).unwrap();
        assert_eq!(mode.split_whitespace().last(), Some("2"), "{mode}");
        // The line written to the VMM's stdin (a pipe, then closed) reached the console.
        let (_, console) = vm.expect("inner: console got: ", INNER_BOOT).unwrap();
        assert!(console.ends_with(&format!("got: {CONSOLE_LINE}")), "{console}");
        // SIGTERM: the VMM types Ctrl-Alt-Del, the guest's PID 1 gets SIGINT and powers off.
        let (sent, _) = vm.expect("outer: sending SIGTERM to the VMM", INNER_BOOT).unwrap();
        vm.expect(
            "ramkey-vmm: SIGTERM: asked the guest to shut down (ctrl-alt-del)",
            SHUTDOWN,
        )
        .unwrap();
        vm.expect("inner: ctrl-alt-del: powering off", SHUTDOWN).unwrap();
        let (_, exit_line) = vm.expect("ramkey-vmm: guest powered off (ACPI S5)", SHUTDOWN).unwrap();
        assert!(exit_line.contains("(exit 0, peak RSS"), "{exit_line}");
        let (exited, _) = vm.expect_line("outer: vmm exit 0", SHUTDOWN).unwrap();
        eprintln!(
            "vm test: {label}: SIGTERM to the VMM's exit: {:.2} s (console timestamps)",
            (exited - sent).as_secs_f64()
        );
        // The backing files, read by the outer guest after the VMM ended.
        let (_, ro) = vm.expect("outer: ro disk holds: ", SHUTDOWN).unwrap();
        assert!(ro.ends_with(&format!("holds: {RO_DISK_LINE}")), "{ro}");
        let (_, rw) = vm.expect("outer: rw disk holds: ", SHUTDOWN).unwrap();
        assert!(rw.ends_with(&format!("holds: {RW_DISK_LINE}")), "{rw}");
        eprintln!("vm test: {label}: {marker}\nvm test: {label}: {exit_line}");
    }
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}
