//! keel's `containers:` section: a list of containers, each a mapping.
//!
//! 1. Each entry is walked key by key like the rest of the document: an
//!    unknown key is an error with a "did you mean", a bad value an error
//!    at its path, line and column. The value checks are the pure functions
//!    below, which [`crate::docker`] reuses for `docker run` units.
//! 2. Checks within a container follow: `ports` need `network: bridge`,
//!    host ports and mount targets are unique, a backoff's first delay is
//!    not over its cap, a health check has one probe.
//! 3. A container without errors gets an `applied` verdict and joins
//!    [`crate::model::CloudConfig::containers`].
//! 4. Once the whole document is read (units may come before or after the
//!    section), `cross_check` checks across containers: names are unique
//!    (section and translated units together), `after`/`requires` name
//!    containers that exist, and they form no cycle (the cycle is reported
//!    as a path, `web -> db -> web`).
//!
//! Only the list form is read: a list keeps the order as written, which is
//! the start order among containers with no dependency between them.

use std::collections::HashMap;

use crate::model::{
    Announce, Container, Healthcheck, IoMax, MountSpec, NetMode, NodePort, Port, Probe, Resources,
    Restart, Rlimit, Sysctl, SysctlNs,
};
use crate::schema;
use crate::validate::{entry, join, key_of, Entries, Verdict, V};
use crate::yaml::{Mark, Node, Value};
use keel_types::{ImageRef, Limits, Resource};

/// Restart delays and the stop grace period when the config says nothing.
pub const DEFAULT_BACKOFF_MS: u64 = 10_000;
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 300_000;
pub const DEFAULT_BACKOFF_RESET_MS: u64 = 600_000;
pub const DEFAULT_STOP_GRACE_MS: u64 = 10_000;
/// Health check defaults.
pub const DEFAULT_HEALTH_INTERVAL_MS: u64 = 10_000;
pub const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 2_000;
pub const DEFAULT_HEALTH_RETRIES: u32 = 3;
/// The smallest `memory` / `memory_high`: below this a runtime and a
/// process hardly fit, and the OOM killer would be the supervisor.
pub const MIN_MEMORY: u64 = 4 << 20;

/// Where bind mounts may come from. The root filesystem is a read-only
/// image, and the rest of the host (its `/etc`, STATE's keel data, /proc,
/// /sys, devices) is keel's own: a container gets directories of its own,
/// on STATE or on the /run tmpfs. The rest of /run/keel (the API's socket,
/// the containers' roots) is never a source.
pub const VOLUME_ROOTS: &[&str] = &["/var/lib/keel/volumes/", "/run/keel/volumes/"];

const KEYS: &[&str] = &[
    "name",
    "image",
    "command",
    "args",
    "env",
    "ports",
    "mounts",
    "resources",
    "restart",
    "backoff",
    "network",
    "user",
    "group_add",
    "capabilities",
    "readonly",
    "init",
    "healthcheck",
    "after",
    "requires",
    "hostname",
    "workdir",
    "stop_grace",
    "stop_signal",
    "rlimits",
    "sysctls",
    "announce",
    "node_port",
];

/// Where a container came from, for [`cross_check`].
pub(crate) struct Origin {
    /// `containers[i]` or `coreos.units[j]`.
    pub(crate) path: String,
    pub(crate) mark: Mark,
    pub(crate) name: String,
    /// `after` and `requires` entries: their path, position and name.
    pub(crate) deps: Vec<(String, Mark, String)>,
}

/// `[a-z0-9][a-z0-9_.-]{0,62}`: it names the container's cgroup and state
/// directory, so no `/`, no leading dot and nothing shells would mangle.
pub fn container_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a container name: 1-63 of a-z 0-9 _ . -, starting with a letter or digit"
        ))
    }
}

/// An image reference: `[REGISTRY[:PORT]/]PATH[:TAG][@sha256:DIGEST]`.
/// The first component is a registry when more follow and it has a `.` or
/// a `:` or is `localhost` (as docker reads it). Path components are
/// lower-case letters and digits joined by `.`, `_`, `__` or dashes.
pub fn image(s: &str) -> Result<ImageRef, String> {
    Ok(ImageRef::try_from(s)?)
}

/// A published port: `HOST:CONTAINER[/tcp|udp]` or
/// `IPV4:HOST:CONTAINER[/tcp|udp]`, on an address of the node other than
/// loopback: the bridge's NAT does not reach a container from the node's
/// loopback (docs/containers.md, Bridge networking), so such a port is
/// refused here rather than when the container starts.
pub fn port(s: &str) -> Result<Port, String> {
    let p = Port::try_from(s)?;
    if p.host_ip.is_some_and(|h| h.is_loopback()) {
        return Err(format!(
            "{s:?}: ports are not published on loopback addresses (see docs/containers.md, Bridge networking)"
        ));
    }
    Ok(p)
}

/// A bind mount's source: absolute, normal (no `.`, `..` or empty
/// components) and strictly under one of [`VOLUME_ROOTS`].
pub fn bind_source(s: &str) -> Result<(), String> {
    schema::abs_path(s)?;
    if s.len() > 1 && s[1..].split('/').any(|c| c.is_empty() || c == ".") {
        return Err(format!(
            "{s:?} is not a normal path (no //, /./ or trailing /)"
        ));
    }
    if VOLUME_ROOTS.iter().any(|r| s.starts_with(r)) {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not under /var/lib/keel/volumes/ or /run/keel/volumes/: the root filesystem is read-only and the rest of the host is not for containers"
        ))
    }
}

/// An `io_max` device: a normal absolute path under `/dev/` (the node is
/// looked up when the container starts, not here: the config is checked
/// off the node too).
pub fn device(s: &str) -> Result<(), String> {
    schema::abs_path(s)?;
    if s[1..].split('/').any(|c| c.is_empty() || c == ".") {
        return Err(format!(
            "{s:?} is not a normal path (no //, /./ or trailing /)"
        ));
    }
    match s.strip_prefix("/dev/") {
        Some(_) => Ok(()),
        None => Err(format!("{s:?} is not a device under /dev/")),
    }
}

/// `cpus: 1.5`: thousandths of a CPU, 0.01 to 1024.
pub fn millicpus(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a number of CPUs from 0.01 to 1024 (such as 0.5 or 2)");
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |x: &str| x.chars().all(|c| c.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) || int.len() > 5 {
        return Err(bad());
    }
    if frac.len() > 3 {
        return Err(format!("{s:?}: keel counts CPUs in thousandths"));
    }
    let whole: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let thousandths: u64 = format!("{frac:0<3}").parse().map_err(|_| bad())?;
    let m = whole * 1000 + thousandths;
    if (10..=1_024_000).contains(&m) {
        Ok(m)
    } else {
        Err(bad())
    }
}

/// `user`, `user:group`: each a name of the image or a number, as Docker
/// takes them.
pub fn user(s: &str) -> Result<keel_types::UserSpec, String> {
    Ok(keel_types::UserSpec::try_from(s)?)
}

/// A group of `group_add`: a name of the image's /etc/group or a number.
pub fn group(s: &str) -> Result<keel_types::Id, String> {
    Ok(keel_types::Id::group(s)?)
}

/// An environment variable's name.
pub fn env_name(s: &str) -> Result<(), String> {
    if s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a variable name (letters, digits and _, not starting with a digit)"
        ))
    }
}

/// A capability, either case, with or without `CAP_`, or `ALL`.
pub fn capability(s: &str) -> Result<keel_types::CapEntry, String> {
    Ok(keel_types::CapEntry::try_from(s)?)
}

fn text(s: &str) -> Result<(), String> {
    if s.contains('\0') {
        Err("contains a NUL byte".into())
    } else {
        Ok(())
    }
}

fn number(min: u64, max: u64) -> impl Fn(&str) -> Result<u64, String> {
    move |s| match s.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ if max == u64::MAX => Err(format!("{s:?} is not a whole number of at least {min}")),
        _ => Err(format!("{s:?} is not a whole number from {min} to {max}")),
    }
}

pub(crate) fn memory(s: &str) -> Result<u64, String> {
    let n = schema::size(s)?;
    if n < MIN_MEMORY {
        Err(format!("{s:?} is under the 4M minimum"))
    } else {
        Ok(n)
    }
}

/// `containers:`.
pub(crate) fn section(v: &mut V, n: &Node) {
    let Some(list) = v.seq("containers", n) else {
        return;
    };
    for (i, c) in list.iter().enumerate() {
        let path = format!("containers[{i}]");
        let before = v.report.errors.len();
        let Some((container, origin)) = container(v, &path, c) else {
            continue;
        };
        v.origins.push(origin);
        if v.report.errors.len() == before {
            v.item(
                &path,
                c,
                Verdict::Applied,
                format!("container {} ({})", container.name, container.image),
            );
            v.report.config.containers.push(container);
        }
    }
}

