//! Starting a member: open the log and the snapshot, start Raft, bind the
//! peer and client ports, bootstrap a new cluster, and start the member's
//! background tasks.
//!
//! 1. The data directory holds `member/wal` (the log, the vote) and
//!    `member/snap` (the last snapshot).
//! 2. Every port is bound before anything is served, so a port in use fails
//!    the start with its address.
//! 3. A member that has never stored anything and is told
//!    `initial-cluster-state: new` initializes Raft with the initial
//!    cluster (every such member does; openraft accepts the same membership
//!    from each). One told `existing` waits to be reached by the leader
//!    after `POST /v2/members` added it.
//! 4. Tasks: publish the member's name and client URLs, sweep TTLs while
//!    leader, follow leader changes for the stats.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::config::{ClusterState, Listen, ServerConfig};
use crate::log::{LogError, LogStore};
use crate::net::Network;
use crate::node::Node;
use crate::sm::StateMachine;
use crate::stats::PeerCounters;
use crate::types::{cluster_id, member_id, Member, Members, Raft};
use keel_tls::{Conn, TlsAcceptor};

/// Why a member could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory: {0}")]
    Data(#[from] LogError),
    #[error("raft config: {0}")]
    RaftConfig(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    #[error("TLS: {0}")]
    Tls(#[from] keel_tls::TlsError),
}

/// A started member and the addresses it actually listens on (no peer
/// addresses while the peer port is closed: see
/// [`ServerConfig::peers_at_start`]).
pub struct Started {
    pub node: Arc<Node>,
    pub client_addrs: Vec<SocketAddr>,
    pub peer_addrs: Vec<SocketAddr>,
}

/// Connections each client listener serves at once (watches included).
pub const MAX_CLIENT_CONNECTIONS: usize = 4096;
/// Connections each peer listener serves at once: members keep a few each.
pub const MAX_PEER_CONNECTIONS: usize = 256;

/// Who is on the other end of a client connection.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub addr: SocketAddr,
    /// It presented a certificate the trusted CA signed (an `https://`
    /// listener with `client-cert-auth`).
    pub cert: bool,
    /// The connection is TLS.
    pub tls: bool,
}

/// Binds the peer listeners and serves them.
async fn open_peers(
    node: &Arc<Node>,
    acceptor: Option<TlsAcceptor>,
) -> Result<Vec<SocketAddr>, StartError> {
    let peers = bind(&node.config.listen_peer).await?;
    let addrs = peers.iter().filter_map(|l| l.0.local_addr().ok()).collect();
    for (l, tls) in peers {
        let node = node.clone();
        accept_loop(
            l,
            acceptor.clone().filter(|_| tls),
            MAX_PEER_CONNECTIONS,
            move |s, _| {
                let node = node.clone();
                async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let node = node.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                crate::net::handle_peer(node, req).await,
                            )
                        }
                    });
                    let _ = http1().serve_connection(TokioIo::new(s), svc).await;
                }
            },
        );
    }
    Ok(addrs)
}

/// Members in Raft's effective membership: the newest in the log, applied
/// or not (a member restarted with a lone config but a log of several
/// must be reachable before it can commit anything).
fn members_in(m: &openraft::RaftMetrics<crate::types::NodeId, crate::types::Member>) -> usize {
    m.membership_config.membership().nodes().count()
}

