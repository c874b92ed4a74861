//! Verifying a bundle front to back: the header, the signature by a trusted key, the version
//! against the running platform, then the kernel and initrd hashed while they are copied
//! out, then the end of the file. What was copied is trustworthy only once this returns Ok.

use std::io::{self, Read, Write};

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use super::{BundleError, Header, Manifest, Part, read_manifest, signed_message};
use crate::footer::hex;
use crate::keys::KeyId;
use crate::requirements::PlatformVersion;

/// A bundle that verified.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Its manifest.
    pub manifest: Manifest,
    /// The trusted key that signed it.
    pub key_id: KeyId,
    /// Its size in bytes.
    pub size: u64,
}

/// Verify the bundle read from `reader` against the `trusted` keys and, when given, the
/// `running` platform version (an older bundle is refused unless `allow_downgrade`; the
/// same version is accepted, a reinstall). Reads the whole bundle.
pub fn verify<R: Read>(
    reader: R,
    trusted: &[VerifyingKey],
    running: Option<&str>,
    allow_downgrade: bool,
) -> Result<Verified, BundleError> {
    verify_into(
        reader,
        trusted,
        running,
        allow_downgrade,
        &mut io::sink(),
        &mut io::sink(),
    )
}

/// [`verify`], writing the kernel to `kernel_out` and the initrd to `initrd_out` as they
/// stream by. Nothing is written before the signature and version checked; on an error the
/// outputs may hold part of a part and must be discarded.
pub fn verify_into<R: Read>(
    mut reader: R,
    trusted: &[VerifyingKey],
    running: Option<&str>,
    allow_downgrade: bool,
    kernel_out: &mut dyn Write,
    initrd_out: &mut dyn Write,
) -> Result<Verified, BundleError> {
    let header = read_manifest(&mut reader)?;
    let key_id = check_signature(&header, trusted)?;
    let manifest = &header.manifest;
    let version: PlatformVersion = manifest.version.parse()?;
    if let Some(running) = running {
        let running: PlatformVersion = running.parse()?;
        if version < running && !allow_downgrade {
            return Err(BundleError::Older {
                version: manifest.version.clone(),
                running: running.to_string(),
            });
        }
    }
    let expected = header.bundle_size();
    let mut at = header.len();
    copy_part(&mut reader, "kernel", &manifest.kernel, kernel_out, &mut at, expected)?;
    copy_part(&mut reader, "initrd", &manifest.initrd, initrd_out, &mut at, expected)?;
    let mut extra = [0u8; 1];
    loop {
        match reader.read(&mut extra) {
            Ok(0) => break,
            Ok(_) => return Err(BundleError::Trailing { at }),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                return Err(BundleError::Io {
                    what: "reading the platform bundle".into(),
                    error,
                });
            }
        }
    }
    Ok(Verified {
        manifest: header.manifest,
        key_id,
        size: expected,
    })
}

fn check_signature(header: &Header, trusted: &[VerifyingKey]) -> Result<KeyId, BundleError> {
    let Some(signature) = &header.signature else {
        return Err(BundleError::Unsigned);
    };
    let key_id = header.key_id;
    let candidates: Vec<&VerifyingKey> = trusted.iter().filter(|k| KeyId::of(k) == key_id).collect();
    if candidates.is_empty() {
        let ids: Vec<String> = trusted.iter().map(|k| KeyId::of(k).to_string()).collect();
        return Err(BundleError::UntrustedKey {
            key_id,
            trusted: if ids.is_empty() { "none".into() } else { ids.join(", ") },
        });
    }
    let message = signed_message(&header.manifest_bytes);
    if candidates.iter().any(|k| k.verify_strict(&message, signature).is_ok()) {
        Ok(key_id)
    } else {
        Err(BundleError::BadSignature { key_id })
    }
}

/// Copy `part.size` bytes to `out`, hashing them; `at` counts the bundle's bytes read.
fn copy_part<R: Read>(
    reader: &mut R,
    name: &'static str,
    part: &Part,
    out: &mut dyn Write,
    at: &mut u64,
    expected: u64,
) -> Result<(), BundleError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = part.size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match reader.read(&mut buf[..want]) {
            Ok(0) => return Err(BundleError::Truncated { at: *at, expected }),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                return Err(BundleError::Io {
                    what: "reading the platform bundle".into(),
                    error,
                });
            }
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|error| BundleError::Io {
            what: format!("writing the {name}"),
            error,
        })?;
        *at += n as u64;
        left -= n as u64;
    }
    let actual = hex(&hasher.finalize());
    if actual != part.sha256 {
        return Err(BundleError::DigestMismatch {
            part: name,
            expected: part.sha256.clone(),
            actual,
        });
    }
    Ok(())
}
