//! The three keel-etcd members of a run, as processes the faults act on.
//!
//! 1. Each member runs `ip netns exec NS setpriv --pdeathsig KILL -- BIN`
//!    with etcd's flags: its addresses are its namespace's, its data
//!    directory survives restarts, and it dies with the soak.
//! 2. Every start appends a header line to the member's log (stdout and
//!    stderr of all its processes, in order), so a log reads as the
//!    member's history.
//! 3. A process may end three ways: the soak killed it (reaped on the spot),
//!    it aborted at the fsync crash point it was started with (its log says
//!    so since its start), or anything else: a crash nobody injected, which
//!    fails the run.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use keel_kvdiff::{Conn, Request};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{cleanup, net::Net, Clock, CLIENT_PORT, PEER_PORT};

/// What keel-etcd prints when it aborts at a `KEEL_ETCD_CRASH_FSYNC` point.
const CRASH_MARKER: &str = "(KEEL_ETCD_CRASH_FSYNC)";

/// Where a restarted member is told to abort (`KEEL_ETCD_CRASH_FSYNC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashAt {
    BeforeFsync(u64),
    AfterFsync(u64),
}

impl std::fmt::Display for CrashAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CrashAt::BeforeFsync(n) => write!(f, "before:{n}"),
            CrashAt::AfterFsync(n) => write!(f, "after:{n}"),
        }
    }
}

/// Why a member could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("member m{member}: open log {path}: {source}")]
    Log {
        member: usize,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("member m{member}: spawn {bin}: {source}")]
    Spawn {
        member: usize,
        bin: PathBuf,
        source: std::io::Error,
    },
}

/// How a member's process ended when the soak did not kill it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// At the crash point it was started with.
    Injected(CrashAt),
    /// Any other way: a bug. The status and the end of the log.
    Unexpected { status: String, tail: String },
}

pub struct Member {
    pub name: String,
    pub ip: Ipv4Addr,
    ns: String,
    data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    /// The crash point the running process was started with.
    crash: Option<CrashAt>,
    /// The log's length when the running process started.
    log_mark: u64,
    paused: bool,
}

pub struct Cluster {
    bin: PathBuf,
    snapshot_count: u64,
    token: String,
    initial_cluster: String,
    clock: Clock,
    /// `setpriv` when the host has it (util-linux), for `--pdeathsig`.
    setpriv: bool,
    pub members: Vec<Member>,
}

fn url(ip: Ipv4Addr, port: u16) -> String {
    format!("http://{ip}:{port}")
}

