//! Reading Debian packages (`.deb`): an `ar` archive whose `data.tar.{xz,zst,gz}` member
//! holds the files. Unpacked in-process, without `dpkg` and without root.
//!
//! Packages from apt are cached in `CACHE/debs/` and used only while their sha256 matches
//! apt's index (which `apt-get update` checked against the signed `InRelease`); unpacked trees
//! in `CACHE/unpacked/` are keyed by that sha256, not by the file's name.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// What can go wrong reading a `.deb`.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a Debian package: no data.tar member (is the download complete?)")]
    NoData { path: PathBuf },
    #[error("{path}: unsupported data member compression {member}")]
    Compression { path: PathBuf, member: String },
    #[error("cannot run {program}: {source}; is this a Debian host with apt?")]
    Spawn { program: String, source: io::Error },
    #[error("`{command}` failed ({status}): {stderr}")]
    Apt {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("apt knows no package {package}; run `apt-get update`, or check the name")]
    Unknown { package: String },
    #[error(
        "apt's index has no SHA256 for {package} {version} (installed, but in no repository apt knows?); run `apt-get update`"
    )]
    NoIndexHash { package: String, version: String },
    #[error("`apt-get download {package}={version}` left no {path}")]
    NotDownloaded {
        package: String,
        version: String,
        path: PathBuf,
    },
    #[error(
        "{package} {version}: {path} has sha256 {actual}, but apt's signed index says {expected}, even freshly \
         downloaded; the file is left there for inspection and will not be used (a mirror or proxy serving other \
         bytes, or an index older than the mirror: run `apt-get update` and try again)"
    )]
    Mismatch {
        package: String,
        version: String,
        expected: String,
        actual: String,
        path: PathBuf,
    },
    #[error("{path}: unpacking {member} into {dest}: {source}")]
    Unpack {
        path: PathBuf,
        member: String,
        dest: PathBuf,
        source: io::Error,
    },
}

/// Unpacks the files of the package at `deb` into `dest` (created if missing).
///
/// Entries that would land outside `dest` are refused by the `tar` crate.
pub fn unpack(deb: &Path, dest: &Path) -> Result<(), DebError> {
    let io_err = |source| DebError::Io {
        path: deb.to_path_buf(),
        source,
    };
    let file = File::open(deb).map_err(io_err)?;
    let mut archive = ar::Archive::new(file);
    while let Some(entry) = archive.next_entry() {
        let entry = entry.map_err(io_err)?;
        let member = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        let Some(compression) = member.strip_prefix("data.tar") else {
            continue;
        };
        let reader: Box<dyn Read> = match compression {
            ".xz" => Box::new(liblzma::read::XzDecoder::new(entry)),
            ".zst" => Box::new(zstd::stream::read::Decoder::new(entry).map_err(io_err)?),
            ".gz" => Box::new(flate2::read::GzDecoder::new(entry)),
            "" => Box::new(entry),
            _ => {
                return Err(DebError::Compression {
                    path: deb.to_path_buf(),
                    member,
                });
            }
        };
        std::fs::create_dir_all(dest).map_err(|source| DebError::Io {
            path: dest.to_path_buf(),
            source,
        })?;
        let mut tar = tar::Archive::new(reader);
        tar.set_preserve_permissions(true);
        tar.set_unpack_xattrs(false);
        return tar.unpack(dest).map_err(|source| DebError::Unpack {
            path: deb.to_path_buf(),
            member,
            dest: dest.to_path_buf(),
            source,
        });
    }
    Err(DebError::NoData {
        path: deb.to_path_buf(),
    })
}

