//! `make bench-kv` (also the last part of `make bench`): keel's etcd v2 KV
//! (`keel-etcd`) against Debian's etcd 3.4, on the host, under wrk.
//!
//! 1. For each run (KEEL_KV_BENCH_RUNS, default 3), cluster size (1, 3),
//!    connection count (1, 64) and system, in that order, so that both
//!    systems see the same machine within a few seconds of each other: start
//!    a fresh cluster with the same etcd flags for both (`--enable-v2`
//!    included), its members on loopback ports and their data dirs under
//!    target/ (the disk the numbers are about), and wait until every member
//!    answers `GET /health` (`GET /v2/keys` when it has no /health).
//!    Nothing is preloaded.
//! 2. Find the leader (`GET /v2/stats/self` with `state` "StateLeader"; the
//!    first member when none says so) and run wrk against its client URL for
//!    KEEL_KV_BENCH_SECS (default 10) seconds with `-t min(conns, 2) -c
//!    conns --latency` and tests/data/kv-put.lua: PUTs of a ~100-byte value
//!    to /v2/keys/bench/k<N>, N cycling over 1000 keys. The script's `done()`
//!    prints requests/s, p50, p99 and the count of failed requests.
//! 3. When wrk is done, VmRSS and VmHWM of every member from
//!    /proc/PID/status (the leader's, and the sum), then kill the cluster.
//!
//! Equal durability: etcd fsyncs its WAL before it acknowledges a write, by
//! default; no flag here relaxes that (no `--unsafe-no-fsync`), and keel
//! gets the same flags.
//!
//! keel is the binary at KEEL_ETCD_BIN (`make bench-kv` builds it); when that
//! is unset, only etcd runs. Prints medians (min-max) per configuration, the
//! keel/etcd ratios next to their targets, and writes target/bench/kv.json.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_api::{Client, Endpoint};
use keel_boot::procfs::kb_field;
use keel_vmtests::bench::{env_or, write_json, Series};
use keel_vmtests::{free_port, root, Scratch};

const ETCD: &str = "/usr/bin/etcd";
const NODES: [usize; 2] = [1, 3];
const CONNS: [usize; 2] = [1, 64];
/// The prefix of the line tests/data/kv-put.lua's `done()` prints.
const WRK_LINE: &str = "kv-bench: ";

struct System {
    name: &'static str,
    bin: PathBuf,
}

/// One member of a cluster; its process dies with it.
struct Member {
    client_port: u16,
    child: Child,
    log: PathBuf,
}

impl Member {
    fn client(&self) -> Client {
        let mut c = Client::new(Endpoint::Tcp(([127, 0, 0, 1], self.client_port).into()));
        c.timeout = Duration::from_secs(2);
        c
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Panic with the end of the member's log if it has exited.
    fn assert_alive(&mut self, system: &str) {
        if let Ok(Some(st)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "{system} member on port {} exited ({st}); end of {}:\n{}",
                self.client_port,
                self.log.display(),
                tail.join("\n")
            );
        }
    }

    /// `GET /health` answers 200 with `health` true (or, when the server
    /// has no /health, `GET /v2/keys` answers 200).
    fn healthy(&self) -> bool {
        let c = self.client();
        match c.request_blocking(hyper::Method::GET, "/health", Vec::new()) {
            Ok((s, _)) if s == hyper::StatusCode::NOT_FOUND => c
                .request_blocking(hyper::Method::GET, "/v2/keys", Vec::new())
                .is_ok_and(|(s, _)| s.is_success()),
            // etcd says {"health":"true"}; a bare 200 counts too.
            Ok((s, body)) if s.is_success() => serde_json::from_slice::<serde_json::Value>(&body)
                .map_or(true, |v| {
                    v.get("health").is_none() || v["health"] == true || v["health"] == "true"
                }),
            _ => false,
        }
    }

    /// `GET /v2/stats/self` says this member leads.
    fn leads(&self) -> bool {
        self.client()
            .call_blocking::<serde_json::Value>(hyper::Method::GET, "/v2/stats/self")
            .is_ok_and(|v| v["state"] == "StateLeader")
    }

