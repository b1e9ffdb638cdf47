//! Addresses of the node's network settings: IP addresses, CIDRs and the
//! DHCP mode of a `.network` unit.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::Invalid;

/// An IPv4 or IPv6 address, with the validator's message.
pub fn ip(s: &str) -> Result<IpAddr, Invalid> {
    s.parse::<IpAddr>()
        .map_err(|_| Invalid(format!("{s:?} is not an IP address")))
}

/// `ADDRESS/PREFIX`, IPv4 or IPv6: an address of a link (host bits kept),
/// or a route's destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `addr/prefix`, or None when the prefix is longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    pub fn addr(self) -> IpAddr {
        self.addr
    }

    pub fn prefix(self) -> u8 {
        self.prefix
    }

    /// The default route's destination of the address's family.
    pub fn any_of(addr: IpAddr) -> Cidr {
        let any: IpAddr = if addr.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        Cidr {
            addr: any,
            prefix: 0,
        }
    }
}

impl TryFrom<&str> for Cidr {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<Cidr, Invalid> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| Invalid(format!("{s:?} is not ADDRESS/PREFIX")))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| Invalid(format!("{s:?}: {a:?} is not an IP address")))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        // Digits only: u8's parser would take "+24".
        let prefix = p
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| p.parse::<u8>().ok())
            .flatten();
        prefix
            .and_then(|n| Cidr::new(addr, n))
            .ok_or_else(|| Invalid(format!("{s:?}: prefix {p:?} is not 0-{max}")))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `[Network] DHCP=` of a `.network` unit: which families get their
/// address by DHCP. keel's client speaks DHCPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhcpMode {
    /// `yes`, `both`, `true`.
    Both,
    /// `ipv4`, `v4`.
    Ipv4,
    /// `ipv6`, `v6`.
    Ipv6,
    /// `no`, `false`, `none`.
    No,
}

impl DhcpMode {
    /// Whether the unit's links get their IPv4 address by DHCP.
    pub fn wants_v4(self) -> bool {
        matches!(self, DhcpMode::Both | DhcpMode::Ipv4)
    }
}

impl TryFrom<&str> for DhcpMode {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<DhcpMode, Invalid> {
        Ok(match s {
            "yes" | "both" | "true" => DhcpMode::Both,
            "ipv4" | "v4" => DhcpMode::Ipv4,
            "ipv6" | "v6" => DhcpMode::Ipv6,
            "no" | "false" | "none" => DhcpMode::No,
            _ => return Err(Invalid(format!("{s:?} is not yes, no, ipv4, ipv6 or both"))),
        })
    }
}

/// networkd's canonical words: `yes`, `ipv4`, `ipv6`, `no`.
impl fmt::Display for DhcpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DhcpMode::Both => "yes",
            DhcpMode::Ipv4 => "ipv4",
            DhcpMode::Ipv6 => "ipv6",
            DhcpMode::No => "no",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cidrs_with_the_validators_messages() {
        let c = Cidr::try_from("10.0.2.15/24").unwrap();
        assert_eq!((c.addr().to_string(), c.prefix()), ("10.0.2.15".into(), 24));
        assert!(Cidr::try_from("fd00::1/64").is_ok());
        let e = |s: &str| Cidr::try_from(s).unwrap_err().to_string();
        assert_eq!(e("10.0.2.15"), "\"10.0.2.15\" is not ADDRESS/PREFIX");
        assert_eq!(
            e("10.0.2/24"),
            "\"10.0.2/24\": \"10.0.2\" is not an IP address"
        );
        assert_eq!(
            e("10.0.2.15/33"),
            "\"10.0.2.15/33\": prefix \"33\" is not 0-32"
        );
        assert_eq!(
            e("10.0.2.15/+8"),
            "\"10.0.2.15/+8\": prefix \"+8\" is not 0-32"
        );
        assert_eq!(e("::1/129"), "\"::1/129\": prefix \"129\" is not 0-128");
        assert_eq!(
            ip("1.2.3").unwrap_err().to_string(),
            "\"1.2.3\" is not an IP address"
        );
    }

    #[test]
    fn dhcp_words() {
        for (w, want_v4) in [
            ("yes", true),
            ("both", true),
            ("true", true),
            ("ipv4", true),
            ("v4", true),
            ("ipv6", false),
            ("v6", false),
            ("no", false),
            ("false", false),
            ("none", false),
        ] {
            assert_eq!(DhcpMode::try_from(w).unwrap().wants_v4(), want_v4, "{w}");
        }
        assert_eq!(
            DhcpMode::try_from("maybe").unwrap_err().to_string(),
            "\"maybe\" is not yes, no, ipv4, ipv6 or both"
        );
    }

    fn any_cidr() -> impl Strategy<Value = Cidr> {
        prop_oneof![
            (any::<[u8; 4]>(), 0u8..=32).prop_map(|(a, p)| Cidr::new(IpAddr::from(a), p).unwrap()),
            (any::<[u16; 8]>(), 0u8..=128)
                .prop_map(|(a, p)| Cidr::new(IpAddr::from(a), p).unwrap()),
        ]
    }

    proptest! {
        #[test]
        fn cidrs_parse_from_what_they_show(c in any_cidr()) {
            prop_assert_eq!(Cidr::try_from(c.to_string().as_str()), Ok(c));
        }

        #[test]
        fn dhcp_modes_parse_from_what_they_show(i in 0usize..4) {
            let m = [DhcpMode::Both, DhcpMode::Ipv4, DhcpMode::Ipv6, DhcpMode::No][i];
            prop_assert_eq!(DhcpMode::try_from(m.to_string().as_str()), Ok(m));
        }
    }
}
