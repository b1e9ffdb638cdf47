//! What can fail while starting a server or talking to it.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A request/response exchange that failed on the wire.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{request} to {addr}: {source}")]
    Exchange {
        addr: SocketAddr,
        request: String,
        source: io::Error,
    },
}

/// Starting or probing a server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("create server directory {dir}: {source}")]
    CreateDir { dir: PathBuf, source: io::Error },
    #[error("create server log {log}: {source}")]
    CreateLog { log: PathBuf, source: io::Error },
    #[error("pick a free loopback port: {0}")]
    FreePort(io::Error),
    #[error("spawn {bin}: {source}")]
    Spawn { bin: PathBuf, source: io::Error },
    #[error("{bin} exited with {status} before answering GET /version; log {log}:\n{tail}")]
    Exited {
        bin: PathBuf,
        status: std::process::ExitStatus,
        log: PathBuf,
        tail: String,
    },
    #[error("{bin} did not answer GET /version on {url} within {secs} s; log {log}:\n{tail}")]
    NotReady {
        bin: PathBuf,
        url: String,
        secs: u64,
        log: PathBuf,
        tail: String,
    },
    #[error("{bin}: GET /v2/keys/ has no numeric X-Etcd-Index (status {status})")]
    NoIndex { bin: PathBuf, status: u16 },
    #[error(transparent)]
    Http(#[from] HttpError),
}
