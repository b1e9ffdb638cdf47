//! `keelctl gen`: the credentials of a cluster, like `talosctl gen`.
//!
//! `gen pki --out DIR --node NAME=IP[,IP...] ...` writes into DIR:
//!
//! | file | what |
//! |---|---|
//! | `ca.pem`, `ca-key.pem` | the CA (kept when present: reruns reuse it) |
//! | `admin.pem`, `admin-key.pem` | client certificate, role `keel:admin` |
//! | `reader.pem`, `reader-key.pem` | client certificate, role `keel:reader` |
//! | `etcd-client.pem`, `etcd-client-key.pem` | a client certificate for `etcdctl` |
//! | `keelconfig` | keelctl's client config: endpoint, CA, admin certificate |
//! | `nodes/NAME/…` | the node's API server certificate, its KV server and peer certificates |
//! | `nodes/NAME.yaml` | a cloud-config fragment: `write_files` with those files, `api:`, `coreos.etcd2` TLS |
//!
//! Client certificates and `keelconfig` are written only when absent (a
//! rerun to renew a node's certificates leaves clients alone); node files
//! are written every time. Keys are files of mode 0600.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use keel_tls::issue::{Ca, Issued};

/// Where a node's files go on the node (its `write_files` paths).
pub const NODE_PKI_DIR: &str = "/etc/keel/pki";
/// The API's TCP port.
pub const API_PORT: u16 = 9420;

/// A node named on the command line: `NAME=IP[,IP...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub name: String,
    /// IP addresses or DNS names clients and peers use; the first is the
    /// one the node advertises.
    pub hosts: Vec<String>,
}

impl std::str::FromStr for NodeSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<NodeSpec, String> {
        let (name, hosts) = s
            .split_once('=')
            .ok_or_else(|| format!("--node {s:?}: expected NAME=IP[,IP...]"))?;
        let name_ok = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(format!(
                "--node {s:?}: the name {name:?} must be 1-63 letters, digits, - or _"
            ));
        }
        let hosts: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        if hosts.is_empty() {
            return Err(format!("--node {s:?}: no address after ="));
        }
        for h in &hosts {
            if h.parse::<std::net::IpAddr>().is_err() && keel_tls::server_name(h).is_err() {
                return Err(format!(
                    "--node {s:?}: {h:?} is not an IP address or DNS name"
                ));
            }
        }
        Ok(NodeSpec {
            name: name.to_string(),
            hosts,
        })
    }
}

/// What `gen pki` is asked for.
#[derive(Debug, Clone)]
pub struct PkiOptions {
    pub out: PathBuf,
    pub nodes: Vec<NodeSpec>,
    /// Validity of the CA, in days.
    pub ca_days: u32,
    /// Validity of every other certificate, in days.
    pub days: u32,
    /// Leave the KV (`coreos.etcd2`) out of the fragments.
    pub no_kv: bool,
}

/// Why `gen` failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Issue(#[from] keel_tls::issue::IssueError),
    #[error("{0}")]
    Usage(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GenError + '_ {
    move |source| GenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `bytes` to `path` with `mode`, replacing it through a temporary
/// file in the same directory.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), GenError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn write_pair(dir: &Path, stem: &str, pair: &Issued) -> Result<(), GenError> {
    write_file(
        &dir.join(format!("{stem}.pem")),
        pair.cert_pem.as_bytes(),
        0o644,
    )?;
    write_file(
        &dir.join(format!("{stem}-key.pem")),
        pair.key_pem.as_bytes(),
        0o600,
    )
}

/// The CA of `dir`: loaded when `ca.pem` is there, else created.
pub fn ca(dir: &Path, days: u32) -> Result<(Ca, bool), GenError> {
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    if cert.exists() {
        let c = std::fs::read_to_string(&cert).map_err(io_err(&cert))?;
        let k = std::fs::read_to_string(&key).map_err(io_err(&key))?;
        return Ok((Ca::load(&c, &k)?, false));
    }
    let ca = Ca::generate("keel cluster CA", days)?;
    write_file(&key, ca.key_pem.as_bytes(), 0o600)?;
    write_file(&cert, ca.cert_pem.as_bytes(), 0o644)?;
    Ok((ca, true))
}

