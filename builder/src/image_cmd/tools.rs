//! `ramkey image inspect|verify|list`: read images from their end (footer, manifest) without
//! mounting; `verify` also streams the payload through the image crate's verifier.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ramkey_image::check::Check;
use ramkey_image::keys::{self, KeyError, KeyId};
use ramkey_image::manifest::{Proto, SettingValue};
use ramkey_image::read::{self, Image, ReadError};
use ramkey_image::requirements::{ARCH_X86_64, RequirementsError};
use ramkey_image::verify::{self, Platform, VerifyError};

/// Errors of the image tools.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("verification failed: {0}")]
    Verify(#[from] VerifyError),
    #[error("--platform: {0}")]
    Platform(RequirementsError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn signer(image: &Image) -> String {
    if image.signature.is_some() {
        image.footer.key_id.to_string()
    } else {
        "unsigned".into()
    }
}

fn probe(check: &Check) -> String {
    match check {
        Check::Tcp { port } => format!("tcp {port}"),
        Check::Http { url, expect_status } => format!("http {url} -> {expect_status}"),
        Check::Exec { argv } => format!("exec {}", argv.join(" ")),
    }
}

/// The text of `ramkey image inspect`: manifest summary, sizes and signer (not verified).
pub fn inspect(file: &Path, raw_manifest: bool) -> Result<String, ToolsError> {
    let image = read::open(file)?;
    if raw_manifest {
        return Ok(String::from_utf8_lossy(&image.manifest_bytes).into_owned());
    }
    let m = &image.manifest;
    let f = &image.footer;
    let mut s = String::new();
    let _ = writeln!(s, "image:        {}", file.display());
    let _ = writeln!(s, "name:         {} {}", m.name, m.version);
    let _ = writeln!(s, "uuid:         {}", m.uuid);
    let _ = writeln!(s, "description:  {}", m.description);
    let _ = writeln!(s, "created:      {} (builder {})", m.created, m.builder_version);
    let _ = writeln!(
        s,
        "requires:     platform >= {}, {}",
        m.requirements.min_platform, m.requirements.arch
    );
    if !m.requirements.capabilities.is_empty() {
        let _ = writeln!(
            s,
            "capabilities: {} (beyond a zone's default set)",
            m.requirements.capabilities.join(", ")
        );
    }
    let _ = writeln!(s, "file size:    {} bytes", image.file_len);
    let _ = writeln!(s, "payload:      {} bytes, sha256 {}", f.payload_size, m.payload.sha256);
    let _ = writeln!(
        s,
        "manifest:     {} bytes at offset {}",
        f.manifest_size, f.manifest_offset
    );
    let signature = match image.signature {
        Some(_) => format!("signed by key {} (not checked: use `ramkey image verify`)", f.key_id),
        None => "unsigned (the init refuses it)".into(),
    };
    let _ = writeln!(s, "signature:    {signature}");
    let caps = &m.caps;
    let caps: Vec<String> = [
        caps.memory_mib.map(|v| format!("memory {v} MiB")),
        caps.cpu_percent.map(|v| format!("cpu {v}%")),
        caps.pids.map(|v| format!("pids {v}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !caps.is_empty() {
        let _ = writeln!(s, "caps:         {}", caps.join(", "));
    }
    for svc in &m.services {
        let _ = writeln!(s, "service:      {}: {}", svc.name, svc.argv.join(" "));
        if let Some(health) = &svc.health {
            let _ = writeln!(s, "health:       {}: {}", svc.name, probe(&health.check));
        }
    }
    for p in &m.ports {
        let proto = match p.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        let _ = writeln!(s, "port:         {}/{proto}", p.port);
    }
    for v in &m.volumes {
        let _ = writeln!(s, "volume:       {} at {}", v.name, v.path);
    }
    for st in &m.settings {
        let default = match &st.default {
            None => "required".to_string(),
            Some(SettingValue::String(v)) => format!("default {v:?}"),
            Some(SettingValue::Int(v)) => format!("default {v}"),
            Some(SettingValue::Bool(v)) => format!("default {v}"),
        };
        let kind = format!("{:?}", st.kind).to_lowercase();
        let _ = writeln!(s, "setting:      {} ({kind}, {default}): {}", st.name, st.description);
    }
    Ok(s)
}

/// `ramkey image verify`: the one-line success message, or why it failed.
pub fn verify(file: &Path, keys: &[PathBuf], platform: &str) -> Result<String, ToolsError> {
    let trusted = keys
        .iter()
        .map(|k| keys::read_public_file(k))
        .collect::<Result<Vec<_>, _>>()?;
    let platform = Platform {
        version: platform.parse().map_err(ToolsError::Platform)?,
        arch: ARCH_X86_64.into(),
    };
    let image = read::open(file)?;
    let verified = verify::verify(image, &trusted, &platform)?;
    let m = verified.manifest();
    Ok(format!(
        "{}: OK: {} {} signed by key {}, payload {} bytes sha256 {}",
        file.display(),
        m.name,
        m.version,
        verified.key_id(),
        m.payload.size,
        m.payload.sha256
    ))
}

/// `ramkey image list`: one line per `.rkimg` in `dir`, sorted by file name.
pub fn list(dir: &Path) -> Result<String, ToolsError> {
    let io = |source| ToolsError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ramkey_image::EXTENSION))
        .collect();
    files.sort();
    let mut s = format!("{:<16} {:<12} {:>12} {:<16} FILE\n", "NAME", "VERSION", "SIZE", "KEY");
    for f in files {
        let shown = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match read::open(&f) {
            Ok(image) => {
                let _ = writeln!(
                    s,
                    "{:<16} {:<12} {:>12} {:<16} {shown}",
                    image.manifest.name,
                    image.manifest.version,
                    image.file_len,
                    signer(&image)
                );
            }
            Err(e) => {
                let _ = writeln!(s, "{:<16} {:<12} {:>12} {:<16} {shown}: {e}", "?", "?", "?", "?");
            }
        }
    }
    Ok(s)
}

/// The key id of a public key file (for messages and tests).
pub fn public_key_id(path: &Path) -> Result<KeyId, ToolsError> {
    Ok(KeyId::of(&keys::read_public_file(path)?))
}
