//! The client API: etcd's v2 HTTP endpoints, answered the way etcd 3.4
//! answers them (status, headers, JSON bodies with a final newline).
//!
//! 1. A path Go's `ServeMux` would clean (`//`, `/./`, `/../`) gets the same
//!    301 to the cleaned path.
//! 2. `/v2/keys`: the form (body first, then query) is checked field by
//!    field in etcd's order, each refusal naming its field; then a read is
//!    linearized (unless `quorum=false`) and served locally, a write goes
//!    through Raft, a watch waits on the applied-index channel.
//! 3. `/v2/members`, `/v2/machines`, `/v2/stats/*`, `/version`, `/health`.
//!    A membership change (POST, PUT, DELETE on `/v2/members`) adds or
//!    removes a member, which receives a copy of the whole store: it needs a
//!    client certificate the trusted CA signed (`client-cert-auth`), or a
//!    caller on loopback on a plain `http://` listener; anyone else gets 403.
//! 4. CORS headers only as `cors` says ([`crate::config::Cors`]).
//!
//! Limits: request body 1.5 MiB (413), keys 4 KiB, watchers
//! [`MAX_WATCHERS`] (503 past it).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, LOCATION};
use hyper::{Method, Request as HttpRequest, Response, StatusCode};
use keel_kv::json::{error_json, event_json};
use keel_kv::{ErrorCode, EtcdError, Event, SetOptions};
use tokio::sync::mpsc;

use crate::form::{escape_path, mux_redirect, unescape, Form};
use crate::node::{now_ms, MemberChange, Node};
use crate::server::Caller;
use crate::types::Request;

/// Largest request body (etcd's `--max-request-bytes` default).
pub const MAX_BODY: usize = 1536 * 1024;
/// How long a request body may take to arrive (the head has 10 s, and a
/// kept-alive connection may idle 10 s: hyper's header read timeout).
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A request body, bounded in size and in time.
pub async fn read_body(
    body: hyper::body::Incoming,
    max: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, BodyError> {
    match tokio::time::timeout(timeout, Limited::new(body, max).collect()).await {
        Err(_) => Err(BodyError::Slow(timeout)),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyError::TooLarge(max))
        }
        Ok(Err(e)) => Err(BodyError::Read(e.to_string())),
        Ok(Ok(b)) => Ok(b.to_bytes()),
    }
}

/// Why [`read_body`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    #[error("request body not complete within {0:?}")]
    Slow(std::time::Duration),
    #[error("request body: {0}")]
    Read(String),
}

impl BodyError {
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Slow(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
        }
    }
}
/// Longest key.
pub const MAX_KEY: usize = 4096;
/// Most concurrent watchers on one member.
pub const MAX_WATCHERS: u64 = 10_000;
/// The etcd release whose v2 API keel answers as.
pub const ETCD_VERSION: &str = "3.4.0";

/// A response body: whole, or a stream of watch events.
pub enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

type Resp = Response<Body>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Body::Full(Some(body.into())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_line(status: StatusCode, mut body: String) -> Resp {
    body.push('\n');
    respond(status, "application/json", body)
}

fn set_header(r: &mut Resp, name: &'static str, value: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        r.headers_mut().insert(name, v);
    }
}

/// Go's `http.Error`: a plain-text line.
fn text_error(status: StatusCode, msg: &str) -> Resp {
    let mut r = respond(status, "text/plain; charset=utf-8", format!("{msg}\n"));
    set_header(&mut r, "X-Content-Type-Options", "nosniff");
    r
}

fn not_allowed(allowed: &'static str) -> Resp {
    let mut r = text_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allowed));
    r
}

/// etcd's error body with its status and `X-Etcd-Index`.
fn etcd_error(e: &EtcdError) -> Resp {
    let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = json_line(status, error_json(e));
    set_header(&mut r, "X-Etcd-Index", e.index);
    r
}

/// etcd's `httptypes.HTTPError`: `{"message": ...}`.
fn http_error(status: u16, message: &str) -> Resp {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_line(
        status,
        serde_json::json!({ "message": message }).to_string(),
    )
}

fn form_error(code: ErrorCode, cause: &str) -> EtcdError {
    EtcdError::new(code, cause, 0)
}

