//! Orderly shutdown: stop every process, sync, unmount, then `reboot(2)`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::reboot::RebootMode;
use nix::sys::signal::Signal;

use crate::sys::{self, Reaped, SysError};

/// Reading the mount table failed.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    /// `/proc/self/mounts` could not be read.
    #[error("cannot read the mount table {path}: {source}")]
    Mounts {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What to do once everything is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Power the machine off.
    Poweroff,
    /// Restart the machine.
    Reboot,
    /// Stop the CPU, leave power on.
    Halt,
}

impl Action {
    /// The word of the final console line (`ramkey: power-off`).
    pub fn word(self) -> &'static str {
        match self {
            Action::Poweroff => "power-off",
            Action::Reboot => "reboot",
            Action::Halt => "halt",
        }
    }

    fn mode(self) -> RebootMode {
        match self {
            Action::Poweroff => RebootMode::RB_POWER_OFF,
            Action::Reboot => RebootMode::RB_AUTOBOOT,
            Action::Halt => RebootMode::RB_HALT_SYSTEM,
        }
    }
}

/// A shutdown with the reason given on the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What to do.
    pub action: Action,
    /// Why, e.g. `SIGTERM` or `power button`.
    pub reason: String,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.action.word(), self.reason)
    }
}

/// The effects of a shutdown; the fake records them.
pub trait System {
    /// Sends a signal to every process but PID 1.
    fn kill_all(&mut self, signal: Signal) -> Result<(), SysError>;
    /// Reaps exited children without blocking.
    fn reap(&mut self) -> Reaped;
    /// Sleeps between reaping rounds.
    fn sleep(&mut self, d: Duration);
    /// Flushes filesystems.
    fn sync(&mut self);
    /// Unmounts a path, lazily when `detach` is set.
    fn umount(&mut self, path: &Path, detach: bool) -> Result<(), Errno>;
    /// Remounts the filesystem at `path` read-only (its dirty data written, its journal
    /// clean), for one that cannot be unmounted.
    fn remount_read_only(&mut self, path: &Path) -> Result<(), Errno>;
    /// Calls `reboot(2)`; returns only its failure.
    fn reboot(&mut self, action: Action) -> SysError;
}

/// The real system.
#[derive(Debug, Default)]
pub struct KernelSystem;

impl System for KernelSystem {
    fn kill_all(&mut self, signal: Signal) -> Result<(), SysError> {
        sys::kill_all(signal)
    }
    fn reap(&mut self) -> Reaped {
        sys::reap_children()
    }
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
    fn sync(&mut self) {
        sys::sync();
    }
    fn umount(&mut self, path: &Path, detach: bool) -> Result<(), Errno> {
        sys::umount(path, detach)
    }
    fn remount_read_only(&mut self, path: &Path) -> Result<(), Errno> {
        let flags = nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY;
        nix::mount::mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
    }
    fn reboot(&mut self, action: Action) -> SysError {
        sys::reboot(action.mode())
    }
}

/// Filesystems that hold no data: left mounted, the kernel drops them at power-off.
const API_FILESYSTEMS: &[&str] = &[
    "rootfs",
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "bpf",
    "pstore",
    "efivarfs",
    "configfs",
    "mqueue",
    "hugetlbfs",
    "fusectl",
    "binfmt_misc",
];

/// Decodes the octal escapes (`\040` for a space) of `/proc/self/mounts`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok().and_then(|d| u8::from_str_radix(d, 8).ok()));
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points to unmount, last mounted first: all but `/` and API filesystems.
pub fn unmount_plan(proc_mounts: &str) -> Vec<PathBuf> {
    let mut plan: Vec<PathBuf> = proc_mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_source, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            let target = unescape(target);
            (target != "/" && !API_FILESYSTEMS.contains(&fstype)).then(|| PathBuf::from(target))
        })
        .collect();
    plan.reverse();
    plan
}

/// How long processes get between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
const REAP_TICK: Duration = Duration::from_millis(50);

/// Reaps until no child is left or `limit` has passed.
fn reap_for(system: &mut dyn System, limit: Duration) -> bool {
    let mut waited = Duration::ZERO;
    loop {
        if system.reap().none_left {
            return true;
        }
        if waited >= limit {
            return false;
        }
        system.sleep(REAP_TICK);
        waited += REAP_TICK;
    }
}

/// Unmounts each path, retrying busy ones lazily, and logs one line each.
fn unmount_all(plan: &[PathBuf], system: &mut dyn System) {
    for path in plan {
        let shown = path.display();
        match system.umount(path, false) {
            Ok(()) => crate::notice!("unmount {shown}: ok"),
            // Still in use (a process that would not die, a loop device): made read-only
            // first, so that what the pool holds is on the disk and its filesystem clean
            // when the power goes, then detached.
            Err(Errno::EBUSY) => {
                let read_only = match system.remount_read_only(path) {
                    Ok(()) => "remounted read-only".to_string(),
                    Err(e) => format!("read-only remount failed: {e}"),
                };
                match system.umount(path, true) {
                    Ok(()) => crate::notice!("unmount {shown}: ok (busy, {read_only}, detached)"),
                    Err(e) => crate::notice!("unmount {shown}: {e} (busy, {read_only})"),
                }
            }
            Err(e) => crate::notice!("unmount {shown}: {e}"),
        }
    }
}

