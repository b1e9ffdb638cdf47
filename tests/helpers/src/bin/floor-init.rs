//! The boot benchmark's floor: the smallest useful init. It says it started
//! and powers the machine off at once.

use keel_sys::power::{machine, PowerAction};

fn main() {
    let up = keel_sys::proc::uptime().unwrap_or_default();
    println!("floor: init reached at {:.3} ms", up.as_secs_f64() * 1e3);
    let err = machine(PowerAction::PowerOff);
    println!("floor: {err}");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
