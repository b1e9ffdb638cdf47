//! A small API client over TCP (`http://HOST:PORT`), TLS over TCP
//! (`https://HOST:PORT`) or a unix socket (`unix:/path`). Used by keelctl
//! and the VM tests.
//!
//! Host names are not resolved (keelctl may be static, without NSS): use an IP
//! address or `localhost`. Over https the server's certificate must name
//! the host as written (the IP address, or `localhost`) and chain to the
//! CA given to [`Client::with_tls`], which may also give a client
//! certificate for servers that ask for one, or to the CA bundle or pinned
//! certificate given to [`Client::with_server_trust`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// What a request body to `path` is: a cloud-config for `/v1/config`,
/// JSON anywhere else (the server refuses other types).
fn content_type(path: &str) -> &'static str {
    if path.split('?').next() == Some("/v1/config") {
        "application/yaml"
    } else {
        "application/json"
    }
}

/// Largest response body read.
pub const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Where the API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    /// TLS to `addr`; the server's certificate must name `host` (an IP
    /// address, bracketed when IPv6, or `localhost`).
    Https {
        addr: SocketAddr,
        host: String,
    },
    Unix(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("endpoint {0:?}: expected http://ADDRESS:PORT, https://ADDRESS:PORT or unix:/PATH")]
    BadEndpoint(String),
    #[error("connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },
    /// The CA, certificate or key files could not be used (the error
    /// names the setting and the file).
    #[error(transparent)]
    TlsFiles(#[from] keel_tls::TlsError),
    #[error("{endpoint}: an https endpoint needs a CA to check the server's certificate against")]
    NoCa { endpoint: String },
    #[error("TLS handshake with {endpoint}: {source}")]
    Handshake {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("{method} {path} on {endpoint}: {message}")]
    Http {
        method: Method,
        path: String,
        endpoint: String,
        message: String,
    },
    #[error("{method} {path} on {endpoint}: no answer within {timeout:?}")]
    Timeout {
        method: Method,
        path: String,
        endpoint: String,
        timeout: Duration,
    },
    #[error("decode the answer to {path}: {source}")]
    Decode {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: {status}: {message}")]
    Api {
        path: String,
        status: StatusCode,
        message: String,
    },
    #[error("start the client runtime: {0}")]
    Runtime(std::io::Error),
}

impl Endpoint {
    pub fn parse(s: &str) -> Result<Endpoint, ClientError> {
        let bad = || ClientError::BadEndpoint(s.to_string());
        if let Some(p) = s
            .strip_prefix("unix://")
            .or_else(|| s.strip_prefix("unix:"))
        {
            if p.is_empty() {
                return Err(bad());
            }
            return Ok(Endpoint::Unix(PathBuf::from(p)));
        }
        let (scheme, rest) = keel_tls::Scheme::split(s).ok_or_else(bad)?;
        let rest = rest.trim_end_matches('/');
        let (addr, host) = if let Ok(sa) = rest.parse::<SocketAddr>() {
            (sa, ip_host(sa.ip()))
        } else {
            let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
            let port: u16 = port.parse().map_err(|_| bad())?;
            let ip: IpAddr = match host {
                "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
                h => h.parse().map_err(|_| bad())?,
            };
            (SocketAddr::new(ip, port), host.to_string())
        };
        Ok(match scheme {
            keel_tls::Scheme::Http => Endpoint::Tcp(addr),
            keel_tls::Scheme::Https => Endpoint::Https { addr, host },
        })
    }

    /// TLS to `addr`, whose certificate must name its IP address.
    pub fn https(addr: SocketAddr) -> Endpoint {
        Endpoint::Https {
            addr,
            host: ip_host(addr.ip()),
        }
    }

    /// Whether this endpoint speaks TLS.
    pub fn is_https(&self) -> bool {
        matches!(self, Endpoint::Https { .. })
    }
}

/// An IP address as a URL's host: bracketed when IPv6.
fn ip_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "http://{a}"),
            Endpoint::Https { addr, host } => write!(f, "https://{host}:{}", addr.port()),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A client for one endpoint.
#[derive(Debug, Clone)]
pub struct Client {
    pub endpoint: Endpoint,
    pub timeout: Duration,
    /// For an https endpoint: the CA and the client's own certificate.
    pub tls: Option<Arc<keel_tls::rustls::ClientConfig>>,
}

/// An error and its sources, as one line: hyper's "connection error" says
/// why only in its source (a TLS alert, say).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let s_text = s.to_string();
        if !out.ends_with(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        next = s.source();
    }
    out
}

async fn exchange<S>(io: S, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| chain(&e))?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| chain(&e))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| chain(&*e))?
        .to_bytes();
    driver.abort();
    Ok((status, body))
}

impl Client {
    pub fn new(endpoint: Endpoint) -> Client {
        Client {
            endpoint,
            timeout: Duration::from_secs(10),
            tls: None,
        }
    }

    /// Read the CA (and the client certificate and key, if any) for an
    /// https endpoint; errors name the setting and the file.
    pub fn with_tls(mut self, files: &keel_tls::ClientFiles) -> Result<Client, ClientError> {
        self.tls = Some(keel_tls::client_config(files)?);
        Ok(self)
    }

