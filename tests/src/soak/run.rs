//! One run of the soak (steps 2..6 of the module docs of [`super`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keel_kvdiff::{Conn, Request};
use keel_lincheck::{check_key, Budget, CheckError, Op, WatchEvent};

use super::cluster::{tail, Cluster};
use super::faults::{monitor, Fault, FaultCounts, Injector, Leaders};
use super::net::Net;
use super::report;
use super::rng::Rng;
use super::watch::{self, WatchLog, WatchShared};
use super::workload::{self, ClientLog, Shared, REQUEST_TIMEOUT};
use super::{Clock, KEYS, PREFIX};

/// How a run is set up.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub seed: u64,
    /// How long the workload and the faults last.
    pub secs: u64,
    pub bin: PathBuf,
    /// keel-etcd's `--snapshot-count`: low, so that snapshots, log
    /// compaction and snapshot installs happen during the faults.
    pub snapshot_count: u64,
    pub clients: usize,
    pub watchers: usize,
    /// target/soak: logs go to `out/SEED/`, a failed history to
    /// `out/SEED.json`.
    pub out: PathBuf,
    /// Keep `out/SEED/` when the run passes.
    pub keep: bool,
    /// The search budget of the linearizability check, per key.
    pub budget: Budget,
    /// The kinds of fault to choose from.
    pub faults: Vec<Fault>,
}

/// What went wrong, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Problem {
    /// A key's history is not linearizable (or was recorded wrongly).
    Linearizability,
    /// A watch stream skipped, reordered or contradicted a write.
    Watch,
    /// A write took effect that no client op accounts for (answered as
    /// failed, or applied twice).
    Duplicate,
    /// A member's event history disagrees with what was acknowledged.
    Replica,
    /// A member exited without an injected fault.
    Crash,
    /// The cluster did not recover after the faults were undone.
    Hang,
    /// An answer that fits no etcd v2 case.
    Answer,
    /// The soak itself could not do its job (setup).
    Harness,
    /// The checker's budget ran out on a key: neither pass nor fail.
    Undecided,
}

impl Problem {
    pub fn name(self) -> &'static str {
        match self {
            Problem::Linearizability => "linearizability",
            Problem::Watch => "watch",
            Problem::Duplicate => "duplicate",
            Problem::Replica => "replica",
            Problem::Crash => "crash",
            Problem::Hang => "hang",
            Problem::Answer => "answer",
            Problem::Harness => "harness",
            Problem::Undecided => "undecided",
        }
    }
}

/// What one run did and found.
#[derive(Debug, Default)]
pub struct RunReport {
    pub seed: u64,
    pub faults: FaultCounts,
    /// Operations recorded (the final reads included).
    pub ops: usize,
    pub unknown: usize,
    /// Requests never sent (no connection).
    pub not_sent: usize,
    /// Seconds the workload ran.
    pub workload_secs: f64,
    /// Longest time without any answered operation during the workload.
    pub max_stall_secs: f64,
    pub leader_changes: usize,
    pub watch_events: usize,
    /// Watch restarts after every member answered 401.
    pub watch_restarts: usize,
    /// Acknowledged writes no watcher covered (because of those restarts).
    pub uncovered: usize,
    /// Events compared by the end-of-run audit of every member's history.
    pub audited: usize,
    /// Crash points not reached in time.
    pub unreached: usize,
    /// Snapshots the members built, and installed from a leader (their
    /// logs say so).
    pub snapshots_built: usize,
    pub snapshots_installed: usize,
    pub check_secs: f64,
    /// Empty: the run passed.
    pub problems: Vec<(Problem, String)>,
    /// Where the history was saved (failed or undecided runs).
    pub saved: Option<PathBuf>,
    pub dir: PathBuf,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// Every problem but an undecided check is a failure.
    pub fn failed(&self) -> bool {
        self.problems.iter().any(|(p, _)| *p != Problem::Undecided)
    }

    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.workload_secs.max(0.001)
    }

    fn problem(&mut self, kind: Problem, what: impl Into<String>) {
        self.problems.push((kind, what.into()));
    }
}

