//! The Prometheus exporter: `ramkey-metrics INTERFACE PORT [ZONE...]`, a platform service PID 1 runs
//! when the config has `[metrics] listen = "TAG:PORT"` (never part of PID 1's event loop).
//!
//! It listens on `0.0.0.0:PORT` bound to the NIC's interface (`SO_BINDTODEVICE`), so that it
//! answers on whatever address the NIC has now — a DHCP renewal that changes it changes
//! nothing here — and on no other NIC; a zone, whose macvlan lives in its own network
//! namespace, never reaches it. `GET /metrics` is answered in the Prometheus text format
//! (0.0.4, written by the `prometheus` crate) from what is read at that moment:
//! `/proc`, `/sys/class/net`, the zones' cgroups, the pool's `statvfs`, and PID 1's answers
//! on the control socket (services, pool health, boot timeline). One request at a time,
//! each bounded in size and time ([`http`]).
//!
//! Failures are said once with their reason, in the service's log (`ramkeyctl log
//! ramkey-metrics`): a port that is taken or an interface that is not there yet is retried
//! with a doubling delay up to [`MAX_BACKOFF`]; a path other than `/metrics` gets a 404; a
//! source that cannot be read leaves its metrics out and sets
//! `ramkey_metrics_source_up{source}` to 0. Nothing waits for this service.

#[path = "metrics_http.rs"]
pub mod http;
#[path = "metrics_read.rs"]
pub mod read;
#[path = "metrics_render.rs"]
pub mod render;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, sockopt};
use ramkey_image::service::{Caps, RestartPolicy, ServiceSpec};

use crate::base::paths::Paths;
use crate::supervisor::protocol::{Request, Response};

/// The service's name.
pub const SERVICE: &str = "ramkey-metrics";
/// The program: a link to `/init`, which acts as the exporter when called by this name.
pub const PROGRAM: &str = "/usr/sbin/ramkey-metrics";
/// The longest wait between two tries to listen.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The first wait.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// How long a question to PID 1 may take.
const PID1_TIMEOUT: Duration = Duration::from_secs(2);

/// The service PID 1 runs for `[metrics]`: the exporter on `interface` (the NIC tagged
/// `metrics.nic`, as the boot named it) and `metrics.port`, reporting the cgroups of the
/// config's `zones` (a zone's gate, `zone-gate-NAME`, has a cgroup of the same shape),
/// restarted always, with small caps (a scrape reads a few dozen small files).
pub fn service(interface: &str, port: u16, zones: &[&str]) -> ServiceSpec {
    let mut argv = vec![PROGRAM.to_owned(), interface.to_owned(), port.to_string()];
    argv.extend(zones.iter().map(|z| (*z).to_owned()));
    let mut spec = ServiceSpec::new(SERVICE, argv);
    spec.restart = RestartPolicy::Always;
    spec.caps = Caps {
        memory_mib: Some(32),
        cpu_percent: Some(50),
        pids: Some(8),
    };
    spec
}

