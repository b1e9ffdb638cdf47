//! The API server: hyper HTTP/1.1 over any accepted stream (TCP, TLS over
//! TCP, or unix).
//!
//! Limits: request head 16 KiB (hyper's buffer), body 64 KiB (413 past it;
//! 1 MiB for a cloud-config), header read timeout 10 s. Routing is a pure
//! function of method and path.
//!
//! Who may do what: the unix socket (root only inside the node) may do
//! everything; the TCP port serves only mutual TLS, and the client
//! certificate's subject Organization names its role ([`Role`]):
//! `keel:admin` may do everything, `keel:reader` only GET and HEAD (403
//! with a JSON error naming the role otherwise), and a certificate with
//! neither may do nothing. A request with an `Origin` header is refused
//! (403) and a POST with a body must say `Content-Type: application/json`
//! (`application/yaml` for a cloud-config), else 415: no browser page can
//! drive a node, whatever certificates its browser holds.
//!
//! The accept loops ([`serve_tcp`], [`serve_unix`]) run each connection on
//! a task of its own, the TLS handshake included: a client that connects
//! and never speaks holds only its task (for the handshake deadline,
//! [`keel_tls::HANDSHAKE_TIMEOUT`], at most), and a failed handshake ends
//! only its own connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use keel_boot::warn;
use keel_tls::TlsAcceptor;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

use crate::types::{Accepted, ConfigApplied, ErrorBody, NetworkStatus, Status};

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest cloud-config body (the validator's own limit).
pub const MAX_CONFIG_BODY: usize = 1024 * 1024;
/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Connections the TCP port serves at once; past it new ones are closed at
/// once while the established ones are served.
pub const MAX_TCP_CONNECTIONS: usize = 1024;
/// Connections the unix socket serves at once: a pool of its own, so
/// keelctl on the node gets in however full the TCP port is.
pub const MAX_UNIX_CONNECTIONS: usize = 64;
/// How long a request head may take to arrive, and how long a kept-alive
/// connection may sit idle before its next request (hyper's header read
/// timeout covers both).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request body may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the server needs from the node.
pub trait Node: Send + Sync + 'static {
    fn status(&self) -> Status;
    /// This boot's cloud-config (what `status().config` holds, without
    /// gathering the rest of the status).
    fn config(&self) -> crate::types::ConfigStatus;
    /// Start an orderly reboot (`poweroff == false`) or power-off. Returns
    /// an error message when the node cannot (already stopping, say).
    fn request_power(&self, poweroff: bool) -> Result<(), String>;
    /// Validate and apply (or, with `dry_run`, only plan) a cloud-config.
    /// Blocking: the server calls it off the async runtime.
    fn apply_config(&self, text: String, opts: ApplyOptions) -> ConfigApplied;
    /// Links, addresses, routes and DNS as the kernel has them now.
    fn network(&self) -> NetworkStatus;
    /// Every container.
    fn containers(&self) -> Vec<crate::types::ContainerStatus> {
        Vec::new()
    }
    /// A container's output after `offset`; None when there is no such
    /// container.
    fn container_logs(&self, _name: &str, _offset: u64) -> Option<crate::types::ContainerLogs> {
        None
    }
    /// `start`, `stop` or `restart` a container. Err(None): no such
    /// container; Err(Some(m)): it cannot (with why).
    fn container_action(&self, _name: &str, _action: &str) -> Result<(), Option<String>> {
        Err(None)
    }
    /// The KV's raised alarms; None when the KV is not running.
    fn kv_alarms(&self) -> Option<Vec<crate::types::KvAlarm>> {
        None
    }
    /// Clears the KV's alarms through its Raft; answers those it cleared.
    /// Err(None): the KV is not running; Err(Some(m)): it failed.
    fn kv_disarm(&self) -> KvDisarm {
        Box::pin(async { Err(None) })
    }
}

/// What [`Node::kv_disarm`] returns: the cluster answers in its own time.
pub type KvDisarm = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<Vec<crate::types::KvAlarm>, Option<String>>> + Send,
    >,
