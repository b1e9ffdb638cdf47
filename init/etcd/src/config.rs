//! A member's configuration, in etcd's own terms (the `coreos.etcd2` keys and
//! etcd's flags have the same names), checked before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a configuration was refused; each names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{field}: {url:?} is not an http://IP:PORT or https://IP:PORT URL")]
    Url { field: &'static str, url: String },
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
    #[error("initial-cluster: {entry:?} is not NAME=URL")]
    ClusterEntry { entry: String },
    #[error("initial-cluster: member {name:?} is listed with no peer URL")]
    ClusterEmpty { name: String },
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
    #[error("initial-cluster-state: {0:?} is neither \"new\" nor \"existing\"")]
    State(String),
    #[error("name: must not be empty")]
    Name,
    #[error("snapshot-count: {0:?} is not a whole number from 10 to 10000000")]
    SnapshotCount(String),
    #[error("cors: {0:?} is not \"*\" or a list of http:// and https:// origins")]
    Cors(String),
    #[error("quota-backend-bytes: {0:?} is not a whole number of bytes from 65536 to 8589934592")]
    Quota(String),
}

/// Which web pages' scripts may read the client API's answers (etcd's
/// `cors`): the `Access-Control-Allow-Origin` header. None by default; etcd
/// 3.4 defaults to `*`, keel does not (a page could then drive the store
/// from any browser that reaches the port).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Cors {
    /// No CORS header: browsers keep pages from reading the answers.
    #[default]
    Off,
    /// `*`: any origin.
    Any,
    /// These origins (`scheme://host[:port]`), each answered with itself.
    Origins(Vec<String>),
}

