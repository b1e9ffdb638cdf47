//! Members talk to each other over HTTP/1.1 on the peer port, JSON bodies:
//! openraft's three RPCs, plus the two a follower needs from the leader to
//! serve clients (forwarded writes, read indexes).
//!
//! 1. A [`PeerClient`] keeps one connection per peer and reconnects after an
//!    error; a connection that cannot be made is reported to openraft as
//!    `Unreachable` (it backs off), anything later as a network error.
//! 2. The receiving side ([`handle_peer`]) decodes the request, calls the
//!    local `Raft` and answers `Result<reply, RaftError>` as JSON, so a remote
//!    Raft error reaches the caller as a `RemoteError`.
//! 3. AppendEntries, the one call that carries entries, goes in postcard
//!    ([`POSTCARD`] content type, the log's format byte first): it is most
//!    of the peer traffic, and JSON cost the followers more CPU than the
//!    rest of an append. A member of an earlier version answers such a body
//!    with 400; the caller then sends that peer JSON from then on (a rolling
//!    update has old and new members side by side).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use crate::config::Listen;
use crate::stats::PeerCounters;
use crate::types::{Member, NodeId, Request, Response, TypeConfig};
use std::sync::atomic::Ordering;

/// The most entry bytes (postcard-encoded) one AppendEntries carries: the
/// sender sends the entries up to this bound (always at least one) and
/// reports the rest to openraft as not sent yet (`PartialSuccess`), which
/// sends them in the next call.
pub const APPEND_BYTES: usize = 8 << 20;

/// The largest peer request body a member accepts (413 past it). What a
/// member of this version sends is within it:
///
/// - AppendEntries: [`APPEND_BYTES`] plus one entry. An entry is a batch of
///   at most [`crate::batch::MAX_BATCH_BYTES`] (4 MiB) of keys and values
///   plus the one request that crossed it (a request body is at most
///   [`crate::api::MAX_BODY`], 1.5 MiB, and a request head 64 KiB), and a
///   few bytes of numbers per request (at most 512): under 6 MiB. So under
///   14 MiB in all.
/// - InstallSnapshot: a chunk of 3 MiB (`snapshot_max_chunk_size`) in JSON,
///   where a byte takes at most 4 characters (`255,`): 12 MiB and the
///   chunk's metadata.
/// - A forwarded write (`/raft/propose`): one request in JSON, at most
///   1.6 MiB of strings that JSON escapes to at most 6 bytes each: under
///   10 MiB.
/// - Vote, read index, membership change: a few hundred bytes.
///
/// A member of an earlier version sends an append with up to 256 entries
/// whatever their size; one over this limit is refused until that member
/// is updated too.
pub const PEER_BODY_MAX: usize = 16 << 20;
/// How long a peer request's body may take to arrive (16 MiB at 0.3 MiB/s).
pub const PEER_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest answer a member reads from a peer: a forwarded write's
/// answer holds its event, whose node and previous node each carry a value
/// of up to 1.6 MiB, in JSON (at most 6 bytes a character): under 20 MiB.
pub const PEER_ANSWER_MAX: usize = 24 << 20;

/// The content type of a postcard body (step 3).
pub const POSTCARD: &str = "application/x-keel-postcard";

/// Why a call to a peer failed (before any answer from its Raft).
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("peer {target:x}: no usable peer URL")]
    NoUrl { target: NodeId },
    #[error("peer {target:x} at {addr}: connect: {source}")]
    Connect {
        target: NodeId,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("peer {target:x}: {path}: {status}: {body}")]
    Status {
        target: NodeId,
        path: &'static str,
        status: StatusCode,
        body: String,
    },
    #[error("peer {target:x}: {path}: {why}")]
    Call {
        target: NodeId,
        path: &'static str,
        why: String,
    },
    #[error("peer {target:x}: {path}: timed out after {after:?}")]
    Timeout {
        target: NodeId,
        path: &'static str,
        after: Duration,
    },
}

/// A forwarded write's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Written {
    pub raft_index: u64,
    pub raft_term: u64,
    pub response: Response,
}

