//! Readiness and health checks (`Probe`): what to try (`Check`) and how often.
//!
//! In TOML a probe is one flat inline table with a `kind`, e.g.
//! `{ kind = "http", url = "http://127.0.0.1:8080/health", expect_status = 200, interval_secs = 5 }`;
//! in Rust it is a typed [`Check`] plus timing. The flat form is converted and checked by
//! `TryFrom`, so a wrong field for the kind is an error with the manifest's line and column.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Default seconds between attempts.
pub const DEFAULT_INTERVAL_SECS: u32 = 10;
/// Default seconds one attempt may take.
pub const DEFAULT_TIMEOUT_SECS: u32 = 5;
/// Default consecutive failures before the check counts as failed.
pub const DEFAULT_RETRIES: u32 = 3;

/// Errors in a probe's fields.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CheckError {
    /// A field the kind needs is absent.
    #[error("{kind} check needs `{field}`")]
    Missing {
        /// The check kind.
        kind: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// A field that belongs to another kind.
    #[error("`{field}` does not apply to a {kind} check")]
    Foreign {
        /// The check kind.
        kind: &'static str,
        /// The stray field.
        field: &'static str,
    },
    /// A value out of range.
    #[error("{field} {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// What a probe tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// A TCP connect to this port on the zone's address succeeds.
    Tcp {
        /// Port to connect to.
        port: u16,
    },
    /// An HTTP GET (plain `http://` only) answers with this status.
    Http {
        /// The URL to get.
        url: String,
        /// The status that counts as success.
        expect_status: u16,
    },
    /// A command run inside the zone exits 0.
    Exec {
        /// Command and arguments; `argv[0]` is an absolute path.
        argv: Vec<String>,
    },
}

/// A check with its timing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawProbe", into = "RawProbe")]
pub struct Probe {
    /// What to try.
    pub check: Check,
    /// Seconds between attempts (> 0).
    pub interval_secs: u32,
    /// Seconds one attempt may take (> 0).
    pub timeout_secs: u32,
    /// Consecutive failures before the check is failed (> 0).
    pub retries: u32,
}

/// Kind of check in the flat TOML form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Tcp,
    Http,
    Exec,
}

/// The flat TOML form of a [`Probe`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expect_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    argv: Option<Vec<String>>,
    #[serde(default)]
    interval_secs: Option<u32>,
    #[serde(default)]
    timeout_secs: Option<u32>,
    #[serde(default)]
    retries: Option<u32>,
}

impl TryFrom<RawProbe> for Probe {
    type Error = CheckError;

    fn try_from(raw: RawProbe) -> Result<Self, CheckError> {
        let foreign = |kind, field, present: bool| {
            if present {
                Err(CheckError::Foreign { kind, field })
            } else {
                Ok(())
            }
        };
        let check = match raw.kind {
            Kind::Tcp => {
                foreign("tcp", "url", raw.url.is_some())?;
                foreign("tcp", "expect_status", raw.expect_status.is_some())?;
                foreign("tcp", "argv", raw.argv.is_some())?;
                let port = raw.port.ok_or(CheckError::Missing {
                    kind: "tcp",
                    field: "port",
                })?;
                if port == 0 {
                    return Err(invalid("port", "must not be 0"));
                }
                Check::Tcp { port }
            }
            Kind::Http => {
                foreign("http", "port", raw.port.is_some())?;
                foreign("http", "argv", raw.argv.is_some())?;
                let url = raw.url.ok_or(CheckError::Missing {
                    kind: "http",
                    field: "url",
                })?;
                if !url.starts_with("http://") || url.len() <= "http://".len() {
                    return Err(invalid(
                        "url",
                        format!("`{url}` must start with http:// (https is not probed)"),
                    ));
                }
                let expect_status = raw.expect_status.unwrap_or(200);
                if !(100..=599).contains(&expect_status) {
                    return Err(invalid(
                        "expect_status",
                        format!("{expect_status} is not an HTTP status (100..=599)"),
                    ));
                }
                Check::Http { url, expect_status }
            }
            Kind::Exec => {
                foreign("exec", "port", raw.port.is_some())?;
                foreign("exec", "url", raw.url.is_some())?;
                foreign("exec", "expect_status", raw.expect_status.is_some())?;
                let argv = raw.argv.ok_or(CheckError::Missing {
                    kind: "exec",
                    field: "argv",
                })?;
                if !argv.first().is_some_and(|a| a.starts_with('/')) {
                    return Err(invalid("argv", "must be non-empty with an absolute path first"));
                }
                Check::Exec { argv }
            }
        };
        let positive = |field, v: Option<u32>, default| match v.unwrap_or(default) {
            0 => Err(invalid(field, "must be greater than 0")),
            n => Ok(n),
        };
        Ok(Probe {
            check,
            interval_secs: positive("interval_secs", raw.interval_secs, DEFAULT_INTERVAL_SECS)?,
            timeout_secs: positive("timeout_secs", raw.timeout_secs, DEFAULT_TIMEOUT_SECS)?,
            retries: positive("retries", raw.retries, DEFAULT_RETRIES)?,
        })
    }
}

