//! The VM's serial console, relayed by its launcher: what the guest writes goes to the
//! zone's log (the launcher's standard output, which the supervisor keeps), to the
//! administrator attached with `ramkeyctl personality console NAME` (through a socket in the
//! zone's run directory, host root's only), and to a backlog each new attachment gets
//! first; what the administrator types goes to the guest's serial port. The guest's
//! readiness lines ([`super::READY_LINE`]) are noted on the way for `ramkey-zone --ready`.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::base::log::Level;
use crate::sys::terminal;

/// How much of the guest's latest output an attachment is shown first.
const BACKLOG: usize = 16 * 1024;

/// The key that detaches an interactive console (ctrl-], as `virsh console` and telnet).
const DETACH: u8 = 0x1d;

/// The attached administrator, if any, and the backlog.
#[derive(Default)]
struct Shared {
    /// The attachment's number and its socket.
    client: Option<(u64, UnixStream)>,
    backlog: VecDeque<u8>,
}

/// What the relay touches on the host.
pub struct Files {
    /// The VM's name, for the lines on the host's console.
    pub name: String,
    /// The host's console.
    pub console: PathBuf,
    /// The socket consoles attach to.
    pub socket: PathBuf,
    /// What the guest last said of its services ([`super::GUEST_STATE`]).
    pub state: PathBuf,
    /// The guest's initramfs: removed at the guest's first output (the VMM has loaded it).
    pub initrd: PathBuf,
}

/// Starts the relay between the VMM's serial console (`output`, `input`) and the log, the
/// console socket and the readiness file; it runs until the VMM's output ends.
pub fn relay(name: &str, output: impl Read + Send + 'static, input: impl Write + Send + 'static, files: Files) {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let _ = std::fs::remove_file(&files.socket);
    match UnixListener::bind(&files.socket) {
        Ok(listener) => {
            let (shared, input) = (shared.clone(), Arc::new(Mutex::new(input)));
            std::thread::spawn(move || serve(&listener, &shared, &input));
        }
        Err(e) => crate::warn!("vm {name}: no console: {}: {e}", files.socket.display()),
    }
    std::thread::spawn(move || copy_out(output, &shared, &files));
}

/// Copies the guest's output to the log, the attached client and the backlog; notes
/// readiness from whole lines.
fn copy_out(mut output: impl Read, shared: &Mutex<Shared>, files: &Files) {
    let mut buf = [0u8; 4096];
    let mut line = Vec::new();
    let mut first = true;
    loop {
        let n = match output.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if std::mem::take(&mut first) {
            let _ = std::fs::remove_file(&files.initrd);
        }
        let bytes = &buf[..n];
        let _ = std::io::stdout().write_all(bytes);
        {
            let mut s = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            s.backlog.extend(bytes);
            let excess = s.backlog.len().saturating_sub(BACKLOG);
            s.backlog.drain(..excess);
            if let Some((_, client)) = s.client.as_mut()
                && client.write_all(bytes).is_err()
            {
                s.client = None;
            }
        }
        for &b in bytes {
            if b != b'\n' {
                line.push(b);
                continue;
            }
            note(&String::from_utf8_lossy(&line), files);
            line.clear();
        }
    }
}

/// Notes the guest's readiness from one line of its console; its init's errors also go
/// to the host's console, where whoever watches the box is.
fn note(line: &str, files: &Files) {
    if line.contains(super::READY_LINE) {
        let _ = std::fs::write(&files.state, "ready");
    } else if let Some((_, waiting)) = line.split_once(super::WAITING_LINE) {
        let _ = std::fs::write(&files.state, format!("waiting for {}", waiting.trim()));
    } else if let Some((_, error)) = line.split_once(GUEST_ERROR) {
        let said = format!("vm {}: the guest says: {}", files.name, error.trim_end());
        if let Ok(mut console) = std::fs::OpenOptions::new().write(true).open(&files.console) {
            crate::base::log::to_console(&mut console, Level::Error, format_args!("{said}"));
        }
    }
}

/// How an error line of the guest's init starts (after its timestamp).
const GUEST_ERROR: &str = "ramkey: error: ";

/// What an attachment sends first: show the backlog, then the output as it comes...
const WITH_BACKLOG: u8 = b'B';
/// ... or only what comes from now on (a script typing commands).
const LIVE: u8 = b'L';

/// Accepts consoles, one at a time: a new one replaces the one attached. Each says first
/// whether it wants the backlog ([`WITH_BACKLOG`], [`LIVE`]), then gets the output as it
/// comes; its input goes to the guest until it ends, which ends the attachment.
fn serve(listener: &UnixListener, shared: &Arc<Mutex<Shared>>, input: &Arc<Mutex<impl Write + Send + 'static>>) {
    for (id, stream) in (1u64..).zip(listener.incoming().flatten()) {
        let (shared, input) = (shared.clone(), input.clone());
        std::thread::spawn(move || attached(id, stream, &shared, &input));
    }
}

