//! The thin syscall layer of PID 1: every `unsafe` block and raw syscall lives here.
//!
//! Each function turns its errno into a typed [`SysError`] (or returns the bare
//! [`Errno`] where the caller needs to branch on it, e.g. `EBUSY`, `EEXIST`).

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::kmod::ModuleInitFlags;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::reboot::RebootMode;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::time::ClockId;
use nix::unistd::Pid;

pub mod beneath;
pub mod bpf;
pub mod confine;
pub mod devices;
pub mod exit;
pub mod packet;
pub mod seccomp;
pub mod terminal;

/// A failed system call, with the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// A syscall returned an error.
    #[error("{op}: {source}")]
    Call {
        /// What was attempted, e.g. `"signalfd"`.
        op: &'static str,
        /// The errno the kernel returned.
        source: Errno,
    },
}

fn call(op: &'static str) -> impl FnOnce(Errno) -> SysError {
    move |source| SysError::Call { op, source }
}

/// `EV_KEY` event type of the Linux input layer.
pub const EV_KEY: u16 = 0x01;
/// `KEY_POWER` key code of the Linux input layer.
pub const KEY_POWER: u16 = 116;
/// Highest key code (`KEY_MAX`); the key bitmap holds `KEY_MAX + 1` bits.
const KEY_MAX: usize = 0x2ff;

// EVIOCGBIT(EV_KEY, len) = _IOC(_IOC_READ, 'E', 0x20 + EV_KEY, len).
nix::ioctl_read_buf!(eviocgbit_key, b'E', 0x20 + EV_KEY as u8, u8);

/// Seconds since the kernel started, including suspended time (`CLOCK_BOOTTIME`).
///
/// Returns zero if the clock cannot be read, which never happens on Linux >= 2.6.39.
pub fn boottime() -> Duration {
    nix::time::clock_gettime(ClockId::CLOCK_BOOTTIME)
        .map(Duration::from)
        .unwrap_or(Duration::ZERO)
}

/// Writes one whole buffer to the console (fd 2) with a single `write(2)`.
///
/// A short or failed write is ignored: there is nowhere else to report it.
pub fn write_console(bytes: &[u8]) {
    let _ignored = nix::unistd::write(std::io::stderr(), bytes);
}

/// `mount(2)`; the bare errno is returned so that the caller can tolerate `EBUSY`.
pub fn mount(source: &str, target: &Path, fstype: &str, flags: MsFlags, data: Option<&str>) -> Result<(), Errno> {
    nix::mount::mount(Some(source), target, Some(fstype), flags, data)
}

/// `umount2(2)`, lazily (`MNT_DETACH`) when `detach` is set.
pub fn umount(target: &Path, detach: bool) -> Result<(), Errno> {
    let flags = if detach {
        MntFlags::MNT_DETACH
    } else {
        MntFlags::empty()
    };
    nix::mount::umount2(target, flags)
}

/// `finit_module(2)` on an open `.ko` file with the given parameter string.
pub fn finit_module(file: &File, params: &CStr) -> Result<(), Errno> {
    nix::kmod::finit_module(file, params, ModuleInitFlags::empty())
}

/// Makes ctrl-alt-del send SIGINT to PID 1 instead of rebooting at once.
pub fn disable_ctrl_alt_del() -> Result<(), SysError> {
    nix::sys::reboot::set_cad_enabled(false).map_err(call("reboot(RB_DISABLE_CAD)"))
}

/// `reboot(2)` with the given command; only returns on failure.
pub fn reboot(mode: RebootMode) -> SysError {
    match nix::sys::reboot::reboot(mode) {
        Ok(never) => match never {},
        Err(source) => SysError::Call { op: "reboot", source },
    }
}

/// Sends `signal` to every process except PID 1 itself (`kill(-1, sig)`).
///
/// `ESRCH` (no other process) is success.
pub fn kill_all(signal: Signal) -> Result<(), SysError> {
    match nix::sys::signal::kill(Pid::from_raw(-1), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(source) => Err(SysError::Call { op: "kill", source }),
    }
}

/// Outcome of one non-blocking reaping round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Children reaped in this round.
    pub count: usize,
    /// True when no child at all is left (`ECHILD`).
    pub none_left: bool,
    /// The pid and exit of each child that exited or was killed, in reaping order.
    pub exits: Vec<(Pid, exit::Exit)>,
}

/// Reaps every exited child with `waitpid(-1, WNOHANG)` until none is ready.
pub fn reap_children() -> Reaped {
    let mut reaped = Reaped::default();
    loop {
        match nix::sys::wait::waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return reaped,
            Ok(status) => {
                reaped.count += 1;
                reaped.exits.extend(exit::Exit::from_wait(status));
            }
            Err(Errno::EINTR) => continue,
            Err(_) => {
                reaped.none_left = true;
                return reaped;
            }
        }
    }
}

/// Makes `cmd`'s child start with no blocked signals. PID 1 blocks the signals it reads from
/// its signalfd, the mask is inherited across `fork` and `exec`, and `Command` does not reset
/// it: a service would otherwise never see SIGTERM.
pub fn unblock_signals_on_exec(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between `fork` and `exec`, where only
    // async-signal-safe calls are allowed: it builds an empty `sigset_t` on the stack
    // (`sigemptyset`) and calls `pthread_sigmask`, both async-signal-safe; it allocates
    // nothing, takes no lock and touches no state shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .map_err(std::io::Error::from)
        });
    }
}

