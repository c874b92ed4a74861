//! Reading the box's config: `/usbkey/config.toml`, or the `ramkey.config=` URL (PXE).
//!
//! An invalid (or unreadable) config is logged line by line, with line and column; the
//! usbkey's last good copy (`config.toml.good`) is then used. Without one, the boot has no
//! config and ends in recovery mode (with DHCP on every NIC). A config URL that cannot be
//! fetched stops the boot at once.

use std::path::Path;
use std::time::Duration;

use ramkey_config::{CONFIG_FILE, Config};
use ramkey_image::VerifyingKey;

use crate::boot::good_config::{self, GOOD_FILE};
use crate::net::http::{self, Fetch, HttpError, Url};

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

/// Checks a `ramkey.config=` URL before the network is brought up (fails fast on a bad
/// one; a host name is resolved once the network is up).
pub fn check_url(template: &str) -> Result<(), FetchError> {
    Url::parse_with(&http::substitute_mac(template, [0; 6]), |_| Ok([0, 0, 0, 0].into()))
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
    let usbkey = crate::storage::usbkey::MOUNT_POINT;
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

/// Where the platform keeps the public keys a fetched config must be signed by, one key
/// line each (written by `ramkey build` from the appliance's `[pxe] config_keys`).
pub const CONFIG_KEYS: &str = "etc/ramkey/config-keys";

/// Whether a fetched config must be signed, and by whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigKeys {
    /// The platform was built without config keys: any config the URL answers is taken.
    Unsigned,
    /// A config is taken only with a `.sig` by one of these.
    Required(Vec<VerifyingKey>),
}

impl ConfigKeys {
    /// The platform's [`CONFIG_KEYS`] under `root`: a missing file means unsigned configs are
    /// taken; a file without one valid key means none is.
    pub fn load(root: &Path) -> ConfigKeys {
        let path = root.join(CONFIG_KEYS);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return ConfigKeys::Unsigned;
        };
        let keys = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .filter_map(|line| {
                ramkey_image::keys::decode_public(line, "a config key")
                    .inspect_err(|e| crate::warn!("config: {}: {e}", path.display()))
                    .ok()
            })
            .collect();
        ConfigKeys::Required(keys)
    }
}

/// Fetches the config URL (with `${mac}` substituted), retrying, and with `keys` its
/// signature (`URL.sig`); parses it.
///
/// A fetched but invalid or unsigned config gives a [`Loaded`] without a config (there is
/// no good copy for PXE boots).
pub fn fetch(net: &mut dyn Fetch, template: &str, mac: [u8; 6], keys: &ConfigKeys) -> Result<Loaded, FetchError> {
    let text = http::substitute_mac(template, mac);
    let url = net.url(&text).map_err(|source| FetchError::Url {
        url: text.clone(),
        source,
    })?;
    let body = fetch_retrying(net, &url)?;
    crate::notice!("config: fetched {text} ({} bytes)", body.len());
    let signed = match keys {
        ConfigKeys::Unsigned => {
            crate::notice!(
                "config: {text} is taken unsigned: whoever answers on the boot network configures this box (build the platform with [pxe] config_keys to require a signature)"
            );
            Ok(())
        }
        ConfigKeys::Required(trusted) => {
            let sig_url = net.url(&format!("{text}.sig")).map_err(|source| FetchError::Url {
                url: format!("{text}.sig"),
                source,
            })?;
            fetch_retrying(net, &sig_url)
                .map_err(|e| e.to_string())
                .and_then(|sig| {
                    ramkey_image::detached::verify(trusted, &body, &String::from_utf8_lossy(&sig))
                        .map(|id| crate::notice!("config: {text}: signed by key {id}"))
                        .map_err(|e| e.to_string())
                })
        }
    };
    if let Err(why) = signed {
        let error = format!("{text}: refused, the platform takes only signed configs: {why}");
        crate::error!("config: {error}");
        return Ok(Loaded {
            config: None,
            source: text,
            text: None,
            error: Some(error),
        });
    }
    let parsed = parse_and_log(&String::from_utf8_lossy(&body), &text);
    Ok(Loaded {
        error: parsed.as_ref().err().cloned(),
        config: parsed.ok(),
        source: text,
        text: None,
    })
}

