//! The personality definition, `personalities/NAME/personality.toml`: what the image is
//! built from (`base`) and what goes into its manifest (services, ports, volumes, caps,
//! settings). Unknown keys are rejected, a zone-wide `[[health]]` with the image crate's
//! reason ([`ZONE_HEALTH_REFUSED`]); the manifest parts are checked with the image crate's own
//! rules when the definition is loaded, before anything is built.

use std::path::{Path, PathBuf};

use ramkey_image::manifest::{
    MANIFEST_VERSION, Manifest, Payload, Port, Setting, Volume, ZONE_HEALTH_REFUSED, zone_health_at,
};
use ramkey_image::requirements::{ARCH_X86_64, Requirements};
use ramkey_image::runtime::{Runtime, VmShape};
use ramkey_image::service::{Caps, ServiceSpec};
use serde::Deserialize;

/// The definition's file name inside the personality folder.
pub const FILE_NAME: &str = "personality.toml";
/// The folder of extra files inside the personality folder, copied over the base.
pub const FILES_DIR: &str = "files";

/// What the root filesystem is built from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Base {
    /// Debian packages installed by mmdebstrap.
    Debian(DebianBase),
    /// An OCI image archive (`docker save` or an OCI layout tarball), relative to the folder.
    Oci(PathBuf),
    /// Nothing but `files/` (`files = true`).
    Files(bool),
}

/// `base.debian`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebianBase {
    /// Packages to install (their dependencies come along; no recommends).
    pub packages: Vec<String>,
    /// Debian suite; the host's apt sources must carry it.
    #[serde(default = "default_suite")]
    pub suite: String,
}

fn default_suite() -> String {
    "bookworm".into()
}

fn default_min_platform() -> String {
    "0.1".into()
}

/// `personality.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// Image name (`[a-z0-9][a-z0-9._-]*`).
    pub name: String,
    /// Image version (`1.2.3`).
    pub version: String,
    /// One line.
    #[serde(default)]
    pub description: String,
    /// Oldest platform version the image runs on.
    #[serde(default = "default_min_platform")]
    pub min_platform: String,
    /// Timestamp of every file and of the manifest, unless `SOURCE_DATE_EPOCH` is set.
    #[serde(default)]
    pub epoch: Option<u64>,
    /// What the root filesystem is built from.
    pub base: Base,
    /// `zone` (the default) or `vm`; `ramkey image build --vm` makes it `vm`.
    #[serde(default)]
    pub runtime: Runtime,
    /// A VM's size; read when the image is built as a VM.
    #[serde(default)]
    pub vm: VmShape,
    /// Default caps of the zone.
    #[serde(default)]
    pub caps: Caps,
    /// Capabilities beyond a zone's default set (`["NET_ADMIN"]`).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Services the zone runs.
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    /// Ports it listens on.
    #[serde(default)]
    pub ports: Vec<Port>,
    /// Persistent volumes.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Settings the config may give it.
    #[serde(default)]
    pub settings: Vec<Setting>,
}

/// A loaded definition and where it came from.
#[derive(Debug, Clone)]
pub struct Personality {
    /// The personality folder.
    pub dir: PathBuf,
    /// The definition's exact bytes (part of the cache key).
    pub text: String,
    /// The parsed definition.
    pub definition: Definition,
}

/// Errors loading a definition.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("reading {path}: {source}; a personality folder holds {FILE_NAME} and files/")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Personality {
    /// Loads and checks `DIR/personality.toml`.
    pub fn load(dir: &Path) -> Result<Personality, DefinitionError> {
        let path = dir.join(FILE_NAME);
        let text = std::fs::read_to_string(&path).map_err(|source| DefinitionError::Read {
            path: path.clone(),
            source,
        })?;
        let definition = Definition::parse(&text).map_err(|e| match e {
            ParseError::Toml(message) | ParseError::Invalid(message) => DefinitionError::Parse {
                path: path.clone(),
                message,
            },
        })?;
        let invalid = |message: String| DefinitionError::Invalid {
            path: path.clone(),
            message,
        };
        match &definition.base {
            Base::Files(_) if !dir.join(FILES_DIR).is_dir() => {
                return Err(invalid(format!(
                    "base = {{ files = true }} needs a {FILES_DIR}/ folder next to it"
                )));
            }
            Base::Oci(archive) if !dir.join(archive).is_file() => {
                return Err(invalid(format!(
                    "OCI archive {} not found (paths are relative to the personality folder; `docker save` writes one)",
                    dir.join(archive).display()
                )));
            }
            _ => {}
        }
        Ok(Personality {
            dir: dir.to_path_buf(),
            text,
            definition,
        })
    }

    /// `files/`, if the personality has one.
    pub fn files_dir(&self) -> Option<PathBuf> {
        Some(self.dir.join(FILES_DIR)).filter(|p| p.is_dir())
    }
}

/// Why a definition's text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not TOML, or unknown keys, or wrong types (with line and column).
    Toml(String),
    /// Values the schema cannot express.
    Invalid(String),
}

impl Definition {
    /// Parses and checks a definition's text.
    pub fn parse(text: &str) -> Result<Definition, ParseError> {
        if let Some((line, column)) = zone_health_at(text) {
            return Err(ParseError::Invalid(format!(
                "line {line}, column {column}: {ZONE_HEALTH_REFUSED}"
            )));
        }
        let def: Definition = toml::from_str(text).map_err(|e| ParseError::Toml(e.to_string()))?;
        def.check().map_err(ParseError::Invalid)?;
        Ok(def)
    }

