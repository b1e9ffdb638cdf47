//! A node with canned answers, for tests of the server and its clients
//! (feature `fake`; never in PID 1).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::types::Timeline;
use crate::{
    ConfigApplied, ConfigStatus, Memory, NetworkStatus, Node, NodeState, Processes, Status,
};

/// Status says hostname `fake`; the first power request is accepted, the
/// others refused as "already under way"; a config is always accepted.
#[derive(Debug, Default)]
pub struct FakeNode {
    pub power_requests: AtomicU32,
}

impl Node for FakeNode {
    fn status(&self) -> Status {
        Status {
            version: "test".into(),
            hostname: "fake".into(),
            state: NodeState::Ready,
            mode: Default::default(),
            uptime_ms: 1.0,
            boot: Timeline::default(),
            memory: Memory {
                total_kb: 1,
                available_kb: 1,
                used_kb: 0,
                pid1_rss_kb: 1,
            },
            processes: Processes {
                total: 1,
                zombies: 0,
                reaped: 0,
            },
            root: Default::default(),
            config: Default::default(),
            kv: None,
            api: Default::default(),
            kernel: Default::default(),
        }
    }

    /// Echoes how it was asked: `changed` names `keep_api=BOOL`.
    fn apply_config(&self, _text: String, opts: crate::ApplyOptions) -> ConfigApplied {
        ConfigApplied {
            dry_run: opts.dry_run,
            changed: vec![format!("keep_api={}", opts.keep_api)],
            accepted: true,
            ..Default::default()
        }
    }

    fn config(&self) -> ConfigStatus {
        ConfigStatus::default()
    }

    fn network(&self) -> NetworkStatus {
        NetworkStatus::default()
    }

    fn request_power(&self, _poweroff: bool) -> Result<(), String> {
        if self.power_requests.fetch_add(1, Ordering::SeqCst) == 0 {
            Ok(())
        } else {
            Err("a reboot is already under way".into())
        }
    }
}

/// Serve a `FakeNode` on a loopback TCP port over HTTPS (`tls`),
/// with `serve_tcp` on a single-threaded runtime of its own thread, as PID 1
/// serves it. The server lives as long as the process.
pub fn spawn_tcp(tls: keel_tls::TlsAcceptor) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = {
        let _g = rt.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    std::thread::spawn(move || {
        let node: Arc<dyn Node> = Arc::new(FakeNode::default());
        rt.block_on(crate::serve_tcp(
            listener,
            tls,
            node,
            crate::server::MAX_TCP_CONNECTIONS,
        ));
    });
    Ok(addr)
}
