//! The long-running part of PID 1: the async runtime, the signal loop (child
//! reaping, SIGTERM, SIGINT) and the management API listeners.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keel_boot::cmdline::Cmdline;
use keel_boot::{error, info, warn};
use keel_sys::power::PowerAction;
use keel_sys::signal::{self, Signal, SignalReader};
use tokio::runtime::Runtime;

use crate::node::NodeShared;

/// The management API's unix socket inside the node.
pub const API_SOCKET: &str = "/run/keel/api.sock";

/// How long in-flight API answers get before the runtime stops at shutdown.
const DRAIN: Duration = Duration::from_millis(100);

/// The signals PID 1 reads from its signalfd. SIGCHLD: reap; SIGTERM: power
/// off; SIGINT: reboot (the kernel sends it on Ctrl-Alt-Del once routed).
pub const HANDLED: &[Signal] = &[Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT];

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("watch the signalfd: {0}")]
    SignalFd(std::io::Error),
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// Block `HANDLED` in this (the only) thread and open a signalfd for them.
pub fn block_signals() -> Result<SignalReader, keel_sys::SysError> {
    let set = signal::block(HANDLED)?;
    SignalReader::new(&set)
}

pub struct Services {
    rt: Runtime,
}

fn on_signal(sig: Signal, node: &NodeShared) {
    match sig {
        Signal::SIGCHLD => {
            let n = signal::reap_all(|pid, exit| node.exits.exited(pid, exit));
            node.add_reaped(n as u64);
        }
        Signal::SIGTERM | Signal::SIGINT => {
            let action = if sig == Signal::SIGTERM {
                PowerAction::PowerOff
            } else {
                PowerAction::Reboot
            };
            info!("{}: orderly {}", sig.as_str(), action.as_str());
            if let Err(m) = node.request_shutdown(action) {
                warn!("{}: {m}", sig.as_str());
            }
        }
        _ => {}
    }
}

impl Services {
    pub fn start() -> Result<Services, ServiceError> {
        // Blocking work (container starts, health probes) runs on a small
        // pool: one vCPU gains nothing from more threads, and each thread
        // costs memory.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .max_blocking_threads(4)
            .build()
            .map_err(ServiceError::Runtime)?;
        Ok(Services { rt })
    }

    pub fn spawn_signal_loop(
        &self,
        reader: SignalReader,
        node: Arc<NodeShared>,
    ) -> Result<(), ServiceError> {
        let _enter = self.rt.enter();
        let mut signals = signal::AsyncSignals::new(reader).map_err(ServiceError::SignalFd)?;
        self.rt.spawn(async move {
            loop {
                match signals.next_batch().await {
                    Ok(batch) => batch.into_iter().for_each(|sig| on_signal(sig, &node)),
                    Err(e) => {
                        error!("signalfd: {e}; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(())
    }

    pub fn spawn_api(
        &self,
        port: u16,
        socket: &Path,
        node: Arc<NodeShared>,
    ) -> Result<(), ServiceError> {
        let _enter = self.rt.enter();
        let addr = format!("0.0.0.0:{port}");
        let listen_err = |addr: String| move |source| ServiceError::Listen { addr, source };
        let tcp = std::net::TcpListener::bind(&addr).map_err(listen_err(addr.clone()))?;
        tcp.set_nonblocking(true)
            .map_err(listen_err(addr.clone()))?;
        let tcp = tokio::net::TcpListener::from_std(tcp).map_err(listen_err(addr.clone()))?;

        let sock_name = socket.display().to_string();
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir).map_err(listen_err(sock_name.clone()))?;
        }
        let _ = std::fs::remove_file(socket);
        let unix = tokio::net::UnixListener::bind(socket).map_err(listen_err(sock_name.clone()))?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
            .map_err(listen_err(sock_name.clone()))?;

        let api_node: Arc<dyn keel_api::Node> = node;
        let n = api_node.clone();
        self.rt.spawn(async move {
            loop {
                match tcp.accept().await {
                    Ok((s, _)) => {
                        let _ = s.set_nodelay(true);
                        tokio::spawn(keel_api::serve(s, n.clone()));
                    }
                    Err(e) => accept_failed(&addr, e).await,
                }
            }
        });
        self.rt.spawn(async move {
            loop {
                match unix.accept().await {
                    Ok((s, _)) => {
                        tokio::spawn(keel_api::serve(s, api_node.clone()));
                    }
                    Err(e) => accept_failed(&sock_name, e).await,
                }
            }
        });
        info!("api: listening on tcp port {port} and {}", socket.display());
        Ok(())
    }

    /// Enter the runtime, to spawn tasks on it from the boot thread.
    pub fn enter(&self) -> tokio::runtime::EnterGuard<'_> {
        self.rt.enter()
    }

    /// Run a future to completion on the runtime (the boot thread only).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Block until a shutdown is requested; return what was asked for.
    pub fn wait_for_shutdown(&self, node: &NodeShared) -> PowerAction {
        let mut rx = node.subscribe_shutdown();
        self.rt.block_on(async move {
            loop {
                if let Some(a) = *rx.borrow_and_update() {
                    return a;
                }
                if rx.changed().await.is_err() {
                    return PowerAction::Reboot;
                }
            }
        })
    }

    /// Stop the runtime: listeners close, connections drop. First let it run
    /// a moment more, so that the answer to the request that asked for the
    /// shutdown (a 202 from /v1/reboot, say) reaches its client.
    pub fn stop(self) {
        self.rt.block_on(async { tokio::time::sleep(DRAIN).await });
        self.rt.shutdown_timeout(Duration::from_millis(500));
    }
}

/// Out of file descriptors or memory: wait a moment rather than spin.
async fn accept_failed(what: &str, e: std::io::Error) {
    warn!("api: accept on {what}: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Start the `keel.run=` program, if any; its exit is reaped like any child.
pub fn run_keel_run(cmdline: &Cmdline) {
    let Some(argv) = &cmdline.run else { return };
    let path = PathBuf::from(&argv[0]);
    match std::process::Command::new(&path).args(&argv[1..]).spawn() {
        Ok(child) => info!("keel.run: started {} as pid {}", path.display(), child.id()),
        Err(e) => error!("keel.run: start {}: {e}", path.display()),
    }
}
