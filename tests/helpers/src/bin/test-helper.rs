//! Test helper started in the node by `keel.run=/usr/lib/keel/test-helper,MODE,ARG`.
//!
//! * `orphans,N`: create N orphaned grandchildren. Each round forks a child
//!   that forks a grandchild and exits at once; the grandchild is reparented
//!   to PID 1, which must reap it.
//! * `signal,TERM|INT`: send that signal to PID 1.
//!
//! Single-threaded, so fork is sound; between fork and _exit the children
//! call only async-signal-safe functions.

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

fn orphans(n: u32) -> Result<(), String> {
    let mut failed = 0u32;
    for i in 0..n {
        // SAFETY: this process is single-threaded; the child only forks again
        // and calls _exit, both async-signal-safe.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                // SAFETY: as above; the grandchild calls only _exit.
                let code = match unsafe { fork() } {
                    Ok(_) => 0,
                    // Out of pids or threads (unreaped zombies pile up
                    // against threads-max): tell the parent.
                    Err(_) => 1,
                };
                // SAFETY: _exit is async-signal-safe and ends the process
                // without running destructors or atexit handlers.
                unsafe { libc::_exit(code) }
            }
            Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => {}
                Ok(_) => failed += 1,
                Err(e) => return Err(format!("wait for child {i}: {e}")),
            },
            Err(e) => return Err(format!("fork child {i}: {e}")),
        }
    }
    if failed > 0 {
        return Err(format!("{failed} of {n} grandchildren could not be forked"));
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["orphans", n] => match n.parse() {
            Ok(n) => orphans(n).map(|()| format!("created {n} orphans")),
            Err(_) => Err(format!("orphans: {n:?} is not a count")),
        },
        ["signal", s] => {
            let sig = match s {
                "TERM" => Signal::SIGTERM,
                "INT" => Signal::SIGINT,
                other => {
                    eprintln!("test-helper: signal {other:?}: expected TERM or INT");
                    std::process::exit(2)
                }
            };
            kill(Pid::from_raw(1), sig)
                .map(|()| format!("sent SIG{s} to pid 1"))
                .map_err(|e| format!("kill 1 {s}: {e}"))
        }
        _ => Err(format!(
            "usage: test-helper orphans N | signal TERM|INT (got {args:?})"
        )),
    };
    match result {
        Ok(msg) => println!("test-helper: {msg}"),
        Err(e) => {
            println!("test-helper: error: {e}");
            std::process::exit(1);
        }
    }
}
