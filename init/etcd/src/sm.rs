//! The replicated state machine: the v2 store, the members' attributes and
//! what Raft needs to know about what was applied, with snapshots on disk.
//!
//! 1. `apply` runs committed entries through [`keel_kv::Store`] in log order;
//!    each entry's response goes back to the member that proposed it.
//! 2. After each batch, the applied Raft index and the store's etcd index are
//!    published on a watch channel: long-polling watchers and followers'
//!    linearizable reads wait on it.
//! 3. A snapshot is the whole state as JSON, written atomically to
//!    `snapshot` in the data directory; it is loaded back at start, so a
//!    member replays only the log after it.

use std::collections::BTreeMap;
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use keel_kv::Store;
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::log::write_atomic;
use crate::stats::{LocalStats, WriteStats};
use crate::types::{
    no_space_cause, Alarm, Attributes, Entry, LogId, Member, NodeId, Request, Response,
    StorageError, StoredMembership, TypeConfig,
};

/// The state every replica holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub store: Store,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub attributes: BTreeMap<NodeId, Attributes>,
    pub stats: WriteStats,
    /// The answers of the last [`DEDUP_WINDOW`] client writes, by id.
    #[serde(default)]
    pub answered: Answered,
    /// The raised alarms: while there is one, writes that grow the store
    /// are refused on every member (etcd's NOSPACE).
    #[serde(default)]
    pub alarms: Vec<Alarm>,
}

/// How many client writes' answers are kept to recognise a retry. A retry
/// comes within the request timeout (7 s); failover, when retries happen,
/// is when writes are slowest.
pub const DEDUP_WINDOW: usize = 4096;

/// The answers of recent client writes, in the order they were applied
/// (part of the replicated state, so every member recognises the same
/// retries, and of snapshots).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(
    from = "Vec<((u64, u64), Response)>",
    into = "Vec<((u64, u64), Response)>"
)]
pub struct Answered {
    /// Ids in the order they were recorded; some may be forgotten already.
    order: std::collections::VecDeque<(u64, u64)>,
    answers: std::collections::BTreeMap<(u64, u64), Response>,
}

impl Answered {
    /// Forget the answers of `client`'s writes below `seq`: the client has
    /// them, so none of them can be retried. This keeps the record to the
    /// writes in flight, not the whole window.
    fn forget_below(&mut self, client: u64, seq: u64) {
        let gone: Vec<(u64, u64)> = self
            .answers
            .range((client, 0)..(client, seq))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.answers.remove(&id);
        }
        if self.answers.is_empty() {
            self.order.clear();
        }
    }

    fn get(&self, id: (u64, u64)) -> Option<&Response> {
        self.answers.get(&id)
    }

    fn record(&mut self, id: (u64, u64), r: Response) {
        if self.answers.insert(id, r).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > DEDUP_WINDOW {
            if let Some(old) = self.order.pop_front() {
                self.answers.remove(&old);
            }
        }
    }
}

impl From<Vec<((u64, u64), Response)>> for Answered {
    fn from(v: Vec<((u64, u64), Response)>) -> Answered {
        let mut a = Answered::default();
        for (id, r) in v {
            a.record(id, r);
        }
        a
    }
}

impl From<Answered> for Vec<((u64, u64), Response)> {
    fn from(mut a: Answered) -> Self {
        a.order
            .iter()
            .filter_map(|id| a.answers.remove(id).map(|r| (*id, r)))
            .collect()
    }
}

/// Published after every applied batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// The Raft log index applied last.
    pub raft_index: u64,
    /// The store's etcd index.
    pub etcd_index: u64,
}

/// Shared between Raft (which applies) and the HTTP side (which reads).
pub struct Shared {
    state: RwLock<State>,
    applied: watch::Sender<Applied>,
    /// The newest snapshot's metadata. Its state is read back from the
    /// snapshot file when a follower needs it (rare): kept in memory it
    /// would cost as much again as the store itself, for good.
    current: std::sync::Mutex<Option<SnapshotMeta<NodeId, Member>>>,
    /// Reads and watchers this member served (for `/v2/stats/store`).
    pub stats: LocalStats,
}

impl Shared {
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> watch::Receiver<Applied> {
        self.applied.subscribe()
    }

