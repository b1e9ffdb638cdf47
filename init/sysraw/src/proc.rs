//! The process itself: its pid, exit, the subreaper flag, stderr.

use core::fmt;

use crate::syscall::{syscall, GETPID, KILL, PRCTL, WRITE};
use crate::{errnos::EINTR, Errno};

const PR_SET_CHILD_SUBREAPER: usize = 36;
const SIGABRT: usize = 6;

/// The calling process's id.
pub fn getpid() -> i32 {
    // SAFETY: getpid takes no argument and cannot fail.
    unsafe { syscall(GETPID, 0, 0, 0) }.unwrap_or(0) as i32
}

/// End the process with `code` (exit_group: there is one thread).
pub fn exit(code: i32) -> ! {
    crate::syscall::exit_group(code)
}

/// End the process with SIGABRT (not blocked by keel-init), as libc's
/// abort: a panic under `panic = "abort"`.
pub fn abort() -> ! {
    // SAFETY: kill takes two integers and touches no memory of ours.
    let _ = unsafe { syscall(KILL, getpid() as usize, SIGABRT, 0) };
    exit(128 + SIGABRT as i32)
}

/// Make the calling process the subreaper of its descendants: orphans
/// below it are reparented to it rather than to the namespace's init.
pub fn set_child_subreaper() -> Result<(), Errno> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes integers only.
    unsafe { syscall(PRCTL, PR_SET_CHILD_SUBREAPER, 1, 0) }.map(drop)
}

/// Write all of `buf` to file descriptor `fd`.
pub(crate) fn write_all(fd: i32, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // SAFETY: the kernel reads buf.len() bytes from buf, which we borrow.
        match unsafe { syscall(WRITE, fd as usize, buf.as_ptr() as usize, buf.len()) } {
            Ok(0) => return Err(Errno(5)),
            Ok(n) => buf = &buf[n..],
            Err(EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// File descriptor 2, unbuffered (as std's `eprintln!`).
pub struct Stderr;

impl fmt::Write for Stderr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_all(2, s.as_bytes()).map_err(|_| fmt::Error)
    }
}
