//! Work inside another process's network namespace: a health check of a
//! container with its own network connects to its 127.0.0.1 from there.
//!
//! `setns(CLONE_NEWNET)` changes the namespace of the calling thread only,
//! so the work runs on a short-lived thread of its own and never on one of
//! the runtime's; a socket keeps the namespace it was created in.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

/// Connect to `127.0.0.1:port` in the network namespace of `pid`.
pub fn connect_in(pid: i32, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    std::thread::Builder::new()
        .name("keel-netns".into())
        .spawn(move || {
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            TcpStream::connect_timeout(&addr, timeout)
        })?
        .join()
        .map_err(|_| std::io::Error::other("the netns thread panicked"))?
}