/// The roles a client certificate can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Admin,
    Reader,
}

impl Role {
    pub fn organization(self) -> &'static str {
        match self {
            Role::Admin => keel_api::server::ROLE_ADMIN,
            Role::Reader => keel_api::server::ROLE_READER,
        }
    }
}

/// `gen client`: a new client certificate `NAME.pem` from the CA of `dir`.
pub fn client(dir: &Path, name: &str, role: Role, days: u32) -> Result<Vec<PathBuf>, GenError> {
    if !dir.join("ca.pem").exists() {
        return Err(GenError::Usage(format!(
            "{}: no ca.pem here: run keelctl gen pki --out {} first",
            dir.display(),
            dir.display()
        )));
    }
    let (ca, _) = ca(dir, 0)?;
    let pair = ca.client(name, Some(role.organization()), days)?;
    write_pair(dir, name, &pair)?;
    Ok(vec![
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    ])
}

/// keelctl's client config: where the node is and the files to reach it
/// with. JSON; paths are absolute.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub endpoint: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The largest client config read.
pub const MAX_CLIENT_CONFIG: u64 = 64 * 1024;

impl ClientConfig {
    pub fn load(path: &Path) -> Result<ClientConfig, GenError> {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(io_err(path))?
            .take(MAX_CLIENT_CONFIG + 1)
            .read_to_string(&mut text)
            .map_err(io_err(path))?;
        if text.len() as u64 > MAX_CLIENT_CONFIG {
            return Err(GenError::Usage(format!(
                "{}: over {MAX_CLIENT_CONFIG} bytes",
                path.display()
            )));
        }
        serde_json::from_str(&text).map_err(|e| GenError::Usage(format!("{}: {e}", path.display())))
    }
}

fn block(out: &mut String, indent: &str, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "{indent}{line}");
    }
}

/// The cloud-config fragment of one node.
fn fragment(node: &NodeSpec, all: &[NodeSpec], files: &[(&str, &str, &str)], kv: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# keelctl gen pki: node {}. Add these keys to the node's cloud-config.",
        node.name
    );
    o.push_str("write_files:\n");
    for (name, mode, content) in files {
        let _ = writeln!(o, "  - path: {NODE_PKI_DIR}/{name}");
        let _ = writeln!(o, "    permissions: '{mode}'");
        o.push_str("    content: |\n");
        block(&mut o, "      ", content);
    }
    let _ = writeln!(
        o,
        "api:\n  cert_file: {NODE_PKI_DIR}/api.pem\n  key_file: {NODE_PKI_DIR}/api-key.pem\n  client_ca_file: {NODE_PKI_DIR}/ca.pem"
    );
    if kv {
        let ip = &node.hosts[0];
        let cluster: Vec<String> = all
            .iter()
            .map(|n| format!("{}=https://{}:2380", n.name, n.hosts[0]))
            .collect();
        let _ = writeln!(
            o,
            "coreos:
  etcd2:
    name: {name}
    listen-client-urls: https://0.0.0.0:2379
    advertise-client-urls: https://{ip}:2379
    cert-file: {d}/kv.pem
    key-file: {d}/kv-key.pem
    trusted-ca-file: {d}/ca.pem
    client-cert-auth: true
    listen-peer-urls: https://{ip}:2380
    initial-advertise-peer-urls: https://{ip}:2380
    initial-cluster: {cluster}
    peer-cert-file: {d}/kv-peer.pem
    peer-key-file: {d}/kv-peer-key.pem
    peer-trusted-ca-file: {d}/ca.pem
    peer-client-cert-auth: true",
            name = node.name,
            d = NODE_PKI_DIR,
            cluster = cluster.join(",")
        );
    }
    o
}

