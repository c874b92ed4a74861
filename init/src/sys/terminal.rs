//! Terminals for `ramkeyctl personality console`: a fresh pseudo-terminal (or, for output
//! only, a pipe) for the zone's side, and the proxy between it and the administrator's own
//! terminal, which the zone never gets (a process left behind in the zone could otherwise
//! read what is typed into the host's shell later, or push keystrokes into it).

use std::io::IsTerminal;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};

use super::{SysError, call};

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    fd.is_terminal()
}

/// A new pseudo-terminal pair (master, slave), sized like `like` when it is a terminal.
pub fn open_pty(like: BorrowedFd<'_>) -> Result<(OwnedFd, OwnedFd), SysError> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `struct winsize`, which `size` is; on a descriptor that
    // is not a terminal it fails and `size` stays zeroed.
    let sized = unsafe { libc::ioctl(like.as_raw_fd(), libc::TIOCGWINSZ, &raw mut size) } == 0;
    let pty = nix::pty::openpty(sized.then_some(&size), None).map_err(call("openpty"))?;
    Ok((pty.master, pty.slave))
}

/// In a freshly forked child: a new session whose controlling terminal is `slave`, and
/// `slave` as standard input, output and error.
pub fn take_terminal(slave: &OwnedFd) -> Result<(), SysError> {
    nix::unistd::setsid().map_err(call("setsid"))?;
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal it from another session).
    let r = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(r).map_err(call("TIOCSCTTY"))?;
    redirect(slave, &[0, 1, 2])
}

/// Puts `fd` in place of each of this process's descriptors `targets`.
pub fn redirect(fd: &OwnedFd, targets: &[i32]) -> Result<(), SysError> {
    for &target in targets {
        // SAFETY: dup2 onto standard descriptors of this process, which it owns.
        let r = unsafe { libc::dup2(fd.as_raw_fd(), target) };
        Errno::result(r).map_err(call("dup2"))?;
    }
    Ok(())
}

/// The terminal in raw mode until dropped (then as it was).
#[derive(Debug)]
pub struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: Termios,
}

impl<'a> RawMode<'a> {
    /// Puts `fd` in raw mode: keys go to the zone's terminal as typed (ctrl-c included).
    pub fn enter(fd: BorrowedFd<'a>) -> Result<Self, SysError> {
        let saved = tcgetattr(fd).map_err(call("tcgetattr"))?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(fd, SetArg::TCSANOW, &raw).map_err(call("tcsetattr"))?;
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        let _ = tcsetattr(self.fd, SetArg::TCSANOW, &self.saved);
    }
}

/// Copies `input` (if any) to `zone` and `zone` to `output` until the zone's side (a
/// pseudo-terminal's slave, or a pipe's write end) is closed: every process holding it has
/// exited.
pub fn proxy(input: Option<BorrowedFd<'_>>, output: BorrowedFd<'_>, zone: &OwnedFd) -> Result<(), SysError> {
    let master = zone;
    let mut buf = [0u8; 4096];
    let mut input_open = input.is_some();
    loop {
        let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if let (true, Some(input)) = (input_open, input) {
            fds.push(PollFd::new(input, PollFlags::POLLIN));
        }
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(call("poll")(e)),
        }
        let zone = fds[0].revents().unwrap_or(PollFlags::empty());
        let typed = fds.get(1).and_then(PollFd::revents).unwrap_or(PollFlags::empty());
        if zone.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match nix::unistd::read(master, &mut buf) {
                // EIO: the slave side is closed.
                Ok(0) | Err(Errno::EIO) => return Ok(()),
                Ok(n) => write_all(output, &buf[..n])?,
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(e) => return Err(call("read pty")(e)),
            }
        }
        if let (true, Some(input)) = (
            typed.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR),
            input,
        ) {
            match nix::unistd::read(input, &mut buf) {
                Ok(0) | Err(Errno::EIO) => input_open = false,
                Ok(n) => write_all(master.as_fd(), &buf[..n])?,
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(e) => return Err(call("read input")(e)),
            }
        }
    }
}

fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> Result<(), SysError> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(e) => return Err(call("write")(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_carries_both_ways_and_ends_when_the_zone_side_closes() {
        let (master, slave) = open_pty(std::io::stdin().as_fd()).unwrap();
        assert!(is_terminal(slave.as_fd()));
        let (input_read, input_write) = std::io::pipe().unwrap();
        let (output_read, output_write) = std::io::pipe().unwrap();
        // No echo: what comes back is what the zone's side wrote.
        let mut raw = tcgetattr(&slave).unwrap();
        cfmakeraw(&mut raw);
        tcsetattr(&slave, SetArg::TCSANOW, &raw).unwrap();
        // The zone's side: reads one line from its terminal, answers, and closes it.
        let zone = std::thread::spawn(move || {
            let mut line = [0u8; 6];
            let mut got = 0;
            while got < line.len() {
                got += nix::unistd::read(&slave, &mut line[got..]).unwrap();
            }
            nix::unistd::write(&slave, b"zone saw ").unwrap();
            nix::unistd::write(&slave, &line).unwrap();
            drop(slave);
        });
        std::io::Write::write_all(&mut &input_write, b"hello\n").unwrap();
        proxy(Some(input_read.as_fd()), output_write.as_fd(), &master).unwrap();
        zone.join().unwrap();
        drop(output_write);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut &output_read, &mut out).unwrap();
        assert_eq!(out, "zone saw hello\n");
    }
}