/// The longest stretch of `[from, to]` (ns) without an answered op: when
/// it began and how long it was (ns).
fn max_stall(ops: &[Op], from: u64, to: u64) -> (u64, u64) {
    let mut rets: Vec<u64> = ops
        .iter()
        .filter_map(|o| o.ret)
        .filter(|r| (from..=to).contains(r))
        .collect();
    rets.sort_unstable();
    let mut last = from;
    let mut max = (from, 0);
    for r in rets.into_iter().chain([to]) {
        if r.saturating_sub(last) > max.1 {
            max = (last, r - last);
        }
        last = r;
    }
    max
}

/// The SECONDS of a `t=SECONDS ...` timeline line.
fn time_of(line: &str) -> f64 {
    line.strip_prefix("t=")
        .and_then(|r| r.split(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or(0.0)
}

/// The etcd index (`X-Etcd-Index`) of a quorum read on some member.
fn current_index(addrs: &[std::net::SocketAddr]) -> Option<u64> {
    addrs.iter().find_map(|a| {
        Conn::once(*a, REQUEST_TIMEOUT)
            .send(&Request::new("GET", &format!("/v2/keys{PREFIX}")))
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| r.etcd_index())
    })
}

/// What a run recorded, for the checks.
struct Recorded {
    history: Vec<Op>,
    acked: Vec<WatchEvent>,
    watchers: Vec<WatchLog>,
    timeline: Vec<String>,
}

/// One run; never panics on what the cluster does, only reports it.
pub fn run(net: &Net, cfg: &RunConfig) -> RunReport {
    let dir = cfg.out.join(cfg.seed.to_string());
    let mut report = RunReport {
        seed: cfg.seed,
        dir: dir.clone(),
        ..RunReport::default()
    };
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        report.problem(Problem::Harness, format!("create {}: {e}", dir.display()));
        return report;
    }
    let clock = Clock::start();
    let token = format!("ksoak-{}-{}", std::process::id(), cfg.seed);
    let mut cluster = Cluster::new(&cfg.bin, cfg.snapshot_count, net, &dir, &token, clock);
    let recorded = drive(net, cfg, &mut cluster, clock, &mut report);
    let logs: Vec<PathBuf> = cluster.members.iter().map(|m| m.log.clone()).collect();
    drop(cluster);
    (report.snapshots_built, report.snapshots_installed) = count_snapshots(&logs);
    if let Some(rec) = recorded {
        let t = Instant::now();
        verify(&rec, cfg, &mut report);
        report.check_secs = t.elapsed().as_secs_f64();
        let _ = std::fs::write(dir.join("faults.log"), rec.timeline.join("\n") + "\n");
        if !report.passed() {
            let path = cfg.out.join(format!("{}.json", cfg.seed));
            let json = report::history_json(cfg, &rec.history, &rec.acked, &rec.watchers, &report);
            match std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap_or_default()) {
                Ok(()) => report.saved = Some(path),
                Err(e) => report.problem(Problem::Harness, format!("save {}: {e}", path.display())),
            }
        }
    }
    if report.passed() && !cfg.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    report
}

fn start_cluster(cluster: &mut Cluster, report: &mut RunReport) -> bool {
    for i in 0..cluster.len() {
        if let Err(e) = cluster.spawn(i, None) {
            report.problem(Problem::Harness, e.to_string());
            return false;
        }
    }
    if let Err(sick) = cluster.wait_healthy(Duration::from_secs(30)) {
        let logs: Vec<String> = sick
            .iter()
            .map(|&i| format!("m{i}:\n{}", tail(&cluster.members[i].log, 20)))
            .collect();
        report.problem(
            Problem::Hang,
            format!(
                "a fresh cluster was not healthy within 30 s (unhealthy: {sick:?})\n{}",
                logs.join("\n")
            ),
        );
        return false;
    }
    true
}