/// A list of strings for `command`/`args`: a single string is refused,
/// since keel runs no shell to split it.
fn argv(v: &mut V, path: &str, n: &Node) -> Vec<String> {
    if let Some((t, _)) = n.scalar().filter(|_| !n.is_null()) {
        v.err(
            path,
            n,
            format!("expected a list, found the string {t:?}: keel has no shell to split it; write a list such as [\"/bin/sh\", \"-c\", \"...\"]"),
        );
        return Vec::new();
    }
    v.strings(path, n, text)
}

fn container(v: &mut V, path: &str, n: &Node) -> Option<(Container, Origin)> {
    let e = v.map(path, n)?;
    v.known(path, e, KEYS);
    let get = |k: &str| entry(e, k);
    let name = match get("name") {
        Some(nn) => v.checked(&join(path, "name"), &nn, container_name),
        None => {
            v.err(path, n, "a container needs a name");
            None
        }
    };
    let image_ = match get("image") {
        Some(im) => v.parsed(&join(path, "image"), &im, image),
        None => {
            v.err(path, n, "a container needs an image");
            None
        }
    };
    // Without an image (an error is recorded, so the container is not
    // applied), the rest is still checked, on a draft of docker's empty
    // image `scratch`, so every error of the entry is reported at once.
    let draft = || ImageRef {
        registry: None,
        path: "scratch".into(),
        tag: None,
        digest: None,
    };
    let mut c = Container::new(
        name.as_deref().unwrap_or_default(),
        image_.unwrap_or_else(draft),
    );
    let mut deps = Vec::new();
    for (k, val) in e {
        let key = key_of(k);
        let p = join(path, key);
        match key {
            "command" => c.command = argv(v, &p, val),
            "args" => c.args = argv(v, &p, val),
            "env" => c.env = env(v, &p, val),
            "ports" => c.ports = ports(v, &p, val),
            "mounts" => c.mounts = mounts(v, &p, val),
            "resources" => c.resources = resources(v, &p, val),
            "restart" => {
                if let Some(r) = v.parsed(&p, val, restart) {
                    c.restart = r;
                }
            }
            "backoff" => backoff(v, &p, val, &mut c),
            "network" => {
                if let Some(m) = v.parsed(&p, val, network) {
                    c.network = m;
                }
            }
            "user" => c.user = v.parsed(&p, val, user),
            "group_add" => {
                let Some(list) = v.seq(&p, val) else { continue };
                let mut groups = Vec::new();
                for (i, g) in list.iter().enumerate() {
                    if let Some(g) = v.parsed(&format!("{p}[{i}]"), g, group) {
                        groups.push(g);
                    }
                }
                c.group_add = groups;
            }
            "capabilities" => capabilities(v, &p, val, &mut c),
            "readonly" => c.readonly = v.boolean(&p, val).unwrap_or(false),
            "init" => c.init = v.boolean(&p, val).unwrap_or(false),
            "healthcheck" => c.healthcheck = healthcheck(v, &p, val),
            "after" | "requires" => {
                let Some(list) = v.seq(&p, val) else { continue };
                let mut names = Vec::new();
                for (j, d) in list.iter().enumerate() {
                    let dp = format!("{p}[{j}]");
                    let Some(dn) = v.checked(&dp, d, container_name) else {
                        continue;
                    };
                    if name.as_deref() == Some(dn.as_str()) {
                        v.err(
                            &dp,
                            d,
                            format!("{dn:?} is this container: it cannot wait for itself"),
                        );
                        continue;
                    }
                    deps.push((dp, d.mark, dn.clone()));
                    names.push(dn);
                }
                if key == "after" {
                    c.after = names;
                } else {
                    c.requires = names;
                }
            }
            "hostname" => c.hostname = v.checked(&p, val, schema::label),
            "workdir" => c.workdir = v.checked(&p, val, schema::abs_path),
            "stop_grace" => {
                if let Some(ms) = v.parsed(&p, val, schema::duration_ms) {
                    c.stop_grace_ms = ms;
                }
            }
            "stop_signal" => c.stop_signal = v.parsed(&p, val, schema::stop_signal),
            "rlimits" => c.rlimits = rlimits(v, &p, val),
            "sysctls" => c.sysctls = sysctls(v, &p, val),
            "announce" => c.announce = announce(v, &p, val),
            "node_port" => c.node_port = v.parsed(&p, val, node_port),
            _ => {}
        }
    }
    if !c.ports.is_empty() && c.network != NetMode::Bridge {
        if let Some(pn) = get("ports") {
            let mode = if c.network == NetMode::Host {
                "host"
            } else {
                "none"
            };
            v.err(
                &join(path, "ports"),
                &pn,
                format!("ports are published from keel's bridge: they need network: bridge, not {mode} (with host, the container listens on the node's ports itself)"),
            );
        }
    }
    if c.network == NetMode::Host {
        let node = get("sysctls");
        if let Some(Value::Map(e)) = node.as_ref().map(|n| &n.value) {
            for s in c.sysctls.iter().filter(|s| s.ns == SysctlNs::Net) {
                if let Some((k, _)) = e.iter().find(|(k, _)| key_of(k) == s.name) {
                    v.err(
                        &join(&join(path, "sysctls"), &s.name),
                        k,
                        format!("{} is a sysctl of the network namespace, and with network: host that is the node's: it needs network: bridge or none", s.name),
                    );
                }
            }
        }
    }
    if c.node_port.is_some() && c.network != NetMode::Bridge {
        if let Some(pn) = get("node_port") {
            let mode = if c.network == NetMode::Host {
                "host"
            } else {
                "none"
            };
            v.err(
                &join(path, "node_port"),
                &pn,
                format!("node_port opens a node port to a container on keel's bridge: it needs network: bridge, not {mode}"),
            );
        }
    }
    let name = name?;
    let origin = Origin {
        path: path.to_string(),
        mark: n.mark,
        name,
        deps,
    };
    Some((c, origin))
}

pub(crate) fn restart(s: &str) -> Result<Restart, String> {
    match s {
        "always" => Ok(Restart::Always),
        "on-failure" => Ok(Restart::OnFailure),
        "never" => Ok(Restart::Never),
        _ => Err(format!("{s:?} is not always, on-failure or never")),
    }
}

/// `node_port:`: a name keel resolves to one of its own ports. The API's
/// port is not among them: reaching it is being root on the node.
pub(crate) fn node_port(s: &str) -> Result<NodePort, String> {
    match s {
        "kv" => Ok(NodePort::Kv),
        "api" => Err(
            "\"api\" cannot be opened to a container: the management API is root on the node (the one node port a container may reach is kv)"
                .into(),
        ),
        _ => Err(format!(
            "{s:?} is not a node port a container may reach (kv is the one there is)"
        )),
    }
}

pub(crate) fn network(s: &str) -> Result<NetMode, String> {
    match s {
        "host" => Ok(NetMode::Host),
        "none" => Ok(NetMode::None),
        "bridge" => Ok(NetMode::Bridge),
        _ => Err(format!("{s:?} is not host, none or bridge")),
    }
}

fn env(v: &mut V, path: &str, n: &Node) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |v: &mut V, p: &str, at: &Node, name: String, value: String| {
        if out.iter().any(|(k, _)| *k == name) {
            v.err(p, at, format!("{name} is set twice"));
        } else {
            out.push((name, value));
        }
    };
    match &n.value {
        Value::Map(e) => {
            for (k, val) in e {
                let name = key_of(k).to_string();
                let p = join(path, &name);
                if let Err(m) = env_name(&name) {
                    v.err(&p, k, m);
                    continue;
                }
                if let Some(value) = v.checked(&p, val, text) {
                    add(v, &p, k, name, value);
                }
            }
        }
        _ => {
            let Some(list) = v.seq(path, n) else {
                return out;
            };
            for (i, it) in list.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let pair = v.parsed(&p, it, |s| {
                    let (k, val) = s
                        .split_once('=')
                        .ok_or_else(|| format!("{s:?} is not NAME=value"))?;
                    env_name(k)?;
                    text(val)?;
                    Ok((k.to_string(), val.to_string()))
                });
                if let Some((k, val)) = pair {
                    add(v, &p, it, k, val);
                }
            }
        }
    }
    out
}

