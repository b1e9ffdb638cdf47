//! `make bench`, second part: the verified root and the images.
//!
//! - PID 1 start → root mounted (end of the MountRoot task: manifest check,
//!   dm-verity setup, mount), and the root tasks alone (FindSlots +
//!   MountRoot), over N diskless boots (KEEL_BENCH_RUNS, default 10); the
//!   reference is the work floor (tests/helpers work-floor.rs) doing the same
//!   work with no keel around it, in the same run.
//! - qemu start → ready for the diskless (-kernel/-initrd, microvm), iPXE and
//!   UEFI boots (KEEL_BENCH_FW_RUNS each, default 5), with the trivial-init
//!   floor measured in the same run as the reference.
//! - Artifact sizes.
//! - BLAKE3 throughput of the full-slot check: on the host (`keel-image
//!   verify` of build/slot.img) and in the VM (the check keel runs on a slot
//!   not yet known good, read from `GET /v1/status`).
//!
//! Prints a table and writes target/bench/image.json. Never fails on timing.

use std::process::Command;
use std::time::Duration;

use keel_vmtests::bench::{
    env_or, header, one, row, size, task_ms, work_floor, write_json, Series,
};
use keel_vmtests::{build_dir, release_bin, root, Scratch, Variant, Vm, VmConfig};

fn host_blake3_mib_s(slot: &std::path::Path) -> f64 {
    let out = Command::new(release_bin("keel-image"))
        .arg("verify")
        .arg("--slot")
        .arg(slot)
        .arg("--key")
        .arg(root().join("keys/keel-dev.pub"))
        .output()
        .expect("run keel-image verify");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.rsplit_once('(')
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("keel-image verify printed no throughput: {text}"))
}

