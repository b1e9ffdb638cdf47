//! Undoing what the soak made, however it ends.
//!
//! Normal ends drop the [`Net`](super::net::Net) and the
//! [`Cluster`](super::cluster::Cluster), which kill the members and remove
//! the namespaces and links. Two ends skip `Drop`: a panic (release builds
//! abort on panic) and a signal (Ctrl-C on `make soak`). For them, the
//! member pids and the network's names are also kept in one registry here,
//! and [`install`]:
//!
//! 1. blocks SIGINT, SIGTERM and SIGHUP in the calling thread (the main one,
//!    before any other thread exists, so every thread inherits the mask;
//!    child processes start with an empty mask again) and waits for them on
//!    a thread of its own, which cleans up and exits;
//! 2. adds a panic hook that cleans up before the default hook reports the
//!    panic.
//!
//! Members are also started under `setpriv --pdeathsig KILL`, so even a
//! SIGKILL of the soak takes them down; the namespaces of a soak that died
//! that way are removed by the next one ([`super::net::remove_stale`]).

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

use super::net::{self, Names};

#[derive(Default)]
struct Registry {
    pids: BTreeSet<i32>,
    net: Option<Names>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    pids: BTreeSet::new(),
    net: None,
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Remember a member process to kill if the soak dies.
pub fn track_pid(pid: u32) {
    registry().pids.insert(pid as i32);
}

/// The process was reaped: its pid may be reused and must not be killed.
pub fn untrack_pid(pid: u32) {
    registry().pids.remove(&(pid as i32));
}

/// Remember the network to remove if the soak dies.
pub fn track_net(names: Names) {
    registry().net = Some(names);
}

pub fn untrack_net() {
    registry().net = None;
}

/// Kills every tracked member and removes the tracked network.
pub fn run() {
    let (pids, names) = {
        let mut r = registry();
        (std::mem::take(&mut r.pids), r.net.take())
    };
    for pid in pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    if let Some(names) = names {
        // Give the killed members a moment to leave their namespaces.
        std::thread::sleep(std::time::Duration::from_millis(200));
        net::teardown(&names);
    }
}

/// Steps 1 and 2; call first thing in `main`.
pub fn install() -> nix::Result<()> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block()?;
    std::thread::Builder::new()
        .name("soak-signals".into())
        .spawn(move || {
            if let Ok(sig) = set.wait() {
                eprintln!("\nkeel-kv-soak: {sig}: killing the members and removing the network");
                run();
                std::process::exit(128 + sig as i32);
            }
        })
        .map_err(|_| nix::Error::EAGAIN)?;
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        run();
        default(info);
    }));
    Ok(())
}