/// Runs the whole shutdown and calls `reboot(2)`; returns only if that failed.
pub fn shutdown(request: &Request, proc_mounts: &Path, system: &mut dyn System) -> SysError {
    crate::info!("stopping every remaining process for the {}", request.action.word());
    if let Err(e) = system.kill_all(Signal::SIGTERM) {
        crate::warn!("sending SIGTERM to all processes: {e}");
    }
    if !reap_for(system, TERM_GRACE) {
        crate::warn!("processes left after {} s, sending SIGKILL", TERM_GRACE.as_secs());
        if let Err(e) = system.kill_all(Signal::SIGKILL) {
            crate::warn!("sending SIGKILL to all processes: {e}");
        }
        reap_for(system, Duration::from_secs(1));
    }
    system.sync();
    match std::fs::read_to_string(proc_mounts) {
        Ok(text) => unmount_all(&unmount_plan(&text), system),
        Err(source) => {
            let e = ShutdownError::Mounts {
                path: proc_mounts.to_owned(),
                source,
            };
            crate::warn!("{e}; nothing unmounted");
        }
    }
    system.sync();
    crate::notice!("{}", request.action.word());
    system.reboot(request.action)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
rootfs / rootfs rw 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
devtmpfs /dev devtmpfs rw,nosuid,size=4k,mode=755 0 0
devpts /dev/pts devpts rw 0 0
tmpfs /dev/shm tmpfs rw 0 0
tmpfs /run tmpfs rw,nosuid,nodev,mode=755 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw 0 0
/dev/sda1 /usbkey vfat ro 0 0
/dev/vda1 /pool ext4 rw 0 0
/dev/loop0 /pool/zones/my\\040web squashfs ro 0 0
";

    #[test]
    fn plan_is_reverse_and_skips_api_filesystems() {
        let plan = unmount_plan(MOUNTS);
        let plan: Vec<_> = plan.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(plan, ["/pool/zones/my web", "/pool", "/usbkey", "/run", "/dev/shm"]);
    }

    #[test]
    fn unescape_handles_octal_and_plain_backslash() {
        assert_eq!(unescape("a\\040b\\011c"), "a b\tc");
        assert_eq!(unescape("a\\b"), "a\\b");
        assert_eq!(unescape("end\\04"), "end\\04");
    }

    #[derive(Default)]
    struct FakeSystem {
        log: Vec<String>,
        children_exit_after_reaps: usize,
        busy: Vec<&'static str>,
    }

    impl System for FakeSystem {
        fn kill_all(&mut self, signal: Signal) -> Result<(), SysError> {
            self.log.push(format!("kill {signal}"));
            if signal == Signal::SIGKILL {
                self.children_exit_after_reaps = 0;
            }
            Ok(())
        }
        fn reap(&mut self) -> Reaped {
            let none_left = self.children_exit_after_reaps == 0;
            self.children_exit_after_reaps = self.children_exit_after_reaps.saturating_sub(1);
            Reaped {
                none_left,
                ..Reaped::default()
            }
        }
        fn sleep(&mut self, _: Duration) {}
        fn sync(&mut self) {
            self.log.push("sync".into());
        }
        fn umount(&mut self, path: &Path, detach: bool) -> Result<(), Errno> {
            self.log.push(format!("umount {} {detach}", path.display()));
            if !detach && self.busy.iter().any(|b| Path::new(b) == path) {
                return Err(Errno::EBUSY);
            }
            Ok(())
        }
        fn remount_read_only(&mut self, path: &Path) -> Result<(), Errno> {
            self.log.push(format!("remount-ro {}", path.display()));
            Ok(())
        }
        fn reboot(&mut self, action: Action) -> SysError {
            self.log.push(format!("reboot {}", action.word()));
            SysError::Call {
                op: "reboot",
                source: Errno::EPERM,
            }
        }
    }

    fn run(system: &mut FakeSystem, action: Action) -> SysError {
        let dir = tempfile::tempdir().unwrap();
        let mounts = dir.path().join("mounts");
        std::fs::write(&mounts, MOUNTS).unwrap();
        let request = Request {
            action,
            reason: "test".into(),
        };
        shutdown(&request, &mounts, system)
    }

    #[test]
    fn orderly_sequence_with_busy_mount() {
        let mut system = FakeSystem {
            busy: vec!["/pool"],
            ..Default::default()
        };
        run(&mut system, Action::Poweroff);
        assert_eq!(
            system.log,
            [
                "kill SIGTERM",
                "sync",
                "umount /pool/zones/my web false",
                "umount /pool false",
                "remount-ro /pool",
                "umount /pool true",
                "umount /usbkey false",
                "umount /run false",
                "umount /dev/shm false",
                "sync",
                "reboot power-off",
            ]
        );
    }

    #[test]
    fn stubborn_processes_get_sigkill() {
        let mut system = FakeSystem {
            children_exit_after_reaps: 1000,
            ..Default::default()
        };
        run(&mut system, Action::Reboot);
        assert_eq!(&system.log[..2], ["kill SIGTERM", "kill SIGKILL"]);
        assert_eq!(system.log.last().unwrap(), "reboot reboot");
    }

    #[test]
    fn request_display() {
        let r = Request {
            action: Action::Halt,
            reason: "SIGUSR1".into(),
        };
        assert_eq!(r.to_string(), "halt (SIGUSR1)");
    }
}