/// Runs an apt tool in `dir` and returns its standard output.
pub fn apt(program: &str, args: &[&str], dir: &Path) -> Result<String, DebError> {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|source| DebError::Spawn {
            program: program.into(),
            source,
        })?;
    if !out.status.success() {
        return Err(DebError::Apt {
            command: format!("{program} {}", args.join(" ")),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What apt's index (the `Packages` files, checked against the signed `InRelease` by
/// `apt-get update`) says about one version of a package, from `apt-cache show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub package: String,
    pub version: String,
    pub arch: String,
    /// Lower-case hex, `None` when the stanza has no `SHA256:` (e.g. a version only the
    /// dpkg status file knows: installed, but in no repository apt knows).
    pub sha256: Option<String>,
}

impl IndexEntry {
    /// The first stanza of `apt-cache show` output for `package` (with `--no-all-versions`,
    /// the candidate version).
    pub fn from_show(package: &str, show: &str) -> Option<Self> {
        let stanza = show.split("\n\n").find(|s| {
            s.lines()
                .any(|l| l.strip_prefix("Package:").is_some_and(|p| p.trim() == package))
        })?;
        let field = |name: &str| stanza.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
        Some(Self {
            package: package.to_string(),
            version: field("Version:")?.to_string(),
            arch: field("Architecture:")?.to_string(),
            sha256: field("SHA256:").map(str::to_ascii_lowercase),
        })
    }

    /// The file name `apt-get download` gives this version.
    pub fn file_name(&self) -> String {
        // apt writes an epoch's colon as %3a.
        format!(
            "{}_{}_{}.deb",
            self.package,
            self.version.replace(':', "%3a"),
            self.arch
        )
    }
}

/// A package file and the sha256 of its bytes: checked against apt's index when it was
/// downloaded or found in the cache ([`download`]), or just computed when the user gave it
/// ([`Deb::given`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deb {
    pub path: PathBuf,
    /// Lower-case hex.
    pub sha256: String,
}

impl Deb {
    /// A `.deb` the user named: taken as it is, its sha256 computed (for the caller to show).
    pub fn given(path: &Path) -> Result<Self, DebError> {
        Ok(Self {
            path: path.to_path_buf(),
            sha256: sha256_file(path)?,
        })
    }
}

/// The sha256 of the file at `path`, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, DebError> {
    let mut hasher = Sha256::new();
    let mut file = File::open(path).map_err(|source| DebError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut buf = vec![0; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|source| DebError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The `.deb` of `entry` at `path`, checked against the index's sha256: a cached file is
/// used only if its bytes match; otherwise it is deleted (said on stderr) and `fetch` is
/// called to put a fresh copy at `path`, which must match too.
pub fn checked(entry: &IndexEntry, path: &Path, fetch: impl FnOnce() -> Result<(), DebError>) -> Result<Deb, DebError> {
    let expected = entry.sha256.clone().ok_or_else(|| DebError::NoIndexHash {
        package: entry.package.clone(),
        version: entry.version.clone(),
    })?;
    if path.exists() {
        let actual = sha256_file(path)?;
        if actual == expected {
            return Ok(Deb {
                path: path.to_path_buf(),
                sha256: actual,
            });
        }
        eprintln!(
            "ramkey: the cached {} has sha256 {actual}, apt's index says {expected} for {} {}: deleting it and downloading it again",
            path.display(),
            entry.package,
            entry.version
        );
        std::fs::remove_file(path).map_err(|source| DebError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    }
    fetch()?;
    if !path.exists() {
        return Err(DebError::NotDownloaded {
            package: entry.package.clone(),
            version: entry.version.clone(),
            path: path.to_path_buf(),
        });
    }
    let actual = sha256_file(path)?;
    if actual != expected {
        return Err(DebError::Mismatch {
            package: entry.package.clone(),
            version: entry.version.clone(),
            expected,
            actual,
            path: path.to_path_buf(),
        });
    }
    Ok(Deb {
        path: path.to_path_buf(),
        sha256: actual,
    })
}

/// The candidate `.deb` of `package` in `cache/debs`, checked against the sha256 in apt's
/// index: a cached copy whose bytes match is used, anything else is downloaded (again) with
/// `apt-get download PACKAGE=VERSION`.
pub fn download(package: &str, cache: &Path) -> Result<Deb, DebError> {
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs).map_err(|source| DebError::Io {
        path: debs.clone(),
        source,
    })?;
    let show = apt("apt-cache", &["show", "--no-all-versions", package], &debs).map_err(|_| DebError::Unknown {
        package: package.into(),
    })?;
    let entry = IndexEntry::from_show(package, &show).ok_or_else(|| DebError::Unknown {
        package: package.into(),
    })?;
    let path = debs.join(entry.file_name());
    checked(&entry, &path, || {
        let pinned = format!("{package}={}", entry.version);
        apt("apt-get", &["download", "-q", &pinned], &debs).map(drop)
    })
}

/// Unpacks `deb` once into `cache/unpacked/<file stem>-<sha256>/` and returns that folder:
/// a tree is reused only for the same bytes, whatever the file is called.
pub fn unpack_cached(deb: &Deb, cache: &Path) -> Result<PathBuf, DebError> {
    let stem = deb
        .path
        .file_stem()
        .map_or_else(|| "package".into(), |s| s.to_string_lossy().into_owned());
    let key = format!("{stem}-{}", deb.sha256);
    let dir = cache.join("unpacked");
    let done = dir.join(&key);
    if done.join(".unpacked").exists() {
        return Ok(done);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DebError::Io { path, source }
    };
    let tmp = dir.join(format!(".{key}.{}.tmp", std::process::id()));
    for stale in [&tmp, &done] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).map_err(io(stale))?;
        }
    }
    unpack(&deb.path, &tmp)?;
    let marker = format!("{}\nsha256 {}\n", deb.path.display(), deb.sha256);
    std::fs::write(tmp.join(".unpacked"), marker).map_err(io(&tmp))?;
    if let Err(e) = std::fs::rename(&tmp, &done) {
        // Another build unpacked the same bytes meanwhile: use theirs.
        if done.join(".unpacked").exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
            return Ok(done);
        }
        return Err(io(&done)(e));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Builds a tiny .deb in memory: debian-binary, control.tar.gz, data.tar.gz.
    fn make_deb(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
        let mut data = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (name, body) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            data.append_data(&mut header, name, *body).unwrap();
        }
        let data = data.into_inner().unwrap().finish().unwrap();
        let path = dir.join("test.deb");
        let mut ar = ar::Builder::new(File::create(&path).unwrap());
        ar.append(&ar::Header::new(b"debian-binary".to_vec(), 4), &b"2.0\n"[..])
            .unwrap();
        ar.append(&ar::Header::new(b"data.tar.gz".to_vec(), data.len() as u64), &data[..])
            .unwrap();
        ar.into_inner().unwrap().flush().unwrap();
        path
    }

    #[test]
    fn unpacks_data_member() {
        let dir = tempfile::tempdir().unwrap();
        let deb = make_deb(
            dir.path(),
            &[("./boot/vmlinuz-test", b"kernel"), ("./lib/x.ko", b"mod")],
        );
        let dest = dir.path().join("out");
        unpack(&deb, &dest).unwrap();
        assert_eq!(std::fs::read(dest.join("boot/vmlinuz-test")).unwrap(), b"kernel");
        assert_eq!(std::fs::read(dest.join("lib/x.ko")).unwrap(), b"mod");
    }

    #[test]
    fn index_entry_names_the_file_and_its_sha256() {
        let show = "Package: busybox-static\nVersion: 1:1.35.0-4+b3\nArchitecture: amd64\nSHA256: 3D3FDBE9\n\nPackage: other\n";
        let entry = IndexEntry::from_show("busybox-static", show).unwrap();
        assert_eq!(entry.file_name(), "busybox-static_1%3a1.35.0-4+b3_amd64.deb");
        assert_eq!(entry.sha256.as_deref(), Some("3d3fdbe9"));
        assert_eq!(IndexEntry::from_show("missing", show), None);
    }

    fn sha256(bytes: &[u8]) -> String {
        Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A fake index stanza for the bytes `good`, as `apt-cache show` prints it.
    fn fake_index(good: &[u8]) -> IndexEntry {
        let sha = sha256(good);
        let show = format!(
            "Package: hello\nVersion: 1:2.10-3\nArchitecture: amd64\nSize: {}\nMD5sum: 0\nSHA256: {sha}\nDescription: x\n\n",
            good.len()
        );
        IndexEntry::from_show("hello", &show).unwrap()
    }

    #[test]
    fn a_changed_cached_deb_is_not_used_but_downloaded_again() {
        let dir = tempfile::tempdir().unwrap();
        let entry = fake_index(b"the real package");
        let path = dir.path().join(entry.file_name());
        std::fs::write(&path, b"the real packagE").unwrap();
        let mut fetched = 0;
        let deb = checked(&entry, &path, || {
            assert!(!path.exists(), "the changed file was not deleted before the download");
            fetched += 1;
            std::fs::write(&path, b"the real package").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(fetched, 1, "the changed cached file was used");
        assert_eq!(std::fs::read(&deb.path).unwrap(), b"the real package");
        assert_eq!(Some(&deb.sha256), entry.sha256.as_ref());
    }

    #[test]
    fn a_fresh_download_that_mismatches_too_is_an_error_naming_everything() {
        let dir = tempfile::tempdir().unwrap();
        let entry = fake_index(b"the real package");
        let path = dir.path().join(entry.file_name());
        std::fs::write(&path, b"tampered").unwrap();
        let err = checked(&entry, &path, || {
            std::fs::write(&path, b"tampered again").unwrap();
            Ok(())
        })
        .unwrap_err();
        let bad = sha256(b"tampered again");
        let msg = err.to_string();
        for part in [
            "hello",
            "1:2.10-3",
            entry.sha256.as_deref().unwrap(),
            bad.as_str(),
            &path.display().to_string(),
        ] {
            assert!(msg.contains(part), "{part:?} missing from: {msg}");
        }
    }

    #[test]
    fn a_good_cached_deb_is_reused_without_downloading() {
        let dir = tempfile::tempdir().unwrap();
        let entry = fake_index(b"the real package");
        let path = dir.path().join(entry.file_name());
        std::fs::write(&path, b"the real package").unwrap();
        let deb = checked(&entry, &path, || panic!("downloaded although the cached file is good")).unwrap();
        assert_eq!(deb.path, path);
        assert_eq!(Some(&deb.sha256), entry.sha256.as_ref());
    }

    #[test]
    fn an_index_without_sha256_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let entry = IndexEntry::from_show("hello", "Package: hello\nVersion: 1\nArchitecture: amd64\n").unwrap();
        let path = dir.path().join(entry.file_name());
        std::fs::write(&path, b"anything").unwrap();
        let err = checked(&entry, &path, || panic!("downloaded without a hash to check")).unwrap_err();
        assert!(err.to_string().contains("no SHA256 for hello 1"), "{err}");
    }

    #[test]
    fn a_tree_unpacked_from_other_bytes_under_the_same_name_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let first = make_deb(dir.path(), &[("./f", b"first")]);
        let tree = unpack_cached(&Deb::given(&first).unwrap(), &cache).unwrap();
        assert_eq!(std::fs::read(tree.join("f")).unwrap(), b"first");
        // Same file name, other bytes.
        let other = make_deb(dir.path(), &[("./f", b"other")]);
        assert_eq!(first, other);
        let tree = unpack_cached(&Deb::given(&other).unwrap(), &cache).unwrap();
        assert_eq!(
            std::fs::read(tree.join("f")).unwrap(),
            b"other",
            "the tree of the old bytes was reused"
        );
    }

    #[test]
    fn rejects_a_file_that_is_not_a_deb() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bogus.deb");
        std::fs::write(&path, b"!<arch>\n").unwrap();
        let err = unpack(&path, &dir.path().join("out")).unwrap_err();
        assert!(err.to_string().contains("no data.tar member"), "{err}");
    }
}
