//! Start a program as a plain child with a fresh signal state: what a
//! container's init (`keel-init`) needs to run the container's program.
//!
//! glibc's `posix_spawn` (a `clone(CLONE_VM | CLONE_VFORK)` and an execve)
//! with `POSIX_SPAWN_SETSIGMASK` (empty) and `POSIX_SPAWN_SETSIGDEF` (every
//! signal): the caller blocks the signals it waits for, and the child must
//! not inherit that mask nor an ignored signal, or the program would never
//! see the signals forwarded to it. An exec failure comes back as the
//! error (glibc waits for the exec through the vfork), so the caller can
//! report it and exit 127 or 126 as a shell does.

use std::ffi::CString;

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::SysError;

/// Start `program` with `argv` and `env` as a child of the calling
/// process, every signal at its default action and none blocked.
pub fn spawn_fresh(program: &CString, argv: &[CString], env: &[CString]) -> Result<Pid, SysError> {
    let fail = |e: i32| SysError::StartProgram {
        program: program.to_string_lossy().into_owned(),
        source: Errno::from_raw(e),
    };
    let mut argv_p: Vec<*mut libc::c_char> = argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv_p.push(std::ptr::null_mut());
    let mut env_p: Vec<*mut libc::c_char> = env.iter().map(|e| e.as_ptr().cast_mut()).collect();
    env_p.push(std::ptr::null_mut());
    let mut pid: libc::pid_t = 0;
    // SAFETY: the attribute object is initialised before use and destroyed
    // after; the sigsets are initialised by sigemptyset/sigfillset before
    // they are read; `program` is NUL-terminated, and argv/envp are
    // NULL-terminated arrays of pointers to NUL-terminated strings that
    // outlive the call (posix_spawn copies nothing after it returns, and
    // the vfork child execs or exits before it returns).
    let r = unsafe {
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        let r = libc::posix_spawnattr_init(&mut attr);
        if r != 0 {
            return Err(fail(r));
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigfillset(&mut all);
        let mut r = libc::posix_spawnattr_setflags(
            &mut attr,
            (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
        );
        if r == 0 {
            r = libc::posix_spawnattr_setsigmask(&mut attr, &none);
        }
        if r == 0 {
            r = libc::posix_spawnattr_setsigdefault(&mut attr, &all);
        }
        if r == 0 {
            r = libc::posix_spawn(
                &mut pid,
                program.as_ptr(),
                std::ptr::null(),
                &attr,
                argv_p.as_ptr(),
                env_p.as_ptr(),
            );
        }
        libc::posix_spawnattr_destroy(&mut attr);
        r
    };
    if r != 0 {
        return Err(fail(r));
    }
    Ok(Pid::from_raw(pid))
}

/// Send signal number `sig` (real-time ones included, which nix's
/// `Signal` does not name) to the process `pid`.
pub fn signal(pid: Pid, sig: i32) -> Result<(), SysError> {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    let r = unsafe { libc::kill(pid.as_raw(), sig) };
    if r != 0 {
        return Err(SysError::SignalProcess {
            pid: pid.as_raw(),
            sig,
            source: Errno::last(),
        });
    }
    Ok(())
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this code.
    Exited(i32),
    /// This signal killed it (any number: nix's `WaitStatus` refuses
    /// real-time ones).
    Killed(i32),
}

/// Reap one child of the calling process that has ended, without
/// waiting: None when none has (or there is no child left).
pub fn reap_one() -> Result<Option<(Pid, Ended)>, SysError> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes the status into a c_int we own.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid == 0 {
            return Ok(None);
        }
        if pid < 0 {
            return match Errno::last() {
                Errno::ECHILD => Ok(None),
                Errno::EINTR => continue,
                e => Err(SysError::Reap(e)),
            };
        }
        let how = if libc::WIFSIGNALED(status) {
            Ended::Killed(libc::WTERMSIG(status))
        } else {
            Ended::Exited(libc::WEXITSTATUS(status))
        };
        return Ok(Some((Pid::from_raw(pid), how)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
    use nix::sys::wait::{waitpid, WaitStatus};

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    /// The child starts with no signal blocked or ignored, whatever the
    /// caller has; an exec failure is the error, with its errno.
    #[test]
    fn the_child_gets_a_fresh_signal_state() {
        if !std::path::Path::new("/bin/sh").exists() {
            keel_testkit::skip("needs /bin/sh");
            return;
        }
        // In a thread of its own: the mask is per thread, and posix_spawn
        // takes the caller's.
        std::thread::spawn(|| {
            let mut set = SigSet::empty();
            set.add(Signal::SIGTERM);
            sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).unwrap();
            let script = "kill -TERM $$; echo survived";
            let argv = [c("sh"), c("-c"), c(script)];
            let pid = spawn_fresh(&c("/bin/sh"), &argv, &[]).unwrap();
            assert_eq!(
                waitpid(pid, None).unwrap(),
                WaitStatus::Signaled(pid, Signal::SIGTERM, false),
                "SIGTERM killed the child"
            );
            // Control: the caller itself has SIGTERM blocked.
            let mut now = SigSet::empty();
            sigprocmask(SigmaskHow::SIG_BLOCK, None, Some(&mut now)).unwrap();
            assert!(now.contains(Signal::SIGTERM));
            let e = spawn_fresh(&c("/nonexistent/prog"), &[c("prog")], &[]).unwrap_err();
            assert!(
                matches!(
                    e,
                    SysError::StartProgram {
                        source: Errno::ENOENT,
                        ..
                    }
                ),
                "{e}"
            );
            assert_eq!(
                e.to_string(),
                "start /nonexistent/prog: ENOENT: No such file or directory"
            );
        })
        .join()
        .unwrap();
    }
}
