//! The build cache: an image is stored under the sha256 of everything that decides its bytes
//! (definition text, `files/` tree, the base's resolved packages or archive digest, the
//! epoch, the signing key, the builder and mksquashfs versions), so that a rebuild with
//! unchanged inputs copies the stored image instead of building.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the cache stores next to each image: facts of the build a hit still reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Installed packages.
    pub packages: usize,
    /// Sum of their Installed-Size, in KiB.
    pub installed_kib: u64,
}

/// The default cache folder: `$RAMKEY_CACHE_DIR`, else `$XDG_CACHE_HOME/ramkey/images`, else
/// `~/.cache/ramkey/images`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("RAMKEY_CACHE_DIR") {
        return Some(d.into());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("ramkey/images"))
}

/// A running cache key: named parts fed into sha256.
#[derive(Debug, Clone, Default)]
pub struct Key {
    hasher: Sha256,
}

impl Key {
    /// A new key.
    pub fn new() -> Key {
        let mut k = Key::default();
        k.part("ramkey image cache v1", b"");
        k
    }

    /// Adds a named part (length-prefixed, so parts cannot run into each other).
    pub fn part(&mut self, name: &str, bytes: &[u8]) {
        for b in [name.as_bytes(), bytes] {
            self.hasher.update((b.len() as u64).to_le_bytes());
            self.hasher.update(b);
        }
    }

    /// Adds a folder tree: each path (sorted), its kind, executable bit, content or target.
    pub fn tree(&mut self, name: &str, root: &Path) -> io::Result<()> {
        self.part(name, b"tree");
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let mut names: Vec<_> = fs::read_dir(root.join(&rel))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()?;
            names.sort();
            // Reverse so the stack pops folders in sorted order.
            for n in names.iter().rev() {
                let rel = rel.join(n);
                let path = root.join(&rel);
                let meta = fs::symlink_metadata(&path)?;
                let shown = rel.to_string_lossy();
                if meta.is_dir() {
                    self.part("dir", shown.as_bytes());
                    stack.push(rel);
                } else if meta.file_type().is_symlink() {
                    self.part("link", shown.as_bytes());
                    self.part("target", fs::read_link(&path)?.as_os_str().as_encoded_bytes());
                } else {
                    self.part("file", shown.as_bytes());
                    self.part("exec", &[u8::from(meta.mode() & 0o111 != 0)]);
                    self.part("data", &fs::read(&path)?);
                }
            }
        }
        Ok(())
    }

    /// The key, 64 hex digits.
    pub fn finish(self) -> String {
        self.hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// sha256 of a file, streamed, as hex.
pub fn file_sha256(path: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(
        &mut io::BufReader::new(fs::File::open(path)?),
        &mut HashWriter(&mut hasher),
    )?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where the image and its entry for `key` live in `dir`.
pub fn paths(dir: &Path, key: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{key}.rkimg")), dir.join(format!("{key}.toml")))
}

/// The cached image and entry for `key`, if both are there.
pub fn lookup(dir: &Path, key: &str) -> Option<(PathBuf, Entry)> {
    let (image, entry) = paths(dir, key);
    let entry: Entry = toml::from_str(&fs::read_to_string(entry).ok()?).ok()?;
    image.is_file().then_some((image, entry))
}

/// Stores a copy of `image` and its entry under `key` (written aside, then renamed).
pub fn store(dir: &Path, key: &str, image: &Path, entry: &Entry) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let (to_image, to_entry) = paths(dir, key);
    let partial = dir.join(format!("{key}.partial"));
    fs::copy(image, &partial)?;
    fs::rename(&partial, &to_image)?;
    let text = toml::to_string(entry).map_err(io::Error::other)?;
    fs::write(&partial, text)?;
    fs::rename(&partial, &to_entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_key_follows_content_names_and_exec_bit() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("a/b/f"), "x").unwrap();
        let key = || {
            let mut k = Key::new();
            k.tree("files", dir.path()).unwrap();
            k.finish()
        };
        let first = key();
        assert_eq!(first, key());
        fs::set_permissions(dir.path().join("a/b/f"), fs::Permissions::from_mode(0o755)).unwrap();
        let exec = key();
        assert_ne!(first, exec);
        fs::write(dir.path().join("a/b/f"), "y").unwrap();
        assert_ne!(exec, key());
    }

    #[test]
    fn store_then_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("i");
        fs::write(&img, "image").unwrap();
        let entry = Entry {
            packages: 3,
            installed_kib: 10,
        };
        assert!(lookup(dir.path(), "k").is_none());
        store(&dir.path().join("c"), "k", &img, &entry).unwrap();
        let (path, got) = lookup(&dir.path().join("c"), "k").unwrap();
        assert_eq!(got, entry);
        assert_eq!(fs::read(path).unwrap(), b"image");
    }
}
