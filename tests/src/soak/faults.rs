//! The faults, injected one at a time by the main thread.
//!
//! [`Injector::inject`] does a fault and undoes it before it returns, so at
//! most one member is ever down, paused or cut off (a quorum of two is left
//! to make progress):
//!
//! - kill-leader, kill-follower: kill -9, restart after 0.2-3 s on the same
//!   data directory (the leader is the one member that says so on
//!   `/v2/stats/self`; when none does, a random member);
//! - stop: SIGSTOP for 1-4 s, then SIGCONT;
//! - partition: the member's link down for 1-4 s, then up;
//! - crash-before, crash-after: kill -9, restart with
//!   `KEEL_ETCD_CRASH_FSYNC=before:N` (`after:N`), N in 1..=30, wait for it
//!   to abort there (10 s at most), restart normally after 0-1 s.
//!
//! While it waits, it reaps members that exit: a member that exits other
//! than at its injected crash point is a bug, recorded in
//! [`Injector::problems`], and restarted so the run can go on. Every action
//! is logged with its time in [`Injector::timeline`].
//!
//! [`monitor`] runs beside it, polling `/v2/stats/self` to know the leader
//! and count leader changes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use keel_kvdiff::Conn;

use super::cluster::{leader_of, Cluster, CrashAt, Exit};
use super::net::Net;
use super::rng::Rng;
use super::Clock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    KillLeader,
    KillFollower,
    Stop,
    Partition,
    CrashBefore,
    CrashAfter,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::KillLeader,
        Fault::KillFollower,
        Fault::Stop,
        Fault::Partition,
        Fault::CrashBefore,
        Fault::CrashAfter,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill-leader",
            Fault::KillFollower => "kill-follower",
            Fault::Stop => "stop",
            Fault::Partition => "partition",
            Fault::CrashBefore => "crash-before",
            Fault::CrashAfter => "crash-after",
        }
    }

    /// The kinds named in `list` (comma-separated [`Fault::name`]s).
    pub fn parse_list(list: &str) -> Result<Vec<Fault>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| {
                Fault::ALL
                    .into_iter()
                    .find(|f| f.name() == n)
                    .ok_or_else(|| format!("no fault kind {n:?}"))
            })
            .collect()
    }

    fn slot(self) -> usize {
        Fault::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// Faults injected, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts(pub [usize; 6]);

impl FaultCounts {
    pub fn get(&self, f: Fault) -> usize {
        self.0[f.slot()]
    }

    pub fn add(&mut self, other: &FaultCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    pub fn total(&self) -> usize {
        self.0.iter().sum()
    }
}

/// What [`monitor`] knows.
#[derive(Default)]
pub struct Leaders {
    pub current: Mutex<Option<usize>>,
    /// Times the leader was seen to be another member than before.
    pub changes: AtomicUsize,
    /// `t=SECONDS leader mI`, one line per leader seen, for the timeline.
    pub seen: Mutex<Vec<String>>,
    pub stop: AtomicBool,
}

impl Leaders {
    pub fn current(&self) -> Option<usize> {
        *self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Polls every member's `/v2/stats/self` until `leaders.stop`.
pub fn monitor(addrs: &[SocketAddr], leaders: &Leaders, clock: Clock) {
    let mut conns: Vec<Conn> = addrs
        .iter()
        .map(|a| Conn::once(*a, Duration::from_millis(300)))
        .collect();
    let mut last = None;
    while !leaders.stop.load(Ordering::Relaxed) {
        let now = leader_of(&mut conns);
        if let Some(l) = now {
            if last.is_some_and(|p| p != l) {
                leaders.changes.fetch_add(1, Ordering::Relaxed);
            }
            if last != Some(l) {
                let line = format!("t={:.3} leader is m{l}", clock.secs());
                leaders
                    .seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(line);
            }
            last = Some(l);
        }
        *leaders.current.lock().unwrap_or_else(|p| p.into_inner()) = now;
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub struct Injector<'a> {
    pub cluster: &'a mut Cluster,
    net: &'a Net,
    leaders: &'a Leaders,
    clock: Clock,
    rng: Rng,
    pub counts: FaultCounts,
    /// Bugs seen while injecting: members that exited on their own.
    pub problems: Vec<String>,
    /// `t=SECONDS what`, one line per action.
    pub timeline: Vec<String>,
    /// Crash points a member did not reach in time (it was killed instead).
    pub unreached: usize,
    partitioned: Option<usize>,
    paused: Option<usize>,
}

impl<'a> Injector<'a> {
    pub fn new(
        cluster: &'a mut Cluster,
        net: &'a Net,
        leaders: &'a Leaders,
        clock: Clock,
        rng: Rng,
    ) -> Injector<'a> {
        Injector {
            cluster,
            net,
            leaders,
            clock,
            rng,
            counts: FaultCounts::default(),
            problems: Vec::new(),
            timeline: Vec::new(),
            unreached: 0,
            partitioned: None,
            paused: None,
        }
    }

    fn log(&mut self, what: String) {
        self.timeline
            .push(format!("t={:.3} {what}", self.clock.secs()));
    }

    /// Restarts member `i` normally, recording a failure to start.
    fn start(&mut self, i: usize, crash: Option<CrashAt>) {
        match self.cluster.spawn(i, crash) {
            Ok(()) => {
                let how = crash.map_or(String::new(), |c| format!(" with crash point {c}"));
                self.log(format!("start m{i}{how}"));
            }
            Err(e) => {
                self.problems.push(e.to_string());
                self.log(format!("start m{i} failed: {e}"));
            }
        }
    }

    /// Reaps exited members; an exit other than `expected`'s injected crash
    /// is a problem, and that member is restarted. Returns whether
    /// `expected` exited.
    fn reap(&mut self, expected: Option<usize>) -> bool {
        let mut seen = false;
        for (i, exit) in self.cluster.reap() {
            match exit {
                Exit::Injected(point) if Some(i) == expected => {
                    seen = true;
                    self.log(format!("m{i} aborted at its crash point {point}"));
                }
                other => {
                    let (status, tail) = match other {
                        Exit::Unexpected { status, tail } => (status, tail),
                        Exit::Injected(point) => (format!("crash point {point}"), String::new()),
                    };
                    self.log(format!("m{i} EXITED UNEXPECTEDLY ({status})"));
                    self.problems.push(format!(
                        "member m{i} exited on its own ({status}); end of its log:\n{tail}"
                    ));
                    if Some(i) == expected {
                        seen = true;
                    } else {
                        self.start(i, None);
                    }
                }
            }
        }
        seen
    }

    /// Sleeps `d`, reaping every 100 ms.
    pub fn sleep(&mut self, d: Duration) {
        let end = Instant::now() + d;
        loop {
            self.reap(None);
            let now = Instant::now();
            if now >= end {
                return;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(100)));
        }
    }

    fn random_member(&mut self) -> usize {
        self.rng.index(self.cluster.len())
    }

    /// Injects `fault` and undoes it (module docs).
    pub fn inject(&mut self, fault: Fault) {
        self.counts.0[fault.slot()] += 1;
        let leader = self.leaders.current();
        match fault {
            Fault::KillLeader | Fault::KillFollower => {
                let i = match (fault, leader) {
                    (Fault::KillLeader, Some(l)) => l,
                    (Fault::KillFollower, Some(l)) => {
                        (l + 1 + self.rng.index(self.cluster.len() - 1)) % self.cluster.len()
                    }
                    _ => self.random_member(),
                };
                let role = if Some(i) == leader {
                    "leader"
                } else {
                    "follower"
                };
                self.cluster.kill(i);
                self.log(format!("{}: kill -9 m{i} ({role})", fault.name()));
                let down = self.rng.millis(200, 3000);
                self.sleep(down);
                self.start(i, None);
            }
            Fault::Stop => {
                let i = self.random_member();
                self.cluster.pause(i);
                self.paused = Some(i);
                self.log(format!("stop: SIGSTOP m{i}"));
                let d = self.rng.millis(1000, 4000);
                self.sleep(d);
                self.cluster.resume(i);
                self.paused = None;
                self.log(format!("SIGCONT m{i}"));
            }
            Fault::Partition => {
                let i = self.random_member();
                if let Err(e) = self.net.partition(i) {
                    self.problems.push(format!("partition m{i}: {e}"));
                    return;
                }
                self.partitioned = Some(i);
                self.log(format!("partition: m{i} link down"));
                let d = self.rng.millis(1000, 4000);
                self.sleep(d);
                self.heal();
            }
            Fault::CrashBefore | Fault::CrashAfter => {
                let i = self.random_member();
                let n = self.rng.range(1, 30);
                let point = if fault == Fault::CrashBefore {
                    CrashAt::BeforeFsync(n)
                } else {
                    CrashAt::AfterFsync(n)
                };
                self.cluster.kill(i);
                self.log(format!("{}: kill -9 m{i}", fault.name()));
                self.start(i, Some(point));
                let deadline = Instant::now() + Duration::from_secs(10);
                let mut crashed = false;
                while !crashed && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                    crashed = self.reap(Some(i));
                }
                if !crashed {
                    self.unreached += 1;
                    self.cluster.kill(i);
                    self.log(format!("m{i} did not reach {point} in 10 s: killed"));
                }
                let d = self.rng.millis(0, 1000);
                self.sleep(d);
                self.start(i, None);
            }
        }
    }

    fn heal(&mut self) {
        if let Some(i) = self.partitioned.take() {
            if let Err(e) = self.net.heal(i) {
                self.problems.push(format!("heal m{i}: {e}"));
            }
            self.log(format!("heal: m{i} link up"));
        }
    }

    /// Everything back: links up, members continued and running.
    pub fn heal_all(&mut self) {
        self.heal();
        if let Some(i) = self.paused.take() {
            self.cluster.resume(i);
        }
        self.reap(None);
        for i in 0..self.cluster.len() {
            if !self.cluster.is_running(i) {
                self.start(i, None);
            }
        }
    }
}
