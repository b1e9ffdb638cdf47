//! A pull: one image from a registry into the store, verified.
//!
//! 1. GET `/v2/REPO/manifests/REF` (REF the digest when given, else the
//!    tag) accepting OCI index and manifest and docker list and schema 2;
//!    at most 4 MiB. The digest of the bytes received is recorded; when
//!    pulling by digest it must be the one asked for, and a
//!    `Docker-Content-Digest` header must agree with it.
//! 2. An index (or docker list): pick the linux/amd64 entry and GET that
//!    manifest by digest; its bytes must hash to the entry's digest and be
//!    its size. At most 4 levels.
//! 3. The manifest is checked ([`keel_oci::Manifest::check`]); its config
//!    (at most 4 MiB) and layers the store lacks are fetched, 3 at a time:
//!    each body streams into [`Store::put_blob`] on the blocking pool, which
//!    keeps it only if its size and sha256 match the descriptor. Blob GETs
//!    follow redirects (up to 5, to other hosts too: registries send blobs
//!    from object storage; the Authorization header stays with the
//!    registry).
//! 4. The manifest blob is stored, then the ref under the requested name
//!    ([`Store::put_ref`]): a ref exists only once every blob it names is
//!    there and verified. A failed pull writes no ref and no unverified
//!    blob; verified blobs it fetched before failing stay for the next try
//!    (and [`Store::gc`] collects them if none comes).
//!
//! Every request runs through [`Client::send`]: a 401 is answered once per
//! request with the challenge's credentials ([`crate::auth`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::Response;
use keel_oci::manifest::{is_index, is_manifest, parse, Index, MAX_JSON, OCI_INDEX, OCI_MANIFEST};
use keel_oci::{Descriptor, Digest, Manifest, Platform, Store, StoreError};
use tokio::sync::mpsc;

use crate::auth::{parse_challenge, query_escape, Challenge, Credentials};
use crate::error::{Failure, PullError};
use crate::http::{next_chunk, read_body, Transport, Url};
use crate::reference::Reference;
use keel_types::Registry;

/// Blob downloads at once.
pub const CONCURRENT_BLOBS: usize = 3;
/// Redirects followed per request.
pub const MAX_REDIRECTS: usize = 5;
/// Indexes nested deeper are refused.
const MAX_NESTING: usize = 4;
/// Error bodies and token responses are read up to this.
const MAX_SMALL_BODY: u64 = 1024 * 1024;

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// What a pull needs besides the store.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Registries (`host[:port]`) spoken to over plain http.
    pub insecure: Vec<Registry>,
    pub auth: Vec<Credentials>,
    /// PEM bundle of the CAs registries' certificates are checked against.
    pub ca_bundle: PathBuf,
    /// Where `etc/hosts` and `etc/resolv.conf` are read (`/` on a node).
    pub resolver_root: PathBuf,
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The store name the image was written under.
    pub name: String,
    /// The digest of the manifest (or index) the registry first sent.
    pub received: Digest,
    /// The platform manifest the ref names.
    pub manifest: Descriptor,
    /// Blobs fetched, and blobs the store already had.
    pub fetched: usize,
    pub present: usize,
    /// Bytes of blobs fetched.
    pub bytes: u64,
}

struct Client {
    reference: Reference,
    transport: Transport,
    https: bool,
    credentials: Option<Credentials>,
    /// The Authorization header the last challenge earned.
    authorization: Mutex<Option<String>>,
}

impl Client {
    fn url(&self, path: &str) -> Url {
        Url::registry(&self.reference.registry, self.https, path)
    }