impl Cors {
    /// etcd's form: `*`, or origins separated by commas; empty is [`Cors::Off`].
    pub fn parse(s: &str) -> Result<Cors, ConfigError> {
        let items: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .collect();
        if items.is_empty() {
            return Ok(Cors::Off);
        }
        if items.contains(&"*") {
            return Ok(Cors::Any);
        }
        let mut out = Vec::new();
        for o in items {
            let host = o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"));
            if !host.is_some_and(|h| !h.is_empty() && !h.contains(['/', ' ', '*', '?', '#'])) {
                return Err(ConfigError::Cors(s.to_string()));
            }
            out.push(o.to_ascii_lowercase());
        }
        Ok(Cors::Origins(out))
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`
    /// (its `Origin` header), if any.
    pub fn allow<'a>(&'a self, origin: Option<&'a str>) -> Option<&'a str> {
        match self {
            Cors::Off => None,
            Cors::Any => Some("*"),
            Cors::Origins(list) => {
                origin.filter(|o| list.iter().any(|a| a.eq_ignore_ascii_case(o)))
            }
        }
    }
}

/// `new` bootstraps a cluster from `initial-cluster`; `existing` joins one
/// that already runs (after `POST /v2/members` added this member).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
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
    /// Bootstrap through this discovery URL (see [`crate::discovery`]).
    pub discovery: Option<String>,
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

/// etcd's defaults for the strings a caller may leave empty.
pub const DEFAULT_CLIENT_URL: &str = "http://127.0.0.1:2379";
pub const DEFAULT_PEER_URL: &str = "http://127.0.0.1:2380";
pub const DEFAULT_TOKEN: &str = "etcd-cluster";

/// The raw strings, as flags or cloud-config carry them.
#[derive(Debug, Clone, Default)]
pub struct RawConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client_urls: String,
    pub advertise_client_urls: String,
    pub listen_peer_urls: String,
    pub initial_advertise_peer_urls: String,
    pub initial_cluster: String,
    pub initial_cluster_state: String,
    pub initial_cluster_token: String,
    /// An etcd discovery URL (`http://IP:PORT/v2/keys/...`): the initial
    /// cluster is found there instead of in `initial_cluster`.
    pub discovery: String,
    /// etcd's TLS flags, client side then peer side.
    pub cert_file: String,
    pub key_file: String,
    pub trusted_ca_file: String,
    pub client_cert_auth: bool,
    pub peer_cert_file: String,
    pub peer_key_file: String,
    pub peer_trusted_ca_file: String,
    pub peer_client_cert_auth: bool,
    /// Entries applied since the last snapshot that trigger the next one
    /// (etcd's `--snapshot-count`); empty means 10000.
    pub snapshot_count: String,
    /// etcd's `cors`: `*` or origins separated by commas; empty means none.
    pub cors: String,
    /// etcd's `quota-backend-bytes`; empty means [`DEFAULT_QUOTA_BYTES`].
    pub quota_backend_bytes: String,
}

/// The store's default quota: 128 MiB of keys and values. The store lives
/// in memory, and writing a snapshot needs about as much again.
pub const DEFAULT_QUOTA_BYTES: u64 = 128 << 20;
/// The smallest and largest quota `quota-backend-bytes` accepts (etcd
/// suggests at most 8 GiB).
pub const QUOTA_BYTES: std::ops::RangeInclusive<u64> = (64 << 10)..=(8 << 30);

/// The fewest and most entries between snapshots `snapshot-count` accepts.
pub const SNAPSHOT_COUNT: std::ops::RangeInclusive<u64> = 10..=10_000_000;

impl RawConfig {
    /// Checks every field and fills etcd's defaults: a lone member named
    /// `name` on 127.0.0.1:2379/2380 when nothing else is said.
    pub fn check(&self) -> Result<ServerConfig, ConfigError> {
        let or = |v: &str, d: &str| {
            if v.trim().is_empty() {
                d.to_string()
            } else {
                v.to_string()
            }
        };
        let name = or(&self.name, "default");
        if name.trim().is_empty() {
            return Err(ConfigError::Name);
        }
        let listen_client_urls = or(&self.listen_client_urls, DEFAULT_CLIENT_URL);
        let listen_client = parse_addrs("listen-client-urls", &listen_client_urls)?;
        let advertise_client_urls =
            split_urls(&or(&self.advertise_client_urls, &listen_client_urls));
        for u in &advertise_client_urls {
            url_addr("advertise-client-urls", u)?;
        }
        let listen_peer = parse_addrs(
            "listen-peer-urls",
            &or(&self.listen_peer_urls, DEFAULT_PEER_URL),
        )?;
        let advertise_peer_urls =
            split_urls(&or(&self.initial_advertise_peer_urls, DEFAULT_PEER_URL));
        for u in &advertise_peer_urls {
            url_addr("initial-advertise-peer-urls", u)?;
        }
        let cluster = or(
            &self.initial_cluster,
            &advertise_peer_urls
                .iter()
                .map(|u| format!("{name}={u}"))
                .collect::<Vec<_>>()
                .join(","),
        );
        let initial_cluster = parse_cluster(&cluster)?;
        let me = initial_cluster
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| ConfigError::SelfMissing { name: name.clone() })?;
        let mut listed = me.peer_urls.clone();
        let mut advertised = advertise_peer_urls.clone();
        listed.sort();
        advertised.sort();
        if listed != advertised {
            return Err(ConfigError::SelfMismatch {
                name,
                listed,
                advertised,
            });
        }
        let client_tls = tls_files(
            false,
            [&self.cert_file, &self.key_file, &self.trusted_ca_file],
            self.client_cert_auth,
            any_https(&split_urls(&listen_client_urls)),
            "listen-client-urls",
        )?;
        let peer_tls = tls_files(
            true,
            [
                &self.peer_cert_file,
                &self.peer_key_file,
                &self.peer_trusted_ca_file,
            ],
            self.peer_client_cert_auth,
            any_https(
                split_urls(&or(&self.listen_peer_urls, DEFAULT_PEER_URL))
                    .iter()
                    .chain(initial_cluster.iter().flat_map(|m| m.peer_urls.iter())),
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
        let snapshot_count = match self.snapshot_count.trim() {
            "" => 10_000,
            s => s
                .parse::<u64>()
                .ok()
                .filter(|n| SNAPSHOT_COUNT.contains(n))
                .ok_or_else(|| ConfigError::SnapshotCount(s.to_string()))?,
        };
        let quota_bytes = match self.quota_backend_bytes.trim() {
            "" => DEFAULT_QUOTA_BYTES,
            s => s
                .parse::<u64>()
                .ok()
                .filter(|n| QUOTA_BYTES.contains(n))
                .ok_or_else(|| ConfigError::Quota(s.to_string()))?,
        };
        let cluster_state = match or(&self.initial_cluster_state, "new").as_str() {
            "new" => ClusterState::New,
            "existing" => ClusterState::Existing,
            other => return Err(ConfigError::State(other.to_string())),
        };
        Ok(ServerConfig {
            name,
            data_dir: self.data_dir.clone(),
            listen_client,
            advertise_client_urls,
            listen_peer,
            advertise_peer_urls,
            initial_cluster,
            cluster_state,
            cluster_token: if self.discovery.trim().is_empty() {
                or(&self.initial_cluster_token, DEFAULT_TOKEN)
            } else {
                // The discovery URL is the token (as in etcd): every member
                // found there computes the same ids.
                self.discovery.trim().trim_end_matches('/').to_string()
            },
            discovery: Some(self.discovery.trim().to_string()).filter(|d| !d.is_empty()),
            client_tls,
            peer_tls,
            snapshot_count,
            heartbeat_ms: 100,
            election_ms: 1000,
            min_free_bytes: 64 << 20,
            quota_bytes,
            cors: Cors::parse(&self.cors)?,
        })
    }
}

fn split_urls(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

fn any_https<'a>(urls: impl IntoIterator<Item = &'a String>) -> bool {
    urls.into_iter().any(|u| u.starts_with("https://"))
}

/// The TLS files of one side, checked: an `https://` URL needs a
/// certificate and key, `client-cert-auth` a trusted CA.
fn tls_files(
    peer: bool,
    [cert, key, ca]: [&String; 3],
    client_cert_auth: bool,
    https: bool,
    field: &'static str,
) -> Result<Option<TlsFiles>, ConfigError> {
    let path = |s: &String| Some(PathBuf::from(s.trim())).filter(|_| !s.trim().is_empty());
    let (ca_name, auth_name) = if peer {
        ("peer-trusted-ca-file", "peer-client-cert-auth")
    } else {
        ("trusted-ca-file", "client-cert-auth")
    };
    if client_cert_auth && path(ca).is_none() {
        return Err(ConfigError::Needs {
            field: auth_name,
            needs: ca_name,
        });
    }
    if !https {
        return Ok(None);
    }
    let (Some(cert_file), Some(key_file)) = (path(cert), path(key)) else {
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
        trusted_ca_file: path(ca),
        client_cert_auth,
    }))
}

