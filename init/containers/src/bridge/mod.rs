//! `network: bridge`: the bridge `keel0`, a veth pair per container, an
//! address each, outbound NAT and published ports.
//!
//! - `ipam`: the subnet and the leases (pure, saved as a small JSON file);
//! - `plan`: veth names, resolv.conf and hosts, published ports, the
//!   nftables ruleset (pure);
//! - this file: the I/O shell ([`Bridge`]).
//!
//! The shell works in the network namespace of the calling thread (the
//! node's; a test's scratch namespace in tests):
//! 1. [`Bridge::setup`], once: the bridge with the subnet's first address,
//!    up; IPv4 forwarding on; the leases loaded; keel's tables with no port
//!    and no door (the NAT table, and the input filter that keeps
//!    containers off the node's own ports: [`guard`]);
//! 2. [`Bridge::prepare`], before a container starts: its address (a lease)
//!    and the contents of its `/etc/resolv.conf` and `/etc/hosts`;
//! 3. [`Bridge::attach`], once its process is in its own network namespace
//!    and before its program runs: the veth pair (the container's end
//!    created directly in its namespace as `eth0`), the address and default
//!    route inside, then keel's tables replaced with the container's ports
//!    and its door (`node_port:`), if it has one;
//! 4. [`Bridge::detach`], when it stops: the tables without its ports, the
//!    host end deleted (if the namespace is not gone with it already), the
//!    lease released.

mod ipam;
mod plan;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use keel_config::model::{NodePort, Port};
use keel_sys::netlink::Rtnl;
use keel_sys::netns::NetNs;
use keel_sys::nftables::Nft;
use keel_sys::SysError;

pub use ipam::{Ipam, Subnet};
pub use plan::{
    guard, host_veth, hosts, published, resolv_conf, ruleset, Door, Proto, Published, GUARD_TABLE,
    TABLE,
};

/// What failed in bridge networking.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("bridge subnet {value}: {reason}")]
    Subnet { value: String, reason: String },
    #[error("bridge subnet {subnet} has no free address for {name}")]
    Exhausted { subnet: Subnet, name: String },
    #[error("{op} the bridge's leases {path}: {source}")]
    State {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parse the bridge's leases {path}: {source}")]
    ParseState {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("container {name}: published port {port}: {reason}")]
    Port {
        name: String,
        port: String,
        reason: String,
    },
    #[error("set up bridge {bridge}: {step}: {source}")]
    Setup {
        bridge: String,
        step: &'static str,
        source: SysError,
    },
    #[error("turn IPv4 forwarding on ({path}): {source}")]
    Forwarding {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("attach container {name} to the bridge: {step}: {source}")]
    Attach {
        name: String,
        step: &'static str,
        source: SysError,
    },
    #[error("detach container {name} from the bridge: {step}: {source}")]
    Detach {
        name: String,
        step: &'static str,
        source: SysError,
    },
    #[error("apply keel's nftables tables: {0}")]
    Rules(SysError),
    #[error("container {name}: node_port {port}: {reason}")]
    NodePort {
        name: String,
        port: &'static str,
        reason: &'static str,
    },
}

/// The bridge's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// The bridge's name (`keel0`).
    pub name: String,
    pub subnet: Subnet,
    /// Name servers for containers when the node has none they can reach.
    pub dns_fallback: Vec<Ipv4Addr>,
    /// The KV's client port, the door of `node_port: kv`; `None` when the
    /// KV does not run.
    pub kv_port: Option<u16>,
}

impl Default for BridgeConfig {
    fn default() -> BridgeConfig {
        BridgeConfig {
            name: "keel0".into(),
            subnet: Subnet::new(Ipv4Addr::new(10, 88, 0, 0), 16)
                .unwrap_or_else(|_| unreachable!("10.88.0.0/16 is a valid subnet")),
            dns_fallback: vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(8, 8, 8, 8)],
            kv_port: Some(2379),
        }
    }
}

/// A container's network before it starts: what the runtime binds into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// The contents of its `/etc/resolv.conf` and `/etc/hosts`.
    pub resolv_conf: String,
    pub hosts: String,
}

/// An attached container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// The host end of its veth pair, on the bridge.
    pub host_veth: String,
    pub ports: Vec<Published>,
    /// The node port it may reach (`node_port:`).
    pub door: Option<Door>,
}