    /// GET `path` on the registry, answering a 401 once and following
    /// redirects; a response other than 2xx is an error with the registry's
    /// error body.
    async fn send(
        &self,
        path: &str,
        accept: Option<&str>,
    ) -> Result<(Url, Response<Incoming>), Failure> {
        let mut url = self.url(path);
        let registry = url.authority();
        let mut redirects = 0;
        let mut authenticated = false;
        loop {
            let mut headers = Vec::new();
            if let Some(a) = accept {
                headers.push(("accept", a.to_string()));
            }
            // Credentials go to the registry only, never to where it
            // redirects blobs (object storage signs its URLs itself).
            if url.authority() == registry {
                if let Some(a) = self
                    .authorization
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                {
                    headers.push(("authorization", a));
                }
            }
            let resp = self.transport.get(&url, &headers).await?;
            let status = resp.status().as_u16();
            match status {
                401 if url.authority() == registry => {
                    if authenticated {
                        let detail = error_detail(resp, &url).await;
                        return Err(Failure::Unauthorized {
                            url: url.to_string(),
                            detail,
                        });
                    }
                    authenticated = true;
                    let header = resp
                        .headers()
                        .get("www-authenticate")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    self.authenticate(&header).await?;
                }
                301 | 302 | 303 | 307 | 308 => {
                    redirects += 1;
                    let problem = if redirects > MAX_REDIRECTS {
                        Some(format!("more than {MAX_REDIRECTS} redirects"))
                    } else {
                        None
                    };
                    let next = resp
                        .headers()
                        .get("location")
                        .and_then(|l| l.to_str().ok())
                        .and_then(|l| url.join(l));
                    match (problem, next) {
                        (None, Some(n)) => url = n,
                        (p, _) => {
                            return Err(Failure::Redirect {
                                url: url.to_string(),
                                problem: p.unwrap_or_else(|| "no usable Location".into()),
                            })
                        }
                    }
                }
                200..=299 => return Ok((url, resp)),
                _ => {
                    let detail = error_detail(resp, &url).await;
                    return Err(Failure::Status {
                        url: url.to_string(),
                        status,
                        detail,
                    });
                }
            }
        }
    }

    /// Earn an Authorization header from a challenge.
    async fn authenticate(&self, header: &str) -> Result<(), Failure> {
        let value = match parse_challenge(header)? {
            Challenge::Basic { .. } => match &self.credentials {
                Some(c) => c.basic(),
                None => {
                    return Err(Failure::NoCredentials {
                        authority: self.reference.registry.to_string(),
                    })
                }
            },
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let token_err = |problem: String| Failure::Token {
                    realm: realm.clone(),
                    problem,
                };
                let mut url = Url::parse(&realm)
                    .ok_or_else(|| token_err("the realm is not an http(s) URL".into()))?;
                let scope = scope
                    .unwrap_or_else(|| format!("repository:{}:pull", self.reference.repository));
                let mut query = vec![format!("scope={}", query_escape(&scope))];
                if let Some(s) = service {
                    query.insert(0, format!("service={}", query_escape(&s)));
                }
                let sep = if url.path.contains('?') { '&' } else { '?' };
                url.path = format!("{}{sep}{}", url.path, query.join("&"));
                let mut headers = Vec::new();
                if let Some(c) = &self.credentials {
                    headers.push(("authorization", c.basic()));
                }
                let resp = self.transport.get(&url, &headers).await?;
                let status = resp.status().as_u16();
                if !(200..300).contains(&status) {
                    let detail = error_detail(resp, &url).await;
                    return Err(token_err(format!("HTTP {status}{detail}")));
                }
                let mut body = resp.into_body();
                let bytes = read_body(&mut body, &url, MAX_SMALL_BODY, "token response").await?;
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let t: Token = serde_json::from_slice(&bytes)
                    .map_err(|e| token_err(format!("not a token response: {e}")))?;
                let token = t
                    .token
                    .or(t.access_token)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| token_err("the response has no token".into()))?;
                format!("Bearer {token}")
            }
        };
        *self.authorization.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
        Ok(())
    }

    /// A manifest or index by `reference`: its bytes, media type (from the
    /// Content-Type, else the document) and the digest of the bytes.
    async fn manifest(&self, reference: &str) -> Result<(Vec<u8>, String, Digest), Failure> {
        let path = format!("/v2/{}/manifests/{reference}", self.reference.repository);
        let (url, resp) = self.send(&path, Some(ACCEPT)).await?;
        let what = format!("manifest {reference}");
        if let Some(n) = content_length(&resp) {
            if n > MAX_JSON {
                return Err(Failure::TooLarge {
                    what,
                    limit: MAX_JSON,
                });
            }
        }
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|h| h.to_str().ok())
            .map(|t| t.split(';').next().unwrap_or("").trim().to_string());
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|h| h.to_str().ok())
            .map(str::to_string);
        let mut body = resp.into_body();
        let bytes = read_body(&mut body, &url, MAX_JSON, &what).await?;
        let found = Digest::of(&bytes);
        if let Some(h) = header_digest {
            if Digest::parse(&h).ok().as_ref() != Some(&found) {
                return Err(Failure::HeaderDigest { header: h, found });
            }
        }
        let media_type = match content_type {
            Some(t) if is_index(&t) || is_manifest(&t) => t,
            _ => document_type(&bytes),
        };
        Ok((bytes, media_type, found))
    }
}

