//! Strict validation of a `#cloud-config` document, with a verdict per item.
//!
//! 1. The header: the first line must be `#cloud-config` (as CoreOS
//!    required). A `#!` script or Ignition JSON is refused with what keel
//!    reads instead.
//! 2. The YAML (see [`crate::yaml`]) is walked key by key. Unknown keys,
//!    wrong types and bad values are errors naming the YAML path, line and
//!    column; the walk goes on after an error, so one run reports all of
//!    them.
//! 3. Each item gets a verdict: **applied** (keel does it), **translated**
//!    (keel does the same job its own way: `.network` units become keel's
//!    network settings, etcd2/update/locksmith settings configure keel's
//!    KV, update agent and reboot coordinator), or **refused** (keel does
//!    not do it, and the note says what it offers instead). Refused items do
//!    not stop the rest from being applied; errors do.

use std::io::Read;
use std::rc::Rc;

use base64::Engine;
use keel_types::etcd::Applied;
use keel_types::Group;

use crate::model::{
    CloudConfig, DhcpMode, Locksmith, Network, RebootStrategy, Route, Update, User, WriteFile,
};
use crate::schema;
use crate::yaml::{self, Node, Style, Value};
use crate::{api, containers, docker, registries};

/// Largest decoded `write_files` content.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// An error: what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// YAML path, e.g. `write_files[1].permissions`.
    pub path: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.line, self.col, self.path, self.message
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Applied,
    Translated,
    /// Checked and kept, but nothing on the node acts on it yet (the note
    /// says what will).
    Accepted,
    Refused,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Applied => "applied",
            Verdict::Translated => "translated",
            Verdict::Accepted => "accepted",
            Verdict::Refused => "refused",
        }
    }
}

/// What keel does with one item of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub path: String,
    pub line: usize,
    pub verdict: Verdict,
    pub note: String,
}

/// The outcome: errors (the node refuses the config when there is any),
/// a verdict per item, and what keel would apply.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub errors: Vec<Issue>,
    pub items: Vec<Item>,
    pub config: CloudConfig,
}

impl Report {
    /// Whether a node would accept the config (refused items included).
    pub fn accepted(&self) -> bool {
        self.errors.is_empty()
    }
}

pub(crate) type Entries = [(Rc<Node>, Rc<Node>)];

/// The value of key `k` in a mapping's entries.
pub(crate) fn entry(e: &Entries, k: &str) -> Option<Rc<Node>> {
    e.iter()
        .find(|(key, _)| key_of(key) == k)
        .map(|(_, val)| val.clone())
}

/// The walk's state: the report so far, and where each container came from
/// (for the checks across containers, made once the whole document is read).
pub(crate) struct V {
    pub(crate) report: Report,
    pub(crate) origins: Vec<containers::Origin>,
}

