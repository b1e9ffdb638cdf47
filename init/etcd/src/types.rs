//! What the Raft log carries and what applying it returns.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Cursor;

use keel_kv::{EtcdError, Event, SetOptions};
use serde::{Deserialize, Serialize};

/// A member's Raft id: etcd's member ID (see [`member_id`]).
pub type NodeId = u64;

/// What the Raft membership records per member: its peer URLs, known when it
/// is added. Its name and client URLs are published by the member itself once
/// it runs (see [`Request::Publish`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub peer_urls: Vec<String>,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.peer_urls.join(","))
    }
}

/// A member's own attributes, replicated through the log (as etcd keeps them
/// under its internal `/0/members/<id>/attributes`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes {
    pub name: String,
    pub client_urls: Vec<String>,
}

/// A state-machine command. Each write carries the proposing member's clock
/// (`now`, ms since the epoch), so that every replica computes the same
/// expirations from the same log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// PUT (set, create, update, compareAndSwap, refresh).
    Set {
        key: String,
        opts: SetOptions,
        now: u64,
    },
    /// POST: an in-order key under `dir`.
    CreateInOrder {
        dir: String,
        value: String,
        /// `dir=true`: the new in-order node is a directory.
        make_dir: bool,
        ttl: Option<u64>,
        now: u64,
    },
    /// DELETE (delete, compareAndDelete).
    Delete {
        key: String,
        dir: bool,
        recursive: bool,
        prev_value: Option<String>,
        prev_index: Option<u64>,
        now: u64,
    },
    /// The leader's TTL sweep: removes every node expired at `now`.
    Expire { now: u64 },
    /// A member announces its name and client URLs.
    Publish { id: NodeId, attributes: Attributes },
    /// Concurrent writes committed as one entry (group commit), applied in
    /// order.
    Batch(Vec<Request>),
    /// A client write with its unique id: `client` is the member that
    /// took it, `seq` that member's counter. A retry (after a leader
    /// change, a lost forward) carries the same id, and the state machine
    /// answers it from its record instead of applying it twice.
    /// `done_below`: every write of `client` with a lower `seq` has had its
    /// answer, so the record may forget them (0 in older logs: forget
    /// nothing).
    Once {
        client: u64,
        seq: u64,
        req: Box<Request>,
        #[serde(default)]
        done_below: u64,
    },
    /// A member raises an alarm (or updates the one it raised): from the
    /// entry on, every member refuses writes that grow the store.
    RaiseAlarm(Alarm),
    /// Clears the alarms of `member` (every member when None) of `kind`
    /// (every kind when None).
    ClearAlarms {
        member: Option<NodeId>,
        kind: Option<AlarmKind>,
    },
}

/// Why an alarm was raised. Either is etcd's `NOSPACE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlarmKind {
    /// The store reached the member's `quota-backend-bytes`.
    Quota,
    /// The member's data disk is short of free space (`min-free`).
    Disk,
}

impl fmt::Display for AlarmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlarmKind::Quota => "quota",
            AlarmKind::Disk => "disk",
        })
    }
}

/// A raised alarm, part of the replicated state: one per member and kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm {
    pub member: NodeId,
    pub kind: AlarmKind,
    /// Quota: the store's size in bytes when it was raised. Disk: the free
    /// bytes on the member's data disk.
    pub bytes: u64,
    /// Quota: the quota. Disk: the free space the member needs.
    pub limit: u64,
    /// When it was raised (ms since the epoch, the raising member's clock).
    pub at: u64,
}

impl fmt::Display for Alarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            AlarmKind::Quota => write!(
                f,
                "NOSPACE raised by member {:x}: the store holds {} bytes, its quota-backend-bytes is {}",
                self.member, self.bytes, self.limit
            ),
            AlarmKind::Disk => write!(
                f,
                "NOSPACE raised by member {:x}: {} KiB free on its data disk, under the {} KiB it keeps free",
                self.member,
                self.bytes / 1024,
                self.limit / 1024
            ),
        }
    }
}

