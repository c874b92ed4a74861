//! The SSH server's host key: one ed25519 key, made on the first boot and kept so that its
//! fingerprint never changes — on the pool, or without one on the usbkey (written
//! power-safely, like the config) — and copied at each boot to `/run` with mode 0600 for
//! `sshd`. The file is OpenSSH's own private-key format (`openssh-key-v1`, unencrypted,
//! as `ssh-keygen -t ed25519 -N ''` writes it); an existing file that cannot be read is
//! never overwritten: the box makes a key for this boot only and says so.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};

use crate::storage::mounts::Mounter;
use crate::storage::usbkey_write::{self, WriteError};

/// The key's file name, in `ssh/` on the pool or the usbkey, and in the run directory.
pub const KEY_FILE: &str = "ssh_host_ed25519_key";
/// The folder it is kept in, on the pool and on the usbkey.
pub const KEPT_DIR: &str = "ssh";

const MAGIC: &[u8] = b"openssh-key-v1\0";
const KIND: &str = "ssh-ed25519";

/// An ed25519 host key.
#[derive(Clone, PartialEq, Eq)]
pub struct HostKey {
    /// The 32-byte seed.
    seed: [u8; 32],
    /// The 32-byte public key.
    public: [u8; 32],
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostKey({})", self.fingerprint())
    }
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Reads SSH wire-format strings and integers.
struct Reader<'b>(&'b [u8]);

impl<'b> Reader<'b> {
    fn u32(&mut self) -> Result<u32, String> {
        let (head, rest) = self.0.split_at_checked(4).ok_or("the key is truncated")?;
        self.0 = rest;
        Ok(u32::from_be_bytes(head.try_into().unwrap_or_default()))
    }

    fn string(&mut self) -> Result<&'b [u8], String> {
        let len = usize::try_from(self.u32()?).map_err(|e| e.to_string())?;
        let (head, rest) = self.0.split_at_checked(len).ok_or("the key is truncated")?;
        self.0 = rest;
        Ok(head)
    }
}

impl HostKey {
    /// A new key from the kernel's random numbers.
    pub fn generate() -> Result<HostKey, String> {
        let key = ramkey_image::keys::generate().map_err(|e| e.to_string())?;
        Ok(HostKey {
            seed: key.to_bytes(),
            public: key.verifying_key().to_bytes(),
        })
    }

    /// The public key blob (`string "ssh-ed25519", string key`).
    fn blob(&self) -> Vec<u8> {
        let mut blob = Vec::with_capacity(51);
        put_string(&mut blob, KIND.as_bytes());
        put_string(&mut blob, &self.public);
        blob
    }

    /// `SHA256:` and the unpadded base64 of the blob's hash, as `ssh-keygen -l` and `ssh`
    /// print it.
    pub fn fingerprint(&self) -> String {
        format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(self.blob())))
    }

    /// The `.pub` line.
    pub fn public_line(&self, comment: &str) -> String {
        format!("{KIND} {} {comment}\n", STANDARD.encode(self.blob()))
    }

    /// The private key file, in OpenSSH's format; `check` is the integer repeated inside
    /// (random in OpenSSH, where it tells a wrong passphrase; fixed here: nothing is encrypted).
    pub fn to_openssh(&self, comment: &str) -> String {
        let mut private = Vec::new();
        private.extend_from_slice(&[0x52, 0x4b, 0x45, 0x59, 0x52, 0x4b, 0x45, 0x59]);
        put_string(&mut private, KIND.as_bytes());
        put_string(&mut private, &self.public);
        put_string(&mut private, &[self.seed, self.public].concat());
        put_string(&mut private, comment.as_bytes());
        let mut pad = 1u8;
        while private.len() % 8 != 0 {
            private.push(pad);
            pad += 1;
        }
        let mut body = MAGIC.to_vec();
        for field in ["none", "none", ""] {
            put_string(&mut body, field.as_bytes());
        }
        body.extend_from_slice(&1u32.to_be_bytes());
        put_string(&mut body, &self.blob());
        put_string(&mut body, &private);
        let text = STANDARD.encode(body);
        let mut out = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
        for line in text.as_bytes().chunks(70) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END OPENSSH PRIVATE KEY-----\n");
        out
    }

    /// Reads an unencrypted ed25519 key in OpenSSH's format.
    pub fn parse(text: &str) -> Result<HostKey, String> {
        let inner: String = text
            .lines()
            .map(str::trim)
            .skip_while(|l| *l != "-----BEGIN OPENSSH PRIVATE KEY-----")
            .skip(1)
            .take_while(|l| *l != "-----END OPENSSH PRIVATE KEY-----")
            .collect();
        let body = STANDARD
            .decode(inner)
            .map_err(|e| format!("not an OpenSSH private key: {e}"))?;
        let mut r = Reader(body.strip_prefix(MAGIC).ok_or("not an OpenSSH private key")?);
        let (cipher, _kdf, _options) = (r.string()?, r.string()?, r.string()?);
        if cipher != b"none" {
            return Err("the key is encrypted (sshd needs it without a passphrase)".into());
        }
        if r.u32()? != 1 {
            return Err("the file holds more than one key".into());
        }
        let _blob = r.string()?;
        let mut p = Reader(r.string()?);
        if p.u32()? != p.u32()? {
            return Err("the key is damaged (its check integers differ)".into());
        }
        if p.string()? != KIND.as_bytes() {
            return Err("not an ed25519 key".into());
        }
        let public: [u8; 32] = p.string()?.try_into().map_err(|_| "bad public key length")?;
        let pair = p.string()?;
        let seed: [u8; 32] = pair
            .get(..32)
            .and_then(|s| s.try_into().ok())
            .ok_or("bad secret key length")?;
        let key = HostKey { seed, public };
        let derived = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        if derived != public || pair.get(32..) != Some(&public[..]) {
            return Err("the key is damaged (its public half does not match)".into());
        }
        Ok(key)
    }
}