pub(crate) fn key_of(k: &Node) -> &str {
    k.scalar().map(|s| s.0).unwrap_or("")
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl V {
    pub(crate) fn err(&mut self, path: &str, n: &Node, message: impl Into<String>) {
        self.report.errors.push(Issue {
            path: path.to_string(),
            line: n.mark.line,
            col: n.mark.col,
            message: message.into(),
        });
    }

    pub(crate) fn item(&mut self, path: &str, n: &Node, verdict: Verdict, note: impl Into<String>) {
        self.report.items.push(Item {
            path: path.to_string(),
            line: n.mark.line,
            verdict,
            note: note.into(),
        });
    }

    pub(crate) fn map<'a>(&mut self, path: &str, n: &'a Node) -> Option<&'a Entries> {
        match &n.value {
            Value::Map(e) => Some(e),
            _ if n.is_null() => Some(&[]),
            _ => {
                self.err(path, n, format!("expected a mapping, found {}", n.kind()));
                None
            }
        }
    }

    pub(crate) fn seq<'a>(&mut self, path: &str, n: &'a Node) -> Option<&'a [Rc<Node>]> {
        match &n.value {
            Value::Seq(s) => Some(s),
            _ if n.is_null() => Some(&[]),
            _ => {
                self.err(path, n, format!("expected a list, found {}", n.kind()));
                None
            }
        }
    }

    pub(crate) fn string(&mut self, path: &str, n: &Node) -> Option<String> {
        match n.scalar() {
            Some((t, _)) if !n.is_null() => Some(t.to_string()),
            _ => {
                self.err(path, n, format!("expected a string, found {}", n.kind()));
                None
            }
        }
    }

    pub(crate) fn checked(
        &mut self,
        path: &str,
        n: &Node,
        check: fn(&str) -> Result<(), String>,
    ) -> Option<String> {
        self.parsed(path, n, |s| check(s).map(|()| s.to_string()))
    }

    /// A string turned into a value by `parse`, or an error at `path`.
    pub(crate) fn parsed<T>(
        &mut self,
        path: &str,
        n: &Node,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let s = self.string(path, n)?;
        match parse(&s) {
            Ok(t) => Some(t),
            Err(e) => {
                self.err(path, n, e);
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, path: &str, n: &Node) -> Option<bool> {
        match n.scalar() {
            Some((t, Style::Plain)) => match schema::bool_1_1(t) {
                Some(b) => Some(b),
                None => {
                    self.err(path, n, format!("expected true or false, found {t:?}"));
                    None
                }
            },
            Some((t, _)) => {
                self.err(
                    path,
                    n,
                    format!("expected true or false, found the quoted string {t:?}"),
                );
                None
            }
            None => {
                self.err(
                    path,
                    n,
                    format!("expected true or false, found {}", n.kind()),
                );
                None
            }
        }
    }

    pub(crate) fn strings(
        &mut self,
        path: &str,
        n: &Node,
        check: fn(&str) -> Result<(), String>,
    ) -> Vec<String> {
        self.parsed_seq(path, n, |s| check(s).map(|()| s.to_string()))
    }

    /// A list of strings each turned into a value by `parse`; an error at
    /// each item that is not one.
    pub(crate) fn parsed_seq<T>(
        &mut self,
        path: &str,
        n: &Node,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Vec<T> {
        let Some(items) = self.seq(path, n) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, it) in items.iter().enumerate() {
            if let Some(x) = self.parsed(&format!("{path}[{i}]"), it, &parse) {
                out.push(x);
            }
        }
        out
    }

    /// Report every key of `entries` not in `allowed`.
    pub(crate) fn known(&mut self, path: &str, entries: &Entries, allowed: &[&str]) {
        for (k, _) in entries {
            let name = key_of(k);
            if !allowed.contains(&name) {
                let hint = keel_types::text::nearest(name, allowed.iter().copied())
                    .map(|a| format!(" (did you mean {a:?}?)"))
                    .unwrap_or_default();
                self.err(&join(path, name), k, format!("unknown key {name:?}{hint}"));
            }
        }
    }
}

fn any(_: &str) -> Result<(), String> {
    Ok(())
}

fn no_check(s: &str) -> Result<(), String> {
    if s.chars().any(|c| c.is_control() && c != '\t') {
        Err("contains control characters".into())
    } else {
        Ok(())
    }
}

/// Validate a cloud-config document.
pub fn validate(text: &str) -> Report {
    let mut v = V {
        report: Report::default(),
        origins: Vec::new(),
    };
    let top = Node {
        mark: yaml::Mark { line: 1, col: 1 },
        value: Value::Scalar {
            text: String::new(),
            style: Style::Plain,
        },
        size: 1,
    };
    let trimmed = text.trim_start_matches('\u{feff}');
    if trimmed.trim().is_empty() {
        return v.report;
    }
    if trimmed.starts_with("#!") {
        v.err("(document)", &top, "user-data is a script: keel has no shell; describe the machine in a #cloud-config YAML document");
        return v.report;
    }
    if trimmed.trim_start().starts_with('{') && trimmed.contains("\"ignition\"") {
        v.err("(document)", &top, "this is Ignition JSON, which keel does not support: keel reads #cloud-config YAML (the CoreOS cloud-config dialect)");
        return v.report;
    }
    if trimmed.lines().next().map(str::trim_end) != Some("#cloud-config") {
        v.err(
            "(document)",
            &top,
            "the first line must be #cloud-config (as CoreOS required)",
        );
        return v.report;
    }
    let root = match yaml::parse(trimmed) {
        Ok(r) => r,
        Err(e) => {
            let (line, col) = match &e {
                yaml::YamlError::Syntax { line, col, .. }
                | yaml::YamlError::TooDeep { line, col }
                | yaml::YamlError::Expansion { line, col }
                | yaml::YamlError::UnknownAnchor { line, col }
                | yaml::YamlError::DuplicateKey { line, col, .. }
                | yaml::YamlError::ComplexKey { line, col } => (*line, *col),
                _ => (1, 1),
            };
            v.report.errors.push(Issue {
                path: "(document)".into(),
                line,
                col,
                message: e.to_string(),
            });
            return v.report;
        }
    };
    let Some(entries) = v.map("(document)", &root) else {
        return v.report;
    };
    v.known(
        "",
        entries,
        &[
            "hostname",
            "users",
            "ssh_authorized_keys",
            "write_files",
            "manage_etc_hosts",
            "coreos",
            "containers",
            "registries",
            "api",
        ],
    );
    for (k, val) in entries {
        let key = key_of(k);
        match key {
            "hostname" => {
                if let Some(h) = v.checked("hostname", val, schema::hostname) {
                    v.item("hostname", k, Verdict::Applied, format!("host name {h}"));
                    v.report.config.hostname = Some(h);
                }
            }
            "users" => users(&mut v, val),
            "ssh_authorized_keys" => {
                let keys = v.strings("ssh_authorized_keys", val, schema::ssh_key);
                v.item(
                    "ssh_authorized_keys",
                    k,
                    Verdict::Applied,
                    format!("{} keys for the core user", keys.len()),
                );
                v.report.config.ssh_authorized_keys = keys;
            }
            "write_files" => write_files(&mut v, val),
            "manage_etc_hosts" => match v.string("manage_etc_hosts", val).as_deref() {
                Some("localhost") => {
                    v.item(
                        "manage_etc_hosts",
                        k,
                        Verdict::Applied,
                        "/etc/hosts maps the host name to localhost",
                    );
                    v.report.config.manage_etc_hosts = true;
                }
                Some(other) => v.err(
                    "manage_etc_hosts",
                    val,
                    format!("{other:?}: the only value is localhost"),
                ),
                None => {}
            },
            "coreos" => coreos(&mut v, val),
            "containers" => containers::section(&mut v, val),
            "registries" => registries::section(&mut v, k, val),
            "api" => api::section(&mut v, k, val),
            _ => {}
        }
    }
    containers::cross_check(&mut v);
    v.report
}

fn users(v: &mut V, n: &Node) {
    let Some(list) = v.seq("users", n) else {
        return;
    };
    for (i, u) in list.iter().enumerate() {
        let path = format!("users[{i}]");
        let Some(e) = v.map(&path, u) else { continue };
        let allowed = [
            "name",
            "gecos",
            "passwd",
            "homedir",
            "no-create-home",
            "primary-group",
            "groups",
            "no-user-group",
            "ssh-authorized-keys",
            "coreos-ssh-import-github",
            "coreos-ssh-import-github-users",
            "coreos-ssh-import-url",
            "system",
            "no-log-init",
            "shell",
        ];
        v.known(&path, e, &allowed);
        let mut user = User::default();
        let mut refused = Vec::new();
        for (k, val) in e {
            let key = key_of(k);
            let p = join(&path, key);
            match key {
                "name" => user.name = v.checked(&p, val, schema::name).unwrap_or_default(),
                "gecos" => user.gecos = v.checked(&p, val, no_check),
                "passwd" => user.passwd_hash = v.checked(&p, val, schema::passwd_hash),
                "homedir" => user.homedir = v.checked(&p, val, schema::abs_path),
                "no-create-home" => user.no_create_home = v.boolean(&p, val).unwrap_or(false),
                "primary-group" => user.primary_group = v.checked(&p, val, schema::name),
                "groups" => user.groups = v.strings(&p, val, schema::name),
                "no-user-group" => user.no_user_group = v.boolean(&p, val).unwrap_or(false),
                "ssh-authorized-keys" => {
                    user.ssh_authorized_keys = v.strings(&p, val, schema::ssh_key)
                }
                "system" => user.system = v.boolean(&p, val).unwrap_or(false),
                "no-log-init" => {
                    v.boolean(&p, val);
                }
                "shell" => user.shell = v.checked(&p, val, schema::abs_path),
                "coreos-ssh-import-github"
                | "coreos-ssh-import-github-users"
                | "coreos-ssh-import-url" => {
                    if key == "coreos-ssh-import-url" {
                        v.checked(&p, val, schema::url);
                    } else if key == "coreos-ssh-import-github" {
                        v.checked(&p, val, any);
                    } else {
                        v.strings(&p, val, any);
                    }
                    refused.push(key);
                }
                _ => {}
            }
        }
        if !e.iter().any(|(k, _)| key_of(k) == "name") {
            v.err(&path, u, "a user needs a name");
            continue;
        }
        let name = user.name.clone();
        v.item(&path, u, Verdict::Applied, format!("user {name}"));
        for key in refused {
            v.item(
                &join(&path, key),
                u,
                Verdict::Refused,
                "keel fetches nothing at boot to find keys: list them in ssh-authorized-keys",
            );
        }
        v.report.config.users.push(user);
    }
}

fn decode(
    v: &mut V,
    path: &str,
    n: &Node,
    content: &str,
    encoding: Option<&str>,
) -> Option<Vec<u8>> {
    let b64 = |s: &str| {
        let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD.decode(clean)
    };
    let gunzip = |data: &[u8]| -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .take(MAX_FILE_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("not gzip data: {e}"))?;
        if out.len() > MAX_FILE_BYTES {
            return Err(format!("decompresses to more than {MAX_FILE_BYTES} bytes"));
        }
        Ok(out)
    };
    let res = match encoding {
        None => Ok(content.as_bytes().to_vec()),
        Some("b64" | "base64") => b64(content).map_err(|e| format!("not base64: {e}")),
        Some("gzip" | "gz") => gunzip(content.as_bytes()),
        Some("gz+b64" | "gz+base64" | "gzip+b64" | "gzip+base64") => b64(content)
            .map_err(|e| format!("not base64: {e}"))
            .and_then(|d| gunzip(&d)),
        Some(other) => {
            v.err(&format!("{path}.encoding"), n, format!("{other:?} is not b64, base64, gzip, gz, gz+b64, gz+base64, gzip+b64 or gzip+base64"));
            return None;
        }
    };
    match res {
        Ok(d) if d.len() <= MAX_FILE_BYTES => Some(d),
        Ok(_) => {
            v.err(
                &format!("{path}.content"),
                n,
                format!("more than {MAX_FILE_BYTES} bytes"),
            );
            None
        }
        Err(e) => {
            v.err(&format!("{path}.content"), n, e);
            None
        }
    }
}

