//! Writing a bundle: hash the kernel and initrd, write the signed manifest, then copy the
//! two files behind it (hashing again, so a file changed in between is an error, not a
//! bundle whose digest lies).

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

use super::{BundleError, FORMAT, MAGIC, MAX_MANIFEST_LEN, Manifest, Part, signed_message};
use crate::footer::hex;
use crate::keys::KeyId;
use crate::requirements::PlatformVersion;

/// What the manifest says besides the parts.
#[derive(Debug, Clone)]
pub struct Release {
    /// The platform version (dotted numbers).
    pub version: String,
    /// The kernel's release.
    pub kernel_release: String,
    /// Build time, seconds since the epoch.
    pub created: u64,
    /// Version of the writing `ramkey`.
    pub builder_version: String,
}

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> BundleError {
    let what = what.to_string();
    move |error| BundleError::Io { what, error }
}

/// Size and sha256 of `reader`'s bytes, copied to `out`.
fn copy_hashing(mut reader: impl Read, out: &mut impl Write, what: &Path) -> Result<Part, BundleError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(what.display())(e)),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(io_err("writing the platform bundle"))?;
        size += n as u64;
    }
    Ok(Part {
        size,
        sha256: hex(&hasher.finalize()),
    })
}

fn open(path: &Path) -> Result<BufReader<File>, BundleError> {
    File::open(path).map(BufReader::new).map_err(io_err(path.display()))
}

/// Write a bundle of `kernel` and `initrd` signed by `key` to `out`; returns its manifest.
/// The same inputs give the same bytes.
pub fn write<W: Write>(
    kernel: &Path,
    initrd: &Path,
    release: &Release,
    key: &SigningKey,
    out: W,
) -> Result<Manifest, BundleError> {
    release.version.parse::<PlatformVersion>()?;
    let kernel_part = copy_hashing(open(kernel)?, &mut io::sink(), kernel)?;
    let initrd_part = copy_hashing(open(initrd)?, &mut io::sink(), initrd)?;
    let manifest = Manifest {
        format: FORMAT,
        version: release.version.clone(),
        kernel_release: release.kernel_release.clone(),
        created: release.created,
        builder_version: release.builder_version.clone(),
        kernel: kernel_part,
        initrd: initrd_part,
    };
    let text = toml::to_string(&manifest).map_err(|e| BundleError::Manifest { message: e.to_string() })?;
    let bytes = text.into_bytes();
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    if len > MAX_MANIFEST_LEN {
        return Err(BundleError::ManifestLength { len });
    }
    let signature = key.sign(&signed_message(&bytes));
    let mut out = BufWriter::new(out);
    let io = io_err("writing the platform bundle");
    let header = [
        &MAGIC[..],
        &len.to_le_bytes(),
        &bytes,
        &signature.to_bytes(),
        &KeyId::of(&key.verifying_key()).0,
    ]
    .concat();
    out.write_all(&header).map_err(io)?;
    for (path, part) in [(kernel, &manifest.kernel), (initrd, &manifest.initrd)] {
        if copy_hashing(open(path)?, &mut out, path)? != *part {
            return Err(io_err(path.display())(io::Error::other(
                "changed while the bundle was being written",
            )));
        }
    }
    out.flush().map_err(io_err("writing the platform bundle"))?;
    Ok(manifest)
}

/// [`write`] to the file `out`, through `out.partial` renamed into place, so a failed build
/// never leaves a half-written bundle under the final name.
pub fn write_file(
    kernel: &Path,
    initrd: &Path,
    release: &Release,
    key: &SigningKey,
    out: &Path,
) -> Result<Manifest, BundleError> {
    let mut partial = PathBuf::from(out.as_os_str());
    partial.as_mut_os_string().push(".partial");
    let file = File::create(&partial).map_err(io_err(partial.display()))?;
    let result = write(kernel, initrd, release, key, &file)
        .and_then(|m| file.sync_all().map(|()| m).map_err(io_err(partial.display())));
    match result {
        Ok(m) => {
            fs::rename(&partial, out).map_err(io_err(out.display()))?;
            Ok(m)
        }
        Err(e) => {
            let _ = fs::remove_file(&partial);
            Err(e)
        }
    }
}