impl From<Probe> for RawProbe {
    fn from(p: Probe) -> Self {
        let mut raw = RawProbe {
            kind: Kind::Tcp,
            port: None,
            url: None,
            expect_status: None,
            argv: None,
            interval_secs: Some(p.interval_secs),
            timeout_secs: Some(p.timeout_secs),
            retries: Some(p.retries),
        };
        match p.check {
            Check::Tcp { port } => raw.port = Some(port),
            Check::Http { url, expect_status } => {
                raw.kind = Kind::Http;
                raw.url = Some(url);
                raw.expect_status = Some(expect_status);
            }
            Check::Exec { argv } => {
                raw.kind = Kind::Exec;
                raw.argv = Some(argv);
            }
        }
        raw
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> CheckError {
    CheckError::Invalid {
        field,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    struct Holder {
        probe: Probe,
    }

    fn parse(s: &str) -> Result<Probe, String> {
        toml::from_str::<Holder>(&format!("probe = {s}"))
            .map(|h| h.probe)
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn parses_each_kind_with_defaults() {
        assert_eq!(
            parse(r#"{ kind = "tcp", port = 80 }"#).unwrap(),
            Probe {
                check: Check::Tcp { port: 80 },
                interval_secs: 10,
                timeout_secs: 5,
                retries: 3
            }
        );
        let http = parse(r#"{ kind = "http", url = "http://127.0.0.1/", interval_secs = 1 }"#);
        assert_eq!(
            http.unwrap().check,
            Check::Http {
                url: "http://127.0.0.1/".into(),
                expect_status: 200
            }
        );
        let exec = parse(r#"{ kind = "exec", argv = ["/bin/true"] }"#).unwrap();
        assert_eq!(
            exec.check,
            Check::Exec {
                argv: vec!["/bin/true".into()]
            }
        );
    }

    #[test]
    fn round_trips_through_toml() {
        let p = parse(r#"{ kind = "http", url = "http://x/", expect_status = 204 }"#).unwrap();
        let text = toml::to_string(&Holder { probe: p.clone() }).unwrap();
        assert_eq!(toml::from_str::<Holder>(&text).unwrap().probe, p);
    }

    #[test]
    fn rejects_wrong_fields() {
        let cases = [
            (r#"{ kind = "tcp" }"#, "tcp check needs `port`"),
            (
                r#"{ kind = "tcp", port = 1, url = "http://x" }"#,
                "`url` does not apply",
            ),
            (r#"{ kind = "http", url = "https://x" }"#, "must start with http://"),
            (
                r#"{ kind = "http", url = "http://x", expect_status = 42 }"#,
                "not an HTTP status",
            ),
            (r#"{ kind = "exec", argv = ["true"] }"#, "absolute path first"),
            (
                r#"{ kind = "tcp", port = 1, retries = 0 }"#,
                "retries must be greater than 0",
            ),
            (r#"{ kind = "tcp", port = 1, every = 3 }"#, "unknown field `every`"),
            (r#"{ kind = "udp", port = 1 }"#, "unknown variant `udp`"),
        ];
        for (input, want) in cases {
            let err = parse(input).unwrap_err();
            assert!(err.contains(want), "{input}: {err}");
        }
    }
}
