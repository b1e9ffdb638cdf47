//! Watchers on [`PREFIX`], and what their streams must look like.
//!
//! A watcher ([`watcher`]):
//!
//! 1. long-polls `GET /v2/keys/soak?wait=true&recursive=true&waitIndex=N` on
//!    one member, starting at N = 1, records the event (index, key, action)
//!    and re-arms at its index + 1;
//! 2. on a timeout, a broken connection or an odd answer, re-arms at the same
//!    N on another member: nothing is skipped, whatever member answers;
//! 3. on errorCode 401 (N fell out of the member's 1000-event history) tries
//!    the other members, whose history may reach further back (a restarted
//!    member's begins at its restart); only when every member says 401 does
//!    it give up on the missed events and start a new [`Segment`] after the
//!    highest index they reported;
//! 4. stops once past [`WatchShared::target`] (set at the end of a run to
//!    the last acknowledged write) or at [`WatchShared::stop`].
//!
//! [`check`] then holds the streams to three rules: events only go forward
//! and, since every write of a run is under the prefix and only writes
//! consume etcd indexes, a segment's indexes are exactly `from, from + 1,
//! ...`, no gap at all; every event agrees with the write acknowledged at
//! its index and with what the other watchers saw there (a disagreement is
//! a lost or rewritten write); and [`keel_lincheck::check_watch`] passes
//! for every segment. [`audit`] does the same for each member's own event
//! history at the end of a run: the replicas must agree. [`unattributed`]
//! counts the committed writes against the operations sent: none may take
//! effect twice.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keel_kvdiff::{Conn, Request, Response};
use keel_lincheck::{check_watch, Op, WatchEvent};

use super::rng::Rng;
use super::{workload, PREFIX};

/// How long one long poll may wait for an event before the watcher tries
/// another member.
/// Short, because a watcher stuck on a cut-off member falls behind by
/// hundreds of events a second and the history keeps only 1000; an election
/// without writes only costs a few retries.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(1);

/// Events received one after another from `from` on, with nothing given up
/// in between.
#[derive(Debug, Clone, Default)]
pub struct Segment {
    pub from: u64,
    pub events: Vec<WatchEvent>,
}

#[derive(Debug, Default)]
pub struct WatchLog {
    pub segments: Vec<Segment>,
    /// Times every member answered 401 and the watcher started over.
    pub restarts: usize,
    /// Polls that failed (timeout, connection, odd answer) and were retried.
    pub retries: usize,
}

impl WatchLog {
    pub fn events(&self) -> usize {
        self.segments.iter().map(|s| s.events.len()).sum()
    }
}

pub struct WatchShared {
    pub addrs: Vec<SocketAddr>,
    pub stop: AtomicBool,
    /// Stop once every index up to this one was received (`u64::MAX`: keep
    /// going).
    pub target: AtomicU64,
}

/// What one poll brought.
enum Poll {
    Event(WatchEvent),
    /// errorCode 401, with the member's current index.
    Cleared(u64),
    Failed,
}

fn watch_request(from: u64) -> Request {
    Request::new(
        "GET",
        &format!("/v2/keys{PREFIX}?wait=true&recursive=true&waitIndex={from}"),
    )
}

fn parse(resp: &Response) -> Poll {
    let Some(body) = resp.json() else {
        return Poll::Failed;
    };
    if resp.status == 200 {
        let node = &body["node"];
        return match (
            node["modifiedIndex"].as_u64(),
            node["key"].as_str(),
            body["action"].as_str(),
        ) {
            (Some(index), Some(key), Some(action)) => {
                Poll::Event(WatchEvent::new(index, key, action))
            }
            _ => Poll::Failed,
        };
    }
    match (body["errorCode"].as_u64(), body["index"].as_u64()) {
        (Some(401), Some(index)) => Poll::Cleared(index),
        _ => Poll::Failed,
    }
}