fn ports(v: &mut V, path: &str, n: &Node) -> Vec<Port> {
    let mut out: Vec<Port> = Vec::new();
    let Some(list) = v.seq(path, n) else {
        return out;
    };
    for (i, it) in list.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some(port) = v.parsed(&p, it, port) else {
            continue;
        };
        if let Some(j) = out
            .iter()
            .position(|o| o.host_port == port.host_port && o.protocol == port.protocol)
        {
            v.err(
                &p,
                it,
                format!(
                    "host port {}/{} is already published by {path}[{j}]",
                    port.host_port, port.protocol
                ),
            );
            continue;
        }
        out.push(port);
    }
    out
}

fn mounts(v: &mut V, path: &str, n: &Node) -> Vec<MountSpec> {
    let mut out: Vec<MountSpec> = Vec::new();
    let Some(list) = v.seq(path, n) else {
        return out;
    };
    for (i, it) in list.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some(e) = v.map(&p, it) else { continue };
        let get = |k: &str| entry(e, k);
        let kind = match get("type") {
            Some(t) => v.parsed(&join(&p, "type"), &t, |s| match s {
                "bind" | "tmpfs" => Ok(s.to_string()),
                _ => Err(format!("{s:?} is not bind or tmpfs")),
            }),
            None => {
                v.err(&p, it, "a mount needs a type: bind or tmpfs");
                None
            }
        };
        let Some(kind) = kind else { continue };
        let allowed: &[&str] = if kind == "bind" {
            &["type", "source", "target", "readonly"]
        } else {
            &["type", "target", "size"]
        };
        v.known(&p, e, allowed);
        let target = match get("target") {
            Some(t) => v.checked(&join(&p, "target"), &t, schema::abs_path),
            None => {
                v.err(&p, it, "a mount needs a target");
                None
            }
        };
        let mount = if kind == "bind" {
            let source = match get("source") {
                Some(s) => v.checked(&join(&p, "source"), &s, bind_source),
                None => {
                    v.err(&p, it, "a bind mount needs a source");
                    None
                }
            };
            let readonly = get("readonly")
                .and_then(|r| v.boolean(&join(&p, "readonly"), &r))
                .unwrap_or(false);
            match (source, target) {
                (Some(source), Some(target)) => MountSpec::Bind {
                    source,
                    target,
                    readonly,
                },
                _ => continue,
            }
        } else {
            let size = match get("size") {
                Some(s) => v.parsed(&join(&p, "size"), &s, |s| match schema::size(s)? {
                    0 => Err(
                        "a tmpfs size is more than 0 (leave it out for the kernel's default)"
                            .into(),
                    ),
                    n => Ok(n),
                }),
                None => Some(0),
            };
            match (size, target) {
                (Some(size), Some(target)) => MountSpec::Tmpfs { target, size },
                _ => continue,
            }
        };
        let target = mount_target(&mount);
        if let Some(j) = out.iter().position(|m| mount_target(m) == target) {
            v.err(
                &p,
                it,
                format!("{target} is already mounted by {path}[{j}]"),
            );
            continue;
        }
        out.push(mount);
    }
    out
}

fn mount_target(m: &MountSpec) -> &str {
    match m {
        MountSpec::Bind { target, .. } | MountSpec::Tmpfs { target, .. } => target,
    }
}

fn rlimits(v: &mut V, path: &str, n: &Node) -> Vec<Rlimit> {
    let mut out = Vec::new();
    let Some(e) = v.map(path, n) else { return out };
    let names: Vec<&str> = Resource::names().collect();
    v.known(path, e, &names);
    for (k, val) in e {
        let key = key_of(k);
        let Ok(resource) = Resource::try_from(key) else {
            continue; // named by `known`
        };
        if let Some(limits) = v.parsed(&join(path, key), val, |s| Ok(Limits::try_from(s)?)) {
            out.push(Rlimit { resource, limits });
        }
    }
    out
}

/// The longest sysctl name and value keel takes.
pub const SYSCTL_NAME_MAX: usize = 256;
pub const SYSCTL_VALUE_MAX: usize = 1024;

/// A sysctl's name, dotted (`net.ipv4.ip_forward`) or slashed
/// (`net/ipv4/conf/eth0.1/forwarding`, where a component may hold a dot),
/// as its /proc/sys path and namespace. Only the sysctls of the
/// container's own namespaces are taken, as Docker and runc take them:
/// `net.*` (network), `kernel.shm*`, `kernel.msg*`, `kernel.sem` and
/// `fs.mqueue.*` (IPC). Whether `net.*` is allowed depends on the
/// container's network, checked by the caller.
pub fn sysctl_name(s: &str) -> Result<(String, SysctlNs), String> {
    if s.is_empty() || s.len() > SYSCTL_NAME_MAX {
        return Err(format!(
            "{s:?} is not a sysctl name: empty or over {SYSCTL_NAME_MAX} bytes"
        ));
    }
    let slashed = s.contains('/');
    let comps: Vec<&str> = s.split(if slashed { '/' } else { '.' }).collect();
    let comp_ok = |c: &&str| {
        !c.is_empty()
            && *c != "."
            && *c != ".."
            && c.chars().all(|ch| {
                ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' || (slashed && ch == '.')
            })
    };
    if comps.len() < 2 || !comps.iter().all(comp_ok) {
        return Err(format!(
            "{s:?} is not a sysctl name: components of letters, digits, _ and - joined by dots (or by slashes, a component then may hold a dot), none empty, . or .."
        ));
    }
    let ns = match comps[..] {
        ["net", ..] => Some(SysctlNs::Net),
        ["kernel", k] if k.starts_with("shm") || k.starts_with("msg") || k == "sem" => {
            Some(SysctlNs::Ipc)
        }
        ["fs", "mqueue", _, ..] => Some(SysctlNs::Ipc),
        _ => None,
    };
    let ns = ns.ok_or_else(|| {
        "not a namespaced sysctl: a container may set those of its own network namespace (net.*) and IPC namespace (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*), as Docker allows; the others are the node's".to_string()
    })?;
    Ok((comps.join("/"), ns))
}

/// A sysctl's value: at most [`SYSCTL_VALUE_MAX`] bytes, not empty, no
/// newline (the kernel would read a second value) or NUL.
pub fn sysctl_value(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > SYSCTL_VALUE_MAX {
        return Err(format!("a sysctl value is 1 to {SYSCTL_VALUE_MAX} bytes"));
    }
    if s.contains(['\n', '\r', '\0']) {
        return Err("a sysctl value has no newline or NUL".into());
    }
    Ok(())
}

/// `NAME` and `VALUE` as one [`Sysctl`].
pub fn sysctl(name: &str, value: &str) -> Result<Sysctl, String> {
    let (path, ns) = sysctl_name(name)?;
    sysctl_value(value)?;
    Ok(Sysctl {
        name: name.to_string(),
        path,
        value: value.to_string(),
        ns,
    })
}

fn sysctls(v: &mut V, path: &str, n: &Node) -> Vec<Sysctl> {
    let mut out: Vec<Sysctl> = Vec::new();
    let Some(e) = v.map(path, n) else { return out };
    for (k, val) in e {
        let name = key_of(k);
        let p = join(path, name);
        let (sys_path, ns) = match sysctl_name(name) {
            Ok(x) => x,
            Err(m) => {
                v.err(&p, k, m);
                continue;
            }
        };
        let Some(value) = v.checked(&p, val, sysctl_value) else {
            continue;
        };
        if let Some(o) = out.iter().find(|o| o.path == sys_path) {
            v.err(&p, k, format!("{name} is {} again", o.name));
            continue;
        }
        out.push(Sysctl {
            name: name.to_string(),
            path: sys_path,
            value,
            ns,
        });
    }
    out
}

fn resources(v: &mut V, path: &str, n: &Node) -> Resources {
    let mut r = Resources::default();
    let Some(e) = v.map(path, n) else { return r };
    v.known(
        path,
        e,
        &[
            "memory",
            "memory_high",
            "cpus",
            "cpu_weight",
            "pids",
            "io_weight",
            "io_max",
        ],
    );
    for (k, val) in e {
        let key = key_of(k);
        let p = join(path, key);
        match key {
            "memory" => r.memory = v.parsed(&p, val, memory),
            "memory_high" => r.memory_high = v.parsed(&p, val, memory),
            "cpus" => r.millicpus = v.parsed(&p, val, millicpus),
            "cpu_weight" => r.cpu_weight = v.parsed(&p, val, number(1, 10_000)),
            "io_weight" => r.io_weight = v.parsed(&p, val, number(1, 10_000)),
            "pids" => r.pids = v.parsed(&p, val, number(1, u64::MAX)),
            "io_max" => r.io_max = io_max(v, &p, val),
            _ => {}
        }
    }
    if let (Some(max), Some(high)) = (r.memory, r.memory_high) {
        if high > max {
            v.err(
                path,
                n,
                "memory_high is over memory: the container would be killed before it is throttled",
            );
        }
    }
    r
}