fn owner(s: &str) -> Result<(), String> {
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let id_or_name = |x: &str| x.parse::<u32>().map(|_| ()).or_else(|_| schema::name(x));
    id_or_name(u).map_err(|e| format!("owner user: {e}"))?;
    if let Some(g) = g {
        id_or_name(g).map_err(|e| format!("owner group: {e}"))?;
    }
    Ok(())
}

fn write_files(v: &mut V, n: &Node) {
    let Some(list) = v.seq("write_files", n) else {
        return;
    };
    for (i, f) in list.iter().enumerate() {
        let path = format!("write_files[{i}]");
        let Some(e) = v.map(&path, f) else { continue };
        v.known(
            &path,
            e,
            &["path", "content", "encoding", "permissions", "owner"],
        );
        let get = |k: &str| entry(e, k);
        let Some(p) = get("path") else {
            v.err(&path, f, "a file needs a path");
            continue;
        };
        let file_path = v.checked(&join(&path, "path"), &p, schema::abs_path);
        let encoding = get("encoding").and_then(|n| v.string(&join(&path, "encoding"), &n));
        let content = match get("content") {
            Some(c) if c.is_null() => Some(Vec::new()),
            Some(c) => v
                .string(&join(&path, "content"), &c)
                .and_then(|s| decode(v, &path, &c, &s, encoding.as_deref())),
            None => Some(Vec::new()),
        };
        let permissions = match get("permissions") {
            None => Some(0o644),
            Some(pn) => match pn.scalar() {
                Some((t, style)) => match schema::permissions(t, style != Style::Plain) {
                    Ok(m) => Some(m),
                    Err(msg) => {
                        v.err(&join(&path, "permissions"), &pn, msg);
                        None
                    }
                },
                None => {
                    v.err(
                        &join(&path, "permissions"),
                        &pn,
                        format!("expected an octal mode, found {}", pn.kind()),
                    );
                    None
                }
            },
        };
        let own = get("owner").and_then(|o| v.checked(&join(&path, "owner"), &o, owner));
        if let (Some(fp), Some(content), Some(permissions)) = (file_path, content, permissions) {
            v.item(
                &path,
                f,
                Verdict::Applied,
                format!(
                    "write {fp} ({} bytes, mode {permissions:04o})",
                    content.len()
                ),
            );
            let owner = own.map(|o| match o.split_once(':') {
                Some((u, g)) => (u.to_string(), Some(g.to_string())),
                None => (o, None),
            });
            v.report.config.write_files.push(WriteFile {
                path: fp,
                content,
                permissions,
                owner,
            });
        }
    }
}

