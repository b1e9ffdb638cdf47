//! Signals through signalfd, and child reaping.
//!
//! PID 1 blocks the signals it handles in every thread (the mask is set before
//! any thread starts, and threads inherit it) and reads them from a signalfd,
//! so no code runs in signal-handler context.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

pub use nix::sys::signal::Signal;

use crate::SysError;

/// Block `signals` in the calling thread (and so in every thread it creates later).
pub fn block(signals: &[Signal]) -> Result<SigSet, SysError> {
    let mut set = SigSet::empty();
    for s in signals {
        set.add(*s);
    }
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(SysError::SigMask)?;
    Ok(set)
}

/// A non-blocking signalfd for a set of blocked signals.
pub struct SignalReader {
    fd: SignalFd,
}

impl SignalReader {
    pub fn new(set: &SigSet) -> Result<Self, SysError> {
        let fd = SignalFd::with_flags(set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(SysError::SignalFd)?;
        Ok(SignalReader { fd })
    }

    /// The next pending signal, or `None` when none is pending.
    pub fn pending(&mut self) -> Result<Option<Signal>, SysError> {
        loop {
            match self.fd.read_signal() {
                Ok(Some(info)) => match Signal::try_from(info.ssi_signo as i32) {
                    Ok(sig) => return Ok(Some(sig)),
                    // A signal number nix does not know (realtime): not ours, skip it.
                    Err(_) => continue,
                },
                Ok(None) => return Ok(None),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(SysError::SignalFd(e)),
            }
        }
    }
}

impl AsRawFd for SignalReader {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_fd().as_raw_fd()
    }
}

impl AsFd for SignalReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// How a reaped child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    Exited(i32),
    Signaled(i32),
}

/// Reap every child that has exited, without blocking.
///
/// SIGCHLD coalesces: one signal may stand for many exits, so this loops until
/// `waitpid` says nothing more is ready. Returns `(pid, exit)` for each.
pub fn reap_all(mut on_exit: impl FnMut(i32, ChildExit)) -> usize {
    let mut n = 0;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                n += 1;
                on_exit(pid.as_raw(), ChildExit::Exited(code));
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                n += 1;
                on_exit(pid.as_raw(), ChildExit::Signaled(sig as i32));
            }
            // Stopped/continued children are not exits; keep looping for the rest.
            Ok(WaitStatus::StillAlive) => return n,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            // ECHILD: no children at all.
            Err(_) => return n,
        }
    }
}

/// Send `sig` to every process but PID 1 (`kill(-1, sig)`).
pub fn kill_all(sig: Signal) -> Result<(), nix::Error> {
    nix::sys::signal::kill(Pid::from_raw(-1), sig)
}

/// A `SignalReader` registered with the tokio reactor.
pub struct AsyncSignals {
    fd: tokio::io::unix::AsyncFd<SignalReader>,
}

impl AsyncSignals {
    /// Register `reader` with the current tokio runtime (call inside it).
    pub fn new(reader: SignalReader) -> Result<AsyncSignals, std::io::Error> {
        // SAFETY: SignalReader owns its signalfd (an OwnedFd inside nix's
        // SignalFd) for its whole life and `as_raw_fd` always returns that same
        // descriptor; AsyncFd takes ownership, so the fd stays open and
        // unchanged until the AsyncFd is dropped.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(reader, tokio::io::Interest::READABLE)
        }
        .map_err(std::io::Error::from)?;
        Ok(AsyncSignals { fd })
    }

    /// Wait for pending signals and return them all (at least one).
    pub async fn next_batch(&mut self) -> Result<Vec<Signal>, std::io::Error> {
        loop {
            let mut ready = self.fd.readable_mut().await?;
            let mut out = Vec::new();
            loop {
                match ready.get_inner_mut().pending() {
                    Ok(Some(sig)) => out.push(sig),
                    Ok(None) => break,
                    Err(e) => return Err(std::io::Error::other(e)),
                }
            }
            ready.clear_ready();
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }
}
