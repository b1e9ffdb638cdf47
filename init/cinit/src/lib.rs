//! keel-init: the PID 1 of a container whose spec says `init: true` (or a
//! `docker run --init` unit), as tini is Docker's `--init`.
//!
//! A program that is PID 1 of its pid namespace gets from outside only the
//! signals it has a handler for (the kernel drops the rest), and orphans of
//! the namespace become its children, which most programs never wait for.
//! keel binds this binary read-only at `/dev/init` and runs
//! `/dev/init PROGRAM -- ARGV0 [ARG...]` instead of the program. It:
//!
//! 1. blocks every signal it can forward (all but SIGKILL, SIGSTOP, the
//!    synchronous faults and the terminal's SIGTTIN/SIGTTOU) and SIGCHLD,
//!    and takes them one at a time with `rt_sigtimedwait`: blocked signals
//!    are queued even for a namespace's init, and no code runs in a
//!    handler;
//! 2. when it is not PID 1 (on the host, in tests), becomes a child
//!    subreaper, so that orphans below it still come to it;
//! 3. starts PROGRAM with ARGV0 ARG... and its own environment, the signals
//!    reset to a fresh process's (`keel_sysraw::spawn_fresh`);
//! 4. then, for each signal taken: SIGCHLD reaps every child that has ended
//!    (`waitpid(-1, WNOHANG)` until none), the program's end included; any
//!    other signal is sent on to the program;
//! 5. once the program has ended, exits with its status: its exit code, or
//!    128+N when signal N killed it. Processes left in the namespace are
//!    killed by the kernel when its init exits.
//!
//! It needs no privilege: signals to its own child, wait4, fork and
//! execve. The container's user, capabilities and seccomp filter apply to
//! it as to the program.
//!
//! It is a `no_std` binary without libc (it ships in every image: a few
//! KB, not a static glibc and std's megabyte): `keel-sysraw` is its entry
//! and its system layer. The library is `no_std` too, but for its unit
//! tests.
#![cfg_attr(not(test), no_std)]

use core::ffi::CStr;
use core::fmt;

use keel_sysraw::errnos::{ENOENT, ENOTDIR};
use keel_sysraw::{Ended, Errno, Process, SigSet, SIGCHLD};

/// What to run: the program's path; its argv (argv[0] first) is ours from
/// [`ARGV_AT`] on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Args<'a> {
    pub program: &'a CStr,
}

/// Where the program's argv starts in ours: `keel-init PROGRAM -- ARGV0`.
pub const ARGV_AT: usize = 3;

#[derive(Debug)]
pub enum InitError<'a> {
    Usage(&'static str),
    Block(Errno),
    ReadSignal(Errno),
    Subreaper(Errno),
    Start { program: &'a CStr, source: Errno },
    Reap(Errno),
}

impl fmt::Display for InitError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::Usage(why) => {
                write!(f, "usage: keel-init PROGRAM -- ARGV0 [ARG...] ({why})")
            }
            InitError::Block(e) => write!(f, "block the forwarded signals: {e}"),
            InitError::ReadSignal(e) => write!(f, "read a signal: {e}"),
            InitError::Subreaper(e) => write!(f, "become a child subreaper: {e}"),
            InitError::Start { program, source } => {
                // As String::from_utf8_lossy shows it.
                f.write_str("start ")?;
                for chunk in program.to_bytes().utf8_chunks() {
                    f.write_str(chunk.valid())?;
                    if !chunk.invalid().is_empty() {
                        f.write_str("\u{FFFD}")?;
                    }
                }
                write!(f, ": {source}")
            }
            InitError::Reap(e) => write!(f, "reap a child: {e}"),
        }
    }
}

impl InitError<'_> {
    /// The exit code keel-init ends with on this error: 127 when the
    /// program is not there, 126 when it cannot be run (as a shell), else
    /// 1 (as tini).
    pub fn code(&self) -> i32 {
        match self {
            InitError::Start { source, .. } => match *source {
                ENOENT | ENOTDIR => 127,
                _ => 126,
            },
            _ => 1,
        }
    }
}

