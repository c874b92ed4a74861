//! `[images]`: the keys trusted to sign personality images, the repositories images are
//! imported from (`http://` or `https://`, an address or a host name), and the CAs trusted
//! for `https://` besides the platform's built-in roots (one PEM certificate per string).

use std::collections::HashMap;
use std::net::IpAddr;

use crate::keys::parse_trusted_key;
use crate::raw::RawImages;
use crate::validate::Checker;

/// `[images]`: the trusted keys, the sources, the CA certificates (DER).
type Images = (Vec<crate::keys::TrustedKey>, Vec<String>, Vec<Vec<u8>>);

pub(crate) fn images(c: &mut Checker<'_>, raw: RawImages) -> Images {
    let mut keys = Vec::new();
    let mut seen = HashMap::new();
    for key in &raw.trusted_keys {
        match parse_trusted_key(key.get_ref()) {
            Ok(k) => {
                let hex: String = k.key.iter().map(|b| format!("{b:02x}")).collect();
                c.unique(&mut seen, "trusted key", hex, key.span());
                keys.push(k);
            }
            Err(reason) => {
                c.invalid(key, "images trusted key", reason);
            }
        }
    }
    let mut sources = Vec::new();
    for source in &raw.sources {
        match source_problem(source.get_ref()) {
            None => sources.push(source.get_ref().trim_end_matches('/').to_owned()),
            Some(reason) => {
                c.invalid(source, "images source", reason).hint = Some(
                    "a folder served over HTTP or HTTPS by a numeric address: \"https://192.0.2.10:8443/images\""
                        .into(),
                );
            }
        }
    }
    let mut certs = Vec::new();
    for pem in &raw.ca_certs {
        match ca_cert(pem.get_ref()) {
            Ok(der) => certs.push(der),
            Err(reason) => {
                c.invalid(pem, "images CA certificate", reason).hint = Some(
                    "one PEM certificate per string: \"\"\"-----BEGIN CERTIFICATE-----\\n...\\n-----END CERTIFICATE-----\"\"\""
                        .into(),
                );
            }
        }
    }
    (keys, sources, certs)
}

/// The DER of a string holding exactly one PEM certificate.
fn ca_cert(pem: &str) -> Result<Vec<u8>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut certs = CertificateDer::pem_slice_iter(pem.as_bytes());
    match (certs.next(), certs.next()) {
        (Some(Ok(der)), None) => Ok(der.to_vec()),
        (None, _) => Err("no -----BEGIN CERTIFICATE----- block in it".into()),
        (Some(Err(e)), _) => Err(format!("not a PEM certificate: {e}")),
        (Some(Ok(_)), Some(_)) => Err("more than one certificate: give each its own string".into()),
    }
}

/// What is wrong with an image source URL.
fn source_problem(url: &str) -> Option<String> {
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        return Some("it must start with http:// or https://".into());
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if host.is_empty() {
        return Some("it has no host".into());
    }
    if host.parse::<IpAddr>().is_err() && !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return Some(format!("the host {host:?} is neither an address nor a host name"));
    }
    None
}
