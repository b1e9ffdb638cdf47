//! The soak's network: a host bridge and, per member, a network namespace
//! joined to it by a veth pair.
//!
//! 1. Names carry the soak's pid (`ksoak-PID-I` namespaces, `ksoakbrPID` the
//!    bridge, `ksoakPIDhI` the host ends), so concurrent soaks never share
//!    one, and leftovers of a dead soak can be told apart from a live one's.
//! 2. The subnet is a 10.A.B.0/24 that no address or route on the host
//!    uses: the bridge is .1, member I is .(11 + I). Inside a namespace the
//!    member's end is `eth0`, and `lo` is up (a member reaches its own
//!    address through it).
//! 3. A partition takes the member's host end down: the bridge stops
//!    forwarding to it and the member's `eth0` loses carrier, so every
//!    packet either way is lost until the link comes back up.
//! 4. Everything is registered with [`super::cleanup`] before it is made,
//!    and removed (links, namespaces, bridge) on drop; a failed step undoes
//!    the ones before it.

use std::net::Ipv4Addr;
use std::process::Command;

use super::cleanup;

/// A command of the network setup that failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("run `{cmd}`: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("no free 10.x.y.0/24 subnet: every candidate is in use on this host")]
    NoSubnet,
}

/// What a soak's network is called, for teardown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub bridge: String,
    /// (namespace, host end of its veth pair) per member.
    pub members: Vec<(String, String)>,
}

impl Names {
    fn new(pid: u32, members: usize) -> Names {
        Names {
            bridge: format!("ksoakbr{pid}"),
            members: (0..members)
                .map(|i| (format!("ksoak-{pid}-{i}"), format!("ksoak{pid}h{i}")))
                .collect(),
        }
    }
}

/// The bridge and the members' namespaces.
pub struct Net {
    pub names: Names,
    pub host_ip: Ipv4Addr,
    pub member_ips: Vec<Ipv4Addr>,
}

/// Runs `ip ARGS`, returning its stdout.
fn ip(args: &[&str]) -> Result<String, NetError> {
    let cmd = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| NetError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(NetError::Command {
            cmd,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Step 2: a 10.A.B.0/24 that no host address or route mentions, starting
/// from one derived from the pid so that concurrent soaks start apart.
fn free_subnet(pid: u32) -> Result<(u8, u8), NetError> {
    let used = format!(
        "{}\n{}",
        ip(&["-o", "-4", "addr", "show"])?,
        ip(&["-4", "route", "show", "table", "all"])?
    );
    let a = 100 + (pid % 100) as u8;
    for step in 0..256u32 {
        let b = ((pid / 100 + step) % 256) as u8;
        let prefix = format!("10.{a}.{b}.");
        if !used.contains(&prefix) {
            return Ok((a, b));
        }
    }
    Err(NetError::NoSubnet)
}

impl Net {
    /// Steps 1, 2 and 4 for `members` members.
    pub fn create(members: usize) -> Result<Net, NetError> {
        let pid = std::process::id();
        let names = Names::new(pid, members);
        let (a, b) = free_subnet(pid)?;
        let net = Net {
            host_ip: Ipv4Addr::new(10, a, b, 1),
            member_ips: (0..members)
                .map(|i| Ipv4Addr::new(10, a, b, 11 + i as u8))
                .collect(),
            names,
        };
        cleanup::track_net(net.names.clone());
        // On error `net` is dropped, which removes what was made.
        net.build()?;
        Ok(net)
    }

    fn build(&self) -> Result<(), NetError> {
        let br = self.names.bridge.as_str();
        ip(&["link", "add", br, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}/24", self.host_ip), "dev", br])?;
        ip(&["link", "set", br, "up"])?;
        for ((ns, host), member_ip) in self.names.members.iter().zip(&self.member_ips) {
            ip(&["netns", "add", ns])?;
            ip(&[
                "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ])?;
            ip(&["link", "set", host, "master", br])?;
            ip(&["link", "set", host, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{member_ip}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    /// Member `i`'s namespace.
    pub fn namespace(&self, i: usize) -> &str {
        &self.names.members[i].0
    }

    /// Step 3: cut member `i` off.
    pub fn partition(&self, i: usize) -> Result<(), NetError> {
        ip(&["link", "set", &self.names.members[i].1, "down"]).map(drop)
    }

    /// Undo [`Net::partition`].
    pub fn heal(&self, i: usize) -> Result<(), NetError> {
        ip(&["link", "set", &self.names.members[i].1, "up"]).map(drop)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        teardown(&self.names);
        cleanup::untrack_net();
    }
}

/// Removes every link, namespace and the bridge of `names`; what does not
/// exist is skipped.
pub fn teardown(names: &Names) {
    for (ns, host) in &names.members {
        let _ = ip(&["link", "del", host]);
        let _ = ip(&["netns", "del", ns]);
    }
    let _ = ip(&["link", "del", &names.bridge]);
}

/// Whether process `pid` exists.
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid in a soak name: `ksoak-PID-I`, `ksoakbrPID`, `ksoakPIDhI`.
fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("ksoak")?;
    let digits = rest
        .strip_prefix('-')
        .or_else(|| rest.strip_prefix("br"))
        .unwrap_or(rest);
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// Removes namespaces and links left by soaks that are no longer running
/// (killed with SIGKILL); returns what it removed.
pub fn remove_stale() -> Vec<String> {
    let mine = std::process::id();
    let stale = |name: &str| owner(name).is_some_and(|pid| pid != mine && !alive(pid));
    let mut removed = Vec::new();
    if let Ok(list) = ip(&["netns", "list"]) {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if stale(ns) && ip(&["netns", "del", ns]).is_ok() {
                removed.push(ns.to_string());
            }
        }
    }
    if let Ok(list) = ip(&["-o", "link", "show"]) {
        // "7: ksoak123h0@if2: <...>" -> "ksoak123h0"
        for name in list.lines().filter_map(|l| {
            let name = l.split(": ").nth(1)?;
            Some(name.split('@').next().unwrap_or(name).to_string())
        }) {
            if stale(&name) && ip(&["link", "del", &name]).is_ok() {
                removed.push(name);
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_interface_limits_and_carry_the_pid() {
        let n = Names::new(4_194_304, 3);
        assert!(n.bridge.len() <= 15, "{}", n.bridge);
        for (ns, host) in &n.members {
            assert!(host.len() <= 15, "{host}");
            assert_eq!(owner(ns), Some(4_194_304));
            assert_eq!(owner(host), Some(4_194_304));
        }
        assert_eq!(owner(&n.bridge), Some(4_194_304));
        assert_eq!(owner("eth0"), None);
        assert_eq!(owner("ksoakbr"), None);
    }
}
