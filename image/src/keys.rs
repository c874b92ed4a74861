//! Ed25519 signing keys: generation, key ids and the one-line text form of key files.
//!
//! A secret key file holds one line, `ramkey-ed25519-secret <base64 of the 32-byte seed>`; a
//! public key file holds `ramkey-ed25519-public <base64 of the 32-byte key> [comment]`.
//! Base64 is the standard alphabet with padding. Surrounding whitespace is ignored.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::footer::hex;

/// First word of a secret key file.
pub const SECRET_TAG: &str = "ramkey-ed25519-secret";
/// First word of a public key file.
pub const PUBLIC_TAG: &str = "ramkey-ed25519-public";

/// Errors generating, parsing or storing keys.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The OS random source failed.
    #[error("cannot get random bytes for a new key: {error}")]
    Random {
        /// What the OS said.
        error: getrandom::Error,
    },
    /// The text is empty.
    #[error("{what}: empty, expected `{tag} <base64>`")]
    Empty {
        /// Where the text came from.
        what: String,
        /// The expected first word.
        tag: &'static str,
    },
    /// The first word is not the expected tag.
    #[error("{what}: starts with `{found}`, expected `{tag}`{hint}")]
    WrongTag {
        /// Where the text came from.
        what: String,
        /// The word found.
        found: String,
        /// The expected first word.
        tag: &'static str,
        /// A hint when a public key was given for a secret one or the reverse.
        hint: &'static str,
    },
    /// The key is not valid base64.
    #[error("{what}: key is not valid base64: {error}")]
    Base64 {
        /// Where the text came from.
        what: String,
        /// The decoder's complaint.
        error: base64::DecodeError,
    },
    /// The key does not decode to 32 bytes.
    #[error("{what}: key is {len} bytes, expected 32")]
    Length {
        /// Where the text came from.
        what: String,
        /// Decoded length.
        len: usize,
    },
    /// A secret key line has more words than the tag and the key.
    #[error("{what}: unexpected text after the key")]
    Trailing {
        /// Where the text came from.
        what: String,
    },
    /// The public key bytes are not a valid curve point.
    #[error("{what}: not a valid ed25519 public key")]
    BadPoint {
        /// Where the text came from.
        what: String,
    },
    /// Reading or writing a key file failed.
    #[error("{path}: {error}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
}

/// The id of a public key: the first 8 bytes of its sha256. Shown as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The id of `key`.
    pub fn of(key: &VerifyingKey) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Self(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// A new signing key from the OS random source.
pub fn generate() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|error| KeyError::Random { error })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The secret key file text (one line, newline-terminated).
pub fn encode_secret(key: &SigningKey) -> String {
    format!("{SECRET_TAG} {}\n", STANDARD.encode(key.to_bytes()))
}

/// The public key file text (one line, newline-terminated).
pub fn encode_public(key: &VerifyingKey) -> String {
    format!("{PUBLIC_TAG} {}\n", STANDARD.encode(key.as_bytes()))
}

/// Parse a secret key file's text; `what` names the source in errors.
pub fn decode_secret(text: &str, what: &str) -> Result<SigningKey, KeyError> {
    let (bytes, rest) = decode_line(text, what, SECRET_TAG)?;
    if !rest.is_empty() {
        return Err(KeyError::Trailing { what: what.into() });
    }
    Ok(SigningKey::from_bytes(&bytes))
}

/// Parse a public key file's text; `what` names the source in errors. A comment after the key
/// is allowed and ignored.
pub fn decode_public(text: &str, what: &str) -> Result<VerifyingKey, KeyError> {
    let (bytes, _comment) = decode_line(text, what, PUBLIC_TAG)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::BadPoint { what: what.into() })
}