/// Step 1..4 for one request.
pub async fn handle(
    node: Arc<Node>,
    caller: Caller,
    req: HttpRequest<Incoming>,
) -> Result<Resp, Infallible> {
    let origin = req
        .headers()
        .get(hyper::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let cors = node.config.cors.clone();
    let mut r = route(node, caller, req).await;
    // Step 4: etcd's CORS wrapper, when `cors` allows this origin.
    if let Some(allow) = cors.allow(origin.as_deref()) {
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(allow) {
            h.insert("access-control-allow-origin", v);
        }
        h.insert(
            "access-control-allow-methods",
            HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
        );
        h.insert(
            "access-control-allow-headers",
            HeaderValue::from_static("accept, content-type, authorization"),
        );
    }
    if matches!(cors, crate::config::Cors::Origins(_)) {
        // The answer depends on the Origin header: caches must know.
        r.headers_mut()
            .insert(hyper::header::VARY, HeaderValue::from_static("Origin"));
    }
    Ok(r)
}

/// Step 3: whether `caller` may change the membership.
pub fn may_change_members(caller: &Caller) -> bool {
    caller.cert || caller.addr.ip().is_loopback() && !caller.tls
}

async fn route(node: Arc<Node>, caller: Caller, req: HttpRequest<Incoming>) -> Resp {
    if req.method() == Method::OPTIONS {
        return Response::new(Body::Full(None));
    }
    // Go's ServeMux looks at the decoded path.
    let Ok(path) = unescape(req.uri().path(), false) else {
        return text_error(StatusCode::BAD_REQUEST, "400 Bad Request");
    };
    if let Some(to) = mux_redirect(&path) {
        let to = escape_path(&to);
        let location = match req.uri().query() {
            Some(q) => format!("{to}?{q}"),
            None => to,
        };
        let mut r = if matches!(*req.method(), Method::GET | Method::HEAD) {
            respond(
                StatusCode::MOVED_PERMANENTLY,
                "text/html; charset=utf-8",
                format!("<a href=\"{location}\">Moved Permanently</a>.\n\n"),
            )
        } else {
            let mut r = Response::new(Body::Full(None));
            *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
            r
        };
        set_header(&mut r, LOCATION.as_str(), location);
        return r;
    }
    if path == "/v2/keys" || path.starts_with("/v2/keys/") {
        keys(&node, req).await
    } else if path == "/v2/members" || path.starts_with("/v2/members/") {
        members(&node, caller, req).await
    } else {
        match path.as_str() {
            "/v2/machines" => machines(&node, req.method()),
            "/v2/stats/store" | "/v2/stats/self" | "/v2/stats/leader" => {
                stats(&node, req.method(), &path)
            }
            "/version" => version(req.method()),
            "/health" => health(&node, req.method()).await,
            _ => text_error(StatusCode::NOT_FOUND, "404 page not found"),
        }
    }
}

/// Reads the body (limit [`MAX_BODY`]) into the form when it is one.
async fn read_form(req: HttpRequest<Incoming>) -> Result<Form, Resp> {
    // Go's ParseForm reads a body only for these methods.
    let with_body = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
    let is_form = with_body
        && req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
    let query = req.uri().query().unwrap_or("").to_string();
    let body = read_body(req.into_body(), MAX_BODY, BODY_TIMEOUT)
        .await
        .map_err(|e| text_error(e.status(), &e.to_string()))?;
    let mut form = Form::default();
    let invalid =
        |e: crate::form::FormError| etcd_error(&form_error(ErrorCode::InvalidForm, &e.to_string()));
    if is_form {
        let text = std::str::from_utf8(&body)
            .map_err(|_| etcd_error(&form_error(ErrorCode::InvalidForm, "body is not UTF-8")))?;
        form.add(text).map_err(invalid)?;
    }
    form.add(&query).map_err(invalid)?;
    Ok(form)
}

/// A key request, checked as etcd's `parseKeyRequest` checks it.
struct KeyRequest {
    key: String,
    wait: bool,
    wait_index: u64,
    recursive: bool,
    sorted: bool,
    dir: bool,
    quorum: Option<bool>,
    stream: bool,
    no_value_on_success: bool,
    value: String,
    ttl: Option<u64>,
    prev_exist: Option<bool>,
    prev_value: Option<String>,
    prev_index: Option<u64>,
    refresh: bool,
}

fn parse_key_request(method: &Method, key: String, f: &Form) -> Result<KeyRequest, EtcdError> {
    use ErrorCode::*;
    let field = |name: &str| format!("invalid value for \"{name}\"");
    let prev_index = f
        .uint("prevIndex")
        .map_err(|_| form_error(IndexNaN, &field("prevIndex")))?;
    let wait_index = f
        .uint("waitIndex")
        .map_err(|_| form_error(IndexNaN, &field("waitIndex")))?;
    let b = |name: &str| {
        f.bool(name)
            .map_err(|_| form_error(InvalidField, &field(name)))
    };
    let recursive = b("recursive")?;
    let sorted = b("sorted")?;
    let wait = b("wait")?;
    let dir = b("dir")?;
    let quorum = b("quorum")?;
    let stream = b("stream")?;
    if wait && method != Method::GET {
        return Err(form_error(
            InvalidField,
            "\"wait\" can only be used with GET requests",
        ));
    }
    if f.has("prevValue") && f.value("prevValue").is_empty() {
        return Err(form_error(
            PrevValueRequired,
            "\"prevValue\" cannot be empty",
        ));
    }
    let no_value_on_success = b("noValueOnSuccess")?;
    let ttl = if f.value("ttl").is_empty() {
        None
    } else {
        Some(
            f.uint("ttl")
                .map_err(|_| form_error(TtlNaN, &field("ttl")))?,
        )
    };
    let prev_exist = if f.has("prevExist") {
        Some(
            f.bool("prevExist")
                .map_err(|_| form_error(InvalidField, "invalid value for prevExist"))?,
        )
    } else {
        None
    };
    let mut refresh = false;
    if f.has("refresh") {
        refresh = f
            .bool("refresh")
            .map_err(|_| form_error(InvalidField, "invalid value for refresh"))?;
        if refresh {
            if f.has("value") && !f.value("value").is_empty() {
                return Err(form_error(
                    RefreshValue,
                    "A value was provided on a refresh",
                ));
            }
            if ttl.is_none() {
                return Err(form_error(RefreshTtlRequired, "No TTL value set"));
            }
        }
    }
    Ok(KeyRequest {
        key,
        wait,
        wait_index,
        recursive,
        sorted,
        dir,
        quorum: f.has("quorum").then_some(quorum),
        stream,
        no_value_on_success,
        value: f.value("value").to_string(),
        ttl,
        prev_exist,
        prev_value: f.get("prevValue").map(str::to_string),
        prev_index: Some(prev_index).filter(|i| *i != 0),
        refresh,
    })
}

/// The index headers' names, made once (they are on every answer).
const X_ETCD_CLUSTER_ID: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("x-etcd-cluster-id");
const X_ETCD_INDEX: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("x-etcd-index");
const X_RAFT_INDEX: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("x-raft-index");
const X_RAFT_TERM: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("x-raft-term");

fn with_index_headers(node: &Node, r: &mut Resp, etcd_index: u64, raft: Option<(u64, u64)>) {
    let (index, term) = raft.unwrap_or_else(|| (node.shared.applied().raft_index, node.term()));
    let h = r.headers_mut();
    h.reserve(4);
    if let Ok(v) = HeaderValue::from_str(&format!("{:x}", node.cluster_id)) {
        h.insert(X_ETCD_CLUSTER_ID, v);
    }
    h.insert(X_ETCD_INDEX, HeaderValue::from(etcd_index));
    h.insert(X_RAFT_INDEX, HeaderValue::from(index));
    h.insert(X_RAFT_TERM, HeaderValue::from(term));
}

fn event_response(
    node: &Node,
    e: &Event,
    status: u16,
    raft: Option<(u64, u64)>,
    no_value: bool,
) -> Resp {
    use keel_kv::Action::*;
    let body = if no_value && matches!(e.action, Set | CompareAndSwap | Create | Update) {
        serde_json::json!({ "action": e.action.as_str() }).to_string()
    } else {
        event_json(e)
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut r = json_line(status, body);
    with_index_headers(node, &mut r, e.etcd_index, raft);
    r
}

async fn keys(node: &Arc<Node>, req: HttpRequest<Incoming>) -> Resp {
    let method = req.method().clone();
    if !matches!(
        method,
        Method::HEAD | Method::GET | Method::PUT | Method::POST | Method::DELETE
    ) {
        return not_allowed("HEAD,GET,PUT,POST,DELETE");
    }
    let raw = req.uri().path()["/v2/keys".len()..].to_string();
    let cluster = |mut r: Resp| {
        set_header(
            &mut r,
            "X-Etcd-Cluster-ID",
            format!("{:x}", node.cluster_id),
        );
        r
    };
    let form = match read_form(req).await {
        Ok(f) => f,
        Err(r) => return cluster(r),
    };
    let key = match unescape(&raw, false) {
        Ok(k) => k,
        Err(e) => {
            return cluster(etcd_error(&form_error(
                ErrorCode::InvalidForm,
                &e.to_string(),
            )))
        }
    };
    if key.len() > MAX_KEY {
        return cluster(etcd_error(&form_error(
            ErrorCode::InvalidField,
            &format!("key longer than {MAX_KEY} bytes"),
        )));
    }
    let k = match parse_key_request(&method, key, &form) {
        Ok(k) => k,
        Err(e) => return cluster(etcd_error(&e)),
    };
    let now = now_ms();
    let request = match method {
        // etcd serves a quorum read for `wait&quorum=true`.
        Method::GET | Method::HEAD if k.wait && k.quorum != Some(true) => {
            return cluster(watch(node, k).await)
        }
        Method::GET | Method::HEAD => {
            if k.quorum != Some(false) {
                if let Err(e) = node.linearize().await {
                    return cluster(etcd_error(&e));
                }
            }
            let r = node
                .shared
                .read()
                .store
                .get(&k.key, k.recursive, k.sorted, now);
            node.shared.stats.count_get(r.is_ok());
            return match r {
                Ok(e) => event_response(node, &e, 200, None, false),
                Err(e) => cluster(etcd_error(&e)),
            };
        }
        Method::PUT => Request::Set {
            key: k.key,
            opts: SetOptions {
                value: k.value,
                dir: k.dir,
                ttl: k.ttl,
                prev_exist: k.prev_exist,
                prev_value: k.prev_value,
                prev_index: k.prev_index,
                refresh: k.refresh,
            },
            now,
        },
        Method::POST => Request::CreateInOrder {
            dir: k.key,
            value: k.value,
            make_dir: k.dir,
            ttl: k.ttl,
            now,
        },
        _ => Request::Delete {
            key: k.key,
            dir: k.dir,
            recursive: k.recursive,
            prev_value: k.prev_value,
            prev_index: k.prev_index,
            now,
        },
    };
    match node.write(request).await {
        Ok(w) => match w.response {
            crate::types::Response::Event(e) => event_response(
                node,
                &e,
                e.http_status(),
                Some((w.raft_index, w.raft_term)),
                k.no_value_on_success,
            ),
            crate::types::Response::Error(e) => cluster(etcd_error(&e)),
            crate::types::Response::Done | crate::types::Response::Batch(_) => {
                cluster(etcd_error(&form_error(
                    ErrorCode::RaftInternal,
                    "received response with no Event/Watcher!",
                )))
            }
        },
        Err(e) => cluster(etcd_error(&e)),
    }
}

/// Whether `key` is hidden from a watch on `watched`: some segment below
/// the watched key starts with `_` (etcd's `isHidden`).
fn hidden(watched: &str, key: &str) -> bool {
    let rest = key.strip_prefix(watched).unwrap_or(key);
    rest.split('/').any(|s| s.starts_with('_'))
}

/// Decrements the watcher count when a watch ends, however it ends.
struct WatcherSlot(Arc<Node>);
impl Drop for WatcherSlot {
    fn drop(&mut self) {
        self.0.shared.stats.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn watch(node: &Arc<Node>, k: KeyRequest) -> Resp {
    let stats = &node.shared.stats;
    if stats.watchers.fetch_add(1, Ordering::Relaxed) >= MAX_WATCHERS {
        stats.watchers.fetch_sub(1, Ordering::Relaxed);
        return http_error(503, &format!("too many watchers (limit {MAX_WATCHERS})"));
    }
    let slot = WatcherSlot(node.clone());
    let key = keel_kv::normalize_key(&k.key);
    let mut rx = node.shared.subscribe();
    let (first, start) = {
        let s = node.shared.read();
        (
            s.store.watch(&key, k.recursive, k.wait_index),
            s.store.index(),
        )
    };
    let first = match first {
        Ok(f) => f,
        Err(e) => return etcd_error(&e),
    };
    let mut head = Response::new(Body::Full(None));
    head.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    with_index_headers(node, &mut head, start, None);
    let line = |e: &Event| Bytes::from(format!("{}\n", event_json(e)));
    if let (Some(e), false) = (&first, k.stream) {
        *head.body_mut() = Body::Full(Some(line(e)));
        return head;
    }
    let (tx, body) = mpsc::channel::<Bytes>(16);
    *head.body_mut() = Body::Stream(body);
    let node = node.clone();
    tokio::spawn(async move {
        let _slot = slot;
        // Events at or before `start` come from history, unfiltered; later
        // ones are live, and hidden keys are skipped as etcd does.
        let mut from = if k.wait_index == 0 {
            start + 1
        } else {
            k.wait_index
        };
        if let Some(e) = first {
            // etcd answers a watcher found in history with that event and
            // never registers it: a stream gets nothing more.
            if tx.send(line(&e)).await.is_ok() {
                tx.closed().await;
            }
            return;
        }
        loop {
            let found = {
                let s = node.shared.read();
                let r = s.store.watch(&key, k.recursive, from);
                let current = s.store.index();
                (r, current)
            };
            match found {
                (Ok(Some(e)), _) => {
                    from = e.index() + 1;
                    if e.index() > start && hidden(&key, &e.node.key) {
                        continue;
                    }
                    if tx.send(line(&e)).await.is_err() || !k.stream {
                        return;
                    }
                    // etcd notifies a removed node's own watchers twice (once
                    // from the removal, once from the event's path walk); a
                    // stream on that key sees the event twice.
                    let removal = matches!(
                        e.action,
                        keel_kv::Action::Delete
                            | keel_kv::Action::CompareAndDelete
                            | keel_kv::Action::Expire
                    );
                    if removal && e.node.key == key && tx.send(line(&e)).await.is_err() {
                        return;
                    }
                }
                (Ok(None), current) => {
                    from = from.max(current + 1);
                    tokio::select! {
                        r = rx.changed() => if r.is_err() { return },
                        _ = tx.closed() => return,
                    }
                }
                // The window moved past us while we were slow: end the
                // stream, as etcd closes a watcher that falls behind.
                (Err(_), _) => return,
            }
        }
    });
    head
}

async fn members(node: &Arc<Node>, caller: Caller, req: HttpRequest<Incoming>) -> Resp {
    let method = req.method().clone();
    if !matches!(
        method,
        Method::GET | Method::POST | Method::DELETE | Method::PUT
    ) {
        return not_allowed("GET,POST,DELETE,PUT");
    }
    if method != Method::GET && !may_change_members(&caller) {
        let mut r = http_error(
            403,
            "membership changes need a client certificate (https with client-cert-auth) or a caller on loopback",
        );
        set_header(
            &mut r,
            "X-Etcd-Cluster-ID",
            format!("{:x}", node.cluster_id),
        );
        return r;
    }
    let rest = req.uri().path()["/v2/members".len()..]
        .trim_start_matches('/')
        .to_string();
    let cluster = |mut r: Resp| {
        set_header(
            &mut r,
            "X-Etcd-Cluster-ID",
            format!("{:x}", node.cluster_id),
        );
        r
    };
    match method {
        Method::GET => cluster(match rest.as_str() {
            "" => json_line(
                StatusCode::OK,
                serde_json::json!({ "members": node.members() }).to_string(),
            ),
            "leader" => match node.leader() {
                None => http_error(503, "During election"),
                Some(l) => match node
                    .members()
                    .into_iter()
                    .find(|m| m.id == format!("{l:x}"))
                {
                    Some(m) => json_line(
                        StatusCode::OK,
                        serde_json::to_string(&m).unwrap_or_default(),
                    ),
                    None => http_error(503, "During election"),
                },
            },
            _ => http_error(404, "Not found"),
        }),
        Method::POST => match read_peer_urls(req).await {
            Ok(peer_urls) => match node.change_members(MemberChange::Add { peer_urls }).await {
                Ok(m) => cluster(json_line(
                    StatusCode::CREATED,
                    serde_json::to_string(&m).unwrap_or_default(),
                )),
                Err(e) => cluster(http_error(e.status, &e.message)),
            },
            Err(r) => cluster(r),
        },
        _ => {
            if rest.is_empty() {
                return cluster(text_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Method Not Allowed",
                ));
            }
            let Ok(id) = u64::from_str_radix(&rest, 16) else {
                return cluster(http_error(404, &format!("No such member: {rest}")));
            };
            let change = if method == Method::DELETE {
                MemberChange::Remove { id }
            } else {
                match read_peer_urls(req).await {
                    Ok(peer_urls) => MemberChange::Update { id, peer_urls },
                    Err(r) => return cluster(r),
                }
            };
            match node.change_members(change).await {
                Ok(_) => {
                    let mut r = Response::new(Body::Full(None));
                    *r.status_mut() = StatusCode::NO_CONTENT;
                    cluster(r)
                }
                Err(e) => cluster(http_error(e.status, &e.message)),
            }
        }
    }
}

/// A member request's JSON body: `{"peerURLs": [...]}`.
async fn read_peer_urls(req: HttpRequest<Incoming>) -> Result<Vec<String>, Resp> {
    let ctype = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if ctype != "application/json" {
        return Err(http_error(
            415,
            &format!("Bad Content-Type {ctype}, accept application/json"),
        ));
    }
    let body = read_body(req.into_body(), 64 * 1024, BODY_TIMEOUT)
        .await
        .map_err(|e| http_error(e.status().as_u16(), &e.to_string()))?;
    #[derive(serde::Deserialize)]
    struct Urls {
        #[serde(rename = "peerURLs")]
        peer_urls: Vec<String>,
    }
    serde_json::from_slice::<Urls>(&body)
        .map(|u| u.peer_urls)
        .map_err(|e| http_error(400, &format!("peerURLs: {e}")))
}

fn machines(node: &Node, method: &Method) -> Resp {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return not_allowed("GET,HEAD");
    }
    respond(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        node.client_urls().join(", "),
    )
}

fn stats(node: &Node, method: &Method, path: &str) -> Resp {
    if *method != Method::GET {
        return not_allowed("GET");
    }
    let body = match path {
        "/v2/stats/store" => {
            let w = node.shared.read().stats.clone();
            crate::stats::store_json(&w, &node.shared.stats)
        }
        "/v2/stats/self" => crate::stats::self_json(node),
        _ => match crate::stats::leader_json(node) {
            Some(v) => v,
            None => return http_error(403, "not current leader"),
        },
    };
    respond(StatusCode::OK, "application/json", body.to_string())
}

fn version(method: &Method) -> Resp {
    if *method != Method::GET {
        return not_allowed("GET");
    }
    respond(
        StatusCode::OK,
        "application/json",
        serde_json::json!({ "etcdserver": ETCD_VERSION, "etcdcluster": "3.4.0" }).to_string(),
    )
}

/// Healthy when there is a leader and a linearizable read succeeds.
async fn health(node: &Node, method: &Method) -> Resp {
    if *method != Method::GET {
        return not_allowed("GET");
    }
    let check = async {
        if node.leader().is_none() {
            return Err("no leader".to_string());
        }
        node.linearize().await.map_err(|e| e.cause)
    };
    let (status, body) = match tokio::time::timeout(std::time::Duration::from_secs(2), check).await
    {
        Ok(Ok(())) => (StatusCode::OK, serde_json::json!({"health": "true"})),
        Ok(Err(why)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"health": "false", "reason": why}),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"health": "false", "reason": "timed out"}),
        ),
    };
    respond(status, "text/plain; charset=utf-8", body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_changes_need_a_certificate_or_loopback_over_http() {
        let caller = |addr: &str, tls: bool, cert: bool| Caller {
            addr: addr.parse().unwrap(),
            tls,
            cert,
        };
        // Allowed: loopback over plain http, v4 and v6; any certificate.
        assert!(may_change_members(&caller("127.0.0.1:5000", false, false)));
        assert!(may_change_members(&caller("[::1]:5000", false, false)));
        assert!(may_change_members(&caller("10.0.2.2:5000", true, true)));
        // Refused: another address over plain http, TLS without a certificate.
        assert!(!may_change_members(&caller("10.0.2.2:5000", false, false)));
        assert!(!may_change_members(&caller("127.0.0.1:5000", true, false)));
    }
}
