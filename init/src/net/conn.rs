//! The connection under an HTTP GET: plain TCP for `http://`, TLS (rustls, ring) for
//! `https://`. The server's certificate must chain to the built-in Mozilla roots or to a CA
//! of the usbkey config's `[images] ca_certs` ([`Trust`]) and name the URL's host; the
//! handshake is finished in [`connect`], so a refused certificate is said there, with what
//! to do.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::http::{HttpError, Url};

/// What the box's own HTTP clients need: the CAs to trust and the nameservers.
#[derive(Debug, Clone)]
pub struct Client {
    /// The CAs an `https://` server's certificate may chain to.
    pub trust: Trust,
    /// The `resolv.conf` naming the nameservers.
    pub resolv_conf: std::path::PathBuf,
}

impl Client {
    /// The client of a box whose root is `root` and whose usbkey config is `config`.
    pub fn on_box(root: &std::path::Path, config: &ramkey_config::Config) -> Client {
        Client {
            trust: Trust::of(config),
            resolv_conf: crate::base::paths::Paths::new(root).resolv_conf(),
        }
    }

    /// Parses `text`, resolving a host name.
    pub fn url(&self, text: &str) -> Result<Url, HttpError> {
        Url::resolve(text, &self.resolv_conf)
    }
}

/// The CAs an `https://` server's certificate may chain to.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// CAs besides the built-in roots (DER).
    pub extra: Vec<Vec<u8>>,
}

impl Trust {
    /// The built-in roots and the config's `[images] ca_certs`.
    pub fn of(config: &ramkey_config::Config) -> Trust {
        Trust {
            extra: config.image_ca_certs.clone(),
        }
    }

    fn client_config(&self) -> Result<ClientConfig, String> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for der in &self.extra {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| format!("a CA of [images] ca_certs is not a usable certificate: {e}"))?;
        }
        // ring, not aws-lc-rs: no C++/cmake build and a smaller PID 1. Its provider has no
        // post-quantum key exchange (hence the deprecation); what is fetched is verified by
        // its own signature, TLS adds who serves it and privacy on the wire.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

/// An open connection to an HTTP server.
#[derive(Debug)]
pub enum Conn {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`, its handshake done.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(tcp) => tcp,
            Conn::Tls(tls) => tls.get_ref(),
        }
    }

    /// Bounds each read that follows.
    pub fn set_read_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        self.tcp().set_read_timeout(Some(timeout))
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(tcp) => tcp.read(buf),
            Conn::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(tcp) => tcp.write(buf),
            Conn::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(tcp) => tcp.flush(),
            Conn::Tls(tls) => tls.flush(),
        }
    }
}

/// Connects to `url`'s server, `timeout` bounding the connect and each read and write; for
/// `https://`, finishes the handshake and checks the certificate against `trust`.
pub fn connect(url: &Url, timeout: Duration, trust: &Trust) -> Result<Conn, HttpError> {
    let addr = url.addr;
    let io = |op| move |source| HttpError::Io { op, addr, source };
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(io("connecting to"))?;
    tcp.set_write_timeout(Some(timeout)).map_err(io("configuring"))?;
    tcp.set_read_timeout(Some(timeout)).map_err(io("configuring"))?;
    if !url.tls {
        return Ok(Conn::Plain(tcp));
    }
    let tls = |reason| HttpError::Tls { addr, reason };
    let config = trust.client_config().map_err(tls)?;
    let name = ServerName::try_from(url.server_name().to_owned()).map_err(|e| tls(e.to_string()))?;
    let session = ClientConnection::new(Arc::new(config), name).map_err(|e| tls(e.to_string()))?;
    let mut stream = StreamOwned::new(session, tcp);
    while stream.conn.is_handshaking() {
        if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
            return Err(tls(handshake_problem(&e, url)));
        }
    }
    Ok(Conn::Tls(Box::new(stream)))
}

/// What a failed handshake means and what to do about it.
fn handshake_problem(error: &std::io::Error, url: &Url) -> String {
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
        return format!("TLS handshake: {error} (is it an https:// server?)");
    };
    match tls {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the server's certificate is not signed by a CA the box trusts; add that CA's PEM \
             certificate to [images] ca_certs in the usbkey config ({tls})"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::NotValidYet
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYetContext { .. },
        ) => format!(
            "{tls}; check the box's clock (`date` says {}) and the server's certificate",
            crate::base::clock::rfc3339(std::time::SystemTime::now())
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!("the server's certificate is not for {}: {tls}", url.server_name()),
        rustls::Error::InvalidMessage(_) => format!("TLS handshake: {tls} (is it an https:// server?)"),
        _ => format!("TLS handshake: {tls}"),
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
