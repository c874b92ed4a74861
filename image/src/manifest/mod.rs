//! The manifest: a TOML document describing an image, signed, and carrying the payload's
//! sha256 and size. Parsing dispatches on `format_version`, then checks the typed result.

mod setting;

pub use setting::{Setting, SettingType, SettingValue};

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::requirements::{PlatformVersion, Requirements};
use crate::runtime::{Runtime, VmShape};
use crate::service::{Caps, ServiceError, ServiceSpec, is_name, validate_services};

/// The manifest format version this crate reads and writes.
pub const MANIFEST_VERSION: u32 = 1;

/// Errors parsing or checking a manifest.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ManifestError {
    /// TOML syntax or schema error (unknown key, wrong type, missing field).
    #[error("manifest line {line}, column {column}: {message}")]
    Toml {
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// TOML error without a position.
    #[error("manifest: {message}")]
    TomlNoSpan {
        /// The parser's message.
        message: String,
    },
    /// No `format_version` key.
    #[error("manifest has no format_version; expected format_version = {MANIFEST_VERSION}")]
    MissingVersion,
    /// A `format_version` this reader does not know.
    #[error("manifest format_version {found} is not supported; this reader knows {MANIFEST_VERSION}")]
    UnknownVersion {
        /// The version found.
        found: i64,
    },
    /// A field's value is wrong.
    #[error("manifest field `{field}`: {reason}")]
    Invalid {
        /// The field, dotted.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A zone-wide `[[health]]` table: refused, its checks were never run.
    #[error("manifest line {line}, column {column}: {ZONE_HEALTH_REFUSED}")]
    ZoneHealth {
        /// 1-based line of the `health` key or table.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
    },
    /// A service is wrong.
    #[error("manifest services: {error}")]
    Service {
        /// The service error.
        error: ServiceError,
    },
    /// Serializing failed (a bug, or a value TOML cannot hold).
    #[error("cannot serialize manifest: {message}")]
    Serialize {
        /// The serializer's message.
        message: String,
    },
}

/// The manifest, format version 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`MANIFEST_VERSION`].
    pub format_version: u32,
    /// Image name: `[a-z0-9][a-z0-9._-]*`, at most 64 bytes.
    pub name: String,
    /// Image version, semver-ish: starts with a digit, then `[0-9A-Za-z.+-]`.
    pub version: String,
    /// Image UUID, lowercase `8-4-4-4-12` hex.
    pub uuid: String,
    /// One-line description.
    pub description: String,
    /// Version of the builder that made the image.
    pub builder_version: String,
    /// Creation time, seconds since the Unix epoch (the builder uses `SOURCE_DATE_EPOCH`).
    pub created: u64,
    /// The payload's digest and size; filled in by [`crate::write::assemble`].
    pub payload: Payload,
    /// What the image needs from the platform.
    pub requirements: Requirements,
    /// What runs it: a zone (the default, left out) or a VM.
    #[serde(default, skip_serializing_if = "Runtime::is_zone")]
    pub runtime: Runtime,
    /// A VM's size (`runtime = "vm"` only; the default is left out).
    #[serde(default, skip_serializing_if = "VmShape::is_default")]
    pub vm: VmShape,
    /// Default caps for the zone.
    #[serde(default)]
    pub caps: Caps,
    /// Services to run in the zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceSpec>,
    /// Ports the zone listens on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Persistent volumes mounted into the zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Settings the image accepts from the config.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<Setting>,
}

/// `[payload]`: digest and exact size of the squashfs payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// sha256 of the payload, 64 lowercase hex digits.
    pub sha256: String,
    /// Size of the payload in bytes, before padding.
    pub size: u64,
}

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// A port the zone listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// Port number (> 0).
    pub port: u16,
    /// Protocol.
    pub proto: Proto,
}

/// A named persistent volume and where it is mounted inside the zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// Name, as the config refers to it.
    pub name: String,
    /// Absolute, normalized path inside the image, e.g. `/srv/www`.
    pub path: String,
}

/// Why a zone-wide `[[health]]` table is refused, in a manifest and in a `personality.toml`:
/// nothing ever ran those checks. A service's own `health` probe is run by the zone's
/// supervisor.
pub const ZONE_HEALTH_REFUSED: &str = "zone-wide `[[health]]` checks are not supported (nothing runs \
    them): move each check to the service it watches, as that service's `health` probe \
    (`[[services]]` ... `health = { kind = \"tcp\", port = 80 }`), which the zone's supervisor \
    runs (failures degrade, then restart the service)";