/// The uid of the process at the other end of a connected Unix socket (`SO_PEERCRED`), as
/// this process's user namespace sees it. A peer outside this process's PID namespace (its
/// pid reads 0) counts as root: for a zone's control socket, beneath the zone's `/run` and
/// mode 0600, only the host's root reaches in from outside (the readiness check, `ramkeyctl
/// personality`), and the host's root has no uid inside the zone's user namespace.
pub fn peer_uid(socket: &impl AsFd) -> Result<u32, SysError> {
    nix::sys::socket::getsockopt(socket, sockopt::PeerCredentials)
        .map(|c| if c.pid() == 0 { 0 } else { c.uid() })
        .map_err(call("getsockopt(SO_PEERCRED)"))
}

/// Flushes every filesystem buffer to disk.
pub fn sync() {
    nix::unistd::sync();
}

/// Blocks `signals` for this process and returns a non-blocking signalfd for them.
///
/// Children inherit the blocked mask: whoever spawns processes later must reset it.
pub fn signalfd(signals: &[Signal]) -> Result<SignalFd, SysError> {
    let mut mask = SigSet::empty();
    for signal in signals {
        mask.add(*signal);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(call("sigprocmask"))?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(call("signalfd"))
}

/// Reads the next pending signal number from a signalfd, if any.
pub fn read_signal(fd: &SignalFd) -> Result<Option<i32>, SysError> {
    fd.read_signal()
        .map(|info| info.map(|info| info.ssi_signo as i32))
        .map_err(call("read(signalfd)"))
}

/// Opens a non-blocking `NETLINK_KOBJECT_UEVENT` socket bound to the kernel's group.
pub fn uevent_socket() -> Result<OwnedFd, SysError> {
    let fd = nix::sys::socket::socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::NetlinkKObjectUEvent,
    )
    .map_err(call("socket(NETLINK_KOBJECT_UEVENT)"))?;
    // A large buffer keeps the burst of uevents sent during coldplug; failure is harmless.
    let _ignored = setsockopt(&fd, sockopt::RcvBufForce, &(4 << 20));
    nix::sys::socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 1)).map_err(call("bind(NETLINK_KOBJECT_UEVENT)"))?;
    Ok(fd)
}

/// Receives one datagram; `Ok(None)` when nothing is pending.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Option<usize>, Errno> {
    match nix::sys::socket::recv(fd.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
        Ok(n) => Ok(Some(n)),
        Err(Errno::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens a `NETLINK_ROUTE` socket whose receives time out after `timeout`.
pub fn route_socket(timeout: Duration) -> Result<OwnedFd, SysError> {
    let fd = nix::sys::socket::socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(call("socket(NETLINK_ROUTE)"))?;
    let micros = i64::try_from(timeout.as_micros()).unwrap_or(i64::MAX);
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::microseconds(micros))
        .map_err(call("setsockopt(SO_RCVTIMEO)"))?;
    nix::sys::socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(call("bind(NETLINK_ROUTE)"))?;
    Ok(fd)
}

/// Sends one datagram on a connected or netlink socket.
pub fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> Result<usize, Errno> {
    nix::sys::socket::send(fd.as_raw_fd(), buf, MsgFlags::empty())
}

/// Receives one datagram, blocking up to the socket's receive timeout (`EAGAIN` then).
pub fn recv_wait(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        match nix::sys::socket::recv(fd.as_raw_fd(), buf, MsgFlags::empty()) {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// A UDP socket on `0.0.0.0:68` bound to interface `ifname`, allowed to broadcast: what a
/// DHCP client needs before the interface has an address.
pub fn dhcp_socket(ifname: &str) -> Result<std::net::UdpSocket, SysError> {
    let fd = nix::sys::socket::socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .map_err(call("socket(AF_INET, SOCK_DGRAM)"))?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(call("setsockopt(SO_REUSEADDR)"))?;
    setsockopt(&fd, sockopt::Broadcast, &true).map_err(call("setsockopt(SO_BROADCAST)"))?;
    setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(ifname))
        .map_err(call("setsockopt(SO_BINDTODEVICE)"))?;
    let any = nix::sys::socket::SockaddrIn::new(0, 0, 0, 0, 68);
    nix::sys::socket::bind(fd.as_raw_fd(), &any).map_err(call("bind(0.0.0.0:68)"))?;
    Ok(std::net::UdpSocket::from(fd))
}

/// Reads from a non-blocking fd; `Ok(None)` when nothing is pending.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Option<usize>, Errno> {
    match nix::unistd::read(fd, buf) {
        Ok(n) => Ok(Some(n)),
        Err(Errno::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// True when the evdev device behind `fd` can report `code` as an `EV_KEY` event.
pub fn evdev_has_key(fd: &impl AsFd, code: u16) -> Result<bool, SysError> {
    let mut bits = [0u8; KEY_MAX / 8 + 1];
    // SAFETY: EVIOCGBIT(EV_KEY, len) writes at most `len` bytes into `bits`; the macro
    // encodes `len` as `size_of_val(bits)`, and `bits` is a live, exclusively borrowed
    // buffer for the whole call. The fd is borrowed, so it stays open during the call.
    unsafe { eviocgbit_key(fd.as_fd().as_raw_fd(), &mut bits) }.map_err(call("EVIOCGBIT"))?;
    let code = usize::from(code);
    Ok(bits.get(code / 8).is_some_and(|byte| byte & (1 << (code % 8)) != 0))
}

/// Waits for any signal, forever; the last resort when the event loop cannot start.
pub fn wait_forever() -> ! {
    loop {
        // Reap what we can, then sleep: PID 1 must keep collecting zombies.
        let _reaped = reap_children();
        std::thread::sleep(Duration::from_secs(1));
    }
}