>;

/// How `POST /v1/config` was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyOptions {
    /// `?dry_run=1`: plan only.
    pub dry_run: bool,
    /// The request came over the TCP port without `?close_api=1`: a config
    /// without `api:` is refused, since the node's next boot would close
    /// that port (and the way in of whoever sent it).
    pub keep_api: bool,
}

/// The Organization value of an admin client certificate.
pub const ROLE_ADMIN: &str = "keel:admin";
/// The Organization value of a read-only client certificate.
pub const ROLE_READER: &str = "keel:reader";

/// What a client certificate lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// GET and HEAD only.
    Reader,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => ROLE_ADMIN,
            Role::Reader => ROLE_READER,
        }
    }
}

/// Who is calling, as the listener established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The unix socket (root only, inside the node): everything.
    Local,
    /// A verified client certificate: `role` is None when its subject
    /// names neither `keel:admin` nor `keel:reader`.
    Cert { name: String, role: Option<Role> },
}

impl Caller {
    /// The caller a verified client certificate makes. `keel:admin` wins
    /// when a subject names both.
    pub fn from_cert(der: &keel_tls::rustls::pki_types::CertificateDer<'_>) -> Caller {
        match keel_tls::cert::inspect(der) {
            Ok(info) => {
                let has = |r: &str| info.organizations.iter().any(|o| o == r);
                let role = if has(ROLE_ADMIN) {
                    Some(Role::Admin)
                } else if has(ROLE_READER) {
                    Some(Role::Reader)
                } else {
                    None
                };
                Caller::Cert {
                    name: info.common_name.unwrap_or_else(|| "(no CN)".into()),
                    role,
                }
            }
            Err(e) => Caller::Cert {
                name: format!("(unreadable: {e})"),
                role: None,
            },
        }
    }

    /// The refusal for `method` on `route`, or None when allowed.
    fn refuse(&self, method: &Method, path: &str) -> Option<Response<Full<Bytes>>> {
        let reads = matches!(*method, Method::GET | Method::HEAD);
        match self {
            Caller::Local => None,
            Caller::Cert {
                role: Some(Role::Admin),
                ..
            } => None,
            Caller::Cert {
                role: Some(Role::Reader),
                ..
            } if reads => None,
            Caller::Cert {
                name,
                role: Some(Role::Reader),
            } => Some(error(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "certificate {name:?} has role {ROLE_READER}, which may only read (GET): {method} {path} needs {ROLE_ADMIN}"
                ),
            )),
            Caller::Cert { name, role: None } => Some(error(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "certificate {name:?} names no keel role: its subject needs O={ROLE_ADMIN} or O={ROLE_READER}"
                ),
            )),
        }
    }
}

/// The endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Status,
    Reboot,
    PowerOff,
    /// `GET /v1/config`: the config of this boot.
    Config,
    /// `POST /v1/config`: validate and apply one (`?dry_run=1`: plan only).
    ApplyConfig,
    /// `GET /v1/network`.
    Network,
    /// `GET /v1/containers`.
    Containers,
    /// `GET /v1/containers/NAME`.
    Container,
    /// `GET /v1/containers/NAME/logs`.
    ContainerLogs,
    /// `POST /v1/containers/NAME/ACTION`.
    ContainerAction,
    /// `GET /v1/kv/alarms`.
    KvAlarms,
    /// `POST /v1/kv/alarms/disarm`.
    KvDisarm,
    /// The path exists, the method does not; carries the allowed method.
    WrongMethod(&'static str),
    NotFound,
}

