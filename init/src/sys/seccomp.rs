//! The seccomp filter every process of a zone runs under: an allow-list, modelled on
//! Docker's default profile (moby's `profiles/seccomp/default.json`) for x86-64, built with
//! `seccompiler`.
//!
//! Policy:
//! - x86-64 only. A call made with another architecture's convention (`int 0x80`, i.e. the
//!   32-bit ABI) kills the process (seccompiler's arch check); x32 calls (numbers with bit 30
//!   set) match no rule and fail with `EPERM`.
//! - Anything not allowed fails with `EPERM`: what no container needs (modules, `kexec`,
//!   `reboot`, swap, `acct`, setting the clock, `iopl`/`ioperm`, `bpf`, keyrings, `syslog`,
//!   `perf_event_open`, `userfaultfd`, NUMA policy, `quotactl`, `vhangup`, `uselib`,
//!   `lookup_dcookie`, `nfsservctl`, `fanotify_init`, `memfd_secret`, the LSM calls, file
//!   handles), whatever reads or changes another process (`ptrace`, `process_vm_*`, `kcmp`,
//!   `pidfd_getfd`, `process_madvise`), `io_uring` (which bypasses this filter), and every way
//!   to new namespaces or another root: `mount`, `umount2`, `pivot_root`, `chroot`, `unshare`,
//!   `setns` and the new mount API. Calls newer than this list fail with `EPERM` too, not
//!   `ENOSYS`, until they are added here.
//! - Allowed: Docker's default list less the calls refused above (Docker also allows
//!   `adjtimex`, `clock_adjtime`, `name_to_handle_at`, `memfd_secret`), plus `sethostname` and
//!   `setdomainname`: the UTS namespace is the zone's own. That is what an ordinary service and
//!   the zone's PID 1 need: files, sockets (netlink and packet too: the kernel checks
//!   `CAP_NET_RAW`), signals and signalfd, timers, poll/epoll, futexes, `fork`/`execve`/`wait*`,
//!   the setuid family, `capset`, `prctl`, System V IPC. Granting a capability to a zone does
//!   not re-allow a call refused here.
//! - Allowed with a check of their arguments:
//!   - `clone` only without namespace flags (`CLONE_NEW*`): Docker's masked-equality test on
//!     the flags. The kernel reads only their low 32 bits, and so does the test.
//!   - `ioctl` except `TIOCSTI`, which pushes input into a terminal; compared on 32 bits like
//!     the kernel, so high bits set in the request cannot slip it through.
//!   - `socket` except `AF_ALG` (the kernel's crypto API) and `AF_VSOCK` (a channel to the
//!     hypervisor), as in Docker's current profile.
//!   - `personality` only with Docker's values: `PER_LINUX`, `PER_LINUX32`, `UNAME26`, both,
//!     and `0xffffffff` (query); no `ADDR_NO_RANDOMIZE` nor `READ_IMPLIES_EXEC`.
//! - `clone3` fails with `ENOSYS`, not `EPERM`: its flags are behind a pointer, out of a
//!   filter's reach, and on `ENOSYS` glibc (threads, `posix_spawn`) falls back to `clone`.
//!   A `seccompiler` filter has one action on match and one on mismatch, so this is a second,
//!   tiny filter installed after the allow-list (which refuses `clone3` with `EPERM` by
//!   itself): among stacked filters the kernel takes the strictest action, and between two
//!   errnos the one of the filter installed last.

use std::collections::BTreeMap;

