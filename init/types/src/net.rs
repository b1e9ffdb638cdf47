//! Addresses of the node's network settings: IP addresses, CIDRs and the
//! DHCP mode of a `.network` unit.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

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

/// The transport of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// A published port, as `docker run -p` and `ports:` take it:
/// `HOST:CONTAINER[/tcp|udp]` or `IPV4:HOST:CONTAINER[/tcp|udp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Port {
    /// Only this node address; None: every address of the node.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl TryFrom<&str> for Port {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<Port, Invalid> {
        let (spec, protocol) = match s.rsplit_once('/') {
            Some((sp, "tcp")) => (sp, Protocol::Tcp),
            Some((sp, "udp")) => (sp, Protocol::Udp),
            Some((_, p)) => return Err(Invalid(format!("{s:?}: {p:?} is not tcp or udp"))),
            None => (s, Protocol::Tcp),
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let (host_ip, host, cont) = match parts[..] {
            [h, c] => (None, h, c),
            [ip, h, c] => {
                let ip = Ipv4Addr::from_str(ip)
                    .map_err(|_| Invalid(format!("{s:?}: {ip:?} is not an IPv4 address")))?;
                (Some(ip), h, c)
            }
            _ => {
                return Err(Invalid(format!(
                "{s:?} is not HOST:CONTAINER or IP:HOST:CONTAINER, with an optional /tcp or /udp"
            )))
            }
        };
        let num = |p: &str| match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err(Invalid(format!("{s:?}: {p:?} is not a port (1-65535)"))),
        };
        Ok(Port {
            host_ip,
            host_port: num(host)?,
            container_port: num(cont)?,
            protocol,
        })
    }
}

/// `[IP:]HOST:CONTAINER/PROTO`.
impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(
            f,
            "{}:{}/{}",
            self.host_port, self.container_port, self.protocol
        )
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

    #[test]
    fn ports_as_docker_takes_them() {
        let p = Port::try_from("127.0.0.1:53:53/udp").unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(p.protocol, Protocol::Udp);
        assert_eq!(p.to_string(), "127.0.0.1:53:53/udp");
        assert_eq!(
            Port::try_from("8080:80").unwrap().to_string(),
            "8080:80/tcp"
        );
        let e = |s: &str| Port::try_from(s).unwrap_err().to_string();
        assert_eq!(
            e("80:80/sctp"),
            "\"80:80/sctp\": \"sctp\" is not tcp or udp"
        );
        assert_eq!(e("x:80:80"), "\"x:80:80\": \"x\" is not an IPv4 address");
        assert_eq!(e("0:80"), "\"0:80\": \"0\" is not a port (1-65535)");
        assert!(e("80").contains("is not HOST:CONTAINER"));
    }

    proptest! {
        #[test]
        fn ports_parse_from_what_they_show(
            ip in proptest::option::of(any::<[u8; 4]>()),
            host in 1u16..,
            cont in 1u16..,
            udp in any::<bool>(),
        ) {
            let p = Port {
                host_ip: ip.map(Ipv4Addr::from),
                host_port: host,
                container_port: cont,
                protocol: if udp { Protocol::Udp } else { Protocol::Tcp },
            };
            prop_assert_eq!(Port::try_from(p.to_string().as_str()), Ok(p));
        }

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
