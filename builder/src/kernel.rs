//! Kernel intake: Debian's generic `linux-image-6.1.0-N-amd64` package, downloaded with
//! `apt-get download` into the cache (checked against apt's index) or given as a path (its
//! sha256 shown), unpacked once per package sha256.

use std::path::{Path, PathBuf};

use crate::deb::{self, DebError};

/// The kernel series Ramkey is built and tested against (Debian bookworm's).
pub const SERIES: &str = "6.1.0";

/// Where the kernel comes from.
#[derive(Debug, Clone)]
pub enum KernelSource {
    /// A `.deb` the user gave.
    Deb(PathBuf),
    /// The newest `linux-image-6.1.0-N-amd64` apt knows, downloaded into the cache.
    Apt,
}

/// An unpacked kernel package.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `uname -r` of the kernel, e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// The compressed kernel image (bzImage).
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` of the unpacked package.
    pub modules_dir: PathBuf,
    /// The package file it came from.
    pub deb: PathBuf,
    /// The sha256 of that file (lower-case hex).
    pub deb_sha256: String,
}

/// What can go wrong getting the kernel.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(
        "apt knows no linux-image-{SERIES}-N-amd64 package; run `apt-get update`, or give the kernel package with --kernel-deb FILE"
    )]
    NoPackage,
    #[error("{dir}: {what}")]
    Layout { dir: PathBuf, what: String },
    #[error(transparent)]
    Deb(#[from] DebError),
}

/// The cache directory: `$RAMKEY_CACHE`, else `$XDG_CACHE_HOME/ramkey`, else `~/.cache/ramkey`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RAMKEY_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("ramkey");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/ramkey")
}

/// Fetches (if needed) and unpacks (if needed) the kernel, returning its paths.
pub fn obtain(source: &KernelSource, cache: &Path) -> Result<Kernel, KernelError> {
    let deb = match source {
        KernelSource::Deb(path) => {
            let deb = deb::Deb::given(path)?;
            eprintln!(
                "ramkey: kernel package {} as given, not checked against apt's index: sha256 {}",
                deb.path.display(),
                deb.sha256
            );
            deb
        }
        KernelSource::Apt => download(cache)?,
    };
    let unpacked = deb::unpack_cached(&deb, cache)?;
    locate(&unpacked, deb)
}

/// Finds the kernel image and module tree inside an unpacked package.
fn locate(root: &Path, deb: deb::Deb) -> Result<Kernel, KernelError> {
    let layout = |what: &str| KernelError::Layout {
        dir: root.to_path_buf(),
        what: what.to_string(),
    };
    let modules = root.join("lib/modules");
    let release = std::fs::read_dir(&modules)
        .map_err(|_| layout("no lib/modules: is this a linux-image package?"))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .ok_or_else(|| layout("lib/modules is empty"))?;
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
    if !vmlinuz.is_file() {
        return Err(layout(&format!("no boot/vmlinuz-{release}")));
    }
    Ok(Kernel {
        modules_dir: modules.join(&release),
        release,
        vmlinuz,
        deb: deb.path,
        deb_sha256: deb.sha256,
    })
}

/// Picks the newest `linux-image-6.1.0-N-amd64` from `apt-cache show linux-image-amd64`.
pub fn newest_package(apt_cache_show: &str) -> Option<String> {
    let prefix = format!("linux-image-{SERIES}-");
    apt_cache_show
        .lines()
        .filter_map(|l| l.strip_prefix("Depends:"))
        .flat_map(|deps| deps.split(','))
        .filter_map(|dep| dep.split_whitespace().next())
        .filter_map(|name| {
            let abi = name.strip_prefix(&prefix)?.strip_suffix("-amd64")?;
            Some((abi.parse::<u32>().ok()?, name.to_string()))
        })
        .max()
        .map(|(_, name)| name)
}

/// Downloads the newest generic kernel package into the cache, unless a copy whose sha256
/// matches apt's index is already there.
fn download(cache: &Path) -> Result<deb::Deb, KernelError> {
    let show = deb::apt("apt-cache", &["show", "linux-image-amd64"], Path::new("/"))?;
    let package = newest_package(&show).ok_or(KernelError::NoPackage)?;
    Ok(deb::download(&package, cache)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_newest_6_1_generic_package() {
        let show = "Package: linux-image-amd64\nVersion: 6.12.95-1~bpo12+1\nDepends: linux-image-6.12.95+deb12-amd64 (= 6.12.95-1~bpo12+1)\n\n\
                    Package: linux-image-amd64\nVersion: 6.1.192-2\nDepends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)\n\n\
                    Package: linux-image-amd64\nVersion: 6.1.176-1\nDepends: linux-image-6.1.0-50-amd64 (= 6.1.176-1)\n";
        assert_eq!(newest_package(show).as_deref(), Some("linux-image-6.1.0-56-amd64"));
        assert_eq!(newest_package("Depends: linux-image-6.1.0-9-cloud-amd64\n"), None);
    }
}
