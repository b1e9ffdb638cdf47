//! Checking what one watcher received against what was committed.
//!
//! A v2 watcher on a prefix (`?wait=true&recursive=true&waitIndex=N`, re-armed at
//! the last received index + 1) must see every committed change under the
//! prefix exactly once, in index order. [`check_watch`] takes the events the
//! watcher received, in the order it received them, and the committed writes
//! (in any order, any keys), and:
//!
//! 1. indexes the committed writes by etcd index, refusing two at one index;
//! 2. for each received event in turn, checks that its key is under the prefix,
//!    that its index is at least the watch's start (the first event) or above
//!    the previous event's (the others), and that the committed write at that
//!    index has the same key and action;
//! 3. checks that no committed write under the prefix lies between the previous
//!    event (or the start) and this one: the watcher would have skipped it.
//!
//! The watcher may stop at any point, so writes after its last event are not
//! required. `committed` must hold every write in the range the watcher covers:
//! a write whose outcome a client never learnt but that did commit shows up as
//! [`WatchError::Uncommitted`] unless the caller adds it (its index can be read
//! from another watcher or the key's final `modifiedIndex`).
//!
//! Keys are compared as etcd prints them (`/dir/key`). A delete of a directory
//! above the prefix, which etcd also sends to the prefix's watchers, is out of
//! scope: the campaigns this serves write values only.

use std::collections::BTreeMap;

/// An event as a watcher received it, or a write as it was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The etcd index of the change (the node's `modifiedIndex`).
    pub index: u64,
    pub key: String,
    /// etcd's `action`: `set`, `create`, `update`, `compareAndSwap`, `delete`,
    /// `compareAndDelete`, `expire`.
    pub action: String,
}

impl WatchEvent {
    pub fn new(index: u64, key: impl Into<String>, action: impl Into<String>) -> WatchEvent {
        WatchEvent {
            index,
            key: key.into(),
            action: action.into(),
        }
    }
}

/// What was wrong with a watcher's events; `position` is the offending event's
/// place in the received list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    #[error("two committed writes claim etcd index {index}")]
    DuplicateCommitted { index: u64 },
    #[error("event {position} has index {index}, before the watch's start index {from}")]
    BeforeStart {
        position: usize,
        index: u64,
        from: u64,
    },
    #[error("event {position} has index {index}, not above the previous event's {previous}")]
    NotIncreasing {
        position: usize,
        index: u64,
        previous: u64,
    },
    #[error("event {position} (index {index}) is for key {key:?}, outside the prefix {prefix:?}")]
    OutsidePrefix {
        position: usize,
        index: u64,
        key: String,
        prefix: String,
    },
    #[error("event {position} (index {index}, key {key:?}) matches no committed write")]
    Uncommitted {
        position: usize,
        index: u64,
        key: String,
    },
    #[error(
        "event {position} at index {index} is {action} {key:?}, \
         but the write committed there is {committed_action} {committed_key:?}"
    )]
    Mismatch {
        position: usize,
        index: u64,
        key: String,
        action: String,
        committed_key: String,
        committed_action: String,
    },
    #[error(
        "the committed write at index {index} ({action} {key:?}) was skipped: \
         event {position} jumped to index {received}"
    )]
    Gap {
        position: usize,
        received: u64,
        index: u64,
        key: String,
        action: String,
    },
}

/// Checks one watcher's `received` events on `prefix`, watched from index
/// `from` (its first `waitIndex`), against every `committed` write; see the
/// module docs for the steps.
pub fn check_watch(
    prefix: &str,
    from: u64,
    received: &[WatchEvent],
    committed: &[WatchEvent],
) -> Result<(), WatchError> {
    let mut by_index = BTreeMap::new();
    for write in committed {
        if by_index.insert(write.index, write).is_some() {
            return Err(WatchError::DuplicateCommitted { index: write.index });
        }
    }
    // The first index the next event may have: nothing under the prefix may be
    // committed between it and that event.
    let mut expected = from;
    for (position, event) in received.iter().enumerate() {
        if event.index < expected {
            return Err(match position {
                0 => WatchError::BeforeStart {
                    position,
                    index: event.index,
                    from,
                },
                _ => WatchError::NotIncreasing {
                    position,
                    index: event.index,
                    previous: expected - 1,
                },
            });
        }
        if !is_under(prefix, &event.key) {
            return Err(WatchError::OutsidePrefix {
                position,
                index: event.index,
                key: event.key.clone(),
                prefix: prefix.to_string(),
            });
        }
        let Some(write) = by_index.get(&event.index) else {
            return Err(WatchError::Uncommitted {
                position,
                index: event.index,
                key: event.key.clone(),
            });
        };
        if write.key != event.key || write.action != event.action {
            return Err(WatchError::Mismatch {
                position,
                index: event.index,
                key: event.key.clone(),
                action: event.action.clone(),
                committed_key: write.key.clone(),
                committed_action: write.action.clone(),
            });
        }
        if let Some((_, missed)) = by_index
            .range(expected..event.index)
            .find(|(_, w)| is_under(prefix, &w.key))
        {
            return Err(WatchError::Gap {
                position,
                received: event.index,
                index: missed.index,
                key: missed.key.clone(),
                action: missed.action.clone(),
            });
        }
        expected = event.index + 1;
    }
    Ok(())
}