use nix::errno::Errno;
use seccompiler::{
    BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::SysError;

// x86-64 numbers of calls the libc crate does not name yet (the kernel's `syscall_64.tbl`).
const SYS_IO_PGETEVENTS: i64 = 333;
const SYS_URETPROBE: i64 = 335;
const SYS_CACHESTAT: i64 = 451;
const SYS_MAP_SHADOW_STACK: i64 = 453;
const SYS_FUTEX_WAKE: i64 = 454;
const SYS_FUTEX_WAIT: i64 = 455;
const SYS_FUTEX_REQUEUE: i64 = 456;
const SYS_STATMOUNT: i64 = 457;
const SYS_LISTMOUNT: i64 = 458;
const SYS_SETXATTRAT: i64 = 463;
const SYS_GETXATTRAT: i64 = 464;
const SYS_LISTXATTRAT: i64 = 465;
const SYS_REMOVEXATTRAT: i64 = 466;

/// Calls allowed whatever their arguments, by topic. `clone`, `ioctl`, `socket` and
/// `personality` are allowed with conditions (see [`conditional_rules`]).
#[rustfmt::skip]
const ALLOWED: &[i64] = &[
    // Reading and writing files and descriptors.
    libc::SYS_read, libc::SYS_write, libc::SYS_open, libc::SYS_openat, libc::SYS_openat2, libc::SYS_creat,
    libc::SYS_close, libc::SYS_close_range, libc::SYS_lseek, libc::SYS_pread64, libc::SYS_pwrite64,
    libc::SYS_readv, libc::SYS_writev, libc::SYS_preadv, libc::SYS_pwritev, libc::SYS_preadv2,
    libc::SYS_pwritev2, libc::SYS_dup, libc::SYS_dup2, libc::SYS_dup3, libc::SYS_fcntl, libc::SYS_flock,
    libc::SYS_fsync, libc::SYS_fdatasync, libc::SYS_sync, libc::SYS_syncfs, libc::SYS_sync_file_range,
    libc::SYS_fallocate, libc::SYS_fadvise64, libc::SYS_readahead, libc::SYS_ftruncate, libc::SYS_truncate,
    libc::SYS_sendfile, libc::SYS_splice, libc::SYS_tee, libc::SYS_vmsplice, libc::SYS_copy_file_range,
    SYS_CACHESTAT,
    // Metadata, directories, links, ownership and modes.
    libc::SYS_stat, libc::SYS_fstat, libc::SYS_lstat, libc::SYS_newfstatat, libc::SYS_statx,
    libc::SYS_statfs, libc::SYS_fstatfs, libc::SYS_access, libc::SYS_faccessat, libc::SYS_faccessat2,
    libc::SYS_getcwd, libc::SYS_chdir, libc::SYS_fchdir, libc::SYS_getdents, libc::SYS_getdents64,
    libc::SYS_mkdir, libc::SYS_mkdirat, libc::SYS_mknod, libc::SYS_mknodat, libc::SYS_rmdir,
    libc::SYS_unlink, libc::SYS_unlinkat, libc::SYS_link, libc::SYS_linkat, libc::SYS_symlink,
    libc::SYS_symlinkat, libc::SYS_rename, libc::SYS_renameat, libc::SYS_renameat2, libc::SYS_readlink,
    libc::SYS_readlinkat, libc::SYS_umask, libc::SYS_chmod, libc::SYS_fchmod, libc::SYS_fchmodat,
    libc::SYS_fchmodat2, libc::SYS_chown, libc::SYS_fchown, libc::SYS_lchown, libc::SYS_fchownat,
    libc::SYS_utime, libc::SYS_utimes, libc::SYS_utimensat, libc::SYS_futimesat, SYS_STATMOUNT,
    SYS_LISTMOUNT,
    // Extended attributes.
    libc::SYS_getxattr, libc::SYS_lgetxattr, libc::SYS_fgetxattr, libc::SYS_setxattr, libc::SYS_lsetxattr,
    libc::SYS_fsetxattr, libc::SYS_listxattr, libc::SYS_llistxattr, libc::SYS_flistxattr,
    libc::SYS_removexattr, libc::SYS_lremovexattr, libc::SYS_fremovexattr, SYS_GETXATTRAT, SYS_SETXATTRAT,
    SYS_LISTXATTRAT, SYS_REMOVEXATTRAT,
    // Waiting for events: poll, epoll, eventfd, pipes, inotify.
    libc::SYS_poll, libc::SYS_ppoll, libc::SYS_select, libc::SYS_pselect6, libc::SYS_epoll_create,
    libc::SYS_epoll_create1, libc::SYS_epoll_ctl, libc::SYS_epoll_ctl_old, libc::SYS_epoll_wait,
    libc::SYS_epoll_wait_old, libc::SYS_epoll_pwait, libc::SYS_epoll_pwait2, libc::SYS_eventfd,
    libc::SYS_eventfd2, libc::SYS_pipe, libc::SYS_pipe2, libc::SYS_inotify_init, libc::SYS_inotify_init1,
    libc::SYS_inotify_add_watch, libc::SYS_inotify_rm_watch, libc::SYS_fanotify_mark,
    // Clocks (read only), sleeps and timers.
    libc::SYS_clock_gettime, libc::SYS_clock_getres, libc::SYS_clock_nanosleep, libc::SYS_nanosleep,
    libc::SYS_gettimeofday, libc::SYS_time, libc::SYS_times, libc::SYS_alarm, libc::SYS_getitimer,
    libc::SYS_setitimer, libc::SYS_timer_create, libc::SYS_timer_delete, libc::SYS_timer_getoverrun,
    libc::SYS_timer_gettime, libc::SYS_timer_settime, libc::SYS_timerfd_create, libc::SYS_timerfd_gettime,
    libc::SYS_timerfd_settime,
    // Signals.
    libc::SYS_rt_sigaction, libc::SYS_rt_sigprocmask, libc::SYS_rt_sigpending, libc::SYS_rt_sigqueueinfo,
    libc::SYS_rt_sigreturn, libc::SYS_rt_sigsuspend, libc::SYS_rt_sigtimedwait, libc::SYS_rt_tgsigqueueinfo,
    libc::SYS_sigaltstack, libc::SYS_signalfd, libc::SYS_signalfd4, libc::SYS_kill, libc::SYS_tkill,
    libc::SYS_tgkill, libc::SYS_pause, libc::SYS_restart_syscall, libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
    // Processes and threads (`clone` is conditional, `clone3` answers ENOSYS).
    libc::SYS_fork, libc::SYS_vfork, libc::SYS_execve, libc::SYS_execveat, libc::SYS_exit,
    libc::SYS_exit_group, libc::SYS_wait4, libc::SYS_waitid, libc::SYS_set_tid_address,
    libc::SYS_set_robust_list, libc::SYS_get_robust_list, libc::SYS_arch_prctl, libc::SYS_modify_ldt,
    libc::SYS_get_thread_area, libc::SYS_set_thread_area, libc::SYS_rseq, libc::SYS_prctl,
    libc::SYS_seccomp, libc::SYS_landlock_create_ruleset, libc::SYS_landlock_add_rule,
    libc::SYS_landlock_restrict_self, SYS_URETPROBE, SYS_MAP_SHADOW_STACK,
    // Identities and credentials (the capability bounding set limits what they can gain).
    libc::SYS_getpid, libc::SYS_getppid, libc::SYS_gettid, libc::SYS_getpgid, libc::SYS_getpgrp,
    libc::SYS_setpgid, libc::SYS_getsid, libc::SYS_setsid, libc::SYS_getuid, libc::SYS_geteuid,
    libc::SYS_getgid, libc::SYS_getegid, libc::SYS_getresuid, libc::SYS_getresgid, libc::SYS_getgroups,
    libc::SYS_setuid, libc::SYS_setgid, libc::SYS_setreuid, libc::SYS_setregid, libc::SYS_setresuid,
    libc::SYS_setresgid, libc::SYS_setfsuid, libc::SYS_setfsgid, libc::SYS_setgroups, libc::SYS_capget,
    libc::SYS_capset,
    // Limits, scheduling, system information; the zone's own host and domain name.
    libc::SYS_getrlimit, libc::SYS_setrlimit, libc::SYS_prlimit64, libc::SYS_getrusage,
    libc::SYS_getpriority, libc::SYS_setpriority, libc::SYS_sched_yield, libc::SYS_sched_getaffinity,
    libc::SYS_sched_setaffinity, libc::SYS_sched_getattr, libc::SYS_sched_setattr,
    libc::SYS_sched_getparam, libc::SYS_sched_setparam, libc::SYS_sched_getscheduler,
    libc::SYS_sched_setscheduler, libc::SYS_sched_get_priority_max, libc::SYS_sched_get_priority_min,
    libc::SYS_sched_rr_get_interval, libc::SYS_ioprio_get, libc::SYS_ioprio_set, libc::SYS_getcpu,
    libc::SYS_sysinfo, libc::SYS_uname, libc::SYS_getrandom, libc::SYS_membarrier, libc::SYS_sethostname,
    libc::SYS_setdomainname,
    // Memory.
    libc::SYS_brk, libc::SYS_mmap, libc::SYS_munmap, libc::SYS_mremap, libc::SYS_mprotect,
    libc::SYS_madvise, libc::SYS_mincore, libc::SYS_msync, libc::SYS_mlock, libc::SYS_mlock2,
    libc::SYS_munlock, libc::SYS_mlockall, libc::SYS_munlockall, libc::SYS_memfd_create,
    libc::SYS_remap_file_pages, libc::SYS_pkey_alloc, libc::SYS_pkey_free, libc::SYS_pkey_mprotect,
    libc::SYS_process_mrelease, libc::SYS_mseal,
    // Futexes and asynchronous I/O (not io_uring).
    libc::SYS_futex, libc::SYS_futex_waitv, SYS_FUTEX_WAKE, SYS_FUTEX_WAIT, SYS_FUTEX_REQUEUE,
    libc::SYS_io_setup, libc::SYS_io_destroy, libc::SYS_io_submit, libc::SYS_io_cancel,
    libc::SYS_io_getevents, SYS_IO_PGETEVENTS,
    // System V IPC and POSIX message queues (the IPC namespace is the zone's).
    libc::SYS_shmget, libc::SYS_shmat, libc::SYS_shmdt, libc::SYS_shmctl, libc::SYS_semget,
    libc::SYS_semop, libc::SYS_semtimedop, libc::SYS_semctl, libc::SYS_msgget, libc::SYS_msgsnd,
    libc::SYS_msgrcv, libc::SYS_msgctl, libc::SYS_mq_open, libc::SYS_mq_unlink, libc::SYS_mq_timedsend,
    libc::SYS_mq_timedreceive, libc::SYS_mq_notify, libc::SYS_mq_getsetattr,
    // Sockets (`socket` itself is conditional).
    libc::SYS_socketpair, libc::SYS_bind, libc::SYS_listen, libc::SYS_accept, libc::SYS_accept4,
    libc::SYS_connect, libc::SYS_getsockname, libc::SYS_getpeername, libc::SYS_getsockopt,
    libc::SYS_setsockopt, libc::SYS_sendto, libc::SYS_recvfrom, libc::SYS_sendmsg, libc::SYS_recvmsg,
    libc::SYS_sendmmsg, libc::SYS_recvmmsg, libc::SYS_shutdown,
];

/// Every namespace flag of `clone(2)`. `CLONE_NEWTIME` (0x80) lies in the exit-signal byte of
/// `clone`'s flags (only `clone3` and `unshare` take it): refusing it there only refuses exit
/// signals above 127, which are not signals.
const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWTIME) as u64;

