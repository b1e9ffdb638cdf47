//! Starts an etcd-compatible server on free loopback ports and stops it on drop.
//!
//! 1. Pick two free ports (client, peer) by binding port 0 and releasing it.
//! 2. Spawn the binary with etcd's single-member flag set, output to a log file.
//! 3. Poll `GET /version` until it answers; a server that exits first is
//!    retried on other ports (another process may have taken ours).
//! 4. Poll `GET /v2/keys/` until `X-Etcd-Index` stops moving: etcd commits its
//!    member attributes and cluster version to the v2 store after it starts
//!    serving, and the differential runner's index deltas need a still start.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::ServerError;
use crate::http::{self, Request};

/// Debian's etcd, the reference server.
pub const ETCD_BIN: &str = "/usr/bin/etcd";

/// The binary compared with etcd: `KEEL_ETCD_BIN`, else `built` (the test
/// crate's keel-etcd); None when `KVDIFF_SELF=1` asks for etcd against
/// itself.
pub fn keel_under_test(built: &str) -> Option<PathBuf> {
    if std::env::var_os("KVDIFF_SELF").is_some() {
        return None;
    }
    Some(
        std::env::var_os("KEEL_ETCD_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(built)),
    )
}
/// Debian's etcdctl.
pub const ETCDCTL_BIN: &str = "/usr/bin/etcdctl";
/// The member name every server is started with.
pub const MEMBER_NAME: &str = "kvdiff";
/// The `--initial-cluster-token` every server is started with.
pub const CLUSTER_TOKEN: &str = "keel-kvdiff";

const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `X-Etcd-Index` must stay unchanged for the server to count as settled.
const SETTLE: Duration = Duration::from_millis(250);
const LAUNCH_TRIES: usize = 3;

/// A running server; killed (SIGKILL) and reaped on drop.
pub struct Server {
    child: Child,
    bin: PathBuf,
    client_port: u16,
    peer_port: u16,
    log: PathBuf,
}

impl Server {
    /// Whether Debian's etcd is installed.
    pub fn etcd_available() -> bool {
        Path::new(ETCD_BIN).is_file()
    }

    /// Runs `/usr/bin/etcd --enable-v2` with its data and log under `dir`.
    pub fn etcd(dir: &Path) -> Result<Server, ServerError> {
        Server::command(Path::new(ETCD_BIN), dir)
    }

    /// Runs `bin` with etcd's flag set (see [`Server::args`]): data in
    /// `dir/data`, output in `dir/server.log`.
    pub fn command(bin: &Path, dir: &Path) -> Result<Server, ServerError> {
        fs::create_dir_all(dir).map_err(|source| ServerError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let mut last = None;
        for attempt in 0..LAUNCH_TRIES {
            let data = dir.join(format!("data{attempt}"));
            match Server::launch(bin, &data, &dir.join("server.log")) {
                // A lost port race shows as an early exit: try other ports.
                Err(e @ ServerError::Exited { .. }) => last = Some(e),
                r => return r,
            }
        }
        Err(last.expect("LAUNCH_TRIES > 0"))
    }

    /// The flags for one single-member cluster, exactly etcd's spelling.
    pub fn args(data_dir: &Path, client_port: u16, peer_port: u16) -> Vec<String> {
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        [
            "--name",
            MEMBER_NAME,
            "--data-dir",
            &data_dir.to_string_lossy(),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("{MEMBER_NAME}={peer}"),
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            CLUSTER_TOKEN,
            "--enable-v2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn launch(bin: &Path, data: &Path, log: &Path) -> Result<Server, ServerError> {
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let child = spawn_logged(
            Command::new(bin).args(Server::args(data, client_port, peer_port)),
            bin,
            log,
        )?;
        let mut server = Server {
            child,
            bin: bin.to_path_buf(),
            client_port,
            peer_port,
            log: log.to_path_buf(),
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<(), ServerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(ServerError::Exited {
                    bin: self.bin.clone(),
                    status,
                    log: self.log.clone(),
                    tail: self.log_tail(),
                });
            }
            let version = http::send(self.addr(), &Request::new("GET", "/version"));
            if version.is_ok_and(|r| r.status == 200) {
                break;
            }
            if Instant::now() > deadline {
                return Err(ServerError::NotReady {
                    bin: self.bin.clone(),
                    url: self.client_url(),
                    secs: READY_TIMEOUT.as_secs(),
                    log: self.log.clone(),
                    tail: self.log_tail(),
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
        let mut index = self.current_index()?;
        let mut since = Instant::now();
        while since.elapsed() < SETTLE && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
            let now = self.current_index()?;
            if now != index {
                (index, since) = (now, Instant::now());
            }
        }
        Ok(())
    }

    /// `X-Etcd-Index` of `GET /v2/keys/`: the store's current index.
    pub fn current_index(&self) -> Result<u64, ServerError> {
        let r = http::send(self.addr(), &Request::new("GET", "/v2/keys/"))?;
        r.etcd_index().ok_or(ServerError::NoIndex {
            bin: self.bin.clone(),
            status: r.status,
        })
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    /// `http://127.0.0.1:PORT` of the client listener.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:PORT` of the peer listener.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, ServerError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(ServerError::FreePort)?;
    Ok(l.local_addr().map_err(ServerError::FreePort)?.port())
}

/// Start `cmd` (the program `bin`) with no input and its output in `log`.
pub(crate) fn spawn_logged(
    cmd: &mut Command,
    bin: &Path,
    log: &Path,
) -> Result<Child, ServerError> {
    let create = |source| ServerError::CreateLog {
        log: log.to_path_buf(),
        source,
    };
    let out = File::create(log).map_err(create)?;
    let err = out.try_clone().map_err(create)?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|source| ServerError::Spawn {
            bin: bin.to_path_buf(),
            source,
        })
}

/// The last 20 lines of a log.
pub(crate) fn tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
