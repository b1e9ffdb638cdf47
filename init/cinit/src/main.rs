//! keel-init: see the library's documentation. No std, no libc:
//! keel-sysraw is its entry (`main!`) and its system layer. A build that
//! unwinds (dev, test) is a std program (see keel-sysraw).
#![cfg_attr(panic = "abort", no_std, no_main)]

use core::fmt::Write;

keel_sysraw::main!(init);

fn init(p: keel_sysraw::Process) -> i32 {
    match keel_init::parse(p.args.iter()).and_then(|a| keel_init::run(&a, &p)) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(keel_sysraw::Stderr, "keel-init: {e}");
            e.code()
        }
    }
}
