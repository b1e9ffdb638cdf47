//! Signal sets, blocking, waiting for one, sending one.

use crate::syscall::{syscall, syscall4, KILL, RT_SIGPROCMASK, RT_SIGTIMEDWAIT};
use crate::{errnos::EINTR, Errno};

pub const SIGKILL: i32 = 9;
pub const SIGCHLD: i32 = 17;
pub const SIGSTOP: i32 = 19;

/// The kernel's sigset (64 signals, bit N-1 for signal N).
pub(crate) const SIGSET_SIZE: usize = 8;
const SIG_BLOCK: usize = 0;
pub(crate) const SIG_SETMASK: usize = 2;

/// A set of signals 1..=64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigSet(u64);

impl SigSet {
    /// No signal.
    pub const fn empty() -> Self {
        SigSet(0)
    }

    /// Every signal glibc lets a program block: 1..=64 less 32 and 33,
    /// which it keeps for its threads (nix's `SigSet::all`, sigfillset).
    pub const fn all() -> Self {
        SigSet(!((1 << 31) | (1 << 32)))
    }

    fn bit(sig: i32) -> u64 {
        if (1..=64).contains(&sig) {
            1 << (sig - 1)
        } else {
            0
        }
    }

    pub fn remove(&mut self, sig: i32) {
        self.0 &= !Self::bit(sig);
    }

    pub fn contains(&self, sig: i32) -> bool {
        self.0 & Self::bit(sig) != 0
    }
}

/// Add `set` to the signals blocked for the calling thread.
pub fn block(set: &SigSet) -> Result<(), Errno> {
    // SAFETY: the kernel reads 8 bytes from `set`, which we borrow, and
    // writes no old mask (NULL).
    unsafe {
        syscall4(
            RT_SIGPROCMASK,
            SIG_BLOCK,
            set as *const SigSet as usize,
            0,
            SIGSET_SIZE,
        )
    }
    .map(drop)
}

/// Take the next pending signal of `set` (blocked beforehand), waiting for
/// one: its number. A wait interrupted before one came is waited again.
pub fn wait_signal(set: &SigSet) -> Result<i32, Errno> {
    loop {
        // SAFETY: rt_sigtimedwait reads 8 bytes from `set`, which we
        // borrow; no siginfo and no timeout (NULL).
        match unsafe {
            syscall4(
                RT_SIGTIMEDWAIT,
                set as *const SigSet as usize,
                0,
                0,
                SIGSET_SIZE,
            )
        } {
            Ok(sig) => return Ok(sig as i32),
            Err(EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Send signal `sig` to process `pid`.
pub fn kill(pid: i32, sig: i32) -> Result<(), Errno> {
    // SAFETY: kill takes two integers and touches no memory of ours.
    unsafe { syscall(KILL, pid as isize as usize, sig as isize as usize, 0) }.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_sigfillset() {
        let all = SigSet::all();
        for s in 1..=64 {
            let fill = nix::sys::signal::SigSet::all();
            let named = nix::sys::signal::Signal::try_from(s).ok();
            assert_eq!(all.contains(s), s != 32 && s != 33, "{s}");
            if let Some(n) = named {
                assert_eq!(all.contains(s), fill.contains(n), "{s}");
            }
        }
        let mut s = SigSet::all();
        s.remove(SIGCHLD);
        assert!(!s.contains(SIGCHLD) && s.contains(SIGKILL));
        assert!(!SigSet::empty().contains(1) && !all.contains(0) && !all.contains(65));
    }
}