/// The media type a manifest-ish document says it is, or guesses from its
/// shape when it has no `mediaType` (OCI allows that).
fn document_type(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Shape>(bytes) {
        Ok(Shape {
            media_type: Some(t),
            ..
        }) => t,
        Ok(Shape {
            manifests: Some(_), ..
        }) => OCI_INDEX.into(),
        Ok(Shape {
            layers: Some(_), ..
        }) => OCI_MANIFEST.into(),
        _ => String::new(),
    }
}

fn content_length(resp: &Response<Incoming>) -> Option<u64> {
    resp.headers()
        .get("content-length")
        .and_then(|h| h.to_str().ok())
        .and_then(|s| s.parse().ok())
}

/// `: CODE: message; …` from a registry error body
/// (`{"errors":[{"code","message"}]}`), or its first line of text.
async fn error_detail(resp: Response<Incoming>, url: &Url) -> String {
    let mut body = resp.into_body();
    let Ok(bytes) = read_body(&mut body, url, MAX_SMALL_BODY, "error body").await else {
        return String::new();
    };
    detail_of(&bytes)
}

pub(crate) fn detail_of(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(b) = serde_json::from_slice::<Body>(bytes) {
        let parts: Vec<String> = b
            .errors
            .into_iter()
            .map(|e| match (e.code, e.message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c,
                (None, Some(m)) => m,
                (None, None) => String::new(),
            })
            .filter(|s| !s.is_empty())
            .collect();
        if !parts.is_empty() {
            return format!(": {}", parts.join("; "));
        }
    }
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        String::new()
    } else {
        format!(": {}", line.chars().take(200).collect::<String>())
    }
}

/// Pick the linux/amd64 entry of an index.
pub fn pick_platform(index: &Index) -> Option<&Descriptor> {
    let p = Platform::linux_amd64();
    index.manifests.iter().find(|d| p.matches(d))
}

/// A blocking `Read` over the chunks the network side sends: lets
/// [`Store::put_blob`] (synchronous, it fsyncs) consume an async body.
struct ChunkReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(e)) => return Err(e),
                Some(Ok(b)) => self.current = b,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Fetch blob `desc` into the store; returns its size.
async fn fetch_blob(
    client: Arc<Client>,
    store: Store,
    desc: Descriptor,
    cancel: Arc<AtomicBool>,
) -> Result<u64, Failure> {
    let digest = desc.digest()?;
    let path = format!("/v2/{}/blobs/{digest}", client.reference.repository);
    let (url, resp) = client.send(&path, None).await?;
    if content_length(&resp).is_some_and(|n| n > desc.size) {
        return Err(Failure::TooLarge {
            what: format!("blob {digest}"),
            limit: desc.size,
        });
    }
    let (tx, rx) = mpsc::channel(8);
    let (d, size) = (digest.clone(), desc.size);
    let writer = tokio::task::spawn_blocking(move || {
        store.put_blob(
            ChunkReader {
                rx,
                current: Bytes::new(),
            },
            &d,
            Some(size),
        )
    });
    let mut body = resp.into_body();
    let mut received = 0u64;
    // A network failure is the error to report; the store only sees the
    // stream end early and drops its temporary file.
    let net = loop {
        let chunk = if cancel.load(Ordering::Relaxed) {
            Err(Failure::Task("cancelled: another blob failed".into()))
        } else {
            next_chunk(&mut body, &url).await
        };
        match chunk {
            Ok(None) => break None,
            Ok(Some(chunk)) => {
                received += chunk.len() as u64;
                let over = received > desc.size;
                if tx.send(Ok(chunk)).await.is_err() || over {
                    break None;
                }
            }
            Err(e) => {
                let _ = tx
                    .send(Err(std::io::Error::other("the download failed")))
                    .await;
                break Some(e);
            }
        }
    };
    drop(tx);
    let stored = writer.await.map_err(|e| Failure::Task(e.to_string()))?;
    if let Some(e) = net {
        return Err(e);
    }
    stored.map_err(|source| Failure::Blob {
        digest,
        source: Box::new(source),
    })?;
    Ok(desc.size)
}

/// Pull `reference` into `store` as `name`.
pub async fn pull(
    store: &Store,
    reference: &Reference,
    name: &str,
    settings: &Settings,
) -> Result<Pulled, PullError> {
    pull_inner(store, reference, name, settings)
        .await
        .map_err(|failure| PullError {
            image: reference.to_string(),
            failure,
        })
}

/// [`pull`] on a runtime of its own, for callers outside async code (the
/// supervisor resolves images on the blocking pool).
pub fn pull_blocking(
    store: &Store,
    reference: &Reference,
    name: &str,
    settings: &Settings,
) -> Result<Pulled, PullError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| PullError {
            image: reference.to_string(),
            failure: Failure::Task(format!("start a runtime: {e}")),
        })?;
    rt.block_on(pull(store, reference, name, settings))
}