/// Route a request by method and path (the query string is ignored).
pub fn route(method: &Method, path: &str) -> Route {
    let path = path.split('?').next().unwrap_or("");
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    match (path, method) {
        ("/v1/status", &Method::GET) | ("/v1/status", &Method::HEAD) => Route::Status,
        ("/v1/status", _) => Route::WrongMethod("GET"),
        ("/v1/reboot", &Method::POST) => Route::Reboot,
        ("/v1/poweroff", &Method::POST) => Route::PowerOff,
        ("/v1/reboot", _) | ("/v1/poweroff", _) => Route::WrongMethod("POST"),
        ("/v1/config", &Method::GET) | ("/v1/config", &Method::HEAD) => Route::Config,
        ("/v1/config", &Method::POST) => Route::ApplyConfig,
        ("/v1/config", _) => Route::WrongMethod("GET, POST"),
        ("/v1/network", &Method::GET) | ("/v1/network", &Method::HEAD) => Route::Network,
        ("/v1/network", _) => Route::WrongMethod("GET"),
        ("/v1/containers", &Method::GET) | ("/v1/containers", &Method::HEAD) => Route::Containers,
        ("/v1/containers", _) => Route::WrongMethod("GET"),
        ("/v1/kv/alarms", &Method::GET) | ("/v1/kv/alarms", &Method::HEAD) => Route::KvAlarms,
        ("/v1/kv/alarms", _) => Route::WrongMethod("GET"),
        ("/v1/kv/alarms/disarm", &Method::POST) => Route::KvDisarm,
        ("/v1/kv/alarms/disarm", _) => Route::WrongMethod("POST"),
        (p, m) if p.starts_with("/v1/containers/") => {
            let rest: Vec<&str> = p["/v1/containers/".len()..].split('/').collect();
            match (rest.as_slice(), m) {
                ([n], &Method::GET) if !n.is_empty() => Route::Container,
                ([n], _) if !n.is_empty() => Route::WrongMethod("GET"),
                ([_, "logs"], &Method::GET) => Route::ContainerLogs,
                ([_, "logs"], _) => Route::WrongMethod("GET"),
                ([_, "start" | "stop" | "restart"], &Method::POST) => Route::ContainerAction,
                ([_, "start" | "stop" | "restart"], _) => Route::WrongMethod("POST"),
                _ => Route::NotFound,
            }
        }
        _ => Route::NotFound,
    }
}

fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec_pretty(body).unwrap_or_else(|e| {
        format!("{{\"error\":\"internal\",\"message\":\"encode response: {e}\"}}").into_bytes()
    });
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response<Full<Bytes>> {
    json(
        status,
        &ErrorBody {
            error: kind.to_string(),
            message: message.into(),
        },
    )
}

fn container_name(path: &str) -> &str {
    path.trim_start_matches("/v1/containers/")
        .split('/')
        .next()
        .unwrap_or("")
}

fn no_kv() -> Response<Full<Bytes>> {
    error(
        StatusCode::NOT_FOUND,
        "no_kv",
        "the KV is not running on this node (see `keelctl status`)",
    )
}

fn no_container(name: &str) -> Response<Full<Bytes>> {
    error(
        StatusCode::NOT_FOUND,
        "no_such_container",
        format!("no container named {name:?}"),
    )
}

fn query_u64(query: &str, key: &str) -> Option<u64> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.parse().ok())?
    })
}