/// `keel-init PROGRAM -- ARGV0 [ARG...]` (the full argv, ours first).
pub fn parse<'a>(args: impl IntoIterator<Item = &'a CStr>) -> Result<Args<'a>, InitError<'a>> {
    // A slice pattern, not `==`: a comparison of slices calls libc's bcmp,
    // which keel-init does not link.
    let dashes = |s: &CStr| matches!(s.to_bytes(), [b'-', b'-']);
    let mut it = args.into_iter().skip(1);
    match (it.next(), it.next(), it.next()) {
        (Some(program), Some(sep), Some(_)) if dashes(sep) => Ok(Args { program }),
        (Some(_), Some(sep), None) if dashes(sep) => Err(InitError::Usage("no argv after --")),
        _ => Err(InitError::Usage("expected a program, then --")),
    }
}

/// The exit code that reports a child's end: its own, or 128+N for a
/// signal N (as a shell and tini report it).
pub fn exit_code(how: Ended) -> i32 {
    match how {
        Ended::Exited(code) => code,
        Ended::Killed(sig) => 128 + sig,
    }
}

/// The signals keel-init takes: every one glibc lets a program block
/// (real-time ones included), less those it cannot or should not forward:
/// SIGKILL and SIGSTOP, the synchronous faults (they are keel-init's own),
/// and SIGTTIN/SIGTTOU (tini's choice: a terminal's, not for the child).
pub fn taken() -> SigSet {
    let mut set = SigSet::all();
    for s in [
        sig::KILL,
        sig::STOP,
        sig::FPE,
        sig::ILL,
        sig::SEGV,
        sig::BUS,
        sig::ABRT,
        sig::TRAP,
        sig::SYS,
        sig::TTIN,
        sig::TTOU,
    ] {
        set.remove(s);
    }
    set
}

/// The numbers of the signals keel-init names (x86_64 Linux).
mod sig {
    pub const ILL: i32 = 4;
    pub const TRAP: i32 = 5;
    pub const ABRT: i32 = 6;
    pub const BUS: i32 = 7;
    pub const FPE: i32 = 8;
    pub const KILL: i32 = 9;
    pub const SEGV: i32 = 11;
    pub const STOP: i32 = 19;
    pub const TTIN: i32 = 21;
    pub const TTOU: i32 = 22;
    pub const SYS: i32 = 31;
}

/// Run the program under keel-init's care until it ends; its exit code.
pub fn run<'a>(args: &Args<'a>, process: &Process) -> Result<i32, InitError<'a>> {
    let set = taken();
    // 1. Before the child exists, so that no signal meant for it is lost:
    // one that comes before it is started waits in the queue.
    keel_sysraw::block(&set).map_err(InitError::Block)?;
    // 2.
    if keel_sysraw::getpid() != 1 {
        keel_sysraw::set_child_subreaper().map_err(InitError::Subreaper)?;
    }
    // 3.
    let child = keel_sysraw::spawn_fresh(args.program, process.args.tail(ARGV_AT), process.env)
        .map_err(|source| InitError::Start {
            program: args.program,
            source,
        })?;
    // 4.
    loop {
        let sig = keel_sysraw::wait_signal(&set).map_err(InitError::ReadSignal)?;
        if sig == SIGCHLD {
            if let Some(code) = reap(child)? {
                // 5.
                return Ok(code);
            }
        } else {
            // The child may be gone already (its SIGCHLD is next in line).
            let _ = keel_sysraw::kill(child, sig);
        }
    }
}

