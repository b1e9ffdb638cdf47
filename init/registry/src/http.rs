//! One GET over HTTP/1.1, with TLS unless the registry is listed insecure.
//!
//! 1. The URL's scheme is checked first: `http` only for an authority in
//!    the insecure list (a redirect or a token realm cannot downgrade a
//!    pull either).
//! 2. The host is resolved ([`crate::resolve`]) and each address tried in
//!    turn, 10 s each; the TLS handshake (rustls with the ring provider,
//!    roots read once from the CA bundle path, ALPN http/1.1) has 10 s too.
//!    A server that answers the handshake in plain http is named as such.
//! 3. The request goes over a fresh hyper connection (registries answer a
//!    pull in a handful of requests; a pool would buy little); the
//!    response head must come within the idle limit, 30 s, and so must
//!    each piece of the body ([`next_chunk`]).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::error::Failure;
use crate::resolve::resolve;
use keel_types::Registry;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const USER_AGENT: &str = concat!("keel/", env!("CARGO_PKG_VERSION"));

/// An http(s) URL: what keel needs of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    /// Without brackets for IPv6.
    pub host: String,
    pub port: Option<u16>,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> Option<Url> {
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else {
            (false, s.strip_prefix("http://")?)
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let (host, port) = split_authority(authority)?;
        Some(Url {
            https,
            host,
            port,
            path,
        })
    }

    /// The registry `r`, path `path`.
    pub fn registry(r: &Registry, https: bool, path: &str) -> Url {
        Url {
            https,
            host: r.host.bare(),
            port: r.port,
            path: path.to_string(),
        }
    }

    /// `host[:port]` as written in image references and the insecure list.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }

    fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.https { 443 } else { 80 })
    }

    /// The target of a redirect `location` from this URL.
    pub fn join(&self, location: &str) -> Option<Url> {
        if location.starts_with("https://") || location.starts_with("http://") {
            return Url::parse(location);
        }
        if location.starts_with("//") {
            let scheme = if self.https { "https:" } else { "http:" };
            return Url::parse(&format!("{scheme}{location}"));
        }
        let path = if location.starts_with('/') {
            location.to_string()
        } else {
            let dir = self.path.split('?').next().unwrap_or("/");
            let dir = &dir[..dir.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}")
        };
        Some(Url {
            path,
            ..self.clone()
        })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

fn split_authority(a: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':')?)),
        }
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p > 0)?),
        None => None,
    };
    Some((host.to_string(), port))
}

/// Connections: the insecure list, the CA bundle (read on first TLS use),
/// and where the resolver's files are.
pub struct Transport {
    insecure: Vec<Registry>,
    ca_bundle: PathBuf,
    root: PathBuf,
    tls: Mutex<Option<Arc<rustls::ClientConfig>>>,
}

impl Transport {
    pub fn new(insecure: &[Registry], ca_bundle: &Path, root: &Path) -> Transport {
        Transport {
            insecure: insecure.to_vec(),
            ca_bundle: ca_bundle.to_path_buf(),
            root: root.to_path_buf(),
            tls: Mutex::new(None),
        }
    }

    pub fn is_insecure(&self, authority: &str) -> bool {
        self.insecure.iter().any(|i| i.to_string() == authority)
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, Failure> {
        let mut slot = self.tls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let trust = keel_tls::ServerTrust::Bundle(("CA bundle", self.ca_bundle.clone()));
        let config = keel_tls::server_auth_config(&trust).map_err(Failure::CaBundle)?;
        *slot = Some(config.clone());
        Ok(config)
    }

    /// GET `url` with `headers`; the response with its body unread.
    pub async fn get(
        &self,
        url: &Url,
        headers: &[(&str, String)],
    ) -> Result<Response<Incoming>, Failure> {
        let authority = url.authority();
        if !url.https && !self.is_insecure(&authority) {
            return Err(Failure::Insecure {
                authority,
                url: url.to_string(),
            });
        }
        let tls = if url.https {
            Some(self.tls_config()?)
        } else {
            None
        };
        let addrs = resolve(&url.host, &self.root).await?;
        let port = url.port_or_default();
        let mut last = None;
        let mut stream = None;
        for ip in &addrs {
            let addr = SocketAddr::new(*ip, port);
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    stream = Some(s);
                    break;
                }
                Ok(Err(e)) => last = Some(e),
                Err(_) => {
                    last = Some(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no connection in {} s", CONNECT_TIMEOUT.as_secs()),
                    ))
                }
            }
        }
        let stream = stream.ok_or_else(|| Failure::Connect {
            authority: authority.clone(),
            addrs: addrs
                .iter()
                .map(|a| SocketAddr::new(*a, port).to_string())
                .collect::<Vec<_>>()
                .join(", "),
            source: last.unwrap_or_else(|| std::io::Error::other("no address")),
        })?;
        let req = Request::get(url.path.as_str())
            .header("host", &authority)
            .header("user-agent", USER_AGENT);
        let req = headers
            .iter()
            .fold(req, |r, (k, v)| r.header(*k, v.as_str()))
            .body(Empty::<Bytes>::new())
            .map_err(|e| Failure::Redirect {
                url: url.to_string(),
                problem: e.to_string(),
            })?;
        match tls {
            None => exchange(stream, req, url).await,
            Some(config) => {
                let name = ServerName::try_from(url.host.clone()).map_err(|e| Failure::Tls {
                    authority: authority.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?;
                let connector = tokio_rustls::TlsConnector::from(config);
                let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, stream))
                    .await
                    .map_err(|_| Failure::Timeout {
                        what: format!("TLS handshake with {authority}"),
                        secs: CONNECT_TIMEOUT.as_secs(),
                    })?
                    .map_err(|source| {
                        if answered_plain_http(&source) {
                            Failure::PlainHttp {
                                authority: authority.clone(),
                            }
                        } else {
                            Failure::Tls {
                                authority: authority.clone(),
                                source,
                            }
                        }
                    })?;
                exchange(tls, req, url).await
            }
        }
    }
}

