//! The network until the cloud-config's network lands: a static address from
//! `keel.ip=` on the first Ethernet link, set through rtnetlink.

use std::path::Path;

use keel_boot::cmdline::IpConfig;

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
    names.sort();
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

#[cfg(test)]
mod tests {
    use super::*;

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