/// `http://IP:PORT` or `https://IP:PORT` (a trailing `/` allowed) → the
/// socket address and whether it is TLS.
pub fn parse_url(field: &'static str, url: &str) -> Result<Listen, ConfigError> {
    let bad = || ConfigError::Url {
        field,
        url: url.to_string(),
    };
    let (scheme, rest) = keel_tls::Scheme::split(url).ok_or_else(bad)?;
    Ok(Listen {
        addr: rest.trim_end_matches('/').parse().map_err(|_| bad())?,
        tls: scheme == keel_tls::Scheme::Https,
    })
}

/// [`parse_url`]'s address.
pub fn url_addr(field: &'static str, url: &str) -> Result<SocketAddr, ConfigError> {
    parse_url(field, url).map(|l| l.addr)
}

fn parse_addrs(field: &'static str, s: &str) -> Result<Vec<Listen>, ConfigError> {
    let urls = split_urls(s);
    if urls.is_empty() {
        return Err(ConfigError::Url {
            field,
            url: s.to_string(),
        });
    }
    urls.iter().map(|u| parse_url(field, u)).collect()
}

/// `a=http://10.0.0.1:2380,b=http://10.0.0.2:2380`; a name may repeat to
/// list several peer URLs, as in etcd.
pub fn parse_cluster(s: &str) -> Result<Vec<InitialMember>, ConfigError> {
    let mut out: Vec<InitialMember> = Vec::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, url) = entry
            .split_once('=')
            .filter(|(n, u)| !n.is_empty() && !u.is_empty())
            .ok_or_else(|| ConfigError::ClusterEntry {
                entry: entry.to_string(),
            })?;
        url_addr("initial-cluster", url)?;
        match out.iter_mut().find(|m| m.name == name) {
            Some(m) => m.peer_urls.push(url.to_string()),
            None => out.push(InitialMember {
                name: name.to_string(),
                peer_urls: vec![url.to_string()],
            }),
        }
    }
    if let Some(m) = out.iter().find(|m| m.peer_urls.is_empty()) {
        return Err(ConfigError::ClusterEmpty {
            name: m.name.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawConfig {
        RawConfig {
            name: "a".into(),
            data_dir: "/tmp/x".into(),
            listen_client_urls: "http://127.0.0.1:2379".into(),
            listen_peer_urls: "http://127.0.0.1:2380".into(),
            initial_advertise_peer_urls: "http://127.0.0.1:2380".into(),
            initial_cluster: "a=http://127.0.0.1:2380,b=http://127.0.0.1:3380".into(),
            ..RawConfig::default()
        }
    }

    #[test]
    fn quota_is_checked() {
        assert_eq!(raw().check().unwrap().quota_bytes, DEFAULT_QUOTA_BYTES);
        let with = |s: &str| {
            RawConfig {
                quota_backend_bytes: s.into(),
                ..raw()
            }
            .check()
        };
        assert_eq!(with("65536").unwrap().quota_bytes, 65536);
        assert_eq!(with(" 8589934592 ").unwrap().quota_bytes, 8 << 30);
        for bad in ["65535", "8589934593", "1G", "-1", "x"] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.starts_with("quota-backend-bytes: "), "{e}");
        }
    }

    #[test]
    fn snapshot_count_is_checked() {
        assert_eq!(raw().check().unwrap().snapshot_count, 10_000);
        let with = |s: &str| {
            RawConfig {
                snapshot_count: s.into(),
                ..raw()
            }
            .check()
        };
        assert_eq!(with("500").unwrap().snapshot_count, 500);
        for bad in ["0", "9", "-1", "1e3", "lots", "10000001"] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.starts_with("snapshot-count: "), "{e}");
        }
    }

    #[test]
    fn defaults_make_a_lone_member() {
        let c = RawConfig::default().check().unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.initial_cluster.len(), 1);
        assert_eq!(
            c.listen_client,
            vec![Listen {
                addr: "127.0.0.1:2379".parse().unwrap(),
                tls: false
            }]
        );
        assert_eq!((c.client_tls, c.peer_tls), (None, None));
        assert_eq!(c.advertise_client_urls, vec![DEFAULT_CLIENT_URL]);
        assert_eq!(c.cluster_state, ClusterState::New);
    }

    #[test]
    fn cluster_is_parsed_and_checked() {
        let c = raw().check().unwrap();
        assert_eq!(c.initial_cluster[1].name, "b");
        let mut r = raw();
        r.name = "c".into();
        assert_eq!(
            r.check().unwrap_err(),
            ConfigError::SelfMissing { name: "c".into() }
        );
        let mut r = raw();
        r.initial_cluster = "a".into();
        assert!(matches!(r.check(), Err(ConfigError::ClusterEntry { .. })));
        let mut r = raw();
        r.initial_advertise_peer_urls = "http://127.0.0.1:9999".into();
        assert!(matches!(r.check(), Err(ConfigError::SelfMismatch { .. })));
        let mut r = raw();
        r.listen_client_urls = "https://x:1".into();
        assert_eq!(
            r.check().unwrap_err().to_string(),
            "listen-client-urls: \"https://x:1\" is not an http://IP:PORT or https://IP:PORT URL"
        );
        let mut r = raw();
        r.initial_cluster_state = "old".into();
        assert_eq!(r.check().unwrap_err(), ConfigError::State("old".into()));
    }

    #[test]
    fn https_urls_need_their_files() {
        let mut r = raw();
        r.listen_client_urls = "https://127.0.0.1:2379".into();
        assert_eq!(
            r.check().unwrap_err().to_string(),
            "listen-client-urls: https URLs need cert-file and key-file"
        );
        r.cert_file = "/c.pem".into();
        r.key_file = "/k.pem".into();
        let c = r.check().unwrap();
        assert!(c.listen_client[0].tls);
        let t = c.client_tls.unwrap();
        assert!(t.server().client_ca.is_none());
        r.client_cert_auth = true;
        assert_eq!(
            r.check().unwrap_err().to_string(),
            "client-cert-auth: needs trusted-ca-file"
        );
        r.trusted_ca_file = "/ca.pem".into();
        let t = r.check().unwrap().client_tls.unwrap();
        assert_eq!(t.server().client_ca.unwrap().0, "trusted-ca-file");

        let mut r = raw();
        r.initial_cluster = "a=http://127.0.0.1:2380,b=https://127.0.0.1:3380".into();
        assert!(r
            .check()
            .unwrap_err()
            .to_string()
            .contains("peer-cert-file and peer-key-file"));
        r.peer_cert_file = "/p.pem".into();
        r.peer_key_file = "/pk.pem".into();
        assert!(r
            .check()
            .unwrap_err()
            .to_string()
            .contains("peer-trusted-ca-file"));
        r.peer_trusted_ca_file = "/ca.pem".into();
        let t = r.check().unwrap().peer_tls.unwrap();
        assert_eq!(t.server().cert.0, "peer-cert-file");
        let c = t.client().unwrap();
        assert_eq!(c.ca.0, "peer-trusted-ca-file");
    }

    #[test]
    fn cors_is_parsed_once_into_a_value() {
        assert_eq!(Cors::parse("").unwrap(), Cors::Off);
        assert_eq!(Cors::parse("*").unwrap(), Cors::Any);
        assert_eq!(Cors::parse("https://a.example,*").unwrap(), Cors::Any);
        let c = Cors::parse("https://a.example, http://B.example:8080").unwrap();
        assert_eq!(
            c,
            Cors::Origins(vec![
                "https://a.example".into(),
                "http://b.example:8080".into()
            ])
        );
        assert_eq!(
            c.allow(Some("https://a.example")),
            Some("https://a.example")
        );
        assert_eq!(c.allow(Some("https://c.example")), None);
        assert_eq!(c.allow(None), None);
        assert_eq!(Cors::Off.allow(Some("https://a.example")), None);
        assert_eq!(Cors::Any.allow(None), Some("*"));
        for bad in ["a.example", "https://", "https://a.example/path", "ftp://x"] {
            assert_eq!(
                Cors::parse(bad),
                Err(ConfigError::Cors(bad.into())),
                "{bad}"
            );
        }
        let mut r = raw();
        r.cors = "nope".into();
        assert_eq!(
            r.check().unwrap_err().to_string(),
            "cors: \"nope\" is not \"*\" or a list of http:// and https:// origins"
        );
        assert_eq!(raw().check().unwrap().cors, Cors::Off);
    }

    #[test]
    fn the_peer_port_is_for_clusters_of_more_than_one() {
        assert!(raw().check().unwrap().peers_at_start());
        let lone = RawConfig::default().check().unwrap();
        assert!(!lone.peers_at_start());
        let joining = RawConfig {
            initial_cluster_state: "existing".into(),
            ..RawConfig::default()
        };
        assert!(joining.check().unwrap().peers_at_start());
    }

    #[test]
    fn exposure_is_warned_about_one_line_each() {
        // Loopback only, peer port closed: nothing to say.
        let c = RawConfig::default().check().unwrap();
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
        let mut r = RawConfig {
            listen_client_urls: "http://127.0.0.1:2379,http://0.0.0.0:2379".into(),
            ..RawConfig::default()
        };
        let w = r.check().unwrap().exposure_warnings(false);
        assert_eq!(
            w,
            vec!["kv: client port 0.0.0.0:2379 listens beyond loopback without client-cert-auth: whoever reaches it can read and write the store"]
        );
        r.listen_client_urls = "https://10.0.0.1:2379".into();
        r.cert_file = "/c.pem".into();
        r.key_file = "/k.pem".into();
        assert_eq!(r.check().unwrap().exposure_warnings(false).len(), 1);
        r.trusted_ca_file = "/ca.pem".into();
        r.client_cert_auth = true;
        assert!(r.check().unwrap().exposure_warnings(false).is_empty());
        // Peer TLS without member certificates is still said.
        let mut r = raw();
        r.listen_peer_urls = "https://127.0.0.1:2380".into();
        r.initial_advertise_peer_urls = "https://127.0.0.1:2380".into();
        r.initial_cluster = "a=https://127.0.0.1:2380,b=https://127.0.0.1:3380".into();
        r.peer_cert_file = "/p.pem".into();
        r.peer_key_file = "/pk.pem".into();
        r.peer_trusted_ca_file = "/ca.pem".into();
        let w = r.check().unwrap().exposure_warnings(true);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("peer-client-cert-auth is off"), "{w:?}");
        r.peer_client_cert_auth = true;
        assert!(r.check().unwrap().exposure_warnings(true).is_empty());
    }
}
