//! Credential checks: SSH public keys, crypt(3) password hashes, ed25519 image-signing keys.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// SSH public key types accepted in `authorized_keys`.
pub const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// An SSH public key line: `type base64 [comment]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKey {
    /// The key type (`ssh-ed25519`, ...).
    pub kind: String,
    /// The key blob, as base64.
    pub blob: String,
    /// The comment, if any.
    pub comment: Option<String>,
}

impl std::fmt::Display for SshKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.blob)?;
        match &self.comment {
            Some(c) => write!(f, " {c}"),
            None => Ok(()),
        }
    }
}

/// Reads the type string that an SSH key blob begins with (a u32 length, then the bytes).
fn blob_type(blob: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    let name = blob.get(4..4usize.checked_add(len)?)?;
    Some((name, &blob[4 + len..]))
}

/// Parses an `authorized_keys` line of the form `type base64 [comment]`.
///
/// # Errors
/// Says what is wrong with the line (unknown type, bad base64, a blob of another type).
pub fn parse_ssh_key(line: &str) -> Result<SshKey, String> {
    let mut parts = line.trim().splitn(3, char::is_whitespace);
    let kind = parts.next().unwrap_or_default();
    if !SSH_KEY_TYPES.contains(&kind) {
        return Err(format!(
            "{kind:?} is not an SSH key type (options before the key are not supported)"
        ));
    }
    let blob = parts.next().ok_or("the base64 key is missing")?.trim();
    let bytes = STANDARD
        .decode(blob)
        .map_err(|e| format!("the key is not base64: {e}"))?;
    match blob_type(&bytes) {
        Some((name, _)) if name == kind.as_bytes() => {}
        _ => return Err(format!("the base64 key is not a {kind} key")),
    }
    let comment = parts.next().map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned);
    Ok(SshKey {
        kind: kind.to_owned(),
        blob: blob.to_owned(),
        comment,
    })
}

fn is_crypt64(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
}

/// Checks a crypt(3) hash: SHA-512 (`$6$[rounds=N$]salt$hash`) or yescrypt (`$y$params$salt$hash`).
///
/// # Errors
/// Says which part is wrong.
pub fn check_password_hash(hash: &str) -> Result<(), String> {
    let fields: Vec<&str> = hash.split('$').collect();
    match fields.as_slice() {
        ["", "6", rest @ ..] => {
            let rest = match rest {
                [rounds, tail @ ..] if rounds.starts_with("rounds=") => {
                    rounds["rounds=".len()..]
                        .parse::<u32>()
                        .map_err(|_| "bad rounds=".to_owned())?;
                    tail
                }
                _ => rest,
            };
            match rest {
                [salt, sum] if is_crypt64(salt) && salt.len() <= 16 && is_crypt64(sum) && sum.len() == 86 => Ok(()),
                _ => Err("a $6$ hash is $6$SALT$HASH with an 86-character hash".to_owned()),
            }
        }
        ["", "y", params, salt, sum] if is_crypt64(params) && is_crypt64(salt) && is_crypt64(sum) => Ok(()),
        ["", "y", ..] => Err("a $y$ hash is $y$PARAMS$SALT$HASH".to_owned()),
        _ => Err("expected a crypt(3) hash starting with $6$ (SHA-512) or $y$ (yescrypt)".to_owned()),
    }
}

/// An ed25519 public key trusted to sign personality images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// The 32 bytes of the public key.
    pub key: [u8; 32],
    /// The comment of an OpenSSH-form key, if any.
    pub comment: Option<String>,
}