/// A lone member opens its peer port once a second member is added (step
/// 2): the new member must reach it to vote and to forward writes.
async fn open_peers_when_joined(node: Arc<Node>, acceptor: Option<TlsAcceptor>) {
    let mut metrics = node.raft.metrics();
    loop {
        let members = members_in(&metrics.borrow_and_update());
        if members > 1 {
            match open_peers(&node, acceptor).await {
                Ok(addrs) => {
                    eprintln!(
                        "keel-etcd: the cluster has {members} members: peer port open on {addrs:?}"
                    );
                    let _ = node.peer_addrs.set(addrs);
                    for w in node.warnings() {
                        eprintln!("keel-etcd: warning: {w}");
                    }
                }
                Err(e) => eprintln!("keel-etcd: the cluster has {members} members, but {e}"),
            }
            return;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

async fn bind(addrs: &[Listen]) -> Result<Vec<(TcpListener, bool)>, StartError> {
    let mut out = Vec::new();
    for a in addrs {
        out.push((
            TcpListener::bind(a.addr)
                .await
                .map_err(|source| StartError::Listen {
                    addr: a.addr,
                    source,
                })?,
            a.tls,
        ));
    }
    Ok(out)
}

/// Accepts connections on `l` and serves each with `serve`, after a TLS
/// handshake when `tls` is given (a failed handshake drops only its
/// connection). `serve` learns who called: its address and whether it
/// presented a certificate the trusted CA signed.
/// At most `cap` connections are served at once: past it a new connection
/// is closed at once (logged at most once per 10 s, with a count) while the
/// established ones are served.
fn accept_loop<F, Fut>(l: TcpListener, tls: Option<TlsAcceptor>, cap: usize, serve: F)
where
    F: Fn(Conn, Caller) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
    let slots = Arc::new(tokio::sync::Semaphore::new(cap));
    let what = l
        .local_addr()
        .map_or_else(|_| "a listener".to_string(), |a| a.to_string());
    tokio::spawn(async move {
        let mut last_report: Option<std::time::Instant> = None;
        let mut quiet = 0u64;
        loop {
            match l.accept().await {
                Ok((s, addr)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        drop(s);
                        let now = std::time::Instant::now();
                        if last_report.is_some_and(|t| now - t < Duration::from_secs(10)) {
                            quiet += 1;
                        } else {
                            eprintln!(
                                "keel-etcd: {what}: {} new connection(s) closed: {cap} are open, the most it serves at once",
                                quiet + 1
                            );
                            last_report = Some(now);
                            quiet = 0;
                        }
                        continue;
                    };
                    let _ = s.set_nodelay(true);
                    let (tls, serve) = (tls.clone(), serve.clone());
                    tokio::spawn(async move {
                        let _slot = slot;
                        if let Ok(c) = Conn::accept(tls.as_ref(), s).await {
                            // A certificate is asked for (and checked
                            // against the CA) only with client-cert-auth.
                            let (tls, cert) = match &c {
                                keel_tls::MaybeTls::Tls(t) => {
                                    (true, t.get_ref().1.peer_certificates().is_some())
                                }
                                keel_tls::MaybeTls::Plain(_) => (false, false),
                            };
                            serve(c, Caller { addr, cert, tls }).await
                        }
                    });
                }
                // Out of descriptors and the like: back off and go on.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
}

fn http1() -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(64 * 1024);
    b
}

/// A member's id is fixed at its first start (from its peer URLs and the
/// token, as the member adding it computed it) and kept in `member/id`, so
/// it survives a change of its peer URLs.
fn own_id(member_dir: &std::path::Path, config: &ServerConfig) -> Result<u64, StartError> {
    let path = member_dir.join("id");
    let io = |op: &'static str| {
        let path = path.clone();
        move |source| StartError::Data(LogError::Io { op, path, source })
    };
    match std::fs::read_to_string(&path) {
        Ok(s) => u64::from_str_radix(s.trim(), 16).map_err(|e| {
            StartError::Data(LogError::Corrupt {
                path: path.clone(),
                offset: 0,
                why: e.to_string(),
            })
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = member_id(&config.advertise_peer_urls, &config.cluster_token);
            crate::log::write_atomic(member_dir, "id", format!("{id:x}\n").as_bytes())
                .map_err(io("write"))?;
            Ok(id)
        }
        Err(e) => Err(io("read")(e)),
    }
}

/// Steps 1..4.
pub async fn start(mut config: ServerConfig) -> Result<Started, StartError> {
    let member_dir: PathBuf = config.data_dir.join("member");
    crate::log::private_dir(&member_dir).map_err(|source| LogError::Io {
        op: "create directory",
        path: member_dir.clone(),
        source,
    })?;
    let log = LogStore::open(&member_dir.join("wal"))?;
    if let (Some(url), true) = (config.discovery.clone(), log.is_pristine()) {
        // A first start: the initial cluster is found at the discovery URL.
        let id = member_id(&config.advertise_peer_urls, &config.cluster_token);
        let (cluster, token) =
            crate::discovery::discover(&url, id, &config.name, &config.advertise_peer_urls)
                .await
                .map_err(|e| StartError::Bootstrap(e.to_string()))?;
        config.initial_cluster = cluster;
        config.cluster_token = token;
        config.cluster_state = ClusterState::New;
    }
    // The TLS files are read before anything starts: a missing or bad one
    // fails the start, naming the setting.
    let acceptor = |t: &Option<crate::config::TlsFiles>| {
        t.as_ref()
            .map(|t| keel_tls::server_config(&t.server()).map(TlsAcceptor::from))
            .transpose()
    };
    let client_acceptor = acceptor(&config.client_tls)?;
    let peer_acceptor = acceptor(&config.peer_tls)?;
    let peer_client = config
        .peer_tls
        .as_ref()
        .and_then(|t| t.client())
        .map(|f| keel_tls::client_config(&f))
        .transpose()?;
    let id = own_id(&member_dir, &config)?;
    let flushes = log.flushes();
    log.forget_leadership(id);
    let snap_dir = member_dir.join("snap");
    crate::log::private_dir(&snap_dir).map_err(|source| LogError::Io {
        op: "create directory",
        path: snap_dir.clone(),
        source,
    })?;
    let (sm, shared) = StateMachine::open(&snap_dir)?;
    let pristine = log.is_pristine() && shared.read().last_applied.is_none();

    // Every field is given: openraft's Config::default() parses an empty
    // command line with clap, which would link all of clap into PID 1
    // (about 0.3 MB).
    #[allow(deprecated)]
    let raft_config = openraft::Config {
        cluster_name: config.cluster_token.clone(),
        heartbeat_interval: config.heartbeat_ms,
        election_timeout_min: config.election_ms,
        election_timeout_max: config.election_ms * 2,
        install_snapshot_timeout: 2000,
        send_snapshot_timeout: 0,
        max_payload_entries: 256,
        replication_lag_threshold: 5000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_count),
        snapshot_max_chunk_size: 3 << 20,
        max_in_snapshot_log_to_keep: 1000,
        purge_batch_size: 1,
        enable_tick: true,
        enable_heartbeat: true,
        enable_elect: true,
    }
    .validate()
    .map_err(|e| StartError::RaftConfig(e.to_string()))?;
    let counters = Arc::new(PeerCounters::default());
    let raft = Raft::new(
        id,
        Arc::new(raft_config),
        Network {
            counters: counters.clone(),
            tls: peer_client.clone(),
        },
        log,
        sm,
    )
    .await
    .map_err(|e| StartError::Raft(e.to_string()))?;

    // Step 2: the peer port is bound here only for a cluster of more than
    // one (so a port in use fails the start); a lone member binds it when
    // a second member is added.
    // Asked of Raft's core (its metrics may not be out yet).
    let peers_now = config.peers_at_start()
        || raft
            .with_raft_state(|st| st.membership_state.effective().membership().nodes().count())
            .await
            .unwrap_or(0)
            > 1;
    let clients = bind(&config.listen_client).await?;
    let client_addrs: Vec<SocketAddr> = clients
        .iter()
        .filter_map(|l| l.0.local_addr().ok())
        .collect();

    let mut node = Node::new(
        id,
        cluster_id(&config.cluster_token),
        config.clone(),
        raft.clone(),
        shared,
        counters,
        flushes,
    );
    node.peer_tls = peer_client;
    node.client_addrs = client_addrs.clone();
    let node = Arc::new(node);
    let mut peer_addrs = Vec::new();
    if peers_now {
        peer_addrs = open_peers(&node, peer_acceptor).await?;
        let _ = node.peer_addrs.set(peer_addrs.clone());
    } else {
        tokio::spawn(open_peers_when_joined(node.clone(), peer_acceptor));
    }
    for (l, tls) in clients {
        let node = node.clone();
        accept_loop(
            l,
            client_acceptor.clone().filter(|_| tls),
            MAX_CLIENT_CONNECTIONS,
            move |s, caller| {
                let node = node.clone();
                async move {
                    let svc = hyper::service::service_fn(move |req| {
                        crate::api::handle(node.clone(), caller, req)
                    });
                    let _ = http1().serve_connection(TokioIo::new(s), svc).await;
                }
            },
        );
    }

    if pristine && config.cluster_state == ClusterState::New {
        let members: Members = config
            .initial_cluster
            .iter()
            .map(|m| {
                (
                    member_id(&m.peer_urls, &config.cluster_token),
                    Member {
                        peer_urls: m.peer_urls.clone(),
                    },
                )
            })
            .collect();
        match raft.initialize(members).await {
            Ok(()) => {}
            // Already initialized by an earlier start: nothing to do.
            Err(openraft::error::RaftError::APIError(
                openraft::error::InitializeError::NotAllowed(_),
            )) => {}
            Err(e) => return Err(StartError::Bootstrap(e.to_string())),
        }
    }
    // A lone voter that was its own leader need not wait for an election
    // timeout to lead again (see LogStore::forget_leadership).
    let lone = {
        let s = node.shared.read();
        let voters: Vec<_> = s.membership.membership().voter_ids().collect();
        voters == [id]
    };
    if lone && !pristine {
        let _ = raft.trigger().elect().await;
    }
    for task in [0, 1, 2, 3] {
        let node = node.clone();
        tokio::spawn(async move {
            match task {
                0 => node.publish().await,
                1 => node.expire_loop().await,
                2 => node.watch_space().await,
                _ => node.track_leader().await,
            }
        });
    }
    Ok(Started {
        node,
        client_addrs,
        peer_addrs,
    })
}

/// Runs a member on its own runtime until SIGINT or SIGTERM.
pub fn run_blocking(config: ServerConfig) -> anyhow::Result<()> {
    // One thread serves clients, peers and Raft; the log's fsyncs run on
    // the flusher thread. Measured on 2 cores: 10-20 % more writes per
    // second than a two-worker runtime, whose cross-thread wakeups cost more
    // than the parallelism gains.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let started = start(config).await?;
        eprintln!(
            "keel-etcd: member {:x} serving clients on {:?}, peers on {:?}",
            started.node.id, started.client_addrs, started.peer_addrs
        );
        for w in started.node.warnings() {
            eprintln!("keel-etcd: warning: {w}");
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = started.node.raft.shutdown().await;
        Ok(())
    })
}
