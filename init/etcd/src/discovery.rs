//! Bootstrapping through an etcd discovery URL (etcd's v2 discovery
//! protocol), for clusters whose members' addresses are not known in
//! advance.
//!
//! The discovery URL names a directory in some etcd v2 keys API (another
//! cluster, or keel's own store):
//!
//! 1. `GET <url>/_config/size` gives the cluster's size; no size is an error.
//! 2. The member registers itself: `PUT <url>/<id>?prevExist=false` with
//!    `name=peerURL[,name=peerURL]`. Already there (a restart during
//!    discovery) is fine when the value is the same.
//! 3. It lists `<url>` and, until `size` members have registered, waits for
//!    the next change (`?wait=true&recursive=true&waitIndex=N`).
//! 4. The first `size` registrations (by createdIndex) are the cluster; a
//!    member that came later is refused ("the cluster is full").
//! 5. Their values joined are the initial cluster; the discovery URL is the
//!    cluster token, so every member computes the same ids.
//!
//! Only a member's first start runs it; later starts use their log.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Method;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use keel_types::etcd::{Discovery, InitialCluster};

use crate::config::{initial_members, InitialMember};

/// Why discovery failed; each names the URL and what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("discovery {url:?}: not an http://IP:PORT/path URL")]
    Url { url: String },
    #[error("discovery {url}: {op}: {why}")]
    Http {
        url: String,
        op: &'static str,
        why: String,
    },
    #[error("discovery {url}: no cluster size: set {url}/_config/size first")]
    NoSize { url: String },
    #[error("discovery {url}: _config/size {value:?} is not a number from 1 to 99")]
    BadSize { url: String, value: String },
    #[error("discovery {url}: the cluster is full ({size} members registered before this one)")]
    Full { url: String, size: usize },
    #[error("discovery {url}: registration {key} is {found:?}, not {ours:?}")]
    Taken {
        url: String,
        key: String,
        found: String,
        ours: String,
    },
    #[error("discovery {url}: registration {key}: {why}")]
    BadEntry {
        url: String,
        key: String,
        why: String,
    },
}

/// The discovery URL split into the server's address and the key path.
struct Target {
    url: String,
    addr: std::net::SocketAddr,
    /// `/v2/keys/...`, without a trailing `/`.
    path: String,
}

fn target(d: &Discovery) -> Result<Target, DiscoveryError> {
    match d {
        Discovery::Etcd { url, addr, path } => Ok(Target {
            url: url.clone(),
            addr: *addr,
            path: path.clone(),
        }),
        Discovery::Unusable { url } => Err(DiscoveryError::Url { url: url.clone() }),
    }
}

impl Target {
    /// One request, answered with (status, JSON body).
    async fn call(
        &self,
        op: &'static str,
        method: Method,
        target: &str,
        form: Option<String>,
        timeout: Duration,
    ) -> Result<(u16, Value, u64), DiscoveryError> {
        let fail = |why: String| DiscoveryError::Http {
            url: self.url.clone(),
            op,
            why,
        };
        let exchange = async {
            let s = TcpStream::connect(self.addr)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
                .await
                .map_err(|e| fail(e.to_string()))?;
            tokio::spawn(conn);
            let mut b = hyper::Request::builder()
                .method(method)
                .uri(target)
                .header("host", self.addr.to_string());
            if form.is_some() {
                b = b.header("content-type", "application/x-www-form-urlencoded");
            }
            let req = b
                .body(Full::new(Bytes::from(form.unwrap_or_default())))
                .map_err(|e| fail(e.to_string()))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let status = resp.status().as_u16();
            let index = resp
                .headers()
                .get("x-etcd-index")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let body = Limited::new(resp.into_body(), 1 << 20)
                .collect()
                .await
                .map_err(|e| fail(e.to_string()))?
                .to_bytes();
            let json = serde_json::from_slice(&body).map_err(|e| fail(format!("answer: {e}")))?;
            Ok((status, json, index))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| fail(format!("no answer in {timeout:?}")))?
    }
}

fn escape(s: &str) -> String {
    crate::form::escape_path(s)
        .replace('&', "%26")
        .replace('+', "%2B")
        .replace('=', "%3D")
        .replace(',', "%2C")
}

