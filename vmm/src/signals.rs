//! SIGTERM and SIGINT ask the guest to shut down. [`block`] blocks both in the calling
//! thread before any other thread exists, so every thread inherits the mask and none is
//! interrupted; [`spawn`] then waits for them with `sigwait` on a thread of its own and calls
//! the handler for each (the VMM types Ctrl-Alt-Del). A signal never stops the VMM itself:
//! the guest does, by powering off; what to do with a guest that does not answer (SIGKILL
//! after a while) is the host's business.

use std::thread::JoinHandle;

/// The signals that ask the guest to shut down.
const SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

fn set() -> libc::sigset_t {
    // SAFETY: `sigset_t` is plain data; sigemptyset initialises it before any use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t; the signal numbers are valid,
    // so neither call can fail.
    unsafe {
        libc::sigemptyset(&mut set);
        for signal in SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
    }
    set
}

/// Blocks SIGTERM and SIGINT in the calling thread (and the threads it starts from now on).
pub fn block() -> std::io::Result<()> {
    let set = set();
    // SAFETY: `set` is an initialised sigset_t that outlives the call; the old mask is not
    // asked for (null). pthread_sigmask returns an error number, checked.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    match rc {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

/// Calls `handler` with each SIGTERM or SIGINT, on a thread `signals` (after [`block`]).
pub fn spawn<F: FnMut(libc::c_int) + Send + 'static>(mut handler: F) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let set = set();
        loop {
            let mut signal: libc::c_int = 0;
            // SAFETY: `set` and `signal` are valid and outlive the call; sigwait writes one
            // signal number into `signal` and returns an error number, checked.
            match unsafe { libc::sigwait(&set, &mut signal) } {
                0 => handler(signal),
                // Only EINVAL is possible (a bad set): nothing to wait for then.
                _ => return,
            }
        }
    })
}

/// The signal's name, for the log line.
pub fn name(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_sigterm_reaches_the_handler_not_the_default_action() {
        use std::os::unix::thread::JoinHandleExt;
        let (tx, rx) = std::sync::mpsc::channel();
        // In a thread of its own, so the test harness's other threads keep their mask; the
        // signal goes to the signals thread alone (a process-wide one would reach them).
        let waiter = std::thread::spawn(move || {
            block().unwrap();
            spawn(move |signal| tx.send(signal).unwrap()).unwrap()
        })
        .join()
        .unwrap();
        // SAFETY: the thread is alive (it loops in sigwait) and has SIGTERM blocked, so the
        // signal stays pending until its sigwait takes it; no memory is involved.
        assert_eq!(unsafe { libc::pthread_kill(waiter.as_pthread_t(), libc::SIGTERM) }, 0);
        let got = rx.recv_timeout(std::time::Duration::from_secs(5));
        assert_eq!(got, Ok(libc::SIGTERM));
        assert_eq!(name(libc::SIGINT), "SIGINT");
    }
}
