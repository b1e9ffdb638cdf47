//! The KV fault-injection soak (`make soak`): three keel-etcd members, faults
//! injected at random, and every answer checked.
//!
//! One run, from its seed:
//!
//! 1. [`net`]: each member lives in its own network namespace, joined to a
//!    host bridge by a veth pair, so a partition is real: the member's link
//!    goes down and every packet to or from it is lost, as on a cut cable.
//!    The namespaces and the bridge are made once per soak and reused by
//!    every run.
//! 2. [`cluster`]: the members start with fresh data directories and a fresh
//!    cluster token, each through `ip netns exec`; their stderr goes to
//!    target/soak/SEED/mN.log.
//! 3. [`workload`]: client threads on the host send random etcd v2 operations
//!    on a few keys under `/soak/`, each to a random member, and record every
//!    operation with its call and return times for [`keel_lincheck`]. A
//!    timeout, a broken connection or a 5xx is an unknown outcome; an
//!    operation whose connection could not even be opened was never sent and
//!    is not recorded.
//! 4. [`watch`]: watcher threads follow `/soak` with `wait=true` long polls,
//!    re-armed at the last index + 1 on any member after an error.
//! 5. [`faults`]: the main thread injects one fault at a time at random
//!    intervals (kill -9 of the leader or a follower, SIGSTOP, a partition,
//!    a restart that aborts right before or after an fsync) and undoes it
//!    before the next, so that a quorum exists most of the time. It also
//!    watches for a member exiting on its own: only injected crashes may.
//! 6. [`run`]: at the end, everything is healed, the cluster must elect a
//!    leader, a final quorum read of every key joins the history, the
//!    watchers catch up to the last acknowledged write, and every member's
//!    event history is compared with what was acknowledged. Then the checks:
//!    the history is linearizable key by key, and the watch streams are
//!    ordered, gap-free and agree with every acknowledged write.
//!
//! The fault schedule follows from the seed; client timing does not, so a
//! replay (`KEEL_SOAK_SEED=S KEEL_SOAK_RUNS=1`) injects the same faults into a
//! similar, not identical, history.

pub mod cleanup;
pub mod cluster;
pub mod faults;
pub mod net;
pub mod report;
pub mod rng;
pub mod run;
pub mod watch;
pub mod workload;

use std::time::Instant;

/// The keys every client works on.
pub const KEYS: [&str; 5] = ["/soak/k0", "/soak/k1", "/soak/k2", "/soak/k3", "/soak/k4"];
/// The directory the watchers follow and every key lives under.
pub const PREFIX: &str = "/soak";
/// Members per cluster.
pub const MEMBERS: usize = 3;
/// The client and peer ports of every member, each on its own address.
pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;

/// The one clock of a run: nanoseconds since it began, for every thread's
/// timestamps.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Clock {
        Clock(Instant::now())
    }

    pub fn ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }

    pub fn secs(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}
