//! The appliance definition (`appliance.toml`): what an appliance is made of — the kernel,
//! the platform's modules, extras and branding, the usbkey's default config and size, the
//! personalities on the stick, and the PXE config URL. Paths are relative to the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::initramfs::Compression;
use crate::modules::DEFAULT_MODULES;

/// A parsed appliance with its paths resolved.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Appliance {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub kernel: Kernel,
    #[serde(default)]
    pub platform: Platform,
    #[serde(default)]
    pub usbkey: Usbkey,
    #[serde(default)]
    pub pxe: Pxe,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    /// A `linux-image-6.1.0-N-amd64` package; default: the newest apt knows.
    pub deb: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// Module sets (`default` = all of them, or one of the named sets) and module names.
    pub modules: Vec<String>,
    /// Debian packages whose files go into the platform.
    pub extras: Vec<String>,
    /// Files copied verbatim into the platform root.
    pub overlay: Option<PathBuf>,
    /// Replaces `/etc/motd`.
    pub motd: Option<String>,
    /// Kernel command line of every boot entry.
    pub cmdline: String,
    #[serde(deserialize_with = "compression")]
    pub compression: Compression,
}

impl Default for Platform {
    fn default() -> Platform {
        Platform {
            modules: vec!["default".into()],
            extras: Vec::new(),
            overlay: None,
            motd: None,
            cmdline: "console=tty0 console=ttyS0,115200n8 panic=10".into(),
            compression: Compression::Gzip,
        }
    }
}

fn compression<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Compression, D::Error> {
    match String::deserialize(d)?.as_str() {
        "gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        other => Err(serde::de::Error::custom(format!(
            "unknown compression {other:?}: use \"gzip\" or \"zstd\""
        ))),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usbkey {
    /// The default `config.toml` written to the stick.
    pub config: Option<PathBuf>,
    /// Size of `usb.img`; the FAT partition leaves room for slot B and personalities.
    pub size_mib: u64,
    /// Personality images (`.rkimg`) put into `/personalities/`.
    pub personalities: Vec<PathBuf>,
}

impl Default for Usbkey {
    fn default() -> Usbkey {
        Usbkey {
            config: None,
            size_mib: 1024,
            personalities: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pxe {
    /// `ramkey.config=` for PXE boots; `${mac}` is replaced by the booting NIC's address.
    pub config_url: Option<String>,
    /// Public key lines (`ramkey-ed25519-public ...`, as `ramkey keygen` writes them): the
    /// platform then takes a fetched config only with a signature by one of them
    /// (`URL.sig`, `ramkey config --file F sign --key K`).
    #[serde(default)]
    pub config_keys: Vec<String>,
}

/// What can go wrong reading an appliance.
#[derive(Debug, thiserror::Error)]
pub enum ApplianceError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl Appliance {
    /// Reads `path` and resolves its relative paths against the file's folder.
    pub fn load(path: &Path) -> Result<Appliance, ApplianceError> {
        let text = std::fs::read_to_string(path).map_err(|source| ApplianceError::Read {
            path: path.into(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Appliance::parse(&text, path, base)
    }

    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Appliance, ApplianceError> {
        let mut a: Appliance = toml::from_str(text).map_err(|e| {
            let message = match e.span() {
                Some(span) => {
                    let line = text[..span.start].matches('\n').count() + 1;
                    let col = span.start - text[..span.start].rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!("{line}:{col}: {}", e.message())
                }
                None => e.message().to_string(),
            };
            ApplianceError::Parse {
                path: path.into(),
                message,
            }
        })?;
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        a.kernel.deb.as_mut().map(resolve);
        a.platform.overlay.as_mut().map(resolve);
        a.usbkey.config.as_mut().map(resolve);
        a.usbkey.personalities.iter_mut().for_each(resolve);
        for line in &a.pxe.config_keys {
            ramkey_image::keys::decode_public(line, "[pxe] config_keys").map_err(|e| ApplianceError::Parse {
                path: path.into(),
                message: e.to_string(),
            })?;
        }
        for name in &a.platform.modules {
            if name.is_empty() {
                return Err(ApplianceError::Parse {
                    path: path.into(),
                    message: "empty module name".into(),
                });
            }
        }
        Ok(a)
    }

    /// The module names the platform carries, with sets expanded.
    pub fn module_names(&self) -> Vec<&str> {
        let mut names = Vec::new();
        for entry in &self.platform.modules {
            match entry.as_str() {
                "default" => names.extend(DEFAULT_MODULES.iter().flat_map(|(_, set)| set.iter().copied())),
                other => match DEFAULT_MODULES.iter().find(|(set, _)| *set == other) {
                    Some((_, set)) => names.extend(set.iter().copied()),
                    None => names.push(other),
                },
            }
        }
        names.sort_unstable();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_relative_paths() {
        let text = "name = \"demo\"\n[usbkey]\nconfig = \"cfg/config.toml\"\nsize_mib = 256\npersonalities = []\n";
        let a = Appliance::parse(text, Path::new("/src/appliance.toml"), Path::new("/src")).unwrap();
        assert_eq!(a.usbkey.config.as_deref(), Some(Path::new("/src/cfg/config.toml")));
        assert_eq!(a.platform.compression, Compression::Gzip);
        assert!(a.module_names().contains(&"virtio_net"));
    }

    #[test]
    fn module_sets_expand_and_names_pass_through() {
        let text = "name = \"x\"\n[platform]\nmodules = [\"usb\", \"btrfs\"]\nextras = []\ncmdline = \"\"\ncompression = \"zstd\"\n";
        let a = Appliance::parse(text, Path::new("a.toml"), Path::new(".")).unwrap();
        let names = a.module_names();
        assert!(names.contains(&"usb_storage") && names.contains(&"btrfs") && !names.contains(&"virtio_net"));
        assert_eq!(a.platform.compression, Compression::Zstd);
    }

    #[test]
    fn unknown_keys_are_reported_with_their_place() {
        let err = Appliance::parse(
            "name = \"x\"\n[usbkey]\nsize = 3\n",
            Path::new("a.toml"),
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("a.toml: 3:1: unknown field `size`"), "{err}");
    }
}
