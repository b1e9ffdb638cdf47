//! `make bench`, fourth part: container start and run times against Debian's
//! crun 1.8, and keel's memory per idle container.
//!
//! 1. One boot of the bench variant (the test image plus crun and its
//!    libraries) with two `network: none`, `restart: never` busybox
//!    containers: `t` (`/bin/true`) and `s` (`/bin/sleep 100000`).
//!    `keel.run` starts the test helper's `crun-bench,N` mode, which times N
//!    crun starts and N crun runs of `/bin/true` on the same busybox layer
//!    (`keel_testhelpers::crun_bench` says how), and prints them.
//! 2. When it is done, in the same VM, N times: `POST
//!    /v1/containers/t/start`, then poll `GET /v1/containers` until `t` has
//!    exited with a new `run_ms`. keel's own figures, measured in PID 1:
//!    `start_ms` (supervisor start → exec done) and `run_ms` (→ exit
//!    reaped).
//! 3. Memory: boots with 0, 1 and 50 idle containers (`/bin/sleep`), PID 1's
//!    RSS from `GET /v1/status` 12 s after all run; per container =
//!    (RSS with 50 − RSS with 0) / 50.
//!
//! Every boot uses `make kernel-userns`'s kernel: keel's fragments without
//! the hardening one, with user namespaces, which crun 1.8 cannot run
//! without (it reads /proc/self/uid_map and setgroups on every run). Both
//! runtimes are measured on that one kernel.
//!
//! N is KEEL_BENCH_RUNS (default 100). Prints a table and writes
//! target/bench/containers.json.

use std::time::{Duration, Instant};

use keel_api::ContainerStatus;
use keel_vmtests::bench::{header, one, row, write_json, Series};
use keel_vmtests::{Scratch, Variant, Vm, VmConfig};

const CONFIG: &str = "#cloud-config
containers:
  - name: t
    image: busybox
    command: [\"/bin/true\"]
    restart: never
    network: none
  - name: s
    image: busybox
    command: [\"/bin/sleep\", \"100000\"]
    restart: never
    network: none
";

fn boot(s: &Scratch, name: &str, config: &str, append: &str) -> Vm {
    let file = s.path(&format!("{name}.yaml"));
    std::fs::write(&file, config).expect("write the cloud-config");
    let mut cfg = VmConfig::new(name);
    cfg.variant = Variant::Bench;
    // crun needs user namespaces, which keel's kernel leaves out: both
    // runtimes run on `make kernel-userns`'s kernel.
    cfg.kernel = Some(userns_kernel());
    cfg.mem = "512M".into();
    cfg.append = append.into();
    cfg.cloud_config(&file);
    let mut vm = Vm::start(cfg);
    vm.wait_ready();
    vm
}

/// The kernel with user namespaces (make kernel-userns; make bench does).
fn userns_kernel() -> std::path::PathBuf {
    let k = keel_vmtests::build_dir().join("kernel-userns/bzImage");
    assert!(
        k.exists(),
        "{} is missing: make kernel-userns (make bench does)",
        k.display()
    );
    k
}

/// Poll (every `every`) until `f` holds for `name`; panics after 60 s.
fn wait_until(
    vm: &Vm,
    name: &str,
    every: Duration,
    f: impl Fn(&ContainerStatus) -> bool,
) -> ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = vm.container(name);
        if f(&c) {
            return c;
        }
        assert!(Instant::now() < deadline, "{name}: still {c:?} after 60 s");
        std::thread::sleep(every);
    }
}

/// The values of the helper's `crun-bench: FIGURE v,v,...` console line.
fn crun_figure(console: &str, figure: &str) -> Series {
    let prefix = format!("crun-bench: {figure} ");
    let line = console
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {prefix:?} line on the console"));
    let mut series = Series::default();
    for v in line.split(',') {
        let v: f64 = v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{prefix}: {v:?} is not a number"));
        series.push(&prefix, v);
    }
    series
}

