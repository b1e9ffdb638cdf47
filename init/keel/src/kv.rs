//! The StartKv boot task: keel's cluster store (keel-etcd, etcd's v2 API)
//! as a member of the cluster that `coreos.etcd2` describes, or a lone
//! member when the config says nothing.
//!
//! 1. The settings are etcd's keys, typed once by the config's validator
//!    ([`EtcdSettings`]); what is not given gets keel's default: a
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
use keel_etcd::config::{Defaults, ServerConfig};
use keel_types::etcd::{Url, UrlList};
use keel_types::EtcdSettings;

use crate::boot_table::{Ctx, TaskError};

/// The store's data on STATE.
pub const DATA_DIR: &str = "/var/lib/keel/kv";

/// Step 1: keel's defaults, for what the settings do not give. Unlike
/// etcd, keel advertises 127.0.0.1:2379 to clients unless told otherwise,
/// even when `listen-client-urls` opens more.
pub fn defaults(hostname: &str) -> Defaults {
    Defaults {
        name: if hostname.is_empty() {
            Defaults::etcd().name
        } else {
            hostname.to_string()
        },
        data_dir: DATA_DIR.into(),
        advertise_client_urls: Some(UrlList::one(Url::DEFAULT_CLIENT)),
    }
}

/// Steps 1 and 2: the member's configuration from the config's settings,
/// with keel's defaults.
pub fn server_config(
    settings: &EtcdSettings,
    hostname: &str,
) -> Result<ServerConfig, keel_etcd::config::ConfigError> {
    ServerConfig::check(settings, &defaults(hostname))
}

pub fn start_kv(ctx: &mut Ctx) -> Result<(), TaskError> {
    let settings = std::mem::take(&mut ctx.config.etcd2);
    for k in &settings.unsupported {
        warn!("kv: coreos.etcd2.{k} is not supported yet; starting without it");
    }
    let config = server_config(&settings, &crate::node::hostname())?;
    ctx.kv_client_port = config.listen_client.first().map(|l| l.addr.port());
    let shared = ctx.node.clone();
    // The member's thread starts after ready: under one vCPU its start
    // (store, log, Raft, listeners) would otherwise share the CPU with the
    // rest of the boot. `ready` never waited for the KV to serve.
    ctx.after_ready.push(crate::boot_table::AfterReady {
        name: "StartKv",
        run: Box::new(move || spawn_member(config, shared)),
    });
    Ok(())
}

/// Start the member on a thread of its own, with its own runtime.
fn spawn_member(
    config: ServerConfig,
    shared: Arc<crate::node::NodeShared>,
) -> Result<(), TaskError> {
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
        .map_err(TaskError::KvThread)?;
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

    fn settings(pairs: &[(&str, &str)]) -> EtcdSettings {
        let mut s = EtcdSettings::default();
        for (k, v) in pairs {
            s.set(k, v).unwrap();
        }
        s
    }

    #[test]
    fn defaults_make_a_lone_member_and_settings_override_them() {
        let c = server_config(&EtcdSettings::default(), "n1").unwrap();
        assert_eq!(c.name, "n1");
        assert_eq!(c.data_dir, std::path::Path::new(DATA_DIR));
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
        assert_eq!(
            server_config(&EtcdSettings::default(), "").unwrap().name,
            "default"
        );
        let s = settings(&[
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
        ]);
        let c = server_config(&s, "n1").unwrap();
        assert_eq!(c.name, "a");
        assert_eq!(c.initial_cluster.len(), 2);
        assert!(c.listen_client[0].tls);
        assert_eq!(
            c.advertise_client_urls,
            vec!["http://127.0.0.1:2379"],
            "keel advertises loopback unless told"
        );
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
        assert_eq!(s.unsupported, vec!["auto-tls"]);
    }

    #[test]
    fn the_validators_settings_are_the_members_config() {
        let r = keel_config::validate(
            "#cloud-config\ncoreos:\n  etcd:\n    name: legacy\n    addr: 10.0.0.1:4001\n    peer-addr: 10.0.0.1:7001\n    bind-addr: 0.0.0.0:4001\n    peer-bind-addr: 10.0.0.1:7001\n",
        );
        assert!(r.accepted(), "{:#?}", r.errors);
        let c = server_config(&r.config.etcd2, "n1").unwrap();
        assert_eq!(c.name, "legacy");
        assert_eq!(c.advertise_client_urls, vec!["http://10.0.0.1:4001"]);
        assert_eq!(c.advertise_peer_urls, vec!["http://10.0.0.1:7001"]);
        assert_eq!(c.listen_client[0].addr, "0.0.0.0:4001".parse().unwrap());
        assert_eq!(c.initial_cluster[0].peer_urls, vec!["http://10.0.0.1:7001"]);
    }
}
