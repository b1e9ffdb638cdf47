//! A running member: Raft, the state machine, and what the client API asks
//! of them (writes, linearizable reads, membership changes), with
//! forwarding to the leader when this member is a follower.
//!
//! 1. A write is proposed to the local Raft. A follower's Raft refuses with
//!    the leader's id; the write then goes to the leader over the peer port
//!    (`/raft/propose`), which proposes it and answers with the result.
//! 2. A linearizable read first obtains a read index: on the leader,
//!    openraft confirms its leadership with a quorum (a heartbeat round,
//!    ReadIndex) and waits until that index is applied; a follower asks the
//!    leader for the index (`/raft/readindex`) and waits until its own state
//!    machine has applied it. Then the read is served from local state.
//! 3. With no leader (an election), both retry until their deadline and
//!    then fail with etcd's error 300.
//! 4. The space alarm: while the data directory's file system has less
//!    than `min-free` bytes free (checked every half second), this member
//!    refuses writes that add data, its own and (as leader) those forwarded
//!    to it, with error 300 naming the member and the free space; reads,
//!    watches and deletes go on. It also raises a NOSPACE alarm of kind
//!    disk through Raft, so the whole cluster stops adding data (and the
//!    leader stops feeding the short member more of it). Both clear once
//!    twice that much is free again.
//! 5. The quota: a write that would take the store past
//!    `quota-backend-bytes` raises a NOSPACE alarm of kind quota through
//!    Raft and fails with etcd's `database space exceeded`. While any alarm
//!    is raised, every member refuses writes that add data, the same way,
//!    since the alarm is an entry of the log (at proposal and again when
//!    applying). A quota alarm stays until it is disarmed
//!    ([`Node::disarm`], `keelctl kv alarm disarm`), as in etcd; a write
//!    still over the quota raises it again.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keel_kv::{ErrorCode, EtcdError};
use openraft::{ChangeMembers, ServerState};
use serde::{Deserialize, Serialize};

use crate::config::ServerConfig;
use crate::net::{PeerClient, PeerHandler, Written};
use crate::sm::Shared;
use crate::types::{
    member_id, no_space_cause, Alarm, AlarmKind, Attributes, Member, NodeId, Raft, Request,
    NO_SPACE,
};

/// How long a client request waits for the cluster before error 300 (etcd's
/// default request timeout is 5 s plus twice the election timeout).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);
/// The peer calls a follower makes on a client's behalf.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// A member as `/v2/members` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: String,
    pub name: String,
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    #[serde(rename = "clientURLs")]
    pub client_urls: Vec<String>,
}

/// A membership change, as a follower forwards it to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MemberChange {
    Add {
        peer_urls: Vec<String>,
    },
    Remove {
        id: NodeId,
    },
    /// A member's new peer URLs (it keeps its id).
    Update {
        id: NodeId,
        peer_urls: Vec<String>,
    },
}

/// Why a call to another member (a forwarded write or read index) failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerCallError {
    #[error("leader {target:x} is not a known member")]
    NotAMember { target: NodeId },
    #[error(transparent)]
    Peer(#[from] crate::net::PeerError),
}

/// Why a membership change was refused: the HTTP status and message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberError {
    pub status: u16,
    pub message: String,
}

