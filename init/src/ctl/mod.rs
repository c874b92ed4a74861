//! `ramkeyctl`: the administrator's tool on the box. It asks PID 1 over the control socket
//! and prints the answer; the `init` binary runs it when called as `ramkeyctl`
//! (`/usr/bin/ramkeyctl -> /init`), busybox style. Besides the control socket's commands:
//! `personality` (the zones; `swap`, `console`, `import` of images from a file, stdin or a
//! URL), `image` (repositories: avail, import, list, delete) and `config` (the usbkey's).
//!
//! Exit status: 0 when done, 1 on any error (with one line on stderr saying what and why).

pub mod args;
pub mod console;
pub mod image;
pub mod import;
pub mod personality;
pub mod platform;
pub mod render;
pub mod swap;
pub mod usbkey_config;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use args::{Args, Command};
use render::Times;

use crate::supervisor::protocol::{Request, Response};

/// Overrides the socket path (for tests off the box).
pub const SOCKET_ENV: &str = "RAMKEY_CONTROL_SOCKET";
/// How long to wait for PID 1's answer.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Runs `ramkeyctl` with the arguments after the program name; returns the exit status.
pub fn main(argv: &[String]) -> i32 {
    match run(argv, &mut std::io::stdout().lock()) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("ramkeyctl: {message}");
            1
        }
    }
}

/// Where the logs are on the box (for `log -f` and `svcs -x`).
fn log_dir() -> PathBuf {
    crate::base::paths::Paths::system()
        .root()
        .join(crate::runtime::services::LOG_DIR)
}

fn socket() -> PathBuf {
    std::env::var_os(SOCKET_ENV).map_or_else(|| PathBuf::from(crate::runtime::control::SOCKET), PathBuf::from)
}

/// One request and its answer; an error response becomes `Err`.
pub(crate) fn ask(request: &Request) -> Result<Response, String> {
    let path = socket();
    match crate::runtime::control::call(&path, request, TIMEOUT) {
        Ok(Response::Error { message }) => Err(message),
        Ok(response) => Ok(response),
        Err(e) => Err(format!(
            "cannot reach PID 1 at {}: {e} — is this a Ramkey box (and are you root)?",
            path.display()
        )),
    }
}

fn json(out: &mut dyn Write, value: &impl serde::Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    writeln!(out, "{text}").map_err(|e| e.to_string())
}

pub(crate) fn unexpected(response: &Response) -> String {
    format!("unexpected answer from PID 1: {response:?}")
}

/// Parses `argv` and carries the command out, printing to `out`.
pub fn run(argv: &[String], out: &mut dyn Write) -> Result<(), String> {
    let Args { command, json: as_json } = args::parse(argv).map_err(|e| e.to_string())?;
    let times = Times {
        uptime: crate::sys::boottime(),
        now: SystemTime::now(),
    };
    let print = |out: &mut dyn Write, text: &str| write!(out, "{text}").map_err(|e| e.to_string());
    match command {
        Command::Help => print(out, &format!("{}\n", args::USAGE)),
        Command::Config(args) => {
            let text = crate::ctl::usbkey_config::run(&args).map_err(|e| e.to_string())?;
            if as_json {
                json(out, &serde_json::json!({ "message": text.trim_end() }))
            } else {
                print(out, &text)
            }
        }
        Command::Personality(args) if as_json => json(out, &personality::run_json(&args)?),
        Command::Personality(args) => print(out, &personality::run(&args)?),
        Command::Image(args) => print(out, &image::run(crate::base::paths::Paths::system().root(), &args)?),
        Command::Platform(args) => platform::run(crate::base::paths::Paths::system().root(), &args, out),
        Command::Status => match ask(&Request::Status)? {
            Response::Status { status } if as_json => json(out, &status),
            Response::Status { status } => print(out, &render::status(&status)),
            other => Err(unexpected(&other)),
        },
        Command::Svcs { all, explain } => match ask(&Request::Svcs { all })? {
            Response::Svcs { mut services } => {
                if explain {
                    services.retain(|s| !matches!(s.state, crate::supervisor::State::Online));
                    services.retain(|s| all || s.state != crate::supervisor::State::Disabled);
                }
                if as_json {
                    json(out, &services)
                } else if explain {
                    print(out, &render::explain(&services, &times, &log_dir()))
                } else {
                    print(out, &render::svcs(&services, &times))
                }
            }
            other => Err(unexpected(&other)),
        },
        Command::Svcadm { action, service } => done(ask(&Request::Svcadm { action, service })?, as_json, out),
        Command::Reboot => done(ask(&Request::Reboot)?, as_json, out),
        Command::Poweroff => done(ask(&Request::Poweroff)?, as_json, out),
        Command::Log { service, lines, follow } => {
            let request = Request::Log {
                service: service.clone(),
                lines,
            };
            match ask(&request)? {
                Response::Log { lines, .. } if as_json && !follow => json(out, &lines),
                Response::Log { lines, .. } => {
                    for line in &lines {
                        print(out, &format!("{line}\n"))?;
                    }
                    out.flush().map_err(|e| e.to_string())?;
                    if follow {
                        follow_file(&log_dir().join(format!("{service}.log")), out)?;
                    }
                    Ok(())
                }
                other => Err(unexpected(&other)),
            }
        }
    }
}

fn done(response: Response, as_json: bool, out: &mut dyn Write) -> Result<(), String> {
    match response {
        Response::Done { message } if as_json => json(out, &serde_json::json!({ "message": message })),
        Response::Done { message } => writeln!(out, "{message}").map_err(|e| e.to_string()),
        other => Err(unexpected(&other)),
    }
}

/// `tail -F`: prints what is appended to `path`, following rotations, until killed.
fn follow_file(path: &Path, out: &mut dyn Write) -> Result<(), String> {
    let open = || std::fs::File::open(path).ok();
    let mut file = open();
    let mut inode = file.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.ino());
    if let Some(f) = file.as_mut() {
        f.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    }
    let mut buf = vec![0u8; 8192];
    loop {
        if let Some(f) = file.as_mut() {
            loop {
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.write_all(&buf[..n]).map_err(|e| e.to_string())?,
                }
            }
            out.flush().map_err(|e| e.to_string())?;
        }
        std::thread::sleep(Duration::from_millis(250));
        // Rotated (a new inode) or truncated: start over on the new file.
        let now = std::fs::metadata(path).ok();
        let position = file.as_mut().and_then(|f| f.stream_position().ok()).unwrap_or(0);
        if now.as_ref().map(|m| m.ino()) != inode || now.as_ref().is_some_and(|m| m.len() < position) {
            file = open();
            inode = now.map(|m| m.ino());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_and_unreachable_errors_say_what_to_do() {
        let mut out = Vec::new();
        run(&["help".into()], &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().starts_with("usage: ramkeyctl"));
        let err = run(&["bogus".into()], &mut Vec::new()).unwrap_err();
        assert!(err.contains("unknown command `bogus`"), "{err}");
    }
}
