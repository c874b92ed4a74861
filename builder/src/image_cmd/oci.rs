//! Flattening an OCI image archive into a directory: a `docker save` tarball
//! (`manifest.json` naming layer files) or an OCI image layout tarball (`index.json` →
//! manifest → `blobs/sha256/...`). Layers are applied in order, each honouring whiteouts:
//! `.wh.NAME` deletes NAME from the layers below, `.wh..wh..opq` empties its folder of them.
//! Layers may be plain, gzip or zstd tarballs. Device nodes and FIFOs are skipped (the zone
//! makes its own `/dev`).
//!
//! The archive is not trusted (the build runs as root): blobs are named only by `sha256:`
//! digests and checked against them, files are read only from inside the archive (Docker's
//! links between identical layers are followed, but not out of it), and every layer entry is
//! written beneath the target without following a symlink (`beneath`; see `apply_layer`).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Uid, chownat, linkat, openat2, symlinkat};
use rustix::io::Errno;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::beneath;

/// Errors reading an OCI archive.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{archive}: {message}")]
    Format { archive: PathBuf, message: String },
}

#[derive(Deserialize)]
struct DockerManifest {
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
}

#[derive(Deserialize)]
struct OciIndex {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct OciManifest {
    layers: Vec<Descriptor>,
}

/// A layer: its name in messages (digest or path), its file in the archive, and the sha256 it
/// must have (unknown for `docker save`'s own `ID/layer.tar` files).
struct Layer {
    name: String,
    path: String,
    sha256: Option<String>,
}

/// Whether `hex` is a sha256 as digests write it: 64 lowercase hex digits.
fn is_sha256(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The sha256 of what `reader` reads, in hex.
fn sha256(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 16];
    loop {
        match reader.read(&mut buf)? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Applies the image in `archive` to `dest` (created if missing). Returns the layer count.
pub fn flatten(archive: &Path, dest: &Path, work: &Path) -> Result<usize, OciError> {
    let format = |message: String| OciError::Format {
        archive: archive.to_path_buf(),
        message,
    };
    let io_at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OciError::Io { path, source }
    };
    // The outer archive is small in entries and is read once: unpack it to the work folder.
    let outer = work.join("oci");
    fs::create_dir_all(&outer).map_err(io_at(&outer))?;
    let file = File::open(archive).map_err(io_at(archive))?;
    tar::Archive::new(BufReader::new(file))
        .unpack(&outer)
        .map_err(io_at(archive))?;
    let outer_fd = beneath::open(&outer).map_err(io_at(&outer))?;
    // A regular file of the archive, through symlinks only if they stay inside it.
    let open = |rel: &str| -> Result<File, OciError> {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        let file = match openat2(&outer_fd, rel, flags, Mode::empty(), resolve) {
            Ok(fd) => File::from(fd),
            Err(Errno::XDEV) => return Err(format(format!("`{rel}` leads out of the archive"))),
            Err(e) => return Err(io_at(&outer.join(rel))(e.into())),
        };
        match file.metadata() {
            Ok(m) if m.is_file() => Ok(file),
            Ok(_) => Err(format(format!("`{rel}` is not a regular file"))),
            Err(e) => Err(io_at(&outer.join(rel))(e)),
        }
    };
    let read_json = |rel: &str| -> Result<Vec<u8>, OciError> {
        let mut bytes = Vec::new();
        open(rel)?.read_to_end(&mut bytes).map_err(io_at(&outer.join(rel)))?;
        Ok(bytes)
    };
    let blob = |digest: &str| -> Result<Layer, OciError> {
        let hex = digest.strip_prefix("sha256:").filter(|h| is_sha256(h)).ok_or_else(|| {
            format(format!(
                "digest `{digest}`: only `sha256:` and 64 lowercase hex digits is supported"
            ))
        })?;
        Ok(Layer {
            name: digest.to_string(),
            path: format!("blobs/sha256/{hex}"),
            sha256: Some(hex.to_string()),
        })
    };
    // The blob's bytes, checked against its digest.
    let read_blob = |digest: &str| -> Result<Vec<u8>, OciError> {
        let bytes = read_json(&blob(digest)?.path)?;
        match sha256(&bytes[..]) {
            Ok(actual) if Some(actual.as_str()) == digest.strip_prefix("sha256:") => Ok(bytes),
            _ => Err(format(format!("blob {digest} does not match its digest"))),
        }
    };
    let layers: Vec<Layer> = if outer.join("manifest.json").is_file() {
        let list: Vec<DockerManifest> =
            serde_json::from_slice(&read_json("manifest.json")?).map_err(|e| format(format!("manifest.json: {e}")))?;
        let [image] = <[DockerManifest; 1]>::try_from(list)
            .map_err(|l| format(format!("manifest.json lists {} images; save exactly one", l.len())))?;
        image
            .layers
            .into_iter()
            .map(|path| {
                if beneath::relative(Path::new(&path)).is_none() {
                    return Err(format(format!("layer `{path}` is not a path inside the archive")));
                }
                // Docker 25 and later save layers as blobs: those are checked too.
                let sha256 = path
                    .strip_prefix("blobs/sha256/")
                    .filter(|h| is_sha256(h))
                    .map(String::from);
                Ok(Layer {
                    name: path.clone(),
                    path,
                    sha256,
                })
            })
            .collect::<Result<_, _>>()?
    } else if outer.join("index.json").is_file() {
        let mut index: OciIndex =
            serde_json::from_slice(&read_json("index.json")?).map_err(|e| format(format!("index.json: {e}")))?;
        loop {
            let [desc] = <[Descriptor; 1]>::try_from(index.manifests)
                .map_err(|l| format(format!("index lists {} manifests; expected one", l.len())))?;
            let bytes = read_blob(&desc.digest)?;
            if desc.media_type.contains("index") {
                index = serde_json::from_slice(&bytes).map_err(|e| format(format!("{}: {e}", desc.digest)))?;
                continue;
            }
            let manifest: OciManifest =
                serde_json::from_slice(&bytes).map_err(|e| format(format!("{}: {e}", desc.digest)))?;
            break manifest
                .layers
                .iter()
                .map(|l| blob(&l.digest))
                .collect::<Result<_, _>>()?;
        }
    } else {
        return Err(format(
            "neither manifest.json (docker save) nor index.json (OCI layout) inside".into(),
        ));
    };
    fs::create_dir_all(dest).map_err(io_at(dest))?;
    let root = beneath::open(dest).map_err(io_at(dest))?;
    for layer in &layers {
        let path = outer.join(&layer.path);
        let file = open(&layer.path)?;
        if let Some(expected) = &layer.sha256
            && sha256(&file).map_err(io_at(&path))? != *expected
        {
            return Err(format(format!("layer {} does not match its digest", layer.name)));
        }
        apply_layer(&file, &root).map_err(|e| match e {
            LayerError::Io(source) => OciError::Io {
                path: path.clone(),
                source,
            },
            LayerError::Path(message) => format(format!("layer {}: {message}", layer.name)),
            LayerError::Entry { entry, source } => format(format!("layer {}: entry `{entry}`: {source}", layer.name)),
        })?;
    }
    Ok(layers.len())
}

enum LayerError {
    Io(io::Error),
    /// A name that is not a path beneath the layer's root: what and why.
    Path(String),
    /// An entry that could not be written beneath the target.
    Entry {
        entry: String,
        source: io::Error,
    },
}

impl From<io::Error> for LayerError {
    fn from(e: io::Error) -> Self {
        LayerError::Io(e)
    }
}

/// The layer in `file`, decompressed, read from its start.
fn open_layer(mut file: &File) -> io::Result<Box<dyn Read + '_>> {
    let mut magic = [0u8; 4];
    file.seek(SeekFrom::Start(0))?;
    let n = file.read(&mut magic)?;
    file.seek(SeekFrom::Start(0))?;
    let file = BufReader::new(file);
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(file)),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(zstd::stream::read::Decoder::new(file)?),
        _ => Box::new(file),
    })
}

