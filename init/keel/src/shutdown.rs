//! The orderly shutdown: stop what runs, sync, unmount, reboot(2).
//!
//! 1. Stop the API and the runtime (no new work arrives).
//! 2. SIGTERM every process, wait up to the grace period while reaping, then
//!    SIGKILL what is left and reap it.
//! 3. sync, unmount every filesystem deepest first (when busy: frozen, so it
//!    is left clean on the disk, then detached), sync.
//! 4. reboot(2) with the requested action. If that fails, the guard halts.

use std::path::Path;
use std::time::{Duration, Instant};

use keel_boot::{guard, info, procfs, warn};
use keel_sys::power::{self, PowerAction};
use keel_sys::signal::{self, Signal};

use crate::boot_table::Ctx;

/// How long processes get between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);

/// How long stopping the containers may take in all.
pub const CONTAINERS_LIMIT: Duration = Duration::from_secs(30);

pub fn run(ctx: &mut Ctx, action: PowerAction) -> ! {
    info!("shutdown: {} requested", action.as_str());
    if let (Some(s), Some(sup)) = (&ctx.services, ctx.node.containers.get()) {
        // Each container gets its own grace period (SIGTERM, then
        // cgroup.kill); this bounds the whole.
        s.block_on(sup.stop_all(CONTAINERS_LIMIT));
    }
    if let Some(s) = ctx.services.take() {
        s.stop();
    }
    stop_processes(ctx);
    keel_sys::fs::sync();
    unmount_all();
    keel_sys::fs::sync();
    info!("shutdown: {} now", action.as_str());
    let err = power::machine(action);
    guard::fatal(&format!("shutdown: {err}"))
}

fn stop_processes(ctx: &Ctx) {
    let others = |root: &Path| procfs::count_processes(root).total.saturating_sub(1);
    let proc_root = Path::new("/proc");
    if signal::kill_all(Signal::SIGTERM).is_err() {
        // ESRCH: nothing else runs.
        return;
    }
    let deadline = Instant::now() + GRACE;
    loop {
        ctx.node.add_reaped(signal::reap_all(|_, _| {}) as u64);
        if others(proc_root) == 0 {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    warn!("shutdown: processes left after {GRACE:?}: sending SIGKILL");
    let _ = signal::kill_all(Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(50));
    ctx.node.add_reaped(signal::reap_all(|_, _| {}) as u64);
}

fn unmount_all() {
    let Ok(text) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    for m in procfs::unmount_order(&text) {
        let target = Path::new(&m.target);
        if keel_sys::fs::unmount(target, false).is_err() {
            // Busy: our own console on /dev, say, or STATE under files PID
            // 1's own threads keep open (the KV member's). Detaching alone
            // leaves such a filesystem live until the power goes: its
            // journal unflushed (replayed at the next mount), and kernel
            // writes to it (ext4's lazy inode table init) cut off with I/O
            // errors. Freezing it first flushes everything, marks it clean
            // on the disk and holds later writes; filesystems that cannot
            // be frozen (tmpfs, proc, ...) just refuse.
            let _ = keel_sys::fs::freeze(target);
            let _ = keel_sys::fs::unmount(target, true);
        }
    }
}