/// Steps 1..5: the initial cluster and the token.
pub async fn discover(
    url: &Discovery,
    id: u64,
    name: &str,
    peer_urls: &[String],
) -> Result<(Vec<InitialMember>, String), DiscoveryError> {
    let t = target(url)?;
    let short = Duration::from_secs(10);
    // Step 1.
    let (status, v, _) = t
        .call(
            "read the size",
            Method::GET,
            &format!("{}/_config/size", t.path),
            None,
            short,
        )
        .await?;
    if status == 404 {
        return Err(DiscoveryError::NoSize { url: t.url.clone() });
    }
    let value = v["node"]["value"].as_str().unwrap_or_default().to_string();
    let size = match value.parse::<usize>() {
        Ok(n) if (1..100).contains(&n) => n,
        _ => {
            return Err(DiscoveryError::BadSize {
                url: t.url.clone(),
                value,
            })
        }
    };
    // Step 2.
    let ours = peer_urls
        .iter()
        .map(|u| format!("{name}={u}"))
        .collect::<Vec<_>>()
        .join(",");
    let key = format!("{}/{id:x}", t.path);
    let (status, v, _) = t
        .call(
            "register",
            Method::PUT,
            &format!("{key}?prevExist=false"),
            Some(format!("value={}", escape(&ours))),
            short,
        )
        .await?;
    if status == 412 {
        let (_, v, _) = t
            .call("read the registration", Method::GET, &key, None, short)
            .await?;
        let found = v["node"]["value"].as_str().unwrap_or_default().to_string();
        if found != ours {
            return Err(DiscoveryError::Taken {
                url: t.url.clone(),
                key,
                found,
                ours,
            });
        }
    } else if !(200..300).contains(&status) {
        return Err(DiscoveryError::Http {
            url: t.url.clone(),
            op: "register",
            why: format!("status {status}: {v}"),
        });
    }
    // Step 3.
    loop {
        let (status, v, etcd_index) = t
            .call(
                "list the members",
                Method::GET,
                &format!("{}?recursive=true", t.path),
                None,
                short,
            )
            .await?;
        if status != 200 {
            return Err(DiscoveryError::Http {
                url: t.url.clone(),
                op: "list the members",
                why: format!("status {status}: {v}"),
            });
        }
        let mut regs: Vec<(u64, String, String)> = v["node"]["nodes"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|n| !n["key"].as_str().unwrap_or("").ends_with("/_config"))
            .filter(|n| !n["dir"].as_bool().unwrap_or(false))
            .map(|n| {
                (
                    n["createdIndex"].as_u64().unwrap_or(u64::MAX),
                    n["key"].as_str().unwrap_or("").to_string(),
                    n["value"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        regs.sort_unstable();
        if regs.len() >= size {
            // Step 4.
            regs.truncate(size);
            if !regs
                .iter()
                .any(|(_, k, _)| k.ends_with(&format!("/{id:x}")))
            {
                return Err(DiscoveryError::Full {
                    url: t.url.clone(),
                    size,
                });
            }
            // Step 5.
            let joined = regs
                .iter()
                .map(|(_, _, v)| v.as_str())
                .collect::<Vec<_>>()
                .join(",");
            let cluster = InitialCluster::try_from(joined.as_str()).map_err(|e| {
                DiscoveryError::BadEntry {
                    url: t.url.clone(),
                    key: t.path.clone(),
                    why: format!("initial-cluster: {e}"),
                }
            })?;
            return Ok((initial_members(&cluster), t.url.clone()));
        }
        let wait = format!(
            "{}?wait=true&recursive=true&waitIndex={}",
            t.path,
            etcd_index + 1
        );
        // A long poll; a timeout just lists again.
        let _ = t
            .call(
                "wait for members",
                Method::GET,
                &wait,
                None,
                Duration::from_secs(30),
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_keys_directory() {
        let d = |s: &str| Discovery::try_from(s).unwrap();
        let t = target(&d("http://127.0.0.1:2379/v2/keys/_etcd/registry/abc/")).unwrap();
        assert_eq!(t.path, "/v2/keys/_etcd/registry/abc");
        assert_eq!(t.url, "http://127.0.0.1:2379/v2/keys/_etcd/registry/abc");
        assert!(target(&d("https://discovery.etcd.io/abc")).is_err());
        assert!(target(&d("http://127.0.0.1:2379/other/x")).is_err());
        assert!(target(&d("http://host:2379/v2/keys/x")).is_err());
    }
}
