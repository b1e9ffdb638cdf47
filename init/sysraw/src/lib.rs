//! keel-sysraw: the system layer of `keel-init`, for a binary without std
//! or libc (x86_64 Linux only). It is keel-init's `keel-sys`: the only
//! place its `unsafe` code lives.
//!
//! 1. `start`: the program's entry (`keel_sysraw_entry`, named to the
//!    linker with `-e`): reads argc, argv and envp from the initial stack,
//!    does what std does before `main` (fds 0-2 opened on /dev/null when
//!    closed, SIGPIPE ignored) and calls the binary's main, declared with
//!    [`main!`];
//! 2. `syscall`: the `syscall` instruction, the only inline assembly
//!    besides the entry;
//! 3. safe wrappers for what keel-init needs: signals, the child
//!    subreaper, starting a program with a fresh signal state, reaping,
//!    stderr, exit.
//!
//! Two builds, by the panic strategy (the same for every crate of a build):
//! with `panic = "abort"` (release: what ships) the binary is `no_std`
//! with the entry above. With `panic = "unwind"` (dev and test builds;
//! stable Rust cannot build a `no_std` binary that unwinds) [`main!`]
//! makes it a std program whose `main` takes argv and the environment
//! from std ([`Process::from_std`]); everything after the entry is the
//! same code. tests/init.rs runs either (`KEEL_INIT_BIN`).
#![no_std]
#[cfg(panic = "unwind")]
extern crate std;

mod child;
mod errno;
mod proc;
mod signal;
mod start;
mod syscall;

pub use child::{reap_one, spawn_fresh, Ended};
pub use errno::Errno;
pub use proc::{abort, exit, getpid, set_child_subreaper, Stderr};
pub use signal::{block, kill, wait_signal, SigSet, SIGCHLD, SIGKILL, SIGSTOP};
pub use start::{Argv, Process};

pub mod errnos {
    //! The errno values keel-init tells apart.
    pub use crate::errno::{EBADF, ECHILD, EINTR, ENOENT, ENOTDIR};
}

/// Declare the binary's main: `keel_sysraw::main!(path)` with
/// `fn path(p: keel_sysraw::Process) -> i32` (the exit code). With
/// `panic = "abort"`: the function the entry calls, and the panic handler
/// (abort: SIGABRT, as `panic = "abort"` with std); the binary is
/// `#![cfg_attr(panic = "abort", no_std, no_main)]`. With unwinding: std's
/// `main`.
#[macro_export]
macro_rules! main {
    ($main:path) => {
        #[cfg(panic = "abort")]
        #[no_mangle]
        fn keel_sysraw_main(p: $crate::Process) -> i32 {
            $main(p)
        }

        #[cfg(panic = "abort")]
        #[panic_handler]
        fn keel_sysraw_panic(_: &::core::panic::PanicInfo<'_>) -> ! {
            $crate::abort()
        }

        #[cfg(panic = "unwind")]
        fn main() {
            $crate::exit($main($crate::Process::from_std()))
        }
    };
}
