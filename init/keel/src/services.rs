//! The long-running part of PID 1: the async runtime, the signal loop (child
//! reaping, SIGTERM, SIGINT) and the management API listeners.
//!
//! The API's TCP port serves what the cloud-config says ([`TcpApi`]): plain
//! HTTP, or with `api:` HTTPS only with client certificates. TLS fails
//! closed: when the files of `api:` cannot be used, or the config that asks
//! for them was refused, the TCP port is not opened at all (never plain
//! HTTP instead), the console says why, and the unix socket still serves.

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

/// What the API's TCP port serves, from this boot's cloud-config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TcpApi {
    /// No `api:` (or no config): plain HTTP.
    #[default]
    Plain,
    /// `api:`: HTTPS only, to clients with a certificate its CA signed.
    Tls(keel_config::model::Api),
    /// The config asks for `api:` but was refused: nothing.
    Refused,
}

/// The TLS acceptor `api:` describes; errors name the setting and the file.
pub fn api_acceptor(
    api: &keel_config::model::Api,
) -> Result<keel_tls::TlsAcceptor, keel_tls::TlsError> {
    let files = keel_tls::ServerFiles {
        cert: ("api.cert_file", PathBuf::from(&api.cert_file)),
        key: ("api.key_file", PathBuf::from(&api.key_file)),
        client_ca: Some(("api.client_ca_file", PathBuf::from(&api.client_ca_file))),
    };
    keel_tls::server_config(&files).map(keel_tls::TlsAcceptor::from)
}

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

    /// Serve the API on the unix socket `socket` and, as `tcp` says, on
    /// TCP `port` of every address. A TLS setting that cannot be used is
    /// not an error here: the TCP port stays closed and the socket serves.
    pub fn spawn_api(
        &self,
        port: u16,
        socket: &Path,
        node: Arc<NodeShared>,
        tcp: &TcpApi,
    ) -> Result<(), ServiceError> {
        let _enter = self.rt.enter();
        let sock_name = socket.display().to_string();
        let closed = |why: String| {
            error!(
                "api: {why}: tcp port {port} stays closed (no plain HTTP when the config asks for TLS); {sock_name} still serves"
            );
        };
        let tls = match tcp {
            TcpApi::Plain => Some(None),
            TcpApi::Tls(api) => match api_acceptor(api) {
                Ok(a) => Some(Some((a, api.client_ca_file.as_str()))),
                Err(e) => {
                    closed(e.to_string());
                    None
                }
            },
            TcpApi::Refused => {
                closed("the cloud-config that asks for api: (TLS) was refused".into());
                None
            }
        };
        let addr = format!("0.0.0.0:{port}");
        let listen_err = |addr: String| move |source| ServiceError::Listen { addr, source };
        let tcp = match tls {
            None => None,
            Some(tls) => {
                let l = std::net::TcpListener::bind(&addr).map_err(listen_err(addr.clone()))?;
                l.set_nonblocking(true).map_err(listen_err(addr.clone()))?;
                let l = tokio::net::TcpListener::from_std(l).map_err(listen_err(addr.clone()))?;
                Some((l, tls))
            }
        };

        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir).map_err(listen_err(sock_name.clone()))?;
        }
        let unix = bind_private(socket)
            .and_then(|l| {
                l.set_nonblocking(true)?;
                tokio::net::UnixListener::from_std(l)
            })
            .map_err(listen_err(sock_name.clone()))?;

        let api_node: Arc<dyn keel_api::Node> = node;
        let serves = match tcp {
            None => None,
            Some((l, None)) => {
                self.rt
                    .spawn(keel_api::serve_tcp(l, None, api_node.clone()));
                Some(format!("tcp port {port} (http)"))
            }
            Some((l, Some((acceptor, ca)))) => {
                self.rt
                    .spawn(keel_api::serve_tcp(l, Some(acceptor), api_node.clone()));
                Some(format!(
                    "tcp port {port} (https; clients need a certificate signed by {ca})"
                ))
            }
        };
        self.rt.spawn(keel_api::serve_unix(unix, api_node));
        match serves {
            Some(tcp) => info!("api: listening on {tcp} and {sock_name}"),
            None => info!("api: listening on {sock_name} only"),
        }
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

