//! HTTPS against a loopback rustls server with certificates made here: a CA the test trusts
//! or not, a certificate for another address, a plain HTTP server behind an https:// URL.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::Trust;
use crate::net::http::{self, HttpError, Url};

/// A CA, and a server certificate it signed for `address`.
struct Pki {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

fn pki(address: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![address.to_owned()])
        .unwrap()
        .signed_by(&key, &Issuer::new(ca, ca_key))
        .unwrap();
    Pki {
        ca: ca_cert.der().to_vec(),
        cert: cert.der().to_vec(),
        key: key.serialize_der(),
    }
}

/// Serves one HTTPS request with `pki`'s certificate; the URL of `/index.json` there.
fn serve_tls(pki: &Pki, body: &'static [u8]) -> Url {
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(pki.cert.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key.clone())),
        )
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let session = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let mut tls = rustls::StreamOwned::new(session, tcp);
        let _ = tls.read(&mut [0u8; 1024]);
        let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        let _ = tls.write_all(head.as_bytes());
        let _ = tls.write_all(body);
        tls.conn.send_close_notify();
        let _ = tls.flush();
    });
    Url::parse(&format!("https://127.0.0.1:{port}/index.json")).unwrap()
}

fn get(url: &Url, trust: &Trust) -> Result<Vec<u8>, HttpError> {
    http::get(url, Duration::from_secs(5), Duration::from_secs(10), trust)
}

#[test]
fn a_server_whose_ca_the_config_names_is_trusted() {
    let pki = pki("127.0.0.1");
    let trust = Trust {
        extra: vec![pki.ca.clone()],
    };
    assert_eq!(
        get(&serve_tls(&pki, b"{\"images\":[]}"), &trust).unwrap(),
        b"{\"images\":[]}"
    );
}

#[test]
fn an_unknown_ca_is_refused_with_what_to_do() {
    let pki = pki("127.0.0.1");
    let e = get(&serve_tls(&pki, b"x"), &Trust::default()).unwrap_err().to_string();
    assert!(e.contains("not signed by a CA the box trusts"), "{e}");
    assert!(e.contains("[images] ca_certs"), "{e}");
}

#[test]
fn a_certificate_for_another_address_is_refused() {
    let pki = pki("127.0.0.2");
    let trust = Trust {
        extra: vec![pki.ca.clone()],
    };
    let e = get(&serve_tls(&pki, b"x"), &trust).unwrap_err().to_string();
    assert!(e.contains("certificate is not for 127.0.0.1"), "{e}");
}

#[test]
fn plain_http_behind_an_https_url_is_said() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        let _ = tcp.read(&mut [0u8; 1024]);
        let _ = tcp.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
    });
    let url = Url::parse(&format!("https://127.0.0.1:{port}/")).unwrap();
    let e = get(&url, &Trust::default()).unwrap_err().to_string();
    assert!(e.contains("is it an https:// server?"), "{e}");
}
