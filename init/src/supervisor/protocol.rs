//! The control socket's protocol: one JSON object per line each way, versioned.
//!
//! A request is `{"version":1,"request":{"op":"svcadm","action":"restart","service":"web"}}`
//! and its answer `{"version":1,"response":{"kind":"done","message":"..."}}`. The version is
//! read first and dispatches to that version's types, which reject unknown fields; a client
//! speaking a newer version gets an error naming the versions this side knows.

use serde::{Deserialize, Serialize};

use super::state::{ServiceStatus, State};

/// The protocol version this side speaks.
pub const VERSION: u32 = 1;

/// The longest line either side accepts.
pub const MAX_LINE: usize = 1 << 20;

/// Default for `ramkeyctl log SERVICE` without `-n`.
pub const DEFAULT_LOG_LINES: usize = 50;

/// A line that is not a request or response this side understands.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Not JSON, or not the expected shape.
    #[error("bad message: {0}")]
    Json(#[from] serde_json::Error),
    /// No `version` field.
    #[error("bad message: no `version` (this side speaks version {VERSION})")]
    NoVersion,
    /// A version this side does not speak.
    #[error("protocol version {0} is not supported (this side speaks version {VERSION})")]
    Version(u32),
}

/// What `svcadm` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Start it and keep it running.
    Enable,
    /// Stop it and keep it stopped.
    Disable,
    /// Stop and start it.
    Restart,
    /// Take it out of maintenance.
    Clear,
}

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// The box in short: uptime and the services that need attention.
    Status,
    /// The services; without `all`, disabled ones are left out.
    Svcs {
        /// Include disabled services.
        #[serde(default)]
        all: bool,
    },
    /// Act on one service.
    Svcadm {
        /// What to do.
        action: Action,
        /// The service.
        service: String,
    },
    /// The last lines of a service's log.
    Log {
        /// The service.
        service: String,
        /// How many lines.
        #[serde(default = "default_log_lines")]
        lines: usize,
    },
    /// Stop the services and reboot.
    Reboot,
    /// Stop the services and power off.
    Poweroff,
}

fn default_log_lines() -> usize {
    DEFAULT_LOG_LINES
}

/// The box in short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemStatus {
    /// Milliseconds since the kernel started.
    pub uptime_ms: u64,
    /// True once shutdown has begun.
    pub shutting_down: bool,
    /// How many services are defined.
    pub services: usize,
    /// How many are online.
    pub online: usize,
    /// The services that are neither online nor disabled, as `svcs -x` lists them.
    pub attention: Vec<ServiceStatus>,
    /// How many services are in each state, by the state's name.
    #[serde(default)]
    pub by_state: std::collections::BTreeMap<String, usize>,
    /// The box around the services (version, config, pool), filled in by PID 1.
    #[serde(default)]
    pub system: SystemInfo,
}

/// What `ramkeyctl status` shows besides the services.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemInfo {
    /// `PRETTY_NAME` of `/etc/os-release`, e.g. `Ramkey 0.1.0`.
    #[serde(default)]
    pub platform: String,
    /// Where the config came from (`/usbkey/config.toml`, a URL, or `none`).
    #[serde(default)]
    pub config_source: String,
    /// Why the config was not used, when it was not.
    #[serde(default)]
    pub config_error: Option<String>,
    /// The state of the data pool.
    #[serde(default)]
    pub pool: String,
    /// The SSH server: port, NICs and host key fingerprint, or why it is off.
    #[serde(default)]
    pub ssh: String,
    /// The pool in one word, for the metrics exporter: `ok`, `degraded` (a btrfs mirror
    /// running without a disk), `read-only` (one that may not) or `diskless`.
    #[serde(default)]
    pub pool_health: String,
    /// The pool's disks attached, and how many its filesystem has (`pool_health` ok: equal).
    #[serde(default)]
    pub pool_disks: (u32, u32),
    /// The boot's steps, once the boot is done (`None` before `ready`); boxed, as it is
    /// larger than any other answer.
    #[serde(default)]
    pub timeline: Option<Box<BootTimeline>>,
}

/// The boot timeline as the console's `timeline step=...` and `ready in` lines say it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootTimeline {
    /// When PID 1 started, in milliseconds since the kernel started.
    pub init_start_ms: u64,
    /// When the boot was done (`ready`), in milliseconds since the kernel started.
    pub ready_ms: u64,
    /// Each top-level step, in the order they ran.
    pub steps: Vec<BootStep>,
}