async fn pull_inner(
    store: &Store,
    reference: &Reference,
    name: &str,
    settings: &Settings,
) -> Result<Pulled, Failure> {
    let transport = Transport::new(
        &settings.insecure,
        &settings.ca_bundle,
        &settings.resolver_root,
    );
    let https = !transport.is_insecure(&reference.registry.to_string());
    let client = Arc::new(Client {
        reference: reference.clone(),
        https,
        credentials: settings
            .auth
            .iter()
            .find(|c| Reference::registry_of(&c.registry) == reference.registry)
            .cloned(),
        transport,
        authorization: Mutex::new(None),
    });

    // 1-2: the manifest, through any index.
    let (mut bytes, mut media_type, received) = client.manifest(&reference.reference()).await?;
    if let Some(asked) = &reference.digest {
        if *asked != received {
            return Err(Failure::ManifestDigest {
                expected: asked.clone(),
                found: received,
            });
        }
    }
    let mut digest = received.clone();
    let mut depth = 0;
    while is_index(&media_type) {
        depth += 1;
        if depth > MAX_NESTING {
            return Err(Failure::Nesting(MAX_NESTING));
        }
        let doc = format!("index {digest}");
        let index: Index = parse(&doc, &bytes)?;
        index.check(&doc)?;
        let entry = pick_platform(&index)
            .ok_or_else(|| Failure::NoPlatform {
                digest: digest.clone(),
            })?
            .clone();
        let want = entry.digest()?;
        let (b, t, found) = client.manifest(&want.to_string()).await?;
        if found != want || b.len() as u64 != entry.size {
            return Err(Failure::Descriptor {
                what: "manifest",
                expected: want,
                found,
                size: b.len() as u64,
                expected_size: entry.size,
            });
        }
        (bytes, digest) = (b, found);
        media_type = if is_manifest(&t) || is_index(&t) {
            t
        } else {
            entry.media_type
        };
    }
    if !is_manifest(&media_type) {
        return Err(Failure::NotManifest { digest, media_type });
    }
    let doc = format!("manifest {digest}");
    let manifest: Manifest = parse(&doc, &bytes)?;
    manifest.check(&doc)?;
    if manifest.config.size > MAX_JSON {
        return Err(Failure::TooLarge {
            what: format!("config {}", manifest.config.digest),
            limit: MAX_JSON,
        });
    }

    // 3: config and layers, CONCURRENT_BLOBS at a time.
    let mut wanted = Vec::new();
    let mut present = 0;
    for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
        let dg = d.digest()?;
        if store.has_blob(&dg) || wanted.iter().any(|w: &Descriptor| w.digest == d.digest) {
            present += 1;
        } else {
            wanted.push(d.clone());
        }
    }
    let fetched = wanted.len();
    let mut pending = wanted.into_iter();
    let mut running = tokio::task::JoinSet::new();
    let mut total = 0u64;
    let cancel = Arc::new(AtomicBool::new(false));
    let mut first_err = None;
    loop {
        while running.len() < CONCURRENT_BLOBS && first_err.is_none() {
            let Some(d) = pending.next() else { break };
            running.spawn(fetch_blob(client.clone(), store.clone(), d, cancel.clone()));
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        // The first failure ends the pull. The others are told to stop and
        // awaited rather than aborted, so that their writers on the
        // blocking pool have removed their temporary files when pull
        // returns.
        match done
            .map_err(|e| Failure::Task(e.to_string()))
            .and_then(|r| r)
        {
            Ok(n) => total += n,
            Err(e) => {
                cancel.store(true, Ordering::Relaxed);
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }

    // 4: the manifest blob, then the ref.
    let desc = Descriptor {
        media_type,
        digest: digest.to_string(),
        size: bytes.len() as u64,
        platform: None,
        annotations: Default::default(),
    };
    store
        .put_blob(&bytes[..], &digest, Some(desc.size))
        .map_err(|source| Failure::Blob {
            digest: digest.clone(),
            source: Box::new(source),
        })?;
    store
        .put_ref(name, &desc)
        .map_err(|source: StoreError| Failure::Store {
            name: name.to_string(),
            source: Box::new(source),
        })?;
    Ok(Pulled {
        name: name.to_string(),
        received,
        manifest: desc,
        fetched,
        present,
        bytes: total,
    })
}

#[cfg(test)]
mod tests;
