//! Detached signatures over a config served to boxes over the network (PXE): the file
//! `CONFIG.sig` beside `CONFIG` holds one line, `ramkey-ed25519-signature <base64 of the
//! 64-byte signature> <key id>`, over [`CONFIG_DOMAIN`] followed by the config's bytes. A
//! platform built with config keys (`[pxe] config_keys` of the appliance) takes a fetched
//! config only with a signature by one of them: on a boot network anyone can answer DHCP
//! and HTTP, and a config decides the box's keys, services and personalities.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use thiserror::Error;

use crate::keys::KeyId;

/// What a config signature is over, before the config's bytes: a config signature can
/// never be taken for an image's, or the other way round.
pub const CONFIG_DOMAIN: &[u8] = b"ramkey-config-v1\0";
/// First word of a signature file.
pub const SIGNATURE_TAG: &str = "ramkey-ed25519-signature";

/// Why a config's signature was not accepted.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignatureError {
    /// Not `ramkey-ed25519-signature <base64>`.
    #[error("the signature file is not `{SIGNATURE_TAG} <base64> [key id]`")]
    Malformed,
    /// Valid form, but no trusted key made it over these bytes.
    #[error(
        "the signature is not by a key the platform trusts ({trusted}) over this config: a changed config, or one signed with another key"
    )]
    NotTrusted {
        /// The trusted keys' ids.
        trusted: String,
    },
}

/// The signature file's line for `config`, signed with `key`.
pub fn sign(key: &SigningKey, config: &[u8]) -> String {
    let signature = key.sign(&message(config));
    format!(
        "{SIGNATURE_TAG} {} {}\n",
        STANDARD.encode(signature.to_bytes()),
        KeyId::of(&key.verifying_key())
    )
}

/// Checks the signature file's `text` over `config` against `trusted`; the signer's id.
pub fn verify(trusted: &[VerifyingKey], config: &[u8], text: &str) -> Result<KeyId, SignatureError> {
    let mut words = text.split_whitespace();
    if words.next() != Some(SIGNATURE_TAG) {
        return Err(SignatureError::Malformed);
    }
    let bytes = words
        .next()
        .and_then(|b64| STANDARD.decode(b64).ok())
        .and_then(|raw| <[u8; 64]>::try_from(raw.as_slice()).ok())
        .ok_or(SignatureError::Malformed)?;
    let signature = Signature::from_bytes(&bytes);
    let message = message(config);
    trusted
        .iter()
        .find(|key| key.verify_strict(&message, &signature).is_ok())
        .map(KeyId::of)
        .ok_or_else(|| SignatureError::NotTrusted {
            trusted: trusted
                .iter()
                .map(|k| KeyId::of(k).to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn message(config: &[u8]) -> Vec<u8> {
    [CONFIG_DOMAIN, config].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn a_signed_config_verifies_and_any_change_does_not() {
        let (ours, theirs) = (key(1), key(2));
        let trusted = [ours.verifying_key()];
        let config = b"hostname = \"box\"\n";
        let line = sign(&ours, config);
        assert!(line.starts_with("ramkey-ed25519-signature "));
        assert_eq!(verify(&trusted, config, &line), Ok(KeyId::of(&ours.verifying_key())));
        let changed = b"hostname = \"b0x\"\n";
        assert!(matches!(
            verify(&trusted, changed, &line),
            Err(SignatureError::NotTrusted { .. })
        ));
        let stranger = sign(&theirs, config);
        let err = verify(&trusted, config, &stranger).unwrap_err().to_string();
        assert!(err.contains(&KeyId::of(&ours.verifying_key()).to_string()), "{err}");
        assert_eq!(verify(&trusted, config, "hello"), Err(SignatureError::Malformed));
        assert_eq!(
            verify(&trusted, config, "ramkey-ed25519-signature AAAA"),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn an_image_signature_is_no_config_signature() {
        let ours = key(1);
        let config = b"x";
        // The same key over the same bytes, but in the image's domain.
        let image = ours.sign(&crate::signed_message(config));
        let line = format!("{SIGNATURE_TAG} {}", STANDARD.encode(image.to_bytes()));
        assert!(verify(&[ours.verifying_key()], config, &line).is_err());
    }
}