/// Parses an ed25519 public key: the image tools' public key line
/// (`ramkey-ed25519-public BASE64 [comment]`), OpenSSH form (`ssh-ed25519 AAAA... [comment]`),
/// or the 32 raw bytes as base64 or hex, optionally prefixed with `ed25519:`.
///
/// # Errors
/// Says what is wrong with the key.
pub fn parse_trusted_key(s: &str) -> Result<TrustedKey, String> {
    let s = s.trim();
    if s.starts_with("ssh-") || s.starts_with("sk-") || s.starts_with("ecdsa-") {
        let ssh = parse_ssh_key(s)?;
        if ssh.kind != "ssh-ed25519" {
            return Err(format!("a {} key cannot verify images; use an ed25519 key", ssh.kind));
        }
        let bytes = STANDARD.decode(&ssh.blob).map_err(|e| e.to_string())?;
        let key = blob_type(&bytes)
            .and_then(|(_, rest)| blob_type(rest))
            .and_then(|(key, _)| <[u8; 32]>::try_from(key).ok())
            .ok_or("the ssh-ed25519 key does not hold 32 bytes")?;
        return Ok(TrustedKey {
            key,
            comment: ssh.comment,
        });
    }
    let (raw, comment) = match s.strip_prefix("ramkey-ed25519-public") {
        Some(rest) => {
            let mut parts = rest.trim().splitn(2, char::is_whitespace);
            let key = parts.next().unwrap_or_default();
            (
                key,
                parts.next().map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned),
            )
        }
        None => (s.strip_prefix("ed25519:").unwrap_or(s), None),
    };
    let bytes = if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&raw[2 * i..2 * i + 2], 16).unwrap_or_default())
            .collect()
    } else {
        STANDARD
            .decode(raw)
            .map_err(|_| "expected an ed25519 key as base64, hex or `ssh-ed25519 ...`")?
    };
    let key = <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("an ed25519 public key has 32 bytes, this one has {}", bytes.len()))?;
    Ok(TrustedKey { key, comment })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A well-formed (not secret, not real) ed25519 OpenSSH key line.
    pub(crate) fn ed25519_line() -> String {
        let mut blob = Vec::new();
        blob.extend_from_slice(&11u32.to_be_bytes());
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&32u32.to_be_bytes());
        blob.extend_from_slice(&[7u8; 32]);
        format!("ssh-ed25519 {} admin@example", STANDARD.encode(blob))
    }

    #[test]
    fn ssh_keys() {
        let key = parse_ssh_key(&ed25519_line()).expect("valid");
        assert_eq!(key.comment.as_deref(), Some("admin@example"));
        assert!(parse_ssh_key("ssh-foo AAAA").is_err());
        assert!(parse_ssh_key("ssh-rsa !!!").is_err());
        let line = ed25519_line().replace("ssh-ed25519 ", "ssh-rsa ");
        assert!(parse_ssh_key(&line).unwrap_err().contains("not a ssh-rsa key"));
    }

    #[test]
    fn password_hashes() {
        let sum = "a".repeat(86);
        assert!(check_password_hash(&format!("$6$saltsalt${sum}")).is_ok());
        assert!(check_password_hash(&format!("$6$rounds=5000$salt${sum}")).is_ok());
        assert!(check_password_hash("$y$j9T$abc$def").is_ok());
        assert!(check_password_hash("hunter2").is_err());
        assert!(check_password_hash("$6$salt$short").is_err());
    }

    #[test]
    fn trusted_keys() {
        assert_eq!(parse_trusted_key(&ed25519_line()).expect("ssh form").key, [7u8; 32]);
        assert_eq!(parse_trusted_key(&"07".repeat(32)).expect("hex").key, [7u8; 32]);
        let b64 = format!("ed25519:{}", STANDARD.encode([7u8; 32]));
        assert_eq!(parse_trusted_key(&b64).expect("base64").key, [7u8; 32]);
        assert!(parse_trusted_key("ed25519:AAAA").is_err());
        let line = format!("ramkey-ed25519-public {} release", STANDARD.encode([7u8; 32]));
        let key = parse_trusted_key(&line).expect("ramkey form");
        assert_eq!((key.key, key.comment.as_deref()), ([7u8; 32], Some("release")));
    }
}