    /// (VmRSS, VmHWM) in KiB.
    fn memory_kb(&mut self, system: &str) -> (u64, u64) {
        self.assert_alive(system);
        let path = format!("/proc/{}/status", self.child.id());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        let field = |k| kb_field(&text, k).unwrap_or_else(|| panic!("{path}: no {k}"));
        (field("VmRSS"), field("VmHWM"))
    }
}

struct Cluster {
    system: &'static str,
    members: Vec<Member>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
    }
}

/// `n` distinct free loopback ports.
fn ports(n: usize) -> Vec<u16> {
    let mut v: Vec<u16> = Vec::new();
    while v.len() < n {
        let p = free_port();
        if !v.contains(&p) {
            v.push(p);
        }
    }
    v
}

impl Cluster {
    /// Start `nodes` members of `system` with data dirs under `dir`, and
    /// wait until each is healthy.
    fn start(system: &System, nodes: usize, dir: &Path, token: &str) -> Cluster {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let p = ports(2 * nodes);
        let (client, peer) = p.split_at(nodes);
        let names: Vec<String> = (0..nodes).map(|i| format!("m{i}")).collect();
        let initial: Vec<String> = names
            .iter()
            .zip(peer)
            .map(|(n, p)| format!("{n}=http://127.0.0.1:{p}"))
            .collect();
        let mut members = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let log = dir.join(format!("{name}.log"));
            let out = File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
            let err = out.try_clone().expect("clone the log file");
            let client_url = format!("http://127.0.0.1:{}", client[i]);
            let peer_url = format!("http://127.0.0.1:{}", peer[i]);
            let child = Command::new(&system.bin)
                .arg("--name")
                .arg(name)
                .arg("--data-dir")
                .arg(dir.join(name))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", token])
                // etcd 3.4 serves the v2 API only with this; keel ignores it.
                .arg("--enable-v2")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", system.bin.display()));
            members.push(Member {
                client_port: client[i],
                child,
                log,
            });
        }
        let mut c = Cluster {
            system: system.name,
            members,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        for m in &mut c.members {
            while !m.healthy() {
                m.assert_alive(system.name);
                assert!(
                    Instant::now() < deadline,
                    "{}: member on port {} not healthy after 60 s (log {})",
                    system.name,
                    m.client_port,
                    m.log.display()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        c
    }

    /// The index of the member that says it leads; the first member when
    /// none does within 5 s.
    fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(i) = self.members.iter().position(Member::leads) {
                return i;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "{}: no member says StateLeader on /v2/stats/self; using the first",
                    self.system
                );
                return 0;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// What one wrk run against one cluster measured.
struct Sample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Non-2xx answers plus connect, read, write errors and timeouts.
    errors: u64,
    rss_kb: u64,
    rss_sum_kb: u64,
    hwm_kb: u64,
}

/// The `key=value` fields of the script's line.
fn wrk_fields(stdout: &str) -> Option<BTreeMap<&str, f64>> {
    let line = stdout.lines().find_map(|l| l.strip_prefix(WRK_LINE))?;
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k, v.parse().ok()?))
        })
        .collect()
}

fn run_wrk(url: &str, conns: usize, secs: u64) -> (f64, f64, f64, u64) {
    let script = root().join("tests/data/kv-put.lua");
    let out = Command::new("wrk")
        .arg("-t")
        .arg(conns.min(2).to_string())
        .arg("-c")
        .arg(conns.to_string())
        .arg("-d")
        .arg(format!("{secs}s"))
        .arg("--latency")
        .arg("-s")
        .arg(&script)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run wrk ({e}): install it with scripts/deps.sh"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let f = wrk_fields(&stdout).unwrap_or_else(|| {
        panic!(
            "wrk ({}) printed no {WRK_LINE:?} line:\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let get = |k: &str| {
        *f.get(k)
            .unwrap_or_else(|| panic!("wrk's line has no {k}:\n{stdout}"))
    };
    let errors = get("non2xx") + get("socket_errors");
    (get("rps"), get("p50_ms"), get("p99_ms"), errors as u64)
}

