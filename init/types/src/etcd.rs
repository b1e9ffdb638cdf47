//! etcd's settings, as the `coreos.etcd2` keys and etcd's flags carry them
//! (both use the same names), each parsed once into a value.
//!
//! 1. Each setting's text becomes its type here: [`MemberName`], [`Url`],
//!    [`UrlList`], [`InitialCluster`], [`ClusterState`], [`Cors`],
//!    [`SnapshotCount`], [`QuotaBytes`]; booleans as Go's `ParseBool`.
//! 2. [`EtcdSettings`] holds what was given, by key: the cloud-config
//!    validator and keel-etcd's flag parser fill it through one table
//!    ([`EtcdSettings::set`]), so a key means the same in both.
//! 3. Keys etcd 2 and etcd 0.4 deprecated map onto the current ones through
//!    one table ([`RENAMED`]), for the validator (`coreos.etcd`) and for
//!    keel-etcd's command line alike.
//! 4. Defaults are not here: keel (a member named after its host, data on
//!    STATE) and keel-etcd (etcd's own) fill what was not given, and check
//!    the settings against each other (the member in its initial cluster,
//!    https with its certificate files).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::str::FromStr;

use crate::Invalid;

/// Implements `FromStr` through `TryFrom<&str>`.
macro_rules! from_str {
    ($($t:ty),*) => {$(
        impl FromStr for $t {
            type Err = Invalid;
            fn from_str(s: &str) -> Result<$t, Invalid> {
                <$t>::try_from(s)
            }
        }
    )*};
}

from_str!(
    MemberName,
    Url,
    UrlList,
    InitialCluster,
    ClusterState,
    Cors,
    SnapshotCount,
    QuotaBytes
);

/// A member's name (`name`, and the names in `initial-cluster`): not empty,
/// and without the `,` and `=` that `initial-cluster` separates with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberName(String);

impl MemberName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for MemberName {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<MemberName, Invalid> {
        if s.is_empty() || s.contains([',', '=']) {
            return Err(Invalid::new(format!("{s:?} is not a member name")));
        }
        Ok(MemberName(s.to_string()))
    }
}

impl From<MemberName> for String {
    fn from(n: MemberName) -> String {
        n.0
    }
}

impl fmt::Display for MemberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a URL speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

/// A member's client or peer URL: `http://IP:PORT` or `https://IP:PORT`
/// (a trailing `/` is accepted and dropped). An address, not a host name:
/// a member listens on it, and the members compare them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Url {
    pub scheme: Scheme,
    pub addr: SocketAddr,
}

impl Url {
    /// etcd's default client URL, `http://127.0.0.1:2379`.
    pub const DEFAULT_CLIENT: Url = Url::http(Ipv4Addr::LOCALHOST, 2379);
    /// etcd's default peer URL, `http://127.0.0.1:2380`.
    pub const DEFAULT_PEER: Url = Url::http(Ipv4Addr::LOCALHOST, 2380);

    const fn http(ip: Ipv4Addr, port: u16) -> Url {
        Url {
            scheme: Scheme::Http,
            addr: SocketAddr::V4(SocketAddrV4::new(ip, port)),
        }
    }

    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::Https
    }
}

fn not_a_url(s: &str) -> Invalid {
    Invalid::new(format!(
        "{s:?} is not an http://IP:PORT or https://IP:PORT URL"
    ))
}

impl TryFrom<&str> for Url {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<Url, Invalid> {
        let bad = || not_a_url(s);
        let (scheme, rest) = if let Some(rest) = s.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = s.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else {
            return Err(bad());
        };
        let addr = rest.trim_end_matches('/').parse().map_err(|_| bad())?;
        Ok(Url { scheme, addr })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.addr)
    }
}

/// One or more URLs separated by commas (`listen-client-urls`, ...);
/// spaces around each are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UrlList(Vec<Url>);

impl UrlList {
    pub fn one(u: Url) -> UrlList {
        UrlList(vec![u])
    }

    pub fn urls(&self) -> &[Url] {
        &self.0
    }

    pub fn any_https(&self) -> bool {
        self.0.iter().any(Url::is_https)
    }

    /// Each URL as text, as etcd shows them.
    pub fn strings(&self) -> Vec<String> {
        self.0.iter().map(Url::to_string).collect()
    }
}

impl TryFrom<&str> for UrlList {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<UrlList, Invalid> {
        let urls = s
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(Url::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err(not_a_url(s));
        }
        Ok(UrlList(urls))
    }
}

impl fmt::Display for UrlList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, u) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{u}")?;
        }
        Ok(())
    }
}

/// One member of `initial-cluster`, with every peer URL listed for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: MemberName,
    pub peer_urls: UrlList,
}

/// `initial-cluster`: `NAME=URL` separated by commas, as
/// `a=http://10.0.0.1:2380,b=http://10.0.0.2:2380`. A name may repeat to
/// list several peer URLs, as in etcd; its URLs are kept together, at the
/// name's first place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialCluster(Vec<InitialMember>);