/// `url`'s body, after up to [`FETCH_ATTEMPTS`] attempts.
fn fetch_retrying(net: &mut dyn Fetch, url: &Url) -> Result<Vec<u8>, FetchError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match net.fetch(url) {
            Ok(body) => return Ok(body),
            Err(source) if attempt >= FETCH_ATTEMPTS => {
                return Err(FetchError::Failed {
                    url: url.text.clone(),
                    attempts: attempt,
                    source,
                });
            }
            Err(e) => {
                let pause = FETCH_PAUSES.get(attempt - 1).copied().unwrap_or(Duration::from_secs(4));
                crate::warn!("config: {}: {e}; trying again in {} s", url.text, pause.as_secs());
                net.pause(pause);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::http::fake::{FakeFetch, status};

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const URL: &str = "http://10.0.2.2:8099/${mac}.toml";

    #[test]
    fn fetched_after_a_retry() {
        let mut net = FakeFetch::answering(vec![
            Err(status(503)),
            Ok(b"version = 1\nhostname = \"box1\"\n".to_vec()),
        ]);
        let config = fetch(&mut net, URL, MAC, &ConfigKeys::Unsigned)
            .unwrap()
            .config
            .unwrap();
        assert_eq!(config.hostname, "box1");
        assert_eq!(net.urls, ["http://10.0.2.2:8099/52:54:00:12:34:56.toml"; 2]);
        assert_eq!(net.pauses, [Duration::from_secs(1)]);
    }

    #[test]
    fn invalid_fetched_config_is_none() {
        let mut net = FakeFetch::answering(vec![Ok(b"version = 1\nbogus = 1\n".to_vec())]);
        let loaded = fetch(&mut net, URL, MAC, &ConfigKeys::Unsigned).unwrap();
        assert!(loaded.config.is_none());
        assert!(loaded.error.unwrap().contains(":2:1: unknown key `bogus`"));
    }

    #[test]
    fn a_platform_with_config_keys_takes_only_a_signed_config() {
        let key = ramkey_image::SigningKey::from_bytes(&[7; 32]);
        let keys = ConfigKeys::Required(vec![key.verifying_key()]);
        let config = b"version = 1\nhostname = \"box1\"\n".to_vec();
        let signature = ramkey_image::detached::sign(&key, &config).into_bytes();
        let mut net = FakeFetch::answering(vec![Ok(config.clone()), Ok(signature.clone())]);
        let loaded = fetch(&mut net, URL, MAC, &keys).unwrap();
        assert_eq!(loaded.config.unwrap().hostname, "box1");
        assert_eq!(net.urls[1], "http://10.0.2.2:8099/52:54:00:12:34:56.toml.sig");
        // Changed on the way, or without a signature: no config (recovery mode).
        let mut changed = config.clone();
        changed[20] = b'2';
        let mut net = FakeFetch::answering(vec![Ok(changed), Ok(signature)]);
        let loaded = fetch(&mut net, URL, MAC, &keys).unwrap();
        assert!(loaded.config.is_none());
        let error = loaded.error.unwrap();
        assert!(
            error.contains("refused, the platform takes only signed configs: the signature is not by a key"),
            "{error}"
        );
        let mut net = FakeFetch::answering([Ok(config)]); // then 404s
        let loaded = fetch(&mut net, URL, MAC, &keys).unwrap();
        assert!(loaded.config.is_none());
        assert!(loaded.error.unwrap().contains(".sig (4 attempts): HTTP status 404"));
    }

    #[test]
    fn config_keys_from_the_platform() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ConfigKeys::load(dir.path()), ConfigKeys::Unsigned);
        let key = ramkey_image::SigningKey::from_bytes(&[7; 32]).verifying_key();
        std::fs::create_dir_all(dir.path().join("etc/ramkey")).unwrap();
        let line = ramkey_image::keys::encode_public(&key);
        std::fs::write(dir.path().join(CONFIG_KEYS), format!("# ours\n{line}\nnot a key\n")).unwrap();
        assert_eq!(ConfigKeys::load(dir.path()), ConfigKeys::Required(vec![key]));
        // A file with no usable key takes no config at all.
        std::fs::write(dir.path().join(CONFIG_KEYS), "garbage\n").unwrap();
        assert_eq!(ConfigKeys::load(dir.path()), ConfigKeys::Required(vec![]));
    }

    #[test]
    fn gives_up_after_the_attempts() {
        let mut net = FakeFetch::answering((0..4).map(|_| Err(status(404))));
        let err = fetch(&mut net, URL, MAC, &ConfigKeys::Unsigned)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "cannot fetch the config from http://10.0.2.2:8099/52:54:00:12:34:56.toml (4 attempts): HTTP status 404 (x)"
        );
        assert_eq!(net.pauses.len(), 3);
    }

    #[test]
    fn bad_urls_fail_fast_and_host_names_wait_for_the_network() {
        let err = check_url("tftp://10.0.2.2/${mac}.toml").unwrap_err().to_string();
        assert!(err.contains("only http:// and https://"), "{err}");
        check_url("https://pxe.example.com/${mac}.toml").unwrap();
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
