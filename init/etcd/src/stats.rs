//! etcd's `/v2/stats/store` counters. The write counters live in the
//! replicated state (every member counts the same applied operations, and
//! they survive in snapshots, as in etcd); reads and watchers are counted by
//! the member that serves them.

use std::sync::atomic::{AtomicU64, Ordering};

use keel_kv::SetOptions;
use serde::{Deserialize, Serialize};

/// Applied-operation counters, in etcd's JSON names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteStats {
    pub sets_success: u64,
    pub sets_fail: u64,
    pub delete_success: u64,
    pub delete_fail: u64,
    pub update_success: u64,
    pub update_fail: u64,
    pub create_success: u64,
    pub create_fail: u64,
    pub compare_and_swap_success: u64,
    pub compare_and_swap_fail: u64,
    pub compare_and_delete_success: u64,
    pub compare_and_delete_fail: u64,
    pub expire_count: u64,
}

impl WriteStats {
    /// Counts a PUT by what it asked for (etcd's dispatch), success or not.
    pub fn count_set(&mut self, o: &SetOptions, ok: bool) {
        let compare = o.prev_value.as_deref().is_some_and(|v| !v.is_empty())
            || o.prev_index.is_some_and(|i| i != 0);
        let (s, f) = match o.prev_exist {
            Some(false) => (&mut self.create_success, &mut self.create_fail),
            _ if compare => (
                &mut self.compare_and_swap_success,
                &mut self.compare_and_swap_fail,
            ),
            Some(true) => (&mut self.update_success, &mut self.update_fail),
            None => (&mut self.sets_success, &mut self.sets_fail),
        };
        *if ok { s } else { f } += 1;
    }

    pub fn count_create(&mut self, ok: bool) {
        *if ok {
            &mut self.create_success
        } else {
            &mut self.create_fail
        } += 1;
    }

    pub fn count_delete(&mut self, compare: bool, ok: bool) {
        let (s, f) = if compare {
            (
                &mut self.compare_and_delete_success,
                &mut self.compare_and_delete_fail,
            )
        } else {
            (&mut self.delete_success, &mut self.delete_fail)
        };
        *if ok { s } else { f } += 1;
    }
}

/// What the serving member counts itself.
#[derive(Debug, Default)]
pub struct LocalStats {
    pub gets_success: AtomicU64,
    pub gets_fail: AtomicU64,
    pub watchers: AtomicU64,
}

impl LocalStats {
    pub fn count_get(&self, ok: bool) {
        let c = if ok {
            &self.gets_success
        } else {
            &self.gets_fail
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// `/v2/stats/store`'s body.
pub fn store_json(w: &WriteStats, l: &LocalStats) -> serde_json::Value {
    let mut v = serde_json::to_value(w).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.insert(
            "getsSuccess".into(),
            l.gets_success.load(Ordering::Relaxed).into(),
        );
        m.insert(
            "getsFail".into(),
            l.gets_fail.load(Ordering::Relaxed).into(),
        );
        m.insert("watchers".into(), l.watchers.load(Ordering::Relaxed).into());
    }
    v
}

/// Counts of the Raft traffic this member sends and receives, and per
/// follower how its appends went (for `/v2/stats/self` and `/leader`).
#[derive(Debug, Default)]
pub struct PeerCounters {
    pub sent_appends: AtomicU64,
    pub received_appends: AtomicU64,
    followers: std::sync::Mutex<std::collections::BTreeMap<u64, FollowerCounts>>,
}

#[derive(Debug, Default, Clone)]
struct FollowerCounts {
    success: u64,
    fail: u64,
    current_ms: f64,
    sum_ms: f64,
    sum_sq_ms: f64,
    min_ms: f64,
    max_ms: f64,
}

impl PeerCounters {
    /// One append to `target` that took `ms` (success) or failed.
    pub fn record_append(&self, target: u64, ms: f64, ok: bool) {
        self.sent_appends.fetch_add(1, Ordering::Relaxed);
        let mut f = self.followers.lock().unwrap_or_else(|p| p.into_inner());
        let c = f.entry(target).or_default();
        if !ok {
            c.fail += 1;
            return;
        }
        c.min_ms = if c.success == 0 { ms } else { c.min_ms.min(ms) };
        c.max_ms = c.max_ms.max(ms);
        c.success += 1;
        c.current_ms = ms;
        c.sum_ms += ms;
        c.sum_sq_ms += ms * ms;
    }
}

fn rfc3339(t: std::time::SystemTime) -> String {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    keel_kv::json::rfc3339_ms(ms)
}

/// Go's `time.Duration.String()` for whole milliseconds and up.
fn go_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let frac = d.subsec_millis();
    let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
    let secs = if frac == 0 {
        format!("{sec}s")
    } else {
        let f = format!("{frac:03}");
        format!("{sec}.{}s", f.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// `/v2/stats/self`.
pub fn self_json(node: &crate::node::Node) -> serde_json::Value {
    let m = node.raft.metrics().borrow().clone();
    let state = match m.state {
        openraft::ServerState::Leader => "StateLeader",
        openraft::ServerState::Candidate => "StateCandidate",
        _ => "StateFollower",
    };
    let (leader, since) = node.leader_since();
    let c = &node.counters;
    serde_json::json!({
        "name": node.config.name,
        "id": format!("{:x}", node.id),
        "state": state,
        "startTime": rfc3339(node.started),
        "leaderInfo": {
            "leader": leader.map(|l| format!("{l:x}")).unwrap_or_default(),
            "uptime": go_duration(since.elapsed().unwrap_or_default()),
            "startTime": rfc3339(since),
        },
        "recvAppendRequestCnt": c.received_appends.load(Ordering::Relaxed),
        "sendAppendRequestCnt": c.sent_appends.load(Ordering::Relaxed),
    })
}

/// `/v2/stats/leader`, only on the leader.
pub fn leader_json(node: &crate::node::Node) -> Option<serde_json::Value> {
    if !node.is_leader() {
        return None;
    }
    let f = node
        .counters
        .followers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let followers: serde_json::Map<String, serde_json::Value> = node
        .members()
        .into_iter()
        .filter(|m| m.id != format!("{:x}", node.id))
        .map(|m| {
            let id = u64::from_str_radix(&m.id, 16).unwrap_or(0);
            let c = f.get(&id).cloned().unwrap_or_default();
            let n = c.success.max(1) as f64;
            let avg = c.sum_ms / n;
            let sd = (c.sum_sq_ms / n - avg * avg).max(0.0).sqrt();
            let v = serde_json::json!({
                "latency": {
                    "current": c.current_ms,
                    "average": avg,
                    "standardDeviation": sd,
                    "minimum": c.min_ms,
                    "maximum": c.max_ms,
                },
                "counts": { "fail": c.fail, "success": c.success },
            });
            (m.id, v)
        })
        .collect();
    Some(serde_json::json!({
        "leader": format!("{:x}", node.id),
        "followers": followers,
    }))
}