    pub fn applied(&self) -> Applied {
        *self.applied.borrow()
    }

    /// Waits until the applied Raft index reaches `index`.
    pub async fn wait_applied(&self, index: u64) {
        let mut rx = self.subscribe();
        let _ = rx.wait_for(|a| a.raft_index >= index).await;
    }
}

/// The state machine openraft drives.
pub struct StateMachine {
    shared: Arc<Shared>,
    dir: PathBuf,
}

/// The snapshot file: the metadata, then the state.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, Member>,
    state: State,
}

/// [`SnapshotFile`] as it is written, from borrowed parts.
#[derive(Serialize)]
struct SnapshotFileRef<'a> {
    meta: &'a SnapshotMeta<NodeId, Member>,
    state: &'a State,
}

fn serr(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageError::from_io_error(
        ErrorSubject::StateMachine,
        verb,
        io::Error::other(e.to_string()),
    )
}

impl StateMachine {
    /// Loads the last snapshot from `dir`, if any.
    pub fn open(dir: &Path) -> Result<(StateMachine, Arc<Shared>), crate::log::LogError> {
        let path = dir.join("snapshot");
        let (state, current) = match std::fs::read(&path) {
            Ok(bytes) => {
                let f: SnapshotFile =
                    serde_json::from_slice(&bytes).map_err(|e| crate::log::LogError::Corrupt {
                        path: path.clone(),
                        offset: 0,
                        why: e.to_string(),
                    })?;
                (f.state, Some(f.meta))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (State::default(), None),
            Err(source) => {
                return Err(crate::log::LogError::Io {
                    op: "read snapshot",
                    path,
                    source,
                })
            }
        };
        let applied = Applied {
            raft_index: state.last_applied.map_or(0, |l| l.index),
            etcd_index: state.store.index(),
        };
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            applied: watch::channel(applied).0,
            current: std::sync::Mutex::new(current),
            stats: Default::default(),
        });
        Ok((
            StateMachine {
                shared: shared.clone(),
                dir: dir.to_path_buf(),
            },
            shared,
        ))
    }

    fn publish(&self, s: &State) {
        self.shared.applied.send_replace(Applied {
            raft_index: s.last_applied.map_or(0, |l| l.index),
            etcd_index: s.store.index(),
        });
    }
}

// openraft's StorageError is large; it is what the trait methods return.
#[allow(clippy::result_large_err)]
/// Step 3: writes the snapshot file and makes it the current snapshot.
///
/// Writers take turns (the `current` lock): openraft builds snapshots on a
/// task of their own, so a follower may finish building one while it
/// installs its leader's. A snapshot `built` from an older state than the
/// current one is not written: it would replace a newer snapshot whose log
/// is already purged, and a restart would find a hole.
fn save_snapshot(
    shared: &Shared,
    dir: &Path,
    meta: &SnapshotMeta<NodeId, Member>,
    state: &State,
    built: bool,
) -> Result<(), StorageError> {
    let werr = |e: io::Error| {
        StorageError::from_io_error(
            ErrorSubject::Snapshot(Some(meta.signature())),
            ErrorVerb::Write,
            e,
        )
    };
    let mut current = shared.current.lock().unwrap_or_else(|p| p.into_inner());
    if built
        && current
            .as_ref()
            .is_some_and(|c| c.last_log_id > meta.last_log_id)
    {
        return Ok(());
    }
    let file = SnapshotFileRef { meta, state };
    let bytes = serde_json::to_vec(&file).map_err(|e| werr(io::Error::other(e)))?;
    write_atomic(dir, "snapshot", &bytes).map_err(werr)?;
    *current = Some(meta.clone());
    Ok(())
}

