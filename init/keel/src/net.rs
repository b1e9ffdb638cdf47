//! The network until the cloud-config's network lands: a static address from
//! `keel.ip=` on the first Ethernet link, set through rtnetlink.

use std::path::Path;

use keel_boot::cmdline::IpConfig;
use keel_config::model::Cidr;

/// ARPHRD_ETHER, the `type` of an Ethernet link in sysfs.
const ARPHRD_ETHER: &str = "1";

/// The first Ethernet link (by name) under a /sys/class/net root.
pub fn first_ethernet(sys_class_net: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(sys_class_net)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .filter(|n| {
            std::fs::read_to_string(sys_class_net.join(n).join("type"))
                .map(|t| t.trim() == ARPHRD_ETHER)
                .unwrap_or(false)
        })
        .collect();
    names.sort_unstable();
    names.into_iter().next()
}

pub fn configure(link: &str, ip: IpConfig) -> Result<(), keel_sys::SysError> {
    let mut rtnl = keel_sys::netlink::Rtnl::open()?;
    rtnl.link_up(link)?;
    rtnl.add_address(link, ip.addr.into(), ip.prefix)?;
    if let Some(gw) = ip.gateway {
        rtnl.add_route(
            link,
            std::net::Ipv4Addr::UNSPECIFIED.into(),
            0,
            Some(gw.into()),
        )?;
    }
    Ok(())
}

/// Whether `name` matches a systemd-style glob (`*`, `?`, `[...]` as a set
/// of single characters).
pub fn glob(pattern: &str, name: &str) -> bool {
    fn m(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => m(&p[1..], n) || (!n.is_empty() && m(p, &n[1..])),
            (Some('?'), Some(_)) => m(&p[1..], &n[1..]),
            (Some('['), Some(c)) => match p.iter().position(|&x| x == ']') {
                Some(end) if p[1..end].contains(c) => m(&p[end + 1..], &n[1..]),
                _ => false,
            },
            (Some(a), Some(b)) if a == b => m(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    m(&p, &n)
}

/// Apply the config's `.network` units: each link (except lo), in name
/// order, gets the first unit (in unit-name order, as networkd does) whose
/// `[Match] Name=` matches it. Static addresses, the gateway, routes and
/// DNS (`/etc/resolv.conf`) are applied; the caller starts DHCP on the
/// links whose unit asks for it. Returns `(link, unit)` for every link
/// configured.
pub fn configure_units(
    sys_class_net: &Path,
    units: &[keel_config::model::Network],
) -> Result<Vec<(String, String)>, keel_sys::SysError> {
    let mut links: Vec<String> = std::fs::read_dir(sys_class_net)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    links.retain(|l| l != "lo");
    links.sort_unstable();
    let mut sorted: Vec<&keel_config::model::Network> = units.iter().collect();
    sorted.sort_by(|a, b| a.unit.cmp(&b.unit));
    let mut rtnl = keel_sys::netlink::Rtnl::open()?;
    let mut done = Vec::new();
    let mut dns: Vec<std::net::IpAddr> = Vec::new();
    let mut domains: Vec<String> = Vec::new();
    for link in &links {
        let Some(u) = sorted
            .iter()
            .find(|u| u.match_names.iter().any(|g| glob(g, link)))
        else {
            continue;
        };
        rtnl.link_up(link)?;
        for a in &u.addresses {
            rtnl.add_address(link, a.addr(), a.prefix())?;
        }
        if let Some(gw) = u.gateway {
            let any = Cidr::any_of(gw);
            rtnl.add_route(link, any.addr(), any.prefix(), Some(gw))?;
        }
        for r in &u.routes {
            // The validator refuses a route with neither; one without a
            // destination is the default route through its gateway.
            let Some(dst) = r.destination.or(r.gateway.map(Cidr::any_of)) else {
                continue;
            };
            rtnl.add_route(link, dst.addr(), dst.prefix(), r.gateway)?;
        }
        dns.extend(u.dns.iter().cloned());
        domains.extend(u.domains.iter().cloned());
        done.push((link.clone(), u.unit.clone()));
    }
    if !dns.is_empty() {
        let mut text: String = dns.iter().map(|d| format!("nameserver {d}\n")).collect();
        if !domains.is_empty() {
            text.push_str(&format!("search {}\n", domains.join(" ")));
        }
        if let Err(e) = std::fs::write("/etc/resolv.conf", text) {
            keel_boot::warn!("/etc/resolv.conf: {e}");
        }
    }
    Ok(done)
}

/// Links, addresses, routes (main table) and DNS as they are now.
pub fn status() -> keel_api::NetworkStatus {
    let mut out = keel_api::NetworkStatus::default();
    let Ok(mut r) = keel_sys::netlink::Rtnl::open() else {
        return out;
    };
    let links = r.links().unwrap_or_default();
    let addrs = r.addresses().unwrap_or_default();
    let name_of = |i: u32| links.iter().find(|l| l.index == i).map(|l| l.name.clone());
    for l in &links {
        out.links.push(keel_api::LinkStatus {
            name: l.name.clone(),
            index: l.index,
            up: l.up,
            running: l.running,
            operstate: match l.operstate {
                0 => "unknown",
                1 => "notpresent",
                2 => "down",
                3 => "lowerlayerdown",
                4 => "testing",
                5 => "dormant",
                6 => "up",
                _ => "?",
            }
            .into(),
            mac: l.mac.map(|m| {
                m.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            }),
            mtu: l.mtu,
            addresses: addrs
                .iter()
                .filter(|a| a.index == l.index)
                .map(|a| format!("{}/{}", a.addr, a.prefix))
                .collect(),
        });
    }
    for rt in r.routes().unwrap_or_default() {
        out.routes.push(keel_api::RouteStatus {
            destination: format!("{}/{}", rt.dst, rt.prefix),
            gateway: rt.gateway.map(|g| g.to_string()),
            dev: rt.oif.and_then(name_of),
        });
    }
    out.dns = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .map(|s| s.trim().to_string())
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("eth0", "eth0") && !glob("eth0", "eth1"));
        assert!(glob("en*", "enp0s3") && glob("*", "x") && glob("eth?", "eth1"));
        assert!(glob("eth[01]", "eth1") && !glob("eth[01]", "eth2"));
        assert!(!glob("en*", "eth0"));
    }

    #[test]
    fn picks_first_ethernet_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for (name, ty) in [("lo", "772"), ("eth1", "1"), ("eth0", "1"), ("sit0", "776")] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("type"), format!("{ty}\n")).unwrap();
        }
        assert_eq!(first_ethernet(dir.path()).as_deref(), Some("eth0"));
        std::fs::remove_dir_all(dir.path().join("eth0")).unwrap();
        std::fs::remove_dir_all(dir.path().join("eth1")).unwrap();
        assert_eq!(first_ethernet(dir.path()), None);
    }
}