/// One peer's connection.
pub struct PeerClient {
    target: NodeId,
    addrs: Vec<Listen>,
    conn: Option<SendRequest<Full<Bytes>>>,
    counters: Option<Arc<PeerCounters>>,
    /// For `https://` peer URLs: the CA and this member's certificate.
    tls: Option<Arc<keel_tls::rustls::ClientConfig>>,
    /// Appends go in postcard until the peer turns one down (step 3).
    postcard: bool,
}

impl PeerClient {
    pub fn new(
        target: NodeId,
        member: &Member,
        tls: Option<Arc<keel_tls::rustls::ClientConfig>>,
    ) -> PeerClient {
        PeerClient {
            counters: None,
            target,
            addrs: member
                .peer_urls
                .iter()
                .filter_map(|u| keel_types::etcd::Url::try_from(u.as_str()).ok())
                .map(|u| Listen::from(&u))
                .collect(),
            conn: None,
            tls,
            postcard: true,
        }
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, PeerError> {
        if self.conn.as_ref().is_some_and(|c| c.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let mut last = PeerError::NoUrl {
                target: self.target,
            };
            for &Listen { addr, tls } in &self.addrs {
                let tls = match (tls, &self.tls) {
                    (false, _) => None,
                    (true, Some(config)) => Some((
                        config.clone(),
                        keel_tls::server_name(&addr.ip().to_string())
                            .map_err(std::io::Error::other),
                    )),
                    (true, None) => {
                        last = PeerError::Connect {
                            target: self.target,
                            addr,
                            source: std::io::Error::other(
                                "an https peer URL, and this member has no peer TLS settings",
                            ),
                        };
                        continue;
                    }
                };
                let conn = async {
                    let s = TcpStream::connect(addr).await?;
                    s.set_nodelay(true)?;
                    let tls = match tls {
                        None => None,
                        Some((config, name)) => Some((config, name?)),
                    };
                    let s = keel_tls::ClientConn::connect(tls, s).await?;
                    hyper::client::conn::http1::handshake(TokioIo::new(s))
                        .await
                        .map_err(std::io::Error::other)
                };
                match tokio::time::timeout(Duration::from_secs(1), conn).await {
                    Ok(Ok((sender, driver))) => {
                        tokio::spawn(driver);
                        self.conn = Some(sender);
                        break;
                    }
                    Ok(Err(source)) => {
                        last = PeerError::Connect {
                            target: self.target,
                            addr,
                            source,
                        }
                    }
                    Err(_) => {
                        last = PeerError::Connect {
                            target: self.target,
                            addr,
                            source: std::io::ErrorKind::TimedOut.into(),
                        }
                    }
                }
            }
            if self.conn.is_none() {
                return Err(last);
            }
        }
        self.conn.as_mut().ok_or(PeerError::NoUrl {
            target: self.target,
        })
    }

    /// POSTs `body` as JSON to `path` and decodes the JSON answer.
    pub async fn call<Q: Serialize, A: DeserializeOwned>(
        &mut self,
        path: &'static str,
        body: &Q,
        timeout: Duration,
    ) -> Result<A, PeerError> {
        self.call_as(path, body, false, timeout).await
    }

    /// [`call`](Self::call), with the body in postcard when `postcard`.
    async fn call_as<Q: Serialize, A: DeserializeOwned>(
        &mut self,
        path: &'static str,
        body: &Q,
        postcard: bool,
        timeout: Duration,
    ) -> Result<A, PeerError> {
        let target = self.target;
        let fail = |why: String| PeerError::Call { target, path, why };
        let (bytes, content_type) = if postcard {
            let mut b = Vec::new();
            crate::log::to_postcard(body, &mut b).map_err(|e| fail(e.to_string()))?;
            (b, POSTCARD)
        } else {
            let b = serde_json::to_vec(body).map_err(|e| fail(e.to_string()))?;
            (b, "application/json")
        };
        let sender = self.connect().await?;
        let req = hyper::Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("host", "peer")
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| fail(e.to_string()))?;
        let exchange = async {
            sender.ready().await.map_err(|e| fail(e.to_string()))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), PEER_ANSWER_MAX)
                .collect()
                .await
                .map_err(|e| fail(e.to_string()))?
                .to_bytes();
            if status != StatusCode::OK {
                return Err(PeerError::Status {
                    target,
                    path,
                    status,
                    body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
                });
            }
            serde_json::from_slice(&body).map_err(|e| fail(format!("bad answer: {e}")))
        };
        let r = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(PeerError::Timeout {
                target,
                path,
                after: timeout,
            }),
        };
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    async fn raft_call<Q, A, E>(
        &mut self,
        path: &'static str,
        body: &Q,
        option: &RPCOption,
    ) -> Result<A, RPCError<NodeId, Member, RaftError<NodeId, E>>>
    where
        Q: Serialize,
        A: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let postcard = self.postcard && path == "/raft/append";
        let mut r = self.call_as(path, body, postcard, option.hard_ttl()).await;
        if postcard {
            if let Err(PeerError::Status {
                status: StatusCode::BAD_REQUEST,
                ..
            }) = &r
            {
                eprintln!(
                    "keel-etcd: peer {:x} turned down a postcard append: sending it JSON",
                    self.target
                );
                self.postcard = false;
                r = self.call_as(path, body, false, option.hard_ttl()).await;
            }
        }
        let r: Result<A, RaftError<NodeId, E>> = r.map_err(|e| match e {
            PeerError::Connect { .. } | PeerError::NoUrl { .. } => {
                RPCError::Unreachable(Unreachable::new(&e))
            }
            e => RPCError::Network(NetworkError::new(&e)),
        })?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        let t0 = std::time::Instant::now();
        let (rpc, sent_up_to) = split_append(rpc);
        let r = self.raft_call("/raft/append", &rpc, &option).await;
        if let Some(c) = &self.counters {
            c.record_append(self.target, t0.elapsed().as_secs_f64() * 1e3, r.is_ok());
        }
        match (r, sent_up_to) {
            // The prefix went through: openraft sends the rest next.
            (Ok(AppendEntriesResponse::Success), Some(last)) => {
                Ok(AppendEntriesResponse::PartialSuccess(Some(last)))
            }
            (r, _) => r,
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.raft_call("/raft/snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.raft_call("/raft/vote", &rpc, &option).await
    }
}

