//! `make soak`: keel-etcd's fault-injection campaign (the steps are in
//! `keel_vmtests::soak`). Needs root, for network namespaces.
//!
//! Environment:
//! - `KEEL_ETCD_BIN`: the keel-etcd binary (`make soak` builds and sets it);
//! - `KEEL_SOAK_RUNS` (50), `KEEL_SOAK_SECS` (20): runs, and seconds of
//!   workload and faults per run;
//! - `KEEL_SOAK_SEED`: the first run's seed (default: from the clock); run N
//!   uses seed + N, and a run is replayed with its seed and
//!   `KEEL_SOAK_RUNS=1`;
//! - `KEEL_SOAK_CLIENTS` (8), `KEEL_SOAK_WATCHERS` (2);
//! - `KEEL_SOAK_SNAPSHOT_COUNT` (1000): the members' `--snapshot-count`,
//!   low so that snapshots, compaction and snapshot installs happen;
//! - `KEEL_SOAK_FAULTS`: the fault kinds to choose from, comma-separated
//!   (default all: kill-leader, kill-follower, stop, partition,
//!   crash-before, crash-after);
//! - `KEEL_SOAK_KEEP=1`: keep every run's logs, not only a failed run's;
//! - `KEEL_SOAK_CHECK_SECS` (120): the linearizability check's time budget
//!   per key.
//!
//! A quick smoke: `KEEL_SOAK_RUNS=1 KEEL_SOAK_SECS=8 make soak`.
//!
//! Prints a row per run and a summary. Exits 0 when every run passed, 1
//! when one failed (a violation, a watch error, a crash nobody injected, a
//! hang), 3 when none failed but a check was undecided, 2 when it cannot
//! run (not root, no binary, no network namespaces).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keel_lincheck::{Budget, DEFAULT_STEPS_PER_KEY};
use keel_vmtests::bench::env_or;
use keel_vmtests::root;
use keel_vmtests::soak::faults::Fault;
use keel_vmtests::soak::{cleanup, net, report, run, MEMBERS};

fn cannot_run(why: String) -> ExitCode {
    eprintln!("keel-kv-soak: {why}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    if !nix::unistd::geteuid().is_root() {
        return cannot_run(
            "needs root: each member runs in its own network namespace (run `make soak` as root)"
                .into(),
        );
    }
    if let Err(e) = cleanup::install() {
        return cannot_run(format!("install the signal and panic cleanup: {e}"));
    }
    let Some(bin) = std::env::var_os("KEEL_ETCD_BIN").map(PathBuf::from) else {
        return cannot_run(
            "KEEL_ETCD_BIN is unset (make soak builds keel-etcd and sets it)".into(),
        );
    };
    if !bin.is_file() {
        return cannot_run(format!("KEEL_ETCD_BIN={} is not a file", bin.display()));
    }
    let runs: u64 = env_or("KEEL_SOAK_RUNS", 50).max(1);
    let secs: u64 = env_or("KEEL_SOAK_SECS", 20).max(1);
    let clock_seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| {
        d.as_secs() % 1_000_000 * 1000 + u64::from(d.subsec_millis())
    });
    let seed: u64 = env_or("KEEL_SOAK_SEED", clock_seed);
    let check_secs: u64 = env_or("KEEL_SOAK_CHECK_SECS", 120);
    let faults = match std::env::var("KEEL_SOAK_FAULTS") {
        Ok(list) => match Fault::parse_list(&list) {
            Ok(f) if !f.is_empty() => f,
            Ok(_) => return cannot_run("KEEL_SOAK_FAULTS names no fault kind".into()),
            Err(e) => return cannot_run(format!("KEEL_SOAK_FAULTS: {e}")),
        },
        Err(_) => Fault::ALL.to_vec(),
    };
    let base = run::RunConfig {
        seed,
        secs,
        bin,
        snapshot_count: env_or("KEEL_SOAK_SNAPSHOT_COUNT", 1000u64).max(10),
        clients: env_or("KEEL_SOAK_CLIENTS", 8usize).max(1),
        watchers: env_or("KEEL_SOAK_WATCHERS", 2usize).max(1),
        out: root().join("target/soak"),
        keep: env_or("KEEL_SOAK_KEEP", 0u8) == 1,
        budget: Budget {
            steps_per_key: DEFAULT_STEPS_PER_KEY,
            time: Some(Duration::from_secs(check_secs)),
        },
        faults,
    };

    for stale in net::remove_stale() {
        eprintln!("keel-kv-soak: removed {stale}, left by a soak that is gone");
    }
    let net = match net::Net::create(MEMBERS) {
        Ok(n) => n,
        Err(e) => return cannot_run(format!("set up the network namespaces: {e}")),
    };
    println!(
        "keel KV soak: {runs} run(s) of {secs} s, {} clients, {} watchers, {MEMBERS} members \
         in namespaces {}..{} on {}/24; first seed {seed}",
        base.clients,
        base.watchers,
        net.namespace(0),
        net.namespace(MEMBERS - 1),
        net.host_ip,
    );
    println!(
        "replay a run: KEEL_SOAK_SEED=<seed> KEEL_SOAK_RUNS=1 KEEL_SOAK_SECS={secs} make soak"
    );
    println!();
    report::header();
    let mut reports = Vec::new();
    for n in 0..runs {
        let cfg = run::RunConfig {
            seed: seed + n,
            ..base.clone()
        };
        let r = run::run(&net, &cfg);
        report::row(n as usize + 1, &r);
        if !r.passed() {
            report::details(&r);
        }
        reports.push(r);
    }
    drop(net);
    report::summary(&reports, secs);
    if reports.iter().any(|r| r.failed()) {
        ExitCode::from(1)
    } else if reports.iter().any(|r| !r.passed()) {
        println!("some checks were undecided (budget exhausted): not a pass");
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}