/// Answer one request from `caller`.
pub async fn handle(
    req: Request<Incoming>,
    node: Arc<dyn Node>,
    caller: Arc<Caller>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if req.headers().contains_key(hyper::header::ORIGIN) {
        return Ok(error(
            StatusCode::FORBIDDEN,
            "origin_refused",
            "a request with an Origin header (from a web page) is refused: the API is for keelctl, curl and programs",
        ));
    }
    if let Some(refusal) = caller.refuse(&method, &path) {
        return Ok(refusal);
    }
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    let dry_run = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "dry_run=1" || kv == "dry_run=true")
    });
    let query = req.uri().query().unwrap_or("").to_string();
    let close_api = query
        .split('&')
        .any(|kv| kv == "close_api=1" || kv == "close_api=true");
    let apply = ApplyOptions {
        dry_run,
        keep_api: !matches!(*caller, Caller::Local) && !close_api,
    };
    let r = route(&method, &path);
    let limit = if r == Route::ApplyConfig {
        MAX_CONFIG_BODY
    } else {
        MAX_BODY
    };
    // Read (and bound, in size and time) the body before answering,
    // whatever the route.
    let collected =
        match tokio::time::timeout(BODY_TIMEOUT, Limited::new(req.into_body(), limit).collect())
            .await
        {
            Ok(c) => c,
            Err(_) => {
                return Ok(error(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!("request body not complete within {BODY_TIMEOUT:?}"),
                ))
            }
        };
    let body = match collected {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let too_big = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return Ok(if too_big {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("request body over {limit} bytes"),
                )
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    format!("read request body: {e}"),
                )
            });
        }
    };
    if method == Method::POST && !body.is_empty() {
        let allowed: &[&str] = if r == Route::ApplyConfig {
            &["application/yaml", "application/json"]
        } else {
            &["application/json"]
        };
        if !content_type
            .as_deref()
            .is_some_and(|t| allowed.contains(&t))
        {
            return Ok(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "{method} {path} with a body needs Content-Type {}, not {}",
                    allowed.join(" or "),
                    content_type.as_deref().unwrap_or("none")
                ),
            ));
        }
    }
    Ok(match r {
        Route::Status => json(StatusCode::OK, &node.status()),
        Route::Config => json(StatusCode::OK, &node.config()),
        Route::Network => {
            let n = node.clone();
            match tokio::task::spawn_blocking(move || n.network()).await {
                Ok(net) => json(StatusCode::OK, &net),
                Err(e) => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("network: {e}"),
                ),
            }
        }
        Route::ApplyConfig => match String::from_utf8(body.to_vec()) {
            Err(_) => error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "the cloud-config is not UTF-8 text",
            ),
            Ok(text) => {
                let n = node.clone();
                match tokio::task::spawn_blocking(move || n.apply_config(text, apply)).await {
                    Ok(done) if done.accepted => json(StatusCode::OK, &done),
                    Ok(done) => json(StatusCode::UNPROCESSABLE_ENTITY, &done),
                    Err(e) => error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        format!("apply: {e}"),
                    ),
                }
            }
        },
        Route::Containers => json(StatusCode::OK, &node.containers()),
        Route::Container => {
            let name = container_name(&path);
            match node.containers().into_iter().find(|c| c.name == name) {
                Some(c) => json(StatusCode::OK, &c),
                None => no_container(name),
            }
        }
        Route::ContainerLogs => {
            let name = container_name(&path);
            let offset = query_u64(&query, "offset").unwrap_or(0);
            match node.container_logs(name, offset) {
                Some(l) => json(StatusCode::OK, &l),
                None => no_container(name),
            }
        }
        Route::ContainerAction => {
            let name = container_name(&path);
            let action = path.rsplit('/').next().unwrap_or("");
            match node.container_action(name, action) {
                Ok(()) => json(
                    StatusCode::ACCEPTED,
                    &Accepted {
                        action: format!("{action} {name}"),
                        message: format!("{action} of container {name} under way"),
                    },
                ),
                Err(None) => no_container(name),
                Err(Some(m)) => error(StatusCode::CONFLICT, "conflict", m),
            }
        }
        Route::KvAlarms => match node.kv_alarms() {
            Some(alarms) => json(StatusCode::OK, &crate::types::KvAlarms { alarms }),
            None => no_kv(),
        },
        Route::KvDisarm => match node.kv_disarm().await {
            Ok(alarms) => json(StatusCode::OK, &crate::types::KvAlarms { alarms }),
            Err(None) => no_kv(),
            Err(Some(m)) => error(StatusCode::SERVICE_UNAVAILABLE, "kv_unavailable", m),
        },
        Route::Reboot | Route::PowerOff => {
            let poweroff = r == Route::PowerOff;
            let action = if poweroff { "poweroff" } else { "reboot" };
            match node.request_power(poweroff) {
                Ok(()) => json(
                    StatusCode::ACCEPTED,
                    &Accepted {
                        action: action.to_string(),
                        message: format!("orderly {action} started"),
                    },
                ),
                Err(m) => error(StatusCode::CONFLICT, "conflict", m),
            }
        }
        Route::WrongMethod(allowed) => {
            let mut resp = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed on {path}; use {allowed}"),
            );
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allowed));
            resp
        }
        Route::NotFound => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such endpoint: {method} {path}"),
        ),
    })
}

