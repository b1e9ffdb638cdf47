//! `make bench`: the boot benchmark.
//!
//! Boots the user image N times (KEEL_BENCH_RUNS, default 10) under the
//! microvm profile, interleaved with N boots of the same kernel with a trivial
//! static init that powers off at once (the floor), and N boots of a minimal
//! static program that does keel's boot work (mounts, root switch, cgroup
//! controllers, links, listening sockets) and nothing else (the work floor:
//! what "PID 1 start -> ready" cannot go below under this emulator, since
//! every kernel path runs cold). Prints a table of median,
//! min and max, the ratio to the floor and the targets, and writes
//! target/bench/boot.json. Timing never fails the run: this is a benchmark.

use std::time::Duration;

use keel_vmtests::bench::{self, header, one, row, size, write_json, Series};
use keel_vmtests::{build_dir, release_bin, Variant, Vm, VmConfig};

fn main() {
    let runs: usize = std::env::var("KEEL_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mut pid1_start = Series::default();
    let mut pid1_to_ready = Series::default();
    let mut qemu_to_ready = Series::default();
    let mut floor = Series::default();
    let mut work_floor = Series::default();
    let mut rss = Series::default();
    let mut used = Series::default();

    for i in 0..runs {
        let mut cfg = VmConfig::new(&format!("bench-keel-{i}"));
        cfg.variant = Variant::Keel;
        let mut vm = Vm::start(cfg);
        let t = vm.wait_ready();
        qemu_to_ready.push("qemu -> ready", t.as_secs_f64() * 1e3);
        // Let the boot settle before reading memory figures.
        std::thread::sleep(Duration::from_millis(500));
        let s = vm.status();
        pid1_start.push("PID 1 start", s.boot.pid1_start_ms);
        pid1_to_ready.push_some("PID 1 start -> ready", s.boot.pid1_to_ready_ms());
        rss.push("PID 1 RSS", s.memory.pid1_rss_kb as f64);
        used.push("guest memory used", s.memory.used_kb as f64);
        drop(vm);

        let mut cfg = VmConfig::new(&format!("bench-floor-{i}"));
        cfg.variant = Variant::Floor;
        let mut vm = Vm::start(cfg);
        let t = vm.wait_for("floor: init reached", Duration::from_secs(60));
        floor.push("floor", t.as_secs_f64() * 1e3);
        vm.wait_exit(Duration::from_secs(30));
        drop(vm);

        let mut cfg = VmConfig::new(&format!("bench-work-floor-{i}"));
        cfg.variant = Variant::WorkFloor;
        let mut vm = Vm::start(cfg);
        // It powers off once it has printed: read the console after the exit,
        // so the line is whole.
        vm.wait_for("work-floor: started at", Duration::from_secs(60));
        vm.wait_exit(Duration::from_secs(30));
        let w = bench::work_floor(&vm.console()).unwrap_or_else(|e| panic!("run {}: {e}", i + 1));
        work_floor.push("work floor", w.done_ms);
        eprintln!(
            "run {}/{runs}: keel ready at {:.0} ms ({:.1} ms after PID 1 start), floor at {:.0} ms, work floor {:.1} ms",
            i + 1,
            qemu_to_ready.last(),
            pid1_to_ready.last(),
            floor.last(),
            work_floor.last()
        );
    }

    let build = build_dir();
    let bz = size(&build.join("kernel/bzImage"));
    let initrd = size(&build.join("initramfs.cpio.zst"));
    let keel = size(&release_bin("keel"));
    let ratio = qemu_to_ready.median() / floor.median();
    let work_ratio = pid1_to_ready.median() / work_floor.median();

    println!();
    println!("keel boot benchmark: {runs} boots each, qemu microvm, TCG, 256M");
    header();
    row("guest uptime at PID 1 start (ms)", pid1_start.cols(), "");
    row("PID 1 start -> ready (ms)", pid1_to_ready.cols(), "<= 20");
    row(
        "work floor: same work, no keel (ms)",
        work_floor.cols(),
        "reference, same run",
    );
    row(
        "ratio PID 1->ready / work floor",
        one(format!("{work_ratio:.3}")),
        "keel's own overhead",
    );
    row(
        "qemu start -> ready (ms)",
        qemu_to_ready.cols(),
        "<= 1.15 x floor",
    );
    row(
        "floor: qemu start -> init (ms)",
        floor.cols(),
        "reference, same run",
    );
    row(
        "ratio ready / floor (medians)",
        one(format!("{ratio:.3}")),
        "<= 1.15",
    );
    row("PID 1 RSS after boot (KiB)", rss.cols(), "<= 8192");
    row("guest MemTotal-MemAvailable (KiB)", used.cols(), "");
    row("bzImage (bytes)", one(bz.to_string()), "<= 3.5 MB");
    row(
        "initramfs.cpio.zst (bytes)",
        one(initrd.to_string()),
        "<= 3 MB",
    );
    row("keel binary (bytes)", one(keel.to_string()), "");

    let json = serde_json::json!({
        "runs": runs,
        "profile": "microvm",
        "accel": std::env::var("QEMU_ACCEL").unwrap_or_else(|_| "tcg".into()),
        "pid1_start_ms": pid1_start.json(),
        "pid1_to_ready_ms": pid1_to_ready.json(),
        "qemu_to_ready_ms": qemu_to_ready.json(),
        "floor_qemu_ms": floor.json(),
        "ready_to_floor_ratio": ratio,
        "work_floor_ms": work_floor.json(),
        "pid1_to_ready_to_work_floor_ratio": work_ratio,
        "bzimage_bytes": bz,
        "initramfs_bytes": initrd,
        "keel_bytes": keel,
        "pid1_rss_kb": rss.median(),
        "guest_used_kb": used.median(),
    });
    write_json("boot.json", &json);
}