/// `personality(2)` values allowed, as in Docker: `PER_LINUX`, `PER_LINUX32`, `UNAME26`,
/// `PER_LINUX32 | UNAME26`, and `0xffffffff`, which only reads the current persona.
const PERSONALITIES: &[u64] = &[0, 0x0008, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// Socket families refused: `AF_ALG` and `AF_VSOCK`.
const REFUSED_FAMILIES: &[libc::c_int] = &[libc::AF_ALG, libc::AF_VSOCK];

/// Installs the zone filter on every thread of the calling process (TSYNC), for it and
/// everything it starts. Needs `no_new_privs` to be set first.
///
/// (`seccompiler` sets `no_new_privs` itself as well before installing.) Two programs are
/// installed, the allow-list and then the `clone3` one, as the module documentation says.
pub fn confine_zone() -> Result<(), super::SysError> {
    for program in programs()? {
        seccompiler::apply_filter_all_threads(&program).map_err(install_error)?;
    }
    Ok(())
}

/// The zone's BPF programs, in the order they must be installed: the allow-list, then the
/// filter answering `ENOSYS` to `clone3`.
fn programs() -> Result<Vec<BpfProgram>, SysError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
    rules.extend(conditional_rules()?);
    let allow_list = SeccompFilter::new(
        rules,
        SeccompAction::Errno(Errno::EPERM as u32),
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(build_error)?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(Errno::ENOSYS as u32),
        TargetArch::x86_64,
    )
    .map_err(build_error)?;
    Ok(vec![
        allow_list.try_into().map_err(build_error)?,
        clone3.try_into().map_err(build_error)?,
    ])
}