/// What `quota-backend-bytes` may be (keel-types' range, which keel-etcd
/// takes too).
pub use keel_types::etcd::QUOTA_BYTES;

const ETCD2_KEYS: &[&str] = &[
    "name",
    "data-dir",
    "wal-dir",
    "snapshot-count",
    "heartbeat-interval",
    "election-timeout",
    "listen-peer-urls",
    "listen-client-urls",
    "max-snapshots",
    "max-wals",
    "cors",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "initial-cluster-state",
    "initial-cluster-token",
    "advertise-client-urls",
    "discovery",
    "discovery-srv",
    "discovery-fallback",
    "discovery-proxy",
    "strict-reconfig-check",
    "proxy",
    "proxy-failure-wait",
    "proxy-refresh-interval",
    "proxy-dial-timeout",
    "proxy-write-timeout",
    "proxy-read-timeout",
    "ca-file",
    "cert-file",
    "key-file",
    "client-cert-auth",
    "trusted-ca-file",
    "peer-ca-file",
    "peer-cert-file",
    "peer-key-file",
    "peer-client-cert-auth",
    "peer-trusted-ca-file",
    "debug",
    "log-package-levels",
    "auto-tls",
    "peer-auto-tls",
    "enable-pprof",
    "quota-backend-bytes",
    "election-timeout",
];