impl InitialCluster {
    /// A cluster of one: `name` at `urls`.
    pub fn of_one(name: MemberName, urls: UrlList) -> InitialCluster {
        InitialCluster(vec![InitialMember {
            name,
            peer_urls: urls,
        }])
    }

    pub fn members(&self) -> &[InitialMember] {
        &self.0
    }
}

impl TryFrom<&str> for InitialCluster {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<InitialCluster, Invalid> {
        let not_an_entry = |e: &str| Invalid::new(format!("{e:?} is not NAME=URL"));
        let mut out: Vec<InitialMember> = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, url) = entry
                .split_once('=')
                .filter(|(n, u)| !n.is_empty() && !u.is_empty())
                .ok_or_else(|| not_an_entry(entry))?;
            let name = MemberName::try_from(name).map_err(|_| not_an_entry(entry))?;
            let url = Url::try_from(url)?;
            match out.iter_mut().find(|m| m.name == name) {
                Some(m) => m.peer_urls.0.push(url),
                None => out.push(InitialMember {
                    name,
                    peer_urls: UrlList::one(url),
                }),
            }
        }
        if out.is_empty() {
            return Err(not_an_entry(s));
        }
        Ok(InitialCluster(out))
    }
}

impl fmt::Display for InitialCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for m in &self.0 {
            for u in m.peer_urls.urls() {
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                write!(f, "{}={u}", m.name)?;
            }
        }
        Ok(())
    }
}

/// `initial-cluster-state`: `new` bootstraps a cluster from
/// `initial-cluster`; `existing` joins one that already runs (after
/// `POST /v2/members` added this member).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterState {
    #[default]
    New,
    Existing,
}

impl TryFrom<&str> for ClusterState {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<ClusterState, Invalid> {
        match s {
            "new" => Ok(ClusterState::New),
            "existing" => Ok(ClusterState::Existing),
            _ => Err(Invalid::new(format!("{s:?} is not new or existing"))),
        }
    }
}

impl fmt::Display for ClusterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClusterState::New => "new",
            ClusterState::Existing => "existing",
        })
    }
}

/// Which web pages' scripts may read the client API's answers (etcd's
/// `cors`): the `Access-Control-Allow-Origin` header. `*`, or origins
/// separated by commas; empty is [`Cors::Off`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Cors {
    /// No CORS header: browsers keep pages from reading the answers.
    #[default]
    Off,
    /// `*`: any origin.
    Any,
    /// These origins (`scheme://host[:port]`, lower case), each answered
    /// with itself.
    Origins(Vec<String>),
}

impl Cors {
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

impl TryFrom<&str> for Cors {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<Cors, Invalid> {
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
                return Err(Invalid::new(format!(
                    "{s:?} is not \"*\" or a list of http:// and https:// origins"
                )));
            }
            out.push(o.to_ascii_lowercase());
        }
        Ok(Cors::Origins(out))
    }
}

impl fmt::Display for Cors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cors::Off => Ok(()),
            Cors::Any => f.write_str("*"),
            Cors::Origins(list) => f.write_str(&list.join(",")),
        }
    }
}

/// A whole number in `range`, spaces around it allowed.
fn number_in(s: &str, range: &std::ops::RangeInclusive<u64>, what: &str) -> Result<u64, Invalid> {
    let t = s.trim();
    t.parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            Invalid::new(format!(
                "{t:?} is not a whole number {what}from {} to {}",
                range.start(),
                range.end()
            ))
        })
}

/// The fewest and most entries between snapshots `snapshot-count` accepts.
pub const SNAPSHOT_COUNT: std::ops::RangeInclusive<u64> = 10..=10_000_000;

/// `snapshot-count`: entries applied since the last snapshot that trigger
/// the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SnapshotCount(u64);

impl SnapshotCount {
    pub fn get(self) -> u64 {
        self.0
    }
}

impl TryFrom<&str> for SnapshotCount {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<SnapshotCount, Invalid> {
        number_in(s, &SNAPSHOT_COUNT, "").map(SnapshotCount)
    }
}

impl fmt::Display for SnapshotCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The smallest and largest quota `quota-backend-bytes` accepts (etcd
/// suggests at most 8 GiB).
pub const QUOTA_BYTES: std::ops::RangeInclusive<u64> = (64 << 10)..=(8 << 30);

/// `quota-backend-bytes`: the store's size past which a member raises the
/// NOSPACE alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct QuotaBytes(u64);

impl QuotaBytes {
    pub fn get(self) -> u64 {
        self.0
    }
}

impl TryFrom<&str> for QuotaBytes {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<QuotaBytes, Invalid> {
        number_in(s, &QUOTA_BYTES, "of bytes ").map(QuotaBytes)
    }
}

impl fmt::Display for QuotaBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A boolean as etcd (Go's `strconv.ParseBool`) reads one.
pub fn parse_bool(s: &str) -> Result<bool, Invalid> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(Invalid::new(format!("{s:?} is not true or false"))),
    }
}

