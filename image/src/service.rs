//! `ServiceSpec`: one supervised process, as personality images declare them and as the
//! supervisor also uses for platform services; plus its validation.
//!
//! Validation here is local: names, paths, references to known services. Dependency cycles
//! are the supervisor's to find, since it orders services across images and the platform.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::check::Probe;

/// Errors in a list of services.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ServiceError {
    /// Two services share a name.
    #[error("service `{name}` is defined twice")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// A field of a service is wrong.
    #[error("service `{service}`: {field} {reason}")]
    Invalid {
        /// The service (or its index when the name itself is bad).
        service: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `requires` or `after` names a service that is not defined.
    #[error("service `{service}`: {field} names unknown service `{unknown}`")]
    Unknown {
        /// The service.
        service: String,
        /// `requires` or `after`.
        field: &'static str,
        /// The unknown name.
        unknown: String,
    },
}

/// When to restart a service that exited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Whatever the exit status.
    Always,
    /// Only after a non-zero exit or a signal.
    #[default]
    OnFailure,
    /// Never; the service runs once.
    Never,
}

/// Delay between restarts: starts at `initial_ms`, doubles up to `max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// First delay in milliseconds.
    pub initial_ms: u32,
    /// Largest delay in milliseconds.
    pub max_ms: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial_ms: 500,
            max_ms: 30_000,
        }
    }
}

/// At most `max_restarts` restarts within `window_secs`; past that the service is failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartBudget {
    /// Restarts allowed in the window.
    pub max_restarts: u32,
    /// The window in seconds.
    pub window_secs: u32,
}

impl Default for RestartBudget {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            window_secs: 60,
        }
    }
}

/// The signal that asks a service to stop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum StopSignal {
    /// SIGTERM (15).
    #[default]
    Sigterm,
    /// SIGINT (2).
    Sigint,
    /// SIGHUP (1).
    Sighup,
    /// SIGQUIT (3).
    Sigquit,
    /// SIGUSR1 (10 on x86_64).
    Sigusr1,
    /// SIGUSR2 (12 on x86_64).
    Sigusr2,
}

impl StopSignal {
    /// The Linux x86_64 signal number.
    pub fn number(self) -> i32 {
        match self {
            Self::Sighup => 1,
            Self::Sigint => 2,
            Self::Sigquit => 3,
            Self::Sigusr1 => 10,
            Self::Sigusr2 => 12,
            Self::Sigterm => 15,
        }
    }
}

/// Resource caps; an absent field means no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caps {
    /// Memory in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    /// CPU in percent of one CPU (100 = one CPU, 250 = two and a half), as SmartOS `cpu_cap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<u32>,
    /// Number of processes and threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
}

impl Caps {
    /// Check that no cap is zero; `owner` names what the caps belong to in the message.
    pub fn validate(&self, owner: &str) -> Result<(), ServiceError> {
        for (field, v) in [
            ("caps.memory_mib", self.memory_mib),
            ("caps.cpu_percent", self.cpu_percent),
            ("caps.pids", self.pids),
        ] {
            if v == Some(0) {
                return Err(invalid(owner, field, "must be greater than 0 (omit it for no cap)"));
            }
        }
        Ok(())
    }
}

fn default_stop_timeout() -> u32 {
    10
}

/// One supervised process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Unique name: `[a-z0-9][a-z0-9._-]*`, at most 64 bytes.
    pub name: String,
    /// Command and arguments; `argv[0]` is an absolute path (no `PATH` search).
    pub argv: Vec<String>,
    /// User to run as (name or number); root when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Group to run as; the user's primary group when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Environment, in addition to a minimal default.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory (absolute); `/` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Services that must be ready before this one starts, and whose failure stops it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    /// Services to start before this one, without depending on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// When to restart.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Delay between restarts.
    #[serde(default)]
    pub backoff: Backoff,
    /// How many restarts before giving up.
    #[serde(default)]
    pub budget: RestartBudget,
    /// When the service counts as ready; as soon as it runs when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Probe>,
    /// Checked while it runs; a failed check restarts it per `restart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Probe>,
    /// Signal sent to stop it.
    #[serde(default)]
    pub stop_signal: StopSignal,
    /// Seconds between the stop signal and SIGKILL.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_secs: u32,
    /// Caps for this service alone.
    #[serde(default)]
    pub caps: Caps,
}

impl ServiceSpec {
    /// A service with default settings running `argv`.
    pub fn new(name: impl Into<String>, argv: Vec<String>) -> Self {
        Self {
            name: name.into(),
            argv,
            user: None,
            group: None,
            env: BTreeMap::new(),
            workdir: None,
            requires: Vec::new(),
            after: Vec::new(),
            restart: RestartPolicy::default(),
            backoff: Backoff::default(),
            budget: RestartBudget::default(),
            readiness: None,
            health: None,
            stop_signal: StopSignal::default(),
            stop_timeout_secs: default_stop_timeout(),
            caps: Caps::default(),
        }
    }