/// The bridge: its settings, the leases and the published ports.
pub struct Bridge {
    config: BridgeConfig,
    leases: PathBuf,
    ipam: Ipam,
    ports: BTreeMap<String, Vec<Published>>,
    doors: BTreeMap<String, Door>,
}

/// The name of the container's end, inside its namespace.
const CONTAINER_IF: &str = "eth0";

fn exists(e: &SysError) -> bool {
    matches!(
        e,
        SysError::Netlink {
            source: nix::Error::EEXIST,
            ..
        }
    )
}

fn missing(e: &SysError) -> bool {
    matches!(
        e,
        SysError::Netlink {
            source: nix::Error::ENODEV,
            ..
        }
    )
}

impl Bridge {
    /// Create (or take over) the bridge in this thread's network namespace,
    /// turn forwarding on through `proc_root` (`/proc`), load the leases
    /// from `state_dir` (`bridge.json`) and install keel's table without
    /// published ports.
    pub fn setup(
        config: BridgeConfig,
        proc_root: &Path,
        state_dir: &Path,
    ) -> Result<Bridge, NetError> {
        let step = |step| {
            let bridge = config.name.clone();
            move |source| NetError::Setup {
                bridge,
                step,
                source,
            }
        };
        let mut r = Rtnl::open().map_err(step("open rtnetlink"))?;
        // The bridge survives a restart of keel's network code (not of the
        // node): take over one that exists.
        match r.create_bridge(&config.name) {
            Err(e) if !exists(&e) => return Err(step("create the bridge")(e)),
            _ => {}
        }
        let s = config.subnet;
        r.add_address(&config.name, IpAddr::V4(s.gateway()), s.prefix())
            .map_err(step("add its address"))?;
        r.link_up(&config.name).map_err(step("set it up"))?;
        let fwd = proc_root.join("sys/net/ipv4/ip_forward");
        std::fs::write(&fwd, "1").map_err(|source| NetError::Forwarding { path: fwd, source })?;
        let leases = state_dir.join("bridge.json");
        let ipam = Ipam::load(&leases, s)?;
        let b = Bridge {
            config,
            leases,
            ipam,
            ports: BTreeMap::new(),
            doors: BTreeMap::new(),
        };
        b.apply()?;
        Ok(b)
    }

    pub fn config(&self) -> &BridgeConfig {
        &self.config
    }

    /// Replace keel's tables with the ports and doors of every attached
    /// container, in one transaction.
    fn apply(&self) -> Result<(), NetError> {
        let all: Vec<Published> = self.ports.values().flatten().cloned().collect();
        let doors: Vec<Door> = self.doors.values().copied().collect();
        let t = [
            ruleset(&self.config.name, self.config.subnet, &all),
            guard(&self.config.name, &doors),
        ];
        Nft::open()
            .and_then(|mut n| n.replace(&t))
            .map_err(NetError::Rules)
    }

    /// The door of `node_port`, for the container at `ip`.
    fn door(
        &self,
        name: &str,
        ip: Ipv4Addr,
        node_port: Option<NodePort>,
    ) -> Result<Option<Door>, NetError> {
        let Some(np) = node_port else { return Ok(None) };
        let port = match np {
            NodePort::Kv => self.config.kv_port.ok_or(NetError::NodePort {
                name: name.into(),
                port: np.as_str(),
                reason: "the KV does not run on this node",
            })?,
        };
        Ok(Some(Door { ip, port }))
    }

    /// Container `name`'s address (leased, saved) and the contents of its
    /// `/etc/hosts` (for `hostname`) and `/etc/resolv.conf` (from the
    /// node's, `node_resolv_conf`).
    pub fn prepare(
        &mut self,
        name: &str,
        hostname: &str,
        node_resolv_conf: &str,
    ) -> Result<Plan, NetError> {
        let ip = self.lease(name)?;
        Ok(Plan {
            ip,
            prefix: self.config.subnet.prefix(),
            gateway: self.config.subnet.gateway(),
            resolv_conf: resolv_conf(node_resolv_conf, &self.config.dns_fallback),
            hosts: hosts(hostname, ip),
        })
    }

    fn lease(&mut self, name: &str) -> Result<Ipv4Addr, NetError> {
        if let Some(ip) = self.ipam.lease(name) {
            return Ok(ip);
        }
        let ip = self.ipam.allocate(name)?;
        if let Err(e) = self.ipam.save(&self.leases) {
            self.ipam.release(name);
            return Err(e);
        }
        Ok(ip)
    }