fn measure(system: &System, nodes: usize, conns: usize, secs: u64, dir: &Path) -> Sample {
    // Unique per cluster, so that no member ever joins another's.
    let token = format!(
        "keel-kv-bench-{}-{}",
        std::process::id(),
        dir.file_name().unwrap_or_default().to_string_lossy()
    );
    let mut c = Cluster::start(system, nodes, dir, &token);
    let leader = c.leader();
    let (rps, p50_ms, p99_ms, errors) = run_wrk(&c.members[leader].url(), conns, secs);
    let mem: Vec<(u64, u64)> = c
        .members
        .iter_mut()
        .map(|m| m.memory_kb(system.name))
        .collect();
    drop(c);
    let _ = std::fs::remove_dir_all(dir);
    Sample {
        rps,
        p50_ms,
        p99_ms,
        errors,
        rss_kb: mem[leader].0,
        rss_sum_kb: mem.iter().map(|m| m.0).sum(),
        hwm_kb: mem[leader].1,
    }
}

/// The samples of one (system, nodes, conns).
#[derive(Default)]
struct Figures {
    rps: Series,
    p50: Series,
    p99: Series,
    rss: Series,
    rss_sum: Series,
    hwm: Series,
    errors: u64,
}

impl Figures {
    fn push(&mut self, s: &Sample) {
        self.rps.push("req/s", s.rps);
        self.p50.push("p50", s.p50_ms);
        self.p99.push("p99", s.p99_ms);
        self.rss.push("RSS", s.rss_kb as f64);
        self.rss_sum.push("RSS sum", s.rss_sum_kb as f64);
        self.hwm.push("HWM", s.hwm_kb as f64);
        self.errors += s.errors;
    }
}

/// `ratio` and whether it meets `target` (`<=` or `>=` a bound).
fn against(ratio: f64, target: Option<(&str, f64)>) -> String {
    match target {
        None => format!("{ratio:.2}"),
        Some((op, bound)) => {
            let met = if op == ">=" {
                ratio >= bound
            } else {
                ratio <= bound
            };
            let verdict = if met { "met" } else { "MISSED" };
            format!("{ratio:.2} (target {op} {bound}: {verdict})")
        }
    }
}

