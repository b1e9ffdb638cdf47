//! Service announcement: a container with `announce: {name, port}` is
//! registered in the cluster store at `/services/<name>/<instance>` while
//! it is running and healthy, so `etcdctl ls --recursive /services` shows
//! what the cluster runs and where.
//!
//! 1. Every [`TICK`], the announcer compares what the supervisor says with
//!    what it announced. The instance is `<host>-<container>`; the value is
//!    `{"host", "port", "version"}` (the node's address, the announced
//!    port, the container's image).
//! 2. A container that is running and healthy (or has no health check) is
//!    written with a [`TTL`]; while it stays so, the key's TTL is refreshed
//!    every [`REFRESH`] (a refresh does not wake watchers), so a node that
//!    dies or loses the cluster drops out by itself.
//! 3. A container that stops, fails its health check, or leaves the config
//!    is deleted at the next tick.
//! 4. A write that fails (no leader) is retried at the next tick.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_api::ContainerStatus;
use keel_config::model::Announce;
use keel_etcd::types::{Request, Response};
use keel_kv::SetOptions;

use crate::node::NodeShared;

pub const TICK: Duration = Duration::from_secs(2);
pub const TTL: u64 = 30;
pub const REFRESH: Duration = Duration::from_secs(10);

/// The key and value a healthy container is announced with, or None when it
/// must not be announced now.
pub fn entry(
    host: &str,
    addr: &str,
    w: &Wanted,
    status: Option<&ContainerStatus>,
) -> (String, Option<String>) {
    let key = format!("/services/{}/{host}-{}", w.announce.name, w.container);
    let healthy = status.is_some_and(|s| {
        s.state == "running" && s.health.as_deref().is_none_or(|h| h == "healthy")
    });
    let value = healthy.then(|| {
        serde_json::json!({
            "host": addr,
            "port": w.announce.port,
            "version": w.version,
        })
        .to_string()
    });
    (key, value)
}

/// The node's address for clients: the first IPv4 address of an up link
/// that is not loopback or keel's container bridge.
fn node_address() -> String {
    crate::net::status()
        .links
        .iter()
        .filter(|l| l.up && l.name != "lo" && l.name != "keel0")
        .flat_map(|l| l.addresses.iter())
        .find(|a| !a.contains(':'))
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .unwrap_or_else(|| "127.0.0.1".into())
}

struct Announced {
    value: String,
    refreshed: Instant,
}

/// Steps 1-4, forever.
pub async fn run(node: Arc<NodeShared>) {
    let mut announced: BTreeMap<String, Announced> = BTreeMap::new();
    loop {
        tokio::time::sleep(TICK).await;
        let (Some(kv), Some(sup)) = (node.kv.get(), node.containers.get()) else {
            continue;
        };
        let wanted = node.announces.lock().map(|a| a.clone()).unwrap_or_default();
        if wanted.is_empty() && announced.is_empty() {
            continue;
        }
        let status = sup.status();
        let host = crate::node::hostname();
        let addr = node_address();
        let mut live = BTreeMap::new();
        for w in &wanted {
            let s = status.iter().find(|s| s.name == w.container);
            let (key, value) = entry(&host, &addr, w, s);
            if let Some(v) = value {
                live.insert(key, v);
            }
        }
        let now_ms = keel_etcd::node::now_ms();
        for (key, value) in &live {
            let fresh = announced
                .get(key)
                .is_some_and(|a| &a.value == value && a.refreshed.elapsed() < REFRESH);
            if fresh {
                continue;
            }
            let same = announced.get(key).is_some_and(|a| &a.value == value);
            let opts = if same {
                SetOptions {
                    ttl: Some(TTL),
                    refresh: true,
                    prev_exist: Some(true),
                    ..SetOptions::default()
                }
            } else {
                SetOptions {
                    value: value.clone(),
                    ttl: Some(TTL),
                    ..SetOptions::default()
                }
            };
            let r = kv
                .write(Request::Set {
                    key: key.clone(),
                    opts,
                    now: now_ms,
                })
                .await;
            match r {
                Ok(w) if matches!(w.response, Response::Event(_)) => {
                    announced.insert(
                        key.clone(),
                        Announced {
                            value: value.clone(),
                            refreshed: Instant::now(),
                        },
                    );
                }
                // Gone (expired while the cluster was away): write it anew
                // at the next tick.
                _ => {
                    announced.remove(key);
                }
            }
        }
        let gone: Vec<String> = announced
            .keys()
            .filter(|k| !live.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            let r = kv
                .write(Request::Delete {
                    key: key.clone(),
                    dir: false,
                    recursive: false,
                    prev_value: None,
                    prev_index: None,
                    now: now_ms,
                })
                .await;
            if r.is_ok() {
                announced.remove(&key);
            }
        }
    }
}

/// The config's announcing containers, by container name.
pub fn wanted(containers: &[keel_config::model::Container]) -> Vec<Wanted> {
    containers
        .iter()
        .filter_map(|c| {
            c.announce.clone().map(|announce| Wanted {
                container: c.name.clone(),
                announce,
                version: c.image.store_name(),
            })
        })
        .collect()
}

/// A container to announce while it is healthy, and the version its entry
/// names (its image as the node's store keeps it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub container: String,
    pub announce: Announce,
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: &str, health: Option<&str>) -> ContainerStatus {
        ContainerStatus {
            name: "web".into(),
            image: "busybox".into(),
            state: state.into(),
            pid: None,
            uptime_ms: None,
            restarts: 0,
            last_exit: None,
            error: None,
            restart_in_ms: None,
            health: health.map(str::to_string),
            network: "bridge".into(),
            address: None,
            node_port: None,
            stats: Default::default(),
            start_ms: None,
            run_ms: None,
        }
    }

    #[test]
    fn only_running_healthy_containers_are_announced() {
        let mut c = keel_config::model::Container::new(
            "web",
            keel_types::ImageRef::try_from("busybox").unwrap(),
        );
        c.announce = Some(Announce {
            name: "www".into(),
            port: 8080,
        });
        let a = wanted(&[c]).remove(0);
        let (key, v) = entry("n1", "10.0.2.15", &a, Some(&status("running", None)));
        assert_eq!(key, "/services/www/n1-web");
        let v: serde_json::Value = serde_json::from_str(&v.unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"host": "10.0.2.15", "port": 8080, "version": "busybox:latest"})
        );
        let healthy = status("running", Some("healthy"));
        assert!(entry("n1", "x", &a, Some(&healthy)).1.is_some());
        for s in [
            status("running", Some("unhealthy")),
            status("running", Some("starting")),
            status("exited", None),
            status("backoff", None),
        ] {
            assert!(entry("n1", "x", &a, Some(&s)).1.is_none(), "{s:?}");
        }
        assert!(entry("n1", "x", &a, None).1.is_none());
    }
}