/// Runs `ramkey-metrics INTERFACE PORT [ZONE...]`, with the gauges of `more` (from the
/// folders above this one) in each scrape; returns only on a usage error.
pub fn main(args: &[String], more: &[(&'static str, read::More)]) -> i32 {
    let (interface, port, zones) = match args {
        [interface, port, zones @ ..] => match port.parse::<u16>() {
            Ok(port) if port > 0 => (interface.as_str(), port, zones),
            _ => return usage(&format!("{port:?} is not a port")),
        },
        _ => return usage("expected at least two arguments"),
    };
    let listener = listen_with_backoff(interface, port, &mut std::thread::sleep);
    serve(&listener, &Paths::system(), zones, more)
}

fn usage(why: &str) -> i32 {
    eprintln!(
        "ramkey-metrics: {why}\nusage: ramkey-metrics INTERFACE PORT [ZONE...] (run by PID 1 for [metrics] listen)"
    );
    2
}

/// A TCP listener on `0.0.0.0:port` that takes connections arriving on `interface` only.
pub fn listen_on(interface: &str, port: u16) -> nix::Result<TcpListener> {
    let fd = socket::socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    socket::setsockopt(&fd, sockopt::BindToDevice, &OsString::from(interface))?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn::new(0, 0, 0, 0, port))?;
    socket::listen(&fd, Backlog::new(16)?)?;
    Ok(TcpListener::from(fd))
}

/// [`listen_on`] until it works, waiting 1 s, 2 s, 4 s ... up to [`MAX_BACKOFF`] between
/// tries; each different reason is said once.
pub fn listen_with_backoff(interface: &str, port: u16, sleep: &mut dyn FnMut(Duration)) -> TcpListener {
    let mut delay = FIRST_BACKOFF;
    let mut said = Said::default();
    let mut tries = 0u32;
    loop {
        tries += 1;
        match listen_on(interface, port) {
            Ok(listener) => {
                let after = if tries > 1 {
                    format!(" (after {tries} tries)")
                } else {
                    String::new()
                };
                crate::notice!("metrics: listening on {interface} port {port}{after}: GET /metrics");
                return listener;
            }
            Err(e) => {
                let why = match e {
                    nix::errno::Errno::EADDRINUSE => format!("port {port} is taken by another program"),
                    nix::errno::Errno::ENODEV => format!("there is no interface {interface} (yet)"),
                    other => other.desc().to_owned(),
                };
                if said.first(&why) {
                    crate::warn!(
                        "metrics: cannot listen on {interface} port {port}: {why}; retrying every {} s at most",
                        MAX_BACKOFF.as_secs()
                    );
                }
                sleep(delay);
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Remembers what was said already, so that each kind of failure is logged once.
#[derive(Debug, Default)]
pub struct Said(BTreeSet<String>);

impl Said {
    /// True the first time `kind` comes.
    pub fn first(&mut self, kind: &str) -> bool {
        self.0.insert(kind.to_owned())
    }
}

/// Answers requests one at a time, forever.
fn serve(listener: &TcpListener, paths: &Paths, zones: &[String], more: &[(&'static str, read::More)]) -> ! {
    let mut exporter = render::Exporter::default();
    let mut said = Said::default();
    loop {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                let from = Sources {
                    paths,
                    zones,
                    ask: &pid1,
                    more,
                };
                answer(&mut stream, peer, &from, &mut exporter, &mut said);
            }
            Err(e) => {
                if said.first(&format!("accept {:?}", e.kind())) {
                    crate::warn!("metrics: accepting a connection: {e} (said once)");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Where a scrape reads: the files under `paths`, the cgroups of `zones`, PID 1's answers
/// to `ask`, and `more`.
struct Sources<'a> {
    paths: &'a Paths,
    zones: &'a [String],
    ask: &'a dyn Fn(&Request) -> Result<Response, String>,
    /// Sources from above this folder ([`read::More`]).
    more: &'a [(&'static str, read::More)],
}

/// Reads one request from `stream` and answers it.
fn answer(
    stream: &mut TcpStream,
    peer: SocketAddr,
    from: &Sources<'_>,
    exporter: &mut render::Exporter,
    said: &mut Said,
) {
    let asked = http::read_request(stream, http::TIMEOUT);
    let (code, body, head) = match &asked {
        Ok(http::Ask::Metrics { head }) => {
            let start = Instant::now();
            let snapshot = read::collect(from.paths, from.zones, from.ask, from.more, &mut |source, why| {
                if said.first(&format!("source {source}: {why}")) {
                    crate::warn!("metrics: {source}: {why}; its metrics are left out while it fails (said once)");
                }
            });
            exporter.scrapes += 1;
            exporter.cpu_seconds = read::own_cpu_seconds();
            exporter.last_duration = start.elapsed().as_secs_f64();
            match render::render(&snapshot, exporter) {
                Ok(text) => (200, text, *head),
                Err(e) => {
                    if said.first("render") {
                        crate::error!("metrics: rendering: {e} (said once)");
                    }
                    (500, format!("rendering the metrics failed: {e}\n"), *head)
                }
            }
        }
        Ok(other) => {
            let (code, body) = http::refusal(other);
            if said.first(&format!("answer {code}")) {
                crate::warn!(
                    "metrics: {peer}: {}: {code} (said once; ramkey_metrics_http_requests_total counts them)",
                    http::describe(other)
                );
            }
            (code, body, false)
        }
        Err(fault) => {
            if said.first(&format!("fault {fault}")) {
                crate::warn!("metrics: {peer}: {fault}; closed (said once)");
            }
            match fault.answer() {
                Some((code, body)) => (code, body, false),
                None => return,
            }
        }
    };
    *exporter.requests.entry(code).or_default() += 1;
    let _ = http::respond(stream, code, &body, head, http::TIMEOUT);
}

/// Asks PID 1 over the control socket.
fn pid1(request: &Request) -> Result<Response, String> {
    let path = Paths::system().control_socket();
    match crate::runtime::control::call(&path, request, PID1_TIMEOUT) {
        Ok(Response::Error { message }) => Err(message),
        Ok(response) => Ok(response),
        Err(e) => Err(format!("cannot reach PID 1 at {}: {e}", path.display())),
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "metrics_more_tests.rs"]
mod more_tests;
