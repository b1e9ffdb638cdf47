//! The StartKv boot task: keel's cluster store (keel-etcd, etcd's v2 API)
//! as a member of the cluster that `coreos.etcd2` describes, or a lone
//! member when the config says nothing.
//!
//! 1. The settings are etcd's keys; what is not given gets keel's default: a
//!    member named after the host, clients on 127.0.0.1:2379 only (as etcd;
//!    `listen-client-urls` opens more), peers on 127.0.0.1:2380 (opened only
//!    in a cluster of more than one), data on STATE in [`DATA_DIR`].
//! 2. Keys keel does not implement (proxy, auto-tls, tuning knobs) are
//!    named in the log and left out; the member starts without them. The
//!    TLS keys (`cert-file`, `key-file`, `trusted-ca-file`,
//!    `client-cert-auth` and their `peer-` forms) take effect with
//!    `https://` URLs; the files usually come from `write_files`.
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
pub fn raw_config(
    settings: &[(String, String)],
    hostname: &str,
) -> Result<(RawConfig, Vec<String>), String> {
    let flag = |k: &str, v: &str| match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("coreos.etcd2.{k}: {v:?} is not true or false")),
    };
    let mut raw = RawConfig {
        name: hostname.to_string(),
        data_dir: DATA_DIR.into(),
        listen_client_urls: keel_etcd::config::DEFAULT_CLIENT_URL.into(),
        advertise_client_urls: keel_etcd::config::DEFAULT_CLIENT_URL.into(),
        listen_peer_urls: keel_etcd::config::DEFAULT_PEER_URL.into(),
        initial_advertise_peer_urls: keel_etcd::config::DEFAULT_PEER_URL.into(),
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
            "cert-file" => raw.cert_file = v,
            "key-file" => raw.key_file = v,
            "trusted-ca-file" => raw.trusted_ca_file = v,
            "client-cert-auth" => raw.client_cert_auth = flag(k, &v)?,
            "peer-cert-file" => raw.peer_cert_file = v,
            "peer-key-file" => raw.peer_key_file = v,
            "peer-trusted-ca-file" => raw.peer_trusted_ca_file = v,
            "peer-client-cert-auth" => raw.peer_client_cert_auth = flag(k, &v)?,
            "snapshot-count" => raw.snapshot_count = v,
            "cors" => raw.cors = v,
            "quota-backend-bytes" => raw.quota_backend_bytes = v,
            other => ignored.push(other.to_string()),
        }
    }
    Ok((raw, ignored))
}

pub fn start_kv(ctx: &mut Ctx) -> Result<(), TaskError> {
    let settings = std::mem::take(&mut ctx.config_etcd2);
    let host = crate::node::hostname();
    let (raw, ignored) = raw_config(&settings, &host).map_err(TaskError::Kv)?;
    for k in &ignored {
        warn!("kv: coreos.etcd2.{k} is not supported yet; starting without it");
    }
    let config = raw.check().map_err(|e| TaskError::Kv(e.to_string()))?;
    ctx.kv_client_port = config.listen_client.first().map(|l| l.addr.port());
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
                            "kv: member {:x} ({}) serving the etcd v2 API on {:?}, peer port {}",
                            s.node.id,
                            s.node.config.name,
                            s.client_addrs,
                            if s.peer_addrs.is_empty() {
                                "closed (lone member)".to_string()
                            } else {
                                format!("on {:?}", s.peer_addrs)
                            }
                        );
                        for w in s.node.warnings() {
                            warn!("{w}");
                        }
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
    fn the_validator_and_the_kv_take_the_same_quotas() {
        assert_eq!(
            keel_config::validate::QUOTA_BYTES,
            keel_etcd::config::QUOTA_BYTES
        );
    }

    #[test]
    fn defaults_make_a_lone_member_and_settings_override_them() {
        let (raw, ignored) = raw_config(&[], "n1").unwrap();
        let c = raw.check().unwrap();
        assert_eq!(c.name, "n1");
        assert_eq!(c.initial_cluster.len(), 1);
        assert_eq!(c.listen_client.len(), 1, "one client port by default");
        assert_eq!(c.listen_client[0].addr, "127.0.0.1:2379".parse().unwrap());
        assert!(!c.listen_client[0].tls);
        assert!(!c.peers_at_start(), "a lone member opens no peer port");
        assert!(
            c.exposure_warnings(false).is_empty(),
            "nothing to warn about"
        );
        assert_eq!(c.cors, keel_etcd::config::Cors::Off);
        assert!(ignored.is_empty());
        let settings: Vec<(String, String)> = [
            ("name", "a"),
            ("initial-advertise-peer-urls", "http://10.0.0.1:2380"),
            ("listen-peer-urls", "http://10.0.0.1:2380"),
            (
                "initial-cluster",
                "a=http://10.0.0.1:2380,b=http://10.0.0.2:2380",
            ),
            ("listen-client-urls", "https://0.0.0.0:2379"),
            ("cert-file", "/etc/ssl/x.pem"),
            ("key-file", "/etc/ssl/x-key.pem"),
            ("trusted-ca-file", "/etc/ssl/ca.pem"),
            ("client-cert-auth", "true"),
            ("snapshot-count", "5000"),
            ("cors", "https://a.example, https://b.example"),
            ("auto-tls", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (raw, ignored) = raw_config(&settings, "n1").unwrap();
        let c = raw.check().unwrap();
        assert_eq!(c.name, "a");
        assert_eq!(c.initial_cluster.len(), 2);
        assert!(c.listen_client[0].tls);
        let tls = c.client_tls.clone().unwrap();
        assert!(tls.client_cert_auth);
        assert_eq!(tls.key_file, std::path::Path::new("/etc/ssl/x-key.pem"));
        assert_eq!(c.snapshot_count, 5000);
        assert_eq!(
            c.cors,
            keel_etcd::config::Cors::Origins(vec![
                "https://a.example".into(),
                "https://b.example".into()
            ])
        );
        assert!(c.peers_at_start());
        assert_eq!(ignored, vec!["auto-tls"]);
        let bad = [("client-cert-auth".to_string(), "yes".to_string())];
        assert_eq!(
            raw_config(&bad, "n1").unwrap_err(),
            "coreos.etcd2.client-cert-auth: \"yes\" is not true or false"
        );
    }
}
