//! `ramkeyctl personality import FILE|-|URL`: an image delivered to the box — a file, the
//! standard input (`ssh box ramkeyctl personality import - < web.rkimg`, what `ramkey push`
//! does) or an `http://` or `https://` URL — streamed into `/pool/images/` under a temporary name, then
//! verified there against the keys the usbkey config trusts and this platform, and renamed
//! to `NAME-VERSION-SHA.rkimg` only then. The stream stops before the pool has less than a
//! reserve free; the temporary file is removed on every error, so nothing partial is left.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::base::paths::Paths;
use crate::net::conn::Client;
use crate::net::http_stream;
use crate::zone::plan;

/// The least the pool keeps free: the larger of this and a twentieth of its size.
pub const RESERVE_MIN: u64 = 64 << 20;
/// How long a silent HTTP server is waited for.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a delivered image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file on the box.
    File(PathBuf),
    /// Standard input.
    Stdin,
    /// An `http://` or `https://` URL.
    Url(String),
}

impl Source {
    /// `-`, a URL, or a path.
    pub fn parse(text: &str) -> Source {
        match text {
            "-" => Source::Stdin,
            t if t.contains("://") => Source::Url(t.to_owned()),
            t => Source::File(PathBuf::from(t)),
        }
    }

    /// The bytes, and their length when known in advance; a URL's host name is resolved
    /// and an `https://` server's certificate checked by `client`.
    pub(crate) fn open(&self, client: &Client) -> Result<(Box<dyn Read>, Option<u64>), String> {
        match self {
            Source::File(path) => {
                let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let length = file.metadata().ok().map(|m| m.len());
                Ok((Box::new(file), length))
            }
            Source::Stdin => Ok((Box::new(std::io::stdin().lock()), None)),
            Source::Url(text) => {
                let url = client.url(text).map_err(|e| e.to_string())?;
                let body = http_stream::open(&url, HTTP_TIMEOUT, &client.trust).map_err(|e| format!("{text}: {e}"))?;
                let length = body.length;
                Ok((Box::new(body), length))
            }
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Stdin => f.write_str("the standard input"),
            Source::Url(url) => f.write_str(url),
        }
    }
}

/// The file name an image is kept under in `/pool/images/`: what it is and which bytes.
pub fn kept_name(name: &str, version: &str, sha256: &str) -> String {
    format!(
        "{name}-{version}-{}.{}",
        sha256.get(..16).unwrap_or(sha256),
        ramkey_image::EXTENSION
    )
}