    fn check(&self) -> Result<(), String> {
        match &self.base {
            Base::Files(false) => return Err("base: `files = false` builds nothing; use `files = true`".into()),
            Base::Debian(d) if d.packages.is_empty() => {
                return Err("base.debian.packages is empty: name the packages to install".into());
            }
            Base::Debian(d) => {
                let bad = |p: &String| {
                    p.is_empty()
                        || !p
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.:=".contains(&b))
                };
                if let Some(p) = d.packages.iter().find(|p| bad(p)) {
                    return Err(format!("base.debian.packages: `{p}` is not a Debian package name"));
                }
                if d.suite.is_empty() || !d.suite.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    return Err(format!("base.debian.suite: `{}` is not a suite name", d.suite));
                }
            }
            _ => {}
        }
        // The manifest rules (names, versions, services, probes, ports, volumes, settings).
        self.manifest(&"0".repeat(64), "00000000-0000-8000-8000-000000000000", 0)
            .validate()
            .map_err(|e| e.to_string())
    }

    /// The manifest for this definition; `payload` is filled in when the image is assembled.
    pub fn manifest(&self, payload_sha256: &str, uuid: &str, created: u64) -> Manifest {
        Manifest {
            format_version: MANIFEST_VERSION,
            name: self.name.clone(),
            version: self.version.clone(),
            uuid: uuid.into(),
            description: self.description.clone(),
            builder_version: env!("CARGO_PKG_VERSION").into(),
            created,
            payload: Payload {
                sha256: payload_sha256.into(),
                size: 0,
            },
            requirements: Requirements {
                min_platform: self.min_platform.clone(),
                arch: ARCH_X86_64.into(),
                capabilities: self.capabilities.clone(),
            },
            runtime: self.runtime,
            vm: if self.runtime.is_zone() {
                VmShape::default()
            } else {
                self.vm
            },
            caps: self.caps,
            services: self.services.clone(),
            ports: self.ports.clone(),
            volumes: self.volumes.clone(),
            settings: self.settings.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name = \"t\"\nversion = \"1.0\"\nbase = { files = true }\n";

    #[test]
    fn parses_the_three_bases() {
        assert_eq!(Definition::parse(MINIMAL).unwrap().base, Base::Files(true));
        let d = Definition::parse("name = \"t\"\nversion = \"1\"\nbase = { oci = \"a.tar\" }\n").unwrap();
        assert_eq!(d.base, Base::Oci("a.tar".into()));
        let d = Definition::parse("name = \"t\"\nversion = \"1\"\n[base.debian]\npackages = [\"nginx\"]\n").unwrap();
        assert_eq!(
            d.base,
            Base::Debian(DebianBase {
                packages: vec!["nginx".into()],
                suite: "bookworm".into()
            })
        );
    }

    #[test]
    fn the_shipped_personalities_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../personalities");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let text = std::fs::read_to_string(entry.path().join(FILE_NAME)).unwrap();
            let def = Definition::parse(&text).unwrap_or_else(|e| panic!("{}: {e:?}", entry.path().display()));
            names.push(def.name);
        }
        names.sort();
        assert_eq!(names, ["kv", "office", "web"]);
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let unknown = format!("{MINIMAL}colour = \"red\"\n");
        assert!(matches!(Definition::parse(&unknown), Err(ParseError::Toml(m)) if m.contains("colour")));
        let base = "name = \"t\"\nversion = \"1\"\n[base.debian]\npackages = []\nsuit = \"x\"\n";
        assert!(matches!(Definition::parse(base), Err(ParseError::Toml(m)) if m.contains("suit")));
        let empty = "name = \"t\"\nversion = \"1\"\n[base.debian]\npackages = []\n";
        assert!(matches!(Definition::parse(empty), Err(ParseError::Invalid(m)) if m.contains("empty")));
        let name = MINIMAL.replace("\"t\"", "\"Bad Name\"");
        assert!(matches!(Definition::parse(&name), Err(ParseError::Invalid(m)) if m.contains("name")));
        let svc = format!("{MINIMAL}[[services]]\nname = \"a\"\nargv = [\"relative\"]\n");
        assert!(matches!(Definition::parse(&svc), Err(ParseError::Invalid(_))));
        let caps = format!("{MINIMAL}capabilities = [\"SYS_ADMIN\"]\n");
        assert!(
            matches!(Definition::parse(&caps), Err(ParseError::Invalid(m)) if m.contains("requirements.capabilities") && m.contains("`SYS_ADMIN` cannot be granted"))
        );
        let health = format!("{MINIMAL}[[health]]\nname = \"up\"\nprobe = {{ kind = \"tcp\", port = 80 }}\n");
        assert!(
            matches!(Definition::parse(&health), Err(ParseError::Invalid(m)) if m.starts_with("line 4, column 1: zone-wide `[[health]]`") && m.contains("`health` probe"))
        );
        let caps = format!("{MINIMAL}capabilities = [\"NET_ADMIN\"]\n");
        let manifest = Definition::parse(&caps).unwrap().manifest(&"0".repeat(64), "u", 0);
        assert_eq!(manifest.requirements.capabilities, ["NET_ADMIN"]);
    }
}
