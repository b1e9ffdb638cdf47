//! keel's PID 1.
//!
//! 1. Install the guard (panic hook → log, sync, reboot), then block the
//!    signals PID 1 handles so that every thread inherits the mask.
//! 2. Run the boot table (`boot_table::BOOT`): phases of named, timed tasks.
//! 3. Print `keel: ready in N ms`, start `keel.run` if given.
//! 4. Wait for a shutdown request (API, SIGTERM, SIGINT/Ctrl-Alt-Del) and run
//!    the orderly shutdown (`shutdown`). PID 1 never returns.

mod announce;
mod boot_table;
mod config;
mod confine;
mod containers;
mod dhcp;
mod kernel;
mod kv;
mod net;
mod node;
mod root;
mod services;
mod shutdown;
mod sysctl;

use std::time::Duration;

use keel_boot::cmdline::PanicPoint;
use keel_boot::{guard, info, phases, warn, Timeline};

pub use node::NodeShared;

/// Time since the kernel booted, the clock of the boot timeline.
pub(crate) fn clock() -> Duration {
    keel_sys::proc::uptime().unwrap_or_default()
}

/// PID 1's entry point. Never returns.
pub fn run() -> ! {
    let start = clock();
    if keel_sys::proc::pid() != 1 {
        // Everything below mounts over /proc, /dev, ... and switches root:
        // never do that to a machine keel is not the init of.
        eprintln!("keel: must run as PID 1 (the init of a keel node); refusing to start");
        std::process::exit(2);
    }
    guard::install();
    keel_sys::proc::limit_malloc_arenas(2);
    // Console lines wait until ready (see keel_boot::log): serial output is
    // the most expensive thing a boot under TCG does.
    keel_boot::log::defer();
    let signals = match services::block_signals() {
        Ok(s) => s,
        Err(e) => guard::fatal(&format!("block signals: {e}")),
    };
    let mut ctx = boot_table::Ctx::new(signals);
    let mut timeline = Timeline::new(start);
    info!(
        "keel {} starting as pid {} at {:.3} ms after kernel start",
        env!("CARGO_PKG_VERSION"),
        keel_sys::proc::pid(),
        phases::ms(start)
    );
    let log = |is_err: bool, line: &str| {
        if is_err {
            warn!("{line}");
        } else {
            info!("{line}");
        }
    };
    if let Err(e) = phases::run(boot_table::BOOT, &mut ctx, &mut timeline, &clock, &log) {
        guard::fatal(&e.to_string());
    }
    let ready = clock();
    timeline.ready_ms = Some(phases::ms(ready));
    let took = timeline.pid1_to_ready_ms().unwrap_or_default();
    ctx.node.set_ready(timeline);
    // The ready line first, then the boot's held-back lines: a serial console
    // writes a byte at a time (~15 µs each under TCG, ~87 µs at 115200 baud
    // on hardware), so the timeline's ~2 KB would otherwise delay the line
    // everyone waits for by tens of milliseconds. Each held-back line carries
    // its own start time.
    keel_boot::log::line_now(&format!(
        "ready in {took:.0} ms ({:.3} ms since kernel start); boot timeline:",
        phases::ms(ready)
    ));
    keel_boot::log::flush();
    ctx.run_after_ready();
    // Off the boot path: the CPU's vulnerabilities, read and logged.
    let _ = ctx.node.cpu();
    if ctx.cmdline.debug_panic == Some(PanicPoint::Ready) {
        panic!("keel.debug.panic=ready: panicking on purpose to exercise the guard");
    }
    let healthy_after = Duration::from_secs(ctx.cmdline.healthy_after_s);
    root::spawn_mark_successful(&mut ctx, healthy_after);
    services::run_keel_run(&ctx.cmdline);
    if keel_api::Node::config(&*ctx.node).maintenance {
        config::spawn_reread(ctx.node.clone(), ctx.cmdline.config_url.clone());
    }
    let action = ctx.wait_for_shutdown();
    shutdown::run(&mut ctx, action)
}
