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
//!    and reads them from a signalfd: blocked signals are queued even for a
//!    namespace's init, and no code runs in a handler;
//! 2. when it is not PID 1 (on the host, in tests), becomes a child
//!    subreaper, so that orphans below it still come to it;
//! 3. starts PROGRAM with ARGV0 ARG... and its own environment, the signals
//!    reset to a fresh process's (`keel_sys::child::spawn_fresh`);
//! 4. then, for each signal read: SIGCHLD reaps every child that has ended
//!    (`waitpid(-1, WNOHANG)` until none), the program's end included; any
//!    other signal is sent on to the program;
//! 5. once the program has ended, exits with its status: its exit code, or
//!    128+N when signal N killed it. Processes left in the namespace are
//!    killed by the kernel when its init exits.
//!
//! It needs no privilege: signals to its own child, waitpid, posix_spawn.
//! The container's user, capabilities and seccomp filter apply to it as to
//! the program.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;

use keel_sys::child::Ended;

/// What to run: the program's path and its argv (argv[0] first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub program: CString,
    pub argv: Vec<CString>,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("usage: keel-init PROGRAM -- ARGV0 [ARG...] ({0})")]
    Usage(&'static str),
    #[error("block the forwarded signals: {0}")]
    Block(nix::Error),
    #[error("open a signalfd: {0}")]
    SignalFd(nix::Error),
    #[error("read a signal: {0}")]
    ReadSignal(nix::Error),
    #[error("become a child subreaper: {0}")]
    Subreaper(nix::Error),
    #[error(transparent)]
    Start(keel_sys::SysError),
    #[error(transparent)]
    Reap(keel_sys::SysError),
}

impl InitError {
    /// The exit code keel-init ends with on this error: 127 when the
    /// program is not there, 126 when it cannot be run (as a shell), else
    /// 1 (as tini).
    pub fn code(&self) -> i32 {
        match self {
            InitError::Start(keel_sys::SysError::StartProgram { source, .. }) => match source {
                Errno::ENOENT | Errno::ENOTDIR => 127,
                _ => 126,
            },
            _ => 1,
        }
    }
}

/// `keel-init PROGRAM -- ARGV0 [ARG...]` (the full argv, ours first).
pub fn parse(args: &[OsString]) -> Result<Args, InitError> {
    let c = |s: &OsString| {
        CString::new(s.as_bytes()).map_err(|_| InitError::Usage("an argument contains a NUL byte"))
    };
    match args {
        [_, program, sep, argv @ ..] if sep == "--" && !argv.is_empty() => Ok(Args {
            program: c(program)?,
            argv: argv.iter().map(c).collect::<Result<_, _>>()?,
        }),
        [_, _, sep, ..] if sep == "--" => Err(InitError::Usage("no argv after --")),
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
        set.remove(s);
    }
    set
}

/// Run the program under keel-init's care until it ends; its exit code.
pub fn run(args: &Args) -> Result<i32, InitError> {
    let set = taken();
    // 1. Before the child exists, so that no signal meant for it is lost:
    // one that comes before it is started waits in the queue.
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(InitError::Block)?;
    let fd = SignalFd::new(&set).map_err(InitError::SignalFd)?;
    // 2.
    if std::process::id() != 1 {
        nix::sys::prctl::set_child_subreaper(true).map_err(InitError::Subreaper)?;
    }
    // 3.
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let child =
        keel_sys::child::spawn_fresh(&args.program, &args.argv, &env).map_err(InitError::Start)?;
    // 4.
    loop {
        let Some(info) = fd.read_signal().map_err(InitError::ReadSignal)? else {
            continue;
        };
        let sig = info.ssi_signo as i32;
        if sig == Signal::SIGCHLD as i32 {
            if let Some(code) = reap(child)? {
                // 5.
                return Ok(code);
            }
        } else {
            // The child may be gone already (its SIGCHLD is next in line).
            let _ = keel_sys::child::signal(child, sig);
        }
    }
}

/// Reap every child that has ended; the exit code of `child` when it is
/// one of them.
fn reap(child: Pid) -> Result<Option<i32>, InitError> {
    let mut ended = None;
    while let Some((pid, how)) = keel_sys::child::reap_one().map_err(InitError::Reap)? {
        if pid == child {
            ended = Some(exit_code(how));
        }
    }
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments() {
        let a = parse(&os(&["/dev/init", "/bin/httpd", "--", "httpd", "-f"])).unwrap();
        assert_eq!(a.program.to_str().unwrap(), "/bin/httpd");
        assert_eq!(a.argv, [c"httpd".to_owned(), c"-f".to_owned()]);
        // "--" after it is the program's.
        let a = parse(&os(&["i", "/bin/sh", "--", "sh", "--", "x"])).unwrap();
        assert_eq!(a.argv.len(), 3);
        for (bad, says) in [
            (&["i"][..], "expected a program, then --"),
            (&["i", "/bin/sh"], "expected a program, then --"),
            (&["i", "/bin/sh", "sh"], "expected a program, then --"),
            (&["i", "/bin/sh", "--"], "no argv after --"),
        ] {
            let e = parse(&os(bad)).unwrap_err().to_string();
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
        let e = InitError::Start(keel_sys::SysError::StartProgram {
            program: "/x".into(),
            source: Errno::ENOENT,
        });
        assert_eq!(e.code(), 127);
        let e = InitError::Start(keel_sys::SysError::StartProgram {
            program: "/x".into(),
            source: Errno::EACCES,
        });
        assert_eq!(e.code(), 126);
        assert_eq!(InitError::Usage("x").code(), 1);
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
            assert!(s.contains(f), "{f}");
        }
        for n in [
            Signal::SIGKILL,
            Signal::SIGSTOP,
            Signal::SIGSEGV,
            Signal::SIGTTIN,
        ] {
            assert!(!s.contains(n), "{n}");
        }
    }
}