/// Steps 1..4.
pub fn watcher(mut rng: Rng, shared: &WatchShared) -> WatchLog {
    let n = shared.addrs.len();
    let mut log = WatchLog {
        segments: vec![Segment {
            from: 1,
            events: Vec::new(),
        }],
        ..WatchLog::default()
    };
    let mut next = 1u64;
    let mut member = rng.index(n);
    let mut conn: Option<Conn> = None;
    // Members that answered 401 for `next`, with the index each reported.
    let mut cleared: BTreeMap<usize, u64> = BTreeMap::new();
    while !shared.stop.load(Ordering::Relaxed) && next <= shared.target.load(Ordering::Relaxed) {
        let c = conn.get_or_insert_with(|| Conn::once(shared.addrs[member], POLL_TIMEOUT));
        let poll = c
            .send(&watch_request(next))
            .map_or(Poll::Failed, |r| parse(&r));
        match poll {
            Poll::Event(e) => {
                next = next.max(e.index + 1);
                cleared.clear();
                if let Some(s) = log.segments.last_mut() {
                    s.events.push(e);
                }
                continue;
            }
            Poll::Cleared(index) => {
                cleared.insert(member, index);
                if cleared.len() == n {
                    let from = cleared.values().max().copied().unwrap_or(next) + 1;
                    log.restarts += 1;
                    log.segments.push(Segment {
                        from,
                        events: Vec::new(),
                    });
                    next = from;
                    cleared.clear();
                }
            }
            Poll::Failed => {
                log.retries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        conn = None;
        // The next member that has not said 401 yet (any other when all
        // have, which starts a new segment above).
        let others: Vec<usize> = (0..n)
            .filter(|i| *i != member && !cleared.contains_key(i))
            .collect();
        member = match others.len() {
            0 => (member + 1) % n,
            len => others[rng.index(len)],
        };
    }
    log
}

/// Collects `(index → write)` from the acknowledged writes and every
/// watcher's events, refusing two different writes at one index: what
/// [`check`] and [`audit`] hold events to.
pub fn known_writes(
    acked: &[WatchEvent],
    watchers: &[WatchLog],
) -> Result<BTreeMap<u64, WatchEvent>, String> {
    let mut by_index: BTreeMap<u64, WatchEvent> = BTreeMap::new();
    for w in acked {
        if let Some(other) = by_index.insert(w.index, w.clone()) {
            return Err(format!(
                "two acknowledged writes at etcd index {}: {} {:?} and {} {:?}",
                w.index, other.action, other.key, w.action, w.key
            ));
        }
    }
    for (n, log) in watchers.iter().enumerate() {
        for e in log.segments.iter().flat_map(|s| &s.events) {
            match by_index.get(&e.index) {
                Some(w) if w != e => {
                    return Err(format!(
                        "watcher {n} saw {} {:?} at etcd index {}, but {} {:?} was \
                         acknowledged or seen there",
                        e.action, e.key, e.index, w.action, w.key
                    ))
                }
                Some(_) => {}
                None => {
                    by_index.insert(e.index, e.clone());
                }
            }
        }
    }
    Ok(by_index)
}

/// A segment's indexes are `from, from + 1, ...`.
fn contiguous(segment: &Segment) -> Result<(), String> {
    for (position, e) in segment.events.iter().enumerate() {
        let expected = segment.from + position as u64;
        if e.index != expected {
            return Err(format!(
                "event {position} of the segment from {} has index {}, expected {expected}{}",
                segment.from,
                e.index,
                if e.index > expected {
                    format!(" (indexes {expected}..{} skipped)", e.index - 1)
                } else {
                    String::new()
                }
            ));
        }
    }
    Ok(())
}

/// What the watch checks found, when they pass.
#[derive(Debug, Default, Clone, Copy)]
pub struct WatchSummary {
    /// Events over all watchers.
    pub events: usize,
    /// Acknowledged writes no watcher covered (lost to a 401 restart).
    pub uncovered: usize,
}

/// The rules of the module docs, for all `watchers` against `acked`.
pub fn check(watchers: &[WatchLog], acked: &[WatchEvent]) -> Result<WatchSummary, String> {
    let committed = known_writes(acked, watchers)?;
    let all: Vec<WatchEvent> = committed.values().cloned().collect();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (n, log) in watchers.iter().enumerate() {
        for s in &log.segments {
            contiguous(s).map_err(|e| format!("watcher {n}: {e}"))?;
            check_watch(PREFIX, s.from, &s.events, &all)
                .map_err(|e| format!("watcher {n}, segment from {}: {e}", s.from))?;
            if let Some(last) = s.events.last() {
                ranges.push((s.from, last.index));
            }
        }
    }
    let uncovered = acked
        .iter()
        .filter(|w| !ranges.iter().any(|(a, b)| (*a..=*b).contains(&w.index)))
        .count();
    Ok(WatchSummary {
        events: watchers.iter().map(WatchLog::events).sum(),
        uncovered,
    })
}

/// Committed writes no client operation accounts for. An acknowledged
/// write accounts for the event at its index; every other event must be
/// one of the writes whose outcome its client never learnt, on the same key
/// and with the same action, each at most once. More events than such
/// writes means that a write took effect although its client was answered
/// that it did not (a 412 or 404), or took effect twice (a retry applied
/// again), whatever the linearizability check makes of it.
pub fn unattributed(
    known: &BTreeMap<u64, WatchEvent>,
    acked: &[WatchEvent],
    history: &[Op],
) -> Vec<String> {
    let acked: BTreeSet<u64> = acked.iter().map(|w| w.index).collect();
    let mut unknown: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for op in history.iter().filter(|o| o.ret.is_none()) {
        *unknown
            .entry((op.key.as_str(), workload::action(&op.input)))
            .or_default() += 1;
    }
    let mut extra: BTreeMap<(&str, &str), Vec<u64>> = BTreeMap::new();
    for e in known.values().filter(|e| !acked.contains(&e.index)) {
        extra
            .entry((e.key.as_str(), e.action.as_str()))
            .or_default()
            .push(e.index);
    }
    extra
        .into_iter()
        .filter_map(|((key, action), indexes)| {
            let sent = unknown.get(&(key, action)).copied().unwrap_or(0);
            (indexes.len() > sent).then(|| {
                format!(
                    "{} {action} of {key:?} committed without an acknowledgement (etcd indexes \
                     {indexes:?}), but only {sent} {action} of it had an unknown outcome: \
                     a write took effect although its client was answered otherwise, \
                     or took effect twice",
                    indexes.len()
                )
            })
        })
        .collect()
}

/// Reads member `addr`'s event history from `from` up to `to` (one long
/// poll per event, answered from the member's history) and checks it
/// against `known` (acknowledged and watched writes), adding the events it
/// did not know. Returns how many events it compared.
pub fn audit(
    addr: SocketAddr,
    from: u64,
    to: u64,
    known: &mut BTreeMap<u64, WatchEvent>,
    member: &str,
) -> Result<usize, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut conn = Conn::once(addr, POLL_TIMEOUT);
    let mut next = from;
    let mut compared = 0;
    while next <= to {
        if Instant::now() >= deadline {
            return Err(format!(
                "{member}: history audit stuck at index {next} of {from}..={to}"
            ));
        }
        let e = match conn.send(&watch_request(next)).map(|r| parse(&r)) {
            Ok(Poll::Event(e)) => e,
            Ok(Poll::Cleared(index)) if next == from => {
                // The window moved since `from` was computed: begin later.
                next = index.saturating_sub(900).max(next + 1);
                continue;
            }
            Ok(Poll::Cleared(index)) => {
                return Err(format!(
                    "{member}: index {next} left the history (member at {index}) during the audit"
                ))
            }
            _ => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if e.index != next {
            return Err(format!(
                "{member}: history jumps from index {next} to {} ({} {:?})",
                e.index, e.action, e.key
            ));
        }
        match known.get(&e.index) {
            Some(w) if *w != e => {
                return Err(format!(
                    "{member}: history has {} {:?} at index {}, but {} {:?} was \
                     acknowledged or watched there",
                    e.action, e.key, e.index, w.action, w.key
                ))
            }
            Some(_) => {}
            None => {
                known.insert(e.index, e.clone());
            }
        }
        compared += 1;
        next += 1;
    }
    Ok(compared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_lincheck::{Input, Output};

    fn ev(i: u64) -> WatchEvent {
        WatchEvent::new(i, format!("/soak/k{}", i % 5), "set")
    }

    fn log(segments: &[(u64, &[u64])]) -> WatchLog {
        WatchLog {
            segments: segments
                .iter()
                .map(|(from, idx)| Segment {
                    from: *from,
                    events: idx.iter().map(|&i| ev(i)).collect(),
                })
                .collect(),
            ..WatchLog::default()
        }
    }

    #[test]
    fn complete_streams_pass_and_count_coverage() {
        let acked: Vec<WatchEvent> = [1, 2, 4, 9].map(ev).to_vec();
        let w = [
            log(&[(1, &[1, 2, 3, 4]), (8, &[8, 9])]),
            log(&[(1, &[1, 2])]),
        ];
        let s = check(&w, &acked).unwrap();
        assert_eq!(s.events, 8);
        assert_eq!(s.uncovered, 0);
        let s = check(&w[1..], &acked).unwrap();
        assert_eq!(s.uncovered, 2);
    }

    #[test]
    fn a_skipped_index_fails_even_when_nobody_acknowledged_it() {
        let err = check(&[log(&[(1, &[1, 2, 4])])], &[]).unwrap_err();
        assert!(err.contains("indexes 3..3 skipped"), "{err}");
        let err = check(&[log(&[(5, &[6])])], &[]).unwrap_err();
        assert!(err.contains("expected 5"), "{err}");
        let err = check(&[log(&[(1, &[1, 2, 2])])], &[]).unwrap_err();
        assert!(err.contains("expected 3"), "{err}");
    }

    #[test]
    fn a_write_committed_twice_is_found() {
        let sent = |input: Input, ret: Option<u64>| Op {
            client: 1,
            key: "/soak/k1".into(),
            call: 0,
            ret,
            input,
            output: ret.map(|_| Output::NotFound),
        };
        let known: BTreeMap<u64, WatchEvent> = [
            (1, WatchEvent::new(1, "/soak/k1", "delete")),
            (2, WatchEvent::new(2, "/soak/k1", "delete")),
            (3, WatchEvent::new(3, "/soak/k1", "set")),
        ]
        .into();
        let acked = [WatchEvent::new(3, "/soak/k1", "set")];
        // One delete answered (not found), one unknown: only one event is
        // accounted for.
        let history = [sent(Input::Delete, Some(5)), sent(Input::Delete, None)];
        let found = unattributed(&known, &acked, &history);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("[1, 2]"), "{found:?}");
        let history = [sent(Input::Delete, None), sent(Input::Delete, None)];
        assert!(unattributed(&known, &acked, &history).is_empty());
    }

    #[test]
    fn disagreements_are_lost_writes() {
        let acked = vec![WatchEvent::new(2, "/soak/k9", "delete")];
        let err = check(&[log(&[(1, &[1, 2])])], &acked).unwrap_err();
        assert!(err.contains("watcher 0 saw set"), "{err}");
        let twice = vec![ev(3), WatchEvent::new(3, "/soak/k0", "create")];
        let err = check(&[], &twice).unwrap_err();
        assert!(err.contains("two acknowledged writes"), "{err}");
        let mut other = log(&[(1, &[1])]);
        other.segments[0].events[0].action = "update".into();
        let err = check(&[log(&[(1, &[1])]), other], &[]).unwrap_err();
        assert!(err.contains("watcher 1"), "{err}");
    }
}