fn decode_line<'a>(text: &'a str, what: &str, tag: &'static str) -> Result<([u8; 32], &'a str), KeyError> {
    let text = text.trim();
    let mut words = text.splitn(3, char::is_whitespace);
    let first = words.next().unwrap_or("");
    if first.is_empty() {
        return Err(KeyError::Empty { what: what.into(), tag });
    }
    if first != tag {
        let hint = match (first, tag) {
            (PUBLIC_TAG, SECRET_TAG) => " (this is a public key; signing needs the secret key)",
            (SECRET_TAG, PUBLIC_TAG) => " (this is a secret key; give the public key, never ship the secret one)",
            _ => "",
        };
        return Err(KeyError::WrongTag {
            what: what.into(),
            found: first.chars().take(40).collect(),
            tag,
            hint,
        });
    }
    let b64 = words.next().unwrap_or("");
    let raw = STANDARD.decode(b64).map_err(|error| KeyError::Base64 {
        what: what.into(),
        error,
    })?;
    let bytes: [u8; 32] = raw.as_slice().try_into().map_err(|_| KeyError::Length {
        what: what.into(),
        len: raw.len(),
    })?;
    Ok((bytes, words.next().unwrap_or("").trim()))
}

/// Read a secret key file.
pub fn read_secret_file(path: &Path) -> Result<SigningKey, KeyError> {
    let text = read(path)?;
    decode_secret(&text, &path.display().to_string())
}

/// Read a public key file.
pub fn read_public_file(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = read(path)?;
    decode_public(&text, &path.display().to_string())
}

/// Write a secret key file, readable by its owner only; fails if the file exists.
pub fn write_secret_file(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |error| KeyError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(encode_secret(key).as_bytes()).map_err(io)
}

/// Write a public key file.
pub fn write_public_file(path: &Path, key: &VerifyingKey) -> Result<(), KeyError> {
    fs::write(path, encode_public(key)).map_err(|error| KeyError::Io {
        path: path.to_path_buf(),
        error,
    })
}

fn read(path: &Path) -> Result<String, KeyError> {
    fs::read_to_string(path).map_err(|error| KeyError::Io {
        path: path.to_path_buf(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let secret = encode_secret(&key);
        assert!(secret.starts_with("ramkey-ed25519-secret "));
        assert_eq!(decode_secret(&secret, "s").unwrap().to_bytes(), [7; 32]);
        let public = encode_public(&key.verifying_key());
        let with_comment = format!("{} ci@ramkey\n", public.trim_end());
        assert_eq!(decode_public(&with_comment, "p").unwrap(), key.verifying_key());
    }

    #[test]
    fn generated_keys_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a.to_bytes(), b.to_bytes());
    }

    #[test]
    fn key_id_is_sha256_prefix() {
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let digest = Sha256::digest(key.as_bytes());
        assert_eq!(KeyId::of(&key).0, digest[..8]);
        assert_eq!(KeyId([0xab; 8]).to_string(), "abababababababab");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let cases = [
            (String::new(), "k: empty, expected `ramkey-ed25519-secret <base64>`"),
            (
                encode_public(&key.verifying_key()),
                "this is a public key; signing needs the secret key",
            ),
            ("ssh-ed25519 AAAA".into(), "starts with `ssh-ed25519`"),
            ("ramkey-ed25519-secret !!!".into(), "key is not valid base64"),
            ("ramkey-ed25519-secret AAAA".into(), "key is 3 bytes, expected 32"),
            (
                format!("{} extra", encode_secret(&key).trim_end()),
                "unexpected text after the key",
            ),
        ];
        for (text, want) in cases {
            let err = decode_secret(&text, "k").unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let err = decode_public(&encode_secret(&key), "p").unwrap_err();
        assert!(err.to_string().contains("never ship the secret one"), "{err}");
    }

    #[test]
    fn key_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[3; 32]);
        let secret = dir.path().join("k.secret");
        write_secret_file(&secret, &key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(write_secret_file(&secret, &key).is_err(), "must not overwrite");
        assert_eq!(read_secret_file(&secret).unwrap().to_bytes(), [3; 32]);
        let public = dir.path().join("k.pub");
        write_public_file(&public, &key.verifying_key()).unwrap();
        assert_eq!(read_public_file(&public).unwrap(), key.verifying_key());
        let err = read_public_file(&dir.path().join("none")).unwrap_err();
        assert!(err.to_string().contains("none"), "{err}");
    }
}
