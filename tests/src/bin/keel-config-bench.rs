//! `make bench`, third part: the cloud-config in the boot timeline.
//!
//! Boots the test image N times (KEEL_BENCH_RUNS, default 10) with the
//! 200-line config of tests/data/config-200.yaml in fw_cfg and reads the
//! LoadConfig + ApplyConfig tasks from the timeline (the issue's "load +
//! validate + apply" figure; no network wait is involved). The reference,
//! measured in the same run: the same validation and plan natively on the
//! host. Then N boots with `keel.ip=dhcp`: the time from link up to the
//! first DHCP lease from qemu's user network (from `GET /v1/network`).
//! Prints a table and writes target/bench/config.json.

use std::time::{Duration, Instant};

use keel_vmtests::bench::{header, one, row, task_ms, write_json, Series};
use keel_vmtests::{root, Vm, VmConfig};

fn main() {
    let runs: usize = std::env::var("KEEL_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let file = root().join("tests/data/config-200.yaml");
    let text = std::fs::read_to_string(&file).expect("tests/data/config-200.yaml");
    let lines = text.lines().count();

    let mut host = Series::default();
    for _ in 0..200 {
        let t = Instant::now();
        let r = keel_config::validate(&text);
        let p = keel_config::plan::plan(&r.config).expect("plan");
        std::hint::black_box(p);
        host.push("host validate + plan", t.elapsed().as_secs_f64() * 1e6);
    }

    let mut load = Series::default();
    let mut apply = Series::default();
    let mut total = Series::default();
    let mut warm = Series::default();
    let mut checked = Series::default();
    let mut written = Series::default();
    for i in 0..runs {
        let mut cfg = VmConfig::new(&format!("bench-config-{i}"));
        cfg.cloud_config(&file);
        let mut vm = Vm::start(cfg);
        vm.wait_ready();
        let s = vm.status();
        assert!(!s.config.maintenance, "{:?}", s.config.errors);
        let (l, a) = (task_ms(&s, "LoadConfig"), task_ms(&s, "ApplyConfig"));
        load.push("LoadConfig", l);
        apply.push("ApplyConfig", a);
        total.push("LoadConfig + ApplyConfig", l + a);
        checked.push("config checked", s.config.checked_ms);
        written.push("config written", s.config.written_ms);
        // The same validation and plan again in the same VM, its code now
        // translated by TCG: separates qemu's first-execution cost from
        // the work itself.
        let mut last = None;
        for _ in 0..3 {
            let (code, body) = vm
                .client()
                .request_blocking(
                    hyper::Method::POST,
                    // The text has no api: section (the harness gave
                    // the booted copy the node's PKI), and a config
                    // without one is refused unless it closes the API
                    // port on purpose; a dry run applies nothing.
                    "/v1/config?dry_run=1&close_api=1",
                    text.clone().into_bytes(),
                )
                .expect("POST /v1/config?dry_run=1&close_api=1");
            assert!(
                code.is_success(),
                "{code}: {}",
                String::from_utf8_lossy(&body)
            );
            let r: keel_api::ConfigApplied = serde_json::from_slice(&body).expect("ConfigApplied");
            assert!(r.accepted, "{:?}", r.errors);
            last = Some(r.checked_ms);
        }
        warm.push_some("warm dry run", last);
        drop(vm);
        std::thread::sleep(Duration::from_millis(100));
        eprintln!(
            "config {}/{runs}: load {l:.1} ms, validate + apply {a:.1} ms",
            i + 1
        );
    }

    let mut lease = Series::default();
    for i in 0..runs {
        let mut cfg = VmConfig::new(&format!("bench-dhcp-{i}"));
        cfg.append = "keel.ip=dhcp".into();
        let mut vm = Vm::start(cfg);
        vm.wait_ready();
        let ms = vm
            .network()
            .dhcp
            .map(|d| d.first_lease_ms)
            .unwrap_or_else(|| panic!("dhcp run {}: no lease in /v1/network", i + 1));
        lease.push("first DHCP lease", ms);
        drop(vm);
        eprintln!(
            "dhcp {}/{runs}: first lease {ms:.1} ms after link up",
            i + 1
        );
    }

    println!();
    println!("keel config benchmark: {runs} boots with a {lines}-line cloud-config in fw_cfg, TCG");
    header();
    row("LoadConfig + ApplyConfig (ms)", total.cols(), "<= 10");
    row("  LoadConfig: fw_cfg read (ms)", load.cols(), "");
    row(
        "  ApplyConfig: validate, plan, write (ms)",
        apply.cols(),
        "",
    );
    row("    validate + plan (ms)", checked.cols(), "");
    row("    write files (ms)", written.cols(), "");
    row(
        "  same VM, validate + plan again, warm (ms)",
        warm.cols(),
        "TCG without first-run translation",
    );
    row(
        "host: validate + plan, native (us)",
        host.cols(),
        "reference, same run",
    );
    row("config lines", one(lines.to_string()), "200");
    row("DHCP: link up -> first lease (ms)", lease.cols(), "<= 100");
    let json = serde_json::json!({
        "runs": runs,
        "lines": lines,
        "config_ms": total.json(),
        "load_ms": load.json(),
        "apply_ms": apply.json(),
        "validate_plan_ms": checked.json(),
        "write_ms": written.json(),
        "warm_validate_plan_ms": warm.json(),
        "host_validate_plan_us": host.json(),
        "dhcp_first_lease_ms": lease.json(),
    });
    write_json("config.json", &json);
}