fn attached(id: u64, mut stream: UnixStream, shared: &Mutex<Shared>, input: &Mutex<impl Write>) {
    let mut mode = [0u8; 1];
    let Ok(mut reader) = stream.read_exact(&mut mode).and_then(|()| stream.try_clone()) else {
        return;
    };
    {
        let mut s = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if mode[0] == WITH_BACKLOG {
            let (a, b) = s.backlog.as_slices();
            if stream.write_all(a).and_then(|()| stream.write_all(b)).is_err() {
                return;
            }
        }
        if let Some((_, old)) = s.client.replace((id, stream)) {
            let _ = old.shutdown(std::net::Shutdown::Both);
        }
    }
    let mut buf = [0u8; 1024];
    while let Ok(n @ 1..) = reader.read(&mut buf) {
        let mut guest = input.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if guest.write_all(&buf[..n]).and_then(|()| guest.flush()).is_err() {
            break;
        }
    }
    let _ = reader.shutdown(std::net::Shutdown::Both);
    let mut s = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    s.client.take_if(|(held, _)| *held == id);
}

/// `ramkeyctl personality console NAME` for a VM: attaches to its console socket. At a
/// terminal: the backlog, then keys go to the guest as typed until ctrl-] detaches.
/// Otherwise: with nothing on standard input, the backlog; with input, the input goes to
/// the guest and what the console says meanwhile is printed, until 2 s after it ends.
pub fn attach(name: &str, socket: &Path) -> Result<String, String> {
    let stream = UnixStream::connect(socket).map_err(|e| {
        format!(
            "vm {name}: its console {} does not answer ({e}): is it running? (`ramkeyctl personality list`)",
            socket.display()
        )
    })?;
    let stdin = std::io::stdin();
    let interactive = terminal::is_terminal(stdin.as_fd());
    let mut output = stream.try_clone().map_err(|e| e.to_string())?;
    // Standard output through its own descriptor: `ramkeyctl` holds the lock of Rust's
    // `stdout` while a command runs.
    let mut stdout = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .map_err(|e| format!("standard output: {e}"))?;
    let printer = std::thread::spawn(move || {
        let _ = std::io::copy(&mut output, &mut stdout);
    });
    let mut to_guest = stream;
    let send = |to_guest: &mut UnixStream, bytes: &[u8]| to_guest.write_all(bytes).map_err(|e| e.to_string());
    if interactive {
        send(&mut to_guest, &[WITH_BACKLOG])?;
        eprint!("[attached to vm {name}'s console; ctrl-] detaches]\r\n");
        let _raw = terminal::RawMode::enter(stdin.as_fd()).ok();
        let mut byte = [0u8; 1];
        while let Ok(1) = stdin.lock().read(&mut byte) {
            if byte[0] == DETACH || to_guest.write_all(&byte).is_err() {
                break;
            }
        }
        let _ = to_guest.shutdown(std::net::Shutdown::Both);
        return Ok("\r\n[detached]".into());
    }
    // Nothing to type: show what the console said lately. Something: type it, and show
    // what comes from now on.
    let mut first = [0u8; 4096];
    let n = stdin.lock().read(&mut first).unwrap_or(0);
    if n == 0 {
        send(&mut to_guest, &[WITH_BACKLOG])?;
    } else {
        send(&mut to_guest, &[LIVE])?;
        send(&mut to_guest, &first[..n])?;
        let _ = std::io::copy(&mut stdin.lock(), &mut to_guest);
    }
    // What the guest answers to the input takes a moment.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let _ = to_guest.shutdown(std::net::Shutdown::Write);
    let _ = printer.join();
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attachment_gets_the_backlog_types_to_the_guest_and_ends_with_its_input() {
        let dir = tempfile::tempdir().unwrap();
        let (guest_out, mut to_relay) = std::io::pipe().unwrap();
        let (mut typed, guest_in) = std::io::pipe().unwrap();
        let files = Files {
            name: "web".into(),
            console: dir.path().join("console"),
            socket: dir.path().join("console.sock"),
            state: dir.path().join("state"),
            initrd: dir.path().join("guest.cpio"),
        };
        std::fs::write(&files.initrd, b"cpio").unwrap();
        let (socket, state, initrd) = (files.socket.clone(), files.state.clone(), files.initrd.clone());
        relay("web", guest_out, guest_in, files);
        let noted = |want: &str| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while std::fs::read_to_string(&state).ok().as_deref() != Some(want) && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            std::fs::read_to_string(&state).unwrap_or_default()
        };
        to_relay
            .write_all(b"booting\nramkey-guest: waiting for nginx starting (spawned)\n")
            .unwrap();
        assert_eq!(
            noted("waiting for nginx starting (spawned)"),
            "waiting for nginx starting (spawned)"
        );
        to_relay.write_all(b"ramkey-guest: ready (web)\n").unwrap();
        assert_eq!(noted("ready"), "ready", "the ready line is noted");
        assert!(!initrd.exists(), "the initramfs goes at the first output");

        let mut client = UnixStream::connect(&socket).unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        client.write_all(&[WITH_BACKLOG]).unwrap();
        client.write_all(b"uname\n").unwrap();
        let mut line = [0u8; 6];
        typed.read_exact(&mut line).unwrap();
        assert_eq!(&line, b"uname\n");
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut seen = String::new();
        client.read_to_string(&mut seen).unwrap();
        assert!(seen.starts_with("booting\nramkey-guest: waiting"), "{seen:?}");

        // A script's attachment gets only what comes after it.
        let mut live = UnixStream::connect(&socket).unwrap();
        live.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        live.write_all(&[LIVE]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        to_relay.write_all(b"answer\n").unwrap();
        let mut line = [0u8; 7];
        live.read_exact(&mut line).unwrap();
        assert_eq!(&line, b"answer\n");
    }
}
