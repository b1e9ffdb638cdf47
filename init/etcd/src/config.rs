//! A member's configuration, in etcd's own terms (the `coreos.etcd2` keys and
//! etcd's flags have the same names), checked before anything starts.
//!
//! 1. The settings arrive typed ([`EtcdSettings`]: the validator and
//!    keel-etcd's flags parsed them); nothing here reads text.
//! 2. What was not given comes from [`Defaults`]: etcd's
//!    ([`Defaults::etcd`], for keel-etcd) or keel's (PID 1's).
//! 3. [`ServerConfig::check`] checks the settings against each other (the
//!    member in its initial cluster, https URLs with their files) and gives
//!    what a member needs to start.

use std::net::SocketAddr;
use std::path::PathBuf;

pub use keel_types::etcd::{ClusterState, Cors, QUOTA_BYTES, SNAPSHOT_COUNT};
use keel_types::etcd::{Discovery, InitialCluster, Url, UrlList};
use keel_types::EtcdSettings;

/// Why a configuration was refused; each names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{field}: https URLs need {needs}")]
    TlsMissing {
        field: &'static str,
        needs: &'static str,
    },
    #[error("{field}: needs {needs}")]
    Needs {
        field: &'static str,
        needs: &'static str,
    },
    #[error("initial-cluster: this member ({name:?}) is not listed")]
    SelfMissing { name: String },
    #[error(
        "initial-cluster: {name:?}'s peer URLs {listed:?} differ from initial-advertise-peer-urls {advertised:?}"
    )]
    SelfMismatch {
        name: String,
        listed: Vec<String>,
        advertised: Vec<String>,
    },
    #[error("discovery {url:?}: keel's KV reaches a discovery service only at http://IP:PORT/v2/keys/... (an etcd it can reach): this member cannot start from it")]
    Discovery { url: String },
}

/// One member of the initial cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub peer_urls: Vec<String>,
}

/// An address to listen on, and whether it speaks TLS (an `https://` URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// One side's TLS files (`cert-file`, ... or `peer-cert-file`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// True for the peer side: errors name the `peer-` settings.
    pub peer: bool,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub trusted_ca_file: Option<PathBuf>,
    /// Clients must present a certificate `trusted_ca_file` signed.
    pub client_cert_auth: bool,
}

impl TlsFiles {
    fn names(&self) -> [&'static str; 3] {
        if self.peer {
            ["peer-cert-file", "peer-key-file", "peer-trusted-ca-file"]
        } else {
            ["cert-file", "key-file", "trusted-ca-file"]
        }
    }

    /// The server side of this side's listeners.
    pub fn server(&self) -> keel_tls::ServerFiles {
        let [cert, key, ca] = self.names();
        keel_tls::ServerFiles {
            cert: (cert, self.cert_file.clone()),
            key: (key, self.key_file.clone()),
            client_ca: self
                .trusted_ca_file
                .clone()
                .filter(|_| self.client_cert_auth)
                .map(|p| (ca, p)),
        }
    }

    /// A member calling its peers: their certificates are checked against
    /// the trusted CA and its own certificate is its identity.
    pub fn client(&self) -> Option<keel_tls::ClientFiles> {
        let [cert, key, ca] = self.names();
        Some(keel_tls::ClientFiles {
            ca: (ca, self.trusted_ca_file.clone()?),
            identity: Some(((cert, self.cert_file.clone()), (key, self.key_file.clone()))),
        })
    }
}

/// Everything a member needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client: Vec<Listen>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer: Vec<Listen>,
    pub advertise_peer_urls: Vec<String>,
    pub initial_cluster: Vec<InitialMember>,
    pub cluster_state: ClusterState,
    pub cluster_token: String,
    /// Bootstrap through this discovery service (see [`crate::discovery`]):
    /// always [`Discovery::Etcd`] ([`ServerConfig::check`] refuses the rest).
    pub discovery: Option<Discovery>,
    /// TLS for the client listeners (set when one is `https://`).
    pub client_tls: Option<TlsFiles>,
    /// TLS between members (set when a peer URL is `https://`).
    pub peer_tls: Option<TlsFiles>,
    /// Take a snapshot (and compact the log) after this many applied entries.
    pub snapshot_count: u64,
    /// Raft heartbeat interval and election timeout, ms (etcd's defaults).
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    /// Below this much free space on the data directory's file system the
    /// member refuses writes (the space alarm); reads go on.
    pub min_free_bytes: u64,
    /// The store's size past which this member raises the NOSPACE alarm
    /// (etcd's `quota-backend-bytes`; measured as [`keel_kv::Store::bytes`]).
    pub quota_bytes: u64,
    /// The client API's CORS header (etcd's `cors`).
    pub cors: Cors,
}

