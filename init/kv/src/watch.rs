//! The window of recent events that v2 watches (`?wait=true&waitIndex=N`) are
//! answered from.
//!
//! 1. Every recorded event is appended in index order; once the window holds
//!    `capacity` events the oldest is dropped and `start_index` moves past it.
//! 2. A scan from `wait_index` refuses (`401`) when `wait_index` is below the
//!    oldest retained event after something was dropped: the answer may have
//!    been dropped with it.
//! 3. Otherwise it returns the first event at or after `wait_index` whose key is
//!    the watched key, or (recursive) lies under it, or that deleted/expired a
//!    directory containing the watched key. None means "wait for the next".
//!    Like etcd's history scan, hidden (`_`) keys are not filtered here; etcd
//!    filters them only for watchers woken live, which the server will do.

use std::collections::VecDeque;

use crate::error::{ErrorCode, EtcdError};
use crate::store::{Action, Event};

/// etcd's default history window.
pub const DEFAULT_HISTORY: usize = 1000;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EventHistory {
    events: VecDeque<Event>,
    capacity: usize,
    /// Whether an event has been dropped; until then every index is reachable.
    dropped: bool,
}

impl EventHistory {
    pub fn new(capacity: usize) -> Self {
        EventHistory {
            events: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: false,
        }
    }

    pub fn push(&mut self, event: Event) {
        if self.events.len() == self.capacity {
            self.events.pop_front();
            self.dropped = true;
        }
        self.events.push_back(event);
    }

    /// The index of the oldest retained event (0 when empty).
    pub fn start_index(&self) -> u64 {
        self.events.front().map_or(0, Event::index)
    }

    /// Step 2 and 3 of the module docs; `current` is the store's index, which
    /// the `401` error reports.
    pub fn scan(
        &self,
        key: &str,
        recursive: bool,
        wait_index: u64,
        current: u64,
    ) -> Result<Option<Event>, EtcdError> {
        let start = self.start_index();
        if self.dropped && wait_index < start {
            return Err(EtcdError::new(
                ErrorCode::EventIndexCleared,
                format!("the requested history has been cleared [{start}/{wait_index}]"),
                current,
            ));
        }
        let prefix = if key == "/" {
            "/".to_string()
        } else {
            format!("{key}/")
        };
        let first = self.events.partition_point(|e| e.index() < wait_index);
        Ok(self
            .events
            .iter()
            .skip(first)
            .find(|e| matches(e, key, &prefix, recursive))
            .cloned())
    }
}

fn matches(e: &Event, key: &str, prefix: &str, recursive: bool) -> bool {
    let ek = e.node.key.as_str();
    if ek == key {
        return true;
    }
    if recursive && ek.starts_with(prefix) {
        return true;
    }
    // A watcher on /a/b hears about `rm -r /a`: its key went with the directory.
    matches!(e.action, Action::Delete | Action::Expire)
        && e.prev_node
            .as_ref()
            .is_some_and(|p| p.dir && key.starts_with(&format!("{}/", p.key)))
}

#[cfg(test)]
mod tests {
    use crate::store::{SetOptions, Store};

    fn put(s: &mut Store, k: &str, v: &str) {
        s.set(
            k,
            &SetOptions {
                value: v.into(),
                ..Default::default()
            },
            0,
        )
        .unwrap();
    }

    #[test]
    fn returns_first_matching_event_at_or_after_index() {
        let mut s = Store::new();
        put(&mut s, "/a", "1");
        put(&mut s, "/b", "1");
        put(&mut s, "/a", "2");
        assert_eq!(
            s.watch("/a", false, 2)
                .unwrap()
                .unwrap()
                .node
                .modified_index,
            3
        );
        assert_eq!(
            s.watch("/a", false, 1)
                .unwrap()
                .unwrap()
                .node
                .modified_index,
            1
        );
        assert_eq!(s.watch("/a", false, 4).unwrap(), None);
        assert_eq!(
            s.watch("/a", false, 0).unwrap(),
            None,
            "no waitIndex waits for the next change"
        );
    }

    #[test]
    fn recursive_sees_subtree_but_not_siblings() {
        let mut s = Store::new();
        put(&mut s, "/dx/y", "1");
        put(&mut s, "/d/_h", "1");
        put(&mut s, "/d/x/y", "1");
        assert_eq!(s.watch("/d", false, 1).unwrap(), None);
        // etcd's history scan does not hide `_` keys (checked against etcd 3.4).
        assert_eq!(s.watch("/d", true, 1).unwrap().unwrap().node.key, "/d/_h");
        assert_eq!(s.watch("/d", true, 3).unwrap().unwrap().node.key, "/d/x/y");
        assert_eq!(s.watch("/", true, 1).unwrap().unwrap().node.key, "/dx/y");
    }

    #[test]
    fn deleting_a_parent_dir_wakes_child_watchers() {
        let mut s = Store::new();
        put(&mut s, "/d/x", "1");
        s.delete("/d", false, true, None, None, 0).unwrap();
        let e = s.watch("/d/x", false, 2).unwrap().unwrap();
        assert_eq!(e.node.key, "/d");
    }

    #[test]
    fn outdated_index_is_401() {
        let mut s = Store::with_history(3);
        for i in 0..5 {
            put(&mut s, "/a", &i.to_string());
        }
        let e = s.watch("/a", false, 2).unwrap_err();
        assert_eq!(e.code.code(), 401);
        assert_eq!(
            e.code.message(),
            "The event in requested index is outdated and cleared"
        );
        assert_eq!(
            (e.cause.as_str(), e.index),
            ("the requested history has been cleared [3/2]", 5)
        );
        assert_eq!(
            s.watch("/a", false, 3)
                .unwrap()
                .unwrap()
                .node
                .value
                .as_deref(),
            Some("2")
        );
    }
}