const IO_MAX_LIMITS: [&str; 4] = ["rbps", "wbps", "riops", "wiops"];

/// `io_max:` a list of `{device, rbps, wbps, riops, wiops}`, a device at
/// most once, each entry with at least one limit.
fn io_max(v: &mut V, path: &str, n: &Node) -> Vec<IoMax> {
    let mut out: Vec<IoMax> = Vec::new();
    let Some(list) = v.seq(path, n) else {
        return out;
    };
    for (i, it) in list.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some(e) = v.map(&p, it) else { continue };
        v.known(&p, e, &["device", "rbps", "wbps", "riops", "wiops"]);
        let before = v.report.errors.len();
        let mut m = IoMax::default();
        let mut device_given = false;
        let mut limits = 0;
        for (k, val) in e {
            let key = key_of(k);
            let kp = join(&p, key);
            let bps = |s: &str| match schema::size(s)? {
                0 => Err(format!("{s:?}: a limit is more than 0 bytes per second")),
                n => Ok(n),
            };
            match key {
                "device" => {
                    device_given = true;
                    m.device = v.checked(&kp, val, device).unwrap_or_default();
                }
                "rbps" => m.rbps = v.parsed(&kp, val, bps),
                "wbps" => m.wbps = v.parsed(&kp, val, bps),
                "riops" => m.riops = v.parsed(&kp, val, number(1, u64::MAX)),
                "wiops" => m.wiops = v.parsed(&kp, val, number(1, u64::MAX)),
                _ => continue,
            }
            limits += usize::from(IO_MAX_LIMITS.contains(&key));
        }
        if !device_given {
            v.err(&p, it, "an io_max entry needs a device, such as /dev/vda");
        }
        if limits == 0 {
            v.err(
                &p,
                it,
                "an io_max entry needs at least one of rbps, wbps, riops, wiops",
            );
        }
        if v.report.errors.len() != before {
            continue;
        }
        if let Some(j) = out.iter().position(|o| o.device == m.device) {
            v.err(
                &p,
                it,
                format!("{} is already limited by {path}[{j}]", m.device),
            );
            continue;
        }
        out.push(m);
    }
    out
}

fn backoff(v: &mut V, path: &str, n: &Node, c: &mut Container) {
    let Some(e) = v.map(path, n) else { return };
    v.known(path, e, &["initial", "max", "reset_after"]);
    for (k, val) in e {
        let key = key_of(k);
        let p = join(path, key);
        let Some(ms) = v.parsed(&p, val, schema::duration_ms) else {
            continue;
        };
        match key {
            "initial" if ms == 0 => v.err(&p, val, "the first delay is more than 0"),
            "initial" => c.backoff_ms = ms,
            "max" => c.backoff_max_ms = ms,
            "reset_after" => c.backoff_reset_ms = ms,
            _ => {}
        }
    }
    if c.backoff_ms > c.backoff_max_ms {
        v.err(
            path,
            n,
            format!(
                "initial ({} ms) is over max ({} ms)",
                c.backoff_ms, c.backoff_max_ms
            ),
        );
    }
}

fn capabilities(v: &mut V, path: &str, n: &Node, c: &mut Container) {
    let Some(e) = v.map(path, n) else { return };
    v.known(path, e, &["add", "drop"]);
    for (k, val) in e {
        let key = key_of(k);
        let p = join(path, key);
        let Some(list) = v.seq(&p, val) else { continue };
        let mut out = Vec::new();
        for (i, it) in list.iter().enumerate() {
            if let Some(cap) = v.parsed(&format!("{p}[{i}]"), it, capability) {
                if !out.contains(&cap) {
                    out.push(cap);
                }
            }
        }
        match key {
            "add" => c.cap_add = out,
            "drop" => c.cap_drop = out,
            _ => {}
        }
    }
    let both: Vec<String> = c
        .cap_add
        .iter()
        .filter(|x| c.cap_drop.contains(x))
        .map(ToString::to_string)
        .collect();
    if !both.is_empty() {
        v.err(
            path,
            n,
            format!("{} both added and dropped", both.join(", ")),
        );
    }
}

/// `announce: {name: web, port: 8080}`: both needed; the name is one DNS
/// label (it is a key segment under `/services`).
fn announce(v: &mut V, path: &str, n: &Node) -> Option<Announce> {
    let e: &Entries = v.map(path, n)?;
    v.known(path, e, &["name", "port"]);
    let name = match entry(e, "name") {
        Some(nn) => v.checked(&join(path, "name"), &nn, schema::label),
        None => {
            v.err(path, n, "announce needs a name (the service's name)");
            None
        }
    };
    let port = match entry(e, "port") {
        Some(pn) => v.parsed(&join(path, "port"), &pn, |s: &str| match s.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(format!("{s:?} is not a port (1-65535)")),
        }),
        None => {
            v.err(
                path,
                n,
                "announce needs a port (the one clients use on the node)",
            );
            None
        }
    };
    Some(Announce {
        name: name?,
        port: port?,
    })
}

fn healthcheck(v: &mut V, path: &str, n: &Node) -> Option<Healthcheck> {
    let e: &Entries = v.map(path, n)?;
    v.known(
        path,
        e,
        &[
            "tcp",
            "http",
            "command",
            "interval",
            "timeout",
            "retries",
            "start_period",
        ],
    );
    let mut h = Healthcheck {
        probe: Probe::Tcp(0),
        interval_ms: DEFAULT_HEALTH_INTERVAL_MS,
        timeout_ms: DEFAULT_HEALTH_TIMEOUT_MS,
        retries: DEFAULT_HEALTH_RETRIES,
        start_period_ms: 0,
    };
    let mut probes = Vec::new();
    let port_num = |s: &str| match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{s:?} is not a port (1-65535)")),
    };
    let mut ok = true;
    for (k, val) in e {
        let key = key_of(k);
        let p = join(path, key);
        let before = v.report.errors.len();
        match key {
            "tcp" => {
                probes.push(key);
                if let Some(port) = v.parsed(&p, val, port_num) {
                    h.probe = Probe::Tcp(port);
                }
            }
            "http" => {
                probes.push(key);
                if let Some(probe) = http_probe(v, &p, val) {
                    h.probe = probe;
                }
            }
            "command" => {
                probes.push(key);
                let cmd = argv(v, &p, val);
                if cmd.is_empty() && v.report.errors.len() == before {
                    v.err(&p, val, "an empty command");
                }
                h.probe = Probe::Command(cmd);
            }
            "interval" | "timeout" | "start_period" => {
                if let Some(ms) = v.parsed(&p, val, schema::duration_ms) {
                    match key {
                        "interval" if ms == 0 => v.err(&p, val, "the interval is more than 0"),
                        "interval" => h.interval_ms = ms,
                        "timeout" if ms == 0 => v.err(&p, val, "the timeout is more than 0"),
                        "timeout" => h.timeout_ms = ms,
                        _ => h.start_period_ms = ms,
                    }
                }
            }
            "retries" => {
                if let Some(r) = v.parsed(&p, val, number(1, 1000)) {
                    h.retries = r as u32;
                }
            }
            _ => {}
        }
        ok &= v.report.errors.len() == before;
    }
    if probes.len() != 1 {
        let found = if probes.is_empty() {
            "none".to_string()
        } else {
            probes.join(" and ")
        };
        v.err(
            path,
            n,
            format!("a health check has exactly one of tcp, http or command (found {found})"),
        );
        return None;
    }
    if h.timeout_ms > h.interval_ms {
        v.err(
            path,
            n,
            format!(
                "timeout ({} ms) is over interval ({} ms)",
                h.timeout_ms, h.interval_ms
            ),
        );
        return None;
    }
    ok.then_some(h)
}

/// `http: "PORT/path"` or `http: {port: PORT, path: /path}`.
fn http_probe(v: &mut V, path: &str, n: &Node) -> Option<Probe> {
    let url_path = |s: &str| {
        if s.starts_with('/') && !s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Ok(s.to_string())
        } else {
            Err(format!("{s:?} is not a URL path starting with /"))
        }
    };
    let port_num = |s: &str| match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{s:?} is not a port (1-65535)")),
    };
    if let Value::Map(e) = &n.value {
        v.known(path, e, &["port", "path"]);
        let get = |k: &str| entry(e, k);
        let port = match get("port") {
            Some(p) => v.parsed(&join(path, "port"), &p, port_num),
            None => {
                v.err(path, n, "an http check needs a port");
                None
            }
        };
        let url = match get("path") {
            Some(p) => v.parsed(&join(path, "path"), &p, url_path),
            None => Some("/".to_string()),
        };
        return Some(Probe::Http {
            port: port?,
            path: url?,
        });
    }
    v.parsed(path, n, |s| {
        let (p, rest) = match s.find('/') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, "/"),
        };
        Ok(Probe::Http {
            port: port_num(p).map_err(|e| format!("{e}: write PORT/path such as 8080/healthz"))?,
            path: url_path(rest)?,
        })
    })
}