/// Whether `key` is the prefix itself or lies below it: `/a` covers `/a` and
/// `/a/b` but not `/ab`; `/` and the empty prefix cover everything.
fn is_under(prefix: &str, key: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || key
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes 1..=6 alternating between `/w/a`, `/other` and `/w/b/c`.
    fn committed() -> Vec<WatchEvent> {
        vec![
            WatchEvent::new(1, "/w/a", "create"),
            WatchEvent::new(2, "/other", "set"),
            WatchEvent::new(3, "/w/b/c", "set"),
            WatchEvent::new(4, "/wx", "set"),
            WatchEvent::new(5, "/w/a", "compareAndSwap"),
            WatchEvent::new(6, "/w/b/c", "delete"),
        ]
    }

    fn events(indices: &[u64]) -> Vec<WatchEvent> {
        let all = committed();
        indices
            .iter()
            .map(|&i| all.iter().find(|w| w.index == i).unwrap().clone())
            .collect()
    }

    #[test]
    fn every_write_under_the_prefix_in_order_passes() {
        assert_eq!(
            check_watch("/w", 1, &events(&[1, 3, 5, 6]), &committed()),
            Ok(())
        );
        // Started later, stopped early, trailing slash on the prefix.
        assert_eq!(
            check_watch("/w/", 2, &events(&[3, 5]), &committed()),
            Ok(())
        );
        assert_eq!(check_watch("/w", 7, &[], &committed()), Ok(()));
        // The root prefix sees everything.
        let all: Vec<u64> = (1..=6).collect();
        assert_eq!(check_watch("/", 1, &events(&all), &committed()), Ok(()));
    }

    #[test]
    fn a_skipped_write_is_a_gap() {
        assert_eq!(
            check_watch("/w", 1, &events(&[1, 5]), &committed()),
            Err(WatchError::Gap {
                position: 1,
                received: 5,
                index: 3,
                key: "/w/b/c".into(),
                action: "set".into(),
            })
        );
        // Also before the first event.
        let err = check_watch("/w", 1, &events(&[3]), &committed()).unwrap_err();
        assert!(matches!(err, WatchError::Gap { index: 1, .. }), "{err}");
    }

    #[test]
    fn repeated_or_reordered_events_are_refused() {
        let err = check_watch("/w", 1, &events(&[1, 3, 3]), &committed()).unwrap_err();
        assert_eq!(
            err,
            WatchError::NotIncreasing {
                position: 2,
                index: 3,
                previous: 3
            }
        );
        let err = check_watch("/w", 1, &events(&[1, 5, 3]), &committed()).unwrap_err();
        assert!(matches!(err, WatchError::Gap { position: 1, .. }), "{err}");
        let err = check_watch("/w", 4, &events(&[3]), &committed()).unwrap_err();
        assert!(
            matches!(err, WatchError::BeforeStart { from: 4, .. }),
            "{err}"
        );
    }

    #[test]
    fn events_must_be_committed_writes_under_the_prefix() {
        let err = check_watch("/w", 1, &events(&[1, 4]), &committed()).unwrap_err();
        assert!(
            matches!(err, WatchError::OutsidePrefix { index: 4, .. }),
            "{err}"
        );
        let made_up = vec![WatchEvent::new(7, "/w/a", "set")];
        let err = check_watch("/w", 1, &made_up, &committed()).unwrap_err();
        assert!(
            matches!(err, WatchError::Uncommitted { index: 7, .. }),
            "{err}"
        );
        let wrong_action = vec![WatchEvent::new(1, "/w/a", "set")];
        let err = check_watch("/w", 1, &wrong_action, &committed()).unwrap_err();
        assert!(
            matches!(err, WatchError::Mismatch { index: 1, .. }),
            "{err}"
        );
        let mut twice = committed();
        twice.push(WatchEvent::new(3, "/w/z", "set"));
        let err = check_watch("/w", 1, &[], &twice).unwrap_err();
        assert_eq!(err, WatchError::DuplicateCommitted { index: 3 });
    }
}