/// A layer entry's path from the layer's root: a leading `/` dropped, `.` skipped. `None`
/// when it has a `..`.
fn entry_path(raw: &Path) -> Option<PathBuf> {
    beneath::relative(raw.strip_prefix("/").unwrap_or(raw))
}

/// Applies the layer in `file` to the tree `root`: the whiteouts first (they apply to the
/// layers below only), then the entries, each replacing what was there.
///
/// Paths are taken from the layer's root: a leading `/` is dropped (as GNU tar, containerd
/// and Docker do; ko writes `/ko-app/NAME`); a name with `..`, or a hard link to one, is
/// refused, naming the layer and the entry. A symlink is never followed as a folder, wherever
/// it points (the build runs as root, and it may point at the host's files):
///
/// * a whiteout beneath a symlink deletes nothing: a symlink has nothing beneath it in the
///   image. (A layer that makes a folder where a symlink was holds `x/` and
///   `x/.wh..wh..opq`: the symlink is then replaced by the folder.)
/// * an entry beneath a symlink, or a hard link to a file beneath one, is refused. Docker and
///   containerd would follow it inside the image's root instead; layers made by comparing
///   two trees never hold such an entry, and refusing keeps a hostile archive from choosing
///   where its files go.
fn apply_layer(file: &File, root: &OwnedFd) -> Result<(), LayerError> {
    let unsafe_name = |raw: &Path| LayerError::Path(format!("entry `{}`: `..` leaves the layer", raw.display()));
    let mut whiteouts: BTreeMap<PathBuf, bool> = BTreeMap::new();
    for entry in tar::Archive::new(open_layer(file)?).entries()? {
        let entry = entry?;
        let raw = entry.path()?.into_owned();
        let path = entry_path(&raw).ok_or_else(|| unsafe_name(&raw))?;
        let Some((parent, name)) = beneath::split(&path) else {
            continue;
        };
        if name == ".wh..wh..opq" {
            whiteouts.insert(parent.to_path_buf(), true);
        } else if let Some(hidden) = name.as_bytes().strip_prefix(b".wh.") {
            if matches!(hidden, b"" | b"." | b"..") {
                let message = format!("entry `{}`: a whiteout that names no file", raw.display());
                return Err(LayerError::Path(message));
            }
            whiteouts.insert(parent.join(OsStr::from_bytes(hidden)), false);
        }
    }
    for (path, opaque) in &whiteouts {
        let (folder, name) = match beneath::split(path) {
            Some((parent, name)) if !opaque => (parent, Some(name)),
            _ => (path.as_path(), None),
        };
        let dir = match beneath::dir(root, folder, false) {
            Ok(dir) => dir,
            Err(e) if beneath::absent(&e) => continue,
            Err(e) => return Err(e.into()),
        };
        match name {
            Some(name) => beneath::remove(&dir, name)?,
            None => beneath::clear(&dir)?,
        }
    }
    let owners = super::rootfs::is_root();
    for entry in tar::Archive::new(open_layer(file)?).entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let path = entry_path(&raw).ok_or_else(|| unsafe_name(&raw))?;
        let kind = entry.header().entry_type();
        let Some((parent, name)) = beneath::split(&path) else {
            continue;
        };
        if name.as_bytes().starts_with(b".wh.")
            || kind.is_character_special()
            || kind.is_block_special()
            || kind.is_fifo()
            || kind.is_pax_global_extensions()
        {
            continue;
        }
        let at = |source| LayerError::Entry {
            entry: raw.display().to_string(),
            source,
        };
        let dir = beneath::dir(root, parent, true).map_err(at)?;
        // Old tar headers mark a folder by a trailing `/` alone.
        let is_dir = kind.is_dir()
            || (!kind.is_symlink()
                && !kind.is_hard_link()
                && entry.header().as_ustar().is_none()
                && entry.path_bytes().ends_with(b"/"));
        // A non-folder replaces whatever was there; a folder replaces a non-folder.
        if let Some(old) = beneath::kind(&dir, name).map_err(at)?
            && !(old == FileType::Directory && is_dir)
        {
            beneath::remove(&dir, name).map_err(at)?;
        }
        let owner = match owners {
            true => Some(owner(entry.header()).map_err(at)?),
            false => None,
        };
        if kind.is_symlink() {
            symlinkat(link_target(&entry).map_err(at)?, &dir, name).map_err(|e| at(e.into()))?;
            if let Some((uid, gid)) = owner {
                chownat(&dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW).map_err(|e| at(e.into()))?;
            }
        } else if kind.is_hard_link() {
            let target = link_target(&entry).map_err(at)?;
            let source = entry_path(&target);
            let Some((from, from_name)) = source.as_deref().and_then(beneath::split) else {
                let (raw, target) = (raw.display(), target.display());
                let message = format!("hard link `{raw}` to `{target}`: not a file beneath the layer's root");
                return Err(LayerError::Path(message));
            };
            let from = beneath::dir(root, from, false).map_err(at)?;
            linkat(&from, from_name, &dir, name, AtFlags::empty()).map_err(|e| at(e.into()))?;
        } else if is_dir {
            let fd = beneath::make_dir(&dir, name).map_err(at)?;
            beneath::set_owner_mode(&fd, owner, entry.header().mode()?).map_err(at)?;
        } else {
            let mut out = beneath::create(&dir, name).map_err(at)?;
            io::copy(&mut entry, &mut out).map_err(at)?;
            beneath::set_owner_mode(&out, owner, entry.header().mode()?).map_err(at)?;
        }
    }
    Ok(())
}