/// A key etcd deprecated, and what it became.
#[derive(Debug, PartialEq, Eq)]
pub struct Renamed {
    pub old: &'static str,
    pub new: &'static str,
    /// Put before the value: etcd 0.4's addresses are `IP:PORT`, the keys
    /// they became take URLs.
    pub prefix: &'static str,
    /// A boolean key the old one also turned on: etcd 2's `ca-file` asked
    /// clients for certificates that CA signed.
    pub implies: Option<&'static str>,
}

/// etcd 2's deprecated TLS keys and etcd 0.4's addresses (what etcd 2 made
/// of them), for `coreos.etcd`/`coreos.etcd2` and keel-etcd's flags.
pub const RENAMED: &[Renamed] = &[
    Renamed {
        old: "addr",
        new: "advertise-client-urls",
        prefix: "http://",
        implies: None,
    },
    Renamed {
        old: "peer-addr",
        new: "initial-advertise-peer-urls",
        prefix: "http://",
        implies: None,
    },
    Renamed {
        old: "bind-addr",
        new: "listen-client-urls",
        prefix: "http://",
        implies: None,
    },
    Renamed {
        old: "peer-bind-addr",
        new: "listen-peer-urls",
        prefix: "http://",
        implies: None,
    },
    Renamed {
        old: "ca-file",
        new: "trusted-ca-file",
        prefix: "",
        implies: Some("client-cert-auth"),
    },
    Renamed {
        old: "peer-ca-file",
        new: "peer-trusted-ca-file",
        prefix: "",
        implies: Some("peer-client-cert-auth"),
    },
];

impl Renamed {
    pub fn find(old: &str) -> Option<&'static Renamed> {
        RENAMED.iter().find(|r| r.old == old)
    }

    /// What the old key is now, in words: `listen-client-urls (as
    /// http://ADDRESS)`, `trusted-ca-file with client-cert-auth`.
    pub fn replacement(&self) -> String {
        let mut s = self.new.to_string();
        if !self.prefix.is_empty() {
            s.push_str(&format!(" (as {}ADDRESS)", self.prefix));
        }
        if let Some(b) = self.implies {
            s.push_str(&format!(" with {b}"));
        }
        s
    }
}

/// Why a setting's value was refused: the key as given, and the value's
/// problem (`snapshot-count: "5" is not a whole number from 10 to 10000000`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {why}")]
pub struct SettingError {
    pub key: String,
    pub why: Invalid,
}

/// What [`EtcdSettings::set`] did with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Set,
    /// A deprecated key, set as its replacement.
    Renamed(&'static Renamed),
    /// A key keel does not implement: named in [`EtcdSettings::unsupported`].
    Unsupported,
}

/// The etcd settings given (in a cloud-config or on keel-etcd's command
/// line), each typed; `None` (false, [`Cors::Off`]) where none was given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EtcdSettings {
    pub name: Option<MemberName>,
    pub data_dir: Option<PathBuf>,
    pub listen_client_urls: Option<UrlList>,
    pub advertise_client_urls: Option<UrlList>,
    pub listen_peer_urls: Option<UrlList>,
    pub initial_advertise_peer_urls: Option<UrlList>,
    pub initial_cluster: Option<InitialCluster>,
    pub initial_cluster_state: Option<ClusterState>,
    pub initial_cluster_token: Option<String>,
    /// An etcd discovery URL: the initial cluster is found there instead of
    /// in `initial_cluster`.
    pub discovery: Option<Discovery>,
    /// etcd's TLS keys, client side then peer side.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    pub peer_cert_file: Option<PathBuf>,
    pub peer_key_file: Option<PathBuf>,
    pub peer_trusted_ca_file: Option<PathBuf>,
    pub peer_client_cert_auth: bool,
    pub snapshot_count: Option<SnapshotCount>,
    pub cors: Cors,
    pub quota_backend_bytes: Option<QuotaBytes>,
    /// Keys given that keel does not implement (proxy, auto-tls, tuning
    /// knobs), each once, in the order given.
    pub unsupported: Vec<String>,
}

/// An etcd discovery URL (`discovery`), as keel's KV can use it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Discovery {
    /// A discovery service keel's KV reaches: an etcd at `http://IP:PORT`,
    /// the cluster's directory under `/v2/keys/`.
    Etcd {
        /// The URL without a trailing `/`: also the cluster's token.
        url: String,
        addr: SocketAddr,
        /// `/v2/keys/...`, without a trailing `/`.
        path: String,
    },
    /// Any other http(s) URL, kept as written: CoreOS's public
    /// `https://discovery.etcd.io/TOKEN` needs a name lookup, TLS and the
    /// internet. The config is accepted (its other settings apply); the
    /// member cannot start from it, and says so.
    Unusable { url: String },
}

