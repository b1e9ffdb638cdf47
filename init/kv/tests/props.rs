//! Random operation sequences: every successful write takes exactly the next
//! index, failures take none, events' indexes strictly increase, the tree stays
//! consistent, and applying the same sequence twice gives the same results
//! (the determinism Raft replication depends on).

use keel_kv::{EtcdError, Event, SetOptions, Store};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Set {
        key: String,
        opts: SetOptions,
    },
    Post {
        dir: String,
        ttl: Option<u64>,
    },
    Delete {
        key: String,
        dir: bool,
        recursive: bool,
        prev_value: Option<String>,
        prev_index: Option<u64>,
    },
    Get {
        key: String,
        recursive: bool,
    },
    Tick {
        ms: u64,
    },
}

fn key() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "_h", "c"]), 1..4)
        .prop_map(|s| s.join("/"))
}

fn op() -> impl Strategy<Value = Op> {
    let set = (
        key(),
        any::<bool>(),
        prop::option::of(0u64..3),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::sample::select(vec!["", "0", "1"])),
        prop::option::of(0u64..6),
        any::<bool>(),
    )
        .prop_map(
            |(key, dir, ttl, prev_exist, pv, prev_index, refresh)| Op::Set {
                key,
                opts: SetOptions {
                    value: if dir || refresh {
                        String::new()
                    } else {
                        "1".into()
                    },
                    dir,
                    ttl,
                    prev_exist,
                    prev_value: pv.map(String::from),
                    prev_index,
                    refresh,
                },
            },
        );
    prop_oneof![
        4 => set,
        1 => (key(), prop::option::of(0u64..3)).prop_map(|(dir, ttl)| Op::Post { dir, ttl }),
        2 => (key(), any::<bool>(), any::<bool>(), prop::option::of(prop::sample::select(vec!["0", "1"])), prop::option::of(0u64..6))
            .prop_map(|(key, dir, recursive, pv, prev_index)| Op::Delete { key, dir, recursive, prev_value: pv.map(String::from), prev_index }),
        1 => (key(), any::<bool>()).prop_map(|(key, recursive)| Op::Get { key, recursive }),
        1 => (0u64..2500).prop_map(|ms| Op::Tick { ms }),
    ]
}

fn apply(s: &mut Store, now: &mut u64, op: &Op) -> Vec<Result<Event, EtcdError>> {
    match op {
        Op::Set { key, opts } => vec![s.set(key, opts, *now)],
        Op::Post { dir, ttl } => vec![s.create_in_order(dir, "v", false, *ttl, *now)],
        Op::Delete {
            key,
            dir,
            recursive,
            prev_value,
            prev_index,
        } => {
            vec![s.delete(
                key,
                *dir,
                *recursive,
                prev_value.as_deref(),
                *prev_index,
                *now,
            )]
        }
        Op::Get { key, recursive } => vec![s.get(key, *recursive, true, *now)],
        Op::Tick { ms } => {
            *now += ms;
            s.expire(*now).into_iter().map(Ok).collect()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn indexes_increase_and_tree_stays_consistent(ops in prop::collection::vec(op(), 1..60)) {
        let mut s = Store::with_history(16);
        let mut now = 1_000;
        let mut replay = Store::with_history(16);
        let mut replay_now = 1_000;
        let mut last = 0;
        for op in &ops {
            let before = s.index();
            let results = apply(&mut s, &mut now, op);
            prop_assert_eq!(&results, &apply(&mut replay, &mut replay_now, op));
            let mut expected = before;
            for r in &results {
                match r {
                    Ok(e) if !matches!(op, Op::Get { .. }) => {
                        expected += 1;
                        prop_assert_eq!(e.node.modified_index, expected);
                        prop_assert!(e.node.modified_index > last);
                        last = e.node.modified_index;
                    }
                    Ok(e) => prop_assert_eq!(e.etcd_index, before),
                    // Form errors (2xx codes) carry index 0, as in etcd.
                    Err(err) if (200..300).contains(&err.code.code()) => prop_assert_eq!(err.index, 0),
                    Err(err) => prop_assert_eq!(err.index, before),
                }
            }
            prop_assert_eq!(s.index(), expected);
            if let Err(msg) = s.check_consistency() {
                prop_assert!(false, "{}", msg);
            }
            // Anything the watch window answers is at or after the asked index.
            if let Ok(Some(e)) = s.watch("/", true, before.max(1)) {
                prop_assert!(e.index() >= before.max(1));
            }
        }
    }
}