    /// For an https endpoint: trust the server by `trust` (a CA bundle or
    /// a pinned certificate), presenting no certificate of its own.
    pub fn with_server_trust(
        mut self,
        trust: &keel_tls::ServerTrust,
    ) -> Result<Client, ClientError> {
        self.tls = Some(keel_tls::server_auth_config(trust)?);
        Ok(self)
    }

    /// Send one request; return the status and body, whatever the status.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let http_err = |message: String| ClientError::Http {
            method: method.clone(),
            path: path.to_string(),
            endpoint: self.endpoint.to_string(),
            message,
        };
        let host = match &self.endpoint {
            Endpoint::Tcp(a) => a.to_string(),
            Endpoint::Https { addr, host } => format!("{host}:{}", addr.port()),
            Endpoint::Unix(_) => "localhost".to_string(),
        };
        let req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, host)
            .header(hyper::header::CONTENT_TYPE, content_type(path))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| http_err(e.to_string()))?;
        let connect_err = |source| ClientError::Connect {
            endpoint: self.endpoint.to_string(),
            source,
        };
        let fut = async {
            match &self.endpoint {
                Endpoint::Tcp(a) => {
                    let s = tokio::net::TcpStream::connect(a)
                        .await
                        .map_err(connect_err)?;
                    exchange(s, req).await.map_err(http_err)
                }
                Endpoint::Https { addr, host } => {
                    let config = self.tls.clone().ok_or_else(|| ClientError::NoCa {
                        endpoint: self.endpoint.to_string(),
                    })?;
                    let name = keel_tls::server_name(host)?;
                    let s = tokio::net::TcpStream::connect(addr)
                        .await
                        .map_err(connect_err)?;
                    let _ = s.set_nodelay(true);
                    let t = keel_tls::connect(config, name, s).await.map_err(|source| {
                        ClientError::Handshake {
                            endpoint: self.endpoint.to_string(),
                            source,
                        }
                    })?;
                    exchange(t, req).await.map_err(http_err)
                }
                Endpoint::Unix(p) => {
                    let s = tokio::net::UnixStream::connect(p)
                        .await
                        .map_err(connect_err)?;
                    exchange(s, req).await.map_err(http_err)
                }
            }
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                method: method.clone(),
                path: path.to_string(),
                endpoint: self.endpoint.to_string(),
                timeout: self.timeout,
            }),
        }
    }

    /// Send a request and decode a 2xx JSON answer; a non-2xx answer becomes
    /// `ClientError::Api` with the server's message.
    pub async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
    ) -> Result<T, ClientError> {
        let (status, body) = self.request(method, path, Vec::new()).await?;
        if !status.is_success() {
            let message = serde_json::from_slice::<crate::ErrorBody>(&body)
                .map(|e| e.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            return Err(ClientError::Api {
                path: path.to_string(),
                status,
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|source| ClientError::Decode {
            path: path.to_string(),
            source,
        })
    }

    /// `call` on a private single-threaded runtime, for blocking callers.
    pub fn call_blocking<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
    ) -> Result<T, ClientError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ClientError::Runtime)?
            .block_on(self.call(method, path))
    }

    /// `request` on a private single-threaded runtime, for blocking callers.
    pub fn request_blocking(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ClientError::Runtime)?
            .block_on(self.request(method, path, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:9420").unwrap(),
            Endpoint::Tcp("127.0.0.1:9420".parse().unwrap())
        );
        assert_eq!(
            Endpoint::parse("http://localhost:9420/").unwrap(),
            Endpoint::Tcp("127.0.0.1:9420".parse().unwrap())
        );
        assert_eq!(
            Endpoint::parse("http://[::1]:80").unwrap(),
            Endpoint::Tcp("[::1]:80".parse().unwrap())
        );
        assert_eq!(
            Endpoint::parse("unix:/run/keel/api.sock").unwrap(),
            Endpoint::Unix("/run/keel/api.sock".into())
        );
        for (url, addr, host) in [
            ("https://127.0.0.1:9420", "127.0.0.1:9420", "127.0.0.1"),
            ("https://localhost:9420/", "127.0.0.1:9420", "localhost"),
            ("https://[::1]:443", "[::1]:443", "[::1]"),
        ] {
            let e = Endpoint::parse(url).unwrap();
            assert_eq!(
                e,
                Endpoint::Https {
                    addr: addr.parse().unwrap(),
                    host: host.into()
                },
                "{url}"
            );
            assert!(e.is_https());
            assert_eq!(e.to_string(), url.trim_end_matches('/'));
            assert!(keel_tls::server_name(host).is_ok(), "{host}");
        }
        assert!(!Endpoint::parse("http://127.0.0.1:1").unwrap().is_https());
        for url in ["https://10.0.2.2:8443", "https://[fd00::1]:443"] {
            let Endpoint::Https { addr, .. } = Endpoint::parse(url).unwrap() else {
                unreachable!()
            };
            assert_eq!(
                Endpoint::https(addr),
                Endpoint::parse(url).unwrap(),
                "{url}"
            );
        }
        for bad in [
            "",
            "127.0.0.1:9420",
            "http://example.com:80",
            "http://1.2.3.4",
            "unix:",
            "https://1.2.3.4",
            "https://node.example:9420",
            "ftp://1.2.3.4:1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
