//! The long-running part of PID 1: the async runtime, the signal loop (child
//! reaping, SIGTERM, SIGINT) and the management API listeners.
//!
//! The API's TCP port is closed unless the cloud-config has `api:`; then it
//! serves HTTPS only, to clients with a certificate its CA signed
//! ([`TcpApi`]). TLS fails closed: when the files of `api:` cannot be used,
//! or the config that asks for them was refused, the TCP port is not
//! opened at all, the console says why, and the unix socket (root only)
//! still serves.
//!
//! Never strand a remote node: the files of the last `api:` that served are
//! kept on STATE ([`LAST_GOOD_API`]), and a boot whose config was refused
//! (maintenance mode) or whose `api:` files cannot be used serves with
//! those instead, saying so, so the admin certificate still reaches the
//! node to apply a corrected config.

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

/// Where StartApi keeps the files of the last `api:` that served: on STATE,
/// readable by root only.
pub const LAST_GOOD_API: &str = "/var/lib/keel/api";

/// The largest PEM file kept (keel-tls reads no larger).
const MAX_KEPT: u64 = keel_tls::MAX_PEM;

/// The `api:` kept in `dir`, when all three files are there.
pub fn last_good_api(dir: &Path) -> Option<keel_config::model::Api> {
    let f = |n: &str| dir.join(n);
    ["cert.pem", "key.pem", "ca.pem"]
        .iter()
        .all(|n| f(n).is_file())
        .then(|| keel_config::model::Api {
            cert_file: f("cert.pem").display().to_string(),
            key_file: f("key.pem").display().to_string(),
            client_ca_file: f("ca.pem").display().to_string(),
        })
}

/// Copy the files of `api` (which just served) into `dir`, each mode 0600.
pub fn keep_last_good(api: &keel_config::model::Api, dir: &Path) -> std::io::Result<()> {
    use std::io::Read;
    for (from, to) in [
        (&api.cert_file, "cert.pem"),
        (&api.key_file, "key.pem"),
        (&api.client_ca_file, "ca.pem"),
    ] {
        let mut bytes = Vec::new();
        std::fs::File::open(from)?
            .take(MAX_KEPT + 1)
            .read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_KEPT {
            return Err(std::io::Error::other(format!(
                "{from}: over {MAX_KEPT} bytes"
            )));
        }
        crate::config::write_private(&dir.join(to), &bytes)?;
    }
    Ok(())
}

/// How long in-flight API answers get before the runtime stops at shutdown.
const DRAIN: Duration = Duration::from_millis(100);

/// The signals PID 1 reads from its signalfd. SIGCHLD: reap; SIGTERM: power
/// off; SIGINT: reboot (the kernel sends it on Ctrl-Alt-Del once routed).
pub const HANDLED: &[Signal] = &[Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT];