/// Whether `addr` can only be reached from the node itself.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

impl ServerConfig {
    /// Whether a client on `l` must present a certificate the trusted CA
    /// signed (an `https://` listener with `client-cert-auth`).
    pub fn client_cert_required(&self, l: &Listen) -> bool {
        l.tls && self.client_tls.as_ref().is_some_and(|t| t.client_cert_auth)
    }

    /// The peer port is opened only for a cluster of more than one: one
    /// listed in `initial-cluster`, joined (`existing`) or found through
    /// `discovery`. A lone member opens it when a member is added.
    pub fn peers_at_start(&self) -> bool {
        self.initial_cluster.len() > 1
            || self.cluster_state == ClusterState::Existing
            || self.discovery.is_some()
    }

    /// What this member opens beyond the node without authentication, one
    /// line each, for the boot log and the status: client ports beyond
    /// loopback without `client-cert-auth`, and (once open) peer ports
    /// without TLS or without `peer-client-cert-auth`.
    pub fn exposure_warnings(&self, peers_open: bool) -> Vec<String> {
        let mut out = Vec::new();
        let open: Vec<String> = self
            .listen_client
            .iter()
            .filter(|l| !is_loopback(&l.addr) && !self.client_cert_required(l))
            .map(|l| l.addr.to_string())
            .collect();
        if !open.is_empty() {
            out.push(format!(
                "kv: client port {} listens beyond loopback without client-cert-auth: whoever reaches it can read and write the store",
                open.join(", ")
            ));
        }
        if peers_open {
            let plain: Vec<String> = self
                .listen_peer
                .iter()
                .filter(|l| !l.tls)
                .map(|l| l.addr.to_string())
                .collect();
            if !plain.is_empty() {
                out.push(format!(
                    "kv: peer port {} has no TLS (http:// peer URLs): whoever reaches it can act as a member and read the store",
                    plain.join(", ")
                ));
            } else if !self.peer_tls.as_ref().is_some_and(|t| t.client_cert_auth) {
                out.push(format!(
                    "kv: peer port {} does not ask for member certificates (peer-client-cert-auth is off): whoever reaches it can act as a member",
                    self.listen_peer
                        .iter()
                        .map(|l| l.addr.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        out
    }
}

/// etcd's cluster token when none is given.
pub const DEFAULT_TOKEN: &str = "etcd-cluster";

/// The store's default quota: 128 MiB of keys and values. The store lives
/// in memory, and writing a snapshot needs about as much again.
pub const DEFAULT_QUOTA_BYTES: u64 = 128 << 20;

/// etcd's default `snapshot-count`.
pub const DEFAULT_SNAPSHOT_COUNT: u64 = 10_000;

/// What a member is when its settings do not say. Both kinds of member
/// listen for clients on [`Url::DEFAULT_CLIENT`] and for peers on
/// [`Url::DEFAULT_PEER`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    pub name: String,
    pub data_dir: PathBuf,
    /// `advertise-client-urls` when not given; `None`: the
    /// `listen-client-urls` (etcd's rule).
    pub advertise_client_urls: Option<UrlList>,
}

impl Defaults {
    /// etcd's own: a member named `default` with its data in
    /// `default.etcd`, advertising the URLs it listens on.
    pub fn etcd() -> Defaults {
        Defaults {
            name: "default".into(),
            data_dir: "default.etcd".into(),
            advertise_client_urls: None,
        }
    }
}

impl ServerConfig {
    /// The settings given, with `defaults` for the rest, checked against
    /// each other: a lone member named `defaults.name` on
    /// 127.0.0.1:2379/2380 when nothing else is said.
    pub fn check(s: &EtcdSettings, defaults: &Defaults) -> Result<ServerConfig, ConfigError> {
        let name = s
            .name
            .as_ref()
            .map_or_else(|| defaults.name.clone(), |n| n.as_str().to_string());
        let listen_client_urls = s
            .listen_client_urls
            .clone()
            .unwrap_or_else(|| UrlList::one(Url::DEFAULT_CLIENT));
        let mut advertise_client_urls = s
            .advertise_client_urls
            .as_ref()
            .or(defaults.advertise_client_urls.as_ref())
            .unwrap_or(&listen_client_urls)
            .strings();
        // As etcd publishes them (its URL lists are sorted as text when
        // parsed): `/v2/members` shows them so.
        advertise_client_urls.sort_unstable();
        let listen_peer_urls = s
            .listen_peer_urls
            .clone()
            .unwrap_or_else(|| UrlList::one(Url::DEFAULT_PEER));
        let advertise_peer = s
            .initial_advertise_peer_urls
            .clone()
            .unwrap_or_else(|| UrlList::one(Url::DEFAULT_PEER));
        let advertise_peer_urls = advertise_peer.strings();
        let initial_cluster: Vec<InitialMember> = match &s.initial_cluster {
            Some(c) => initial_members(c),
            None => vec![InitialMember {
                name: name.clone(),
                peer_urls: advertise_peer_urls.clone(),
            }],
        };
        let me = initial_cluster
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| ConfigError::SelfMissing { name: name.clone() })?;
        let mut listed = me.peer_urls.clone();
        let mut advertised = advertise_peer_urls.clone();
        listed.sort_unstable();
        advertised.sort_unstable();
        if listed != advertised {
            return Err(ConfigError::SelfMismatch {
                name,
                listed,
                advertised,
            });
        }
        let client_tls = tls_files(
            false,
            [&s.cert_file, &s.key_file, &s.trusted_ca_file],
            s.client_cert_auth,
            listen_client_urls.any_https(),
            "listen-client-urls",
        )?;
        let peer_tls = tls_files(
            true,
            [&s.peer_cert_file, &s.peer_key_file, &s.peer_trusted_ca_file],
            s.peer_client_cert_auth,
            listen_peer_urls.any_https()
                || s.initial_cluster.as_ref().map_or_else(
                    || advertise_peer.any_https(),
                    |c| c.members().iter().any(|m| m.peer_urls.any_https()),
                ),
            "listen-peer-urls and initial-cluster",
        )?;
        if let Some(t) = &peer_tls {
            // A member checks its peers' certificates: it needs the CA.
            if t.trusted_ca_file.is_none() {
                return Err(ConfigError::TlsMissing {
                    field: "peer URLs",
                    needs: "peer-trusted-ca-file (the CA that signed the members' certificates)",
                });
            }
        }
        let discovery = match &s.discovery {
            Some(Discovery::Unusable { url }) => {
                return Err(ConfigError::Discovery { url: url.clone() })
            }
            d => d.clone(),
        };
        Ok(ServerConfig {
            name,
            data_dir: s
                .data_dir
                .clone()
                .unwrap_or_else(|| defaults.data_dir.clone()),
            listen_client: listen_client_urls.urls().iter().map(Listen::from).collect(),
            advertise_client_urls,
            listen_peer: listen_peer_urls.urls().iter().map(Listen::from).collect(),
            advertise_peer_urls,
            initial_cluster,
            cluster_state: s.initial_cluster_state.unwrap_or_default(),
            cluster_token: match &discovery {
                // The discovery URL is the token (as in etcd): every member
                // found there computes the same ids.
                Some(d) => d.url().to_string(),
                None => s
                    .initial_cluster_token
                    .clone()
                    .unwrap_or_else(|| DEFAULT_TOKEN.to_string()),
            },
            discovery,
            client_tls,
            peer_tls,
            snapshot_count: s.snapshot_count.map_or(DEFAULT_SNAPSHOT_COUNT, |n| n.get()),
            heartbeat_ms: 100,
            election_ms: 1000,
            min_free_bytes: 64 << 20,
            quota_bytes: s
                .quota_backend_bytes
                .map_or(DEFAULT_QUOTA_BYTES, |q| q.get()),
            cors: s.cors.clone(),
        })
    }
}

/// The initial cluster as the member keeps it: names and peer URLs as
/// text, the form member ids are computed from.
pub fn initial_members(c: &InitialCluster) -> Vec<InitialMember> {
    c.members()
        .iter()
        .map(|m| InitialMember {
            name: m.name.to_string(),
            peer_urls: m.peer_urls.strings(),
        })
        .collect()
}

impl From<&Url> for Listen {
    fn from(u: &Url) -> Listen {
        Listen {
            addr: u.addr,
            tls: u.is_https(),
        }
    }
}

/// The TLS files of one side, checked: an `https://` URL needs a
/// certificate and key, `client-cert-auth` a trusted CA.
fn tls_files(
    peer: bool,
    [cert, key, ca]: [&Option<PathBuf>; 3],
    client_cert_auth: bool,
    https: bool,
    field: &'static str,
) -> Result<Option<TlsFiles>, ConfigError> {
    let (ca_name, auth_name) = if peer {
        ("peer-trusted-ca-file", "peer-client-cert-auth")
    } else {
        ("trusted-ca-file", "client-cert-auth")
    };
    if client_cert_auth && ca.is_none() {
        return Err(ConfigError::Needs {
            field: auth_name,
            needs: ca_name,
        });
    }
    if !https {
        return Ok(None);
    }
    let (Some(cert_file), Some(key_file)) = (cert.clone(), key.clone()) else {
        return Err(ConfigError::TlsMissing {
            field,
            needs: if peer {
                "peer-cert-file and peer-key-file"
            } else {
                "cert-file and key-file"
            },
        });
    };
    Ok(Some(TlsFiles {
        peer,
        cert_file,
        key_file,
        trusted_ca_file: ca.clone(),
        client_cert_auth,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings from `(key, text)` pairs, as the flags or a cloud-config
    /// give them.
    fn set(base: EtcdSettings, pairs: &[(&str, &str)]) -> EtcdSettings {
        let mut s = base;
        for (k, v) in pairs {
            s.set(k, v).unwrap();
        }
        s
    }

    fn raw() -> EtcdSettings {
        set(
            EtcdSettings::default(),
            &[
                ("name", "a"),
                ("data-dir", "/tmp/x"),
                ("listen-client-urls", "http://127.0.0.1:2379"),
                ("listen-peer-urls", "http://127.0.0.1:2380"),
                ("initial-advertise-peer-urls", "http://127.0.0.1:2380"),
                (
                    "initial-cluster",
                    "a=http://127.0.0.1:2380,b=http://127.0.0.1:3380",
                ),
            ],
        )
    }

    fn check(s: &EtcdSettings) -> Result<ServerConfig, ConfigError> {
        ServerConfig::check(s, &Defaults::etcd())
    }

    #[test]
    fn quota_is_taken() {
        assert_eq!(check(&raw()).unwrap().quota_bytes, DEFAULT_QUOTA_BYTES);
        let with = |s: &str| check(&set(raw(), &[("quota-backend-bytes", s)]));
        assert_eq!(with("65536").unwrap().quota_bytes, 65536);
        assert_eq!(with(" 8589934592 ").unwrap().quota_bytes, 8 << 30);
        for bad in ["65535", "8589934593", "1G", "-1", "x"] {
            let e = raw()
                .set("quota-backend-bytes", bad)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("quota-backend-bytes: "), "{e}");
        }
    }

    #[test]
    fn snapshot_count_is_taken() {
        assert_eq!(check(&raw()).unwrap().snapshot_count, 10_000);
        let with = |s: &str| check(&set(raw(), &[("snapshot-count", s)]));
        assert_eq!(with("500").unwrap().snapshot_count, 500);
        for bad in ["0", "9", "-1", "1e3", "lots", "10000001"] {
            let e = raw().set("snapshot-count", bad).unwrap_err().to_string();
            assert!(e.starts_with("snapshot-count: "), "{e}");
        }
    }

    #[test]
    fn defaults_make_a_lone_member() {
        let c = check(&EtcdSettings::default()).unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
        assert_eq!(c.initial_cluster.len(), 1);
        assert_eq!(
            c.listen_client,
            vec![Listen {
                addr: "127.0.0.1:2379".parse().unwrap(),
                tls: false
            }]
        );
        assert_eq!((c.client_tls, c.peer_tls), (None, None));
        assert_eq!(c.advertise_client_urls, vec!["http://127.0.0.1:2379"]);
        assert_eq!(c.advertise_peer_urls, vec!["http://127.0.0.1:2380"]);
        assert_eq!(c.cluster_state, ClusterState::New);
        assert_eq!(c.cluster_token, DEFAULT_TOKEN);
    }

    #[test]
    fn advertised_client_urls_default_to_the_listened_ones_or_to_the_callers() {
        let s = set(
            EtcdSettings::default(),
            &[("listen-client-urls", "http://0.0.0.0:2379")],
        );
        let c = check(&s).unwrap();
        assert_eq!(c.advertise_client_urls, vec!["http://0.0.0.0:2379"]);
        let keel = Defaults {
            advertise_client_urls: Some(UrlList::one(Url::DEFAULT_CLIENT)),
            ..Defaults::etcd()
        };
        let c = ServerConfig::check(&s, &keel).unwrap();
        assert_eq!(c.advertise_client_urls, vec!["http://127.0.0.1:2379"]);
        let s = set(
            s,
            &[(
                "advertise-client-urls",
                "http://10.0.0.2:2379,http://10.0.0.1:9999,http://10.0.0.1:2379",
            )],
        );
        let c = ServerConfig::check(&s, &keel).unwrap();
        assert_eq!(
            c.advertise_client_urls,
            vec![
                "http://10.0.0.1:2379",
                "http://10.0.0.1:9999",
                "http://10.0.0.2:2379"
            ],
            "sorted as text, as etcd shows them"
        );
    }

    #[test]
    fn cluster_is_parsed_and_checked() {
        let c = check(&raw()).unwrap();
        assert_eq!(c.initial_cluster[1].name, "b");
        let r = set(raw(), &[("name", "c")]);
        assert_eq!(
            check(&r).unwrap_err(),
            ConfigError::SelfMissing { name: "c".into() }
        );
        assert_eq!(
            raw().set("initial-cluster", "a").unwrap_err().to_string(),
            "initial-cluster: \"a\" is not NAME=URL"
        );
        let r = set(
            raw(),
            &[("initial-advertise-peer-urls", "http://127.0.0.1:9999")],
        );
        assert!(matches!(check(&r), Err(ConfigError::SelfMismatch { .. })));
        assert_eq!(
            raw()
                .set("listen-client-urls", "https://x:1")
                .unwrap_err()
                .to_string(),
            "listen-client-urls: \"https://x:1\" is not an http://IP:PORT or https://IP:PORT URL"
        );
        assert_eq!(
            raw()
                .set("initial-cluster-state", "old")
                .unwrap_err()
                .to_string(),
            "initial-cluster-state: \"old\" is not new or existing"
        );
        let r = set(raw(), &[("initial-cluster-state", "existing")]);
        assert_eq!(check(&r).unwrap().cluster_state, ClusterState::Existing);
    }

    #[test]
    fn a_discovery_url_is_the_cluster_token() {
        let r = set(
            raw(),
            &[
                ("initial-cluster-token", "t"),
                ("discovery", "http://10.0.0.1:2379/v2/keys/d/"),
            ],
        );
        let c = check(&r).unwrap();
        assert_eq!(c.cluster_token, "http://10.0.0.1:2379/v2/keys/d");
        assert!(c.peers_at_start());
        let c = check(&set(raw(), &[("initial-cluster-token", "t")])).unwrap();
        assert_eq!((c.cluster_token.as_str(), c.discovery), ("t", None));
        // One the KV cannot reach is refused by name, before anything starts.
        let r = set(raw(), &[("discovery", "https://discovery.etcd.io/abc")]);
        assert_eq!(
            check(&r).unwrap_err(),
            ConfigError::Discovery {
                url: "https://discovery.etcd.io/abc".into()
            }
        );
    }

    #[test]
    fn https_urls_need_their_files() {
        let mut r = set(raw(), &[("listen-client-urls", "https://127.0.0.1:2379")]);
        assert_eq!(
            check(&r).unwrap_err().to_string(),
            "listen-client-urls: https URLs need cert-file and key-file"
        );
        r = set(r, &[("cert-file", "/c.pem"), ("key-file", "/k.pem")]);
        let c = check(&r).unwrap();
        assert!(c.listen_client[0].tls);
        let t = c.client_tls.unwrap();
        assert!(t.server().client_ca.is_none());
        r = set(r, &[("client-cert-auth", "true")]);
        assert_eq!(
            check(&r).unwrap_err().to_string(),
            "client-cert-auth: needs trusted-ca-file"
        );
        r = set(r, &[("trusted-ca-file", "/ca.pem")]);
        let t = check(&r).unwrap().client_tls.unwrap();
        assert_eq!(t.server().client_ca.unwrap().0, "trusted-ca-file");

        let mut r = set(
            raw(),
            &[(
                "initial-cluster",
                "a=http://127.0.0.1:2380,b=https://127.0.0.1:3380",
            )],
        );
        assert!(check(&r)
            .unwrap_err()
            .to_string()
            .contains("peer-cert-file and peer-key-file"));
        r = set(
            r,
            &[("peer-cert-file", "/p.pem"), ("peer-key-file", "/pk.pem")],
        );
        assert!(check(&r)
            .unwrap_err()
            .to_string()
            .contains("peer-trusted-ca-file"));
        r = set(r, &[("peer-trusted-ca-file", "/ca.pem")]);
        let t = check(&r).unwrap().peer_tls.unwrap();
        assert_eq!(t.server().cert.0, "peer-cert-file");
        let c = t.client().unwrap();
        assert_eq!(c.ca.0, "peer-trusted-ca-file");
    }

    #[test]
    fn cors_is_taken_as_given() {
        assert_eq!(
            raw().set("cors", "nope").unwrap_err().to_string(),
            "cors: \"nope\" is not \"*\" or a list of http:// and https:// origins"
        );
        assert_eq!(check(&raw()).unwrap().cors, Cors::Off);
        let c = check(&set(raw(), &[("cors", "*")])).unwrap();
        assert_eq!(c.cors, Cors::Any);
    }

    #[test]
    fn the_peer_port_is_for_clusters_of_more_than_one() {
        assert!(check(&raw()).unwrap().peers_at_start());
        let lone = check(&EtcdSettings::default()).unwrap();
        assert!(!lone.peers_at_start());
        let joining = set(
            EtcdSettings::default(),
            &[("initial-cluster-state", "existing")],
        );
        assert!(check(&joining).unwrap().peers_at_start());
    }

    #[test]
    fn exposure_is_warned_about_one_line_each() {
        // Loopback only, peer port closed: nothing to say.
        let c = check(&EtcdSettings::default()).unwrap();
        assert!(c.exposure_warnings(false).is_empty());
        // Open peers over http.
        let w = c.exposure_warnings(true);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("kv: peer port 127.0.0.1:2380 has no TLS"),
            "{w:?}"
        );
        // Clients beyond loopback: plain, then TLS without client-cert-auth,
        // then with it (no warning).
        let mut r = set(
            EtcdSettings::default(),
            &[(
                "listen-client-urls",
                "http://127.0.0.1:2379,http://0.0.0.0:2379",
            )],
        );
        let w = check(&r).unwrap().exposure_warnings(false);
        assert_eq!(
            w,
            vec!["kv: client port 0.0.0.0:2379 listens beyond loopback without client-cert-auth: whoever reaches it can read and write the store"]
        );
        r = set(
            r,
            &[
                ("listen-client-urls", "https://10.0.0.1:2379"),
                ("cert-file", "/c.pem"),
                ("key-file", "/k.pem"),
            ],
        );
        assert_eq!(check(&r).unwrap().exposure_warnings(false).len(), 1);
        r = set(
            r,
            &[("trusted-ca-file", "/ca.pem"), ("client-cert-auth", "true")],
        );
        assert!(check(&r).unwrap().exposure_warnings(false).is_empty());
        // Peer TLS without member certificates is still said.
        let mut r = set(
            raw(),
            &[
                ("listen-peer-urls", "https://127.0.0.1:2380"),
                ("initial-advertise-peer-urls", "https://127.0.0.1:2380"),
                (
                    "initial-cluster",
                    "a=https://127.0.0.1:2380,b=https://127.0.0.1:3380",
                ),
                ("peer-cert-file", "/p.pem"),
                ("peer-key-file", "/pk.pem"),
                ("peer-trusted-ca-file", "/ca.pem"),
            ],
        );
        let w = check(&r).unwrap().exposure_warnings(true);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("peer-client-cert-auth is off"), "{w:?}");
        r = set(r, &[("peer-client-cert-auth", "true")]);
        assert!(check(&r).unwrap().exposure_warnings(true).is_empty());
    }
}