/// The calls allowed only with some arguments; a call matching none of its rules gets `EPERM`.
fn conditional_rules() -> Result<Vec<(i64, Vec<SeccompRule>)>, SysError> {
    let clone = vec![rule(&[(0, SeccompCmpOp::MaskedEq(NAMESPACE_FLAGS), 0)])?];
    let ioctl = vec![rule(&[(1, SeccompCmpOp::Ne, libc::TIOCSTI)])?];
    let families: Vec<_> = REFUSED_FAMILIES
        .iter()
        .map(|&family| (0, SeccompCmpOp::Ne, family as u64))
        .collect();
    let socket = vec![rule(&families)?];
    let personality = PERSONALITIES
        .iter()
        .map(|&value| rule(&[(0, SeccompCmpOp::Eq, value)]))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(vec![
        (libc::SYS_clone, clone),
        (libc::SYS_ioctl, ioctl),
        (libc::SYS_socket, socket),
        (libc::SYS_personality, personality),
    ])
}

/// A rule matching when every `(argument, comparison, value)` holds, each compared on the low
/// 32 bits of the argument: every argument checked here is an `int` or `unsigned int` to the
/// kernel (for `clone`, the kernel keeps only the low 32 bits of the flags).
fn rule(conditions: &[(u8, SeccompCmpOp, u64)]) -> Result<SeccompRule, SysError> {
    let conditions = conditions
        .iter()
        .map(|(arg, op, value)| SeccompCondition::new(*arg, SeccompCmpArgLen::Dword, op.clone(), *value))
        .collect::<Result<Vec<_>, _>>()
        .map_err(build_error)?;
    SeccompRule::new(conditions).map_err(build_error)
}