/// Serve HTTP/1.1 on one accepted connection until the peer closes it.
pub async fn serve<S>(stream: S, node: Arc<dyn Node>, caller: Caller)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let caller = Arc::new(caller);
    let svc = hyper::service::service_fn(move |req| handle(req, node.clone(), caller.clone()));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD.max(8192))
        .serve_connection(TokioIo::new(stream), svc);
    // A broken or malformed connection is the peer's problem: hyper has
    // already answered 400 where it could.
    let _ = conn.await;
}

/// Accept on `listener` for ever, serving HTTPS only: the acceptor's
/// config decides whether clients need a certificate (keel's always does),
/// and the certificate's role what each may do. There is no plain HTTP on
/// TCP.
pub async fn serve_tcp(
    listener: TcpListener,
    tls: TlsAcceptor,
    node: Arc<dyn Node>,
    max_connections: usize,
) {
    let what = match listener.local_addr() {
        Ok(a) => format!("tcp {a}"),
        Err(_) => "tcp".to_string(),
    };
    let failures = Arc::new(Throttle::default());
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut over = Throttle::default();
    loop {
        match listener.accept().await {
            Ok((s, peer)) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    // Closed at once: the established ones go on.
                    drop(s);
                    over.refused(&what, max_connections, Instant::now());
                    continue;
                };
                let _ = s.set_nodelay(true);
                let node = node.clone();
                let acceptor = tls.clone();
                let failures = failures.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    match keel_tls::accept(&acceptor, s).await {
                        Ok(t) => {
                            let caller = match t.get_ref().1.peer_certificates() {
                                Some([leaf, ..]) => Caller::from_cert(leaf),
                                _ => Caller::Cert {
                                    name: "(no certificate)".into(),
                                    role: None,
                                },
                            };
                            serve(t, node, caller).await
                        }
                        Err(e) => {
                            failures.handshake_failed(peer, &e, Instant::now());
                        }
                    }
                });
            }
            Err(e) => accept_failed(&what, e).await,
        }
    }
}

/// Accept on the unix socket for ever; its callers are root inside the
/// node (the socket is mode 0600) and may do everything.
pub async fn serve_unix(listener: UnixListener, node: Arc<dyn Node>, max_connections: usize) {
    let what = match listener.local_addr() {
        Ok(a) => match a.as_pathname() {
            Some(p) => p.display().to_string(),
            None => "unix socket".to_string(),
        },
        Err(_) => "unix socket".to_string(),
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut over = Throttle::default();
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    drop(s);
                    over.refused(&what, max_connections, Instant::now());
                    continue;
                };
                let node = node.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    serve(s, node, Caller::Local).await
                });
            }
            Err(e) => accept_failed(&what, e).await,
        }
    }
}

