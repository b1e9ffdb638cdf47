//! TLS for keel's servers and clients: the cluster store's client and peer
//! ports, the management API, and their clients.
//!
//! 1. PEM files become rustls configs (ring provider, TLS 1.2 and 1.3,
//!    ALPN `http/1.1`): a certificate chain and its key for a server, a CA
//!    for the server to check clients against (client-certificate
//!    authentication), a CA and an optional identity for a client.
//! 2. Every file is read with a size limit and every failure names the
//!    setting and the file: no certificate in it, no key, a key that does
//!    not match the certificate.
//! 3. Handshakes have a deadline ([`HANDSHAKE_TIMEOUT`]), so a client that
//!    connects and says nothing holds a task for 10 s at most.
//! 4. A client without an identity trusts a CA bundle or one pinned
//!    certificate ([`trust`]).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

pub use rustls;
pub use tokio_rustls::client::TlsStream as ClientStream;
pub use tokio_rustls::server::TlsStream as ServerStream;
pub use tokio_rustls::{TlsAcceptor, TlsConnector};

pub mod cert;
#[cfg(feature = "issue")]
pub mod issue;
#[cfg(feature = "testpki")]
pub mod testpki;
pub mod trust;

pub use trust::{
    answered_plain_http, load_bundle, rustls_error, server_auth_config, CertPin, PinnedVerifier,
    ServerTrust,
};

