//! What the soak prints and saves: a row per run, a summary, and the
//! history of a run that did not pass as JSON.

use keel_lincheck::{Input, Op, Output, WatchEvent};
use serde_json::{json, Value};

use super::faults::{Fault, FaultCounts};
use super::run::{Problem, RunConfig, RunReport};
use super::watch::WatchLog;

fn input_json(input: &Input) -> Value {
    match input {
        Input::Get => json!({"op": "get"}),
        Input::Set { value } => json!({"op": "set", "value": value}),
        Input::Create { value } => json!({"op": "create", "value": value}),
        Input::Update { value } => json!({"op": "update", "value": value}),
        Input::Cas { prev, value } => json!({"op": "cas", "prev": prev, "value": value}),
        Input::Delete => json!({"op": "delete"}),
        Input::Cad { prev } => json!({"op": "cad", "prev": prev}),
    }
}

fn output_json(output: &Output) -> Value {
    match output {
        Output::Value(v) => json!({"value": v}),
        Output::Ok => json!("ok"),
        Output::NotFound => json!("not-found"),
        Output::Exists => json!("exists"),
        Output::Failed => json!("failed"),
    }
}

fn op_json(op: &Op) -> Value {
    json!({
        "client": op.client,
        "key": op.key,
        "call_ns": op.call,
        "ret_ns": op.ret,
        "input": input_json(&op.input),
        "output": op.output.as_ref().map(output_json),
    })
}

fn event_json(e: &WatchEvent) -> Value {
    json!([e.index, e.key, e.action])
}

