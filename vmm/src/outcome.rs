//! How a VM ends, and how the VMM says so: the [`Outcome`] a vCPU or a device reports, its
//! exit code and one line, and [`Stop`], where the first outcome wins and the main thread
//! waits for it.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use kvm_bindings::{KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::VcpuExit;

use crate::memory_use::MemoryUse;

/// Exit codes of `ramkey-vmm`, one per kind of ending.
pub mod code {
    /// The guest powered off (ACPI S5, a KVM shutdown event).
    pub const POWERED_OFF: i32 = 0;
    /// The VMM or KVM failed (setup, an unexpected exit, a KVM internal error).
    pub const INTERNAL: i32 = 1;
    /// The command line was wrong.
    pub const USAGE: i32 = 2;
    /// No usable KVM on this machine.
    pub const NO_KVM: i32 = 3;
    /// The guest crashed: a triple fault (KVM_EXIT_SHUTDOWN) or a reported crash.
    pub const CRASHED: i32 = 4;
    /// The guest rebooted (the i8042's reset, a KVM reset event): the host may start it again.
    pub const REBOOTED: i32 = 5;
}

/// How the VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest powered off: `how` says by what (ACPI S5, a KVM system event).
    PoweredOff { how: String },
    /// The guest rebooted: `how` says by what (the i8042 reset, a KVM system event).
    Rebooted { how: String },
    /// The guest died: a triple fault, or KVM said it crashed.
    Crashed { why: String },
    /// The VMM or KVM could not go on.
    Internal { why: String },
}

impl Outcome {
    pub fn code(&self) -> i32 {
        match self {
            Outcome::PoweredOff { .. } => code::POWERED_OFF,
            Outcome::Rebooted { .. } => code::REBOOTED,
            Outcome::Crashed { .. } => code::CRASHED,
            Outcome::Internal { .. } => code::INTERNAL,
        }
    }

    /// The one line the VMM prints at exit: the ending, the time the guest ran, the exit
    /// code, and when known the VMM's peak resident memory and its own part of the
    /// resident set at the end (what is not guest memory).
    pub fn line(&self, ran: Duration, memory: Option<MemoryUse>) -> String {
        let what = match self {
            Outcome::PoweredOff { how } => format!("guest powered off ({how})"),
            Outcome::Rebooted { how } => format!("guest rebooted ({how})"),
            Outcome::Crashed { why } => format!("guest crashed: {why}"),
            Outcome::Internal { why } => format!("internal error: {why}"),
        };
        let rss = memory.map_or_else(String::new, |m| {
            format!(", peak RSS {} kB, VMM's own {} kB", m.peak_rss_kib, m.vmm_kib())
        });
        format!(
            "ramkey-vmm: {what} after {:.2} s (exit {}{rss})",
            ran.as_secs_f64(),
            self.code()
        )
    }
}

/// What one vCPU exit means for the VM: `None` to run on, or how it ended. Port and MMIO
/// exits are the devices' business and are handled before this.
pub fn classify(exit: &VcpuExit<'_>, vcpu: u8) -> Option<Outcome> {
    let internal = |why: String| Some(Outcome::Internal { why });
    match exit {
        VcpuExit::IoIn(..) | VcpuExit::IoOut(..) | VcpuExit::MmioRead(..) | VcpuExit::MmioWrite(..) => None,
        // A signal or an interrupt window: nothing happened to the guest.
        VcpuExit::Intr | VcpuExit::IrqWindowOpen => None,
        VcpuExit::Shutdown => Some(Outcome::Crashed {
            why: format!("triple fault (KVM_EXIT_SHUTDOWN) on vcpu {vcpu}"),
        }),
        // Only without an in-kernel irqchip; with it, `hlt` never leaves KVM.
        VcpuExit::Hlt => Some(Outcome::PoweredOff {
            how: format!("vcpu {vcpu} halted"),
        }),
        VcpuExit::SystemEvent(kind, _) => match *kind {
            KVM_SYSTEM_EVENT_SHUTDOWN => Some(Outcome::PoweredOff {
                how: "KVM shutdown event".into(),
            }),
            KVM_SYSTEM_EVENT_RESET => Some(Outcome::Rebooted {
                how: "KVM reset event".into(),
            }),
            KVM_SYSTEM_EVENT_CRASH => Some(Outcome::Crashed {
                why: format!("KVM reported a crash on vcpu {vcpu}"),
            }),
            other => internal(format!("unknown KVM system event {other} on vcpu {vcpu}")),
        },
        VcpuExit::FailEntry(reason, cpu) => internal(format!(
            "KVM could not enter the guest (KVM_EXIT_FAIL_ENTRY, reason {reason:#x}, cpu {cpu})"
        )),
        VcpuExit::InternalError => internal(format!("KVM internal error (KVM_EXIT_INTERNAL_ERROR) on vcpu {vcpu}")),
        other => internal(format!("unexpected vcpu exit on vcpu {vcpu}: {other:?}")),
    }
}