const ETCD_KEYS: &[&str] = &[
    "name",
    "addr",
    "bind-addr",
    "peer-addr",
    "peer-bind-addr",
    "discovery",
    "peers",
    "peers-file",
    "data-dir",
    "snapshot",
    "verbose",
    "cluster-active-size",
    "cluster-remove-delay",
    "cluster-sync-interval",
    "ca-file",
    "cert-file",
    "key-file",
    "peer-ca-file",
    "peer-cert-file",
    "peer-key-file",
    "cors",
    "max-result-buffer",
    "max-retry-attempts",
    "http-read-timeout",
    "http-write-timeout",
    "peer-election-timeout",
    "peer-heartbeat-interval",
    "snapshot-count",
    "graphite-host",
];

/// What a cloud-config asks of an etcd value beyond its type (which
/// [`keel_types::EtcdSettings::set`] parses): files and directories are absolute paths,
/// a discovery URL is a URL, and the keys keel does not implement still
/// hold what etcd would read.
fn etcd_check(key: &str) -> fn(&str) -> Result<(), String> {
    match key {
        "discovery" | "discovery-proxy" => schema::url,
        "data-dir"
        | "wal-dir"
        | "ca-file"
        | "cert-file"
        | "key-file"
        | "trusted-ca-file"
        | "peer-ca-file"
        | "peer-cert-file"
        | "peer-key-file"
        | "peer-trusted-ca-file" => schema::abs_path,
        "heartbeat-interval" | "election-timeout" | "max-snapshots" | "max-wals" => |s| {
            s.parse::<u64>()
                .map(|_| ())
                .map_err(|_| format!("{s:?} is not a number"))
        },
        _ => no_check,
    }
}

/// One `coreos.etcd2` (or `coreos.etcd`) key into the settings: checked,
/// then parsed once. A deprecated key (etcd 0.4's addresses, etcd 2's
/// `ca-file`) becomes its replacement, which its item says.
fn etcd_value(v: &mut V, path: &str, key: &str, k: &Node, n: &Node) {
    let Some(text) = v.checked(path, n, etcd_check(key)) else {
        return;
    };
    match v.report.config.etcd2.set(key, &text) {
        Ok(Applied::Renamed(r)) => v.item(
            path,
            k,
            Verdict::Translated,
            format!("deprecated: taken as {}", r.replacement()),
        ),
        Ok(Applied::Set) => {
            // A discovery URL keel's KV cannot reach is kept, and said so:
            // the member will not start from it.
            if let Some(keel_types::Discovery::Unusable { .. }) = &v.report.config.etcd2.discovery {
                if key == "discovery" {
                    v.item(
                        path,
                        k,
                        Verdict::Accepted,
                        "accepted, not applied: keel's KV reaches a discovery service only at http://IP:PORT/v2/keys/... (an etcd it can reach), so the KV does not start from this one; list the members in initial-cluster",
                    );
                }
            }
        }
        Ok(Applied::Unsupported) => {}
        Err(e) => v.err(path, n, e.why.to_string()),
    }
}

