//! The VMM's seccomp filter (`seccompiler`): installed on every thread at once (TSYNC) after
//! the VM is set up and before any vCPU's first `KVM_RUN`, so what runs the guest can only
//! make the calls listed here. Anything else kills the whole process (SIGSYS), as in
//! Firecracker: a call not on the list is a bug or an attack, never a condition to go on
//! from. The list, by thread:
//! - vCPUs: `ioctl` with `KVM_RUN` only; the devices they drive: `pread64`/`pwrite64` and
//!   `fdatasync` (disks), `write` (the tap, the console, irqfds and kicks), `clock_gettime`
//!   (the CMOS clock).
//! - `net-rx`: `epoll_wait`/`epoll_pwait`, `epoll_ctl`, `read` (the tap and its kick),
//!   `write` (the irqfd).
//! - the console's input thread: `read` (stdin), `nanosleep`/`clock_nanosleep`.
//! - `signals`: `rt_sigtimedwait` (sigwait).
//! - the main thread at the end: `openat`, `read`, `fstat`/`statx`/`newfstatat`, `lseek`,
//!   `close` (`/proc/self/status` and `smaps`), `write` (the exit line), `exit_group`.
//! - everyone: `futex`, memory (`mmap`, `munmap`, `mremap`, `mprotect`, `madvise`, `brk`),
//!   `sched_yield`, `exit`, `rt_sigprocmask`, `rt_sigreturn`, `sigaltstack`, `getrandom`, and
//!   what a panic needs to end the process (`tgkill`, `gettid`, `getpid`); glibc's
//!   `sched_getaffinity` (a thread's first `malloc` sizes the arenas with it);
//!   `restart_syscall` (a sleep resumed after SIGSTOP/SIGCONT).
//! - a thread that starts just before the filter and runs its start-up under it (TSYNC
//!   reaches it too): `set_robust_list`, `rseq`, `prctl(PR_SET_NAME)` (its name),
//!   `sigaltstack`, `mmap`. Found with a run whose mismatch action was `Log`: the outer
//!   guest's `dmesg` listed `sched_getaffinity` from `vcpu0` and `net-rx`, and the three
//!   start-up calls from threads not yet named.
//!
//! Not allowed: creating threads or processes, opening sockets, any other `ioctl` (no new
//! vCPU, memory slot or device), `execve`, `ptrace`, ... A guest that takes over the VMM is
//! left with these calls.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// `KVM_RUN`: `_IO(KVMIO, 0x80)`.
const KVM_RUN: u64 = 0xae80;

/// Calls allowed whatever their arguments; `ioctl` is allowed for `KVM_RUN` only and `prctl`
/// for `PR_SET_NAME` only.
#[rustfmt::skip]
const ALLOWED: &[i64] = &[
    libc::SYS_read, libc::SYS_write, libc::SYS_readv, libc::SYS_writev, libc::SYS_pread64,
    libc::SYS_pwrite64, libc::SYS_fdatasync, libc::SYS_fsync, libc::SYS_openat, libc::SYS_close,
    libc::SYS_fstat, libc::SYS_statx, libc::SYS_newfstatat, libc::SYS_lseek,
    libc::SYS_epoll_wait, libc::SYS_epoll_pwait, libc::SYS_epoll_ctl,
    libc::SYS_futex, libc::SYS_sched_yield, libc::SYS_nanosleep, libc::SYS_clock_nanosleep,
    libc::SYS_clock_gettime,
    libc::SYS_mmap, libc::SYS_munmap, libc::SYS_mremap, libc::SYS_mprotect, libc::SYS_madvise, libc::SYS_brk,
    libc::SYS_rt_sigtimedwait, libc::SYS_rt_sigprocmask, libc::SYS_rt_sigreturn, libc::SYS_sigaltstack,
    libc::SYS_getrandom, libc::SYS_gettid, libc::SYS_getpid, libc::SYS_tgkill,
    libc::SYS_exit, libc::SYS_exit_group,
    libc::SYS_sched_getaffinity, libc::SYS_set_robust_list, libc::SYS_rseq, libc::SYS_restart_syscall,
];

/// The filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
#[error("the seccomp filter: {0}")]
pub struct SeccompError(String);

/// The BPF program: [`ALLOWED`], `ioctl(_, KVM_RUN, ...)`, and kill-process for the rest.
pub fn program() -> Result<BpfProgram, SeccompError> {
    let err = |e: &dyn std::fmt::Display| SeccompError(e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
    // Compared on 32 bits, as the kernel reads the request.
    let kvm_run = SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, KVM_RUN).map_err(|e| err(&e))?;
    rules.insert(
        libc::SYS_ioctl,
        vec![SeccompRule::new(vec![kvm_run]).map_err(|e| err(&e))?],
    );
    let set_name = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, libc::PR_SET_NAME as u64)
        .map_err(|e| err(&e))?;
    rules.insert(
        libc::SYS_prctl,
        vec![SeccompRule::new(vec![set_name]).map_err(|e| err(&e))?],
    );
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|e| err(&e))?;
    filter.try_into().map_err(|e: seccompiler::BackendError| err(&e))
}

/// Installs [`program`] on every thread of the process (TSYNC); sets `no_new_privs` too.
pub fn install() -> Result<(), SeccompError> {
    seccompiler::apply_filter_all_threads(&program()?).map_err(|e| SeccompError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_builds_and_lists_kvm_run() {
        let program = program().unwrap();
        assert!(program.len() > ALLOWED.len(), "one jump per call at least");
        // The KVM_RUN request appears as a comparison constant.
        assert!(program.iter().any(|insn| u64::from(insn.k) == KVM_RUN));
    }
}
