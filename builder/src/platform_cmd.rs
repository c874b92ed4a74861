//! `ramkey platform verify`: check a platform bundle (`platform.rkup`) on the workstation
//! as a box will before writing it to a slot: signer, version, kernel and initrd digests.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use ramkey_image::bundle::{self, BundleError};
use ramkey_image::keys::{self, KeyError};

/// `ramkey platform ...`.
#[derive(Debug, Args)]
pub struct PlatformArgs {
    #[command(subcommand)]
    pub command: PlatformCommand,
}

/// The `ramkey platform` subcommands.
#[derive(Debug, Subcommand)]
pub enum PlatformCommand {
    /// Verify a platform bundle's signature, version and contents (exit 1 if it fails).
    Verify {
        /// The bundle (`OUT/platform.rkup`).
        file: PathBuf,
        /// A trusted public key file (repeatable).
        #[arg(long, required = true)]
        key: Vec<PathBuf>,
        /// The platform version it would replace: an older bundle is refused.
        #[arg(long)]
        running: Option<String>,
        /// Accept a bundle older than --running.
        #[arg(long)]
        allow_downgrade: bool,
    },
}

/// Errors of `ramkey platform`.
#[derive(Debug, thiserror::Error)]
pub enum PlatformCmdError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{path}: {error}")]
    Bundle { path: PathBuf, error: BundleError },
}

/// Runs a `ramkey platform` subcommand, printing its result on stdout.
pub fn cli(args: &PlatformArgs) -> Result<(), PlatformCmdError> {
    match &args.command {
        PlatformCommand::Verify {
            file,
            key,
            running,
            allow_downgrade,
        } => {
            println!("{}", verify(file, key, running.as_deref(), *allow_downgrade)?);
            Ok(())
        }
    }
}

/// The text of `ramkey platform verify`.
pub fn verify(
    file: &Path,
    keys: &[PathBuf],
    running: Option<&str>,
    allow_downgrade: bool,
) -> Result<String, PlatformCmdError> {
    let trusted = keys
        .iter()
        .map(|k| keys::read_public_file(k))
        .collect::<Result<Vec<_>, _>>()?;
    let bundle_err = |error| PlatformCmdError::Bundle {
        path: file.to_path_buf(),
        error,
    };
    let reader = std::fs::File::open(file).map_err(|error| {
        bundle_err(BundleError::Io {
            what: "opening".into(),
            error,
        })
    })?;
    let v = bundle::verify(BufReader::new(reader), &trusted, running, allow_downgrade).map_err(bundle_err)?;
    let m = &v.manifest;
    Ok(format!(
        "{}: OK: platform {} (kernel {}), {} bytes, signed by key {}",
        file.display(),
        m.version,
        m.kernel_release,
        v.size,
        v.key_id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ramkey_image::SigningKey;

    #[test]
    fn verifies_and_refuses_with_the_files_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("vmlinuz"), b"kernel").unwrap();
        std::fs::write(p.join("initrd.img"), b"initrd").unwrap();
        let key = SigningKey::from_bytes(&[42; 32]);
        let pubkey = p.join("k.pub");
        keys::write_public_file(&pubkey, &key.verifying_key()).unwrap();
        let release = bundle::Release {
            version: "1.2.0".into(),
            kernel_release: "6.1.0-31-amd64".into(),
            created: 0,
            builder_version: "0.1.0".into(),
        };
        let file = p.join("platform.rkup");
        bundle::write_file(&p.join("vmlinuz"), &p.join("initrd.img"), &release, &key, &file).unwrap();
        let ok = verify(&file, std::slice::from_ref(&pubkey), Some("1.1"), false).unwrap();
        let id = keys::KeyId::of(&key.verifying_key());
        let want = format!(
            ": OK: platform 1.2.0 (kernel 6.1.0-31-amd64), {} bytes, signed by key {id}",
            std::fs::metadata(&file).unwrap().len()
        );
        assert!(ok.ends_with(&want), "{ok}");
        let err = verify(&file, &[pubkey], Some("2.0"), false).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}: platform bundle is version 1.2.0, older than",
                file.display()
            )),
            "{err}"
        );
    }
}
