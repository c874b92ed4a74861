//! What an image needs from the platform (minimum platform version, architecture,
//! capabilities beyond a zone's default set), and the check the init runs before starting it.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::manifest::Manifest;

/// The only architecture Ramkey runs on today.
pub const ARCH_X86_64: &str = "x86_64";

/// Capabilities an image may ask for beyond a zone's default set, by name (as Docker's
/// `--cap-add` spells them) and number: ones that act only on the zone's own network
/// namespace, memory and processes. `NET_ADMIN` is what a DHCP server needs (ARP entries for
/// its answers), `NET_RAW` its ping before it offers an address (raw sockets: a zone that
/// has it can send any frame on its link, so it is not in the default set); `SYS_ADMIN`,
/// `SYS_MODULE`, `SYS_RAWIO`, `MKNOD` and the like are never granted.
pub const GRANTABLE_CAPABILITIES: &[(&str, u32)] = &[
    ("NET_BROADCAST", 11),
    ("NET_ADMIN", 12),
    ("NET_RAW", 13),
    ("IPC_LOCK", 14),
    ("SYS_NICE", 23),
];

/// The number of a grantable capability, or why it cannot be granted.
pub fn grantable_capability(name: &str) -> Result<u32, String> {
    GRANTABLE_CAPABILITIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, number)| *number)
        .ok_or_else(|| {
            let names: Vec<&str> = GRANTABLE_CAPABILITIES.iter().map(|(n, _)| *n).collect();
            format!(
                "`{name}` cannot be granted to a zone (grantable: {}; a zone keeps CHOWN, \
                 DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, \
                 AUDIT_WRITE and SETFCAP anyway)",
                names.join(", ")
            )
        })
}

/// Errors parsing versions or meeting requirements.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RequirementsError {
    /// A version is not dotted numbers.
    #[error("bad platform version `{text}`: expected dotted numbers like 1.2.3")]
    BadVersion {
        /// The text.
        text: String,
    },
    /// The platform is older than the image needs.
    #[error(
        "image `{image}` requires platform {required} or newer, this platform is {actual}: upgrade the platform or use an older image"
    )]
    PlatformTooOld {
        /// Image name.
        image: String,
        /// Required minimum.
        required: String,
        /// This platform's version.
        actual: String,
    },
    /// The image is for another architecture.
    #[error("image `{image}` is built for {required}, this platform is {actual}")]
    WrongArch {
        /// Image name.
        image: String,
        /// Required architecture.
        required: String,
        /// This platform's architecture.
        actual: String,
    },
}

/// `[requirements]` of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    /// Oldest platform version the image runs on, dotted numbers (`0.1`, `1.2.3`).
    pub min_platform: String,
    /// CPU architecture, as Rust and `uname -m` spell it: `x86_64`.
    pub arch: String,
    /// Capabilities its services need beyond a zone's default set, from
    /// [`GRANTABLE_CAPABILITIES`] (`["NET_ADMIN"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
}

/// A platform version: dotted numbers compared component by component, missing components
/// counting as 0 (`1.2` == `1.2.0` < `1.10`). A suffix after `-` or `+` (`0.1.0-dev`) is
/// ignored.
#[derive(Debug, Clone)]
pub struct PlatformVersion {
    parts: Vec<u64>,
    text: String,
}

impl FromStr for PlatformVersion {
    type Err = RequirementsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let core = text.split(['-', '+']).next().unwrap_or("");
        let parts: Option<Vec<u64>> = core
            .split('.')
            .map(|p| {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    None
                } else {
                    p.parse().ok()
                }
            })
            .collect();
        match parts {
            Some(parts) => Ok(Self {
                parts,
                text: text.to_string(),
            }),
            None => Err(RequirementsError::BadVersion { text: text.to_string() }),
        }
    }
}

impl PartialEq for PlatformVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PlatformVersion {}

impl PartialOrd for PlatformVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PlatformVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.parts.len().max(other.parts.len());
        (0..n)
            .map(|i| {
                let a = self.parts.get(i).copied().unwrap_or(0);
                let b = other.parts.get(i).copied().unwrap_or(0);
                a.cmp(&b)
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl fmt::Display for PlatformVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Check that a platform of `platform_version` on `arch` meets the manifest's requirements.
/// Architecture first: an image for another CPU can never run, whatever the version.
pub fn check_requirements(
    manifest: &Manifest,
    platform_version: &PlatformVersion,
    arch: &str,
) -> Result<(), RequirementsError> {
    let req = &manifest.requirements;
    if req.arch != arch {
        return Err(RequirementsError::WrongArch {
            image: manifest.name.clone(),
            required: req.arch.clone(),
            actual: arch.to_string(),
        });
    }
    let required: PlatformVersion = req.min_platform.parse()?;
    if *platform_version < required {
        return Err(RequirementsError::PlatformTooOld {
            image: manifest.name.clone(),
            required: required.to_string(),
            actual: platform_version.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> PlatformVersion {
        s.parse().unwrap()
    }

    #[test]
    fn compares_numerically() {
        assert!(v("1.10") > v("1.9"));
        assert!(v("1.2") == v("1.2.0"));
        assert!(v("0.1.0-dev") == v("0.1.0"));
        assert!(v("2") > v("1.99.99"));
        assert!(v("0.1.1") > v("0.1"));
    }

    #[test]
    fn only_capabilities_scoped_to_the_zone_are_grantable() {
        assert_eq!(grantable_capability("NET_ADMIN"), Ok(12));
        for refused in ["SYS_ADMIN", "SYS_MODULE", "MKNOD", "CAP_NET_ADMIN", "net_admin", ""] {
            let err = grantable_capability(refused).unwrap_err();
            assert!(
                err.contains("cannot be granted to a zone (grantable: NET_BROADCAST, NET_ADMIN"),
                "{err}"
            );
        }
    }

    #[test]
    fn rejects_non_numeric() {
        for bad in ["", "1..2", "v1.2", "1.x", "1.2.", "99999999999999999999999"] {
            let err = bad.parse::<PlatformVersion>().unwrap_err();
            assert!(err.to_string().contains("bad platform version"), "{bad}: {err}");
        }
    }
}