fn main() {
    let runs: usize = env_or("KEEL_KV_BENCH_RUNS", 3).max(1);
    let secs: u64 = env_or("KEEL_KV_BENCH_SECS", 10).max(1);
    let mut systems = Vec::new();
    match std::env::var_os("KEEL_ETCD_BIN") {
        Some(bin) => {
            let bin = PathBuf::from(bin);
            assert!(
                bin.is_file(),
                "KEEL_ETCD_BIN={} is not a file (make bench-kv builds keel-etcd)",
                bin.display()
            );
            systems.push(System { name: "keel", bin });
        }
        None => eprintln!(
            "keel-kv-bench: KEEL_ETCD_BIN is unset: skipping keel, measuring etcd only \
             (make bench-kv builds keel-etcd and sets it)"
        ),
    }
    systems.push(System {
        name: "etcd",
        bin: PathBuf::from(ETCD),
    });
    let scratch = Scratch::new("bench-kv");

    let mut figures: BTreeMap<(&str, usize, usize), Figures> = BTreeMap::new();
    for run in 0..runs {
        for nodes in NODES {
            for conns in CONNS {
                for sys in &systems {
                    let dir = scratch.path(&format!("{}-{nodes}n-{conns}c-{run}", sys.name));
                    let s = measure(sys, nodes, conns, secs, &dir);
                    eprintln!(
                        "run {}/{runs}: {} {nodes} node(s) {conns} conn(s): {:.0} req/s, \
                         p50 {:.2} ms, p99 {:.2} ms, RSS {} KB (sum {} KB), {} errors",
                        run + 1,
                        sys.name,
                        s.rps,
                        s.p50_ms,
                        s.p99_ms,
                        s.rss_kb,
                        s.rss_sum_kb,
                        s.errors
                    );
                    if s.errors > 0 {
                        eprintln!(
                            "  {}: {} PUTs failed: every PUT must succeed",
                            sys.name, s.errors
                        );
                    }
                    figures
                        .entry((sys.name, nodes, conns))
                        .or_default()
                        .push(&s);
                }
            }
        }
    }

    println!();
    println!(
        "keel KV benchmark: etcd v2 PUTs (~100-byte values, 1000 keys) under wrk against the \
         leader, {secs} s x {runs} run(s) per row, fsync on; medians (min-max)"
    );
    println!(
        "{:<6} {:>5} {:>5}  {:>26}  {:>20}  {:>20}  {:>26}  {:>12}  {:>12}  {:>6}",
        "system",
        "nodes",
        "conns",
        "req/s",
        "p50 ms",
        "p99 ms",
        "RSS KB (leader)",
        "RSS KB (sum)",
        "HWM KB",
        "errors"
    );
    let mut json = Vec::new();
    for sys in &systems {
        for nodes in NODES {
            for conns in CONNS {
                let f = &figures[&(sys.name, nodes, conns)];
                println!(
                    "{:<6} {nodes:>5} {conns:>5}  {:>26}  {:>20}  {:>20}  {:>26}  {:>12.0}  {:>12.0}  {:>6}",
                    sys.name,
                    f.rps.spread(0),
                    f.p50.spread(2),
                    f.p99.spread(2),
                    f.rss.spread(0),
                    f.rss_sum.median(),
                    f.hwm.median(),
                    f.errors
                );
                json.push(serde_json::json!({
                    "system": sys.name,
                    "nodes": nodes,
                    "conns": conns,
                    "errors": f.errors,
                    "rps": f.rps.median(),
                    "p50_ms": f.p50.median(),
                    "p99_ms": f.p99.median(),
                    "rss_kb": f.rss.median().round() as u64,
                }));
            }
        }
    }

    println!();
    if systems.iter().any(|s| s.name == "keel") {
        println!("keel / etcd, ratios of the medians above (etcd is the reference, measured in the same run)");
        println!(
            "{:>5} {:>5}  {:<34}  {:<34}  {:<36}  {:<12}",
            "nodes", "conns", "req/s", "p99", "RSS (leader)", "RSS (sum)"
        );
        for nodes in NODES {
            for conns in CONNS {
                let k = &figures[&("keel", nodes, conns)];
                let e = &figures[&("etcd", nodes, conns)];
                // A row where either side had errors gets no ratio: the
                // figures do not measure the same work.
                if k.errors + e.errors > 0 {
                    println!(
                        "{nodes:>5} {conns:>5}  no verdict: {} keel and {} etcd PUTs failed",
                        k.errors, e.errors
                    );
                    continue;
                }
                let r = |a: &Series, b: &Series| a.median() / b.median();
                let rps_target = (conns == 64).then_some((">=", 2.0));
                println!(
                    "{nodes:>5} {conns:>5}  {:<34}  {:<34}  {:<36}  {:<12}",
                    against(r(&k.rps, &e.rps), rps_target),
                    against(r(&k.p99, &e.p99), Some(("<=", 1.0))),
                    against(r(&k.rss, &e.rss), Some(("<=", 0.25))),
                    against(r(&k.rss_sum, &e.rss_sum), None),
                );
            }
        }
        println!(
            "targets: keel req/s >= 2 x etcd at 64 conns, p99 <= etcd's, RSS <= 1/4 of etcd's"
        );
    } else {
        println!(
            "keel skipped (KEEL_ETCD_BIN unset): no ratios. Targets: keel req/s >= 2 x etcd at \
             64 conns, p99 <= etcd's, RSS <= 1/4 of etcd's"
        );
    }
    write_json("kv.json", &serde_json::json!({ "runs": json }));
    let failed: u64 = figures.values().map(|f| f.errors).sum();
    if failed > 0 {
        eprintln!(
            "keel-kv-bench: {failed} PUTs failed (see the errors column): every PUT must succeed"
        );
        std::process::exit(1);
    }
}