/// Keeps an append within [`APPEND_BYTES`] (and so within the receiver's
/// [`PEER_BODY_MAX`]): the entries up to the bound, at least one, and the
/// id of the last one sent when some were left for the next call.
fn split_append(
    mut rpc: AppendEntriesRequest<TypeConfig>,
) -> (
    AppendEntriesRequest<TypeConfig>,
    Option<crate::types::LogId>,
) {
    if rpc.entries.len() < 2 {
        return (rpc, None);
    }
    let mut total = 0usize;
    let mut keep = rpc.entries.len();
    for (i, e) in rpc.entries.iter().enumerate() {
        total =
            total.saturating_add(postcard::experimental::serialized_size(e).unwrap_or(usize::MAX));
        if i > 0 && total > APPEND_BYTES {
            keep = i;
            break;
        }
    }
    if keep == rpc.entries.len() {
        return (rpc, None);
    }
    rpc.entries.truncate(keep);
    let last = rpc.entries.last().map(|e| e.log_id);
    (rpc, last)
}

/// Makes a [`PeerClient`] per replication target.
pub struct Network {
    pub counters: Arc<PeerCounters>,
    pub tls: Option<Arc<keel_tls::rustls::ClientConfig>>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        let mut c = PeerClient::new(target, node, self.tls.clone());
        c.counters = Some(self.counters.clone());
        c
    }
}