/// Everything a failed run recorded, for replay and analysis: the ops in
/// call order, the acknowledged writes, every watcher's segments, and what
/// was wrong.
pub fn history_json(
    cfg: &RunConfig,
    history: &[Op],
    acked: &[WatchEvent],
    watchers: &[WatchLog],
    report: &RunReport,
) -> Value {
    let mut ops: Vec<&Op> = history.iter().collect();
    ops.sort_by_key(|o| o.call);
    json!({
        "seed": cfg.seed,
        "secs": cfg.secs,
        "replay": format!("KEEL_SOAK_SEED={} KEEL_SOAK_RUNS=1 KEEL_SOAK_SECS={} make soak", cfg.seed, cfg.secs),
        "logs": report.dir,
        "problems": report.problems.iter().map(|(k, m)| json!({"kind": k.name(), "report": m})).collect::<Vec<_>>(),
        "ops": ops.into_iter().map(op_json).collect::<Vec<_>>(),
        "acked": acked.iter().map(event_json).collect::<Vec<_>>(),
        "watchers": watchers.iter().map(|w| json!({
            "restarts": w.restarts,
            "retries": w.retries,
            "segments": w.segments.iter().map(|s| json!({
                "from": s.from,
                "events": s.events.iter().map(event_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// The result cell of a row.
pub fn verdict(r: &RunReport) -> String {
    if r.passed() {
        return "pass".into();
    }
    let mut kinds: Vec<Problem> = r.problems.iter().map(|(k, _)| *k).collect();
    kinds.sort();
    kinds.dedup();
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    if r.failed() {
        format!("FAIL({})", names.join(","))
    } else {
        "UNDECIDED".into()
    }
}

const FAULT_HEADS: [&str; 6] = ["killL", "killF", "stop", "part", "crashB", "crashA"];

pub fn header() {
    println!(
        "{:>4} {:>12}  {:>5} {:>5} {:>4} {:>4} {:>6} {:>6}  {:>7} {:>6} {:>7}  {:>7} {:>8} {:>4} {:>7} {:>7}  {:>7}  result",
        "run", "seed", FAULT_HEADS[0], FAULT_HEADS[1], FAULT_HEADS[2], FAULT_HEADS[3],
        FAULT_HEADS[4], FAULT_HEADS[5], "ops", "unknwn", "ops/s", "leaders", "watch-ev", "401",
        "snap/in", "stall-s", "check-s"
    );
}

fn fault_cells(f: &FaultCounts) -> String {
    let c: Vec<usize> = Fault::ALL.iter().map(|k| f.get(*k)).collect();
    format!(
        "{:>5} {:>5} {:>4} {:>4} {:>6} {:>6}",
        c[0], c[1], c[2], c[3], c[4], c[5]
    )
}

pub fn row(n: usize, r: &RunReport) {
    println!(
        "{:>4} {:>12}  {}  {:>7} {:>6} {:>7.0}  {:>7} {:>8} {:>4} {:>7} {:>7.1}  {:>7.1}  {}",
        n,
        r.seed,
        fault_cells(&r.faults),
        r.ops,
        r.unknown,
        r.ops_per_sec(),
        r.leader_changes,
        r.watch_events,
        r.watch_restarts,
        format!("{}/{}", r.snapshots_built, r.snapshots_installed),
        r.max_stall_secs,
        r.check_secs,
        verdict(r)
    );
}

/// The problems of a run that did not pass, in full.
pub fn details(r: &RunReport) {
    for (kind, what) in &r.problems {
        println!("  seed {} {}: {what}", r.seed, kind.name());
    }
    if let Some(p) = &r.saved {
        println!("  history saved to {}", p.display());
    }
    println!("  member logs and fault timeline in {}", r.dir.display());
}

/// Totals over all runs.
pub fn summary(reports: &[RunReport], secs: u64) {
    let mut faults = FaultCounts::default();
    for r in reports {
        faults.add(&r.faults);
    }
    let sum = |f: fn(&RunReport) -> usize| reports.iter().map(f).sum::<usize>();
    let with = |p: Problem| {
        reports
            .iter()
            .filter(|r| r.problems.iter().any(|(k, _)| *k == p))
            .count()
    };
    let passed = reports.iter().filter(|r| r.passed()).count();
    let failed = reports.iter().filter(|r| r.failed()).count();
    let undecided = reports.len() - passed - failed;
    let ops = sum(|r| r.ops);
    let secs_total: f64 = reports.iter().map(|r| r.workload_secs).sum();
    println!();
    println!("summary: {} run(s) of {secs} s", reports.len());
    println!("{:<34} {:>10}", "figure", "total");
    let line = |name: &str, v: String| println!("{name:<34} {v:>10}");
    for f in Fault::ALL {
        line(&format!("faults: {}", f.name()), faults.get(f).to_string());
    }
    line("faults: all", faults.total().to_string());
    line("crash points not reached", sum(|r| r.unreached).to_string());
    line("ops recorded", ops.to_string());
    line("ops with unknown outcome", sum(|r| r.unknown).to_string());
    line("requests never sent", sum(|r| r.not_sent).to_string());
    line(
        "ops/s (mean over the runs)",
        format!("{:.0}", ops as f64 / secs_total.max(0.001)),
    );
    line("leader changes seen", sum(|r| r.leader_changes).to_string());
    line("watch events checked", sum(|r| r.watch_events).to_string());
    line(
        "watch restarts (401)",
        sum(|r| r.watch_restarts).to_string(),
    );
    line(
        "acked writes no watcher covered",
        sum(|r| r.uncovered).to_string(),
    );
    line("snapshots built", sum(|r| r.snapshots_built).to_string());
    line(
        "snapshots installed from a leader",
        sum(|r| r.snapshots_installed).to_string(),
    );
    line(
        "member history events audited",
        sum(|r| r.audited).to_string(),
    );
    line("runs passed", passed.to_string());
    line("runs undecided", undecided.to_string());
    line("runs failed", failed.to_string());
    for p in [
        Problem::Linearizability,
        Problem::Duplicate,
        Problem::Watch,
        Problem::Replica,
        Problem::Crash,
        Problem::Hang,
        Problem::Answer,
        Problem::Harness,
    ] {
        line(
            &format!("  with {} problems", p.name()),
            with(p).to_string(),
        );
    }
}