/// Applies one command to the state.
pub fn apply_request(s: &mut State, req: Request) -> Response {
    // Under an alarm every replica refuses the same growing writes (the
    // alarm is itself an entry of the log), wherever they were proposed.
    if !s.alarms.is_empty()
        && !matches!(req, Request::Once { .. } | Request::Batch(_))
        && req.grows()
    {
        let e = keel_kv::EtcdError::new(
            keel_kv::ErrorCode::RaftInternal,
            no_space_cause(&s.alarms),
            s.store.index(),
        );
        match &req {
            Request::Set { opts, .. } => s.stats.count_set(opts, false),
            _ => s.stats.count_create(false),
        }
        return Response::Error(e);
    }
    let r = match req {
        Request::Set { key, opts, now } => {
            let r = s.store.set(&key, &opts, now);
            s.stats.count_set(&opts, r.is_ok());
            r
        }
        Request::CreateInOrder {
            dir,
            value,
            make_dir,
            ttl,
            now,
        } => {
            let r = s.store.create_in_order(&dir, &value, make_dir, ttl, now);
            s.stats.count_create(r.is_ok());
            r
        }
        Request::Delete {
            key,
            dir,
            recursive,
            prev_value,
            prev_index,
            now,
        } => {
            let compare = prev_value.as_deref().is_some_and(|v| !v.is_empty())
                || prev_index.is_some_and(|i| i != 0);
            let r = s
                .store
                .delete(&key, dir, recursive, prev_value.as_deref(), prev_index, now);
            s.stats.count_delete(compare, r.is_ok());
            r
        }
        Request::Expire { now } => {
            let n = s.store.expire(now).len() as u64;
            s.stats.expire_count += n;
            return Response::Done;
        }
        Request::Publish { id, attributes } => {
            s.attributes.insert(id, attributes);
            return Response::Done;
        }
        Request::Once {
            client,
            seq,
            req,
            done_below,
        } => {
            s.answered.forget_below(client, done_below);
            if let Some(r) = s.answered.get((client, seq)) {
                return r.clone();
            }
            let r = apply_request(s, *req);
            s.answered.record((client, seq), r.clone());
            return r;
        }
        Request::Batch(reqs) => {
            return Response::Batch(reqs.into_iter().map(|r| apply_request(s, r)).collect());
        }
        Request::RaiseAlarm(a) => {
            match s
                .alarms
                .iter_mut()
                .find(|x| x.member == a.member && x.kind == a.kind)
            {
                Some(x) => *x = a,
                None => s.alarms.push(a),
            }
            return Response::Done;
        }
        Request::ClearAlarms { member, kind } => {
            s.alarms.retain(|a| {
                !(member.is_none_or(|m| m == a.member) && kind.is_none_or(|k| k == a.kind))
            });
            return Response::Done;
        }
    };
    match r {
        Ok(e) => Response::Event(Box::new(e)),
        Err(e) => Response::Error(e),
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let s = self.shared.read();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let shared = self.shared.clone();
        let mut s = shared.write();
        let mut out = Vec::new();
        for e in entries {
            s.last_applied = Some(e.log_id);
            out.push(match e.payload {
                EntryPayload::Blank => Response::Done,
                EntryPayload::Normal(req) => apply_request(&mut s, req),
                EntryPayload::Membership(m) => {
                    s.membership = StoredMembership::new(Some(e.log_id), m);
                    Response::Done
                }
            });
        }
        self.publish(&s);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
            dir: self.dir.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let state: State = serde_json::from_slice(snapshot.get_ref())
            .map_err(|e| serr(ErrorVerb::Read, format!("received snapshot: {e}")))?;
        save_snapshot(&self.shared, &self.dir, meta, &state, false)?;
        eprintln!(
            "keel-etcd: snapshot installed from the leader at index {}",
            meta.last_log_id.map_or(0, |l| l.index)
        );
        let shared = self.shared.clone();
        let mut s = shared.write();
        *s = state;
        self.publish(&s);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if current.is_none() {
            return Ok(None);
        }
        // The file's own metadata goes with its state (should a snapshot
        // built meanwhile have replaced it, that newer one is sent).
        let path = self.dir.join("snapshot");
        let rerr =
            |e: &dyn std::fmt::Display| serr(ErrorVerb::Read, format!("{}: {e}", path.display()));
        let bytes = std::fs::read(&path).map_err(|e| rerr(&e))?;
        let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(|e| rerr(&e))?;
        let data = serde_json::to_vec(&file.state).map_err(|e| rerr(&e))?;
        Ok(Some(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Builds a snapshot of the state as it is now.
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
    dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let state = self.shared.read().clone();
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                state.last_applied.map_or(0, |l| l.leader_id.term),
                state.last_applied.map_or(0, |l| l.index)
            ),
        };
        save_snapshot(&self.shared, &self.dir, &meta, &state, true)?;
        let data = serde_json::to_vec(&state).map_err(|e| serr(ErrorVerb::Write, e))?;
        eprintln!(
            "keel-etcd: snapshot built at index {} ({} bytes)",
            meta.last_log_id.map_or(0, |l| l.index),
            data.len()
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_kv::SetOptions;

    fn once(seq: u64, key: &str, prev_exist: Option<bool>) -> Request {
        Request::Once {
            client: 7,
            seq,
            done_below: 0,
            req: Box::new(Request::Set {
                key: key.into(),
                opts: SetOptions {
                    value: "v".into(),
                    prev_exist,
                    ..Default::default()
                },
                now: 0,
            }),
        }
    }

    /// The current snapshot's state comes back from its file; a snapshot
    /// built from an older state than one installed meanwhile does not
    /// replace it, on disk or as the current one.
    #[tokio::test]
    async fn an_older_build_does_not_replace_a_newer_snapshot() {
        let d = tempfile::tempdir().unwrap();
        let (mut sm, shared) = StateMachine::open(d.path()).unwrap();
        assert!(sm.get_current_snapshot().await.unwrap().is_none());
        let meta = |i| SnapshotMeta {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), i)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("1-{i}"),
        };
        let state = |i, keys: &[&str]| {
            let mut s = State::default();
            for (n, k) in keys.iter().enumerate() {
                apply_request(&mut s, once(n as u64 + 1, k, None));
            }
            s.last_applied = meta(i).last_log_id;
            s
        };
        let newer = state(9, &["/a", "/b", "/c"]);
        save_snapshot(&shared, d.path(), &meta(9), &newer, false).unwrap();
        save_snapshot(&shared, d.path(), &meta(4), &state(4, &["/a"]), true).unwrap();

        let snap = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(snap.meta, meta(9));
        let back: State = serde_json::from_slice(snap.snapshot.get_ref()).unwrap();
        assert_eq!(back.store.index(), 3);
        let (_, reopened) = StateMachine::open(d.path()).unwrap();
        assert_eq!(reopened.applied().raft_index, 9);

        // A newer build does replace it.
        save_snapshot(&shared, d.path(), &meta(12), &state(12, &["/a"]), true).unwrap();
        let snap = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(snap.meta, meta(12));
    }

    #[test]
    fn a_retried_write_is_answered_not_applied_again() {
        let mut s = State::default();
        let first = apply_request(&mut s, once(1, "/k", Some(false)));
        assert!(matches!(first, Response::Event(_)));
        // The same create again would fail with 105 if applied; the retry
        // gets the first answer and the store does not move.
        let again = apply_request(&mut s, once(1, "/k", Some(false)));
        assert_eq!(again, first);
        assert_eq!(s.store.index(), 1);
        // Another id is another write.
        let other = apply_request(&mut s, once(2, "/k", Some(false)));
        assert!(matches!(other, Response::Error(_)));
        // The record survives a snapshot round trip and stays bounded.
        let back: State = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(
            apply_request(&mut back.clone(), once(1, "/k", Some(false))),
            first
        );
        for seq in 10..10 + DEDUP_WINDOW as u64 + 5 {
            apply_request(&mut s, once(seq, "/j", None));
        }
        assert_eq!(s.answered.order.len(), DEDUP_WINDOW);
        assert!(s.answered.get((7, 1)).is_none());
    }

    #[test]
    fn answers_the_client_has_are_forgotten() {
        let mut s = State::default();
        let with = |seq, done_below| match once(seq, "/k", None) {
            Request::Once {
                client, seq, req, ..
            } => Request::Once {
                client,
                seq,
                req,
                done_below,
            },
            _ => unreachable!(),
        };
        for seq in 1..=5 {
            apply_request(&mut s, with(seq, 1));
        }
        assert_eq!(s.answered.answers.len(), 5);
        // Writes 1 to 3 were answered: only 4, 5 and 6 stay retriable.
        let six = apply_request(&mut s, with(6, 4));
        let ids: Vec<_> = s.answered.answers.keys().copied().collect();
        assert_eq!(ids, [(7, 4), (7, 5), (7, 6)]);
        // A retry of a write still in flight is answered from the record.
        assert_eq!(apply_request(&mut s, with(6, 4)), six);
        assert_eq!(s.store.index(), 6);
        // Another member's writes are not touched.
        let other = Request::Once {
            client: 8,
            seq: 100,
            req: Box::new(Request::Expire { now: 0 }),
            done_below: 0,
        };
        apply_request(&mut s, other);
        apply_request(&mut s, with(7, 7));
        let ids: Vec<_> = s.answered.answers.keys().copied().collect();
        assert_eq!(ids, [(7, 7), (8, 100)]);
    }

    /// Under an alarm every replica refuses the writes that add data, and
    /// only those, the same way; clearing it lets them in again.
    #[test]
    fn an_alarm_refuses_growing_writes_until_it_is_cleared() {
        use crate::types::{Alarm, AlarmKind, NO_SPACE};
        let mut s = State::default();
        let set = |key: &str| Request::Set {
            key: key.into(),
            opts: SetOptions {
                value: "v".into(),
                ..Default::default()
            },
            now: 0,
        };
        assert!(matches!(
            apply_request(&mut s, set("/a")),
            Response::Event(_)
        ));
        let alarm = |member, kind| Alarm {
            member,
            kind,
            bytes: 70_000,
            limit: 65_536,
            at: 1,
        };
        apply_request(&mut s, Request::RaiseAlarm(alarm(1, AlarmKind::Quota)));
        apply_request(&mut s, Request::RaiseAlarm(alarm(2, AlarmKind::Disk)));
        // Raised again: updated, not doubled.
        apply_request(&mut s, Request::RaiseAlarm(alarm(1, AlarmKind::Quota)));
        assert_eq!(s.alarms.len(), 2);
        let index = s.store.index();
        let refused = |r: Response| match r {
            Response::Error(e) => {
                assert_eq!(e.code, keel_kv::ErrorCode::RaftInternal);
                assert!(e.cause.starts_with(NO_SPACE), "{}", e.cause);
                assert!(
                    e.cause.contains("quota-backend-bytes is 65536"),
                    "{}",
                    e.cause
                );
            }
            other => panic!("not refused: {other:?}"),
        };
        refused(apply_request(&mut s, set("/b")));
        refused(apply_request(&mut s, once(1, "/c", None)));
        refused(apply_request(
            &mut s,
            Request::CreateInOrder {
                dir: "/q".into(),
                value: "v".into(),
                make_dir: false,
                ttl: None,
                now: 0,
            },
        ));
        assert_eq!(s.store.index(), index, "nothing was written");
        // Deletes make room, and refreshes add nothing: both go on.
        let refresh = Request::Set {
            key: "/a".into(),
            opts: SetOptions {
                refresh: true,
                ttl: Some(60),
                prev_exist: Some(true),
                ..Default::default()
            },
            now: 0,
        };
        assert!(matches!(apply_request(&mut s, refresh), Response::Event(_)));
        let delete = Request::Delete {
            key: "/a".into(),
            dir: false,
            recursive: false,
            prev_value: None,
            prev_index: None,
            now: 0,
        };
        assert!(matches!(apply_request(&mut s, delete), Response::Event(_)));
        // One member's alarm cleared: the other's still refuses.
        apply_request(
            &mut s,
            Request::ClearAlarms {
                member: Some(1),
                kind: None,
            },
        );
        assert_eq!(s.alarms.len(), 1);
        assert!(matches!(
            apply_request(&mut s, set("/b")),
            Response::Error(_)
        ));
        apply_request(
            &mut s,
            Request::ClearAlarms {
                member: None,
                kind: None,
            },
        );
        assert!(s.alarms.is_empty());
        assert!(matches!(
            apply_request(&mut s, set("/b")),
            Response::Event(_)
        ));
        // The alarms are part of the state a snapshot carries.
        apply_request(&mut s, Request::RaiseAlarm(alarm(3, AlarmKind::Quota)));
        let copy: State = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(copy.alarms, s.alarms);
        assert_eq!(copy.store.bytes(), s.store.bytes());
    }
}
