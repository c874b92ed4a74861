//! `ramkey keygen --out DIR/NAME`: a new ed25519 signing key pair, `NAME.secret` (mode 0600)
//! and `NAME.pub`, in the image crate's key file format.

use std::path::{Path, PathBuf};

use clap::Args;
use ramkey_image::keys::{self, KeyError, KeyId};

/// `ramkey keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// DIR/NAME: writes DIR/NAME.secret and DIR/NAME.pub (DIR is created).
    #[arg(long, default_value = "keys/ramkey")]
    pub out: PathBuf,
}

/// Errors writing a key pair.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("creating {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("{path} exists: keys are never overwritten; choose another --out or remove it")]
    Exists { path: PathBuf },
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The two files of a key pair named by `out` (`DIR/NAME`).
pub fn key_paths(out: &Path) -> (PathBuf, PathBuf) {
    let with = |ext: &str| {
        let mut p = out.as_os_str().to_os_string();
        p.push(ext);
        PathBuf::from(p)
    };
    (with(".secret"), with(".pub"))
}

/// Writes a new key pair at `out` and returns its key id.
pub fn write_pair(out: &Path) -> Result<KeyId, KeygenError> {
    let (secret, public) = key_paths(out);
    if let Some(dir) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| KeygenError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    for path in [&secret, &public] {
        if path.exists() {
            return Err(KeygenError::Exists { path: path.clone() });
        }
    }
    let key = keys::generate()?;
    keys::write_secret_file(&secret, &key)?;
    keys::write_public_file(&public, &key.verifying_key())?;
    Ok(KeyId::of(&key.verifying_key()))
}

/// `ramkey keygen`: writes the pair and says where.
pub fn keygen(args: &KeygenArgs) -> Result<(), KeygenError> {
    let id = write_pair(&args.out)?;
    let (secret, public) = key_paths(&args.out);
    println!(
        "key {id}: secret {} (keep it off the box), public {} (trust it in config.toml)",
        secret.display(),
        public.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_a_pair_once() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("k/test");
        let id = write_pair(&out).unwrap();
        let (secret, public) = key_paths(&out);
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let key = keys::read_secret_file(&secret).unwrap();
        assert_eq!(keys::read_public_file(&public).unwrap(), key.verifying_key());
        assert_eq!(KeyId::of(&key.verifying_key()), id);
        assert!(matches!(write_pair(&out), Err(KeygenError::Exists { .. })));
    }
}