/// The keys read before the whole manifest: its version, and a refused `health`.
#[derive(Deserialize)]
struct VersionProbe {
    format_version: Option<toml::Value>,
    health: Option<toml::Spanned<toml::Value>>,
}

/// The line and column (1-based) of a top-level `health` key or `[[health]]` table in the
/// TOML `text`, if it has one; `None` as well when `text` is not TOML.
pub fn zone_health_at(text: &str) -> Option<(usize, usize)> {
    #[derive(Deserialize)]
    struct HealthProbe {
        health: Option<toml::Spanned<toml::Value>>,
    }
    let probe: HealthProbe = toml::from_str(text).ok()?;
    probe.health.map(|h| health_position(text, &h))
}

/// Where `health` starts: its `[[health]]` header (the span of an array of tables), or the
/// `health` key on the line of an inline value (`health = []`).
fn health_position(text: &str, health: &toml::Spanned<toml::Value>) -> (usize, usize) {
    let start = text.floor_char_boundary(health.span().start.min(text.len()));
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let key = text[line_start..start].find("health").map_or(start, |i| line_start + i);
    line_column(text, key)
}

impl Manifest {
    /// Parse and check a manifest from its TOML text.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        // First only the version (other keys ignored), so a future version's keys are
        // reported as "unsupported version", not as unknown keys.
        let probe: VersionProbe = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        match probe.format_version {
            None => return Err(ManifestError::MissingVersion),
            Some(toml::Value::Integer(v)) if v == i64::from(MANIFEST_VERSION) => {}
            Some(toml::Value::Integer(found)) => {
                return Err(ManifestError::UnknownVersion { found });
            }
            Some(other) => {
                return Err(invalid(
                    "format_version",
                    format!("must be an integer, found {}", other.type_str()),
                ));
            }
        }
        if let Some(health) = &probe.health {
            let (line, column) = health_position(text, health);
            return Err(ManifestError::ZoneHealth { line, column });
        }
        let manifest: Manifest = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The TOML text of this manifest (deterministic: fields in declaration order, maps sorted).
    pub fn to_toml(&self) -> Result<String, ManifestError> {
        toml::to_string(self).map_err(|e| ManifestError::Serialize { message: e.to_string() })
    }

