//! Reading the box's config: `/usbkey/config.toml`, or the `ramkey.config=` URL (PXE).
//!
//! An invalid config is logged line by line and the boot goes on without it; only a
//! config URL that cannot be fetched stops the boot (there is nothing else to go on).

use std::path::Path;
use std::time::Duration;

use ramkey_config::{CONFIG_FILE, Config};

use crate::net::Network;
use crate::net::http::{self, HttpError, Url};

/// Fetch attempts before giving up on the config URL.
pub const FETCH_ATTEMPTS: usize = 4;

/// The pause before the second, third, ... attempt.
const FETCH_PAUSES: &[Duration] = &[Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4)];

/// The config URL could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL itself is unusable (bad scheme, host name, ...).
    #[error("config URL {url}: {source}")]
    Url {
        /// The URL from the command line.
        url: String,
        /// Why.
        source: HttpError,
    },
    /// Every attempt failed.
    #[error("cannot fetch the config from {url} ({attempts} attempts): {source}")]
    Failed {
        /// The URL after `${mac}` substitution.
        url: String,
        /// Attempts made.
        attempts: usize,
        /// The last error.
        source: HttpError,
    },
}

/// Checks a `ramkey.config=` URL before the network is brought up (fails fast on a host name).
pub fn check_url(template: &str) -> Result<(), FetchError> {
    Url::parse(&http::substitute_mac(template, [0; 6]))
        .map(drop)
        .map_err(|source| FetchError::Url {
            url: template.to_owned(),
            source,
        })
}

/// Parses and validates config text, logging the outcome; `None` when invalid.
pub fn parse_and_log(text: &str, name: &str) -> Option<Config> {
    match Config::parse(text, name) {
        Ok(config) => {
            let hostname = if config.hostname.is_empty() {
                "(none)"
            } else {
                config.hostname.as_str()
            };
            crate::notice!("config: {name}: ok (hostname {hostname})");
            Some(config)
        }
        Err(errors) => {
            for line in errors.to_string().lines() {
                crate::notice!("config: {line}");
            }
            crate::notice!(
                "config: {name}: {} error{}; continuing without it",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            None
        }
    }
}

/// Reads `<mount>/config.toml`; a missing or unreadable file is logged and gives `None`.
pub fn from_usbkey(mount: &Path) -> Option<Config> {
    let path = mount.join(CONFIG_FILE);
    let name = format!("{}/{CONFIG_FILE}", crate::usbkey::MOUNT_POINT);
    match std::fs::read(&path) {
        Ok(bytes) => parse_and_log(&String::from_utf8_lossy(&bytes), &name),
        Err(e) => {
            crate::notice!("config: {name}: cannot read it: {e}; continuing without it");
            None
        }
    }
}

/// Fetches the config URL (with `${mac}` substituted), retrying; parses it.
///
/// `Ok(None)` when the config was fetched but is invalid.
pub fn fetch(net: &mut dyn Network, template: &str, mac: [u8; 6]) -> Result<Option<Config>, FetchError> {
    let text = http::substitute_mac(template, mac);
    let url = Url::parse(&text).map_err(|source| FetchError::Url {
        url: text.clone(),
        source,
    })?;
    let mut attempt = 0;
    let body = loop {
        attempt += 1;
        match net.fetch(&url) {
            Ok(body) => break body,
            Err(source) if attempt >= FETCH_ATTEMPTS => {
                return Err(FetchError::Failed {
                    url: text,
                    attempts: attempt,
                    source,
                });
            }
            Err(e) => {
                let pause = FETCH_PAUSES.get(attempt - 1).copied().unwrap_or(Duration::from_secs(4));
                crate::warn!("config: {text}: {e}; trying again in {} s", pause.as_secs());
                net.pause(pause);
            }
        }
    };
    crate::notice!("config: fetched {text} ({} bytes)", body.len());
    Ok(parse_and_log(&String::from_utf8_lossy(&body), &text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::net::{NetError, NetReport};

    struct FakeNet {
        answers: Vec<Result<Vec<u8>, HttpError>>,
        urls: Vec<String>,
        pauses: Vec<Duration>,
    }

    impl Network for FakeNet {
        fn configure(&mut self, _: &dyn Clock, _: Option<&str>) -> Result<NetReport, NetError> {
            Err(NetError::NoNic)
        }
        fn fetch(&mut self, url: &Url) -> Result<Vec<u8>, HttpError> {
            self.urls.push(url.text.clone());
            self.answers.remove(0)
        }
        fn pause(&mut self, d: Duration) {
            self.pauses.push(d);
        }
    }

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const URL: &str = "http://10.0.2.2:8099/${mac}.toml";

    fn status(code: u16) -> HttpError {
        HttpError::Status {
            status: code,
            reason: "x".into(),
        }
    }

    #[test]
    fn fetched_after_a_retry() {
        let mut net = FakeNet {
            answers: vec![Err(status(503)), Ok(b"version = 1\nhostname = \"box1\"\n".to_vec())],
            urls: vec![],
            pauses: vec![],
        };
        let config = fetch(&mut net, URL, MAC).unwrap().unwrap();
        assert_eq!(config.hostname, "box1");
        assert_eq!(net.urls, ["http://10.0.2.2:8099/52:54:00:12:34:56.toml"; 2]);
        assert_eq!(net.pauses, [Duration::from_secs(1)]);
    }

    #[test]
    fn invalid_fetched_config_is_none() {
        let mut net = FakeNet {
            answers: vec![Ok(b"version = 1\nbogus = 1\n".to_vec())],
            urls: vec![],
            pauses: vec![],
        };
        assert!(fetch(&mut net, URL, MAC).unwrap().is_none());
    }

    #[test]
    fn gives_up_after_the_attempts() {
        let mut net = FakeNet {
            answers: (0..4).map(|_| Err(status(404))).collect(),
            urls: vec![],
            pauses: vec![],
        };
        let err = fetch(&mut net, URL, MAC).unwrap_err().to_string();
        assert_eq!(
            err,
            "cannot fetch the config from http://10.0.2.2:8099/52:54:00:12:34:56.toml (4 attempts): HTTP status 404 (x)"
        );
        assert_eq!(net.pauses.len(), 3);
    }

    #[test]
    fn host_names_fail_fast() {
        let err = check_url("http://pxe.example.com/${mac}.toml").unwrap_err().to_string();
        assert!(err.contains("cannot resolve host names"), "{err}");
        check_url(URL).unwrap();
    }

    #[test]
    fn usbkey_config_read_or_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(from_usbkey(dir.path()).is_none());
        std::fs::write(dir.path().join("config.toml"), "version = 1\nhostname = \"box7\"\n").unwrap();
        assert_eq!(from_usbkey(dir.path()).unwrap().hostname, "box7");
        std::fs::write(dir.path().join("config.toml"), "version = 1\nhostname = 3\n").unwrap();
        assert!(from_usbkey(dir.path()).is_none());
    }
}