/// What the peer side needs from the member.
pub trait PeerHandler: Send + Sync + 'static {
    fn raft(&self) -> &crate::types::Raft;
    fn counters(&self) -> &PeerCounters;
    /// A follower's forwarded write.
    fn propose(&self, req: Request) -> impl Future<Output = Result<Written, String>> + Send;
    /// A follower's read: the index a linearizable read must wait for.
    fn read_index(&self) -> impl Future<Output = Result<u64, String>> + Send;
    /// A follower's forwarded membership change.
    fn members(
        &self,
        change: crate::node::MemberChange,
    ) -> impl Future<Output = Result<crate::node::MemberView, crate::node::MemberError>> + Send;
}

fn json_reply<T: Serialize>(v: &T) -> hyper::Response<Full<Bytes>> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    hyper::Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

fn error_reply(status: StatusCode, why: String) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(Bytes::from(why)));
    *r.status_mut() = status;
    r
}

/// A request body: JSON, or postcard after its format byte (step 3).
fn decode_body<T: DeserializeOwned>(body: &[u8], postcard: bool) -> Result<T, String> {
    if !postcard {
        return serde_json::from_slice(body).map_err(|e| e.to_string());
    }
    match body.split_first() {
        Some((&crate::log::RECORD_POSTCARD_V1, rest)) => crate::log::from_postcard(rest, "body"),
        Some((b, _)) => Err(format!("unknown postcard format {b}")),
        None => Err("empty body".into()),
    }
}

