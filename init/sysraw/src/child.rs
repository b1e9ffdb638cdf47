//! Start a program as a plain child with a fresh signal state, and reap
//! children: what glibc's `posix_spawn` with `POSIX_SPAWN_SETSIGMASK`
//! (empty) and `POSIX_SPAWN_SETSIGDEF` (every signal) did for keel-init.
//!
//! 1. a close-on-exec pipe, then fork;
//! 2. the child: every signal to its default action (the caller's
//!    ignored ones included; SIGKILL and SIGSTOP cannot change), then the
//!    mask emptied, in that order so that no signal pending at the unblock
//!    runs an inherited action; then execve. On failure it writes the
//!    errno to the pipe and exits 127;
//! 3. the parent reads the pipe: end of file means the exec closed it (the
//!    program runs); four bytes are the exec's errno, and the failed
//!    child is reaped before the error is returned (as glibc does).
//!
//! fork, not vfork: the child shares no memory with the parent, so no
//! Rust invariant depends on what it writes; keel-init is tiny, so the
//! copy is cheap.

use core::ffi::CStr;

use crate::errnos::{ECHILD, EINTR};
use crate::signal::{SIGSET_SIZE, SIG_SETMASK};
use crate::start::KernelSigaction;
use crate::syscall::{
    syscall, syscall4, CLOSE, EXECVE, FORK, PIPE2, READ, RT_SIGACTION, RT_SIGPROCMASK, WAIT4,
};
use crate::{Argv, Errno, SigSet, SIGKILL, SIGSTOP};

const O_CLOEXEC: usize = 0o2000000;
const WNOHANG: usize = 1;

fn close(fd: i32) {
    // SAFETY: closing a descriptor this module opened and owns.
    let _ = unsafe { syscall(CLOSE, fd as usize, 0, 0) };
}

/// Start `program` with `argv` and `env` as a child of the calling
/// process, every signal at its default action and none blocked: its pid.
pub fn spawn_fresh(program: &CStr, argv: Argv, env: Argv) -> Result<i32, Errno> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two ints into `fds`, which we own.
    unsafe { syscall(PIPE2, fds.as_mut_ptr() as usize, O_CLOEXEC, 0) }?;
    let [r, w] = fds;
    // SAFETY: fork gives the child a copy of this single-threaded process;
    // the child runs `exec_fresh`, which makes system calls only (no lock,
    // no allocation) and ends in execve or exit_group.
    let pid = match unsafe { syscall(FORK, 0, 0, 0) } {
        Ok(0) => exec_fresh(program, argv, env, w),
        Ok(pid) => pid as i32,
        Err(e) => {
            close(r);
            close(w);
            return Err(e);
        }
    };
    close(w);
    let mut buf = [0u8; 4];
    let got = loop {
        // SAFETY: the kernel writes at most 4 bytes into `buf`, which we own.
        match unsafe { syscall(READ, r as usize, buf.as_mut_ptr() as usize, buf.len()) } {
            Err(EINTR) => {}
            other => break other,
        }
    };
    close(r);
    if got != Ok(4) {
        return Ok(pid);
    }
    // SAFETY: wait4 on our own child, no status or rusage (NULL).
    while let Err(EINTR) = unsafe { syscall4(WAIT4, pid as usize, 0, 0, 0) } {}
    Err(Errno(i32::from_ne_bytes(buf)))
}

/// The child's side: fresh signal state, execve; on failure the errno to
/// `report` and exit 127.
fn exec_fresh(program: &CStr, argv: Argv, env: Argv, report: i32) -> ! {
    let dfl = KernelSigaction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: SigSet::empty(),
    };
    for sig in 1..=64 {
        if sig != SIGKILL && sig != SIGSTOP {
            // SAFETY: the kernel reads the sigaction we borrow (SIG_DFL)
            // and writes no old one.
            let _ = unsafe {
                syscall4(
                    RT_SIGACTION,
                    sig as usize,
                    &dfl as *const _ as usize,
                    0,
                    SIGSET_SIZE,
                )
            };
        }
    }
    let none = SigSet::empty();
    // SAFETY: the kernel reads 8 bytes from `none`; no old mask (NULL).
    let _ = unsafe {
        syscall4(
            RT_SIGPROCMASK,
            SIG_SETMASK,
            &none as *const _ as usize,
            0,
            SIGSET_SIZE,
        )
    };
    // SAFETY: `program` is NUL-terminated; argv and env are NULL-ended
    // arrays of NUL-terminated strings (Argv's invariant) that live on.
    let e = unsafe {
        syscall(
            EXECVE,
            program.as_ptr() as usize,
            argv.as_ptr() as usize,
            env.as_ptr() as usize,
        )
    }
    .err()
    .unwrap_or(Errno(0));
    let _ = crate::proc::write_all(report, &e.0.to_ne_bytes());
    crate::exit(127)
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this code.
    Exited(i32),
    /// This signal killed it.
    Killed(i32),
}

/// Reap one child of the calling process that has ended, without
/// waiting: None when none has (or there is no child left).
pub fn reap_one() -> Result<Option<(i32, Ended)>, Errno> {
    loop {
        let mut status: i32 = 0;
        // SAFETY: wait4 writes the status into an i32 we own; no rusage.
        let r = unsafe {
            syscall4(
                WAIT4,
                -1isize as usize,
                &mut status as *mut i32 as usize,
                WNOHANG,
                0,
            )
        };
        return match r {
            Ok(0) | Err(ECHILD) => Ok(None),
            Err(EINTR) => continue,
            Err(e) => Err(e),
            Ok(pid) => Ok(Some((pid as i32, decode(status)))),
        };
    }
}

/// A wait status as libc's W* macros read it.
fn decode(status: i32) -> Ended {
    let sig = status & 0x7f;
    // WIFSIGNALED: a signal number, not 0 (exited) nor 0x7f (stopped).
    if sig != 0 && sig != 0x7f {
        Ended::Killed(sig)
    } else {
        Ended::Exited((status >> 8) & 0xff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_decode_as_libc() {
        assert_eq!(decode(0), Ended::Exited(0));
        assert_eq!(decode(7 << 8), Ended::Exited(7));
        assert_eq!(decode(15), Ended::Killed(15));
        assert_eq!(decode(9 | 0x80), Ended::Killed(9), "core dumped");
        assert_eq!(decode(36), Ended::Killed(36));
    }
}
