//! A small API client over TCP (`http://HOST:PORT`) or a unix socket
//! (`unix:/path`). Used by keelctl and the VM tests.
//!
//! Host names are not resolved (keelctl may be static, without NSS): use an IP
//! address or `localhost`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest response body read.
pub const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Where the API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("endpoint {0:?}: expected http://ADDRESS:PORT or unix:/PATH")]
    BadEndpoint(String),
    #[error("connect to {endpoint}: {source}")]
    Connect {
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
        let rest = s.strip_prefix("http://").ok_or_else(bad)?;
        let rest = rest.trim_end_matches('/');
        if let Ok(sa) = rest.parse::<SocketAddr>() {
            return Ok(Endpoint::Tcp(sa));
        }
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let ip: IpAddr = match host {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            h => h.parse().map_err(|_| bad())?,
        };
        Ok(Endpoint::Tcp(SocketAddr::new(ip, port)))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "http://{a}"),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A client for one endpoint.
#[derive(Debug, Clone)]
pub struct Client {
    pub endpoint: Endpoint,
    pub timeout: Duration,
}

async fn exchange<S>(io: S, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    driver.abort();
    Ok((status, body))
}

impl Client {
    pub fn new(endpoint: Endpoint) -> Client {
        Client {
            endpoint,
            timeout: Duration::from_secs(10),
        }
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
            Endpoint::Unix(_) => "localhost".to_string(),
        };
        let req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
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
        for bad in [
            "",
            "127.0.0.1:9420",
            "http://example.com:80",
            "http://1.2.3.4",
            "unix:",
            "https://1.2.3.4:1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