/// One top-level boot step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootStep {
    /// Its name, e.g. `coldplug`.
    pub name: String,
    /// When it started, in milliseconds since the kernel started.
    pub start_ms: u64,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Response {
    /// For [`Request::Status`].
    Status {
        /// The summary.
        status: SystemStatus,
    },
    /// For [`Request::Svcs`].
    Svcs {
        /// The services.
        services: Vec<ServiceStatus>,
    },
    /// For [`Request::Log`].
    Log {
        /// The service.
        service: String,
        /// Its last lines, oldest first.
        lines: Vec<String>,
    },
    /// The command was carried out (or started: a restart, a reboot).
    Done {
        /// What happened.
        message: String,
    },
    /// The request failed.
    Error {
        /// Why, for a person.
        message: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestV1 {
    version: u32,
    request: Request,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseV1 {
    version: u32,
    response: Response,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: Option<u32>,
}

fn version_of(line: &str) -> Result<(), ProtocolError> {
    match serde_json::from_str::<VersionOnly>(line)?.version {
        Some(VERSION) => Ok(()),
        Some(other) => Err(ProtocolError::Version(other)),
        None => Err(ProtocolError::NoVersion),
    }
}

fn line_of(value: &impl Serialize) -> String {
    // Serializing these types cannot fail: no maps with non-string keys, no floats.
    let mut line = serde_json::to_string(value).unwrap_or_default();
    line.push('\n');
    line
}

/// One request as a line, newline included.
pub fn encode_request(request: &Request) -> String {
    line_of(&RequestV1 {
        version: VERSION,
        request: request.clone(),
    })
}

/// Parses one request line.
pub fn decode_request(line: &str) -> Result<Request, ProtocolError> {
    version_of(line)?;
    Ok(serde_json::from_str::<RequestV1>(line)?.request)
}

/// One response as a line, newline included.
pub fn encode_response(response: &Response) -> String {
    line_of(&ResponseV1 {
        version: VERSION,
        response: response.clone(),
    })
}

/// Parses one response line.
pub fn decode_response(line: &str) -> Result<Response, ProtocolError> {
    version_of(line)?;
    Ok(serde_json::from_str::<ResponseV1>(line)?.response)
}

/// The services `svcs` lists: all of them, or all but the disabled ones.
pub fn select(services: Vec<ServiceStatus>, all: bool) -> Vec<ServiceStatus> {
    services
        .into_iter()
        .filter(|s| all || s.state != State::Disabled)
        .collect()
}

/// The summary for [`Request::Status`].
pub fn summary(services: &[ServiceStatus], uptime_ms: u64, shutting_down: bool) -> SystemStatus {
    SystemStatus {
        uptime_ms,
        shutting_down,
        services: services.len(),
        online: services.iter().filter(|s| s.state == State::Online).count(),
        attention: services
            .iter()
            .filter(|s| !matches!(s.state, State::Online | State::Disabled))
            .cloned()
            .collect(),
        by_state: services.iter().fold(Default::default(), |mut counts, s| {
            *counts.entry(s.state.as_str().to_string()).or_default() += 1;
            counts
        }),
        system: SystemInfo::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::state::Transition;

    fn status(name: &str, state: State) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            state,
            since_ms: 1500,
            reason: "because".into(),
            pid: Some(42),
            restarts: 1,
            started_ms: Some(1000),
            history: vec![Transition {
                state,
                at_ms: 1500,
                reason: "because".into(),
            }],
        }
    }

    #[test]
    fn requests_round_trip() {
        let requests = [
            Request::Status,
            Request::Svcs { all: true },
            Request::Svcadm {
                action: Action::Clear,
                service: "web".into(),
            },
            Request::Log {
                service: "web".into(),
                lines: 20,
            },
            Request::Reboot,
            Request::Poweroff,
        ];
        for r in requests {
            let line = encode_request(&r);
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            assert_eq!(decode_request(&line).unwrap(), r, "{line}");
        }
        let line = encode_request(&Request::Svcadm {
            action: Action::Restart,
            service: "web".into(),
        });
        assert_eq!(
            line,
            "{\"version\":1,\"request\":{\"op\":\"svcadm\",\"action\":\"restart\",\"service\":\"web\"}}\n"
        );
    }

    #[test]
    fn responses_round_trip() {
        let services = vec![status("a", State::Online), status("b", State::Maintenance)];
        let responses = [
            Response::Status {
                status: summary(&services, 9000, false),
            },
            Response::Svcs {
                services: services.clone(),
            },
            Response::Log {
                service: "a".into(),
                lines: vec!["x".into()],
            },
            Response::Done { message: "ok".into() },
            Response::Error { message: "no".into() },
        ];
        for r in responses {
            assert_eq!(decode_response(&encode_response(&r)).unwrap(), r);
        }
        let s = summary(&services, 1, false);
        assert_eq!((s.services, s.online, s.attention.len()), (2, 1, 1));
    }

    #[test]
    fn defaults_versions_and_unknown_fields() {
        let r = decode_request(r#"{"version":1,"request":{"op":"log","service":"web"}}"#).unwrap();
        assert_eq!(
            r,
            Request::Log {
                service: "web".into(),
                lines: DEFAULT_LOG_LINES
            }
        );
        let r = decode_request(r#"{"version":1,"request":{"op":"svcs"}}"#).unwrap();
        assert_eq!(r, Request::Svcs { all: false });
        let err = decode_request(r#"{"version":2,"request":{"op":"status"}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "protocol version 2 is not supported (this side speaks version 1)"
        );
        assert!(matches!(
            decode_request(r#"{"request":{"op":"status"}}"#),
            Err(ProtocolError::NoVersion)
        ));
        let err = decode_request(r#"{"version":1,"request":{"op":"svcs","every":true}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `every`"), "{err}");
        assert!(decode_request("not json").is_err());
        let kept = select(vec![status("a", State::Disabled), status("b", State::Online)], false);
        assert_eq!(kept.len(), 1);
    }
}