/// What `gen pki` wrote.
#[derive(Debug, Default)]
pub struct PkiReport {
    pub ca_created: bool,
    pub written: Vec<PathBuf>,
    pub kept: Vec<PathBuf>,
}

/// `gen pki`.
pub fn pki(opts: &PkiOptions) -> Result<PkiReport, GenError> {
    if opts.nodes.is_empty() {
        return Err(GenError::Usage(
            "gen pki needs at least one --node NAME=IP[,IP...]".into(),
        ));
    }
    for (i, n) in opts.nodes.iter().enumerate() {
        if opts.nodes[..i].iter().any(|m| m.name == n.name) {
            return Err(GenError::Usage(format!("--node {}: named twice", n.name)));
        }
    }
    let out = &opts.out;
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let out = std::fs::canonicalize(out).map_err(io_err(out))?;
    let mut report = PkiReport::default();
    let (ca, created) = ca(&out, opts.ca_days)?;
    report.ca_created = created;
    report.written.push(out.join("ca.pem"));

    let clients = [
        ("admin", Some(keel_api::server::ROLE_ADMIN)),
        ("reader", Some(keel_api::server::ROLE_READER)),
        ("etcd-client", None),
    ];
    for (stem, role) in clients {
        let cert = out.join(format!("{stem}.pem"));
        if cert.exists() {
            report.kept.push(cert);
            continue;
        }
        write_pair(&out, stem, &ca.client(stem, role, opts.days)?)?;
        report.written.push(cert);
    }
    let keelconfig = out.join("keelconfig");
    if keelconfig.exists() {
        report.kept.push(keelconfig);
    } else {
        let c = ClientConfig {
            endpoint: format!("https://{}:{API_PORT}", url_host(&opts.nodes[0].hosts[0])),
            ca: out.join("ca.pem"),
            cert: out.join("admin.pem"),
            key: out.join("admin-key.pem"),
        };
        let json = serde_json::to_string_pretty(&c).unwrap_or_default() + "\n";
        write_file(&keelconfig, json.as_bytes(), 0o600)?;
        report.written.push(keelconfig);
    }

    for node in &opts.nodes {
        let dir = out.join("nodes").join(&node.name);
        // Clients reach the API and the KV at the node's addresses, and a
        // program on the node at the loopback.
        let mut hosts = node.hosts.clone();
        for h in ["127.0.0.1", "localhost"] {
            if !hosts.iter().any(|x| x == h) {
                hosts.push(h.to_string());
            }
        }
        let api = ca.server(&node.name, &hosts, false, opts.days)?;
        write_pair(&dir, "api", &api)?;
        let mut files = vec![
            ("ca.pem", "0644", ca.cert_pem.clone()),
            ("api.pem", "0644", api.cert_pem.clone()),
            ("api-key.pem", "0600", api.key_pem.clone()),
        ];
        if !opts.no_kv {
            let kv = ca.server(&node.name, &hosts, false, opts.days)?;
            let peer = ca.server(&node.name, &node.hosts, true, opts.days)?;
            write_pair(&dir, "kv", &kv)?;
            write_pair(&dir, "kv-peer", &peer)?;
            files.extend([
                ("kv.pem", "0644", kv.cert_pem),
                ("kv-key.pem", "0600", kv.key_pem),
                ("kv-peer.pem", "0644", peer.cert_pem),
                ("kv-peer-key.pem", "0600", peer.key_pem),
            ]);
        }
        let refs: Vec<(&str, &str, &str)> =
            files.iter().map(|(n, m, c)| (*n, *m, c.as_str())).collect();
        let frag = fragment(node, &opts.nodes, &refs, !opts.no_kv);
        let path = out.join("nodes").join(format!("{}.yaml", node.name));
        // It carries private keys.
        write_file(&path, frag.as_bytes(), 0o600)?;
        report.written.push(path);
    }
    Ok(report)
}