fn coreos(v: &mut V, n: &Node) {
    let Some(e) = v.map("coreos", n) else { return };
    v.known(
        "coreos",
        e,
        &[
            "etcd",
            "etcd2",
            "fleet",
            "flannel",
            "locksmith",
            "update",
            "units",
            "oem",
        ],
    );
    for (k, val) in e {
        let key = key_of(k);
        let path = join("coreos", key);
        match key {
            "etcd2" | "etcd" => {
                let Some(m) = v.map(&path, val) else { continue };
                v.known(
                    &path,
                    m,
                    if key == "etcd2" {
                        ETCD2_KEYS
                    } else {
                        ETCD_KEYS
                    },
                );
                for (ek, ev) in m {
                    let name = key_of(ek);
                    let allowed = if key == "etcd2" {
                        ETCD2_KEYS
                    } else {
                        ETCD_KEYS
                    };
                    if !allowed.contains(&name) {
                        continue;
                    }
                    etcd_value(v, &join(&path, name), name, ek, ev);
                }
                let note = if key == "etcd2" {
                    "configures keel's embedded KV (etcd v2 API)"
                } else {
                    "etcd 0.4 settings: addr, peer-addr, bind-addr and peer-bind-addr become etcd2 URLs; configures keel's embedded KV"
                };
                v.item(&path, k, Verdict::Translated, note);
            }
            "fleet" => {
                v.map(&path, val);
                v.item(&path, k, Verdict::Refused, "keel has no fleet scheduler: run workloads as keel containers (containers: section)");
            }
            "flannel" => {
                v.map(&path, val);
                v.item(&path, k, Verdict::Refused, "keel has no flannel: containers use keel's bridge network with published ports");
            }
            "oem" => {
                if let Some(m) = v.map(&path, val) {
                    v.known(
                        &path,
                        m,
                        &["id", "name", "version-id", "home-url", "bug-report-url"],
                    );
                    for (ok, ov) in m {
                        v.checked(&join(&path, key_of(ok)), ov, no_check);
                    }
                }
                v.item(&path, k, Verdict::Applied, "shown as node information");
            }
            "update" => {
                let Some(m) = v.map(&path, val) else { continue };
                v.known(&path, m, &["reboot-strategy", "server", "group"]);
                let mut u = Update::default();
                for (uk, uv) in m {
                    let p = join(&path, key_of(uk));
                    match key_of(uk) {
                        "reboot-strategy" => {
                            u.reboot_strategy =
                                v.parsed(&p, uv, |s| Ok(RebootStrategy::try_from(s)?))
                        }
                        "server" => u.server = v.parsed(&p, uv, schema::http_url),
                        "group" => u.group = v.parsed(&p, uv, |s| Ok(Group::try_from(s)?)),
                        _ => {}
                    }
                }
                v.report.config.update = Some(u);
                v.item(
                    &path,
                    k,
                    Verdict::Accepted,
                    "accepted, not yet applied: checked and kept for keel's update agent, which does not exist yet",
                );
            }
            "locksmith" => {
                let Some(m) = v.map(&path, val) else { continue };
                v.known(
                    &path,
                    m,
                    &[
                        "endpoint",
                        "etcd_cafile",
                        "etcd_certfile",
                        "etcd_keyfile",
                        "group",
                        "window-start",
                        "window-length",
                    ],
                );
                let mut l = Locksmith::default();
                for (lk, lv) in m {
                    let p = join(&path, key_of(lk));
                    match key_of(lk) {
                        "endpoint" => {
                            l.endpoint = v
                                .string(&p, lv)
                                .and_then(|s| match schema::url_list(&s) {
                                    Ok(u) => Some(u),
                                    Err(e) => {
                                        v.err(&p, lv, e);
                                        None
                                    }
                                })
                                .unwrap_or_default()
                        }
                        "etcd_cafile" => l.etcd_cafile = v.checked(&p, lv, schema::abs_path),
                        "etcd_certfile" => l.etcd_certfile = v.checked(&p, lv, schema::abs_path),
                        "etcd_keyfile" => l.etcd_keyfile = v.checked(&p, lv, schema::abs_path),
                        "group" => l.group = v.parsed(&p, lv, |s| Ok(Group::try_from(s)?)),
                        "window-start" => l.window_start = v.parsed(&p, lv, schema::window_start),
                        "window-length" => l.window_length = v.parsed(&p, lv, schema::duration),
                        _ => {}
                    }
                }
                if l.window_start.is_some() != l.window_length.is_some() {
                    v.err(&path, val, "window-start and window-length go together");
                }
                v.report.config.locksmith = Some(l);
                v.item(
                    &path,
                    k,
                    Verdict::Accepted,
                    "accepted, not yet applied: checked and kept for keel's reboot coordinator, which does not exist yet",
                );
            }
            "units" => units(v, val),
            _ => {}
        }
    }
}

/// What keel does with a unit, by name, when it has no content of its own
/// to translate.
fn unit_verdict(
    name: &str,
    content: Option<&str>,
    mask: bool,
    command: Option<&str>,
) -> (Verdict, String) {
    let service = name.strip_suffix(".service");
    match service {
        Some("etcd2" | "etcd" | "etcd-member") => (Verdict::Translated, "keel runs the KV itself (configure it with coreos.etcd2)".into()),
        Some("update-engine" | "locksmithd") => {
            let off = mask || command == Some("stop");
            (
                Verdict::Accepted,
                if off {
                    "accepted, not yet applied: keel has no update agent yet; once it has, stopping this turns automatic updates off".into()
                } else {
                    "accepted, not yet applied: keel has no update agent or reboot coordinator yet".into()
                },
            )
        }
        Some("fleet") => (Verdict::Refused, "keel has no fleet scheduler: run workloads as keel containers".into()),
        Some("docker" | "containerd") => (Verdict::Refused, "keel runs containers itself, without docker".into()),
        Some(_) if content.is_some_and(|c| c.contains("docker run") || c.contains("rkt run")) => (
            Verdict::Refused,
            "a container started by a unit in a way keel does not translate (only an ExecStart= of docker run is): describe it in keel's containers: section".into(),
        ),
        Some(_) => (Verdict::Refused, "keel runs no systemd services: run the program as a keel container".into()),
        None => {
            let kind = name.rsplit_once('.').map(|(_, s)| s).unwrap_or("");
            let why = match kind {
                "socket" => "keel has no socket activation: a container listens itself",
                "timer" => "keel has no timers: run a container with a restart policy",
                "mount" | "automount" | "swap" => "keel mounts what it needs itself (STATE, container volumes); no swap",
                "netdev" | "link" => "keel configures links through its network settings",
                "path" | "target" | "slice" | "scope" => "keel has no systemd units of this kind",
                _ => "not a unit keel knows",
            };
            (Verdict::Refused, why.into())
        }
    }
}