    fn validate_alone(&self) -> Result<(), ServiceError> {
        let name = self.name.as_str();
        if !is_name(name) {
            return Err(invalid(
                name,
                "name",
                "must match [a-z0-9][a-z0-9._-]* and be at most 64 bytes",
            ));
        }
        if !self.argv.first().is_some_and(|a| a.starts_with('/')) {
            return Err(invalid(name, "argv", "must be non-empty with an absolute path first"));
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            return Err(invalid(name, "argv", "must not contain NUL bytes"));
        }
        if let Some(dir) = &self.workdir
            && !dir.starts_with('/')
        {
            return Err(invalid(name, "workdir", format!("`{dir}` must be absolute")));
        }
        for (field, v) in [("user", &self.user), ("group", &self.group)] {
            if v.as_ref().is_some_and(|v| v.is_empty() || v.contains([':', '\0'])) {
                return Err(invalid(name, field, "must be a non-empty name or number"));
            }
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
                return Err(invalid(name, "env", format!("bad variable `{k}`")));
            }
        }
        if self.backoff.initial_ms == 0 || self.backoff.initial_ms > self.backoff.max_ms {
            return Err(invalid(name, "backoff", "needs 0 < initial_ms <= max_ms"));
        }
        if self.budget.max_restarts == 0 || self.budget.window_secs == 0 {
            return Err(invalid(
                name,
                "budget",
                "needs max_restarts > 0 and window_secs > 0 (use restart = \"never\" for none)",
            ));
        }
        if self.stop_timeout_secs == 0 {
            return Err(invalid(name, "stop_timeout_secs", "must be greater than 0"));
        }
        self.caps.validate(&format!("service `{name}`"))
    }
}

/// Check a list of services: each on its own, unique names, and `requires`/`after` naming
/// only services in the list (and not the service itself).
pub fn validate_services(services: &[ServiceSpec]) -> Result<(), ServiceError> {
    let mut names = BTreeSet::new();
    for s in services {
        s.validate_alone()?;
        if !names.insert(s.name.as_str()) {
            return Err(ServiceError::Duplicate { name: s.name.clone() });
        }
    }
    for s in services {
        for (field, list) in [("requires", &s.requires), ("after", &s.after)] {
            for dep in list {
                if dep == &s.name {
                    return Err(invalid(&s.name, field, "names the service itself"));
                }
                if !names.contains(dep.as_str()) {
                    return Err(ServiceError::Unknown {
                        service: s.name.clone(),
                        field,
                        unknown: dep.clone(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Whether `s` is a valid service (or volume, setting) name.
pub fn is_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    s.len() <= 64
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

fn invalid(service: &str, field: &'static str, reason: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        service: service.to_string(),
        field,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str) -> ServiceSpec {
        ServiceSpec::new(name, vec!["/bin/sleep".into(), "1".into()])
    }

    #[test]
    fn accepts_a_valid_list() {
        let mut web = svc("web");
        web.requires = vec!["db".into()];
        web.after = vec!["migrate".into()];
        assert_eq!(validate_services(&[svc("db"), svc("migrate"), web]), Ok(()));
    }

    /// The example in `docs/supervisor.md` is a service file people copy: it must parse.
    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("../../docs/supervisor.md");
        let block = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a toml block in docs/supervisor.md");
        let spec: ServiceSpec = toml::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        assert_eq!(spec.name, "web");
        assert!(spec.readiness.is_some() && spec.health.is_some());
    }

    #[test]
    fn parses_toml_with_defaults() {
        #[derive(Deserialize)]
        struct L {
            services: Vec<ServiceSpec>,
        }
        let l: L = toml::from_str(
            r#"
[[services]]
name = "nginx"
argv = ["/usr/sbin/nginx"]
restart = "always"
stop_signal = "SIGQUIT"
readiness = { kind = "tcp", port = 80 }
caps = { memory_mib = 128 }
"#,
        )
        .unwrap();
        let s = &l.services[0];
        assert_eq!(s.restart, RestartPolicy::Always);
        assert_eq!(s.stop_signal.number(), 3);
        assert_eq!(s.stop_timeout_secs, 10);
        assert_eq!(s.budget, RestartBudget::default());
        assert_eq!(s.caps.memory_mib, Some(128));
    }

    #[test]
    fn rejects_bad_services() {
        let mut dup = vec![svc("a"), svc("a")];
        let mut unknown = vec![svc("a")];
        unknown[0].requires = vec!["b".into()];
        let mut selfref = vec![svc("a")];
        selfref[0].after = vec!["a".into()];
        let mut relative = vec![svc("a")];
        relative[0].argv = vec!["sleep".into()];
        let mut badname = vec![svc("A b")];
        let mut budget = vec![svc("a")];
        budget[0].budget.max_restarts = 0;
        let mut caps = vec![svc("a")];
        caps[0].caps.pids = Some(0);
        let mut env = vec![svc("a")];
        env[0].env.insert("A=B".into(), "x".into());
        let cases: [(&mut Vec<ServiceSpec>, &str); 8] = [
            (&mut dup, "service `a` is defined twice"),
            (&mut unknown, "service `a`: requires names unknown service `b`"),
            (&mut selfref, "service `a`: after names the service itself"),
            (&mut relative, "argv must be non-empty with an absolute path first"),
            (&mut badname, "service `A b`: name must match"),
            (&mut budget, "budget needs max_restarts > 0"),
            (&mut caps, "caps.pids must be greater than 0"),
            (&mut env, "bad variable `A=B`"),
        ];
        for (list, want) in cases {
            let err = validate_services(list).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn names() {
        assert!(is_name("nginx"));
        assert!(is_name("php-fpm.8"));
        assert!(!is_name(""));
        assert!(!is_name("-x"));
        assert!(!is_name("Nginx"));
        assert!(!is_name(&"a".repeat(65)));
    }
}
