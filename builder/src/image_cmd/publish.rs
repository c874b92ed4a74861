//! `ramkey image publish REPO_DIR IMAGE... [--key PUB]`: a static image repository that any
//! plain web server can serve (nginx, `python3 -m http.server`, an object store): each image
//! verified with the publisher's key, copied in as `NAME-VERSION.rkimg`, and listed in
//! `index.json` ([`ramkey_image::repo`]), written last and atomically, so a box reading the
//! repository during a publish sees the old index or the new one.

use std::io::Read;
use std::path::{Path, PathBuf};

use ramkey_image::repo::{Entry, INDEX_FILE, INDEX_VERSION, Index};
use ramkey_image::verify::Platform;
use ramkey_image::{keys, read, verify};
use sha2::{Digest, Sha256};

use super::tools::ToolsError;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ToolsError + '_ {
    move |source| ToolsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The file's sha256, hex.
fn file_sha256(path: &Path) -> Result<String, ToolsError> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Publishes `images` into `repo` (created if missing); returns one line per image.
pub fn publish(repo: &Path, images: &[PathBuf], key: &Path) -> Result<String, ToolsError> {
    let trusted = [keys::read_public_file(key)?];
    std::fs::create_dir_all(repo).map_err(io(repo))?;
    let index_path = repo.join(INDEX_FILE);
    let mut index = match std::fs::read(&index_path) {
        Ok(text) => Index::parse(&text).map_err(|e| ToolsError::Io {
            path: index_path.clone(),
            source: std::io::Error::other(e),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Index {
            version: INDEX_VERSION,
            images: Vec::new(),
        },
        Err(e) => return Err(io(&index_path)(e)),
    };
    let mut out = String::new();
    for image in images {
        let opened = read::open(image)?;
        let m = opened.manifest.clone();
        let platform = Platform {
            version: m.requirements.min_platform.parse().map_err(ToolsError::Platform)?,
            arch: m.requirements.arch.clone(),
        };
        let verified = verify::verify(opened, &trusted, &platform)?;
        let file = format!("{}-{}.{}", m.name, m.version, ramkey_image::EXTENSION);
        let dest = repo.join(&file);
        let partial = repo.join(format!(".{file}.partial"));
        std::fs::copy(image, &partial).map_err(io(&partial))?;
        std::fs::rename(&partial, &dest).map_err(io(&dest))?;
        let entry = Entry {
            name: m.name.clone(),
            version: m.version.clone(),
            description: m.description.clone(),
            size: std::fs::metadata(&dest).map_err(io(&dest))?.len(),
            sha256: file_sha256(&dest)?,
            payload_sha256: m.payload.sha256.clone(),
            key_id: verified.key_id().to_string(),
            requirements: m.requirements.clone(),
            file,
        };
        out.push_str(&format!(
            "{}: {} ({} bytes, signed by key {})\n",
            repo.display(),
            entry.label(),
            entry.size,
            entry.key_id
        ));
        index.insert(entry);
    }
    let new = repo.join(format!(".{INDEX_FILE}.new"));
    std::fs::write(&new, index.to_text()).map_err(io(&new))?;
    std::fs::rename(&new, &index_path).map_err(io(&index_path))?;
    out.push_str(&format!(
        "{}: {} images; serve this folder and name it in [images] sources\n",
        index_path.display(),
        index.images.len()
    ));
    Ok(out)
}