/// Reap every child that has ended; the exit code of `child` when it is
/// one of them.
fn reap<'a>(child: i32) -> Result<Option<i32>, InitError<'a>> {
    let mut ended = None;
    while let Some((pid, how)) = keel_sysraw::reap_one().map_err(InitError::Reap)? {
        if pid == child {
            ended = Some(exit_code(how));
        }
    }
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use std::ffi::CString;

    fn c(v: &[&str]) -> Vec<CString> {
        v.iter().map(|s| CString::new(*s).unwrap()).collect()
    }

    #[test]
    fn arguments() {
        let v = c(&["/dev/init", "/bin/httpd", "--", "httpd", "-f"]);
        let a = parse(v.iter().map(|s| s.as_c_str())).unwrap();
        assert_eq!(a.program, c"/bin/httpd");
        assert_eq!(&v[ARGV_AT..], &c(&["httpd", "-f"])[..]);
        // "--" after it is the program's.
        let v = c(&["i", "/bin/sh", "--", "sh", "--", "x"]);
        assert!(parse(v.iter().map(|s| s.as_c_str())).is_ok());
        assert_eq!(v[ARGV_AT..].len(), 3);
        for (bad, says) in [
            (&["i"][..], "expected a program, then --"),
            (&["i", "/bin/sh"], "expected a program, then --"),
            (&["i", "/bin/sh", "sh"], "expected a program, then --"),
            (&["i", "/bin/sh", "--"], "no argv after --"),
        ] {
            let v = c(bad);
            let e = parse(v.iter().map(|s| s.as_c_str()))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(says) && e.starts_with("usage: keel-init"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn exit_codes_follow_tini() {
        assert_eq!(exit_code(Ended::Exited(7)), 7);
        assert_eq!(exit_code(Ended::Exited(0)), 0);
        assert_eq!(exit_code(Ended::Killed(15)), 143);
        assert_eq!(exit_code(Ended::Killed(9)), 137);
        assert_eq!(exit_code(Ended::Killed(36)), 164);
        let start = |source| InitError::Start {
            program: c"/x",
            source,
        };
        assert_eq!(start(ENOENT).code(), 127);
        assert_eq!(start(ENOTDIR).code(), 127);
        assert_eq!(start(Errno(nix::libc::EACCES)).code(), 126);
        assert_eq!(InitError::Usage("x").code(), 1);
    }

    /// The messages are keel-sys's and nix's, as before keel-init left std.
    #[test]
    fn messages_are_as_they_were() {
        let e = InitError::Start {
            program: c"/nonexistent/prog",
            source: ENOENT,
        };
        let was = keel_sys::SysError::StartProgram {
            program: "/nonexistent/prog".into(),
            source: nix::errno::Errno::ENOENT,
        };
        assert_eq!(e.to_string(), was.to_string());
        let bad = CString::new(b"/x\xff/y".to_vec()).unwrap();
        let e = InitError::Start {
            program: &bad,
            source: Errno(13),
        };
        assert_eq!(
            e.to_string(),
            "start /x\u{FFFD}/y: EACCES: Permission denied"
        );
        let was = keel_sys::SysError::Reap(nix::errno::Errno::EINVAL);
        assert_eq!(InitError::Reap(Errno(22)).to_string(), was.to_string());
        assert_eq!(
            InitError::Block(Errno(22)).to_string(),
            "block the forwarded signals: EINVAL: Invalid argument"
        );
    }

    #[test]
    fn the_forwarded_signals() {
        let s = taken();
        for f in [
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
            Signal::SIGQUIT,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
            Signal::SIGWINCH,
            Signal::SIGCHLD,
            Signal::SIGALRM,
            Signal::SIGCONT,
            Signal::SIGTSTP,
        ] {
            assert!(s.contains(f as i32), "{f}");
        }
        for n in [
            Signal::SIGKILL,
            Signal::SIGSTOP,
            Signal::SIGSEGV,
            Signal::SIGTTIN,
        ] {
            assert!(!s.contains(n as i32), "{n}");
        }
        // As nix::SigSet::all() less the same signals, number by number.
        let mut was = nix::sys::signal::SigSet::all();
        for n in [
            Signal::SIGKILL,
            Signal::SIGSTOP,
            Signal::SIGFPE,
            Signal::SIGILL,
            Signal::SIGSEGV,
            Signal::SIGBUS,
            Signal::SIGABRT,
            Signal::SIGTRAP,
            Signal::SIGSYS,
            Signal::SIGTTIN,
            Signal::SIGTTOU,
        ] {
            was.remove(n);
        }
        for n in Signal::iterator() {
            assert_eq!(s.contains(n as i32), was.contains(n), "{n}");
        }
    }
}
