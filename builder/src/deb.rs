//! Reading Debian packages (`.deb`): an `ar` archive whose `data.tar.{xz,zst,gz}` member
//! holds the files. Unpacked in-process, without `dpkg` and without root.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

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

/// The file name apt gives the candidate version of `package`, from `apt-cache show`.
pub fn candidate_file_name(package: &str, show: &str) -> Option<String> {
    let stanza = show.split("\n\n").next()?;
    let field = |name: &str| stanza.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let version = field("Version:")?;
    let arch = field("Architecture:")?;
    // apt writes an epoch's colon as %3a.
    Some(format!("{package}_{}_{arch}.deb", version.replace(':', "%3a")))
}

/// The candidate `.deb` of `package` in `cache/debs`, downloaded with `apt-get download`
/// unless it is already there.
pub fn download(package: &str, cache: &Path) -> Result<PathBuf, DebError> {
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs).map_err(|source| DebError::Io {
        path: debs.clone(),
        source,
    })?;
    let show = apt("apt-cache", &["show", "--no-all-versions", package], &debs).map_err(|_| DebError::Unknown {
        package: package.into(),
    })?;
    let name = candidate_file_name(package, &show).ok_or_else(|| DebError::Unknown {
        package: package.into(),
    })?;
    let path = debs.join(&name);
    if !path.exists() {
        apt("apt-get", &["download", "-q", package], &debs)?;
    }
    if !path.exists() {
        return Err(DebError::NoData { path });
    }
    Ok(path)
}

/// Unpacks `deb` once into `cache/unpacked/<file stem>/` and returns that folder.
pub fn unpack_cached(deb: &Path, cache: &Path) -> Result<PathBuf, DebError> {
    let stem = deb
        .file_stem()
        .map_or_else(|| "package".into(), |s| s.to_string_lossy().into_owned());
    let dir = cache.join("unpacked");
    let done = dir.join(&stem);
    if done.join(".unpacked").exists() {
        return Ok(done);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DebError::Io { path, source }
    };
    let tmp = dir.join(format!(".{stem}.tmp"));
    for stale in [&tmp, &done] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).map_err(io(stale))?;
        }
    }
    unpack(deb, &tmp)?;
    std::fs::write(tmp.join(".unpacked"), deb.to_string_lossy().as_bytes()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &done).map_err(io(&done))?;
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
    fn candidate_file_name_encodes_the_epoch() {
        let show = "Package: busybox-static\nVersion: 1:1.35.0-4+b3\nArchitecture: amd64\n\nPackage: other\n";
        assert_eq!(
            candidate_file_name("busybox-static", show).as_deref(),
            Some("busybox-static_1%3a1.35.0-4+b3_amd64.deb")
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