    /// Connect container `name`, whose process is in the network namespace
    /// `ns` (its own, new one), publish `ports` and open its `node_port`.
    /// Leases an address when [`Bridge::prepare`] did not.
    pub fn attach(
        &mut self,
        name: &str,
        ns: NetNs<'_>,
        ports: &[Port],
        node_port: Option<NodePort>,
    ) -> Result<Attachment, NetError> {
        let ip = self.lease(name)?;
        // Checked before anything changes.
        let ports = published(name, ip, ports)?;
        let door = self.door(name, ip, node_port)?;
        for (other, theirs) in &self.ports {
            if other == name {
                continue;
            }
            if let Some(p) = plan::clash(&ports, theirs) {
                return Err(NetError::Port {
                    name: name.into(),
                    port: format!("{}/{:?}", p.host_port, p.proto).to_lowercase(),
                    reason: format!("container {other} publishes it already"),
                });
            }
        }
        let veth = host_veth(name);
        let step = |step| {
            let name = name.to_string();
            move |source| NetError::Attach { name, step, source }
        };
        let mut r = Rtnl::open().map_err(step("open rtnetlink"))?;
        // A host end left by a run whose namespace is still held somewhere.
        match r.delete_link(&veth) {
            Err(e) if !missing(&e) => return Err(step("delete a stale veth")(e)),
            _ => {}
        }
        r.create_veth(&veth, CONTAINER_IF, ns)
            .map_err(step("create the veth pair"))?;
        let done = (|| {
            r.set_master(&veth, &self.config.name)
                .map_err(step("attach the host end to the bridge"))?;
            r.set_hairpin(&veth, true)
                .map_err(step("set hairpin mode on the host end"))?;
            r.link_up(&veth).map_err(step("set the host end up"))?;
            let s = self.config.subnet;
            let mut inside = Rtnl::open_in(ns).map_err(step("open rtnetlink in the container"))?;
            inside.link_up("lo").map_err(step("set lo up"))?;
            inside
                .add_address(CONTAINER_IF, IpAddr::V4(ip), s.prefix())
                .map_err(step("add the container's address"))?;
            inside.link_up(CONTAINER_IF).map_err(step("set eth0 up"))?;
            inside
                .add_route(
                    CONTAINER_IF,
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    0,
                    Some(IpAddr::V4(s.gateway())),
                )
                .map_err(step("add the default route"))?;
            let before = self.ports.insert(name.to_string(), ports.clone());
            let door_before = match door {
                Some(d) => self.doors.insert(name.to_string(), d),
                None => self.doors.remove(name),
            };
            if let Err(e) = self.apply() {
                match before {
                    Some(b) => self.ports.insert(name.to_string(), b),
                    None => self.ports.remove(name),
                };
                match door_before {
                    Some(d) => self.doors.insert(name.to_string(), d),
                    None => self.doors.remove(name),
                };
                return Err(e);
            }
            Ok(())
        })();
        if let Err(e) = done {
            // The pair goes with its host end; the lease stays for a retry.
            let _ = r.delete_link(&veth);
            return Err(e);
        }
        Ok(Attachment {
            ip,
            prefix: self.config.subnet.prefix(),
            gateway: self.config.subnet.gateway(),
            host_veth: veth,
            ports,
            door,
        })
    }

    /// Disconnect container `name`: its ports unpublished, its veth pair
    /// deleted (already gone when its namespace was), its lease released.
    pub fn detach(&mut self, name: &str) -> Result<(), NetError> {
        let step = |step| {
            let name = name.to_string();
            move |source| NetError::Detach { name, step, source }
        };
        let had_ports = self.ports.remove(name).is_some();
        let had_door = self.doors.remove(name).is_some();
        if had_ports || had_door {
            self.apply()?;
        }
        let mut r = Rtnl::open().map_err(step("open rtnetlink"))?;
        match r.delete_link(&host_veth(name)) {
            Err(e) if !missing(&e) => return Err(step("delete the veth pair")(e)),
            _ => {}
        }
        if self.ipam.release(name).is_some() {
            self.ipam.save(&self.leases)?;
        }
        Ok(())
    }

    /// The address leased to `name`.
    pub fn address(&self, name: &str) -> Option<Ipv4Addr> {
        self.ipam.lease(name)
    }
}

#[cfg(test)]
mod tests;