/// The checks across containers: unique names, `after`/`requires` that
/// name containers, no cycles.
pub(crate) fn cross_check(v: &mut V) {
    let origins = std::mem::take(&mut v.origins);
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, o) in origins.iter().enumerate() {
        if let Some(&j) = index.get(o.name.as_str()) {
            let first = &origins[j];
            v.report.errors.push(crate::validate::Issue {
                path: o.path.clone(),
                line: o.mark.line,
                col: o.mark.col,
                message: format!(
                    "container name {:?} is already used by {} (line {})",
                    o.name, first.path, first.mark.line
                ),
            });
        } else {
            index.insert(&o.name, i);
        }
    }
    let names: Vec<&str> = origins.iter().map(|o| o.name.as_str()).collect();
    for o in &origins {
        for (path, mark, dep) in &o.deps {
            if !index.contains_key(dep.as_str()) {
                let near = keel_types::text::nearest(dep, names.iter().copied())
                    .map(|n| format!(" (did you mean {n:?}?)"))
                    .unwrap_or_default();
                v.report.errors.push(crate::validate::Issue {
                    path: path.clone(),
                    line: mark.line,
                    col: mark.col,
                    message: format!("no container is named {dep:?}{near}"),
                });
            }
        }
    }
    // Depth-first search over after + requires; an edge back to a container
    // on the stack closes a cycle, reported at that edge.
    let edges: Vec<Vec<(usize, usize)>> = origins
        .iter()
        .map(|o| {
            o.deps
                .iter()
                .enumerate()
                .filter_map(|(d, (_, _, name))| index.get(name.as_str()).map(|&t| (d, t)))
                .collect()
        })
        .collect();
    let mut state = vec![0u8; origins.len()]; // 0 new, 1 on the stack, 2 done
    for start in 0..origins.len() {
        if state[start] != 0 || index.get(origins[start].name.as_str()) != Some(&start) {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            top.1 += 1;
            if let Some(&(d, target)) = edges[node].get(next) {
                match state[target] {
                    0 => {
                        state[target] = 1;
                        stack.push((target, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|(n, _)| *n == target).unwrap_or(0);
                        let mut cycle: Vec<&str> = stack[from..]
                            .iter()
                            .map(|(n, _)| origins[*n].name.as_str())
                            .collect();
                        cycle.push(&origins[target].name);
                        let (path, mark, _) = &origins[node].deps[d];
                        v.report.errors.push(crate::validate::Issue {
                            path: path.clone(),
                            line: mark.line,
                            col: mark.col,
                            message: format!("after/requires form a cycle: {}", cycle.join(" -> ")),
                        });
                    }
                    _ => {}
                }
            } else {
                state[node] = 2;
                stack.pop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{validate, Issue, Report};

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// The section with its first entry at line 3.
    fn section(yaml: &str) -> Report {
        validate(&format!("#cloud-config\ncontainers:\n{yaml}"))
    }

    fn error<'a>(r: &'a Report, path: &str) -> &'a Issue {
        r.errors
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("no error at {path}: {:#?}", r.errors))
    }

    #[test]
    fn rlimits() {
        let r = section(
            "  - name: a
    image: busybox
    network: none
    rlimits:
      nofile: 1024:4096
      core: 0
      stack: unlimited
",
        );
        assert!(r.errors.is_empty(), "{:#?}", r.errors);
        let got: Vec<(String, u64, u64)> = r.config.containers[0]
            .rlimits
            .iter()
            .map(|l| (l.resource.to_string(), l.limits.soft(), l.limits.hard()))
            .collect();
        assert_eq!(
            got,
            [
                ("nofile".to_string(), 1024, 4096),
                ("core".into(), 0, 0),
                ("stack".into(), u64::MAX, u64::MAX)
            ]
        );
        let r = section(
            "  - name: a
    image: busybox
    rlimits:
      nofiles: 10
      nproc: 9:8
      cpu: lots
",
        );
        let e = error(&r, "containers[0].rlimits.nofiles");
        assert!(
            e.message.contains("did you mean \"nofile\""),
            "{}",
            e.message
        );
        assert_eq!(e.line, 6);
        let e = error(&r, "containers[0].rlimits.nproc");
        assert!(e.message.contains("soft limit"), "{}", e.message);
        let e = error(&r, "containers[0].rlimits.cpu");
        assert!(
            e.message.contains("not a number or unlimited"),
            "{}",
            e.message
        );
    }

    #[test]
    fn sysctls() {
        let r = section(
            "  - name: a
    image: busybox
    network: none
    sysctls:
      net.ipv4.ip_unprivileged_port_start: 1024
      net/ipv4/conf/eth0.1/forwarding: 1
      kernel.shmmax: \"68719476736\"
      kernel.msgmnb: 65536
      kernel.sem: 250 32000 32 128
      fs.mqueue.msg_max: 20
",
        );
        assert!(r.errors.is_empty(), "{:#?}", r.errors);
        let got: Vec<(&str, &str, SysctlNs)> = r.config.containers[0]
            .sysctls
            .iter()
            .map(|s| (s.path.as_str(), s.value.as_str(), s.ns))
            .collect();
        assert_eq!(
            got,
            [
                ("net/ipv4/ip_unprivileged_port_start", "1024", SysctlNs::Net),
                ("net/ipv4/conf/eth0.1/forwarding", "1", SysctlNs::Net),
                ("kernel/shmmax", "68719476736", SysctlNs::Ipc),
                ("kernel/msgmnb", "65536", SysctlNs::Ipc),
                ("kernel/sem", "250 32000 32 128", SysctlNs::Ipc),
                ("fs/mqueue/msg_max", "20", SysctlNs::Ipc),
            ]
        );
        // Refused by name, each at its own path; the controls above are
        // the same shapes allowed.
        let r = section(
            "  - name: a
    image: busybox
    sysctls:
      kernel.panic: 1
      kernel.shmmax: 1
      vm.overcommit_memory: 1
      fs.mqueue: 1
      net..ipv4: 1
      net/ipv4/x y: 1
      net/../../kernel/panic: 1
      net.ipv4.ip_forward: \"1\\n0\"
      net.core.somaxconn: \"\"
",
        );
        let e = error(&r, "containers[0].sysctls.kernel.panic");
        assert!(
            e.message.starts_with("not a namespaced sysctl"),
            "{}",
            e.message
        );
        assert_eq!(e.line, 6);
        assert!(error(&r, "containers[0].sysctls.vm.overcommit_memory")
            .message
            .contains("not a namespaced sysctl"));
        assert!(error(&r, "containers[0].sysctls.fs.mqueue")
            .message
            .contains("not a namespaced sysctl"));
        for bad in ["net..ipv4", "net/ipv4/x y", "net/../../kernel/panic"] {
            let e = error(&r, &format!("containers[0].sysctls.{bad}"));
            assert!(e.message.contains("not a sysctl name"), "{}", e.message);
        }
        assert!(error(&r, "containers[0].sysctls.net.ipv4.ip_forward")
            .message
            .contains("no newline"));
        assert!(error(&r, "containers[0].sysctls.net.core.somaxconn")
            .message
            .contains("1 to 1024 bytes"));
        assert!(!r
            .errors
            .iter()
            .any(|e| e.path == "containers[0].sysctls.kernel.shmmax"));
        assert_eq!(r.errors.len(), 8, "{:#?}", r.errors);

        // net.* needs a network namespace of the container's own; the
        // IPC ones do not (it always has its own IPC namespace).
        let r = section(
            "  - name: a
    image: busybox
    sysctls:
      net.ipv4.ip_forward: 1
      kernel.shmmni: 100
    network: host
",
        );
        let e = error(&r, "containers[0].sysctls.net.ipv4.ip_forward");
        assert!(e.message.contains("network: host"), "{}", e.message);
        assert_eq!(r.errors.len(), 1, "{:#?}", r.errors);
        // The same name twice, once per form.
        let r = section(
            "  - name: a
    image: busybox
    sysctls:
      net.ipv4.ip_forward: 1
      net/ipv4/ip_forward: 0
",
        );
        let e = error(&r, "containers[0].sysctls.net/ipv4/ip_forward");
        assert!(e.message.contains("again"), "{}", e.message);
    }

    #[test]
    fn io_max() {
        let r = section(
            "  - name: a
    image: busybox
    resources:
      io_max:
        - device: /dev/vda
          rbps: 10M
        - {device: /dev/disk/by-id/data, wbps: 2G, riops: 1, wiops: 20000}
",
        );
        assert!(r.errors.is_empty(), "{:#?}", r.errors);
        assert_eq!(
            r.config.containers[0].resources.io_max,
            [
                IoMax {
                    device: "/dev/vda".into(),
                    rbps: Some(10 << 20),
                    ..IoMax::default()
                },
                IoMax {
                    device: "/dev/disk/by-id/data".into(),
                    rbps: None,
                    wbps: Some(2 << 30),
                    riops: Some(1),
                    wiops: Some(20_000),
                }
            ]
        );
        // Errors on the lines of their entries, not of `resources`.
        let r = section(
            "  - name: a
    image: busybox
    resources:
      io_max:
        - device: /dev/vda
          rbps: 10M
        - device: /dev/vdb
          wiops: none
        - {wbps: 1M}
",
        );
        assert_eq!(r.errors.len(), 2, "{:#?}", r.errors);
        let e = error(&r, "containers[0].resources.io_max[1].wiops");
        assert_eq!(e.line, 10);
        assert!(e.message.contains("\"none\""), "{}", e.message);
        let e = error(&r, "containers[0].resources.io_max[2]");
        assert_eq!(e.line, 11);
        assert!(e.message.contains("needs a device"), "{}", e.message);
        assert!(r.config.containers.is_empty());
    }

    #[test]
    fn every_key() {
        let r = section(
            "  - name: web
    image: registry.example:5000/team/web:1.2
    command: [/bin/web]
    args: [--port, '8080']
    env:
      MODE: production
      WORKERS: 4
    ports: ['8080:80', '10.0.2.15:5353:53/udp']
    mounts:
      - {type: bind, source: /var/lib/keel/volumes/web, target: /data, readonly: yes}
      - {type: tmpfs, target: /tmp, size: 64M}
    resources:
      memory: 256M
      memory_high: 200M
      cpus: 1.5
      cpu_weight: 200
      pids: 512
      io_weight: 50
      io_max: [{device: /dev/vda, rbps: 10M, wbps: 1048576, riops: 1000, wiops: 500}]
    restart: on-failure
    backoff: {initial: 500ms, max: 1m, reset_after: 1h}
    network: bridge
    user: '1000:1000'
    capabilities: {add: [net_bind_service, CAP_CHOWN], drop: [all]}
    readonly: true
    init: true
    healthcheck: {http: 80/healthz, interval: 5s, timeout: 1s, retries: 5, start_period: 30s}
    hostname: web-1
    workdir: /srv
    stop_grace: 30s
    stop_signal: SIGQUIT
  - name: db
    image: postgres:16@sha256:SHA
    env: [POSTGRES_DB=app, 'EMPTY=']
    network: host
    healthcheck: {tcp: 5432}
  - name: job
    image: busybox
    network: none
    after: [db]
    requires: [web]
    healthcheck:
      command: [/bin/check, --quick]
"
            .replace("SHA", SHA)
            .as_str(),
        );
        assert!(r.accepted(), "{:#?}", r.errors);
        let item = r.items.iter().find(|i| i.path == "containers[0]").unwrap();
        assert_eq!(item.verdict, Verdict::Applied);
        assert_eq!(item.line, 3);
        assert_eq!(
            item.note,
            "container web (registry.example:5000/team/web:1.2)"
        );
        let [web, db, job] = &r.config.containers[..] else {
            panic!("{:#?}", r.config.containers)
        };
        assert_eq!(web.command, ["/bin/web"]);
        assert_eq!(web.args, ["--port", "8080"]);
        assert_eq!(
            web.env,
            [
                ("MODE".to_string(), "production".to_string()),
                ("WORKERS".to_string(), "4".to_string())
            ]
        );
        assert_eq!(
            web.ports,
            [
                Port {
                    host_ip: None,
                    host_port: 8080,
                    container_port: 80,
                    protocol: crate::model::Protocol::Tcp
                },
                Port {
                    host_ip: Some(std::net::Ipv4Addr::new(10, 0, 2, 15)),
                    host_port: 5353,
                    container_port: 53,
                    protocol: crate::model::Protocol::Udp
                }
            ]
        );
        assert_eq!(
            web.mounts,
            [
                MountSpec::Bind {
                    source: "/var/lib/keel/volumes/web".into(),
                    target: "/data".into(),
                    readonly: true
                },
                MountSpec::Tmpfs {
                    target: "/tmp".into(),
                    size: 64 << 20
                }
            ]
        );
        assert_eq!(
            web.resources,
            Resources {
                memory: Some(256 << 20),
                memory_high: Some(200 << 20),
                millicpus: Some(1500),
                cpu_weight: Some(200),
                pids: Some(512),
                io_weight: Some(50),
                io_max: vec![IoMax {
                    device: "/dev/vda".into(),
                    rbps: Some(10 << 20),
                    wbps: Some(1 << 20),
                    riops: Some(1000),
                    wiops: Some(500)
                }]
            }
        );
        assert_eq!(web.restart, Restart::OnFailure);
        assert_eq!(
            (web.backoff_ms, web.backoff_max_ms, web.backoff_reset_ms),
            (500, 60_000, 3_600_000)
        );
        assert_eq!(
            web.user,
            Some(crate::model::UserSpec {
                user: crate::model::Id::Num(1000),
                group: Some(crate::model::Id::Num(1000))
            })
        );
        let shown =
            |l: &[keel_types::CapEntry]| l.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        assert_eq!(shown(&web.cap_add), ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"]);
        assert_eq!(shown(&web.cap_drop), ["ALL"]);
        assert!(web.readonly);
        assert!(web.init);
        assert_eq!(
            web.healthcheck,
            Some(Healthcheck {
                probe: Probe::Http {
                    port: 80,
                    path: "/healthz".into()
                },
                interval_ms: 5000,
                timeout_ms: 1000,
                retries: 5,
                start_period_ms: 30_000
            })
        );
        assert_eq!(web.hostname.as_deref(), Some("web-1"));
        assert_eq!(web.workdir.as_deref(), Some("/srv"));
        assert_eq!(web.stop_grace_ms, 30_000);
        assert_eq!(web.stop_signal, Some(crate::model::Signal(3)));
        assert_eq!(db.stop_signal, None, "the image's, else SIGTERM");
        assert!(!db.init, "init is off unless asked");
        assert_eq!(db.network, NetMode::Host);
        assert_eq!(db.env[1], ("EMPTY".to_string(), String::new()));
        assert_eq!(db.healthcheck.as_ref().unwrap().probe, Probe::Tcp(5432));
        assert_eq!(job.network, NetMode::None);
        assert_eq!(
            (job.after.as_slice(), job.requires.as_slice()),
            (&["db".to_string()][..], &["web".to_string()][..])
        );
        let h = job.healthcheck.as_ref().unwrap();
        assert_eq!(
            h.probe,
            Probe::Command(vec!["/bin/check".into(), "--quick".into()])
        );
    }

    #[test]
    fn defaults() {
        let r =
            section("  - name: app\n    image: busybox\n    healthcheck: {http: {port: 8080}}\n");
        assert!(r.accepted(), "{:#?}", r.errors);
        let c = &r.config.containers[0];
        let mut want = Container::new("app", image("busybox").unwrap());
        want.healthcheck = Some(Healthcheck {
            probe: Probe::Http {
                port: 8080,
                path: "/".into(),
            },
            interval_ms: 10_000,
            timeout_ms: 2_000,
            retries: 3,
            start_period_ms: 0,
        });
        assert_eq!(*c, want);
        assert_eq!((c.restart, c.network), (Restart::Always, NetMode::Bridge));
        assert_eq!(c.node_port, None, "no door into the node by default");
        let r = section("  - name: app\n    image: busybox\n    node_port: kv\n");
        assert!(r.accepted(), "{:#?}", r.errors);
        assert_eq!(r.config.containers[0].node_port, Some(NodePort::Kv));
        assert_eq!(
            (
                c.backoff_ms,
                c.backoff_max_ms,
                c.backoff_reset_ms,
                c.stop_grace_ms
            ),
            (10_000, 300_000, 600_000, 10_000)
        );
    }

    /// Each bad value: the keys after `name` and `image` (from line 5), the
    /// error's path, line and what its message says.
    #[test]
    fn every_error_names_its_path_and_line() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, usize, &str)] = &[
            ("nam: x", "nam", 5, "did you mean \"name\""),
            ("command: /bin/sh -c x", "command", 5, "keel has no shell"),
            ("args: [a, [b]]", "args[1]", 5, "expected a string"),
            ("env: {9BAD: x}", "env.9BAD", 5, "not a variable name"),
            ("env: ['A=1', 'A=2']", "env[1]", 5, "set twice"),
            ("env: [NOEQ]", "env[0]", 5, "NAME=value"),
            ("env: x", "env", 5, "expected a list"),
            ("ports: ['99999:80']", "ports[0]", 5, "not a port"),
            ("ports: ['1.2.3:80:80']", "ports[0]", 5, "not an IPv4"),
            ("ports: ['80:80/sctp']", "ports[0]", 5, "not tcp or udp"),
            ("ports: ['80']", "ports[0]", 5, "HOST:CONTAINER"),
            ("ports: ['80:80', '80:81']", "ports[1]", 5, "already published by"),
            ("ports: ['127.0.0.1:8080:80']", "ports[0]", 5, "not published on loopback addresses"),
            ("network: host\n    ports: ['80:80']", "ports", 6, "need network: bridge"),
            ("network: wifi", "network", 5, "not host, none or bridge"),
            ("node_port: api", "node_port", 5, "root on the node"),
            ("node_port: 2379", "node_port", 5, "not a node port a container may reach"),
            ("network: host\n    node_port: kv", "node_port", 6, "needs network: bridge, not host"),
            ("network: none\n    node_port: kv", "node_port", 6, "not none"),
            ("mounts: [{type: bind, source: /etc, target: /x}]", "mounts[0].source", 5, "the root filesystem is read-only"),
            ("mounts: [{type: bind, source: /var/lib/keel/volumes/../x, target: /x}]", "mounts[0].source", 5, "not a clean path"),
            ("mounts: [{type: bind, source: /run/keel//x, target: /x}]", "mounts[0].source", 5, "not a normal path"),
            ("mounts: [{type: bind, source: data, target: /x}]", "mounts[0].source", 5, "not an absolute path"),
            ("mounts: [{type: nfs, target: /x}]", "mounts[0].type", 5, "not bind or tmpfs"),
            ("mounts: [{target: /x}]", "mounts[0]", 5, "needs a type"),
            ("mounts: [{type: bind, source: /run/keel/volumes/a, target: /x, size: 1M}]", "mounts[0].size", 5, "unknown key"),
            ("mounts: [{type: tmpfs, size: 1M}]", "mounts[0]", 5, "needs a target"),
            ("mounts: [{type: bind, target: /x}]", "mounts[0]", 5, "needs a source"),
            ("mounts: [{type: tmpfs, target: x}]", "mounts[0].target", 5, "absolute"),
            ("mounts: [{type: tmpfs, target: /t, size: 0}]", "mounts[0].size", 5, "more than 0"),
            ("mounts: [{type: tmpfs, target: /t}, {type: tmpfs, target: /t}]", "mounts[1]", 5, "already mounted by"),
            ("mounts: [{type: bind, source: /run/keel/volumes/a, target: /x, readonly: maybe}]", "mounts[0].readonly", 5, "true or false"),
            ("resources: {memory: 1M}", "resources.memory", 5, "4M minimum"),
            ("resources: {memory_high: lots}", "resources.memory_high", 5, "not a size"),
            ("resources: {cpus: 0.0001}", "resources.cpus", 5, "thousandths"),
            ("resources: {cpus: 2000}", "resources.cpus", 5, "0.01 to 1024"),
            ("resources: {cpus: 0.001}", "resources.cpus", 5, "0.01 to 1024"),
            ("resources: {cpu_weight: 0}", "resources.cpu_weight", 5, "from 1 to 10000"),
            ("resources: {io_weight: 10001}", "resources.io_weight", 5, "from 1 to 10000"),
            ("resources: {pids: 0}", "resources.pids", 5, "at least 1"),
            ("resources: {memory: 64M, memory_high: 128M}", "resources", 5, "memory_high is over memory"),
            ("resources: {cpu: 1}", "resources.cpu", 5, "did you mean \"cpus\""),
            ("resources: {io_max: {device: /dev/vda}}", "resources.io_max", 5, "expected a list"),
            ("resources: {io_max: [/dev/vda]}", "resources.io_max[0]", 5, "expected a mapping"),
            ("resources: {io_max: [{rbps: 1M}]}", "resources.io_max[0]", 5, "needs a device"),
            ("resources: {io_max: [{device: /dev/vda}]}", "resources.io_max[0]", 5, "at least one of rbps, wbps, riops, wiops"),
            ("resources: {io_max: [{device: vda, rbps: 1M}]}", "resources.io_max[0].device", 5, "not an absolute path"),
            ("resources: {io_max: [{device: /dev/../etc/x, rbps: 1M}]}", "resources.io_max[0].device", 5, "not a clean path"),
            ("resources: {io_max: [{device: /dev//vda, rbps: 1M}]}", "resources.io_max[0].device", 5, "not a normal path"),
            ("resources: {io_max: [{device: /dev/, rbps: 1M}]}", "resources.io_max[0].device", 5, "not a normal path"),
            ("resources: {io_max: [{device: /var/vda, rbps: 1M}]}", "resources.io_max[0].device", 5, "not a device under /dev/"),
            ("resources: {io_max: [{device: /dev/vda, rbps: 10X}]}", "resources.io_max[0].rbps", 5, "not a size"),
            ("resources: {io_max: [{device: /dev/vda, wbps: 0}]}", "resources.io_max[0].wbps", 5, "more than 0"),
            ("resources: {io_max: [{device: /dev/vda, riops: 0}]}", "resources.io_max[0].riops", 5, "at least 1"),
            ("resources: {io_max: [{device: /dev/vda, wiops: 1K}]}", "resources.io_max[0].wiops", 5, "at least 1"),
            ("resources: {io_max: [{device: /dev/vda, rpbs: 1M}]}", "resources.io_max[0].rpbs", 5, "did you mean \"rbps\""),
            ("resources: {io_max: [{device: /dev/vda, rbps: 1M}, {device: /dev/vda, wbps: 1M}]}", "resources.io_max[1]", 5, "already limited by"),
            ("restart: sometimes", "restart", 5, "always, on-failure or never"),
            ("backoff: {initial: 10}", "backoff.initial", 5, "not a duration"),
            ("backoff: {initial: 0s}", "backoff.initial", 5, "more than 0"),
            ("backoff: {initial: 10m, max: 5m}", "backoff", 5, "over max"),
            ("backoff: {reset_afer: 1m}", "backoff.reset_afer", 5, "did you mean \"reset_after\""),
            ("user: 'web:'", "user", 5, "not USER or USER:GROUP"),
            ("user: a b", "user", 5, "not USER or USER:GROUP"),
            ("group_add: [staff, 'x y']", "group_add[1]", 5, "not a group name or number"),
            ("user: '1000:a:b'", "user", 5, "not USER or USER:GROUP"),
            ("capabilities: {add: [CAP_SYS_ADMN]}", "capabilities.add[0]", 5, "did you mean CAP_SYS_ADMIN"),
            ("capabilities: {add: [net_admin], drop: [NET_ADMIN]}", "capabilities", 5, "both added and dropped"),
            ("capabilities: {ad: [chown]}", "capabilities.ad", 5, "did you mean \"add\""),
            ("readonly: maybe", "readonly", 5, "true or false"),
            ("init: yes please", "init", 5, "true or false"),
            ("init: [true]", "init", 5, "true or false"),
            ("int: true", "int", 5, "did you mean \"init\""),
            ("healthcheck: {interval: 5s}", "healthcheck", 5, "exactly one of tcp, http or command (found none)"),
            ("healthcheck: {tcp: 80, http: 80/}", "healthcheck", 5, "found tcp and http"),
            ("healthcheck: {tcp: 0}", "healthcheck.tcp", 5, "not a port"),
            ("healthcheck: {http: x/y}", "healthcheck.http", 5, "PORT/path"),
            ("healthcheck: {http: {port: 80, path: nope}}", "healthcheck.http.path", 5, "starting with /"),
            ("healthcheck: {http: {path: /}}", "healthcheck.http", 5, "needs a port"),
            ("healthcheck: {command: curl -f x}", "healthcheck.command", 5, "keel has no shell"),
            ("healthcheck: {command: []}", "healthcheck.command", 5, "empty command"),
            ("healthcheck: {tcp: 80, interval: 1s, timeout: 5s}", "healthcheck", 5, "over interval"),
            ("healthcheck: {tcp: 80, retries: 0}", "healthcheck.retries", 5, "from 1 to 1000"),
            ("healthcheck: {tcp: 80, interval: 0s}", "healthcheck.interval", 5, "more than 0"),
            ("healthcheck: {tcp: 80, start_priod: 1s}", "healthcheck.start_priod", 5, "did you mean \"start_period\""),
            ("after: [web]", "after[0]", 5, "cannot wait for itself"),
            ("requires: [Web]", "requires[0]", 5, "not a container name"),
            ("hostname: a.b", "hostname", 5, "not a host name label"),
            ("workdir: srv", "workdir", 5, "absolute"),
            ("stop_grace: 10", "stop_grace", 5, "not a duration"),
            ("stop_signal: SIGFOO", "stop_signal", 5, "not a signal"),
            ("stop_signal: 65", "stop_signal", 5, "not a signal"),
            ("stop_signal: KILL", "stop_signal", 5, "cannot be a stop signal"),
            ("announce: {name: web}", "announce", 5, "needs a port"),
            ("announce: {port: 80}", "announce", 5, "needs a name"),
            ("announce: {name: a.b, port: 80}", "announce.name", 5, "not a host name label"),
            ("announce: {name: web, port: 0}", "announce.port", 5, "not a port"),
            ("announce: [web, 80]", "announce", 5, "expected a mapping"),
        ];
        let mut wrong = Vec::new();
        for (extra, path, line, says) in cases {
            let r = section(&format!("  - name: web\n    image: busybox\n    {extra}\n"));
            let path = format!("containers[0].{path}");
            match r.errors.iter().find(|e| e.path == path) {
                Some(e) if e.line == *line && e.message.contains(says) => {}
                _ => wrong.push(format!("{extra}: {:?}", r.errors)),
            }
            assert!(
                !r.items.iter().any(|i| i.path == "containers[0]"),
                "{extra}: a container with an error gets no verdict"
            );
            assert!(r.config.containers.is_empty(), "{extra}");
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn announce_names_a_service_and_its_port() {
        let r =
            section("  - name: web\n    image: busybox\n    announce: {name: www, port: 8080}\n");
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(
            r.config.containers[0].announce,
            Some(Announce {
                name: "www".into(),
                port: 8080
            })
        );
    }

    #[test]
    fn names_and_images() {
        let r = section(
            "  - image: busybox
  - name: Web
    image: busybox
  - name: a
  - name: b
    image: Busybox
  - name: c
    image: app@sha256:abc
  - name: d
    image: registry.example:99999/app
  - name: e
    image: busybox
  - name: e
    image: busybox
  - x
",
        );
        assert!(error(&r, "containers[0]").message.contains("needs a name"));
        assert!(error(&r, "containers[1].name")
            .message
            .contains("not a container name"));
        assert!(error(&r, "containers[2]")
            .message
            .contains("needs an image"));
        assert!(error(&r, "containers[3].image")
            .message
            .contains("path component"));
        assert!(error(&r, "containers[4].image")
            .message
            .contains("64 lower-case hex"));
        assert!(error(&r, "containers[5].image")
            .message
            .contains("registry port"));
        let dup = error(&r, "containers[7]");
        assert_eq!(dup.line, 15);
        assert_eq!(
            dup.message,
            "container name \"e\" is already used by containers[6] (line 13)"
        );
        assert!(error(&r, "containers[8]")
            .message
            .contains("expected a mapping"));
        assert_eq!(r.errors.len(), 8, "{:#?}", r.errors);
        let r = validate("#cloud-config\ncontainers: {web: {image: busybox}}\n");
        assert!(error(&r, "containers").message.contains("expected a list"));
    }

    #[test]
    fn cycles_are_reported_as_a_path() {
        let r = section(
            "  - {name: web, image: busybox, after: [api]}
  - {name: api, image: busybox, requires: [db]}
  - {name: db, image: busybox, after: [web]}
  - {name: solo, image: busybox, after: [db]}
  - {name: x, image: busybox, requires: [y]}
  - {name: y, image: busybox, requires: [x]}
",
        );
        let cycles: Vec<&Issue> = r
            .errors
            .iter()
            .filter(|e| e.message.contains("cycle"))
            .collect();
        assert_eq!(cycles.len(), 2, "{:#?}", r.errors);
        assert_eq!(cycles[0].path, "containers[2].after[0]");
        assert_eq!(cycles[0].line, 5);
        assert_eq!(
            cycles[0].message,
            "after/requires form a cycle: web -> api -> db -> web"
        );
        assert_eq!(cycles[1].path, "containers[5].requires[0]");
        assert!(
            cycles[1].message.ends_with("x -> y -> x"),
            "{:?}",
            cycles[1]
        );
        assert_eq!(r.errors.len(), 2);
        let r = section(
            "  - {name: db, image: busybox}\n  - {name: web, image: busybox,\n     after: [dbb]}\n",
        );
        let e = error(&r, "containers[1].after[0]");
        assert_eq!((e.line, e.col), (5, 14));
        assert_eq!(
            e.message,
            "no container is named \"dbb\" (did you mean \"db\"?)"
        );
        // A diamond is not a cycle.
        let r = section(
            "  - {name: a, image: busybox, after: [b, c]}
  - {name: b, image: busybox, after: [d]}
  - {name: c, image: busybox, requires: [d]}
  - {name: d, image: busybox}
",
        );
        assert!(r.accepted(), "{:#?}", r.errors);
    }

    #[test]
    fn values() {
        for ok in [
            "busybox",
            "busybox:latest",
            "library/nginx:1.25",
            "registry.example:5000/app:1",
            "localhost/app",
            "10.0.0.1:5000/a/b_c__d-e:v1.0-rc_1",
        ] {
            assert_eq!(image(ok).map(|i| i.to_string()), Ok(ok.to_string()));
        }
        assert!(image(&format!("ghcr.io/org/app@sha256:{SHA}")).is_ok());
        assert!(image(&format!("app:1@sha256:{SHA}")).is_ok());
        for bad in [
            "",
            "App",
            "a//b",
            "a:",
            "a:-x",
            "-a",
            "a..b",
            "bad_host:x/app",
            "a@sha256:ABC",
        ] {
            assert!(image(bad).is_err(), "{bad}");
        }
        assert_eq!(
            port("10.0.2.15:53:53/udp").unwrap().host_ip,
            Some(std::net::Ipv4Addr::new(10, 0, 2, 15))
        );
        // The bridge cannot publish on loopback: refused at the config.
        assert!(port("127.0.0.1:53:53/udp")
            .unwrap_err()
            .contains("not published on loopback addresses"));
        assert!(port("127.1.2.3:80:80").is_err() && port("0.0.0.0:80:80").is_ok());
        assert!(
            port("::1:80:80").is_err() && port("0:80").is_err() && port("8000-8010:80").is_err()
        );
        assert_eq!(millicpus("1.5"), Ok(1500));
        assert_eq!(millicpus("0.01"), Ok(10));
        assert_eq!(millicpus(".5"), Ok(500));
        assert_eq!(millicpus("1024"), Ok(1_024_000));
        assert!(
            millicpus("1024.001").is_err() && millicpus(".").is_err() && millicpus("-1").is_err()
        );
        let cap = |s: &str| capability(s).map(|c| c.to_string());
        assert_eq!(cap("net_admin").as_deref(), Ok("CAP_NET_ADMIN"));
        assert_eq!(cap("Cap_Chown").as_deref(), Ok("CAP_CHOWN"));
        assert_eq!(cap("all").as_deref(), Ok("ALL"));
        assert!(capability("CAP_FLY")
            .unwrap_err()
            .contains("not a Linux capability"));
        assert!(
            bind_source("/run/keel/volumes/x").is_ok()
                && bind_source("/var/lib/keel/volumes/db/data").is_ok()
        );
        // The rest of /run/keel is keel's: its API socket, the containers'
        // roots.
        for keel in [
            "/run/keel/api.sock",
            "/run/keel/containers/other/rootfs",
            "/run/keel/x",
            "/run/keel/volumes",
        ] {
            let e = bind_source(keel).unwrap_err();
            assert!(e.contains("not under"), "{keel}: {e}");
        }
        assert!(bind_source("/var/lib/keel/volumes/").is_err());
        assert!(bind_source("/var/lib/keel/volumes").is_err());
        assert!(bind_source("/var/lib/keel/volumes/./x").is_err());
        assert!(bind_source("/run/keelx/a").is_err());
        assert!(user("1000").is_ok() && user("1000:100").is_ok() && user("www-data").is_ok());
        assert!(user("1000:").is_err() && user(":1").is_err() && user("a b").is_err());
        assert!(container_name("web.1_a-b").is_ok() && container_name("0").is_ok());
        assert!(container_name(".web").is_err() && container_name(&"a".repeat(64)).is_err());
        assert!(env_name("_A1").is_ok() && env_name("1A").is_err() && env_name("A-B").is_err());
    }
}