/// A filter that does not compile: a mistake in the tables above (`seccompiler` gives no errno).
fn build_error(e: BackendError) -> SysError {
    let op = match e {
        BackendError::FilterTooLarge(_) => "zone seccomp filter: too many BPF instructions",
        _ => "zone seccomp filter: invalid rule",
    };
    SysError::Call {
        op,
        source: Errno::EINVAL,
    }
}

/// A filter that could not be installed.
fn install_error(e: seccompiler::Error) -> SysError {
    let errno = |e: &std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EINVAL));
    match e {
        seccompiler::Error::Backend(e) => build_error(e),
        seccompiler::Error::Prctl(e) => SysError::Call {
            op: "prctl(PR_SET_NO_NEW_PRIVS)",
            source: errno(&e),
        },
        seccompiler::Error::Seccomp(e) => SysError::Call {
            op: "seccomp(SECCOMP_SET_MODE_FILTER, TSYNC)",
            source: errno(&e),
        },
        // The kernel names a thread that has a filter of its own and cannot be synchronised
        // (what SECCOMP_FILTER_FLAG_TSYNC_ESRCH reports as ESRCH).
        seccompiler::Error::ThreadSync(_) => SysError::Call {
            op: "seccomp TSYNC: a thread has a filter of its own",
            source: Errno::ESRCH,
        },
        _ => SysError::Call {
            op: "zone seccomp filter: empty program",
            source: Errno::EINVAL,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::fd::{AsRawFd, OwnedFd};

    /// Runs `f` in a new thread under the zone's filters, installed on that thread only (no
    /// TSYNC), so the test process stays unfiltered.
    fn confined<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(|| {
            for program in programs().unwrap() {
                seccompiler::apply_filter(&program).unwrap();
            }
            f()
        })
        .join()
        .unwrap()
    }

    /// A raw syscall's result: the errno on failure.
    fn result(r: libc::c_long) -> Result<libc::c_long, Errno> {
        Errno::result(r)
    }

    /// The raw `clone` syscall with `flags`, like `fork` (no new stack). Should it succeed,
    /// the child exits at once and the parent reaps it.
    fn raw_clone(flags: libc::c_int) -> Result<libc::c_long, Errno> {
        // SAFETY: clone without CLONE_VM and with a null stack is `fork`: the child gets a
        // copy of the address space and goes on on its copy of this stack.
        let r = unsafe { libc::syscall(libc::SYS_clone, flags as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
        if r == 0 {
            // SAFETY: in the child (a copy with only this thread), `_exit` is
            // async-signal-safe and runs no destructor nor atexit handler.
            unsafe { libc::_exit(0) };
        }
        if r > 0 {
            let _reaped = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(r as i32), None);
        }
        result(r)
    }

    fn ioctl(fd: &OwnedFd, request: u64, arg: *mut libc::c_int) -> Result<libc::c_long, Errno> {
        // SAFETY: the requests used here read or write at most one int behind `arg`, which
        // points at a live int (or is unused); `fd` is open for the whole call.
        result(unsafe { libc::syscall(libc::SYS_ioctl, fd.as_raw_fd(), request, arg) })
    }

    #[test]
    fn the_filters_compile_to_bpf() {
        let programs = programs().unwrap();
        assert_eq!(programs.len(), 2);
        assert!(programs.iter().all(|p| !p.is_empty() && p.len() < 4096));
        // Each starts with seccompiler's arch check: load seccomp_data.arch, compare it.
        assert!(programs.iter().all(|p| p[1].k == 0xC000_003E));
    }

    #[test]
    fn the_tables_have_no_duplicate_and_no_refused_call() {
        let mut seen = std::collections::HashSet::new();
        let conditional = conditional_rules().unwrap();
        for nr in ALLOWED.iter().chain(conditional.iter().map(|(nr, _)| nr)) {
            assert!(seen.insert(*nr), "syscall {nr} listed twice");
        }
        #[rustfmt::skip]
        let refused = [
            libc::SYS_mount, libc::SYS_umount2, libc::SYS_pivot_root, libc::SYS_chroot, libc::SYS_unshare,
            libc::SYS_setns, libc::SYS_fsopen, libc::SYS_fsconfig, libc::SYS_fsmount, libc::SYS_fspick,
            libc::SYS_move_mount, libc::SYS_open_tree, libc::SYS_mount_setattr, libc::SYS_init_module,
            libc::SYS_finit_module, libc::SYS_delete_module, libc::SYS_kexec_load, libc::SYS_kexec_file_load,
            libc::SYS_reboot, libc::SYS_swapon, libc::SYS_swapoff, libc::SYS_acct, libc::SYS_settimeofday,
            libc::SYS_clock_settime, libc::SYS_clock_adjtime, libc::SYS_adjtimex, libc::SYS_iopl,
            libc::SYS_ioperm, libc::SYS_open_by_handle_at, libc::SYS_name_to_handle_at, libc::SYS_bpf,
            libc::SYS_add_key, libc::SYS_request_key, libc::SYS_keyctl, libc::SYS_syslog,
            libc::SYS_io_uring_setup, libc::SYS_io_uring_enter, libc::SYS_io_uring_register,
            libc::SYS_userfaultfd, libc::SYS_perf_event_open, libc::SYS_ptrace, libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev, libc::SYS_kcmp, libc::SYS_lookup_dcookie, libc::SYS_quotactl,
            libc::SYS_quotactl_fd, libc::SYS_nfsservctl, libc::SYS_vhangup, libc::SYS_uselib, libc::SYS_mbind,
            libc::SYS_set_mempolicy, libc::SYS_get_mempolicy, libc::SYS_move_pages, libc::SYS_migrate_pages,
            libc::SYS_pidfd_getfd, libc::SYS_process_madvise, libc::SYS_fanotify_init, libc::SYS_memfd_secret,
            libc::SYS_clone3,
        ];
        for nr in refused {
            assert!(!seen.contains(&nr), "refused syscall {nr} is allowed");
        }
    }

    #[test]
    fn no_new_namespace_can_be_made() {
        let (unshare, clone_user, clone_net, clone3) = confined(|| {
            let unshare = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER);
            let clone_user = raw_clone(libc::CLONE_NEWUSER | libc::SIGCHLD);
            let clone_net = raw_clone(libc::CLONE_NEWNET | libc::SIGCHLD);
            // SAFETY: a null `clone_args` of size 0; without the filter the kernel refuses
            // it with EINVAL, so this can never fork.
            let clone3 = result(unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) });
            (unshare, clone_user, clone_net, clone3)
        });
        assert_eq!(unshare, Err(Errno::EPERM));
        assert_eq!(clone_user, Err(Errno::EPERM));
        assert_eq!(clone_net, Err(Errno::EPERM));
        assert_eq!(clone3, Err(Errno::ENOSYS));
    }

    #[test]
    fn mounting_is_refused() {
        let (mount, umount, fsopen, chroot) = confined(|| {
            // SAFETY: null paths: without the filter the kernel fails with EFAULT, mounting
            // and changing nothing.
            unsafe {
                let null = std::ptr::null::<libc::c_char>();
                (
                    result(libc::mount(null, null, null, 0, std::ptr::null()).into()),
                    result(libc::umount2(null, 0).into()),
                    result(libc::syscall(libc::SYS_fsopen, null, 0)),
                    result(libc::chroot(null).into()),
                )
            }
        });
        assert_eq!(mount, Err(Errno::EPERM));
        assert_eq!(umount, Err(Errno::EPERM));
        assert_eq!(fsopen, Err(Errno::EPERM));
        assert_eq!(chroot, Err(Errno::EPERM));
    }

    #[test]
    fn tiocsti_is_refused_and_other_ioctls_work() {
        let (sti, sti_high_bits, fionread) = confined(|| {
            // /dev/null is no terminal: even unfiltered, TIOCSTI would fail there (ENOTTY).
            let null = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
            let mut byte = libc::c_int::from(b'x');
            let sti = ioctl(&null, libc::TIOCSTI, &raw mut byte);
            let sti_high_bits = ioctl(&null, libc::TIOCSTI | 1 << 32, &raw mut byte);
            let (reader, _writer) = nix::unistd::pipe().unwrap();
            let mut pending: libc::c_int = -1;
            let fionread = ioctl(&reader, libc::FIONREAD, &raw mut pending).map(|_| pending);
            (sti, sti_high_bits, fionread)
        });
        assert_eq!(sti, Err(Errno::EPERM));
        assert_eq!(sti_high_bits, Err(Errno::EPERM));
        assert_eq!(fionread, Ok(0));
    }

    #[test]
    fn unlisted_x32_and_odd_personality_calls_fail_with_eperm() {
        let (kcmp, x32, query, no_aslr) = confined(|| {
            let pid = libc::c_long::from(nix::unistd::getpid().as_raw());
            // SAFETY: kcmp compares two processes' file tables (KCMP_FILES = 2), reading
            // nothing from memory; the x32 getpid takes no argument; personality takes a number.
            unsafe {
                (
                    result(libc::syscall(libc::SYS_kcmp, pid, pid, 2, 0, 0)),
                    result(libc::syscall(libc::SYS_getpid | 0x4000_0000)),
                    result(libc::personality(0xffff_ffff).into()),
                    result(libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong).into()),
                )
            }
        });
        assert_eq!(kcmp, Err(Errno::EPERM));
        assert_eq!(x32, Err(Errno::EPERM));
        assert!(query.is_ok(), "{query:?}");
        assert_eq!(no_aslr, Err(Errno::EPERM));
    }

    #[test]
    fn vsock_and_alg_sockets_are_refused_others_made() {
        use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
        let (vsock, alg, netlink, unix) = confined(|| {
            let flags = SockFlag::SOCK_CLOEXEC;
            (
                socket(AddressFamily::Vsock, SockType::Stream, flags, None).map(drop),
                socket(AddressFamily::Alg, SockType::SeqPacket, flags, None).map(drop),
                socket(AddressFamily::Netlink, SockType::Raw, flags, SockProtocol::NetlinkRoute).map(drop),
                nix::sys::socket::socketpair(AddressFamily::Unix, SockType::Stream, None, flags).map(drop),
            )
        });
        assert_eq!(vsock, Err(Errno::EPERM));
        assert_eq!(alg, Err(Errno::EPERM));
        assert_eq!(netlink, Ok(()));
        assert_eq!(unix, Ok(()));
    }

    #[test]
    fn ordinary_calls_still_work() {
        let outcome = confined(|| -> Result<(), String> {
            if nix::unistd::getpid().as_raw() <= 0 {
                return Err("getpid".into());
            }
            // This thread's status: the filter is really on (mode 2).
            let status = std::fs::read_to_string("/proc/thread-self/status").map_err(|e| e.to_string())?;
            if !status.lines().any(|l| l == "Seccomp:\t2") {
                return Err(format!("no filter on the thread:\n{status}"));
            }
            let (reader, writer) = nix::unistd::pipe().map_err(|e| e.to_string())?;
            nix::unistd::write(&writer, b"ok").map_err(|e| e.to_string())?;
            let mut buf = [0u8; 2];
            nix::unistd::read(&reader, &mut buf).map_err(|e| e.to_string())?;
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            udp.send_to(b"hi", udp.local_addr().map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            let mut got = [0u8; 2];
            udp.recv_from(&mut got).map_err(|e| e.to_string())?;
            // Threads and posix_spawn try clone3 first and must fall back to clone.
            let thread = std::thread::spawn(|| 7).join().map_err(|_| "thread".to_string())?;
            let child = std::process::Command::new("/bin/true")
                .status()
                .map_err(|e| format!("spawn /bin/true: {e}"))?;
            if !child.success() || thread != 7 || &buf != b"ok" || &got != b"hi" {
                return Err(format!("{child:?} {thread} {buf:?} {got:?}"));
            }
            Ok(())
        });
        assert!(outcome.is_ok(), "{outcome:?}");
    }
}