fn check_urls(urls: &[String]) -> Result<(), String> {
    if urls.is_empty() {
        return Err("peerURLs: no URL given".into());
    }
    for u in urls {
        keel_types::etcd::Url::try_from(u.as_str()).map_err(|e| format!("peerURLs: {e}"))?;
    }
    Ok(())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Idle connections by member and its peer URLs.
type Pool = HashMap<(NodeId, Vec<String>), Vec<PeerClient>>;

/// One member of the cluster.
pub struct Node {
    pub id: NodeId,
    pub cluster_id: u64,
    pub config: ServerConfig,
    pub raft: Raft,
    pub shared: Arc<Shared>,
    pub started: SystemTime,
    pub counters: Arc<crate::stats::PeerCounters>,
    /// The leader last seen and since when.
    leader_since: std::sync::Mutex<(Option<NodeId>, SystemTime)>,
    batcher: crate::batch::Batcher,
    /// The next client write's sequence number (starts at the start time
    /// in ns, so a restarted member does not reuse one).
    seq: std::sync::atomic::AtomicU64,
    /// The seqs of this member's client writes still waiting for their
    /// answer; the lowest tells the state machine which answers it may
    /// forget.
    in_flight: std::sync::Mutex<std::collections::BTreeSet<u64>>,
    /// Step 4: free bytes when the alarm is raised, 0 when it is not.
    space_alarm: std::sync::atomic::AtomicU64,
    /// Idle connections to other members, for forwarded requests.
    pool: tokio::sync::Mutex<Pool>,
    /// How to reach `https://` peers (see [`crate::net::PeerClient`]).
    pub peer_tls: Option<Arc<keel_tls::rustls::ClientConfig>>,
    /// Where the client port listens.
    pub client_addrs: Vec<std::net::SocketAddr>,
    /// Where the peer port listens, once it is open (only in a cluster of
    /// more than one).
    pub peer_addrs: std::sync::OnceLock<Vec<std::net::SocketAddr>>,
}

impl Node {
    pub fn new(
        id: NodeId,
        cluster_id: u64,
        config: ServerConfig,
        raft: Raft,
        shared: Arc<Shared>,
        counters: Arc<crate::stats::PeerCounters>,
        flushes: tokio::sync::watch::Receiver<u64>,
    ) -> Node {
        Node {
            id,
            cluster_id,
            config,
            raft: raft.clone(),
            shared,
            started: SystemTime::now(),
            counters,
            batcher: crate::batch::Batcher::start(raft.clone(), flushes),
            space_alarm: std::sync::atomic::AtomicU64::new(0),
            seq: std::sync::atomic::AtomicU64::new(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64),
            ),
            in_flight: Default::default(),
            leader_since: std::sync::Mutex::new((None, SystemTime::now())),
            pool: Default::default(),
            peer_tls: None,
            client_addrs: Vec::new(),
            peer_addrs: std::sync::OnceLock::new(),
        }
    }

    /// What this member exposes without authentication, one line each
    /// (see [`ServerConfig::exposure_warnings`]).
    pub fn warnings(&self) -> Vec<String> {
        self.config
            .exposure_warnings(self.peer_addrs.get().is_some())
    }

    /// The leader last seen and since when it has been.
    pub fn leader_since(&self) -> (Option<NodeId>, SystemTime) {
        *self.leader_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows leader changes for [`Node::leader_since`].
    pub async fn track_leader(&self) {
        let mut rx = self.raft.metrics();
        loop {
            let leader = rx.borrow_and_update().current_leader;
            {
                let mut l = self.leader_since.lock().unwrap_or_else(|p| p.into_inner());
                if l.0 != leader {
                    *l = (leader, SystemTime::now());
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// The leader as this member knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    fn internal(&self, cause: impl Into<String>) -> EtcdError {
        EtcdError::new(
            ErrorCode::RaftInternal,
            cause,
            self.shared.applied().etcd_index,
        )
    }

    fn member_of(&self, id: NodeId) -> Option<Member> {
        let s = self.shared.read();
        s.membership.membership().get_node(&id).cloned()
    }

    /// Calls `path` on member `target`, reusing an idle connection.
    async fn peer_call<Q: Serialize, A: serde::de::DeserializeOwned>(
        &self,
        target: NodeId,
        path: &'static str,
        body: &Q,
    ) -> Result<A, PeerCallError> {
        let m = self
            .member_of(target)
            .ok_or(PeerCallError::NotAMember { target })?;
        // Pooled by the peer URLs too: a member whose URLs changed is
        // called at its new ones.
        let key = (target, m.peer_urls.clone());
        let taken = self.pool.lock().await.get_mut(&key).and_then(Vec::pop);
        let mut client = match taken {
            Some(c) => c,
            None => PeerClient::new(target, &m, self.peer_tls.clone()),
        };
        let r = client.call(path, body, FORWARD_TIMEOUT).await;
        if r.is_ok() {
            let mut pool = self.pool.lock().await;
            pool.retain(|(id, urls), _| *id != target || *urls == key.1);
            pool.entry(key).or_default().push(client);
        }
        Ok(r?)
    }

    /// Waits (up to the deadline) for some member to be leader.
    async fn await_leader(&self, deadline: tokio::time::Instant) -> Option<NodeId> {
        let mut rx = self.raft.metrics();
        loop {
            if let Some(l) = rx.borrow_and_update().current_leader {
                return Some(l);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    /// Proposes on this member's Raft; only the leader accepts.
    pub async fn propose_local(
        &self,
        req: Request,
    ) -> Result<Written, Result<Option<NodeId>, String>> {
        self.batcher.propose(req).await
    }

    /// Step 4: the alarm's message, when it is raised.
    pub fn space_alarm(&self) -> Option<String> {
        let free = self.space_alarm.load(std::sync::atomic::Ordering::Relaxed);
        (free != 0).then(|| {
            format!(
                "etcdserver: no space: member {} has {} KiB free on {}; writes are refused, reads go on",
                self.config.name,
                free / 1024,
                self.config.data_dir.display(),
            )
        })
    }

    /// Step 4, forever.
    pub async fn watch_space(&self) {
        use std::sync::atomic::Ordering;
        let mut proposed: Option<tokio::time::Instant> = None;
        loop {
            let mut line = 0;
            if let Ok(s) = nix::sys::statvfs::statvfs(&self.config.data_dir) {
                let free = s.blocks_available().saturating_mul(s.fragment_size());
                // On a small disk (keel's STATE can be a few MiB) the line is
                // an eighth of it.
                let size = s.blocks().saturating_mul(s.fragment_size());
                let min = self.config.min_free_bytes.min(size / 8);
                line = min;
                let raised = self.space_alarm.load(Ordering::Relaxed) != 0;
                if free < min {
                    if !raised {
                        eprintln!("keel-etcd: space alarm raised: {} KiB free", free / 1024);
                    }
                    self.space_alarm.store(free.max(1), Ordering::Relaxed);
                } else if raised && free >= min.saturating_mul(2) {
                    eprintln!("keel-etcd: space alarm cleared: {} KiB free", free / 1024);
                    self.space_alarm.store(0, Ordering::Relaxed);
                } else if raised {
                    self.space_alarm.store(free, Ordering::Relaxed);
                }
            }
            // The cluster's record follows this member's: raised while it
            // is short (again, should someone disarm it meanwhile), cleared
            // once it is not. A proposal that fails is tried again after 5 s.
            let free = self.space_alarm.load(Ordering::Relaxed);
            let recorded = self
                .shared
                .read()
                .alarms
                .iter()
                .any(|a| a.member == self.id && a.kind == AlarmKind::Disk);
            let due = proposed.is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
            if due && (free != 0) != recorded {
                proposed = Some(tokio::time::Instant::now());
                let req = if free != 0 {
                    Request::RaiseAlarm(Alarm {
                        member: self.id,
                        kind: AlarmKind::Disk,
                        bytes: free,
                        limit: line,
                        at: now_ms(),
                    })
                } else {
                    Request::ClearAlarms {
                        member: Some(self.id),
                        kind: Some(AlarmKind::Disk),
                    }
                };
                if let Err(e) = self.write_unchecked(req).await {
                    eprintln!("keel-etcd: space alarm: telling the cluster failed: {e}");
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Steps 4 and 5 for a client's write: refused with error 300 when it
    /// would add data while this member is short of disk, while an alarm
    /// is raised, or past the quota (which raises the quota alarm).
    async fn admit(&self, req: &Request) -> Result<(), EtcdError> {
        if !req.grows() {
            return Ok(());
        }
        if let Some(why) = self.space_alarm() {
            return Err(self.internal(why));
        }
        let (alarms, size) = {
            let s = self.shared.read();
            (s.alarms.clone(), s.store.bytes())
        };
        if !alarms.is_empty() {
            return Err(self.internal(no_space_cause(&alarms)));
        }
        let quota = self.config.quota_bytes;
        if size.saturating_add(req.added_bytes()) > quota {
            let alarm = Alarm {
                member: self.id,
                kind: AlarmKind::Quota,
                bytes: size,
                limit: quota,
                at: now_ms(),
            };
            eprintln!("keel-etcd: {alarm}");
            let cause = no_space_cause(std::slice::from_ref(&alarm));
            if let Err(e) = self.write_unchecked(Request::RaiseAlarm(alarm)).await {
                eprintln!("keel-etcd: quota alarm: telling the cluster failed: {e}");
            }
            return Err(self.internal(cause));
        }
        Ok(())
    }

    /// The raised alarms, as every member knows them.
    pub fn alarms(&self) -> Vec<Alarm> {
        self.shared.read().alarms.clone()
    }

    /// Clears every alarm (`keelctl kv alarm disarm`); returns those it
    /// cleared. A member still short of disk raises its alarm again within
    /// a second; a write still over the quota raises that one again.
    pub async fn disarm(&self) -> Result<Vec<Alarm>, EtcdError> {
        let before = self.alarms();
        self.write_unchecked(Request::ClearAlarms {
            member: None,
            kind: None,
        })
        .await?;
        eprintln!("keel-etcd: {} alarm(s) disarmed", before.len());
        Ok(before)
    }

    /// Step 1: a client's write, wherever the leader is (steps 4 and 5
    /// first).
    pub async fn write(&self, req: Request) -> Result<Written, EtcdError> {
        self.admit(&req).await?;
        self.write_unchecked(req).await
    }

    /// Step 1 without steps 4 and 5 (for the alarms themselves).
    async fn write_unchecked(&self, req: Request) -> Result<Written, EtcdError> {
        // One id for every attempt: a retry after an unknown outcome (a
        // leader lost with the proposal in flight, a forward whose answer
        // never came) is answered from the record, never applied twice.
        let (seq, done_below, _answered) = InFlight::start(&self.in_flight, &self.seq);
        let req = Request::Once {
            client: self.id,
            seq,
            req: Box::new(req),
            done_below,
        };
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        let mut last = String::from("no leader");
        loop {
            match self.propose_local(req.clone()).await {
                Ok(w) => return Ok(w),
                Err(Err(e)) => return Err(self.internal(e)),
                Err(Ok(leader)) => {
                    let leader = match leader {
                        Some(l) => Some(l),
                        None => self.await_leader(deadline).await,
                    };
                    if let Some(l) = leader.filter(|l| *l != self.id) {
                        match self
                            .peer_call::<_, Result<Written, String>>(l, "/raft/propose", &req)
                            .await
                        {
                            Ok(Ok(w)) => return Ok(w),
                            // The leader's space alarm: no point retrying.
                            Ok(Err(e))
                                if e.starts_with("etcdserver: no space")
                                    || e.starts_with(NO_SPACE) =>
                            {
                                return Err(self.internal(e))
                            }
                            Ok(Err(e)) => last = e,
                            Err(e) => last = e.to_string(),
                        }
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.internal(format!("etcdserver: request timed out ({last})")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Step 2: returns once local state reflects every write acknowledged
    /// before the call.
    pub async fn linearize(&self) -> Result<(), EtcdError> {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        let mut last = String::from("no leader");
        loop {
            let leader = match self.leader() {
                Some(l) => Some(l),
                None => self.await_leader(deadline).await,
            };
            match leader {
                Some(l) if l == self.id => match self.raft.ensure_linearizable().await {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e.to_string(),
                },
                Some(l) => {
                    match self
                        .peer_call::<_, Result<u64, String>>(l, "/raft/readindex", &())
                        .await
                    {
                        Ok(Ok(index)) => {
                            let wait = self.shared.wait_applied(index);
                            if tokio::time::timeout_at(deadline, wait).await.is_ok() {
                                return Ok(());
                            }
                            last = format!("apply of index {index} timed out");
                        }
                        Ok(Err(e)) => last = e,
                        Err(e) => last = e.to_string(),
                    }
                }
                None => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.internal(format!("etcdserver: request timed out ({last})")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every member, in id order.
    pub fn members(&self) -> Vec<MemberView> {
        let s = self.shared.read();
        s.membership
            .membership()
            .nodes()
            .map(|(id, m)| {
                let a = s.attributes.get(id).cloned().unwrap_or_default();
                MemberView {
                    id: format!("{id:x}"),
                    name: a.name,
                    peer_urls: m.peer_urls.clone(),
                    client_urls: a.client_urls,
                }
            })
            .collect()
    }

    /// Every member's client URLs (`/v2/machines`), sorted as text: etcd
    /// sorts them all together (`sort.Strings`), not member by member.
    pub fn client_urls(&self) -> Vec<String> {
        let s = self.shared.read();
        let mut urls: Vec<String> = s
            .attributes
            .iter()
            .filter(|(id, _)| s.membership.membership().get_node(id).is_some())
            .flat_map(|(_, a)| a.client_urls.clone())
            .collect();
        urls.sort_unstable();
        urls
    }

    /// A membership change on the leader.
    pub async fn change_members_local(&self, c: MemberChange) -> Result<MemberView, MemberError> {
        let err = |status: u16, message: String| MemberError { status, message };
        let token = &self.config.cluster_token;
        match c {
            MemberChange::Add { peer_urls } => {
                check_urls(&peer_urls).map_err(|e| err(400, e))?;
                let id = member_id(&peer_urls, token);
                {
                    let s = self.shared.read();
                    let m = s.membership.membership();
                    if m.get_node(&id).is_some() {
                        return Err(err(409, "membership: ID exists".into()));
                    }
                    if m.nodes()
                        .any(|(_, n)| n.peer_urls.iter().any(|u| peer_urls.contains(u)))
                    {
                        return Err(err(409, "membership: peerURL exists".into()));
                    }
                }
                let member = Member {
                    peer_urls: peer_urls.clone(),
                };
                // As in etcd, the answer does not wait for the new member:
                // it is added as a learner now (listed at once), and made a
                // voter once it runs and has caught up. (openraft changes
                // voters by joint consensus, which needs the new member's
                // vote: waiting for it here would hold the request until
                // the new member started.)
                self.raft
                    .add_learner(id, member, false)
                    .await
                    .map_err(|e| err(500, e.to_string()))?;
                let raft = self.raft.clone();
                tokio::spawn(async move {
                    let ids: BTreeSet<NodeId> = [id].into();
                    if let Err(e) = raft
                        .change_membership(ChangeMembers::AddVoterIds(ids), false)
                        .await
                    {
                        eprintln!("keel-etcd: member {id:x} stays a learner: {e}");
                    }
                });
                Ok(MemberView {
                    id: format!("{id:x}"),
                    name: String::new(),
                    peer_urls,
                    client_urls: Vec::new(),
                })
            }
            MemberChange::Update { id, peer_urls } => {
                if self.member_of(id).is_none() {
                    return Err(err(404, format!("No such member: {id:x}")));
                }
                check_urls(&peer_urls).map_err(|e| err(400, e))?;
                {
                    let s = self.shared.read();
                    let clash = s.membership.membership().nodes().any(|(other, n)| {
                        *other != id && n.peer_urls.iter().any(|u| peer_urls.contains(u))
                    });
                    if clash {
                        return Err(err(409, "membership: peerURL exists".into()));
                    }
                }
                let member = Member {
                    peer_urls: peer_urls.clone(),
                };
                // SetNodes replaces the address of a member that stays a
                // voter: the member itself must then listen at the new URLs.
                self.raft
                    .change_membership(ChangeMembers::SetNodes([(id, member)].into()), false)
                    .await
                    .map_err(|e| err(500, e.to_string()))?;
                Ok(MemberView {
                    id: format!("{id:x}"),
                    name: String::new(),
                    peer_urls,
                    client_urls: Vec::new(),
                })
            }
            MemberChange::Remove { id } => {
                let known = self.member_of(id);
                let Some(m) = known else {
                    return Err(err(404, format!("No such member: {id:x}")));
                };
                let gone: BTreeSet<NodeId> = [id].into();
                self.raft
                    .change_membership(ChangeMembers::RemoveVoters(gone), false)
                    .await
                    .map_err(|e| err(500, e.to_string()))?;
                Ok(MemberView {
                    id: format!("{id:x}"),
                    name: String::new(),
                    peer_urls: m.peer_urls,
                    client_urls: Vec::new(),
                })
            }
        }
    }

    /// A membership change from any member.
    pub async fn change_members(&self, c: MemberChange) -> Result<MemberView, MemberError> {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        let Some(leader) = self.await_leader(deadline).await else {
            return Err(MemberError {
                status: 500,
                message: "etcdserver: no leader".into(),
            });
        };
        if leader == self.id {
            // A change that needs an unreachable member's vote stays
            // pending in Raft; the client gets etcd's timeout meanwhile.
            return match tokio::time::timeout_at(deadline, self.change_members_local(c)).await {
                Ok(r) => r,
                Err(_) => Err(MemberError {
                    status: 500,
                    message: "etcdserver: request timed out".into(),
                }),
            };
        }
        match self
            .peer_call::<_, Result<MemberView, MemberError>>(leader, "/raft/members", &c)
            .await
        {
            Ok(r) => r,
            Err(e) => Err(MemberError {
                status: 500,
                message: e.to_string(),
            }),
        }
    }

    /// Publishes this member's name and client URLs until they are in the
    /// replicated state (etcd's `publish`).
    pub async fn publish(&self) {
        let attributes = Attributes {
            name: self.config.name.clone(),
            client_urls: self.config.advertise_client_urls.clone(),
        };
        loop {
            if self.shared.read().attributes.get(&self.id) == Some(&attributes) {
                return;
            }
            let req = Request::Publish {
                id: self.id,
                attributes: attributes.clone(),
            };
            if self.write(req).await.is_err() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// The leader's TTL sweep: proposes an expiry when a node is due.
    pub async fn expire_loop(&self) {
        loop {
            let due = self.shared.read().store.next_expiration();
            let now = now_ms();
            let wait = match due {
                Some(d) if d <= now && self.is_leader() => {
                    let _ = self.write(Request::Expire { now }).await;
                    continue;
                }
                Some(d) if d > now => (d - now).min(500),
                _ => 500,
            };
            tokio::time::sleep(Duration::from_millis(wait.max(10))).await;
        }
    }
}

/// The leader side of the peer calls a follower makes.
impl PeerHandler for Node {
    fn raft(&self) -> &Raft {
        &self.raft
    }

    fn counters(&self) -> &crate::stats::PeerCounters {
        &self.counters
    }

    async fn propose(&self, req: Request) -> Result<Written, String> {
        if req.grows() {
            if let Some(why) = self.space_alarm() {
                return Err(why);
            }
        }
        self.propose_local(req).await.map_err(|e| match e {
            Ok(l) => format!("not the leader (leader: {l:?})"),
            Err(e) => e,
        })
    }

    async fn read_index(&self) -> Result<u64, String> {
        self.raft
            .get_read_log_id()
            .await
            .map(|(read, _)| read.map_or(0, |l| l.index))
            .map_err(|e| e.to_string())
    }

    async fn members(&self, c: MemberChange) -> Result<MemberView, MemberError> {
        self.change_members_local(c).await
    }
}

/// A client write waiting for its answer, in [`Node`]'s `in_flight` set
/// until it is dropped (answered, failed, or its caller gone).
struct InFlight<'a> {
    set: &'a std::sync::Mutex<std::collections::BTreeSet<u64>>,
    seq: u64,
}

impl<'a> InFlight<'a> {
    /// Take the next seq from `next` and add it; returns it, the lowest seq
    /// still in flight (itself when no older write waits) and the guard
    /// that removes it. Taken under the set's lock, so a lower seq is
    /// always in the set before a higher one can read the lowest.
    fn start(
        set: &'a std::sync::Mutex<std::collections::BTreeSet<u64>>,
        next: &std::sync::atomic::AtomicU64,
    ) -> (u64, u64, InFlight<'a>) {
        let mut s = set.lock().unwrap_or_else(|p| p.into_inner());
        let seq = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        s.insert(seq);
        let lowest = s.first().copied().unwrap_or(seq);
        (seq, lowest, InFlight { set, seq })
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut s = self.set.lock().unwrap_or_else(|p| p.into_inner());
        s.remove(&self.seq);
    }
}