/// Starts the cluster, runs clients, watchers and faults, heals, and
/// collects the records; `None` when the cluster never came up.
fn drive(
    net: &Net,
    cfg: &RunConfig,
    cluster: &mut Cluster,
    clock: Clock,
    report: &mut RunReport,
) -> Option<Recorded> {
    if !start_cluster(cluster, report) {
        return None;
    }
    let addrs = cluster.client_addrs();
    let shared = Shared {
        clock,
        addrs: addrs.clone(),
        stop: AtomicBool::new(false),
    };
    let wshared = WatchShared {
        addrs: addrs.clone(),
        stop: AtomicBool::new(false),
        target: AtomicU64::new(u64::MAX),
    };
    let leaders = Leaders::default();
    let mut rng = Rng::new(cfg.seed);
    std::thread::scope(|s| {
        let monitor_thread = s.spawn(|| monitor(&addrs, &leaders, clock));
        let watcher_threads: Vec<_> = (0..cfg.watchers)
            .map(|w| {
                let rng = Rng::fork(cfg.seed, 1000 + w as u64);
                let wshared = &wshared;
                s.spawn(move || watch::watcher(rng, wshared))
            })
            .collect();
        let client_threads: Vec<_> = (0..cfg.clients)
            .map(|c| {
                let rng = Rng::fork(cfg.seed, c as u64);
                let shared = &shared;
                s.spawn(move || workload::client(c as u64, rng, shared))
            })
            .collect();

        // The faults, for the run's duration.
        let started = clock.ns();
        let end = Instant::now() + Duration::from_secs(cfg.secs);
        let fault_rng = Rng::fork(cfg.seed, 2000);
        let mut injector = Injector::new(cluster, net, &leaders, clock, fault_rng);
        loop {
            let gap = rng.millis(1000, 3000);
            let now = Instant::now();
            if now + gap >= end {
                injector.sleep(end.saturating_duration_since(now));
                break;
            }
            injector.sleep(gap);
            let fault = cfg.faults[rng.index(cfg.faults.len())];
            injector.inject(fault);
        }
        injector.heal_all();
        shared.stop.store(true, Ordering::Relaxed);
        let mut logs: Vec<ClientLog> = client_threads
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        let stopped = clock.ns();
        report.workload_secs = (stopped - started) as f64 / 1e9;

        // Recovery: a leader, every member healthy, the final reads.
        if let Err(sick) = injector.cluster.wait_healthy(Duration::from_secs(30)) {
            let logs: Vec<String> = sick
                .iter()
                .map(|&i| format!("m{i}:\n{}", tail(&injector.cluster.members[i].log, 30)))
                .collect();
            report.problem(
                Problem::Hang,
                format!(
                    "members {sick:?} not healthy 30 s after every fault was undone\n{}",
                    logs.join("\n")
                ),
            );
        }
        let mut finals = ClientLog::default();
        for key in KEYS {
            if !workload::final_read(&shared, key, 999_000_000, &mut finals) {
                report.problem(
                    Problem::Hang,
                    format!("no member answered the final read of {key}"),
                );
            }
        }
        logs.push(finals);

        // The watchers catch up to the last acknowledged write.
        let last_acked = logs
            .iter()
            .flat_map(|l| &l.acked)
            .map(|w| w.index)
            .max()
            .unwrap_or(0);
        wshared.target.store(last_acked, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(20);
        while watcher_threads.iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
            injector.sleep(Duration::from_millis(100));
        }
        wshared.stop.store(true, Ordering::Relaxed);
        let watchers: Vec<WatchLog> = watcher_threads
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        for (n, w) in watchers.iter().enumerate() {
            // A segment begun after a 401 covers from its start on.
            let reached = w.segments.last().map_or(0, |s| {
                s.events
                    .last()
                    .map_or(s.from.saturating_sub(1), |e| e.index)
            });
            if reached < last_acked {
                report.problem(
                    Problem::Hang,
                    format!(
                        "watcher {n} reached index {reached} only, 20 s after the workload \
                         (last acknowledged write: {last_acked})"
                    ),
                );
            }
        }

        // Every member's own history of the last events.
        let mut audited = 0;
        if let Some(now) = current_index(&addrs) {
            let acked: Vec<WatchEvent> = logs.iter().flat_map(|l| l.acked.clone()).collect();
            if let Ok(mut known) = watch::known_writes(&acked, &watchers) {
                let from = now.saturating_sub(900).max(1);
                for (i, a) in addrs.iter().enumerate() {
                    match watch::audit(*a, from, now, &mut known, &format!("m{i}")) {
                        Ok(n) => audited += n,
                        Err(e) => report.problem(Problem::Replica, e),
                    }
                }
            }
        }
        report.audited = audited;

        leaders.stop.store(true, Ordering::Relaxed);
        let _ = monitor_thread.join();
        report.leader_changes = leaders.changes.load(Ordering::Relaxed);
        report.faults = injector.counts;
        report.unreached = injector.unreached;
        for p in std::mem::take(&mut injector.problems) {
            let kind = if p.starts_with("member m") {
                Problem::Crash
            } else {
                Problem::Harness
            };
            report.problem(kind, p);
        }
        let mut timeline = std::mem::take(&mut injector.timeline);
        timeline.extend(std::mem::take(
            &mut *leaders.seen.lock().unwrap_or_else(|p| p.into_inner()),
        ));

        let mut history = Vec::new();
        let mut acked = Vec::new();
        for l in logs {
            report.not_sent += l.not_sent;
            for why in l.unexpected {
                report.problem(Problem::Answer, why);
            }
            history.extend(l.ops);
            acked.extend(l.acked);
        }
        let (stall_at, stall) = max_stall(&history, started, stopped);
        report.max_stall_secs = stall as f64 / 1e9;
        timeline.push(format!(
            "t={:.3} longest stretch without an answer begins ({:.3} s)",
            stall_at as f64 / 1e9,
            report.max_stall_secs
        ));
        timeline.sort_by(|a, b| time_of(a).total_cmp(&time_of(b)));
        Some(Recorded {
            history,
            acked,
            watchers,
            timeline,
        })
    })
}