fn units(v: &mut V, n: &Node) {
    let Some(list) = v.seq("coreos.units", n) else {
        return;
    };
    let mut translated = Vec::new();
    for (i, u) in list.iter().enumerate() {
        let path = format!("coreos.units[{i}]");
        let Some(e) = v.map(&path, u) else { continue };
        v.known(
            &path,
            e,
            &[
                "name", "runtime", "enable", "content", "command", "mask", "drop-ins",
            ],
        );
        let get = |k: &str| entry(e, k);
        let Some(name_node) = get("name") else {
            v.err(&path, u, "a unit needs a name");
            continue;
        };
        let Some(name) = v.checked(&join(&path, "name"), &name_node, |s| {
            if s.contains('/') || !s.contains('.') || s.chars().any(char::is_whitespace) {
                Err(format!("{s:?} is not a unit name such as web.service"))
            } else {
                Ok(())
            }
        }) else {
            continue;
        };
        for b in ["runtime", "enable", "mask"] {
            if let Some(bn) = get(b) {
                v.boolean(&join(&path, b), &bn);
            }
        }
        let mask = get("mask")
            .and_then(|m| m.scalar().and_then(|s| schema::bool_1_1(s.0)))
            .unwrap_or(false);
        let command = get("command").and_then(|c| {
            v.checked(&join(&path, "command"), &c, |s| match s {
                "start" | "stop" | "restart" | "reload" | "try-restart" | "reload-or-restart"
                | "reload-or-try-restart" => Ok(()),
                _ => Err(format!("{s:?} is not start, stop, restart, reload, try-restart, reload-or-restart or reload-or-try-restart")),
            })
        });
        let content_node = get("content");
        let content = content_node
            .as_ref()
            .and_then(|c| v.string(&join(&path, "content"), c));
        if let Some(d) = get("drop-ins") {
            if let Some(list) = v.seq(&join(&path, "drop-ins"), &d) {
                for (j, di) in list.iter().enumerate() {
                    let dp = format!("{path}.drop-ins[{j}]");
                    if let Some(de) = v.map(&dp, di) {
                        v.known(&dp, de, &["name", "content"]);
                        match de.iter().find(|(k, _)| key_of(k) == "name") {
                            Some((_, dn)) => {
                                v.checked(&join(&dp, "name"), dn, |s| {
                                    if s.ends_with(".conf") && !s.contains('/') {
                                        Ok(())
                                    } else {
                                        Err(format!(
                                            "{s:?} is not a drop-in name such as 10-env.conf"
                                        ))
                                    }
                                });
                            }
                            None => v.err(&dp, di, "a drop-in needs a name"),
                        }
                        v.item(&dp, di, Verdict::Refused, format!("keel does not run {name} from a unit, so it has nothing to drop into; set its keel settings instead"));
                    }
                }
            }
        }
        if name.ends_with(".network") {
            match content.as_deref() {
                Some(c) => {
                    let line = content_node
                        .as_ref()
                        .map(|c| c.mark.line)
                        .unwrap_or(u.mark.line);
                    match network(&name, c) {
                        Ok((net, ignored)) => {
                            let note = if ignored.is_empty() {
                                "becomes keel's network settings".to_string()
                            } else {
                                format!(
                                    "becomes keel's network settings; ignored: {}",
                                    ignored.join(", ")
                                )
                            };
                            v.item(&path, u, Verdict::Translated, note);
                            v.report.config.networks.push(net);
                        }
                        Err((off, msg)) => v.report.errors.push(Issue {
                            path: join(&path, "content"),
                            line: line + off,
                            col: 1,
                            message: msg,
                        }),
                    }
                }
                None => v.item(
                    &path,
                    u,
                    Verdict::Refused,
                    "a .network unit without content configures nothing",
                ),
            }
            continue;
        }
        if let (Some(c), false) = (content.as_deref(), mask || !name.ends_with(".service")) {
            if let Some(t) = docker::from_unit(&name, c) {
                if let Some((cname, after, requires)) =
                    docker_unit(v, &path, u, content_node.as_deref(), t)
                {
                    translated.push((name.clone(), cname, after, requires));
                }
                continue;
            }
        }
        let (verdict, note) = unit_verdict(&name, content.as_deref(), mask, command.as_deref());
        v.item(&path, u, verdict, note);
    }
    unit_deps(v, &translated);
}

