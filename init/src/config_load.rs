//! Reading the box's config: `/usbkey/config.toml`, or the `ramkey.config=` URL (PXE).
//!
//! An invalid (or unreadable) config is logged line by line, with line and column; the
//! usbkey's last good copy (`config.toml.good`) is then used. Without one, the boot has no
//! config and ends in recovery mode (with DHCP on every NIC). A config URL that cannot be
//! fetched stops the boot at once.

use std::path::Path;
use std::time::Duration;

use ramkey_config::{CONFIG_FILE, Config};

use crate::good_config::{self, GOOD_FILE};
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

/// The config the boot goes on with, where it came from, and what was wrong.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    /// The validated config; `None` when there is no usable one.
    pub config: Option<Config>,
    /// Where the config used came from (`/usbkey/config.toml`, `/usbkey/config.toml.good`,
    /// the URL), or the file that failed when there is none.
    pub source: String,
    /// The text of `/usbkey/config.toml` when it is the one used (saved as the good copy
    /// once the boot got through).
    pub text: Option<String>,
    /// What was wrong with the config, every error with its line and column.
    pub error: Option<String>,
}

/// Parses and validates config text, logging the outcome: each error on its own line.
pub fn parse_and_log(text: &str, name: &str) -> Result<Config, String> {
    match Config::parse(text, name) {
        Ok(config) => {
            let hostname = if config.hostname.is_empty() {
                "(none)"
            } else {
                config.hostname.as_str()
            };
            crate::notice!("config: {name}: ok (hostname {hostname})");
            Ok(config)
        }
        Err(errors) => {
            for line in errors.to_string().lines() {
                crate::notice!("config: {line}");
            }
            crate::notice!(
                "config: {name}: {} error{}",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            Err(errors.to_string())
        }
    }
}

/// The largest config file read (the same limit as a config fetched over HTTP): a bigger
/// one is an error, not a read that exhausts the box's memory.
pub const MAX_CONFIG: u64 = crate::net::http::MAX_BODY as u64;

/// Reads a config file of at most [`MAX_CONFIG`] bytes.
pub fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CONFIG {
        return Err(std::io::Error::other(format!(
            "too large (over {} KiB); a config is a few KiB",
            MAX_CONFIG / 1024
        )));
    }
    Ok(bytes)
}

/// Reads `<mount>/config.toml`; when it is missing, unreadable, too large or invalid, the
/// last good copy `<mount>/config.toml.good` (logged either way).
pub fn from_usbkey(mount: &Path) -> Loaded {
    let usbkey = crate::usbkey::MOUNT_POINT;
    let name = format!("{usbkey}/{CONFIG_FILE}");
    let error = match read_capped(&mount.join(CONFIG_FILE)) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            match parse_and_log(&text, &name) {
                Ok(config) => {
                    return Loaded {
                        config: Some(config),
                        source: name,
                        text: Some(text),
                        error: None,
                    };
                }
                Err(e) => e,
            }
        }
        Err(e) => {
            let e = format!("{name}: cannot read it: {e}");
            crate::notice!("config: {e}");
            e
        }
    };
    let good_name = format!("{usbkey}/{GOOD_FILE}");
    let good = match good_config::read_good(mount) {
        Some(text) => parse_and_log(&text, &good_name).ok(),
        None => {
            crate::notice!("config: there is no last good config {good_name}");
            None
        }
    };
    match good {
        Some(config) => {
            crate::notice!("config: using the last good config {good_name}");
            Loaded {
                config: Some(config),
                source: good_name,
                text: None,
                error: Some(error),
            }
        }
        None => Loaded {
            config: None,
            source: name,
            text: None,
            error: Some(error),
        },
    }
}

/// Fetches the config URL (with `${mac}` substituted), retrying; parses it.
///
/// A fetched but invalid config gives a [`Loaded`] without a config (there is no good copy
/// for PXE boots).
pub fn fetch(net: &mut dyn Network, template: &str, mac: [u8; 6]) -> Result<Loaded, FetchError> {
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
    let parsed = parse_and_log(&String::from_utf8_lossy(&body), &text);
    Ok(Loaded {
        error: parsed.as_ref().err().cloned(),
        config: parsed.ok(),
        source: text,
        text: None,
    })
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
        let config = fetch(&mut net, URL, MAC).unwrap().config.unwrap();
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
        let loaded = fetch(&mut net, URL, MAC).unwrap();
        assert!(loaded.config.is_none());
        assert!(loaded.error.unwrap().contains(":2:1: unknown key `bogus`"));
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
        let missing = from_usbkey(dir.path());
        assert!(missing.config.is_none());
        assert!(
            missing
                .error
                .unwrap()
                .starts_with("/usbkey/config.toml: cannot read it: ")
        );
        std::fs::write(dir.path().join("config.toml"), "version = 1\nhostname = \"box7\"\n").unwrap();
        let ok = from_usbkey(dir.path());
        assert_eq!(ok.config.unwrap().hostname, "box7");
        assert_eq!(ok.source, "/usbkey/config.toml");
        assert_eq!(ok.text.as_deref(), Some("version = 1\nhostname = \"box7\"\n"));
        std::fs::write(dir.path().join("config.toml"), "version = 1\nhostname = 3\n").unwrap();
        assert!(from_usbkey(dir.path()).config.is_none());
    }

    #[test]
    fn invalid_config_falls_back_to_the_good_copy() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            "version = 1\nhostname = \"box7\"\nbogus = 1\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("config.toml.good"),
            "version = 1\nhostname = \"good\"\n",
        )
        .unwrap();
        let loaded = from_usbkey(dir.path());
        assert_eq!(loaded.config.unwrap().hostname, "good");
        assert_eq!(loaded.source, "/usbkey/config.toml.good");
        assert!(loaded.text.is_none(), "the good copy is not saved again");
        let error = loaded.error.unwrap();
        assert!(
            error.starts_with("/usbkey/config.toml:3:1: unknown key `bogus`"),
            "{error}"
        );
        std::fs::write(dir.path().join("config.toml.good"), "version = 2\n").unwrap();
        assert!(from_usbkey(dir.path()).config.is_none());
    }

    #[test]
    fn a_huge_config_is_too_large_and_the_good_copy_is_used() {
        let dir = tempfile::tempdir().unwrap();
        // Sparse: 64 MiB that take no disk, and no memory unless read whole.
        let big = std::fs::File::create(dir.path().join("config.toml")).unwrap();
        big.set_len(64 << 20).unwrap();
        std::fs::write(
            dir.path().join("config.toml.good"),
            "version = 1\nhostname = \"good\"\n",
        )
        .unwrap();
        let loaded = from_usbkey(dir.path());
        assert_eq!(loaded.config.unwrap().hostname, "good");
        let error = loaded.error.unwrap();
        assert!(error.contains("cannot read it: too large (over 1024 KiB)"), "{error}");
    }
}
