//! Flattening an OCI image archive into a directory: a `docker save` tarball
//! (`manifest.json` naming layer files) or an OCI image layout tarball (`index.json` →
//! manifest → `blobs/sha256/...`). Layers are applied in order, each honouring whiteouts:
//! `.wh.NAME` deletes NAME from the layers below, `.wh..wh..opq` empties its folder of them.
//! Layers may be plain, gzip or zstd tarballs. Device nodes and FIFOs are skipped (the zone
//! makes its own `/dev`).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

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
    let read_json = |rel: &str| -> Result<Vec<u8>, OciError> {
        let path = outer.join(rel);
        fs::read(&path).map_err(io_at(&path))
    };
    let blob = |digest: &str| -> Result<String, OciError> {
        let (algo, hex) = digest
            .split_once(':')
            .filter(|(_, h)| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| format(format!("bad digest `{digest}`")))?;
        Ok(format!("blobs/{algo}/{hex}"))
    };
    let layers: Vec<String> = if outer.join("manifest.json").is_file() {
        let list: Vec<DockerManifest> =
            serde_json::from_slice(&read_json("manifest.json")?).map_err(|e| format(format!("manifest.json: {e}")))?;
        let [image] = <[DockerManifest; 1]>::try_from(list)
            .map_err(|l| format(format!("manifest.json lists {} images; save exactly one", l.len())))?;
        image.layers
    } else if outer.join("index.json").is_file() {
        let mut index: OciIndex =
            serde_json::from_slice(&read_json("index.json")?).map_err(|e| format(format!("index.json: {e}")))?;
        loop {
            let [desc] = <[Descriptor; 1]>::try_from(index.manifests)
                .map_err(|l| format(format!("index lists {} manifests; expected one", l.len())))?;
            let bytes = read_json(&blob(&desc.digest)?)?;
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
    for layer in &layers {
        let path = outer.join(layer);
        apply_layer(&path, dest).map_err(|e| match e {
            LayerError::Io(source) => OciError::Io {
                path: path.clone(),
                source,
            },
            LayerError::Path(p) => format(format!("layer {layer}: unsafe path `{p}`")),
        })?;
    }
    Ok(layers.len())
}

enum LayerError {
    Io(io::Error),
    Path(String),
}

impl From<io::Error> for LayerError {
    fn from(e: io::Error) -> Self {
        LayerError::Io(e)
    }
}

fn open_layer(path: &Path) -> io::Result<Box<dyn Read>> {
    let mut magic = [0u8; 4];
    let n = File::open(path)?.read(&mut magic)?;
    let file = BufReader::new(File::open(path)?);
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(file)),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(zstd::stream::read::Decoder::new(file)?),
        _ => Box::new(file),
    })
}

/// A layer entry's path, relative and without `.` or `..`.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn remove(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The whiteouts first (they apply to the layers below only), then the entries.
fn apply_layer(layer: &Path, dest: &Path) -> Result<(), LayerError> {
    let mut whiteouts: BTreeMap<PathBuf, bool> = BTreeMap::new();
    for entry in tar::Archive::new(open_layer(layer)?).entries()? {
        let entry = entry?;
        let raw = entry.path()?.into_owned();
        let path = clean(&raw).ok_or_else(|| LayerError::Path(raw.display().to_string()))?;
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
        if name == ".wh..wh..opq" {
            whiteouts.insert(parent, true);
        } else if let Some(hidden) = name.strip_prefix(".wh.") {
            whiteouts.insert(parent.join(hidden), false);
        }
    }
    for (path, opaque) in &whiteouts {
        let target = dest.join(path);
        if *opaque {
            if let Ok(children) = fs::read_dir(&target) {
                for child in children {
                    remove(&child?.path())?;
                }
            }
        } else {
            remove(&target)?;
        }
    }
    let mut archive = tar::Archive::new(open_layer(layer)?);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(super::rootfs::is_root());
    archive.set_preserve_mtime(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let path = clean(&raw).ok_or_else(|| LayerError::Path(raw.display().to_string()))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let kind = entry.header().entry_type();
        if name.starts_with(".wh.") || kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            continue;
        }
        let target = dest.join(&path);
        // A non-folder replaces whatever was there; a folder replaces a non-folder.
        if let Ok(old) = fs::symlink_metadata(&target)
            && !(old.is_dir() && kind.is_dir())
        {
            remove(&target)?;
        }
        if !entry.unpack_in(dest)? {
            return Err(LayerError::Path(raw.display().to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match content {
                Some(c) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(c.len() as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, path, c.as_bytes()).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn archive(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, path, &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn layers() -> (Vec<u8>, Vec<u8>) {
        let lower = layer(&[
            ("etc/", None),
            ("etc/keep", Some("k")),
            ("etc/gone", Some("g")),
            ("var/", None),
            ("var/cache/", None),
            ("var/cache/old", Some("o")),
        ]);
        let upper = layer(&[
            ("etc/.wh.gone", Some("")),
            ("var/cache/.wh..wh..opq", Some("")),
            ("var/cache/new", Some("n")),
            ("etc/keep", Some("k2")),
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
        fs::write(dir.path().join("a.tar"), tar).unwrap();
        let root = dir.path().join("root");
        assert_eq!(
            flatten(&dir.path().join("a.tar"), &root, &dir.path().join("w")).unwrap(),
            2
        );
        check(&root);
    }

    #[test]
    fn oci_layout() {
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper) = layers();
        let (d1, d2, dm) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        let manifest = format!(
            r#"{{"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{d1}"}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{d2}"}}]}}"#
        );
        let index = format!(
            r#"{{"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{dm}"}}]}}"#
        );
        let tar = archive(&[
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            ("index.json", index.into_bytes()),
            (&format!("blobs/sha256/{dm}"), manifest.into_bytes()),
            (&format!("blobs/sha256/{d1}"), lower),
            (&format!("blobs/sha256/{d2}"), gzip(&upper)),
        ]);
        fs::write(dir.path().join("a.tar"), tar).unwrap();
        let root = dir.path().join("root");
        flatten(&dir.path().join("a.tar"), &root, &dir.path().join("w")).unwrap();
        check(&root);
    }

    #[test]
    fn refuses_other_archives() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.tar"), archive(&[("x", b"y".to_vec())])).unwrap();
        let e = flatten(&dir.path().join("a.tar"), &dir.path().join("r"), &dir.path().join("w")).unwrap_err();
        assert!(e.to_string().contains("docker save"), "{e}");
    }
}