/// Where the VM's ending is reported (by vCPUs and devices) and waited for (by the main
/// thread). The first report wins; later ones (a vCPU that faults after the reset it
/// asked for) are dropped.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    inner: Arc<(Mutex<Option<Outcome>>, Condvar)>,
}

impl Stop {
    /// Reports `outcome` unless the VM already ended.
    pub fn report(&self, outcome: Outcome) {
        let (slot, ready) = &*self.inner;
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(outcome);
            ready.notify_all();
        }
    }

    /// Whether the VM has ended.
    pub fn is_reported(&self) -> bool {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// The outcome, once reported (blocks until then).
    pub fn wait(&self) -> Outcome {
        let (slot, ready) = &*self.inner;
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(outcome) = slot.clone() {
                return outcome;
            }
            slot = ready.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ending_has_its_code_and_line() {
        let ran = Duration::from_millis(21_340);
        let off = Outcome::PoweredOff { how: "ACPI S5".into() };
        assert_eq!(off.code(), 0);
        assert_eq!(
            off.line(ran, None),
            "ramkey-vmm: guest powered off (ACPI S5) after 21.34 s (exit 0)"
        );
        let reboot = Outcome::Rebooted {
            how: "i8042 reset".into(),
        };
        assert_eq!(reboot.code(), 5);
        assert_eq!(
            reboot.line(
                ran,
                Some(MemoryUse {
                    peak_rss_kib: 9000,
                    rss_kib: 8000,
                    guest_kib: 6000
                })
            ),
            "ramkey-vmm: guest rebooted (i8042 reset) after 21.34 s (exit 5, peak RSS 9000 kB, VMM's own 2000 kB)"
        );
        let crash = classify(&VcpuExit::Shutdown, 1).unwrap();
        assert_eq!(crash.code(), 4);
        assert!(
            crash
                .line(ran, None)
                .contains("guest crashed: triple fault (KVM_EXIT_SHUTDOWN) on vcpu 1")
        );
        let internal = classify(&VcpuExit::InternalError, 0).unwrap();
        assert_eq!(internal.code(), 1);
        assert!(
            internal
                .line(ran, None)
                .starts_with("ramkey-vmm: internal error: KVM internal error")
        );
        let codes = [
            code::POWERED_OFF,
            code::INTERNAL,
            code::USAGE,
            code::NO_KVM,
            code::CRASHED,
            code::REBOOTED,
        ];
        for (i, c) in codes.iter().enumerate() {
            assert!(!codes[i + 1..].contains(c), "exit code {c} used twice");
        }
    }

    #[test]
    fn exits_are_classified() {
        let mut data = [0u8; 1];
        assert_eq!(classify(&VcpuExit::IoIn(0x3f8, &mut data), 0), None);
        assert_eq!(classify(&VcpuExit::IoOut(0x64, &[0xfe]), 0), None);
        assert_eq!(classify(&VcpuExit::Intr, 0), None);
        let event = |kind| classify(&VcpuExit::SystemEvent(kind, &[]), 0).unwrap().code();
        assert_eq!(event(KVM_SYSTEM_EVENT_SHUTDOWN), 0);
        assert_eq!(event(KVM_SYSTEM_EVENT_RESET), 5);
        assert_eq!(event(KVM_SYSTEM_EVENT_CRASH), 4);
        assert_eq!(event(77), 1);
        assert_eq!(classify(&VcpuExit::FailEntry(3, 0), 0).unwrap().code(), 1);
        assert_eq!(classify(&VcpuExit::Unknown, 0).unwrap().code(), 1);
    }

    #[test]
    fn the_first_outcome_wins() {
        let stop = Stop::default();
        assert!(!stop.is_reported());
        let reporter = stop.clone();
        let t = std::thread::spawn(move || {
            reporter.report(Outcome::Rebooted {
                how: "i8042 reset".into(),
            });
            reporter.report(Outcome::Crashed {
                why: "triple fault".into(),
            });
        });
        assert_eq!(
            stop.wait(),
            Outcome::Rebooted {
                how: "i8042 reset".into()
            }
        );
        t.join().unwrap();
        assert!(stop.is_reported());
    }
}