    /// Check values the schema cannot express.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.format_version != MANIFEST_VERSION {
            return Err(ManifestError::UnknownVersion {
                found: i64::from(self.format_version),
            });
        }
        if !is_name(&self.name) {
            return Err(invalid(
                "name",
                format!(
                    "`{}` must match [a-z0-9][a-z0-9._-]* and be at most 64 bytes",
                    self.name
                ),
            ));
        }
        let v = &self.version;
        if !(v.starts_with(|c: char| c.is_ascii_digit())
            && v.len() <= 64
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || b".+-".contains(&b)))
        {
            return Err(invalid("version", format!("`{v}` is not like 1.2.3 or 1.2.3-rc1")));
        }
        if !is_uuid(&self.uuid) {
            return Err(invalid(
                "uuid",
                format!("`{}` is not a lowercase 8-4-4-4-12 hex uuid", self.uuid),
            ));
        }
        if self.description.contains('\n') {
            return Err(invalid("description", "must be one line"));
        }
        if self.builder_version.is_empty() {
            return Err(invalid("builder_version", "must not be empty"));
        }
        let sha = &self.payload.sha256;
        if sha.len() != 64 || !sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid("payload.sha256", "must be 64 lowercase hex digits"));
        }
        self.requirements
            .min_platform
            .parse::<PlatformVersion>()
            .map_err(|e| invalid("requirements.min_platform", e.to_string()))?;
        if self.requirements.arch.is_empty() {
            return Err(invalid("requirements.arch", "must not be empty (x86_64)"));
        }
        for name in &self.requirements.capabilities {
            crate::requirements::grantable_capability(name).map_err(|e| invalid("requirements.capabilities", e))?;
        }
        if self.runtime.is_zone() && !self.vm.is_default() {
            return Err(invalid("vm", "a [vm] table is for runtime = \"vm\" only"));
        }
        self.vm.validate().map_err(|e| invalid("vm", e))?;
        self.caps
            .validate("zone")
            .map_err(|error| ManifestError::Service { error })?;
        validate_services(&self.services).map_err(|error| ManifestError::Service { error })?;
        self.validate_ports_volumes()?;
        self.validate_settings()
    }

    fn validate_ports_volumes(&self) -> Result<(), ManifestError> {
        let mut ports = BTreeSet::new();
        for p in &self.ports {
            if p.port == 0 {
                return Err(invalid("ports", "port 0 is not a port"));
            }
            if !ports.insert((p.port, p.proto)) {
                return Err(invalid("ports", format!("{} {:?} listed twice", p.port, p.proto)));
            }
        }
        let mut names = BTreeSet::new();
        let mut paths = BTreeSet::new();
        for vol in &self.volumes {
            if !is_name(&vol.name) {
                return Err(invalid("volumes", format!("bad volume name `{}`", vol.name)));
            }
            if !is_clean_absolute(&vol.path) {
                return Err(invalid(
                    "volumes",
                    format!(
                        "volume `{}` path `{}` must be absolute, not /, without . or .. or //",
                        vol.name, vol.path
                    ),
                ));
            }
            if !names.insert(&vol.name) || !paths.insert(&vol.path) {
                return Err(invalid(
                    "volumes",
                    format!("volume `{}` or path `{}` listed twice", vol.name, vol.path),
                ));
            }
        }
        Ok(())
    }

    fn validate_settings(&self) -> Result<(), ManifestError> {
        let mut names = BTreeSet::new();
        for s in &self.settings {
            if !is_name(&s.name) || !names.insert(&s.name) {
                return Err(invalid(
                    "settings",
                    format!("bad or duplicate setting name `{}`", s.name),
                ));
            }
            if let Some(d) = &s.default
                && d.kind() != s.kind
            {
                return Err(invalid(
                    "settings",
                    format!("setting `{}` is {:?} but its default is {:?}", s.name, s.kind, d.kind()),
                ));
            }
        }
        Ok(())
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn toml_error(text: &str, e: &toml::de::Error) -> ManifestError {
    let message = e.message().trim_end().to_string();
    match e.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            ManifestError::Toml { line, column, message }
        }
        None => ManifestError::TomlNoSpan { message },
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn is_clean_absolute(path: &str) -> bool {
    path.starts_with('/')
        && path.len() > 1
        && !path.ends_with('/')
        && !path.contains('\0')
        && path[1..].split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_characters() {
        let text = "a = 1\nbé = x\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 11), (2, 5));
    }

    #[test]
    fn zone_health_is_refused_where_it_is_naming_the_service_probe() {
        let head = "format_version = 1\nname = \"t\"\n";
        let table = format!("{head}\n[[health]]\nname = \"site\"\nprobe = {{ kind = \"tcp\", port = 80 }}\n");
        assert_eq!(zone_health_at(&table), Some((4, 1)));
        let err = Manifest::parse(&table).unwrap_err();
        assert_eq!(err, ManifestError::ZoneHealth { line: 4, column: 1 });
        let shown = err.to_string();
        assert!(
            shown.starts_with("manifest line 4, column 1: zone-wide `[[health]]`"),
            "{shown}"
        );
        assert!(shown.contains("that service's `health` probe"), "{shown}");
        let inline = format!("{head}health = []\n");
        assert_eq!(zone_health_at(&inline), Some((3, 1)));
        assert!(matches!(
            Manifest::parse(&inline),
            Err(ManifestError::ZoneHealth { line: 3, .. })
        ));
        // A service's own `health` is not the zone-wide table.
        let service = format!("{head}[[services]]\nname = \"a\"\nhealth = {{ kind = \"tcp\", port = 1 }}\n");
        assert_eq!(zone_health_at(&service), None);
        // The table's own position, not a service's `health` key before it.
        let both = format!("{service}\n[[health]]\nname = \"site\"\nprobe = {{ kind = \"tcp\", port = 80 }}\n");
        assert_eq!(zone_health_at(&both), Some((7, 1)));
        assert_eq!(zone_health_at("not toml ="), None);
        // An unknown version is reported before the table.
        let future = table.replace("format_version = 1", "format_version = 2");
        assert!(matches!(
            Manifest::parse(&future),
            Err(ManifestError::UnknownVersion { found: 2 })
        ));
    }

    #[test]
    fn uuids_and_paths() {
        assert!(is_uuid("0f2c9a7e-3d4b-4c1a-9e8f-123456789abc"));
        assert!(!is_uuid("0F2C9A7E-3D4B-4C1A-9E8F-123456789ABC"));
        assert!(!is_uuid("0f2c9a7e3d4b4c1a9e8f123456789abc"));
        assert!(is_clean_absolute("/srv/www"));
        for bad in ["srv", "/", "/srv/", "/srv/../etc", "/srv//www", "/./srv"] {
            assert!(!is_clean_absolute(bad), "{bad}");
        }
    }
}
