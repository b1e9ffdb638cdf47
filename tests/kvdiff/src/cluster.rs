//! Several members of an etcd-compatible server as one cluster on loopback,
//! for the answers that depend on membership (`/v2/machines`,
//! `/v2/members`), compared between etcd and another server by each URL's
//! role rather than its port.
//!
//! 1. Each member gets its client URLs (several, all listened on) and a peer
//!    URL on free ports. The client URLs of the whole cluster are sorted as
//!    text and handed out by rank through a [`Layout`], so two clusters
//!    started with the same layout have their URLs in the same order, and
//!    each URL the same role (`<b.1>`: member b's second URL as given).
//! 2. All members start at once (a member waits for the others to elect a
//!    leader) with etcd's flags; each must answer `GET /version`.
//! 3. [`Cluster::labelled`] replaces each of the cluster's URLs in a text by
//!    its role, so answers from two clusters compare as text.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::ServerError;
use crate::http::{self, Request};
use crate::server::{spawn_logged, tail, CLUSTER_TOKEN};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Which ranks (in the cluster's client URLs sorted as text) each member's
/// client URLs get, in the order given on its command line, by name.
pub type Layout<'a> = &'a [(&'a str, &'a [usize])];

struct Member {
    name: String,
    /// As given on the command line.
    client_urls: Vec<String>,
    peer_url: String,
    child: Child,
    log: PathBuf,
}

/// A running cluster; every member is killed (SIGKILL) and reaped on drop.
pub struct Cluster {
    bin: PathBuf,
    members: Vec<Member>,
}

impl Cluster {
    /// Starts `bin` as the members of `layout`, data and logs under `dir`.
    pub fn start(bin: &Path, dir: &Path, layout: Layout) -> Result<Cluster, ServerError> {
        fs::create_dir_all(dir).map_err(|source| ServerError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let url = |p: u16| format!("http://127.0.0.1:{p}");
        // Step 1: hold every port until all are picked, so none repeats.
        let count: usize = layout.iter().map(|(_, r)| r.len()).sum();
        let held = (0..count + layout.len())
            .map(|_| TcpListener::bind("127.0.0.1:0").map_err(ServerError::FreePort))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ports = held
            .iter()
            .map(|l| {
                l.local_addr()
                    .map(|a| a.port())
                    .map_err(ServerError::FreePort)
            })
            .collect::<Result<Vec<_>, _>>()?;
        drop(held);
        let peers: Vec<String> = ports.split_off(count).into_iter().map(url).collect();
        let mut clients: Vec<String> = ports.into_iter().map(url).collect();
        clients.sort();
        let initial = layout
            .iter()
            .zip(&peers)
            .map(|((name, _), p)| format!("{name}={p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            bin: bin.to_path_buf(),
            members: Vec::new(),
        };
        // Step 2.
        for ((name, ranks), peer) in layout.iter().zip(&peers) {
            let client_urls: Vec<String> = ranks.iter().map(|r| clients[*r].clone()).collect();
            let log = dir.join(format!("{name}.log"));
            let list = client_urls.join(",");
            let child = spawn_logged(
                Command::new(bin)
                    .args(["--name", name])
                    .arg("--data-dir")
                    .arg(dir.join(name))
                    .args(["--listen-client-urls", &list])
                    .args(["--advertise-client-urls", &list])
                    .args(["--listen-peer-urls", peer])
                    .args(["--initial-advertise-peer-urls", peer])
                    .args(["--initial-cluster", &initial])
                    .args(["--initial-cluster-state", "new"])
                    .args(["--initial-cluster-token", CLUSTER_TOKEN])
                    .arg("--enable-v2"),
                bin,
                &log,
            )?;
            cluster.members.push(Member {
                name: name.to_string(),
                client_urls,
                peer_url: peer.clone(),
                child,
                log,
            });
        }
        for i in 0..cluster.members.len() {
            cluster.wait_ready(i)?;
        }
        Ok(cluster)
    }

    fn wait_ready(&mut self, i: usize) -> Result<(), ServerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let addr = self.addr(i);
            let m = &mut self.members[i];
            if let Ok(Some(status)) = m.child.try_wait() {
                return Err(ServerError::Exited {
                    bin: self.bin.clone(),
                    status,
                    log: m.log.clone(),
                    tail: tail(&m.log),
                });
            }
            let version = http::send(addr, &Request::new("GET", "/version"));
            if version.is_ok_and(|r| r.status == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ServerError::NotReady {
                    bin: self.bin.clone(),
                    url: m.client_urls[0].clone(),
                    secs: READY_TIMEOUT.as_secs(),
                    log: m.log.clone(),
                    tail: tail(&m.log),
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Member `i`'s first client address.
    pub fn addr(&self, i: usize) -> SocketAddr {
        let u = &self.members[i].client_urls[0];
        u.trim_start_matches("http://")
            .parse()
            .expect("a URL this module made")
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every client URL of the cluster.
    pub fn client_urls(&self) -> Vec<&str> {
        self.members
            .iter()
            .flat_map(|m| m.client_urls.iter().map(String::as_str))
            .collect()
    }

    /// `text` with each of the cluster's URLs replaced by its role: a
    /// client URL by `<name.k>`, a peer URL by `<name.peer>`.
    pub fn labelled(&self, text: &str) -> String {
        let mut out = text.to_string();
        // Longest first: no URL is then replaced inside a longer one.
        let mut urls: Vec<(String, String)> = self
            .members
            .iter()
            .flat_map(|m| {
                m.client_urls
                    .iter()
                    .enumerate()
                    .map(|(k, u)| (u.clone(), format!("<{}.{k}>", m.name)))
                    .chain([(m.peer_url.clone(), format!("<{}.peer>", m.name))])
            })
            .collect();
        urls.sort_by_key(|(u, _)| std::cmp::Reverse(u.len()));
        for (u, label) in urls {
            out = out.replace(&u, &label);
        }
        out
    }

    /// The members' logs, last lines each, for a failure's message.
    pub fn log_tails(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("--- {} ({})\n{}", m.name, m.log.display(), tail(&m.log)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
    }
}
