//! The StartKv boot task: keel's cluster store (keel-etcd, etcd's v2 API)
//! as a member of the cluster that `coreos.etcd2` describes, or a lone
//! member when the config says nothing.
//!
//! 1. The settings are etcd's keys; what is not given gets keel's default: a
//!    member named after the host, clients on every address at :2379, peers
//!    on 127.0.0.1:2380, data on STATE in [`DATA_DIR`].
//! 2. Keys keel does not implement yet (TLS files, discovery, proxy) are
//!    named in the log and left out; the member starts without them.
//! 3. The member runs on its own thread and one-thread runtime, so the
//!    store's latency does not depend on what the rest of PID 1 is doing.
//!    The boot does not wait for it: opening the log, replaying it and
//!    binding the ports happen beside the rest of the boot; a corrupt log
//!    or a port in use is logged with its reason, and the API's status
//!    says the store is not running.

use std::sync::Arc;

use keel_boot::{info, warn};
use keel_etcd::config::RawConfig;

use crate::boot_table::{Ctx, TaskError};

/// The store's data on STATE.
pub const DATA_DIR: &str = "/var/lib/keel/kv";

/// Step 1 and 2: keel's defaults overridden by the config's settings; the
/// keys left out, for the log.
pub fn raw_config(settings: &[(String, String)], hostname: &str) -> (RawConfig, Vec<String>) {
    let mut raw = RawConfig {
        name: hostname.to_string(),
        data_dir: DATA_DIR.into(),
        listen_client_urls: "http://0.0.0.0:2379".into(),
        advertise_client_urls: "http://127.0.0.1:2379".into(),
        listen_peer_urls: "http://127.0.0.1:2380".into(),
        initial_advertise_peer_urls: "http://127.0.0.1:2380".into(),
        ..RawConfig::default()
    };
    let mut ignored = Vec::new();
    for (k, v) in settings {
        let v = v.clone();
        match k.as_str() {
            "name" => raw.name = v,
            "data-dir" => raw.data_dir = v.into(),
            "listen-client-urls" => raw.listen_client_urls = v,
            "advertise-client-urls" => raw.advertise_client_urls = v,
            "listen-peer-urls" => raw.listen_peer_urls = v,
            "initial-advertise-peer-urls" => raw.initial_advertise_peer_urls = v,
            "initial-cluster" => raw.initial_cluster = v,
            "initial-cluster-state" => raw.initial_cluster_state = v,
            "initial-cluster-token" => raw.initial_cluster_token = v,
            "discovery" => raw.discovery = v,
            other => ignored.push(other.to_string()),
        }
    }
    (raw, ignored)
}

pub fn start_kv(ctx: &mut Ctx) -> Result<(), TaskError> {
    let settings = std::mem::take(&mut ctx.config_etcd2);
    let host = crate::node::hostname();
    let (raw, ignored) = raw_config(&settings, &host);
    for k in &ignored {
        warn!("kv: coreos.etcd2.{k} is not supported yet; starting without it");
    }
    let config = raw.check().map_err(|e| TaskError::Kv(e.to_string()))?;
    let shared = ctx.node.clone();
    std::thread::Builder::new()
        .name("kv".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    warn!("kv: not started: runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                match keel_etcd::start(config).await {
                    Ok(s) => {
                        info!(
                            "kv: member {:x} ({}) serving the etcd v2 API on {:?}",
                            s.node.id, s.node.config.name, s.client_addrs
                        );
                        let _ = shared.kv.set(s.node);
                        std::future::pending::<()>().await;
                    }
                    Err(e) => warn!("kv: not started: {e}"),
                }
            });
        })
        .map_err(|e| TaskError::Kv(format!("start the kv thread: {e}")))?;
    Ok(())
}

/// The running member, for the rest of PID 1.
pub type Member = Arc<keel_etcd::node::Node>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_make_a_lone_member_and_settings_override_them() {
        let (raw, ignored) = raw_config(&[], "n1");
        let c = raw.check().unwrap();
        assert_eq!(c.name, "n1");
        assert_eq!(c.initial_cluster.len(), 1);
        assert_eq!(c.listen_client, vec!["0.0.0.0:2379".parse().unwrap()]);
        assert!(ignored.is_empty());
        let settings: Vec<(String, String)> = [
            ("name", "a"),
            ("initial-advertise-peer-urls", "http://10.0.0.1:2380"),
            ("listen-peer-urls", "http://10.0.0.1:2380"),
            (
                "initial-cluster",
                "a=http://10.0.0.1:2380,b=http://10.0.0.2:2380",
            ),
            ("cert-file", "/etc/ssl/x.pem"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (raw, ignored) = raw_config(&settings, "n1");
        let c = raw.check().unwrap();
        assert_eq!(c.name, "a");
        assert_eq!(c.initial_cluster.len(), 2);
        assert_eq!(ignored, vec!["cert-file"]);
    }
}