/// Bind a unix socket at `path` that only root can connect to, without a
/// moment in which it exists with looser permissions: it is bound in a
/// fresh directory only root can enter, made 0600, then renamed into place.
fn bind_private(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let private = dir.join(format!(".{name}.keel-tmp"));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let bound = private.join("s");
    let res = (|| {
        let l = std::os::unix::net::UnixListener::bind(&bound)?;
        std::fs::set_permissions(&bound, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&bound, path)?;
        Ok(l)
    })();
    let _ = std::fs::remove_dir_all(&private);
    res
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

#[cfg(test)]
mod tests {
    use super::*;
    use keel_api::{Client, ClientError, Endpoint};
    use keel_config::model::Api;

    fn api(pki: &keel_tls::testpki::TestPki) -> Api {
        Api {
            cert_file: pki.server_cert.display().to_string(),
            key_file: pki.server_key.display().to_string(),
            client_ca_file: pki.ca.display().to_string(),
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap()
    }

    /// Start the API as StartApi does; return the runtime, the TCP port
    /// and a client of the unix socket.
    fn start(dir: &Path, tcp: &TcpApi) -> (Services, u16, Client) {
        let s = Services::start().unwrap();
        let port = free_port();
        let sock = dir.join("run/api.sock");
        let node = Arc::new(NodeShared::new(Path::new("/proc")));
        s.spawn_api(port, &sock, node, tcp).unwrap();
        (s, port, Client::new(Endpoint::Unix(sock)))
    }

    fn config(s: &Services, c: &Client) -> Result<keel_api::ConfigStatus, ClientError> {
        s.block_on(c.call(hyper::Method::GET, "/v1/config"))
    }

    #[test]
    fn the_socket_is_root_only_and_replaces_a_stale_one() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("run")).unwrap();
        std::fs::write(t.path().join("run/api.sock"), "stale").unwrap();
        let (s, _, unix) = start(t.path(), &TcpApi::Refused);
        let sock = t.path().join("run/api.sock");
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        config(&s, &unix).unwrap();
        let left: Vec<_> = std::fs::read_dir(t.path().join("run")).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn tls_files_that_cannot_be_used_close_the_tcp_port_not_the_socket() {
        let t = tempfile::tempdir().unwrap();
        let pki = keel_tls::testpki::generate(t.path(), &["127.0.0.1"]).unwrap();
        let good = api(&pki);
        let broken = [
            Api {
                cert_file: t.path().join("absent.pem").display().to_string(),
                ..good.clone()
            },
            // A key that does not fit the certificate.
            Api {
                key_file: pki.client_key.display().to_string(),
                ..good.clone()
            },
            // Not a PEM certificate.
            Api {
                client_ca_file: pki.server_key.display().to_string(),
                ..good.clone()
            },
        ];
        let mut cases: Vec<TcpApi> = broken.into_iter().map(TcpApi::Tls).collect();
        cases.push(TcpApi::Refused);
        for tcp in cases {
            let d = tempfile::tempdir().unwrap();
            let (s, port, unix) = start(d.path(), &tcp);
            config(&s, &unix).unwrap_or_else(|e| panic!("{tcp:?}: unix socket: {e}"));
            let plain = Client::new(Endpoint::Tcp(([127, 0, 0, 1], port).into()));
            match config(&s, &plain) {
                Err(ClientError::Connect { source, .. })
                    if source.kind() == std::io::ErrorKind::ConnectionRefused => {}
                other => panic!("{tcp:?}: tcp port {port}: {other:?}"),
            }
        }
        // Errors name the setting and the file.
        let e = api_acceptor(&Api {
            client_ca_file: "/nonexistent/ca.pem".into(),
            ..good
        })
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.starts_with("api.client_ca_file /nonexistent/ca.pem: "),
            "{e}"
        );
    }

    #[test]
    fn with_usable_files_the_tcp_port_serves_https_only() {
        let t = tempfile::tempdir().unwrap();
        let pki = keel_tls::testpki::generate(t.path(), &["127.0.0.1"]).unwrap();
        let (s, port, unix) = start(t.path(), &TcpApi::Tls(api(&pki)));
        config(&s, &unix).unwrap();
        let https = Client::new(Endpoint::parse(&format!("https://127.0.0.1:{port}")).unwrap())
            .with_tls(&keel_tls::ClientFiles {
                ca: ("cacert", pki.ca.clone()),
                identity: Some((
                    ("cert", pki.client_cert.clone()),
                    ("key", pki.client_key.clone()),
                )),
            })
            .unwrap();
        config(&s, &https).unwrap();
        let plain = Client::new(Endpoint::Tcp(([127, 0, 0, 1], port).into()));
        let e = config(&s, &plain).unwrap_err();
        assert!(matches!(e, ClientError::Http { .. }), "{e}");
        // Without TLS settings the port serves plain HTTP, as before.
        let d = tempfile::tempdir().unwrap();
        let (s, port, _) = start(d.path(), &TcpApi::Plain);
        let plain = Client::new(Endpoint::Tcp(([127, 0, 0, 1], port).into()));
        config(&s, &plain).unwrap();
    }
}
