//! One at a time per key, within this process: a blob fetched or a layer
//! unpacked by one caller while the others asking for the same one wait
//! for it (and then find it done), instead of each doing it again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

type Locks = Mutex<HashMap<String, Weak<Mutex<()>>>>;

fn locks() -> &'static Locks {
    static LOCKS: OnceLock<Locks> = OnceLock::new();
    LOCKS.get_or_init(Default::default)
}

/// The lock for `key`, shared by everyone who asks for the same key while
/// one of them holds it. Lock it (`.lock()`) for the work, then check
/// whether someone else already did it.
pub fn lock_for(key: &str) -> Arc<Mutex<()>> {
    let mut map = locks().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(l) = map.get(key).and_then(Weak::upgrade) {
        return l;
    }
    map.retain(|_, w| w.strong_count() > 0);
    let l = Arc::new(Mutex::new(()));
    map.insert(key.to_string(), Arc::downgrade(&l));
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_at_a_time_per_key_and_keys_apart() {
        let done = Arc::new(Mutex::new(Vec::new()));
        let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (done, active) = (done.clone(), active.clone());
                std::thread::spawn(move || {
                    // Keys of this test's own: other tests of the crate use
                    // the same process-wide table at the same time.
                    let key = if i % 2 == 0 {
                        "once-test-a"
                    } else {
                        "once-test-b"
                    };
                    let l = lock_for(key);
                    let _g = l.lock().unwrap();
                    let mut d = done.lock().unwrap();
                    if !d.contains(&key) {
                        // Only the first for each key does the work.
                        d.push(key);
                    }
                    drop(d);
                    let n = active.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    assert!(n < 2, "at most one holder per key: {n} others active");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(done.lock().unwrap().len(), 2);
        // Dropped locks are forgotten at the next insert. Only this
        // test's keys are looked at: other tests may hold theirs now.
        let _c = lock_for("once-test-c");
        let map = locks().lock().unwrap();
        assert!(map.contains_key("once-test-c"));
        assert!(!map.contains_key("once-test-a") && !map.contains_key("once-test-b"));
    }
}
