//! Addresses of the bridge's subnet: the subnet value and the leases.
//!
//! The bridge takes the subnet's first host address; containers get the
//! lowest free one after it. A lease is kept per container name, so a
//! container that starts again (or after a reboot: the leases are a small
//! JSON file) gets the address it had, until it is released.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::NetError;

/// An IPv4 subnet, `10.88.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// `addr/prefix`, prefix 8 to 30 (a bridge, at least one container and
    /// a broadcast address), host bits zero.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Subnet, NetError> {
        let bad = |reason: &str| NetError::Subnet {
            value: format!("{addr}/{prefix}"),
            reason: reason.into(),
        };
        if !(8..=30).contains(&prefix) {
            return Err(bad("the prefix length must be 8 to 30"));
        }
        let s = Subnet {
            network: addr,
            prefix,
        };
        if u32::from(addr) & !s.mask() != 0 {
            return Err(bad("the host bits must be zero"));
        }
        Ok(s)
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - self.prefix)
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The bridge's address: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == u32::from(self.network)
    }

    /// The addresses containers may get: after the gateway, before the
    /// broadcast address.
    fn hosts(&self) -> std::ops::RangeInclusive<u32> {
        let n = u32::from(self.network);
        (n + 2)..=(n | !self.mask()) - 1
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl std::str::FromStr for Subnet {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Subnet, NetError> {
        let bad = |reason: &str| NetError::Subnet {
            value: s.into(),
            reason: reason.into(),
        };
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/PREFIX"))?;
        let a: Ipv4Addr = a.parse().map_err(|_| bad("not an IPv4 address"))?;
        let p: u8 = p.parse().map_err(|_| bad("not a prefix length"))?;
        Subnet::new(a, p)
    }
}

impl TryFrom<String> for Subnet {
    type Error = NetError;
    fn try_from(s: String) -> Result<Subnet, NetError> {
        s.parse()
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

/// The leases of a subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipam {
    subnet: Subnet,
    leases: BTreeMap<String, Ipv4Addr>,
}

impl Ipam {
    pub fn new(subnet: Subnet) -> Ipam {
        Ipam {
            subnet,
            leases: BTreeMap::new(),
        }
    }

    /// The leases saved at `path` (none when it does not exist). Leases of
    /// another subnet (the configuration changed) are dropped.
    pub fn load(path: &Path, subnet: Subnet) -> Result<Ipam, NetError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ipam::new(subnet)),
            Err(source) => {
                return Err(NetError::State {
                    op: "read",
                    path: path.into(),
                    source,
                })
            }
        };
        let saved: Ipam = serde_json::from_str(&text).map_err(|source| NetError::ParseState {
            path: path.into(),
            source,
        })?;
        let mut ipam = Ipam::new(subnet);
        let mut seen = BTreeSet::new();
        for (name, a) in saved.leases {
            if subnet.hosts().contains(&u32::from(a)) && seen.insert(a) {
                ipam.leases.insert(name, a);
            }
        }
        Ok(ipam)
    }

    /// Write the leases to `path` (a new file renamed over the old one, so a
    /// crash leaves either).
    pub fn save(&self, path: &Path) -> Result<(), NetError> {
        let err = |op| {
            move |source| NetError::State {
                op,
                path: path.into(),
                source,
            }
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err("create the directory of"))?;
        }
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        let tmp = path.with_extension("json.new");
        std::fs::write(&tmp, text + "\n").map_err(err("write"))?;
        std::fs::rename(&tmp, path).map_err(err("replace"))
    }

    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    /// The address of `name`: its lease, or the lowest free address.
    pub fn allocate(&mut self, name: &str) -> Result<Ipv4Addr, NetError> {
        if let Some(a) = self.leases.get(name) {
            return Ok(*a);
        }
        let taken: BTreeSet<u32> = self.leases.values().map(|a| u32::from(*a)).collect();
        let a = self
            .subnet
            .hosts()
            .find(|a| !taken.contains(a))
            .map(Ipv4Addr::from)
            .ok_or(NetError::Exhausted {
                subnet: self.subnet,
                name: name.into(),
            })?;
        self.leases.insert(name.into(), a);
        Ok(a)
    }

    /// Give `name`'s address back; the address it had, if any.
    pub fn release(&mut self, name: &str) -> Option<Ipv4Addr> {
        self.leases.remove(name)
    }

    pub fn lease(&self, name: &str) -> Option<Ipv4Addr> {
        self.leases.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(s: &str) -> Subnet {
        s.parse().unwrap()
    }

    #[test]
    fn subnets() {
        let s = sub("10.88.0.0/16");
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 88, 0, 1));
        assert!(s.contains(Ipv4Addr::new(10, 88, 255, 254)));
        assert!(!s.contains(Ipv4Addr::new(10, 89, 0, 1)));
        assert_eq!(s.hosts().count(), 65536 - 3);
        for (bad, why) in [
            ("10.88.0.1/16", "host bits"),
            ("10.88.0.0/31", "8 to 30"),
            ("10.88.0.0", "ADDRESS/PREFIX"),
            ("10.88.0/16", "IPv4"),
            ("10.88.0.0/x", "prefix length"),
        ] {
            let e = bad.parse::<Subnet>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn lowest_free_no_duplicates_stable_per_name() {
        let mut i = Ipam::new(sub("10.88.0.0/16"));
        let a = i.allocate("a").unwrap();
        let b = i.allocate("b").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(b, Ipv4Addr::new(10, 88, 0, 3));
        assert_eq!(i.allocate("a").unwrap(), a, "a lease is kept per name");
        assert_eq!(i.release("a"), Some(a));
        assert_eq!(i.release("a"), None);
        assert_eq!(i.allocate("c").unwrap(), a, "the lowest free address again");
        let mut all: Vec<Ipv4Addr> = (0..300)
            .map(|n| i.allocate(&format!("n{n}")).unwrap())
            .collect();
        all.extend([i.lease("b").unwrap(), i.lease("c").unwrap()]);
        let unique: BTreeSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len(), "no address given twice");
    }

    #[test]
    fn refuses_an_exhausted_subnet() {
        // A /30: network, gateway, one container, broadcast.
        let mut i = Ipam::new(sub("192.168.7.0/30"));
        assert_eq!(i.allocate("one").unwrap(), Ipv4Addr::new(192, 168, 7, 2));
        let e = i.allocate("two").unwrap_err().to_string();
        assert!(e.contains("192.168.7.0/30") && e.contains("two"), "{e}");
        i.release("one");
        assert!(i.allocate("two").is_ok());
    }

    #[test]
    fn survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net/bridge.json");
        let s = sub("10.88.0.0/16");
        assert_eq!(
            Ipam::load(&path, s).unwrap(),
            Ipam::new(s),
            "no file: empty"
        );
        let mut i = Ipam::new(s);
        i.allocate("a").unwrap();
        i.allocate("b").unwrap();
        i.release("a");
        i.save(&path).unwrap();
        let mut again = Ipam::load(&path, s).unwrap();
        assert_eq!(again, i);
        assert_eq!(again.allocate("b").unwrap(), Ipv4Addr::new(10, 88, 0, 3));
        assert_eq!(again.allocate("d").unwrap(), Ipv4Addr::new(10, 88, 0, 2));
        // Another subnet: the old leases are dropped.
        let other = Ipam::load(&path, sub("172.30.0.0/24")).unwrap();
        assert_eq!(other.lease("b"), None);
        std::fs::write(&path, "{not json").unwrap();
        let e = Ipam::load(&path, s).unwrap_err().to_string();
        assert!(e.contains("bridge.json"), "{e}");
    }
}