/// `host` as it goes into a URL (IPv6 bracketed).
fn url_host(host: &str) -> String {
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(a)) => format!("[{a}]"),
        _ => host.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn opts(out: &Path, no_kv: bool) -> PkiOptions {
        PkiOptions {
            out: out.to_path_buf(),
            nodes: vec![
                "n1=10.0.0.1,node-1".parse().unwrap(),
                "n2=10.0.0.2".parse().unwrap(),
            ],
            ca_days: 3650,
            days: 365,
            no_kv,
        }
    }

    #[test]
    fn node_specs_are_checked() {
        let n: NodeSpec = "web-1=10.0.0.1, fd00::1,web-1.example".parse().unwrap();
        assert_eq!(n.hosts, ["10.0.0.1", "fd00::1", "web-1.example"]);
        for bad in ["n1", "=10.0.0.1", "n1=", "n 1=10.0.0.1", "n1=bad host"] {
            assert!(bad.parse::<NodeSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn fragments_validate_and_secrets_are_private() {
        let t = tempfile::tempdir().unwrap();
        let r = pki(&opts(t.path(), false)).unwrap();
        assert!(r.ca_created);
        for key in [
            "ca-key.pem",
            "admin-key.pem",
            "reader-key.pem",
            "keelconfig",
            "nodes/n1.yaml",
            "nodes/n1/api-key.pem",
        ] {
            let mode = std::fs::metadata(t.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let frag = std::fs::read_to_string(t.path().join("nodes/n1.yaml")).unwrap();
        let doc = format!("#cloud-config\nhostname: n1\n{frag}");
        let v = keel_config::validate(&doc);
        assert!(v.accepted(), "{:?}\n{doc}", v.errors);
        let api = v.config.api.unwrap();
        assert_eq!(api.cert_file, "/etc/keel/pki/api.pem");
        assert!(
            frag.contains("initial-cluster: n1=https://10.0.0.1:2380,n2=https://10.0.0.2:2380"),
            "{frag}"
        );
        assert!(frag.contains("client-cert-auth: true"));
        let only = tempfile::tempdir().unwrap();
        pki(&opts(only.path(), true)).unwrap();
        let frag = std::fs::read_to_string(only.path().join("nodes/n2.yaml")).unwrap();
        assert!(!frag.contains("etcd2"), "{frag}");
        assert!(keel_config::validate(&format!("#cloud-config\n{frag}")).accepted());

        // The client config names the first node and the admin files.
        let c = ClientConfig::load(&t.path().join("keelconfig")).unwrap();
        assert_eq!(c.endpoint, "https://10.0.0.1:9420");
        assert!(c.cert.ends_with("admin.pem") && c.cert.is_absolute());
        let info = keel_tls::cert::inspect_file("admin", &c.cert).unwrap();
        assert_eq!(info.organizations, ["keel:admin"]);
    }

    #[test]
    fn a_rerun_keeps_the_ca_and_the_clients_and_renews_the_nodes() {
        let t = tempfile::tempdir().unwrap();
        pki(&opts(t.path(), true)).unwrap();
        let read = |p: &str| std::fs::read_to_string(t.path().join(p)).unwrap();
        let (ca, admin, node) = (read("ca.pem"), read("admin.pem"), read("nodes/n1/api.pem"));
        let r = pki(&opts(t.path(), true)).unwrap();
        assert!(!r.ca_created);
        assert_eq!(read("ca.pem"), ca);
        assert_eq!(read("admin.pem"), admin);
        assert_ne!(read("nodes/n1/api.pem"), node);
        // A new reader from the same CA.
        let files = client(t.path(), "ci-bot", Role::Reader, 30).unwrap();
        let info = keel_tls::cert::inspect_file("c", &files[0]).unwrap();
        assert_eq!(info.organizations, ["keel:reader"]);
        assert!(client(&t.path().join("none"), "x", Role::Admin, 1).is_err());
    }
}
