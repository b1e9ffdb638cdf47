//! Network namespaces: open one, create one, run code inside one.
//!
//! A network namespace is entered per *thread* (`setns(fd, CLONE_NEWNET)`
//! changes only the calling thread), so work inside another namespace runs
//! on a dedicated short-lived thread: it enters the namespace, runs the
//! closure and ends, and no thread of keel is left in a foreign namespace.
//! A socket keeps the namespace it was created in, so a closure that opens a
//! socket and returns it gives the caller a handle into that namespace
//! (this is how [`crate::netlink::Rtnl::open_in`] works).

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sched::CloneFlags;

use crate::SysError;

/// A network namespace named by a process in it or by an open fd of it
/// (`/proc/PID/ns/net`, or one made by [`create`]).
#[derive(Debug, Clone, Copy)]
pub enum NetNs<'a> {
    Pid(i32),
    Fd(BorrowedFd<'a>),
}

impl std::fmt::Display for NetNs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetNs::Pid(p) => write!(f, "of pid {p}"),
            NetNs::Fd(_) => f.write_str("(fd)"),
        }
    }
}

fn ns_err(op: &'static str, target: String) -> impl FnOnce(nix::Error) -> SysError {
    move |source| SysError::Netns { op, target, source }
}

/// Open the network namespace of process `pid` under the procfs `proc_root`
/// (`/proc` on a node).
pub fn open(proc_root: &std::path::Path, pid: i32) -> Result<OwnedFd, SysError> {
    let path = proc_root.join(pid.to_string()).join("ns/net");
    File::open(&path)
        .map(OwnedFd::from)
        .map_err(|e| SysError::Io {
            op: "open network namespace",
            path,
            source: e,
        })
}

/// Run `f` on a new thread inside the namespace `ns`; its result comes back.
pub fn run_in<T, F>(ns: BorrowedFd<'_>, f: F) -> Result<T, SysError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(ns, CloneFlags::CLONE_NEWNET)
                .map_err(ns_err("enter", "(fd)".into()))?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(SysError::Netns {
                op: "run in",
                target: "(fd)".into(),
                source: nix::Error::EIO,
            })
        })
    })
}

/// Run `f` inside `ns` (a pid's namespace is opened under `/proc`).
pub fn run_in_ns<T, F>(ns: NetNs<'_>, f: F) -> Result<T, SysError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    match ns {
        NetNs::Fd(fd) => run_in(fd, f),
        NetNs::Pid(pid) => {
            let fd = open(std::path::Path::new("/proc"), pid)?;
            run_in(fd.as_fd(), f)
        }
    }
}

/// A new, empty network namespace (only `lo`, down), held by the returned
/// fd: a thread unshares its namespace, opens it and ends.
pub fn create() -> Result<OwnedFd, SysError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                .map_err(ns_err("create", "a new namespace".into()))?;
            let path = std::path::PathBuf::from("/proc/thread-self/ns/net");
            File::open(&path)
                .map(OwnedFd::from)
                .map_err(|source| SysError::Io {
                    op: "open network namespace",
                    path,
                    source,
                })
        })
        .join()
        .unwrap_or_else(|_| {
            Err(SysError::Netns {
                op: "create",
                target: "a new namespace".into(),
                source: nix::Error::EIO,
            })
        })
    })
}

/// Connect to `127.0.0.1:port` in the network namespace of `pid` (a
/// container's health check). The socket keeps that namespace.
pub fn connect_in(
    pid: i32,
    port: u16,
    timeout: std::time::Duration,
) -> std::io::Result<std::net::TcpStream> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    run_in_ns(NetNs::Pid(pid), move || {
        std::net::TcpStream::connect_timeout(&addr, timeout)
    })
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn inode(path: &str) -> u64 {
        std::fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn privileged_create_and_enter() {
        if !keel_testkit::need_root() {
            return;
        }
        // As root, creating one must work: an error is keel's, and fails.
        let ns = create().expect("create a network namespace");
        let mine = inode("/proc/thread-self/ns/net");
        let inside = run_in(ns.as_fd(), || inode("/proc/thread-self/ns/net")).unwrap();
        assert_ne!(mine, inside, "the closure ran in the new namespace");
        assert_eq!(
            mine,
            inode("/proc/thread-self/ns/net"),
            "this thread stayed"
        );
        let self_ns = open(std::path::Path::new("/proc"), std::process::id() as i32).unwrap();
        let again = run_in(self_ns.as_fd(), || inode("/proc/thread-self/ns/net")).unwrap();
        assert_eq!(again, inode("/proc/self/ns/net"));
    }
}
