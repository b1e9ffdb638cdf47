//! PID 1's guard: the first thing keel installs.
//!
//! A panic in any thread, or a fatal error returned to the top, ends here: the
//! message goes to the console and the kernel log, filesystems are synced, and
//! the machine reboots (or powers off / halts, per `keel.on_panic`). PID 1
//! never returns and never exits, so the kernel never panics with "Attempted
//! to kill init". The guard writes through freshly opened files rather than
//! the shared log, so a panic while a log lock is held cannot deadlock it.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use keel_sys::power::{self, PowerAction};

static ACTION: AtomicU8 = AtomicU8::new(0);
/// `keel.debug.reboot=fail`: the first reboot(2) call fails on purpose.
static FAIL_REBOOT: AtomicBool = AtomicBool::new(false);

fn action() -> PowerAction {
    match ACTION.load(Ordering::Relaxed) {
        1 => PowerAction::PowerOff,
        2 => PowerAction::Halt,
        _ => PowerAction::Reboot,
    }
}

/// Choose what the guard does (from `keel.on_panic`).
pub fn set_action(a: PowerAction) {
    let v = match a {
        PowerAction::Reboot => 0,
        PowerAction::PowerOff => 1,
        PowerAction::Halt => 2,
    };
    ACTION.store(v, Ordering::Relaxed);
}

/// Make the guard's reboot(2) call for its action fail as if the kernel
/// refused it (`keel.debug.reboot=fail`): a test knob, since the fallback
/// cannot be reached otherwise while PID 1 holds CAP_SYS_BOOT.
pub fn set_reboot_fails(fail: bool) {
    FAIL_REBOOT.store(fail, Ordering::Relaxed);
}

/// The guard's reboot(2) call for `act`; returns only on failure.
fn machine(act: PowerAction) -> keel_sys::SysError {
    if FAIL_REBOOT.load(Ordering::Relaxed) {
        emergency_write(
            "/dev/console",
            &format!(
                "keel: guard: keel.debug.reboot=fail: failing the {} call on purpose\n",
                act.as_str()
            ),
        );
        return power::refused(act);
    }
    power::machine(act)
}

/// Install the panic hook. Call first thing in `main`.
pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        fatal(&format!("panic in thread {name}: {info}"));
    }));
}

fn emergency_write(path: &str, text: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path) {
        let _ = f.write_all(text.as_bytes());
    }
}

/// Log `msg`, sync, and reboot / power off / halt. Never returns.
pub fn fatal(msg: &str) -> ! {
    let act = action();
    let line = format!(
        "keel: FATAL: {msg}\nkeel: guard: syncing, then {}\n",
        act.as_str()
    );
    // Console first (fd 1 is /dev/console for PID 1): what the boot had not
    // printed yet, then the error; then the kernel log.
    if let Some(pending) = crate::log::take_deferred() {
        let _ = std::io::stderr().write_all(pending.as_bytes());
    }
    let _ = std::io::stderr().write_all(line.as_bytes());
    emergency_write("/dev/kmsg", &format!("<2>keel: FATAL: {msg}\n"));
    keel_sys::fs::sync();
    if keel_sys::proc::pid() != 1 {
        // Not PID 1 (a test or a developer running the binary): just stop.
        std::process::exit(70);
    }
    let err = machine(act);
    emergency_write("/dev/console", &format!("keel: guard: {err}; halting\n"));
    let err = power::machine(PowerAction::Halt);
    // Halt failed too: never exit, the kernel would panic.
    emergency_write(
        "/dev/console",
        &format!("keel: guard: {err}; sleeping forever\n"),
    );
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