/// The checks: linearizability per key, then the watch streams.
fn verify(rec: &Recorded, cfg: &RunConfig, report: &mut RunReport) {
    report.ops = rec.history.len();
    report.unknown = rec.history.iter().filter(|o| o.ret.is_none()).count();
    let mut keys: BTreeMap<&str, usize> = BTreeMap::new();
    for op in &rec.history {
        *keys.entry(op.key.as_str()).or_default() += 1;
    }
    for key in keys.keys() {
        match check_key(&rec.history, key, &cfg.budget) {
            Ok(_) => {}
            Err(e @ CheckError::Undecided { .. }) => {
                report.problem(Problem::Undecided, e.to_string())
            }
            Err(e) => report.problem(Problem::Linearizability, e.to_string()),
        }
    }
    if let Ok(known) = watch::known_writes(&rec.acked, &rec.watchers) {
        for found in watch::unattributed(&known, &rec.acked, &rec.history) {
            report.problem(Problem::Duplicate, found);
        }
    }
    match watch::check(&rec.watchers, &rec.acked) {
        Ok(s) => {
            report.watch_events = s.events;
            report.uncovered = s.uncovered;
        }
        Err(e) => {
            report.watch_events = rec.watchers.iter().map(WatchLog::events).sum();
            report.problem(Problem::Watch, e);
        }
    }
    report.watch_restarts = rec.watchers.iter().map(|w| w.restarts).sum();
}

/// Snapshots built and installed, from the members' logs.
fn count_snapshots(logs: &[PathBuf]) -> (usize, usize) {
    let mut counts = (0, 0);
    for text in logs.iter().filter_map(|l| std::fs::read_to_string(l).ok()) {
        for line in text.lines() {
            if line.starts_with("keel-etcd: snapshot built ") {
                counts.0 += 1;
            } else if line.starts_with("keel-etcd: snapshot installed ") {
                counts.1 += 1;
            }
        }
    }
    counts
}