/// Where the key came from this boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Read from this file.
    Kept(PathBuf),
    /// Made now and saved to this file.
    Made(PathBuf),
    /// Made now for this boot only, and why.
    ThisBootOnly(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Kept(path) => write!(f, "kept in {}", path.display()),
            Origin::Made(path) => write!(f, "new, saved to {}", path.display()),
            Origin::ThisBootOnly(why) => write!(f, "for this boot only: {why}"),
        }
    }
}

/// Where a key may be kept: a pool directory (writable), or the usbkey (remounted to write).
pub struct Stores<'a> {
    /// The pool's mount point, when mounted read-write.
    pub pool: Option<&'a Path>,
    /// The usbkey's device node and mount point.
    pub usbkey: Option<(&'a Path, &'a Path)>,
    /// Remounts the usbkey.
    pub mounter: &'a mut dyn Mounter,
}

/// The kept key (pool first, then the usbkey), else a new one saved to the first store that
/// takes it; a kept file that cannot be read is left as it is.
pub fn load_or_make(stores: Stores<'_>) -> Result<(HostKey, Origin), String> {
    let places: Vec<PathBuf> = stores
        .pool
        .iter()
        .chain(stores.usbkey.as_ref().map(|(_, mount)| mount))
        .map(|root| root.join(KEPT_DIR).join(KEY_FILE))
        .collect();
    for path in &places {
        match fs::read_to_string(path) {
            Ok(text) => {
                return match HostKey::parse(&text) {
                    Ok(key) => Ok((key, Origin::Kept(path.clone()))),
                    Err(e) => {
                        let why = format!("{} is unusable ({e}); move it away to make a new one", path.display());
                        Ok((HostKey::generate()?, Origin::ThisBootOnly(why)))
                    }
                };
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                let why = format!("cannot read {}: {e}", path.display());
                return Ok((HostKey::generate()?, Origin::ThisBootOnly(why)));
            }
        }
    }
    let key = HostKey::generate()?;
    let text = key.to_openssh("root@ramkey");
    let mut problems = Vec::new();
    if let Some(pool) = stores.pool {
        let dir = pool.join(KEPT_DIR);
        match fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| e.to_string())
            .and_then(|()| usbkey_write::write_file(&dir, KEY_FILE, text.as_bytes()).map_err(|e| e.to_string()))
        {
            Ok(()) => return Ok((key, Origin::Made(dir.join(KEY_FILE)))),
            Err(e) => problems.push(format!("the pool: {e}")),
        }
    }
    if let Some((node, mount)) = stores.usbkey {
        let dir = mount.join(KEPT_DIR);
        let written = usbkey_write::with_rw(stores.mounter, node, mount, || {
            fs::create_dir_all(&dir).map_err(|source| WriteError::Io {
                action: "create",
                path: dir.clone(),
                source,
            })?;
            usbkey_write::write_file(&dir, KEY_FILE, text.as_bytes())
        });
        match written {
            Ok(()) => return Ok((key, Origin::Made(dir.join(KEY_FILE)))),
            Err(e) => problems.push(format!("the usbkey: {e}")),
        }
    }
    let why = if problems.is_empty() {
        "no pool and no usbkey to keep it on; the fingerprint changes at each boot".to_owned()
    } else {
        format!(
            "cannot keep it ({}); the fingerprint changes at each boot",
            problems.join("; ")
        )
    };
    Ok((key, Origin::ThisBootOnly(why)))
}

/// Writes the key for `sshd` into `dir` (mode 0700), the file mode 0600; returns its path.
pub fn install(key: &HostKey, dir: &Path) -> std::io::Result<PathBuf> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let path = dir.join(KEY_FILE);
    let _ = fs::remove_file(&path);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?
        .write_all(key.to_openssh("root@ramkey").as_bytes())?;
    fs::write(dir.join(format!("{KEY_FILE}.pub")), key.public_line("root@ramkey"))?;
    Ok(path)
}

#[cfg(test)]
#[path = "host_key_tests.rs"]
mod tests;