/// PID 1's RSS once `n` idle containers all run.
fn rss_with(s: &Scratch, n: usize) -> u64 {
    let mut config = String::from("#cloud-config\n");
    if n > 0 {
        config.push_str("containers:\n");
    }
    for i in 0..n {
        config.push_str(&format!(
            "  - name: idle{i:02}\n    image: busybox\n    command: [\"/bin/sleep\", \"100000\"]\n    restart: never\n    network: none\n"
        ));
    }
    let vm = boot(s, &format!("bench-containers-rss-{n}"), &config, "");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let all = vm.containers();
        assert_eq!(all.len(), n, "{all:?}");
        if all.iter().all(|c| c.state == "running") {
            break;
        }
        let bad: Vec<_> = all.iter().filter(|c| c.state == "failed").collect();
        assert!(bad.is_empty(), "containers failed: {bad:?}");
        assert!(
            Instant::now() < deadline,
            "not all {n} containers run after 300 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Idle: past the keep-alive (10 s) of the threads of the async
    // runtime's blocking pool, which ran the starts and then exit.
    let early = vm.status().memory.pid1_rss_kb;
    std::thread::sleep(Duration::from_secs(12));
    let rss = vm.status().memory.pid1_rss_kb;
    eprintln!("{n} containers: PID 1 RSS {early} KB once all run, {rss} KB 12 s later");
    rss
}

fn ratio(a: &Series, b: &Series) -> f64 {
    a.median() / b.median()
}

fn main() {
    let runs: usize = std::env::var("KEEL_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let s = Scratch::new("bench-containers");

    // 1. crun, in the VM, first (keel's containers are idle meanwhile).
    let mut vm = boot(
        &s,
        "bench-containers",
        CONFIG,
        &format!("keel.run=/usr/lib/keel/test-helper,crun-bench,{runs}"),
    );
    vm.wait_for(
        "test-helper: crun-bench done",
        Duration::from_secs(120 + 3 * runs as u64),
    );
    let console = vm.console();
    let crun_start = crun_figure(&console, "start_ms");
    let crun_true = crun_figure(&console, "true_ms");
    let crun_mount = crun_figure(&console, "mount_ms");
    eprintln!(
        "crun: {} starts, {} runs",
        crun_start.samples().len(),
        crun_true.samples().len()
    );

    // 2. keel, same VM: t ran once at boot; start it again N times.
    let every = Duration::from_millis(50);
    let mut last = wait_until(&vm, "t", every, |c| c.state == "exited").run_ms;
    let mut keel_start = Series::default();
    let mut keel_true = Series::default();
    for i in 0..runs {
        let (code, body) = vm
            .client()
            .request_blocking(hyper::Method::POST, "/v1/containers/t/start", Vec::new())
            .expect("POST /v1/containers/t/start");
        assert!(
            code.is_success(),
            "start {i}: {code} {}",
            String::from_utf8_lossy(&body)
        );
        let c = wait_until(&vm, "t", every, |c| {
            c.state == "exited" && c.run_ms.is_some() && c.run_ms != last
        });
        last = c.run_ms;
        keel_start.push_some("keel start", c.start_ms);
        keel_true.push_some("keel run of /bin/true", c.run_ms);
        if (i + 1) % 25 == 0 {
            eprintln!("keel: {}/{runs} runs of t", i + 1);
        }
    }
    let sleeping = vm.container("s");
    assert_eq!(sleeping.state, "running", "{sleeping:?}");
    drop(vm);

    // 3. Memory per idle container.
    let rss0 = rss_with(&s, 0);
    let rss1 = rss_with(&s, 1);
    let rss50 = rss_with(&s, 50);
    let per = (rss50 as f64 - rss0 as f64) / 50.0;
    let marginal = (rss50 as f64 - rss1 as f64) / 49.0;

    let (r_start, r_true) = (
        ratio(&keel_start, &crun_start),
        ratio(&keel_true, &crun_true),
    );
    println!();
    println!("keel container benchmark: {runs} runs each, keel and crun 1.8 in the same VM (TCG, 1 vCPU)");
    header();
    row(
        "keel: start -> exec done (ms)",
        keel_start.cols(),
        &format!("<= 0.5 x crun; ratio {r_start:.2}"),
    );
    row(
        "crun: mount, create, start -> exec (ms)",
        crun_start.cols(),
        "reference, same VM",
    );
    row("  of which overlay mount (ms)", crun_mount.cols(), "");
    row(
        "keel: start -> true reaped (ms)",
        keel_true.cols(),
        &format!("<= 0.5 x crun; ratio {r_true:.2}"),
    );
    row(
        "crun: mount, run true -> reaped (ms)",
        crun_true.cols(),
        "reference, same VM",
    );
    row("PID 1 RSS, 0 containers (KB)", one(rss0.to_string()), "");
    row(
        "PID 1 RSS, 1 idle container (KB)",
        one(rss1.to_string()),
        "",
    );
    row(
        "PID 1 RSS, 50 idle containers (KB)",
        one(rss50.to_string()),
        "",
    );
    row(
        "per idle container (50 - 0) / 50 (KB)",
        one(format!("{per:.1}")),
        "<= 100",
    );
    row(
        "per idle container (50 - 1) / 49 (KB)",
        one(format!("{marginal:.1}")),
        "without one-time image setup",
    );
    let json = serde_json::json!({
        "runs": runs,
        "keel_start_ms": keel_start.json(),
        "crun_start_ms": crun_start.json(),
        "keel_true_ms": keel_true.json(),
        "crun_true_ms": crun_true.json(),
        "crun_mount_ms": crun_mount.json(),
        "start_ratio": r_start,
        "true_ratio": r_true,
        "pid1_rss_kb": {"containers_0": rss0, "containers_1": rss1, "containers_50": rss50},
        "per_container_kb": per,
        "per_container_marginal_kb": marginal,
    });
    write_json("containers.json", &json);
}
