//! `ramkey image build`: definition → root filesystem → squashfs → signed `.rkimg`, with a
//! cache keyed by every input, so an unchanged rebuild copies the stored image.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ramkey_image::SigningKey;
use ramkey_image::keys::{self, KeyError, KeyId};
use ramkey_image::runtime::Runtime;
use ramkey_image::write::{self, WriteError};
use sha2::{Digest, Sha256};

use super::cache::{self, Entry, Key};
use super::definition::{Base, Definition, DefinitionError, Personality};
use super::oci::{self, OciError};
use super::progress::Progress;
use super::rootfs::{self, RootfsError};
use super::squashfs;

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Output folder: the image is `OUT/NAME-VERSION.rkimg`.
    pub out: PathBuf,
    /// The secret key file.
    pub key: PathBuf,
    /// The cache folder (none: no cache).
    pub cache: Option<PathBuf>,
    /// Use the cache (else build, and still store the result).
    pub use_cache: bool,
    /// The epoch; `None`: `SOURCE_DATE_EPOCH`, else the definition's `epoch`, else 0.
    pub epoch: Option<u64>,
    /// Show a spinner and step times on stderr.
    pub progress: bool,
    /// Build a VM personality whatever the definition's `runtime` says (`--vm`).
    pub vm: bool,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// Image name and version.
    pub name: String,
    pub version: String,
    /// The image file.
    pub image: PathBuf,
    /// Its size, and its payload's.
    pub size: u64,
    pub payload_size: u64,
    /// Who signed it.
    pub key_id: KeyId,
    /// The cache key (`None`: the inputs could not be pinned, nothing cached).
    pub cache_key: Option<String>,
    /// Copied from the cache.
    pub cached: bool,
    /// Installed Debian packages and the sum of their Installed-Size.
    pub entry: Entry,
    /// Wall time.
    pub seconds: f64,
}

impl fmt::Display for BuildReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {} ({} bytes, payload {}), key {}, {}{:.1} s",
            self.name,
            self.version,
            self.image.display(),
            self.size,
            self.payload_size,
            self.key_id,
            if self.cached { "from cache, " } else { "" },
            self.seconds
        )?;
        if self.entry.packages > 0 {
            let installed = self.entry.installed_kib * 1024;
            write!(
                f,
                "\n  {} packages, Installed-Size {} KiB; image/installed = {:.3}",
                self.entry.packages,
                self.entry.installed_kib,
                self.size as f64 / installed as f64
            )?;
        }
        Ok(())
    }
}