/// A `docker run` unit's verdict: translated to a container, or refused
/// (the item's line is the line of the content the refusal is about).
fn docker_unit(
    v: &mut V,
    path: &str,
    u: &Node,
    content: Option<&Node>,
    t: Result<docker::Translation, (usize, String)>,
) -> Option<(String, Vec<String>, Vec<String>)> {
    match t {
        Ok(t) => {
            let deps = (t.container.name.clone(), t.after_units, t.requires_units);
            let c = t.container;
            let mut note = format!("container {} ({}) from docker run", c.name, c.image);
            for n in &t.notes {
                note.push_str("; ");
                note.push_str(n);
            }
            v.item(path, u, Verdict::Translated, note);
            v.origins.push(containers::Origin {
                path: path.to_string(),
                mark: u.mark,
                name: c.name.clone(),
                deps: Vec::new(),
            });
            v.report.config.containers.push(c);
            Some(deps)
        }
        Err((off, note)) => {
            v.report.items.push(Item {
                path: path.to_string(),
                line: content.map(|c| c.mark.line + off).unwrap_or(u.mark.line),
                verdict: Verdict::Refused,
                note,
            });
            None
        }
    }
}

/// `After=`/`Requires=` between translated `docker run` units become
/// `after`/`requires` between their containers (other units, such as
/// docker.service or etcd2.service, have no container to wait for).
fn unit_deps(v: &mut V, units: &[(String, String, Vec<String>, Vec<String>)]) {
    let container_of = |unit: &str| {
        units
            .iter()
            .find(|(u, ..)| u == unit)
            .map(|(_, c, ..)| c.clone())
    };
    for (_, name, after, requires) in units {
        let after: Vec<String> = after.iter().filter_map(|u| container_of(u)).collect();
        let requires: Vec<String> = requires.iter().filter_map(|u| container_of(u)).collect();
        if after.is_empty() && requires.is_empty() {
            continue;
        }
        if let Some(c) = v
            .report
            .config
            .containers
            .iter_mut()
            .find(|c| &c.name == name)
        {
            c.after.extend(
                after
                    .iter()
                    .filter(|a| !c.after.contains(a))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            c.requires.extend(requires.iter().cloned());
        }
        if let Some(o) = v.origins.iter_mut().find(|o| &o.name == name) {
            let (path, mark) = (o.path.clone(), o.mark);
            o.deps.extend(
                after
                    .iter()
                    .chain(&requires)
                    .map(|d| (path.clone(), mark, d.clone())),
            );
        }
    }
}

/// The subset of systemd-networkd `.network` files keel translates:
/// `[Match] Name=`, `[Network] Address= Gateway= DNS= DHCP= Domains=`,
/// `[Route] Destination= Gateway=`. Returns the settings and the keys it
/// ignored, or the offending line (0-based, within the content) and why.
pub fn network(unit: &str, content: &str) -> Result<(Network, Vec<String>), (usize, String)> {
    let mut net = Network {
        unit: unit.to_string(),
        ..Network::default()
    };
    let mut ignored = Vec::new();
    let mut section = String::new();
    for (i, raw) in content.lines().enumerate() {
        let off = i; // the scalar's mark is where its text starts
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_string();
            if section == "Route" {
                net.routes.push(Route {
                    destination: None,
                    gateway: None,
                });
            }
            continue;
        }
        let (k, val) = line
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or((off, format!("{line:?} is not KEY=VALUE or [Section]")))?;
        let bad = |e: String| (off, format!("[{section}] {k}: {e}"));
        match (section.as_str(), k) {
            ("Match", "Name") => net
                .match_names
                .extend(val.split_whitespace().map(str::to_string)),
            ("Network", "Address") => net.addresses.push(schema::cidr(val).map_err(bad)?),
            ("Network", "Gateway") => net.gateway = Some(schema::ip(val).map_err(bad)?),
            ("Network", "DNS") => {
                for d in val.split_whitespace() {
                    net.dns.push(schema::ip(d).map_err(bad)?);
                }
            }
            ("Network", "Domains") => net
                .domains
                .extend(val.split_whitespace().map(str::to_string)),
            ("Network", "DHCP") => {
                net.dhcp = Some(DhcpMode::try_from(val).map_err(|e| bad(e.into()))?);
            }
            ("Route", "Destination") => {
                let d = schema::cidr(val).map_err(bad)?;
                if let Some(r) = net.routes.last_mut() {
                    r.destination = Some(d);
                }
            }
            ("Route", "Gateway") => {
                let g = schema::ip(val).map_err(bad)?;
                if let Some(r) = net.routes.last_mut() {
                    r.gateway = Some(g);
                }
            }
            ("", _) => return Err((off, format!("{k} is outside any [Section]"))),
            _ => ignored.push(format!("[{section}] {k}")),
        }
    }
    if net.match_names.is_empty() {
        return Err((
            0,
            format!("{unit}: no [Match] Name=: keel needs to know which links it configures"),
        ));
    }
    for r in &net.routes {
        if r.destination.is_none() && r.gateway.is_none() {
            return Err((
                0,
                format!("{unit}: a [Route] without Destination= or Gateway="),
            ));
        }
    }
    Ok((net, ignored))
}