impl Discovery {
    /// The URL as given (an etcd's without its trailing `/`).
    pub fn url(&self) -> &str {
        match self {
            Discovery::Etcd { url, .. } | Discovery::Unusable { url } => url,
        }
    }
}

impl TryFrom<&str> for Discovery {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<Discovery, Invalid> {
        let url = s.trim();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .filter(|r| !r.is_empty() && !r.contains(char::is_whitespace))
            .ok_or_else(|| Invalid(format!("{s:?} is not an http:// or https:// URL")))?;
        let etcd = url.starts_with("http://").then(|| {
            let (host, path) = rest.split_once('/')?;
            let addr = Url::try_from(format!("http://{host}").as_str()).ok()?.addr;
            let path = format!("/{}", path.trim_end_matches('/'));
            path.starts_with("/v2/keys/").then_some((addr, path))
        });
        Ok(match etcd.flatten() {
            Some((addr, path)) => Discovery::Etcd {
                url: url.trim_end_matches('/').to_string(),
                addr,
                path,
            },
            None => Discovery::Unusable {
                url: url.to_string(),
            },
        })
    }
}

from_str!(Discovery);

impl fmt::Display for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url())
    }
}

/// One field of [`EtcdSettings`], by its type.
enum Slot<'a> {
    Name(&'a mut Option<MemberName>),
    Urls(&'a mut Option<UrlList>),
    Cluster(&'a mut Option<InitialCluster>),
    State(&'a mut Option<ClusterState>),
    Text(&'a mut Option<String>),
    Discovery(&'a mut Option<Discovery>),
    Path(&'a mut Option<PathBuf>),
    Flag(&'a mut bool),
    Snapshot(&'a mut Option<SnapshotCount>),
    Quota(&'a mut Option<QuotaBytes>),
    Cors(&'a mut Cors),
}

/// `Some(t)` for a text with something in it, trimmed.
fn text(s: &str) -> Option<&str> {
    Some(s.trim()).filter(|t| !t.is_empty())
}

impl Slot<'_> {
    fn set(self, s: &str) -> Result<(), Invalid> {
        match self {
            Slot::Name(f) => *f = Some(s.try_into()?),
            Slot::Urls(f) => *f = Some(s.try_into()?),
            Slot::Cluster(f) => *f = Some(s.try_into()?),
            Slot::State(f) => *f = Some(s.try_into()?),
            Slot::Text(f) => *f = text(s).map(str::to_string),
            Slot::Discovery(f) => *f = text(s).map(Discovery::try_from).transpose()?,
            Slot::Path(f) => *f = text(s).map(PathBuf::from),
            Slot::Flag(f) => *f = parse_bool(s)?,
            Slot::Snapshot(f) => *f = Some(s.try_into()?),
            Slot::Quota(f) => *f = Some(s.try_into()?),
            Slot::Cors(f) => *f = s.try_into()?,
        }
        Ok(())
    }

    fn clear(self) {
        match self {
            Slot::Name(f) => *f = None,
            Slot::Urls(f) => *f = None,
            Slot::Cluster(f) => *f = None,
            Slot::State(f) => *f = None,
            Slot::Text(f) => *f = None,
            Slot::Discovery(f) => *f = None,
            Slot::Path(f) => *f = None,
            Slot::Flag(f) => *f = false,
            Slot::Snapshot(f) => *f = None,
            Slot::Quota(f) => *f = None,
            Slot::Cors(f) => *f = Cors::Off,
        }
    }

    /// The value as its text, when one was given.
    fn shown(self) -> Option<String> {
        fn show<T: fmt::Display>(v: &Option<T>) -> Option<String> {
            v.as_ref().map(T::to_string)
        }
        match self {
            Slot::Name(f) => show(f),
            Slot::Urls(f) => show(f),
            Slot::Cluster(f) => show(f),
            Slot::State(f) => show(f),
            Slot::Text(f) => f.clone(),
            Slot::Discovery(f) => show(f),
            Slot::Path(f) => f.as_ref().map(|p| p.display().to_string()),
            Slot::Flag(f) => f.then(|| "true".to_string()),
            Slot::Snapshot(f) => show(f),
            Slot::Quota(f) => show(f),
            Slot::Cors(f) => (*f != Cors::Off).then(|| f.to_string()),
        }
    }
}

impl EtcdSettings {
    /// The keys keel implements, etcd's names.
    pub const KEYS: &'static [&'static str] = &[
        "name",
        "data-dir",
        "listen-client-urls",
        "advertise-client-urls",
        "listen-peer-urls",
        "initial-advertise-peer-urls",
        "initial-cluster",
        "initial-cluster-state",
        "initial-cluster-token",
        "discovery",
        "cert-file",
        "key-file",
        "trusted-ca-file",
        "client-cert-auth",
        "peer-cert-file",
        "peer-key-file",
        "peer-trusted-ca-file",
        "peer-client-cert-auth",
        "snapshot-count",
        "cors",
        "quota-backend-bytes",
    ];

    /// The one table from a key to its field.
    fn slot(&mut self, key: &str) -> Option<Slot<'_>> {
        Some(match key {
            "name" => Slot::Name(&mut self.name),
            "data-dir" => Slot::Path(&mut self.data_dir),
            "listen-client-urls" => Slot::Urls(&mut self.listen_client_urls),
            "advertise-client-urls" => Slot::Urls(&mut self.advertise_client_urls),
            "listen-peer-urls" => Slot::Urls(&mut self.listen_peer_urls),
            "initial-advertise-peer-urls" => Slot::Urls(&mut self.initial_advertise_peer_urls),
            "initial-cluster" => Slot::Cluster(&mut self.initial_cluster),
            "initial-cluster-state" => Slot::State(&mut self.initial_cluster_state),
            "initial-cluster-token" => Slot::Text(&mut self.initial_cluster_token),
            "discovery" => Slot::Discovery(&mut self.discovery),
            "cert-file" => Slot::Path(&mut self.cert_file),
            "key-file" => Slot::Path(&mut self.key_file),
            "trusted-ca-file" => Slot::Path(&mut self.trusted_ca_file),
            "client-cert-auth" => Slot::Flag(&mut self.client_cert_auth),
            "peer-cert-file" => Slot::Path(&mut self.peer_cert_file),
            "peer-key-file" => Slot::Path(&mut self.peer_key_file),
            "peer-trusted-ca-file" => Slot::Path(&mut self.peer_trusted_ca_file),
            "peer-client-cert-auth" => Slot::Flag(&mut self.peer_client_cert_auth),
            "snapshot-count" => Slot::Snapshot(&mut self.snapshot_count),
            "cors" => Slot::Cors(&mut self.cors),
            "quota-backend-bytes" => Slot::Quota(&mut self.quota_backend_bytes),
            _ => return None,
        })
    }

    /// Whether `key` (implemented or renamed) is a boolean: a flag that
    /// needs no value.
    pub fn is_bool(key: &str) -> bool {
        let key = Renamed::find(key).map_or(key, |r| r.new);
        matches!(EtcdSettings::default().slot(key), Some(Slot::Flag(_)))
    }

    /// Sets `key` from its text, replacing an earlier value (the last one
    /// given wins, as with etcd's flags). A deprecated key sets its
    /// replacement; a key keel does not implement is only named in
    /// [`EtcdSettings::unsupported`].
    pub fn set(&mut self, key: &str, value: &str) -> Result<Applied, SettingError> {
        let err = |why| SettingError {
            key: key.to_string(),
            why,
        };
        if let Some(r) = Renamed::find(key) {
            let value = format!("{}{value}", r.prefix);
            if let Some(slot) = self.slot(r.new) {
                slot.set(&value).map_err(err)?;
            }
            if let Some(Slot::Flag(b)) = r.implies.and_then(|k| self.slot(k)) {
                *b = true;
            }
            return Ok(Applied::Renamed(r));
        }
        match self.slot(key) {
            Some(slot) => slot.set(value).map(|()| Applied::Set).map_err(err),
            None => {
                if !self.unsupported.iter().any(|k| k == key) {
                    self.unsupported.push(key.to_string());
                }
                Ok(Applied::Unsupported)
            }
        }
    }

    /// Forgets `key` (or its replacement): the default applies again.
    pub fn unset(&mut self, key: &str) {
        let key = Renamed::find(key).map_or(key, |r| r.new);
        match self.slot(key) {
            Some(slot) => slot.clear(),
            None => self.unsupported.retain(|k| k != key),
        }
    }

    /// Each setting given, as `(key, text)` in [`EtcdSettings::KEYS`]
    /// order; setting them again gives the same settings (the keys keel
    /// does not implement are names only and not among them).
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut copy = self.clone();
        EtcdSettings::KEYS
            .iter()
            .filter_map(|k| Some((*k, copy.slot(k)?.shown()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn invalid(s: &str) -> Invalid {
        Invalid::new(s)
    }

    #[test]
    fn urls_are_addresses_with_a_scheme() {
        let u = Url::try_from("https://10.0.0.1:2379/").unwrap();
        assert!(u.is_https());
        assert_eq!(u.addr, "10.0.0.1:2379".parse().unwrap());
        assert_eq!(u.to_string(), "https://10.0.0.1:2379");
        assert_eq!(
            Url::try_from("http://[::1]:2380").unwrap().to_string(),
            "http://[::1]:2380"
        );
        assert_eq!(Url::DEFAULT_CLIENT.to_string(), "http://127.0.0.1:2379");
        assert_eq!(Url::DEFAULT_PEER.to_string(), "http://127.0.0.1:2380");
        for bad in [
            "https://x:1",
            "0.0.0.0:2379",
            "ftp://1.2.3.4:5",
            "http://1.2.3.4",
        ] {
            assert_eq!(
                Url::try_from(bad),
                Err(invalid(&format!(
                    "{bad:?} is not an http://IP:PORT or https://IP:PORT URL"
                )))
            );
        }
    }

    #[test]
    fn url_lists_name_the_url_that_is_wrong() {
        let l = UrlList::try_from(" http://127.0.0.1:2379 , https://0.0.0.0:2379,").unwrap();
        assert_eq!(l.urls().len(), 2);
        assert!(l.any_https());
        assert_eq!(l.to_string(), "http://127.0.0.1:2379,https://0.0.0.0:2379");
        assert_eq!(
            UrlList::try_from("http://127.0.0.1:1,http://host:2").unwrap_err(),
            invalid("\"http://host:2\" is not an http://IP:PORT or https://IP:PORT URL")
        );
        assert_eq!(
            UrlList::try_from(" , ").unwrap_err(),
            invalid("\" , \" is not an http://IP:PORT or https://IP:PORT URL")
        );
    }

    #[test]
    fn an_initial_cluster_keeps_each_members_urls_together() {
        let c = InitialCluster::try_from(
            "a=http://10.0.0.1:2380, b=http://10.0.0.2:2380,a=http://10.0.0.1:2381",
        )
        .unwrap();
        assert_eq!(c.members().len(), 2);
        assert_eq!(c.members()[0].name.as_str(), "a");
        assert_eq!(c.members()[0].peer_urls.urls().len(), 2);
        assert_eq!(
            c.to_string(),
            "a=http://10.0.0.1:2380,a=http://10.0.0.1:2381,b=http://10.0.0.2:2380"
        );
        for (bad, why) in [
            ("a", "\"a\" is not NAME=URL"),
            (
                "=http://10.0.0.1:2380",
                "\"=http://10.0.0.1:2380\" is not NAME=URL",
            ),
            ("a=", "\"a=\" is not NAME=URL"),
            ("", "\"\" is not NAME=URL"),
            (
                "a=http://x:1",
                "\"http://x:1\" is not an http://IP:PORT or https://IP:PORT URL",
            ),
        ] {
            assert_eq!(InitialCluster::try_from(bad), Err(invalid(why)), "{bad}");
        }
    }

    #[test]
    fn names_states_and_numbers_say_what_they_take() {
        assert_eq!(MemberName::try_from("node-01").unwrap().as_str(), "node-01");
        for bad in ["", "a,b", "a=b"] {
            assert_eq!(
                MemberName::try_from(bad),
                Err(invalid(&format!("{bad:?} is not a member name")))
            );
        }
        assert_eq!(
            ClusterState::try_from("existing"),
            Ok(ClusterState::Existing)
        );
        assert_eq!(
            ClusterState::try_from("old"),
            Err(invalid("\"old\" is not new or existing"))
        );
        assert_eq!(SnapshotCount::try_from(" 500 ").unwrap().get(), 500);
        for bad in ["0", "9", "-1", "1e3", "lots", "10000001"] {
            assert_eq!(
                SnapshotCount::try_from(bad),
                Err(invalid(&format!(
                    "{bad:?} is not a whole number from 10 to 10000000"
                )))
            );
        }
        assert_eq!(QuotaBytes::try_from("65536").unwrap().get(), 65536);
        assert_eq!(QuotaBytes::try_from(" 8589934592 ").unwrap().get(), 8 << 30);
        for bad in ["65535", "8589934593", "1G", "-1", "x"] {
            assert_eq!(
                QuotaBytes::try_from(bad),
                Err(invalid(&format!(
                    "{bad:?} is not a whole number of bytes from 65536 to 8589934592"
                )))
            );
        }
        assert_eq!(parse_bool("True"), Ok(true));
        assert_eq!(parse_bool("0"), Ok(false));
        assert_eq!(
            parse_bool("yes"),
            Err(invalid("\"yes\" is not true or false"))
        );
    }

    #[test]
    fn cors_is_parsed_once_into_a_value() {
        assert_eq!(Cors::try_from(""), Ok(Cors::Off));
        assert_eq!(Cors::try_from("*"), Ok(Cors::Any));
        assert_eq!(Cors::try_from("https://a.example,*"), Ok(Cors::Any));
        let c = Cors::try_from("https://a.example, http://B.example:8080").unwrap();
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
                Cors::try_from(bad),
                Err(invalid(&format!(
                    "{bad:?} is not \"*\" or a list of http:// and https:// origins"
                ))),
                "{bad}"
            );
        }
    }

    #[test]
    fn settings_are_set_by_key_and_the_last_value_wins() {
        let mut s = EtcdSettings::default();
        assert_eq!(s.set("name", "a"), Ok(Applied::Set));
        assert_eq!(s.set("name", "b"), Ok(Applied::Set));
        assert_eq!(s.name.as_ref().map(MemberName::as_str), Some("b"));
        assert_eq!(s.set("client-cert-auth", "true"), Ok(Applied::Set));
        assert!(s.client_cert_auth);
        assert_eq!(
            s.set("client-cert-auth", "yes").unwrap_err().to_string(),
            "client-cert-auth: \"yes\" is not true or false"
        );
        assert_eq!(
            s.set("snapshot-count", "5").unwrap_err().to_string(),
            "snapshot-count: \"5\" is not a whole number from 10 to 10000000"
        );
        assert_eq!(s.set("auto-tls", "true"), Ok(Applied::Unsupported));
        assert_eq!(s.set("auto-tls", "false"), Ok(Applied::Unsupported));
        assert_eq!(s.unsupported, ["auto-tls"]);
        s.set("cert-file", " /etc/ssl/x.pem ").unwrap();
        assert_eq!(s.cert_file, Some(PathBuf::from("/etc/ssl/x.pem")));
        s.set("cert-file", "").unwrap();
        assert_eq!(s.cert_file, None);
        s.unset("name");
        s.unset("auto-tls");
        assert_eq!((s.name.clone(), s.unsupported.len()), (None, 0));
        assert!(EtcdSettings::is_bool("peer-client-cert-auth"));
        assert!(!EtcdSettings::is_bool("ca-file") && !EtcdSettings::is_bool("name"));
    }

    #[test]
    fn deprecated_keys_set_their_replacements() {
        let mut s = EtcdSettings::default();
        let r = s.set("addr", "172.17.8.101:4001").unwrap();
        assert_eq!(r, Applied::Renamed(Renamed::find("addr").unwrap()));
        assert_eq!(
            s.advertise_client_urls.as_ref().unwrap().to_string(),
            "http://172.17.8.101:4001"
        );
        s.set("peer-bind-addr", "0.0.0.0:7001").unwrap();
        assert_eq!(
            s.listen_peer_urls.as_ref().unwrap().to_string(),
            "http://0.0.0.0:7001"
        );
        assert_eq!(
            s.set("peer-addr", "node:7001").unwrap_err().to_string(),
            "peer-addr: \"http://node:7001\" is not an http://IP:PORT or https://IP:PORT URL"
        );
        s.set("ca-file", "/ca.pem").unwrap();
        assert_eq!(s.trusted_ca_file, Some(PathBuf::from("/ca.pem")));
        assert!(s.client_cert_auth && !s.peer_client_cert_auth);
        s.set("peer-ca-file", "/pca.pem").unwrap();
        assert!(s.peer_client_cert_auth);
        assert_eq!(
            Renamed::find("ca-file").unwrap().replacement(),
            "trusted-ca-file with client-cert-auth"
        );
        assert_eq!(
            Renamed::find("bind-addr").unwrap().replacement(),
            "listen-client-urls (as http://ADDRESS)"
        );
        for r in RENAMED {
            assert!(EtcdSettings::KEYS.contains(&r.new), "{}", r.new);
            assert!(
                r.implies.into_iter().all(EtcdSettings::is_bool),
                "{:?}",
                r.implies
            );
        }
    }

    #[test]
    fn every_key_has_a_field() {
        let mut s = EtcdSettings::default();
        for k in EtcdSettings::KEYS {
            assert!(s.slot(k).is_some(), "{k}");
        }
    }

    fn ip() -> impl Strategy<Value = std::net::IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(std::net::IpAddr::from),
            any::<[u16; 8]>().prop_map(std::net::IpAddr::from),
        ]
    }

    fn url() -> impl Strategy<Value = Url> {
        (any::<bool>(), ip(), any::<u16>()).prop_map(|(tls, ip, port)| Url {
            scheme: if tls { Scheme::Https } else { Scheme::Http },
            addr: SocketAddr::new(ip, port),
        })
    }

    fn url_list() -> impl Strategy<Value = UrlList> {
        proptest::collection::vec(url(), 1..4).prop_map(UrlList)
    }

    fn name() -> impl Strategy<Value = MemberName> {
        "[a-zA-Z0-9_.-]([a-zA-Z0-9_. -]{0,10}[a-zA-Z0-9])?".prop_map(MemberName)
    }

    fn cluster() -> impl Strategy<Value = InitialCluster> {
        proptest::collection::btree_map(name(), url_list(), 1..4).prop_map(|m| {
            InitialCluster(
                m.into_iter()
                    .map(|(name, peer_urls)| InitialMember { name, peer_urls })
                    .collect(),
            )
        })
    }

    fn cors() -> impl Strategy<Value = Cors> {
        prop_oneof![
            Just(Cors::Off),
            Just(Cors::Any),
            proptest::collection::vec("https?://[a-z0-9.-]{1,12}(:[0-9]{1,5})?", 1..4)
                .prop_map(Cors::Origins),
        ]
    }

    fn path() -> impl Strategy<Value = Option<PathBuf>> {
        proptest::option::of("/[a-z0-9/._-]{0,20}".prop_map(PathBuf::from))
    }

    #[test]
    fn a_discovery_url_keel_can_use_or_one_kept_as_written() {
        let d = Discovery::try_from("http://10.0.0.1:2379/v2/keys/_etcd/registry/abc/").unwrap();
        assert_eq!(
            d,
            Discovery::Etcd {
                url: "http://10.0.0.1:2379/v2/keys/_etcd/registry/abc".into(),
                addr: "10.0.0.1:2379".parse().unwrap(),
                path: "/v2/keys/_etcd/registry/abc".into(),
            }
        );
        for unusable in [
            "https://discovery.etcd.io/0123456789abcdef",
            "http://10.0.0.1:2379/other/x",
            "http://host:2379/v2/keys/x",
        ] {
            assert_eq!(
                Discovery::try_from(unusable),
                Ok(Discovery::Unusable {
                    url: unusable.into()
                }),
                "{unusable}"
            );
        }
        assert_eq!(
            Discovery::try_from("ftp://x/y").unwrap_err().to_string(),
            "\"ftp://x/y\" is not an http:// or https:// URL"
        );
        for d in [
            Discovery::try_from("http://10.0.0.1:2379/v2/keys/d/").unwrap(),
            Discovery::try_from("https://discovery.etcd.io/t").unwrap(),
        ] {
            assert_eq!(Discovery::try_from(d.to_string().as_str()), Ok(d));
        }
    }

    fn settings() -> impl Strategy<Value = EtcdSettings> {
        use proptest::option::of;
        (
            (
                of(name()),
                path(),
                of(url_list()),
                of(url_list()),
                of(url_list()),
                of(url_list()),
                of(cluster()),
                of(prop_oneof![
                    Just(ClusterState::New),
                    Just(ClusterState::Existing)
                ]),
            ),
            (
                of("[a-z0-9-]{1,12}"),
                of(prop_oneof![
                    "https?://[a-z0-9.]{1,12}/v2/keys/[a-z0-9]{1,8}",
                    "http://10\\.0\\.0\\.[1-9]:[1-9][0-9]{0,3}/v2/keys/[a-z0-9]{1,8}",
                ]
                .prop_map(|u| Discovery::try_from(u.as_str()).unwrap())),
                (path(), path(), path(), any::<bool>()),
                (path(), path(), path(), any::<bool>()),
                of(SNAPSHOT_COUNT.prop_map(SnapshotCount)),
                cors(),
                of(QUOTA_BYTES.prop_map(QuotaBytes)),
            ),
        )
            .prop_map(|(a, b)| EtcdSettings {
                name: a.0,
                data_dir: a.1,
                listen_client_urls: a.2,
                advertise_client_urls: a.3,
                listen_peer_urls: a.4,
                initial_advertise_peer_urls: a.5,
                initial_cluster: a.6,
                initial_cluster_state: a.7,
                initial_cluster_token: b.0,
                discovery: b.1,
                cert_file: b.2 .0,
                key_file: b.2 .1,
                trusted_ca_file: b.2 .2,
                client_cert_auth: b.2 .3,
                peer_cert_file: b.3 .0,
                peer_key_file: b.3 .1,
                peer_trusted_ca_file: b.3 .2,
                peer_client_cert_auth: b.3 .3,
                snapshot_count: b.4,
                cors: b.5,
                quota_backend_bytes: b.6,
                unsupported: Vec::new(),
            })
    }

    fn round_trip<T>(x: &T) -> Result<T, Invalid>
    where
        T: fmt::Display + for<'a> TryFrom<&'a str, Error = Invalid>,
    {
        T::try_from(x.to_string().as_str())
    }

    proptest! {
        #[test]
        fn each_type_parses_what_it_shows(
            u in url(),
            l in url_list(),
            n in name(),
            c in cluster(),
            s in prop_oneof![Just(ClusterState::New), Just(ClusterState::Existing)],
            o in cors(),
            k in SNAPSHOT_COUNT.prop_map(SnapshotCount),
            q in QUOTA_BYTES.prop_map(QuotaBytes),
        ) {
            prop_assert_eq!(round_trip(&u), Ok(u));
            prop_assert_eq!(round_trip(&l), Ok(l));
            prop_assert_eq!(round_trip(&n), Ok(n));
            prop_assert_eq!(round_trip(&c), Ok(c));
            prop_assert_eq!(round_trip(&s), Ok(s));
            prop_assert_eq!(round_trip(&o), Ok(o));
            prop_assert_eq!(round_trip(&k), Ok(k));
            prop_assert_eq!(round_trip(&q), Ok(q));
        }

        #[test]
        fn settings_set_from_their_pairs_are_the_same(s in settings()) {
            let mut again = EtcdSettings::default();
            for (k, v) in s.pairs() {
                prop_assert_eq!(again.set(k, &v), Ok(Applied::Set));
            }
            prop_assert_eq!(again, s);
        }

        #[test]
        fn any_text_is_a_value_or_a_message(t in "\\PC{0,40}") {
            // Never a panic; a refusal always says something.
            for key in EtcdSettings::KEYS {
                if let Err(e) = EtcdSettings::default().set(key, &t) {
                    prop_assert!(!e.why.0.is_empty());
                }
            }
        }
    }
}
