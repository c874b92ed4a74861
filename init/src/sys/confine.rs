//! The syscalls that build and confine a zone: `fork`, a read-only loop device over the
//! image's payload, the capability bounding set and the process's own capabilities (the
//! seccomp filter is [`super::seccomp`]).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{ForkResult, Pid};

use super::{SysError, call};

/// Why [`fork`] did not fork.
#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    /// Another thread shares this process's memory: a child forked now would run with only a
    /// copy of this thread, and with any lock another thread held at that moment held forever.
    #[error(
        "fork refused: this process runs more than one thread, and a child forked now could \
         deadlock on a lock another thread holds; fork before any thread starts"
    )]
    Threaded,
    /// The check or the fork itself failed.
    #[error(transparent)]
    Sys(#[from] SysError),
}

/// Checks that the calling thread is the only one in its process (and that no other process
/// shares its memory): `Err(ForkError::Threaded)` otherwise.
///
/// Asks the kernel, not `/proc` (which may be another PID namespace's, as after
/// `ramkeyctl personality console` entered a zone's mounts, or not mounted at all):
/// `unshare(CLONE_VM)` changes nothing and succeeds only for a single-threaded caller,
/// `EINVAL` otherwise (unshare(2); `check_unshare_flags` in the kernel's `fork.c`). It neither
/// allocates nor takes a lock, so a forked child may call it too.
pub fn single_threaded() -> Result<(), ForkError> {
    match nix::sched::unshare(nix::sched::CloneFlags::CLONE_VM) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => Err(ForkError::Threaded),
        Err(source) => Err(ForkError::Sys(SysError::Call {
            op: "unshare(CLONE_VM) (the single-thread check before fork)",
            source,
        })),
    }
}

/// `fork(2)`: `Some(child)` in the parent, `None` in the child.
///
/// Refuses ([`ForkError::Threaded`]) unless the calling thread is the process's only one
/// ([`single_threaded`]). Its callers fork before they start any thread: the zone launcher,
/// the zone's PID 1 (in `namespaces()`, before its services, health checks or DHCP renewals)
/// and `ramkeyctl personality console`.
pub fn fork() -> Result<Option<Pid>, ForkError> {
    single_threaded()?;
    // SAFETY: `single_threaded` has just found this thread to be the process's only one, and
    // only this thread could have started another since: the child cannot inherit a lock (of
    // the allocator, of stdio) held by another thread, so it may go on running ordinary code.
    match unsafe { nix::unistd::fork() }.map_err(call("fork"))? {
        ForkResult::Parent { child } => Ok(Some(child)),
        ForkResult::Child => Ok(None),
    }
}

/// Ends a forked child at once, without running the exit handlers or flushing the buffers
/// it shares with its parent.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: `_exit` takes a status and does not return.
    unsafe { libc::_exit(code) }
}

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;

/// How a loop device serves its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopMode {
    /// Read-only, cleared when its last user goes away: an image's payload.
    ReadOnly,
    /// Read-write, bypassing the page cache (what is written is on the disk below, not in
    /// this box's memory), kept until detached: a replicated disk on the pool.
    WritableDirect,
}
/// `struct loop_info64` of `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// `struct loop_config` of `<linux/loop.h>` (Linux 5.8+).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// Detaches the loop device `device` (`/dev/loopN`) from its file. If something still holds
/// the device open, the kernel detaches it when the last holder closes it.
pub fn detach_loop(device: &Path) -> Result<(), SysError> {
    let device = OpenOptions::new().read(true).open(device).map_err(|e| SysError::Call {
        op: "open loop device",
        source: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
    })?;
    // SAFETY: LOOP_CLR_FD takes no argument; the fd is open for the whole call.
    Errno::result(unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CLR_FD as _, 0) })
        .map(drop)
        .map_err(call("LOOP_CLR_FD"))
}