/// etcd's error for a write refused under a NOSPACE alarm, then the
/// alarms and what to do.
pub fn no_space_cause(alarms: &[Alarm]) -> String {
    let list: Vec<String> = alarms.iter().map(|a| a.to_string()).collect();
    format!(
        "{NO_SPACE}: {}; writes that add data are refused until the alarm is disarmed (delete keys to make room, then `keelctl kv alarm disarm`)",
        list.join("; ")
    )
}

/// What etcd calls the state of a store that is past its quota; every
/// refusal under an alarm begins with it.
pub const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";

impl Request {
    /// Whether applying it may add data to the store: refused under an
    /// alarm. Deletes, expiry, TTL refreshes, publishing and the alarms
    /// themselves go on (they are how room is made).
    pub fn grows(&self) -> bool {
        match self {
            Request::Set { opts, .. } => !opts.refresh,
            Request::CreateInOrder { .. } => true,
            Request::Once { req, .. } => req.grows(),
            Request::Batch(rs) => rs.iter().any(Request::grows),
            Request::Delete { .. }
            | Request::Expire { .. }
            | Request::Publish { .. }
            | Request::RaiseAlarm(_)
            | Request::ClearAlarms { .. } => false,
        }
    }

    /// About how much a growing request adds to [`keel_kv::Store::bytes`]
    /// (its key and value and one node).
    pub fn added_bytes(&self) -> u64 {
        let node = keel_kv::store::NODE_BYTES;
        match self {
            Request::Set { key, opts, .. } if !opts.refresh => {
                (key.len() + opts.value.len()) as u64 + node
            }
            Request::CreateInOrder { dir, value, .. } => {
                (dir.len() + value.len() + 21) as u64 + node
            }
            Request::Once { req, .. } => req.added_bytes(),
            Request::Batch(rs) => rs.iter().map(Request::added_bytes).sum(),
            _ => 0,
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Set { key, .. } => write!(f, "set {key}"),
            Request::CreateInOrder { dir, .. } => write!(f, "create-in-order {dir}"),
            Request::Delete { key, .. } => write!(f, "delete {key}"),
            Request::Expire { now } => write!(f, "expire @{now}"),
            Request::Publish { id, .. } => write!(f, "publish {id:x}"),
            Request::Batch(rs) => write!(f, "batch of {}", rs.len()),
            Request::Once {
                client, seq, req, ..
            } => write!(f, "{req} ({client:x}/{seq})"),
            Request::RaiseAlarm(a) => write!(f, "raise alarm {} of {:x}", a.kind, a.member),
            Request::ClearAlarms { member, kind } => write!(
                f,
                "clear alarms {} of {}",
                kind.map_or("(all kinds)".to_string(), |k| k.to_string()),
                member.map_or("every member".to_string(), |m| format!("{m:x}"))
            ),
        }
    }
}

/// What applying an entry returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A blank or membership entry, a publish, or an expiry sweep.
    Done,
    Event(Box<Event>),
    Error(EtcdError),
    /// A batch's responses, in its order.
    Batch(Vec<Response>),
}

openraft::declare_raft_types!(
    /// keel's Raft types: etcd commands over the v2 store.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Member,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Members = BTreeMap<NodeId, Member>;

/// FNV-1a, 64 bits: stable ids from names (not a security boundary: ids only
/// have to be the same on every member and unlikely to collide).
pub fn fnv64(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h.max(1)
}

/// A member's id: from its sorted peer URLs and the cluster token, as etcd
/// derives it, so that a member computes its own id and the one who adds it
/// (`POST /v2/members`) computes the same.
pub fn member_id(peer_urls: &[String], token: &str) -> NodeId {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    urls.push(token);
    fnv64(&urls)
}

/// The cluster's id, from its token (reported as `X-Etcd-Cluster-ID`).
pub fn cluster_id(token: &str) -> u64 {
    fnv64(&["cluster", token])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_order_free() {
        let a = vec!["http://a:1".to_string(), "http://b:1".to_string()];
        let b = vec!["http://b:1".to_string(), "http://a:1".to_string()];
        assert_eq!(member_id(&a, "t"), member_id(&b, "t"));
        assert_ne!(member_id(&a, "t"), member_id(&a, "u"));
        assert_ne!(member_id(&a, "t"), 0);
    }
}