/// A PEM file larger than this is refused (a CA bundle is ~200 KiB).
pub const MAX_PEM: u64 = 1 << 20;
/// How long a TLS handshake may take, either side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a TLS setting could not be used; `setting` is the config key or flag
/// (`cert-file`, `api.client_ca_file`, ...).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{setting} {path}: {source}")]
    Read {
        setting: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{setting} {path}: larger than {MAX_PEM} bytes")]
    TooLarge {
        setting: &'static str,
        path: PathBuf,
    },
    #[error("{setting} {path}: {why}")]
    Pem {
        setting: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("{setting}: {why}")]
    Config { setting: &'static str, why: String },
    #[error("{host:?} is not a DNS name or IP address a certificate can name")]
    ServerName { host: String },
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let err = |source| TlsError::Read {
        setting,
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(err)?
        .take(MAX_PEM + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    if bytes.len() as u64 > MAX_PEM {
        return Err(TlsError::TooLarge {
            setting,
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// Every certificate in a PEM file, in order (a chain: leaf first).
pub fn load_certs(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(setting, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            setting,
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            setting,
            path: path.to_path_buf(),
            why: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn load_key(setting: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(setting, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        setting,
        path: path.to_path_buf(),
        why: match e {
            rustls_pki_types::pem::Error::NoItemsFound => "no PEM private key in it".into(),
            e => e.to_string(),
        },
    })
}

/// The CA certificates of a PEM file as trust roots.
pub fn load_roots(setting: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(setting, path)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            setting,
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A setting's name (for errors) and the file it names.
pub type Setting = (&'static str, PathBuf);

/// Where a server's files are, with the setting names errors should use.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    pub cert: Setting,
    pub key: Setting,
    /// Clients must present a certificate this CA signed.
    pub client_ca: Option<Setting>,
}

/// Step 1, server side.
pub fn server_config(files: &ServerFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(files.cert.0, &files.cert.1)?;
    let key = load_key(files.key.0, &files.key.1)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config {
            setting: files.cert.0,
            why: e.to_string(),
        })?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some((setting, path)) => {
            let roots = load_roots(setting, path)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::Config {
                    setting,
                    why: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config {
            setting: files.key.0,
            why: format!(
                "{} does not fit {}: {e}",
                files.key.1.display(),
                files.cert.1.display()
            ),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Where a client's files are.
#[derive(Debug, Clone)]
pub struct ClientFiles {
    /// The CA that signed the servers' certificates.
    pub ca: Setting,
    /// The client's own certificate and key, for servers that ask.
    pub identity: Option<(Setting, Setting)>,
}

/// Step 1, client side.
pub fn client_config(files: &ClientFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = load_roots(files.ca.0, &files.ca.1)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config {
            setting: files.ca.0,
            why: e.to_string(),
        })?
        .with_root_certificates(roots);
    let mut config = match &files.identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = load_certs(cert.0, &cert.1)?;
            let k = load_key(key.0, &key.1)?;
            builder
                .with_client_auth_cert(certs, k)
                .map_err(|e| TlsError::Config {
                    setting: key.0,
                    why: format!("{} does not fit {}: {e}", key.1.display(), cert.1.display()),
                })?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name a server's certificate must carry: an IP address or DNS name.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(h.to_string()).map_err(|_| TlsError::ServerName {
        host: host.to_string(),
    })
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what}: no TLS handshake within {HANDSHAKE_TIMEOUT:?}"),
    )
}

/// Step 3, server side: the handshake on an accepted connection.
pub async fn accept(acceptor: &TlsAcceptor, s: TcpStream) -> io::Result<ServerStream<TcpStream>> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(s))
        .await
        .map_err(|_| timed_out("accept"))?
}

/// Step 3, client side.
pub async fn connect(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    s: TcpStream,
) -> io::Result<ClientStream<TcpStream>> {
    tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        TlsConnector::from(config).connect(name, s),
    )
    .await
    .map_err(|_| timed_out("connect"))?
}

/// A connection, TLS or not, as one stream type for code that handles both
/// (the same handler behind an `http://` and an `https://` listener).
pub enum MaybeTls<T> {
    Plain(TcpStream),
    Tls(Box<T>),
}

/// An accepted connection.
pub type Conn = MaybeTls<ServerStream<TcpStream>>;
/// An outgoing connection.
pub type ClientConn = MaybeTls<ClientStream<TcpStream>>;

impl Conn {
    /// The plain stream, or the handshake over it when `acceptor` is given.
    pub async fn accept(acceptor: Option<&TlsAcceptor>, s: TcpStream) -> io::Result<Conn> {
        match acceptor {
            None => Ok(MaybeTls::Plain(s)),
            Some(a) => Ok(MaybeTls::Tls(Box::new(accept(a, s).await?))),
        }
    }
}

impl ClientConn {
    /// The plain stream, or the handshake over it with `config` and `name`.
    pub async fn connect(
        tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
        s: TcpStream,
    ) -> io::Result<ClientConn> {
        match tls {
            None => Ok(MaybeTls::Plain(s)),
            Some((config, name)) => Ok(MaybeTls::Tls(Box::new(connect(config, name, s).await?))),
        }
    }
}

use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The scheme of a URL keel serves or calls: `http://` or `https://`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// The scheme and the rest of `url`, or None for any other scheme.
    pub fn split(url: &str) -> Option<(Scheme, &str)> {
        if let Some(rest) = url.strip_prefix("https://") {
            Some((Scheme::Https, rest))
        } else {
            url.strip_prefix("http://").map(|rest| (Scheme::Http, rest))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_setting_and_file() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.pem");
        let e = load_certs("cert-file", &p).unwrap_err().to_string();
        assert!(e.starts_with("cert-file ") && e.contains("x.pem"), "{e}");
        std::fs::write(&p, "hello").unwrap();
        let e = load_certs("cert-file", &p).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = load_key("key-file", &p).unwrap_err().to_string();
        assert!(e.contains("no PEM private key"), "{e}");
        std::fs::write(&p, vec![b'a'; (MAX_PEM + 1) as usize]).unwrap();
        let e = load_roots("trusted-ca-file", &p).unwrap_err();
        assert!(matches!(e, TlsError::TooLarge { .. }), "{e}");
    }

    #[test]
    fn schemes_and_names() {
        assert_eq!(
            Scheme::split("https://1.2.3.4:5"),
            Some((Scheme::Https, "1.2.3.4:5"))
        );
        assert_eq!(Scheme::split("http://a"), Some((Scheme::Http, "a")));
        assert_eq!(Scheme::split("unix:///x"), None);
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("[::1]").is_ok());
        assert!(server_name("node-1.example").is_ok());
        assert!(server_name("bad name").is_err());
    }
}