/// Whether a handshake failed because the server's first bytes were not a
/// TLS record (an http server says `HTTP/1.1 400`).
fn answered_plain_http(e: &std::io::Error) -> bool {
    keel_tls::rustls_error(e).is_some_and(keel_tls::answered_plain_http)
}

async fn exchange<IO>(
    io: IO,
    req: Request<Empty<Bytes>>,
    url: &Url,
) -> Result<Response<Incoming>, Failure>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |source| Failure::Http {
        url: url.to_string(),
        source,
    };
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(http)?;
    // The connection is driven by its own task and ends when the response
    // body is dropped or read to its end.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    tokio::time::timeout(IDLE_TIMEOUT, send.send_request(req))
        .await
        .map_err(|_| Failure::Timeout {
            what: format!("GET {url}: the response"),
            secs: IDLE_TIMEOUT.as_secs(),
        })?
        .map_err(http)
}

/// The next data of a body, `None` at its end; each wait bounded by the
/// idle limit.
pub async fn next_chunk(body: &mut Incoming, url: &Url) -> Result<Option<Bytes>, Failure> {
    loop {
        let frame = tokio::time::timeout(IDLE_TIMEOUT, body.frame())
            .await
            .map_err(|_| Failure::Timeout {
                what: format!("GET {url}: the body"),
                secs: IDLE_TIMEOUT.as_secs(),
            })?;
        match frame {
            None => return Ok(None),
            Some(Err(source)) => {
                return Err(Failure::Http {
                    url: url.to_string(),
                    source,
                })
            }
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    return Ok(Some(data));
                }
                // Trailers: nothing for us.
            }
        }
    }
}

/// A whole body, refused once it passes `limit` bytes.
pub async fn read_body(
    body: &mut Incoming,
    url: &Url,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    while let Some(chunk) = next_chunk(body, url).await? {
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(Failure::TooLarge {
                what: what.to_string(),
                limit,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(s: &str) -> Registry {
        Registry::try_from(s).unwrap()
    }

    #[test]
    fn urls() {
        let u = Url::parse("https://auth.example/token?service=x").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (true, "auth.example", None, "/token?service=x")
        );
        let u = Url::parse("http://[::1]:5000").unwrap();
        assert_eq!(
            (u.authority().as_str(), u.path.as_str()),
            ("[::1]:5000", "/")
        );
        assert_eq!(Url::parse("http://h?x=1").unwrap().path, "/?x=1");
        for bad in [
            "ftp://h/",
            "https://",
            "https://h:0/",
            "https://h:99999/",
            "https://u@h/",
        ] {
            assert_eq!(Url::parse(bad), None, "{bad}");
        }
        let base = Url::registry(&reg("10.0.2.2:5000"), false, "/v2/a/blobs/x");
        assert_eq!(base.to_string(), "http://10.0.2.2:5000/v2/a/blobs/x");
        assert_eq!(
            base.join("https://s3.example/b?sig=1").unwrap().to_string(),
            "https://s3.example/b?sig=1"
        );
        assert_eq!(
            base.join("/other").unwrap().to_string(),
            "http://10.0.2.2:5000/other"
        );
        assert_eq!(
            base.join("y").unwrap().to_string(),
            "http://10.0.2.2:5000/v2/a/blobs/y"
        );
        assert_eq!(
            base.join("//cdn.example/z").unwrap().to_string(),
            "http://cdn.example/z"
        );
    }

    #[tokio::test]
    async fn plain_http_only_when_listed() {
        let t = Transport::new(
            &[reg("10.0.2.2:5000")],
            Path::new("/nonexistent"),
            Path::new("/"),
        );
        let url = Url::registry(&reg("reg.example:5000"), false, "/v2/");
        let e = t.get(&url, &[]).await.unwrap_err().to_string();
        assert_eq!(
            e,
            "refusing plain http to reg.example:5000 (http://reg.example:5000/v2/): it is not listed in registries.insecure"
        );
        // The same host on another port is another registry.
        let url = Url::registry(&reg("10.0.2.2:5001"), false, "/v2/");
        assert!(matches!(
            t.get(&url, &[]).await,
            Err(Failure::Insecure { .. })
        ));
        // https needs the CA bundle, which is named when missing.
        let url = Url::registry(&reg("reg.example"), true, "/v2/");
        let e = t.get(&url, &[]).await.unwrap_err().to_string();
        assert!(e.starts_with("CA bundle /nonexistent: "), "{e}");
    }
}