/// Attaches the first `size` bytes of `file` (0: all of it) to a free loop device, as `mode`
/// says. Returns `/dev/loopN` and the open device: with [`LoopMode::ReadOnly`], keep it open
/// until the device is mounted, or the kernel clears the device at once.
pub fn attach_loop(file: &File, size: u64, dev: &Path, mode: LoopMode) -> Result<(PathBuf, File), SysError> {
    let flags = match mode {
        LoopMode::ReadOnly => LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
        LoopMode::WritableDirect => LO_FLAGS_DIRECT_IO,
    };
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev.join("loop-control"))
        .map_err(|e| SysError::Call {
            op: "open loop-control",
            source: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        })?;
    // Another zone may take the same free device between the two ioctls: try again.
    for _ in 0..8 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = Errno::result(unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) })
            .map_err(call("LOOP_CTL_GET_FREE"))?;
        let path = dev.join(format!("loop{n}"));
        // A device opened read-only is attached read-only.
        let device = open_when_there(&path, mode == LoopMode::WritableDirect)?;
        let mut config = LoopConfig {
            fd: u32::try_from(file.as_raw_fd()).unwrap_or(u32::MAX),
            block_size: 0,
            info: LoopInfo64 {
                device: 0,
                inode: 0,
                rdevice: 0,
                offset: 0,
                sizelimit: size,
                number: 0,
                encrypt_type: 0,
                encrypt_key_size: 0,
                flags,
                file_name: [0; 64],
                crypt_name: [0; 64],
                encrypt_key: [0; 32],
                init: [0; 2],
            },
            reserved: [0; 8],
        };
        // SAFETY: LOOP_CONFIGURE reads one `struct loop_config`, which `config` is, laid out
        // as the kernel's; the pointer is valid for the duration of the call.
        let r = unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE as _, &raw mut config) };
        match Errno::result(r) {
            Ok(_) => return Ok((path, device)),
            Err(Errno::EBUSY) => continue,
            Err(e) => {
                return Err(SysError::Call {
                    op: "LOOP_CONFIGURE",
                    source: e,
                });
            }
        }
    }
    Err(SysError::Call {
        op: "LOOP_CONFIGURE",
        source: Errno::EBUSY,
    })
}

/// Opens a loop device node, waiting briefly for devtmpfs to create it.
fn open_when_there(path: &Path, write: bool) -> Result<File, SysError> {
    let mut last = Errno::ENOENT;
    for _ in 0..50 {
        match OpenOptions::new().read(true).write(write).open(path) {
            Ok(f) => return Ok(f),
            Err(e) => last = Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(SysError::Call {
        op: "open loop device",
        source: last,
    })
}

/// Removes every capability not in `keep` from the bounding set: programs the process
/// executes afterwards (as root) get at most `keep`. `cap_last_cap` is
/// `/proc/sys/kernel/cap_last_cap`, which says how many there are.
pub fn limit_bounding_set(keep: &[u32], cap_last_cap: &Path) -> Result<(), SysError> {
    let last = std::fs::read_to_string(cap_last_cap)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(40);
    for cap in (0..=last).filter(|c| !keep.contains(c)) {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and no pointers.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        Errno::result(r).map_err(call("PR_CAPBSET_DROP"))?;
    }
    Ok(())
}

/// `struct __user_cap_header_struct` of `<linux/capability.h>`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct`; version 3 takes two of them (capabilities 0–31, 32–63).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Cuts this process's own effective and permitted capabilities to `keep` and empties its
/// inheritable and ambient sets. (The bounding set, [`limit_bounding_set`], only limits what
/// programs it executes get; this limits what the process itself can do from now on.)
pub fn limit_own_caps(keep: &[u32]) -> Result<(), SysError> {
    let mut data = [CapData::default(); 2];
    for &cap in keep.iter().filter(|&&c| c < 64) {
        let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
        data[word].effective |= bit;
        data[word].permitted |= bit;
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    let r = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    Errno::result(r).map_err(call("PR_CAP_AMBIENT_CLEAR_ALL"))?;
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: capset reads one header and, for version 3, two data structs, laid out as the
    // kernel's; both pointers are valid for the duration of the call.
    let r = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    Errno::result(r).map(drop).map_err(call("capset"))
}

/// `PR_SET_NO_NEW_PRIVS`: no exec can gain privileges (setuid bits, file capabilities).
pub fn set_no_new_privs() -> Result<(), SysError> {
    nix::sys::prctl::set_no_new_privs().map_err(call("PR_SET_NO_NEW_PRIVS"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{WaitStatus, waitpid};

    #[test]
    fn fork_refuses_while_another_thread_runs() {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || wait.recv());
        assert!(matches!(single_threaded(), Err(ForkError::Threaded)));
        match fork() {
            Err(ForkError::Threaded) => {}
            // The check let it through: end the child at once, fail in the parent.
            Ok(None) => exit_child(0),
            Ok(Some(child)) => {
                let _reaped = waitpid(child, None);
                panic!("fork forked a process running two threads");
            }
            Err(e) => panic!("fork failed otherwise: {e}"),
        }
        assert!(ForkError::Threaded.to_string().contains("more than one thread"));
        release.send(()).unwrap();
        other.join().unwrap().unwrap();
    }

    #[test]
    fn a_forked_child_is_single_threaded() {
        // SAFETY: the test binary runs several threads, so the child may only make
        // async-signal-safe calls: `single_threaded` makes one raw `unshare` syscall and
        // builds its result on the stack (no allocation, no lock), then `_exit`; the child
        // never returns into the test harness.
        let child = match unsafe { nix::unistd::fork() }.unwrap() {
            ForkResult::Parent { child } => child,
            ForkResult::Child => exit_child(match single_threaded() {
                Ok(()) => 0,
                Err(ForkError::Threaded) => 1,
                Err(ForkError::Sys(_)) => 2,
            }),
        };
        assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
    }
}
