//! `ramkeyctl`: the administrator's tool on the box. It asks PID 1 over the control socket
//! and prints the answer; the `init` binary runs it when called as `ramkeyctl`
//! (`/usr/bin/ramkeyctl -> /init`), busybox style. Besides the control socket's commands:
//! `personality` (the zones; `swap`, `console`, `import` of images from a file, stdin or a
//! URL), `image` (repositories: avail, import, list, delete) and `config` (the usbkey's).
//!
//! Exit status: 0 when done, 1 on any error (with one line on stderr saying what and why).

pub mod args;
pub mod cluster;
pub mod console;
pub mod image;
pub mod import;
pub mod personality;
pub mod platform;
pub mod render;
pub mod swap;
pub mod usbkey_config;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use args::{Args, Command};
use render::Times;

use crate::observe::ship::sources::{PID1_LOG, Select};
use crate::supervisor::protocol::{DEFAULT_LOG_LINES, Request, Response};

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
        Command::Cluster(args) if as_json => {
            let mut text = Vec::new();
            cluster::run(&args, &mut text)?;
            let text = String::from_utf8_lossy(&text);
            json(out, &serde_json::json!({ "message": text.trim_end() }))
        }
        Command::Cluster(args) => cluster::run(&args, out),
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
        Command::Log {
            select,
            lines,
            follow,
            since,
        } => log(&select, lines, follow, since, as_json, out),
    }
}

/// `ramkeyctl log`: a platform service's through PID 1 (which knows its services), anything
/// else — PID 1's own log, a zone's, every log, `--since` — from the files.
fn log(
    select: &Select,
    lines: Option<usize>,
    follow: bool,
    since: Option<Duration>,
    as_json: bool,
    out: &mut dyn Write,
) -> Result<(), String> {
    let paths = crate::base::paths::Paths::system();
    let log_dir = log_dir();
    let instances = crate::zone::ZoneSpec::all(paths.root())
        .first()
        .and_then(|z| z.state_dir.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| paths.root().join(crate::zone::RAM_INSTANCES_DIR));
    let places = crate::observe::logs::Places {
        log_dir: &log_dir,
        instances: &instances,
        zone_log_dir: crate::runtime::services::LOG_DIR,
    };
    let shown = match select {
        Select::Platform(service) if since.is_none() && service != PID1_LOG => {
            let request = Request::Log {
                service: service.clone(),
                lines: lines.unwrap_or(DEFAULT_LOG_LINES),
            };
            match ask(&request)? {
                Response::Log { lines, .. } => lines,
                other => return Err(unexpected(&other)),
            }
        }
        _ => {
            let since = since.map(|age| std::time::SystemTime::now() - age);
            // `--since` alone shows every line since; otherwise the last -n (50).
            let lines = lines.or(since.is_none().then_some(DEFAULT_LOG_LINES));
            crate::observe::logs::recent(&places, select, since, lines)?
        }
    };
    if as_json && !follow {
        return json(out, &shown);
    }
    for line in &shown {
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())?;
    if follow {
        crate::observe::logs::follow(&places, select, out)?;
    }
    Ok(())
}

fn done(response: Response, as_json: bool, out: &mut dyn Write) -> Result<(), String> {
    match response {
        Response::Done { message } if as_json => json(out, &serde_json::json!({ "message": message })),
        Response::Done { message } => writeln!(out, "{message}").map_err(|e| e.to_string()),
        other => Err(unexpected(&other)),
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