/// The last `lines` lines of `path`.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Cluster {
    /// A cluster of one member per namespace of `net`, with data and logs
    /// under `dir`; nothing runs yet.
    pub fn new(
        bin: &Path,
        snapshot_count: u64,
        net: &Net,
        dir: &Path,
        token: &str,
        clock: Clock,
    ) -> Cluster {
        let members: Vec<Member> = net
            .member_ips
            .iter()
            .enumerate()
            .map(|(i, ip)| Member {
                name: format!("m{i}"),
                ip: *ip,
                ns: net.namespace(i).to_string(),
                data_dir: dir.join("data").join(format!("m{i}")),
                log: dir.join(format!("m{i}.log")),
                child: None,
                crash: None,
                log_mark: 0,
                paused: false,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, url(m.ip, PEER_PORT)))
            .collect::<Vec<_>>()
            .join(",");
        Cluster {
            bin: bin.to_path_buf(),
            snapshot_count,
            token: token.to_string(),
            initial_cluster,
            clock,
            setpriv: Path::new("/usr/bin/setpriv").exists(),
            members,
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn client_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((self.members[i].ip, CLIENT_PORT))
    }

    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        (0..self.len()).map(|i| self.client_addr(i)).collect()
    }

    /// Steps 1 and 2: start member `i`, aborting at `crash` if given.
    pub fn spawn(&mut self, i: usize, crash: Option<CrashAt>) -> Result<(), ClusterError> {
        let t = self.clock.secs();
        let m = &mut self.members[i];
        let log_err = |source| ClusterError::Log {
            member: i,
            path: m.log.clone(),
            source,
        };
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .map_err(log_err)?;
        let env = crash.map_or(String::new(), |c| format!(" KEEL_ETCD_CRASH_FSYNC={c}"));
        writeln!(log, "=== keel-kv-soak: t={t:.3}s start{env}").map_err(log_err)?;
        m.log_mark = log.metadata().map_err(log_err)?.len();
        let err = log.try_clone().map_err(log_err)?;
        let client = url(m.ip, CLIENT_PORT);
        let peer = url(m.ip, PEER_PORT);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &m.ns]);
        if self.setpriv {
            cmd.args(["setpriv", "--pdeathsig", "KILL", "--"]);
        }
        cmd.arg(&self.bin)
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .args(["--snapshot-count", &self.snapshot_count.to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        match crash {
            Some(c) => cmd.env("KEEL_ETCD_CRASH_FSYNC", c.to_string()),
            None => cmd.env_remove("KEEL_ETCD_CRASH_FSYNC"),
        };
        // `ip netns exec` and setpriv exec the next program: the pid is
        // keel-etcd's, which is what signals must reach.
        let child = cmd.spawn().map_err(|source| ClusterError::Spawn {
            member: i,
            bin: self.bin.clone(),
            source,
        })?;
        cleanup::track_pid(child.id());
        m.child = Some(child);
        m.crash = crash;
        m.paused = false;
        Ok(())
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// kill -9 and reap member `i` (continued first if paused, so that no
    /// stopped process lingers).
    pub fn kill(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(mut child) = m.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            cleanup::untrack_pid(child.id());
        }
        m.paused = false;
    }

    fn signal(&mut self, i: usize, sig: Signal) {
        if let Some(child) = &self.members[i].child {
            let _ = kill(Pid::from_raw(child.id() as i32), sig);
        }
    }

    /// SIGSTOP member `i`: it holds its sockets but answers nothing.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, Signal::SIGSTOP);
        self.members[i].paused = self.members[i].child.is_some();
    }

    pub fn resume(&mut self, i: usize) {
        self.signal(i, Signal::SIGCONT);
        self.members[i].paused = false;
    }

    /// Whether member `i`'s log shows its crash point since it started.
    fn crashed_at_point(&self, i: usize) -> bool {
        let m = &self.members[i];
        let mut text = String::new();
        let read = File::open(&m.log).and_then(|mut f| {
            f.seek(SeekFrom::Start(m.log_mark))?;
            f.read_to_string(&mut text)
        });
        read.is_ok() && text.contains(CRASH_MARKER)
    }

    /// Step 3: reaps every member that exited on its own.
    pub fn reap(&mut self) -> Vec<(usize, Exit)> {
        let mut exits = Vec::new();
        for i in 0..self.len() {
            let status: Option<ExitStatus> = self.members[i]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            let Some(status) = status else { continue };
            if let Some(child) = self.members[i].child.take() {
                cleanup::untrack_pid(child.id());
            }
            let exit = match self.members[i].crash {
                Some(point) if self.crashed_at_point(i) => Exit::Injected(point),
                _ => Exit::Unexpected {
                    status: status.to_string(),
                    tail: tail(&self.members[i].log, 40),
                },
            };
            self.members[i].paused = false;
            exits.push((i, exit));
        }
        exits
    }

    /// `GET /health` on member `i` says healthy within `timeout`.
    pub fn healthy(&self, i: usize, timeout: Duration) -> bool {
        let mut c = Conn::once(self.client_addr(i), timeout);
        c.send(&Request::new("GET", "/health"))
            .is_ok_and(|r| r.status == 200 && r.text().contains("true"))
    }

    /// Waits until every member is healthy; the unhealthy ones on timeout.
    pub fn wait_healthy(&self, within: Duration) -> Result<(), Vec<usize>> {
        let deadline = Instant::now() + within;
        loop {
            let sick: Vec<usize> = (0..self.len())
                .filter(|&i| !self.healthy(i, Duration::from_secs(2)))
                .collect();
            if sick.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(sick);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.len() {
            self.kill(i);
        }
    }
}

/// Which member says it leads (`/v2/stats/self`), when exactly one does.
pub fn leader_of(conns: &mut [Conn]) -> Option<usize> {
    let mut leaders = Vec::new();
    for (i, c) in conns.iter_mut().enumerate() {
        let leads = c
            .send(&Request::new("GET", "/v2/stats/self"))
            .ok()
            .and_then(|r| r.json())
            .is_some_and(|v| v["state"] == "StateLeader");
        if leads {
            leaders.push(i);
        }
    }
    match leaders[..] {
        [one] => Some(one),
        _ => None,
    }
}