/// What an index says an image's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The whole file's sha256, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A temporary file that is removed unless kept.
struct Partial {
    path: PathBuf,
    kept: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.kept {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Bytes free for an image in `dir` (a filesystem's free space less its reserve), and the
/// reserve.
fn room(dir: &Path) -> Result<(u64, u64), String> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let block = stat.fragment_size();
    let total = stat.blocks() * block;
    let free = stat.blocks_available() * block;
    let reserve = RESERVE_MIN.max(total / 20);
    Ok((free.saturating_sub(reserve), reserve))
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

/// Copies `from` into a new temporary file in `images`, stopping with an error past
/// `room` bytes; returns the file, the bytes written and their sha256.
fn receive(
    from: &mut dyn Read,
    images: &Path,
    room: u64,
    reserve: u64,
    source: &Source,
) -> Result<(Partial, u64, String), String> {
    let path = images.join(format!(".import-{}.partial", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let partial = Partial { path, kept: false };
    let full = || {
        format!(
            "refused: {source} does not fit: the pool keeps {} free and has {} more; remove images no \
             zone uses from /pool/images/",
            mib(reserve),
            mib(room)
        )
    };
    let mut written = 0u64;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(format!(
                    "reading {source}: {e} (after {written} bytes); nothing was kept"
                ));
            }
        };
        written += n as u64;
        if written > room {
            return Err(full());
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| format!("{}: {e}", partial.path.display()))?;
    }
    file.sync_all()
        .map_err(|e| format!("{}: {e}", partial.path.display()))?;
    Ok((partial, written, hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The usbkey config, which names the trusted keys and the image sources.
pub fn config(root: &Path) -> Result<ramkey_config::Config, String> {
    let path = Paths::new(root).usbkey_config();
    let text = fs::read_to_string(&path).map_err(|e| format!("refused: {}: {e}", path.display()))?;
    ramkey_config::Config::parse(&text, &path.to_string_lossy()).map_err(|e| format!("refused: {e}"))
}

/// `import SOURCE` on a box whose root is `root`.
pub fn import(root: &Path, source: &Source) -> Result<String, String> {
    import_checked(root, source, None)
}

/// [`import`], refusing bytes that are not what `expected` (an index) says.
pub fn import_checked(root: &Path, source: &Source, expected: Option<&Expected>) -> Result<String, String> {
    let pool = root.join("pool");
    if !pool.is_dir() {
        return Err(
            "refused: no pool: imported images live on it; put the image on the stick under /personalities/ instead"
                .into(),
        );
    }
    let config = config(root)?;
    let version = Paths::new(root)
        .os_release_field("VERSION_ID")
        .unwrap_or_else(|| "0".into());
    let images = pool.join("images");
    fs::create_dir_all(&images).map_err(|e| format!("{}: {e}", images.display()))?;
    let (room, reserve) = room(&images)?;
    let (mut from, length) = source.open(&Client::on_box(root, &config))?;
    if length.is_some_and(|n| n > room) {
        return Err(format!(
            "refused: {source} ({}) does not fit: the pool keeps {} free and has {} more; remove images no zone \
             uses from /pool/images/",
            mib(length.unwrap_or(0)),
            mib(reserve),
            mib(room)
        ));
    }
    let started = Instant::now();
    let (mut partial, size, sha256) = receive(&mut from, &images, room, reserve, source)?;
    let received = started.elapsed();
    if let Some(expected) = expected
        && (expected.sha256 != sha256 || expected.size != size)
    {
        return Err(format!(
            "refused: {source}: {size} bytes with sha256 {sha256}, where the index says {} bytes with sha256 {}: \
             the source lies or the file changed after it was published; nothing was kept",
            expected.size, expected.sha256
        ));
    }
    let verified = plan::verify(&partial.path, &plan::trusted_keys(&config), &version)
        .map_err(|reason| format!("refused: {source}: {reason}; nothing was kept"))?;
    let checked = started.elapsed() - received;
    let m = verified.manifest();
    let dest = images.join(kept_name(&m.name, &m.version, &m.payload.sha256));
    let how = if dest.is_file() {
        "already imported"
    } else {
        fs::rename(&partial.path, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        partial.kept = true;
        "imported"
    };
    let mb = size as f64 / 1e6;
    Ok(format!(
        "{how} {} {} as {}; run it with `ramkeyctl personality swap NAME {}` ({mb:.1} MB received in {:.1} s, \
         {:.1} MB/s; verified in {:.1} s, signed by key {})\n",
        m.name,
        m.version,
        dest.display(),
        dest.display(),
        received.as_secs_f64(),
        mb / received.as_secs_f64().max(0.001),
        checked.as_secs_f64(),
        verified.key_id(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_told_apart() {
        assert_eq!(Source::parse("-"), Source::Stdin);
        assert_eq!(
            Source::parse("http://10.0.2.2:8000/web.rkimg"),
            Source::Url("http://10.0.2.2:8000/web.rkimg".into())
        );
        assert_eq!(Source::parse("/tmp/web.rkimg"), Source::File("/tmp/web.rkimg".into()));
        assert_eq!(
            kept_name("web", "2.0.0", "0123456789abcdef0123"),
            "web-2.0.0-0123456789abcdef.rkimg"
        );
    }

    #[test]
    fn a_stream_past_the_room_is_refused_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let mut data: &[u8] = &[1u8; 3000];
        let err = receive(&mut data, dir.path(), 2048, 1 << 26, &Source::Stdin)
            .err()
            .unwrap();
        assert!(
            err.starts_with("refused: the standard input does not fit: the pool keeps 64 MiB free"),
            "{err}"
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "the partial file is gone");
        let mut data: &[u8] = &[1u8; 2000];
        let (partial, n, sha256) = receive(&mut data, dir.path(), 2048, 0, &Source::Stdin).unwrap();
        assert_eq!(sha256, hex(&Sha256::digest([1u8; 2000])));
        assert_eq!((n, fs::metadata(&partial.path).unwrap().len()), (2000, 2000));
        drop(partial);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "unkept, it is removed");
    }

    #[test]
    fn without_a_pool_or_a_config_it_refuses_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let err = import(dir.path(), &Source::Stdin).unwrap_err();
        assert!(err.starts_with("refused: no pool"), "{err}");
        fs::create_dir(dir.path().join("pool")).unwrap();
        let err = import(dir.path(), &Source::Stdin).unwrap_err();
        assert!(err.contains("usbkey/config.toml"), "{err}");
    }
}