/// Out of file descriptors or memory: wait a moment rather than spin.
async fn accept_failed(what: &str, e: std::io::Error) {
    warn!("api: accept on {what}: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// At most one line per this long about failed TLS handshakes: a scanner
/// or a misconfigured client must not flood the console.
pub const HANDSHAKE_LOG_EVERY: Duration = Duration::from_secs(10);

/// When the last handshake failure was logged, and how many were not since.
#[derive(Debug, Default)]
struct Throttle(Mutex<(Option<Instant>, u64)>);

impl Throttle {
    /// Log this failure unless one was logged within HANDSHAKE_LOG_EVERY;
    /// returns the line logged.
    fn handshake_failed(
        &self,
        peer: SocketAddr,
        e: &std::io::Error,
        now: Instant,
    ) -> Option<String> {
        let mut st = self.0.lock().ok()?;
        if st
            .0
            .is_some_and(|t| now.saturating_duration_since(t) < HANDSHAKE_LOG_EVERY)
        {
            st.1 += 1;
            return None;
        }
        let quiet = std::mem::take(&mut st.1);
        st.0 = Some(now);
        drop(st);
        let more = match quiet {
            0 => String::new(),
            n => format!(" ({n} more failed handshakes since the last report)"),
        };
        let line = format!("api: TLS handshake with {peer}: {e}{more}");
        warn!("{line}");
        Some(line)
    }

    /// A connection closed for being over the cap: logged at most once per
    /// HANDSHAKE_LOG_EVERY, with a count of the others.
    fn refused(&mut self, what: &str, cap: usize, now: Instant) -> Option<String> {
        let st = self.0.get_mut().ok()?;
        if st
            .0
            .is_some_and(|t| now.saturating_duration_since(t) < HANDSHAKE_LOG_EVERY)
        {
            st.1 += 1;
            return None;
        }
        let quiet = std::mem::take(&mut st.1);
        st.0 = Some(now);
        let line = format!(
            "api: {what}: {} new connection{} closed: {cap} are open, the most it serves at once",
            quiet + 1,
            if quiet == 0 { "" } else { "s" }
        );
        warn!("{line}");
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_failures_are_throttled() {
        let t = Throttle::default();
        let peer: SocketAddr = "10.0.2.2:5000".parse().unwrap();
        let e = std::io::Error::other("peer sent no certificates");
        let t0 = Instant::now();
        let first = t.handshake_failed(peer, &e, t0).unwrap();
        assert_eq!(
            first,
            "api: TLS handshake with 10.0.2.2:5000: peer sent no certificates"
        );
        assert_eq!(
            t.handshake_failed(peer, &e, t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(
            t.handshake_failed(peer, &e, t0 + Duration::from_secs(9)),
            None
        );
        let next = t
            .handshake_failed(peer, &e, t0 + HANDSHAKE_LOG_EVERY)
            .unwrap();
        assert!(
            next.ends_with("(2 more failed handshakes since the last report)"),
            "{next}"
        );
    }

    #[test]
    fn routes() {
        assert_eq!(route(&Method::GET, "/v1/status"), Route::Status);
        assert_eq!(route(&Method::GET, "/v1/status/?x=1"), Route::Status);
        assert_eq!(
            route(&Method::POST, "/v1/status"),
            Route::WrongMethod("GET")
        );
        assert_eq!(route(&Method::POST, "/v1/reboot"), Route::Reboot);
        assert_eq!(route(&Method::POST, "/v1/poweroff"), Route::PowerOff);
        assert_eq!(
            route(&Method::GET, "/v1/poweroff"),
            Route::WrongMethod("POST")
        );
        assert_eq!(route(&Method::GET, "/"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/v1/statusx"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/v1/containers"), Route::Containers);
        assert_eq!(route(&Method::GET, "/v1/containers/web"), Route::Container);
        assert_eq!(
            route(&Method::GET, "/v1/containers/web/logs"),
            Route::ContainerLogs
        );
        assert_eq!(
            route(&Method::POST, "/v1/containers/web/stop"),
            Route::ContainerAction
        );
        assert_eq!(
            route(&Method::GET, "/v1/containers/web/stop"),
            Route::WrongMethod("POST")
        );
        assert_eq!(
            route(&Method::POST, "/v1/containers/web/explode"),
            Route::NotFound
        );
        assert_eq!(route(&Method::GET, "/v1/containers/"), Route::Containers);
        assert_eq!(route(&Method::GET, "/v1/kv/alarms"), Route::KvAlarms);
        assert_eq!(
            route(&Method::POST, "/v1/kv/alarms/disarm"),
            Route::KvDisarm
        );
        assert_eq!(
            route(&Method::GET, "/v1/kv/alarms/disarm"),
            Route::WrongMethod("POST")
        );
        assert_eq!(container_name("/v1/containers/web/logs"), "web");
        assert_eq!(query_u64("a=1&offset=42", "offset"), Some(42));
    }
}