/// Where a symlink or hard link entry points, as written.
fn link_target(entry: &tar::Entry<impl Read>) -> io::Result<PathBuf> {
    let target = entry.link_name()?.map(|t| t.into_owned());
    target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a link without a target"))
}

/// The owner an entry's header gives (`-1` is not an owner).
fn owner(header: &tar::Header) -> io::Result<(Uid, Gid)> {
    let id = |n: u64| u32::try_from(n).ok().filter(|&n| n != u32::MAX);
    match (id(header.uid()?), id(header.gid()?)) {
        (Some(uid), Some(gid)) => Ok((Uid::from_raw(uid), Gid::from_raw(gid))),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "owner out of range")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    enum Item<'a> {
        File(&'a [u8]),
        Dir,
        Symlink(&'a str),
        Link(&'a str),
    }
    use Item::*;

    /// A tar with names and link targets written as they are (absolute, with `..`), as a
    /// hostile tool would write them; `tar::Builder` itself refuses such names (long names go
    /// through it).
    fn tar(entries: &[(&str, Item)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, item) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_mode(0o644);
            let (kind, data, link) = match item {
                File(data) => (tar::EntryType::Regular, *data, None),
                Dir => (tar::EntryType::Directory, &[][..], None),
                Symlink(to) => (tar::EntryType::Symlink, &[][..], Some(to)),
                Link(to) => (tar::EntryType::Link, &[][..], Some(to)),
            };
            if matches!(item, Dir) {
                h.set_mode(0o755);
            }
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            if let Some(to) = link {
                h.as_old_mut().linkname[..to.len()].copy_from_slice(to.as_bytes());
            }
            if path.len() < 100 {
                h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_cksum();
                b.append(&h, data).unwrap();
            } else {
                b.append_data(&mut h, path, data).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    fn archive(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let entries: Vec<_> = files.iter().map(|(p, d)| (*p, File(&d[..]))).collect();
        tar(&entries)
    }

    /// A `docker save` archive of these layers.
    fn docker(layers: &[Vec<u8>]) -> Vec<u8> {
        let names: Vec<String> = (0..layers.len()).map(|i| format!("l{i}/layer.tar")).collect();
        let manifest = serde_json::json!([{ "Config": "c.json", "Layers": names }]).to_string();
        let mut files = vec![("manifest.json", manifest.into_bytes())];
        files.extend(names.iter().map(String::as_str).zip(layers.iter().cloned()));
        archive(&files)
    }

    fn digest(data: &[u8]) -> String {
        format!("sha256:{}", sha256(data).unwrap())
    }

    /// An OCI layout archive whose manifest lists `layers` (digest, blob stored under it).
    fn layout(layers: &[(String, Vec<u8>)]) -> Vec<u8> {
        let descs: Vec<_> = layers
            .iter()
            .map(|(d, _)| serde_json::json!({ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d }))
            .collect();
        let manifest = serde_json::json!({ "layers": descs }).to_string().into_bytes();
        let dm = digest(&manifest);
        let index = serde_json::json!({ "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": dm }] });
        let mut files = vec![
            ("oci-layout".to_string(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            ("index.json".to_string(), index.to_string().into_bytes()),
            (format!("blobs/{}", dm.replacen(':', "/", 1)), manifest),
        ];
        for (digest, blob) in layers {
            let path = format!("blobs/{}", digest.replacen(':', "/", 1));
            if !path.contains("..") {
                files.push((path, blob.clone()));
            }
        }
        let files: Vec<_> = files.iter().map(|(p, d)| (p.as_str(), d.clone())).collect();
        archive(&files)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn layers() -> (Vec<u8>, Vec<u8>) {
        let lower = tar(&[
            ("etc/", Dir),
            ("etc/keep", File(b"k")),
            ("etc/gone", File(b"g")),
            ("var/", Dir),
            ("var/cache/", Dir),
            ("var/cache/old", File(b"o")),
        ]);
        let upper = tar(&[
            ("etc/.wh.gone", File(b"")),
            ("var/cache/.wh..wh..opq", File(b"")),
            ("var/cache/new", File(b"n")),
            ("etc/keep", File(b"k2")),
        ]);
        (lower, upper)
    }

    fn check(root: &Path) {
        assert_eq!(fs::read_to_string(root.join("etc/keep")).unwrap(), "k2");
        assert!(!root.join("etc/gone").exists());
        assert!(!root.join("var/cache/old").exists());
        assert_eq!(fs::read_to_string(root.join("var/cache/new")).unwrap(), "n");
        assert!(!root.join("var/cache/.wh..wh..opq").exists());
    }

    /// Flattens `archive` (written to `dir/a.tar`) into `dir/root`.
    fn import(dir: &Path, archive: Vec<u8>) -> Result<usize, OciError> {
        fs::write(dir.join("a.tar"), archive).unwrap();
        let _ = fs::remove_dir_all(dir.join("root"));
        let _ = fs::remove_dir_all(dir.join("w"));
        flatten(&dir.join("a.tar"), &dir.join("root"), &dir.join("w"))
    }

    /// A folder outside the target with a file in it, as the host's files would be.
    fn sentinel(dir: &Path) -> PathBuf {
        let s = dir.join("sentinel");
        fs::create_dir_all(&s).unwrap();
        fs::write(s.join("file"), "keep").unwrap();
        s
    }

    /// The sentinel folder holds its file, unchanged, and nothing else.
    fn untouched(s: &Path) {
        let names: Vec<_> = fs::read_dir(s).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["file"], "the folder outside the target was changed");
        assert_eq!(fs::read_to_string(s.join("file")).unwrap(), "keep");
        assert_eq!(
            fs::metadata(s.join("file")).unwrap().nlink(),
            1,
            "hard-linked from the target"
        );
    }

    #[test]
    fn docker_save_layers_with_whiteouts() {
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper) = layers();
        let tar = archive(&[
            (
                "manifest.json",
                br#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":["l1/layer.tar","l2/layer.tar"]}]"#.to_vec(),
            ),
            ("l1/layer.tar", lower),
            ("l2/layer.tar", gzip(&upper)),
        ]);
        assert_eq!(import(dir.path(), tar).unwrap(), 2);
        check(&dir.path().join("root"));
    }

    #[test]
    fn oci_layout() {
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper) = layers();
        let upper = gzip(&upper);
        let tar = layout(&[(digest(&lower), lower), (digest(&upper), upper)]);
        import(dir.path(), tar).unwrap();
        check(&dir.path().join("root"));
    }

    #[test]
    fn refuses_other_archives() {
        let dir = tempfile::tempdir().unwrap();
        let e = import(dir.path(), archive(&[("x", b"y".to_vec())])).unwrap_err();
        assert!(e.to_string().contains("docker save"), "{e}");
    }

    #[test]
    fn whiteouts_and_entries_beneath_a_symlink_stay_in_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let s = sentinel(dir.path());
        let link = tar(&[("x", Symlink(s.to_str().unwrap()))]);
        // The whiteouts alone: `x` is a symlink, with nothing beneath it in the image.
        let whiteouts = tar(&[("x/.wh..wh..opq", File(b"")), ("x/.wh.file", File(b""))]);
        import(dir.path(), docker(&[link.clone(), whiteouts])).unwrap();
        untouched(&s);
        assert_eq!(fs::read_link(dir.path().join("root/x")).unwrap(), s);
        // A file beneath it: refused, naming the layer and the entry.
        let planted = tar(&[
            ("x/.wh..wh..opq", File(b"")),
            ("x/.wh.file", File(b"")),
            ("x/planted", File(b"p")),
        ]);
        let e = import(dir.path(), docker(&[link, planted])).unwrap_err().to_string();
        untouched(&s);
        assert!(
            e.contains("l1/layer.tar") && e.contains("`x/planted`") && e.contains("symlink"),
            "{e}"
        );
    }

    #[test]
    fn a_symlink_replaced_by_an_opaque_folder() {
        // What overlayfs records when a folder is made where a symlink was.
        let dir = tempfile::tempdir().unwrap();
        let lower = tar(&[("y/", Dir), ("y/keep", File(b"k")), ("x", Symlink("y"))]);
        let upper = tar(&[("x/", Dir), ("x/.wh..wh..opq", File(b"")), ("x/a", File(b"a"))]);
        import(dir.path(), docker(&[lower, upper])).unwrap();
        let root = dir.path().join("root");
        assert!(fs::symlink_metadata(root.join("x")).unwrap().is_dir());
        assert_eq!(fs::read_to_string(root.join("x/a")).unwrap(), "a");
        assert_eq!(fs::read_to_string(root.join("y/keep")).unwrap(), "k");
    }

    #[test]
    fn names_that_leave_the_target_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = sentinel(dir.path());
        for name in ["../escape", "etc/../../escape", ".wh...", "etc/.wh..", ".wh."] {
            let e = import(dir.path(), docker(&[tar(&[("etc/", Dir), (name, File(b"x"))])])).unwrap_err();
            let e = e.to_string();
            assert!(
                e.contains("l0/layer.tar") && e.contains(&format!("`{name}`")),
                "{name}: {e}"
            );
            untouched(&s);
            assert!(!dir.path().join("escape").exists());
        }
        // A leading `/` is the layer's root, as in GNU tar, containerd and Docker (ko writes
        // `/ko-app/NAME`): beneath the target.
        let absolute = format!("{}/planted", s.display());
        import(
            dir.path(),
            docker(&[tar(&[(&absolute, File(b"p")), ("/etc/x", File(b"x"))])]),
        )
        .unwrap();
        untouched(&s);
        let root = dir.path().join("root");
        assert_eq!(fs::read_to_string(root.join(&absolute[1..])).unwrap(), "p");
        assert_eq!(fs::read_to_string(root.join("etc/x")).unwrap(), "x");
    }

    #[test]
    fn hard_links_stay_beneath_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let s = sentinel(dir.path());
        let out = format!("../{}/file", s.file_name().unwrap().to_str().unwrap());
        let e = import(dir.path(), docker(&[tar(&[("h", Link(&out))])]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("l0/layer.tar") && e.contains("`h`") && e.contains(&out),
            "{e}"
        );
        untouched(&s);
        let link = tar(&[("x", Symlink(s.to_str().unwrap()))]);
        // A link made beneath the symlink, and a link to a file beneath it.
        let into = tar(&[
            ("etc/", Dir),
            ("etc/passwd", File(b"p")),
            ("x/file", Link("etc/passwd")),
        ]);
        let e = import(dir.path(), docker(&[link.clone(), into]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`x/file`") && e.contains("symlink"), "{e}");
        untouched(&s);
        let from = tar(&[("stolen", Link("x/file"))]);
        let e = import(dir.path(), docker(&[link, from])).unwrap_err().to_string();
        assert!(e.contains("`stolen`") && e.contains("symlink"), "{e}");
        untouched(&s);
        assert!(!dir.path().join("root/stolen").exists());
    }

    #[test]
    fn only_sha256_digests_that_match_their_blob() {
        let dir = tempfile::tempdir().unwrap();
        let blob = tar(&[("etc/x", File(b"x"))]);
        let good = digest(&blob);
        import(dir.path(), layout(&[(good.clone(), blob.clone())])).unwrap();
        for (digest, why) in [
            (format!("sha512:{}", "ab".repeat(64)), "64 lowercase hex"),
            ("sha256:../../x".to_string(), "64 lowercase hex"),
            (good.to_uppercase().replace("SHA256", "sha256"), "64 lowercase hex"),
            (format!("sha256:{}", "ab".repeat(32)), "does not match"),
        ] {
            let e = import(dir.path(), layout(&[(digest.clone(), blob.clone())]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&digest) && e.contains(why), "{digest}: {e}");
        }
    }

    #[test]
    fn layer_files_stay_inside_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let layer = tar(&[("stolen", File(b"s"))]);
        fs::write(dir.path().join("outside.tar"), &layer).unwrap();
        let outside = dir.path().join("outside.tar");
        let manifest = |layers: &[&str]| serde_json::json!([{ "Layers": layers }]).to_string();
        // Docker's own links between identical layers stay inside: followed.
        let dedup = tar(&[
            (
                "manifest.json",
                File(manifest(&["l0/layer.tar", "l1/layer.tar"]).as_bytes()),
            ),
            ("l0/layer.tar", File(&layer)),
            ("l1/layer.tar", Symlink("../l0/layer.tar")),
        ]);
        assert_eq!(import(dir.path(), dedup).unwrap(), 2);
        for (name, archive) in [
            (
                "../../outside.tar",
                tar(&[("manifest.json", File(manifest(&["../../outside.tar"]).as_bytes()))]),
            ),
            (
                "l0/layer.tar",
                tar(&[
                    ("manifest.json", File(manifest(&["l0/layer.tar"]).as_bytes())),
                    ("l0/layer.tar", Symlink(outside.to_str().unwrap())),
                ]),
            ),
        ] {
            let e = import(dir.path(), archive).unwrap_err().to_string();
            assert!(e.contains(name), "{name}: {e}");
            assert!(!dir.path().join("root/stolen").exists(), "{name}");
        }
    }
}
