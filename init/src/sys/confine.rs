//! The syscalls that build and confine a zone: `fork`, a read-only loop device over the
//! image's payload, the capability bounding set, and a seccomp filter.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{ForkResult, Pid};

use super::{SysError, call};

/// `fork(2)`: `Some(child)` in the parent, `None` in the child.
///
/// Only called from the zone launcher, a single-threaded process freshly exec'd by PID 1.
pub fn fork() -> Result<Option<Pid>, SysError> {
    // SAFETY: the caller is single-threaded (the zone launcher runs no threads), so the
    // child cannot inherit a lock held by another thread; it goes on running ordinary code.
    match unsafe { nix::unistd::fork() }.map_err(call("fork"))? {
        ForkResult::Parent { child } => Ok(Some(child)),
        ForkResult::Child => Ok(None),
    }
}

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

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

/// Attaches the first `size` bytes of `file` to a free loop device, read-only, cleared
/// automatically when its last user goes away. Returns `/dev/loopN` and the open device:
/// keep it open until the device is mounted, or the kernel clears the device at once.
pub fn attach_loop(file: &File, size: u64, dev: &Path) -> Result<(PathBuf, File), SysError> {
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
        let device = open_when_there(&path)?;
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
                flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
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
fn open_when_there(path: &Path) -> Result<File, SysError> {
    let mut last = Errno::ENOENT;
    for _ in 0..50 {
        match File::open(path) {
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
/// executes afterwards (as root) get at most `keep`.
pub fn limit_bounding_set(keep: &[u32]) -> Result<(), SysError> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
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

/// `PR_SET_NO_NEW_PRIVS`: no exec can gain privileges (setuid bits, file capabilities).
pub fn set_no_new_privs() -> Result<(), SysError> {
    nix::sys::prctl::set_no_new_privs().map_err(call("PR_SET_NO_NEW_PRIVS"))
}

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const SECCOMP_RET_ALLOW: u32 = 0x7FFF_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;

fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The classic BPF program: x86-64 only, x32 calls refused, `denied` calls fail with
/// `EPERM`, everything else allowed.
fn program(denied: &[i64]) -> Vec<libc::sock_filter> {
    let eperm = SECCOMP_RET_ERRNO | Errno::EPERM as u32;
    let mut p = vec![
        op(BPF_LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        op(BPF_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        op(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        op(BPF_LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        op(BPF_JGE_K, 0, 1, X32_SYSCALL_BIT),
        op(BPF_RET_K, 0, 0, eperm),
    ];
    for &nr in denied {
        p.push(op(BPF_JEQ_K, 0, 1, u32::try_from(nr).unwrap_or(u32::MAX)));
        p.push(op(BPF_RET_K, 0, 0, eperm));
    }
    p.push(op(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW));
    p
}

/// Installs a seccomp filter making the `denied` system calls fail with `EPERM`, for this
/// process and everything it starts. Needs `no_new_privs` (or `CAP_SYS_ADMIN`).
pub fn deny_syscalls(denied: &[i64]) -> Result<(), SysError> {
    let filter = program(denied);
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).unwrap_or(u16::MAX),
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: PR_SET_SECCOMP with SECCOMP_MODE_FILTER reads one `sock_fprog` whose `filter`
    // points at `len` instructions; both live until the call returns (the kernel copies them).
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &raw const prog,
            0,
            0,
        )
    };
    Errno::result(r).map(drop).map_err(call("PR_SET_SECCOMP"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_checks_the_arch_then_each_denied_call() {
        let p = program(&[175, 246]);
        assert_eq!(p.len(), 6 + 2 * 2 + 1);
        assert_eq!(p[1].k, AUDIT_ARCH_X86_64);
        assert_eq!((p[6].code, p[6].k), (BPF_JEQ_K, 175));
        assert_eq!(p[7].k, SECCOMP_RET_ERRNO | 1);
        assert_eq!(p.last().map(|i| i.k), Some(SECCOMP_RET_ALLOW));
    }

    #[test]
    fn a_denied_call_fails_with_eperm_and_others_still_work() {
        // A filter set with prctl applies to the calling thread only: a thread of its own
        // keeps the test process unfiltered.
        let (denied, allowed) = std::thread::spawn(|| {
            set_no_new_privs().unwrap();
            deny_syscalls(&[libc::SYS_acct]).unwrap();
            // SAFETY: acct(NULL) takes a null pointer, meaning "turn accounting off".
            let denied = Errno::result(unsafe { libc::syscall(libc::SYS_acct, std::ptr::null::<u8>()) });
            (denied, nix::unistd::getpid())
        })
        .join()
        .unwrap();
        assert_eq!(denied, Err(Errno::EPERM));
        assert!(allowed.as_raw() > 0);
    }
}
