//! The raw `syscall` instruction (x86_64 Linux ABI): number in rax,
//! arguments in rdi, rsi, rdx, r10, r8, r9; the kernel clobbers rcx and
//! r11 and returns in rax, -4095..=-1 being -errno.

use core::arch::asm;

use crate::Errno;

pub const READ: usize = 0;
pub const WRITE: usize = 1;
#[cfg(panic = "abort")]
pub const OPEN: usize = 2;
pub const CLOSE: usize = 3;
pub const RT_SIGACTION: usize = 13;
pub const RT_SIGPROCMASK: usize = 14;
pub const GETPID: usize = 39;
pub const FORK: usize = 57;
pub const EXECVE: usize = 59;
pub const WAIT4: usize = 61;
pub const KILL: usize = 62;
#[cfg(panic = "abort")]
pub const FCNTL: usize = 72;
pub const PRCTL: usize = 157;
pub const RT_SIGTIMEDWAIT: usize = 128;
const EXIT_GROUP: usize = 231;
pub const PIPE2: usize = 293;

/// The kernel's return value as a result.
fn result(r: isize) -> Result<usize, Errno> {
    if (-4095..0).contains(&r) {
        Err(Errno(-r as i32))
    } else {
        Ok(r as usize)
    }
}

/// Make system call `nr` with up to four arguments (unused ones 0).
///
/// # Safety
/// The call must be sound for those arguments: every pointer among them
/// valid for what the kernel reads or writes through it, and the call
/// must not break an invariant Rust relies on (no memory unmapped under a
/// live reference, no `exit` of a thread that owns borrowed data).
pub unsafe fn syscall4(nr: usize, a: usize, b: usize, c: usize, d: usize) -> Result<usize, Errno> {
    let r: isize;
    // SAFETY: the caller vouches for the call itself (see above); the asm
    // block declares every register the instruction reads or clobbers and
    // leaves the stack alone.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as isize => r,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            in("r10") d,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    result(r)
}

/// Make system call `nr` with no argument that touches memory.
///
/// # Safety
/// As for [`syscall4`].
pub unsafe fn syscall(nr: usize, a: usize, b: usize, c: usize) -> Result<usize, Errno> {
    // SAFETY: the caller's promise, passed on.
    unsafe { syscall4(nr, a, b, c, 0) }
}

/// End the process (every thread) with `code`: exit_group, which does not
/// return.
pub fn exit_group(code: i32) -> ! {
    // SAFETY: the process ends here: nothing runs after the call, so no
    // borrow outlives its owner and no destructor is skipped that anything
    // could observe.
    unsafe {
        asm!(
            "syscall",
            in("rax") EXIT_GROUP,
            in("rdi") code as isize,
            options(noreturn, nostack),
        );
    }
}