/// What the API's TCP port serves, from this boot's cloud-config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TcpApi {
    /// No `api:` (or no config): the port stays closed.
    #[default]
    Closed,
    /// `api:`: HTTPS only, to clients with a certificate its CA signed.
    Tls(keel_config::model::Api),
    /// The config asks for `api:` but was refused: closed.
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
    /// TCP `port` of every address (HTTPS with client certificates only).
    /// A TLS setting that cannot be used is not an error here: the port
    /// serves the last good `api:` kept in `last_good` when there is one,
    /// else it stays closed; the socket serves in every case. Returns what
    /// serves, for the status.
    pub fn spawn_api(
        &self,
        port: u16,
        socket: &Path,
        node: Arc<NodeShared>,
        tcp: &TcpApi,
        last_good: &Path,
        max_connections: usize,
    ) -> Result<keel_api::ApiStatus, ServiceError> {
        let _enter = self.rt.enter();
        let sock_name = socket.display().to_string();
        let closed = |why: String| {
            format!("tcp port {port} closed: {why}; {sock_name} (root only) serves the API")
        };
        // The config's api: unusable or refused: the last good one, if any.
        let fallback = |why: String| match last_good_api(last_good) {
            None => Err((closed(why), true)),
            Some(kept) => match api_acceptor(&kept) {
                Ok(a) => Ok((a, kept, Some(why))),
                Err(e) => Err((
                    closed(format!(
                        "{why}; the last good api: kept in {} cannot be used either: {e}",
                        last_good.display()
                    )),
                    true,
                )),
            },
        };
        // Ok((acceptor, settings, why the last good ones serve)), or
        // Err((why closed, whether that is a fault to report)).
        let tls = match tcp {
            TcpApi::Closed => Err((closed("no api: in the cloud-config".into()), false)),
            TcpApi::Tls(api) => match api_acceptor(api) {
                Ok(a) => Ok((a, api.clone(), None)),
                Err(e) => fallback(e.to_string()),
            },
            TcpApi::Refused => fallback("the cloud-config was refused (maintenance mode)".into()),
        };
        // An address, not its text: std's `bind(&str)` falls back to
        // getaddrinfo, which links glibc's NSS into PID 1.
        let sock = std::net::SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port));
        let addr = sock.to_string();
        let listen_err = |addr: String| move |source| ServiceError::Listen { addr, source };
        let tcp = match tls {
            Err(why) => Err(why),
            Ok(tls) => {
                let l = std::net::TcpListener::bind(sock).map_err(listen_err(addr.clone()))?;
                l.set_nonblocking(true).map_err(listen_err(addr.clone()))?;
                let l = tokio::net::TcpListener::from_std(l).map_err(listen_err(addr.clone()))?;
                Ok((l, tls))
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
        let shared = node.clone();
        let api_node: Arc<dyn keel_api::Node> = node;
        let mut status = keel_api::ApiStatus {
            socket: sock_name.clone(),
            ..Default::default()
        };
        match tcp {
            Err((why, fault)) => {
                if fault {
                    error!("api: {why}");
                } else {
                    info!("api: {why}");
                }
                status.note = why;
            }
            Ok((l, (acceptor, api, fell_back))) => {
                self.rt.spawn(keel_api::serve_tcp(
                    l,
                    acceptor,
                    api_node.clone(),
                    max_connections,
                ));
                let note = match &fell_back {
                    None => format!(
                        "tcp port {port} serves https to clients with a certificate signed by {} (roles keel:admin, keel:reader); {sock_name} (root only) too",
                        api.client_ca_file
                    ),
                    Some(why) => format!(
                        "tcp port {port} serves https with the last good api: kept in {} ({why}): clients need a certificate signed by its CA; {sock_name} (root only) too",
                        last_good.display()
                    ),
                };
                if fell_back.is_some() {
                    warn!("api: {note}");
                } else {
                    info!("api: {note}");
                }
                status.tcp_port = Some(port);
                status.note = note;
                // Off the boot path: the certificate's name and expiry for
                // the status, and the copy of a config's api: kept for a
                // boot whose config is refused. The runtime runs tasks once
                // the boot is done, this one before any connection's: no
                // answer of the API goes out without the certificate's
                // fields.
                let keep = fell_back.is_none().then(|| last_good.to_path_buf());
                self.rt.spawn(async move {
                    if let Some(dir) = keep {
                        if let Err(e) = keep_last_good(&api, &dir) {
                            warn!(
                                "api: cannot keep this api: in {} for a boot whose config is refused: {e}",
                                dir.display()
                            );
                        }
                    }
                    let cert =
                        keel_tls::cert::inspect_file("api.cert_file", Path::new(&api.cert_file));
                    if let Ok(c) = cert {
                        shared.update_api(|status| {
                            status.cert_subject = c.common_name;
                            status.cert_not_after_unix = Some(c.not_after);
                            status.cert_not_after =
                                Some(keel_kv::json::rfc3339_ms(c.not_after.max(0) as u64 * 1000));
                        });
                    }
                });
            }
        }
        self.rt.spawn(keel_api::serve_unix(
            unix,
            api_node,
            keel_api::server::MAX_UNIX_CONNECTIONS,
        ));
        Ok(status)
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
    let mkdir = || std::fs::DirBuilder::new().mode(0o700).create(&private);
    // A leftover (or planted) name is removed, never entered (remove_dir_all
    // does not follow a symlink). Only then: on the usual fresh /run, the
    // walk of remove_dir_all is not run at all (its first run costs ~1 ms
    // under TCG).
    if let Err(e) = mkdir() {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(e);
        }
        std::fs::remove_dir_all(&private)?;
        mkdir()?;
    }
    let bound = private.join("s");
    let res = (|| {
        let l = std::os::unix::net::UnixListener::bind(&bound)?;
        std::fs::set_permissions(&bound, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&bound, path)?;
        Ok(l)
    })();
    // Renamed away, the socket left the directory empty; a failure may
    // have left it behind.
    if res.is_err() {
        let _ = std::fs::remove_file(&bound);
    }
    let _ = std::fs::remove_dir(&private);
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

    /// Start the API as StartApi does; return the runtime, the TCP port
    /// and a client of the unix socket.
    fn start(dir: &Path, tcp: &TcpApi) -> (Services, u16, Client) {
        start_status(dir, tcp).0
    }

    fn start_status(dir: &Path, tcp: &TcpApi) -> ((Services, u16, Client), keel_api::ApiStatus) {
        let (started, status, _) = start_node(dir, tcp);
        (started, status)
    }

    /// [`start_status`] with the node, whose api status is set as
    /// StartApi sets it.
    fn start_node(
        dir: &Path,
        tcp: &TcpApi,
    ) -> (
        (Services, u16, Client),
        keel_api::ApiStatus,
        Arc<NodeShared>,
    ) {
        let s = Services::start().unwrap();
        let port = keel_testkit::free_port();
        let sock = dir.join("run/api.sock");
        let node = Arc::new(NodeShared::new(Path::new("/proc")));
        let status = s
            .spawn_api(
                port,
                &sock,
                node.clone(),
                tcp,
                &dir.join("kept"),
                keel_api::server::MAX_TCP_CONNECTIONS,
            )
            .unwrap();
        node.set_api(status.clone());
        ((s, port, Client::new(Endpoint::Unix(sock))), status, node)
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
    fn a_leftover_private_directory_is_replaced_and_a_planted_link_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let run = t.path().join("run");
        let elsewhere = t.path().join("elsewhere");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("keep"), "x").unwrap();
        // A leftover directory with a socket name in it.
        std::fs::create_dir(run.join(".a.sock.keel-tmp")).unwrap();
        std::fs::write(run.join(".a.sock.keel-tmp/s"), "old").unwrap();
        // A link planted where the next private directory goes.
        std::os::unix::fs::symlink(&elsewhere, run.join(".b.sock.keel-tmp")).unwrap();
        for name in ["a.sock", "b.sock"] {
            let l = bind_private(&run.join(name)).unwrap();
            assert!(l.local_addr().unwrap().as_pathname().is_some());
            let mode = std::fs::metadata(run.join(name)).unwrap().permissions();
            assert_eq!(mode.mode() & 0o777, 0o600);
        }
        let mut left: Vec<_> = std::fs::read_dir(&run)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["a.sock", "b.sock"]);
        assert_eq!(std::fs::read(elsewhere.join("keep")).unwrap(), b"x");
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
        cases.push(TcpApi::Closed);
        for tcp in cases {
            let d = tempfile::tempdir().unwrap();
            let ((s, port, unix), status) = start_status(d.path(), &tcp);
            assert_eq!(status.tcp_port, None, "{tcp:?}");
            assert!(
                status
                    .note
                    .starts_with(&format!("tcp port {port} closed: "))
                    && status.note.ends_with("(root only) serves the API"),
                "{}",
                status.note
            );
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
    fn a_refused_config_serves_the_last_good_api_kept_on_state() {
        let t = tempfile::tempdir().unwrap();
        let pki = keel_tls::testpki::generate(t.path(), &["127.0.0.1"]).unwrap();
        let https = |port: u16| {
            Client::new(Endpoint::parse(&format!("https://127.0.0.1:{port}")).unwrap())
                .with_tls(&keel_tls::ClientFiles {
                    ca: ("cacert", pki.ca.clone()),
                    identity: Some((
                        ("cert", pki.client_cert.clone()),
                        ("key", pki.client_key.clone()),
                    )),
                })
                .unwrap()
        };
        // A boot whose api: served keeps its files, private.
        let d = tempfile::tempdir().unwrap();
        let ((s, port, _), _) = start_status(d.path(), &TcpApi::Tls(api(&pki)));
        config(&s, &https(port)).unwrap();
        let kept = d.path().join("kept");
        for f in ["cert.pem", "key.pem", "ca.pem"] {
            let mode = std::fs::metadata(kept.join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        drop(s);
        // The next boot's config is refused, or its api: files are
        // broken: the kept api: serves, and says so.
        let broken = Api {
            key_file: pki.client_key.display().to_string(),
            ..api(&pki)
        };
        for tcp in [TcpApi::Refused, TcpApi::Tls(broken)] {
            let ((s, port, _), status) = start_status(d.path(), &tcp);
            assert_eq!(status.tcp_port, Some(port), "{tcp:?}");
            assert!(
                status.note.contains("with the last good api: kept in"),
                "{}",
                status.note
            );
            config(&s, &https(port)).unwrap_or_else(|e| panic!("{tcp:?}: {e}"));
        }
        // The control: without kept files the same boot stays closed.
        let empty = tempfile::tempdir().unwrap();
        let ((_s, _, _), status) = start_status(empty.path(), &TcpApi::Refused);
        assert_eq!(status.tcp_port, None);
        assert!(
            status
                .note
                .contains("closed: the cloud-config was refused (maintenance mode)"),
            "{}",
            status.note
        );
    }

    #[test]
    fn with_usable_files_the_tcp_port_serves_https_only() {
        let t = tempfile::tempdir().unwrap();
        let pki = keel_tls::testpki::generate(t.path(), &["127.0.0.1"]).unwrap();
        let ((s, port, unix), status, node) = start_node(t.path(), &TcpApi::Tls(api(&pki)));
        assert_eq!(status.tcp_port, Some(port));
        // The certificate is read off the boot path, before the API's
        // first answer.
        assert_eq!(status.cert_subject, None);
        config(&s, &unix).unwrap();
        let status = node.api_status();
        assert_eq!(status.cert_subject.as_deref(), Some("keel test server"));
        assert!(status.cert_not_after.is_some_and(|t| t.ends_with('Z')));
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
    }
}