fn main() {
    let runs = env_or("KEEL_BENCH_RUNS", 10);
    let fw_runs = env_or("KEEL_BENCH_FW_RUNS", 5);
    let b = build_dir();

    let mut to_root = Series::default();
    let mut root_tasks = Series::default();
    let mut diskless = Series::default();
    let mut floor = Series::default();
    let mut work_floor_root = Series::default();
    for i in 0..runs {
        let mut cfg = VmConfig::new(&format!("bench-root-{i}"));
        cfg.variant = Variant::Keel;
        let mut vm = Vm::start(cfg);
        diskless.push(
            "diskless qemu -> ready",
            vm.wait_ready().as_secs_f64() * 1e3,
        );
        let s = vm.status();
        to_root.push_some(
            "PID 1 start -> root mounted",
            s.boot
                .task("MountRoot")
                .map(|t| t.start_ms + t.duration_ms - s.boot.pid1_start_ms),
        );
        root_tasks.push(
            "FindSlots + MountRoot",
            task_ms(&s, "FindSlots") + task_ms(&s, "MountRoot"),
        );
        drop(vm);
        let mut cfg = VmConfig::new(&format!("bench-root-floor-{i}"));
        cfg.variant = Variant::Floor;
        let mut vm = Vm::start(cfg);
        floor.push(
            "floor",
            vm.wait_for("floor: init reached", Duration::from_secs(60))
                .as_secs_f64()
                * 1e3,
        );
        vm.wait_exit(Duration::from_secs(30));
        drop(vm);
        let mut cfg = VmConfig::new(&format!("bench-root-work-floor-{i}"));
        cfg.variant = Variant::WorkFloor;
        let mut vm = Vm::start(cfg);
        vm.wait_for("work-floor: started at", Duration::from_secs(60));
        vm.wait_exit(Duration::from_secs(30));
        let w = work_floor(&vm.console()).unwrap_or_else(|e| panic!("run {}: {e}", i + 1));
        work_floor_root.push("work floor: root mounted", w.root_mounted_ms);
        eprintln!(
            "diskless {}/{runs}: ready at {:.0} ms, root mounted {:.1} ms after PID 1 start",
            i + 1,
            diskless.last(),
            to_root.last()
        );
    }

    let mut ipxe = Series::default();
    let mut ipxe_http = Series::default();
    let mut uefi = Series::default();
    let mut uefi_rom = Series::default();
    let mut vm_blake3 = Series::default();
    let scratch = Scratch::new("bench-image");
    // build/netboot over HTTP from the host's loopback (10.0.2.2 in the guest).
    let (http_port, _) = keel_vmtests::files::serve(&b.join("netboot"));
    for i in 0..fw_runs {
        let mut cfg = VmConfig::new(&format!("bench-ipxe-{i}"));
        cfg.profile = "ipxe";
        let mut vm = Vm::start(cfg);
        ipxe.push("iPXE qemu -> ready", vm.wait_ready().as_secs_f64() * 1e3);
        drop(vm);
        let mut cfg = VmConfig::new(&format!("bench-ipxe-http-{i}"));
        cfg.profile = "ipxe";
        cfg.env.push((
            "KEEL_NETBOOT_URL".into(),
            format!("http://10.0.2.2:{http_port}/boot.ipxe"),
        ));
        let mut vm = Vm::start(cfg);
        ipxe_http.push(
            "iPXE over HTTP qemu -> ready",
            vm.wait_ready().as_secs_f64() * 1e3,
        );
        drop(vm);
        // The launcher's earlier UEFI machine: the NIC with its iPXE option
        // ROM and no boot index on the disk (the reference for the change).
        let disk = scratch.path("disk-rom.qcow2");
        std::fs::copy(b.join("disk.qcow2"), &disk).expect("build/disk.qcow2 (make disk)");
        let mut cfg = VmConfig::new(&format!("bench-uefi-rom-{i}"));
        cfg.profile = "uefi";
        cfg.disk = Some(disk);
        cfg.env.push(("KEEL_UEFI_NIC_ROM".into(), "1".into()));
        let mut vm = Vm::start(cfg);
        uefi_rom.push(
            "UEFI with the NIC ROM qemu -> ready",
            vm.wait_ready().as_secs_f64() * 1e3,
        );
        drop(vm);

        // A fresh copy each time: slot A is new, so keel runs its full check.
        let disk = scratch.path("disk.qcow2");
        std::fs::copy(b.join("disk.qcow2"), &disk).expect("build/disk.qcow2 (make disk)");
        let mut cfg = VmConfig::new(&format!("bench-uefi-{i}"));
        cfg.profile = "uefi";
        cfg.disk = Some(disk);
        let mut vm = Vm::start(cfg);
        uefi.push("UEFI qemu -> ready", vm.wait_ready().as_secs_f64() * 1e3);
        // A new slot A is always checked in full: no check is a failure.
        let c = vm
            .status()
            .root
            .content_check
            .unwrap_or_else(|| panic!("UEFI run {}: slot A was not checked in full", i + 1));
        vm_blake3.push(
            "BLAKE3 in the VM",
            c.bytes as f64 / 1048576.0 / (c.micros as f64 / 1e6),
        );
        drop(vm);
        eprintln!(
            "firmware {}/{fw_runs}: iPXE ready at {:.0} ms (TFTP), {:.0} ms (HTTP); UEFI ready at {:.0} ms ({:.0} ms with the NIC's ROM)",
            i + 1,
            ipxe.last(),
            ipxe_http.last(),
            uefi.last(),
            uefi_rom.last()
        );
    }

    let mut host_blake3 = Series::default();
    for _ in 0..10 {
        host_blake3.push("BLAKE3 on the host", host_blake3_mib_s(&b.join("slot.img")));
    }

    let kernel = size(&b.join("kernel/bzImage"));
    let initramfs = size(&b.join("initramfs.cpio.zst"));
    let efi = size(&b.join("kernel/bzImage-efi"));
    let disk = size(&b.join("disk.img"));
    let qcow2 = size(&b.join("disk.qcow2"));
    let root_img = size(&b.join("root.erofs"));

    println!();
    println!(
        "keel image benchmark: {runs} diskless boots, {fw_runs} iPXE and UEFI boots, TCG, 256M"
    );
    header();
    row("PID 1 start -> root mounted (ms)", to_root.cols(), "<= 10");
    row("  FindSlots + MountRoot alone (ms)", root_tasks.cols(), "");
    row(
        "  work floor: same work, no keel (ms)",
        work_floor_root.cols(),
        "reference, same run",
    );
    row(
        "  ratio root mounted / work floor",
        one(format!(
            "{:.3}",
            to_root.median() / work_floor_root.median()
        )),
        "",
    );
    row("qemu -> ready, diskless microvm (ms)", diskless.cols(), "");
    row(
        "  floor: trivial init, microvm (ms)",
        floor.cols(),
        "reference, same run",
    );
    row(
        "  ratio diskless / floor (medians)",
        one(format!("{:.3}", diskless.median() / floor.median())),
        "",
    );
    row("qemu -> ready, iPXE over TFTP (ms)", ipxe.cols(), "");
    row(
        "qemu -> ready, iPXE over HTTP (ms)",
        ipxe_http.cols(),
        &format!("{:.3} x TFTP", ipxe_http.median() / ipxe.median()),
    );
    row("qemu -> ready, UEFI disk, OVMF (ms)", uefi.cols(), "");
    row(
        "  UEFI with the NIC's iPXE ROM (ms)",
        uefi_rom.cols(),
        &format!(
            "reference; without: {:.3} x",
            uefi.median() / uefi_rom.median()
        ),
    );
    row(
        "BLAKE3 full-slot check, host (MiB/s)",
        host_blake3.cols(),
        "",
    );
    row(
        "BLAKE3 full-slot check, VM/TCG (MiB/s)",
        vm_blake3.cols(),
        "",
    );
    row(
        "kernel + initramfs (bytes)",
        one((kernel + initramfs).to_string()),
        "<= 6 MB",
    );
    row("  bzImage (bytes)", one(kernel.to_string()), "");
    row(
        "  initramfs.cpio.zst (bytes)",
        one(initramfs.to_string()),
        "",
    );
    row("  root.erofs (bytes)", one(root_img.to_string()), "");
    row("  bzImage-efi (bytes)", one(efi.to_string()), "");
    row("disk.img, raw (bytes)", one(disk.to_string()), "<= 64 MB");
    row("disk.qcow2 (bytes)", one(qcow2.to_string()), "");

    let json = serde_json::json!({
        "runs": runs,
        "firmware_runs": fw_runs,
        "accel": std::env::var("QEMU_ACCEL").unwrap_or_else(|_| "tcg".into()),
        "pid1_to_root_ms": to_root.json(),
        "root_tasks_ms": root_tasks.json(),
        "work_floor_root_ms": work_floor_root.json(),
        "qemu_to_ready_ms": {
            "diskless": diskless.median(),
            "ipxe": ipxe.median(),
            "ipxe_http": ipxe_http.median(),
            "uefi": uefi.median(),
            "uefi_nic_rom": uefi_rom.median(),
            "floor": floor.median(),
            "runs": {"diskless": diskless.json(), "ipxe": ipxe.json(), "ipxe_http": ipxe_http.json(), "uefi": uefi.json(), "uefi_nic_rom": uefi_rom.json(), "floor": floor.json()},
        },
        "kernel_bytes": kernel,
        "initramfs_bytes": initramfs,
        "efi_kernel_bytes": efi,
        "root_image_bytes": root_img,
        "disk_bytes": disk,
        "disk_qcow2_bytes": qcow2,
        "blake3_host_mib_s": host_blake3.median(),
        "blake3_vm_mib_s": vm_blake3.median(),
    });
    write_json("image.json", &json);
}