/// Errors building an image.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error("signing key: {0}; create one with `ramkey keygen --out keys/ramkey`")]
    Key(#[from] KeyError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error("OCI base: {0}")]
    Oci(#[from] OciError),
    #[error("writing the image: {0}")]
    Write(#[from] WriteError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{personality}: {what} `{path}` is not in the image (check the base's packages or files/)")]
    MissingProgram {
        personality: String,
        what: String,
        path: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The epoch of a build: explicit, else `SOURCE_DATE_EPOCH`, else the definition's, else 0.
pub fn epoch(explicit: Option<u64>, definition: Option<u64>) -> u64 {
    explicit
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok()?.trim().parse().ok())
        .or(definition)
        .unwrap_or(0)
}

/// A uuid from name, version and payload digest: sha256, first 16 bytes, marked as a
/// version 8 (custom) RFC 9562 uuid. The same image always has the same uuid.
pub fn derive_uuid(name: &str, version: &str, payload_sha256: &str) -> String {
    let digest = Sha256::digest(format!("ramkey-image-uuid\0{name}\0{version}\0{payload_sha256}"));
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// The cache key of a build, or `None` when the base cannot be pinned (then nothing is cached).
fn cache_key(p: &Personality, epoch: u64, key: &SigningKey, progress: &Progress) -> Result<Option<String>, BuildError> {
    let mut k = Key::new();
    k.part("builder", env!("CARGO_PKG_VERSION").as_bytes());
    k.part("definition", p.text.as_bytes());
    if let Some(files) = p.files_dir() {
        k.tree("files", &files).map_err(io(&files))?;
    }
    match &p.definition.base {
        Base::Debian(base) => {
            let set = progress.step("resolving packages", || Ok::<_, BuildError>(rootfs::resolve(base)))?;
            let Some(set) = set else { return Ok(None) };
            k.part("packages", set.as_bytes());
            k.part("variant", rootfs::VARIANT.as_bytes());
            k.part("dpkg", rootfs::DPKG_EXCLUDES.join("\n").as_bytes());
        }
        Base::Oci(archive) => {
            let path = p.dir.join(archive);
            k.part("oci", cache::file_sha256(&path).map_err(io(&path))?.as_bytes());
        }
        Base::Files(_) => k.part("files-only", b""),
    }
    k.part("epoch", &epoch.to_le_bytes());
    k.part("key", key.verifying_key().as_bytes());
    k.part("mksquashfs", squashfs::tool_version().as_bytes());
    k.part("mksquashfs options", squashfs::OPTIONS.join(" ").as_bytes());
    Ok(Some(k.finish()))
}

/// Whether `path` (absolute, inside the image) exists in `root`, following symlinks inside it.
pub fn exists_in(root: &Path, path: &str) -> bool {
    let mut current = PathBuf::from(path.trim_start_matches('/'));
    for _ in 0..40 {
        let mut resolved = PathBuf::new();
        let mut redirected = None;
        for c in current.components() {
            resolved.push(c);
            match fs::read_link(root.join(&resolved)) {
                Ok(target) => {
                    let base = resolved.parent().unwrap_or(Path::new("")).to_path_buf();
                    let rest: PathBuf = current.strip_prefix(&resolved).unwrap_or(Path::new("")).into();
                    let t = if target.is_absolute() {
                        target.strip_prefix("/").unwrap_or(&target).to_path_buf()
                    } else {
                        base.join(target)
                    };
                    redirected = Some(t.join(rest));
                    break;
                }
                Err(_) => continue,
            }
        }
        match redirected {
            Some(next) => {
                // Normalise `..` without leaving the root.
                let mut n = PathBuf::new();
                for c in next.components() {
                    match c {
                        std::path::Component::ParentDir => {
                            n.pop();
                        }
                        std::path::Component::Normal(s) => n.push(s),
                        _ => {}
                    }
                }
                current = n;
            }
            None => return fs::symlink_metadata(root.join(&current)).is_ok(),
        }
    }
    false
}

/// Builds the image of the personality in `dir`.
pub fn build(dir: &Path, opts: &BuildOptions) -> Result<BuildReport, BuildError> {
    let started = Instant::now();
    let progress = Progress::new(opts.progress);
    let mut p = Personality::load(dir)?;
    if opts.vm {
        p.definition.runtime = Runtime::Vm;
    }
    let def = &p.definition;
    let epoch = epoch(opts.epoch, def.epoch);
    let key = keys::read_secret_file(&opts.key)?;
    let key_id = KeyId::of(&key.verifying_key());
    fs::create_dir_all(&opts.out).map_err(io(&opts.out))?;
    let out = opts
        .out
        .join(format!("{}-{}.{}", def.name, def.version, ramkey_image::EXTENSION));
    let cache_key = match &opts.cache {
        Some(_) => cache_key(&p, epoch, &key, &progress)?,
        None => None,
    };
    let report = |entry: Entry, cached: bool| -> Result<BuildReport, BuildError> {
        let image = ramkey_image::read::open(&out).map_err(|e| BuildError::Io {
            path: out.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(BuildReport {
            name: def.name.clone(),
            version: def.version.clone(),
            image: out.clone(),
            size: image.file_len,
            payload_size: image.footer.payload_size,
            key_id,
            cache_key: cache_key.clone(),
            cached,
            entry,
            seconds: started.elapsed().as_secs_f64(),
        })
    };
    if let (Some(cdir), Some(ck), true) = (&opts.cache, &cache_key, opts.use_cache)
        && let Some((cached, entry)) = cache::lookup(cdir, ck)
    {
        let partial = out.with_extension("rkimg.partial");
        reuse(&cached, def, epoch, &key, &partial)?;
        fs::rename(&partial, &out).map_err(io(&out))?;
        return report(entry, true);
    }

    let work = tempfile::Builder::new()
        .prefix("ramkey-image-")
        .tempdir()
        .map_err(io(Path::new("temporary folder")))?;
    let root = work.path().join("root");
    match &def.base {
        Base::Debian(base) => {
            let what = format!("mmdebstrap {} ({})", base.suite, base.packages.join(", "));
            progress.step(&what, || rootfs::debian(base, &root, epoch, work.path()))?;
        }
        Base::Oci(archive) => {
            let path = p.dir.join(archive);
            progress.step("flattening OCI layers", || oci::flatten(&path, &root, work.path()))?;
            rootfs::scrub(&root)?;
        }
        Base::Files(_) => fs::create_dir_all(&root).map_err(io(&root))?,
    }
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).map_err(io(&root))?;
    }
    if let Some(files) = p.files_dir() {
        rootfs::overlay(&files, &root)?;
    }
    check_programs(&p, &root)?;
    let packages = rootfs::installed_packages(&root);
    let entry = Entry {
        packages: packages.len(),
        installed_kib: packages.values().sum(),
    };
    let payload = work.path().join("payload.sqfs");
    let all_root = matches!(def.base, Base::Files(_)) || !rootfs::is_root();
    progress.step("mksquashfs", || squashfs::make(&root, &payload, epoch, all_root))?;
    let sha = cache::file_sha256(&payload).map_err(io(&payload))?;
    let manifest = def.manifest(&sha, &derive_uuid(&def.name, &def.version, &sha), epoch);
    progress.step("signing", || write::assemble_file(&payload, &manifest, &key, &out))?;
    if let (Some(cdir), Some(ck)) = (&opts.cache, &cache_key) {
        cache::store(cdir, ck, &out, &entry).map_err(io(cdir))?;
    }
    report(entry, false)
}

/// Writes the cached image to `dest`: as it is, or, when the manifest wanted differs only
/// in what the cache key leaves out (the runtime of `--vm`), its payload under that
/// manifest, signed again.
fn reuse(cached: &Path, def: &Definition, epoch: u64, key: &SigningKey, dest: &Path) -> Result<(), BuildError> {
    let image = ramkey_image::read::open(cached).map_err(|e| BuildError::Io {
        path: cached.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let payload = &image.manifest.payload;
    let mut manifest = def.manifest(
        &payload.sha256,
        &derive_uuid(&def.name, &def.version, &payload.sha256),
        epoch,
    );
    manifest.payload = payload.clone();
    if manifest == image.manifest {
        fs::copy(cached, dest).map_err(io(dest))?;
        return Ok(());
    }
    let file = fs::File::open(cached).map_err(io(cached))?;
    let out = fs::File::create(dest).map_err(io(dest))?;
    write::assemble(std::io::Read::take(file, payload.size), &manifest, key, out)?;
    Ok(())
}

/// Every service's and exec probe's `argv[0]` must be in the image.
fn check_programs(p: &Personality, root: &Path) -> Result<(), BuildError> {
    let def = &p.definition;
    let mut wanted: Vec<(String, &str)> = Vec::new();
    for s in &def.services {
        wanted.push((format!("service `{}`", s.name), &s.argv[0]));
        for probe in [&s.readiness, &s.health].into_iter().flatten() {
            if let ramkey_image::check::Check::Exec { argv } = &probe.check {
                wanted.push((format!("probe of service `{}`", s.name), &argv[0]));
            }
        }
    }
    for (what, path) in wanted {
        if !exists_in(root, path) {
            return Err(BuildError::MissingProgram {
                personality: def.name.clone(),
                what,
                path: path.into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_stable_and_well_formed() {
        let a = derive_uuid("web", "1.0.0", &"ab".repeat(32));
        assert_eq!(a, derive_uuid("web", "1.0.0", &"ab".repeat(32)));
        assert_ne!(a, derive_uuid("web", "1.0.1", &"ab".repeat(32)));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn follows_symlinks_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        fs::write(r.join("usr/bin/sh"), "").unwrap();
        std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/sh", r.join("usr/bin/abs")).unwrap();
        assert!(exists_in(r, "/bin/sh"));
        assert!(exists_in(r, "/bin/abs"));
        assert!(!exists_in(r, "/bin/nope"));
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert!(!exists_in(r, "/loop/x"));
    }
}