/// Step 2: one peer request.
pub async fn handle_peer<H: PeerHandler>(
    h: Arc<H>,
    req: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    if req.method() != Method::POST {
        return error_reply(StatusCode::METHOD_NOT_ALLOWED, "POST only".into());
    }
    let path = req.uri().path().to_string();
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = match crate::api::read_body(req.into_body(), PEER_BODY_MAX, PEER_BODY_TIMEOUT).await
    {
        Ok(b) => b,
        Err(e) => {
            // A member that turns a peer away says so: the sender's side
            // only sees a failed replication.
            eprintln!("keel-etcd: refused a peer's {path}: {}: {e}", e.status());
            return error_reply(e.status(), e.to_string());
        }
    };
    let postcard = content_type == POSTCARD;
    macro_rules! decode {
        () => {
            match decode_body(&body, postcard) {
                Ok(v) => v,
                Err(e) => return error_reply(StatusCode::BAD_REQUEST, format!("{path}: {e}")),
            }
        };
    }
    match path.as_str() {
        "/raft/append" => {
            h.counters()
                .received_appends
                .fetch_add(1, Ordering::Relaxed);
            json_reply(&h.raft().append_entries(decode!()).await)
        }
        "/raft/vote" => json_reply(&h.raft().vote(decode!()).await),
        "/raft/snapshot" => json_reply(&h.raft().install_snapshot(decode!()).await),
        "/raft/propose" => json_reply(&h.propose(decode!()).await),
        "/raft/readindex" => json_reply(&h.read_index().await),
        "/raft/members" => json_reply(&h.members(decode!()).await),
        _ => error_reply(StatusCode::NOT_FOUND, format!("{path}: no such peer call")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    /// A member of a version before postcard appends: JSON bodies only, and
    /// 400 for anything it cannot decode, as its `handle_peer` answered.
    /// Returns its address and the content types it was sent.
    async fn json_only_peer() -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let ct = req
                                .headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            seen.lock().unwrap().push(ct);
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let r = match serde_json::from_slice::<AppendEntriesRequest<TypeConfig>>(
                                &body,
                            ) {
                                Ok(rpc) => {
                                    assert_eq!(rpc.entries.len(), 2);
                                    let ok: Result<
                                        AppendEntriesResponse<NodeId>,
                                        RaftError<NodeId>,
                                    > = Ok(AppendEntriesResponse::Success);
                                    json_reply(&ok)
                                }
                                Err(e) => error_reply(StatusCode::BAD_REQUEST, e.to_string()),
                            };
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        (addr, seen)
    }

    fn append() -> AppendEntriesRequest<TypeConfig> {
        let id = |i| LogId::new(CommittedLeaderId::new(1, 1), i);
        AppendEntriesRequest {
            vote: openraft::Vote::new_committed(1, 1),
            prev_log_id: Some(id(1)),
            entries: vec![
                crate::types::Entry {
                    log_id: id(2),
                    payload: EntryPayload::Blank,
                },
                crate::types::Entry {
                    log_id: id(3),
                    payload: EntryPayload::Normal(Request::Expire { now: 5 }),
                },
            ],
            leader_commit: Some(id(1)),
        }
    }

    /// Step 3: a peer that turns down a postcard append gets the same
    /// append in JSON, and JSON from then on.
    #[tokio::test]
    async fn an_older_peer_gets_json_appends() {
        let (addr, seen) = json_only_peer().await;
        let member = Member {
            peer_urls: vec![format!("http://{addr}")],
        };
        let mut c = PeerClient::new(2, &member, None);
        let option = RPCOption::new(Duration::from_secs(5));
        for _ in 0..2 {
            let r = c.append_entries(append(), option.clone()).await;
            assert!(matches!(r, Ok(AppendEntriesResponse::Success)), "{r:?}");
        }
        assert_eq!(
            *seen.lock().unwrap(),
            [POSTCARD, "application/json", "application/json"]
        );
    }

    /// What the caller encodes, the receiving side decodes, either way.
    #[test]
    fn bodies_decode_in_both_encodings() {
        let rpc = append();
        let mut pc = Vec::new();
        crate::log::to_postcard(&rpc, &mut pc).unwrap();
        let json = serde_json::to_vec(&rpc).unwrap();
        assert!(pc.len() * 2 < json.len(), "{} vs {}", pc.len(), json.len());
        for (body, postcard) in [(&pc, true), (&json, false)] {
            let back: AppendEntriesRequest<TypeConfig> = decode_body(body, postcard).unwrap();
            assert_eq!(back.entries, rpc.entries);
            assert_eq!(back.prev_log_id, rpc.prev_log_id);
        }
        let mut long = pc.clone();
        long.push(0);
        let e = decode_body::<AppendEntriesRequest<TypeConfig>>(&long, true).unwrap_err();
        assert_eq!(e, "1 bytes after the body");
        let e = decode_body::<AppendEntriesRequest<TypeConfig>>(&json, true).unwrap_err();
        assert_eq!(e, "unknown postcard format 123");
    }

    /// An append past [`APPEND_BYTES`] goes as a prefix (at least one
    /// entry) within [`PEER_BODY_MAX`]; the caller learns where it ended.
    #[test]
    fn appends_are_cut_to_what_a_peer_accepts() {
        let id = |i| LogId::new(CommittedLeaderId::new(1, 1), i);
        // An entry as large as a batch gets: 4 MiB of values and one more
        // request of 1.5 MiB.
        let big = |i: u64| crate::types::Entry {
            log_id: id(i),
            payload: EntryPayload::Normal(Request::Batch(vec![
                Request::Set {
                    key: "/a".into(),
                    opts: keel_kv::SetOptions {
                        value: "v".repeat(4 << 20),
                        ..Default::default()
                    },
                    now: 1,
                },
                Request::Set {
                    key: "/b".into(),
                    opts: keel_kv::SetOptions {
                        value: "w".repeat(1 << 20),
                        prev_value: Some("p".repeat(512 << 10)),
                        ..Default::default()
                    },
                    now: 1,
                },
            ])),
        };
        let mut rpc = append();
        rpc.entries = (2..10).map(big).collect();
        let (cut, last) = split_append(rpc);
        assert_eq!(cut.entries.len(), 1, "two such entries are past 8 MiB");
        assert_eq!(last, Some(id(2)));
        let mut body = Vec::new();
        crate::log::to_postcard(&cut, &mut body).unwrap();
        assert!(body.len() <= PEER_BODY_MAX, "{} bytes", body.len());

        // Small entries go whole.
        let (whole, last) = split_append(append());
        assert_eq!((whole.entries.len(), last), (2, None));
        // A lone entry goes even past the bound.
        let mut rpc = append();
        rpc.entries = vec![big(2)];
        let (one, last) = split_append(rpc);
        assert_eq!((one.entries.len(), last), (1, None));
    }
}
