//! The pure parts of a container's bridge network: the host end's name,
//! `/etc/resolv.conf` and `/etc/hosts`, published ports, and keel's
//! nftables ruleset.

use std::net::Ipv4Addr;

use keel_config::model::Port;
use keel_sys::nftables::{
    Chain, ChainType, CmpOp, CtKey, Expr, Family, Hook, MetaKey, PayloadBase, Rule, Table, Verdict,
    CT_ESTABLISHED, CT_RELATED, REG_1, REG_2,
};

use super::{NetError, Subnet};

/// The nftables table keel owns (and replaces whole).
pub const TABLE: &str = "keel";
/// keel's inet table with the input filter ([`guard`]).
pub const GUARD_TABLE: &str = "keel_guard";

/// The host end of a container's veth pair: `veth` and 11 hex digits of a
/// 64-bit FNV-1a hash of the name: 15 bytes, the kernel's limit (IFNAMSIZ
/// less the NUL), the same for a name on every boot, and 44 bits make a
/// collision between two containers of a node unlikely (one is refused
/// with EEXIST, not confused).
pub fn host_veth(container: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("veth{:011x}", h >> 20)
}

/// The container's `/etc/resolv.conf` from the node's: its IPv4 name
/// servers that a container can reach, its `search`, `domain` and `options`
/// lines; `fallback` servers when none is left.
///
/// Loopback servers (127.0.0.0/8: a local stub resolver) are dropped: inside
/// the container's namespace 127.0.0.1 is the container's own loopback, and
/// keel runs no resolver on the bridge to forward to. IPv6 servers are
/// dropped too: the bridge gives containers IPv4 only.
pub fn resolv_conf(node: &str, fallback: &[Ipv4Addr]) -> String {
    let mut servers = Vec::new();
    let mut other = Vec::new();
    for line in node.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(Ok(a)) = words.next().map(str::parse::<Ipv4Addr>) {
                    if !a.is_loopback() && !a.is_unspecified() && !servers.contains(&a) {
                        servers.push(a);
                    }
                }
            }
            Some("search" | "domain" | "options") => other.push(line.trim().to_string()),
            _ => {}
        }
    }
    if servers.is_empty() {
        servers = fallback.to_vec();
    }
    let mut out = String::new();
    for s in servers {
        out += &format!("nameserver {s}\n");
    }
    for l in other {
        out += &l;
        out.push('\n');
    }
    out
}

/// The container's `/etc/hosts`: loopback names and its own name on its
/// bridge address.
pub fn hosts(hostname: &str, ip: Ipv4Addr) -> String {
    format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{hostname}\n")
}

/// A published port's transport: the config's own type.
pub use keel_types::Protocol as Proto;

/// A published port: `host_ip:host_port/proto` to `ip:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Only this node address; `None`: every address of the node.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub proto: Proto,
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// The configuration's ports of container `name` at `ip`, checked.
pub fn published(name: &str, ip: Ipv4Addr, ports: &[Port]) -> Result<Vec<Published>, NetError> {
    ports
        .iter()
        .map(|p| {
            let bad = |reason: &str| NetError::Port {
                name: name.into(),
                port: p.to_string(),
                reason: reason.into(),
            };
            // 0.0.0.0 is every address, as no address is.
            let host_ip = p.host_ip.filter(|h| !h.is_unspecified());
            if host_ip.is_some_and(|h| h.is_loopback()) {
                return Err(bad("ports are not published on loopback addresses (see docs/containers.md, Bridge networking)"));
            }
            if p.host_port == 0 || p.container_port == 0 {
                return Err(bad("port 0 cannot be published"));
            }
            Ok(Published {
                host_ip,
                host_port: p.host_port,
                proto: p.protocol,
                ip,
                port: p.container_port,
            })
        })
        .collect()
}

/// The ports of two containers that would claim the same node port.
pub fn clash<'a>(a: &'a [Published], b: &'a [Published]) -> Option<&'a Published> {
    a.iter().find(|x| {
        b.iter().any(|y| {
            x.proto == y.proto
                && x.host_port == y.host_port
                && (x.host_ip.is_none() || y.host_ip.is_none() || x.host_ip == y.host_ip)
        })
    })
}

fn cmp(op: CmpOp, data: &[u8]) -> Expr {
    Expr::Cmp {
        sreg: REG_1,
        op,
        data: data.to_vec(),
    }
}

/// `ip saddr SUBNET`: load the source address, mask it, compare.
fn saddr_in(s: Subnet) -> [Expr; 3] {
    let mask = u32::MAX << (32 - s.prefix());
    [
        Expr::Payload {
            base: PayloadBase::Network,
            offset: 12,
            len: 4,
            dreg: REG_1,
        },
        Expr::Bitwise {
            reg: REG_1,
            mask: mask.to_be_bytes().to_vec(),
            xor: vec![0; 4],
        },
        cmp(CmpOp::Eq, &s.network().octets()),
    ]
}

/// `KEY OP NAME` for `iifname`/`oifname`: interface names compare as 16
/// NUL-padded bytes.
fn ifname(key: MetaKey, op: CmpOp, name: &str) -> [Expr; 2] {
    let mut n = [0u8; 16];
    let len = name.len().min(15);
    n[..len].copy_from_slice(&name.as_bytes()[..len]);
    [Expr::Meta { key, dreg: REG_1 }, cmp(op, &n)]
}

fn oifname(op: CmpOp, name: &str) -> [Expr; 2] {
    ifname(MetaKey::OifName, op, name)
}

/// `meta l4proto P th dport PORT`.
fn dport(proto: Proto, port: u16) -> [Expr; 4] {
    let proto = match proto {
        Proto::Tcp => libc::IPPROTO_TCP,
        Proto::Udp => libc::IPPROTO_UDP,
    } as u8;
    [
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: REG_1,
        },
        cmp(CmpOp::Eq, &[proto]),
        Expr::Payload {
            base: PayloadBase::Transport,
            offset: 2,
            len: 2,
            dreg: REG_1,
        },
        cmp(CmpOp::Eq, &port.to_be_bytes()),
    ]
}

/// The DNAT rule of one published port.
fn dnat(p: &Published, chain: &str) -> Rule {
    let mut e = Vec::new();
    match p.host_ip {
        // `ip daddr HOST_IP`
        Some(h) => e.extend([
            Expr::Payload {
                base: PayloadBase::Network,
                offset: 16,
                len: 4,
                dreg: REG_1,
            },
            cmp(CmpOp::Eq, &h.octets()),
        ]),
        // `fib daddr type local`: only packets to the node itself, never a
        // container's connection to the same port of another host.
        None => e.extend([
            Expr::FibDaddrType { dreg: REG_1 },
            cmp(CmpOp::Eq, &(libc::RTN_LOCAL as u32).to_ne_bytes()),
        ]),
    }
    e.extend(dport(p.proto, p.host_port));
    e.extend([
        // `dnat to IP:PORT`
        Expr::Immediate {
            dreg: REG_1,
            data: p.ip.octets().to_vec(),
        },
        Expr::Immediate {
            dreg: REG_2,
            data: p.port.to_be_bytes().to_vec(),
        },
        Expr::Dnat {
            addr: REG_1,
            port: REG_2,
        },
    ]);
    Rule {
        chain: chain.into(),
        exprs: e,
    }
}

/// keel's table for the bridge `bridge` on `subnet` with `ports` published:
///
/// ```text
/// table ip keel {
///   chain prerouting  { type nat hook prerouting priority -100; DNAT per port }
///   chain output      { type nat hook output priority -100; the same rules }
///   chain postrouting { type nat hook postrouting priority 100;
///     ip saddr SUBNET oifname != BRIDGE masquerade
///     ip saddr SUBNET oifname BRIDGE ct status dnat masquerade }
/// }
/// ```
///
/// `output` serves connections from the node itself (they never pass
/// prerouting). The second masquerade is for hairpin connections: a
/// container reaching a published port of the node lands on a container of
/// the same bridge, which must answer through the node, not directly.
pub fn ruleset(bridge: &str, subnet: Subnet, ports: &[Published]) -> Table {
    let chain = |name: &str, hook, priority| Chain {
        name: name.into(),
        kind: ChainType::Nat,
        hook,
        priority,
    };
    let mut rules = Vec::new();
    for c in ["prerouting", "output"] {
        rules.extend(ports.iter().map(|p| dnat(p, c)));
    }
    let mut out = Vec::from(saddr_in(subnet));
    out.extend(oifname(CmpOp::Neq, bridge));
    out.push(Expr::Masquerade);
    let mut hairpin = Vec::from(saddr_in(subnet));
    hairpin.extend(oifname(CmpOp::Eq, bridge));
    hairpin.extend([
        Expr::Ct {
            key: CtKey::Status,
            dreg: REG_1,
        },
        Expr::Bitwise {
            reg: REG_1,
            mask: 0x20u32.to_ne_bytes().to_vec(), // IPS_DST_NAT
            xor: vec![0; 4],
        },
        cmp(CmpOp::Neq, &[0; 4]),
        Expr::Masquerade,
    ]);
    for exprs in [out, hairpin] {
        rules.push(Rule {
            chain: "postrouting".into(),
            exprs,
        });
    }
    Table {
        family: Family::Ip,
        name: TABLE.into(),
        chains: vec![
            chain("prerouting", Hook::Prerouting, -100),
            chain("output", Hook::Output, -100),
            chain("postrouting", Hook::Postrouting, 100),
        ],
        rules,
    }
}

/// A door through [`guard`]: a container's address may reach one TCP
/// port of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Door {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// keel's input filter: what comes in from the bridge to the node itself
/// (any of its addresses: the gateway, eth0's, a broadcast) is dropped,
/// but for replies and the `doors` containers were given:
///
/// ```text
/// table inet keel_guard {
///   chain input { type filter hook input priority 0;
///     iifname BRIDGE ct state established,related accept
///     iifname BRIDGE meta nfproto ipv4 ip saddr IP tcp dport PORT accept  (per door)
///     iifname BRIDGE drop
///   }
/// }
/// ```
///
/// The input hook sees only packets for the node: a published port is
/// translated in prerouting (priority -100) to a container's address and
/// forwarded, never seen here. `inet`, so that IPv6 (a link-local address
/// on the bridge) is no way around it. Replies are let in so that the node
/// keeps reaching containers (health checks over HTTP or TCP). keel serves
/// nothing to containers on the bridge (no DHCP: addresses are set through
/// netlink; no DNS: containers use the node's servers, through NAT).
pub fn guard(bridge: &str, doors: &[Door]) -> Table {
    let from_bridge = || ifname(MetaKey::IifName, CmpOp::Eq, bridge);
    let mut replies = Vec::from(from_bridge());
    replies.extend([
        Expr::Ct {
            key: CtKey::State,
            dreg: REG_1,
        },
        Expr::Bitwise {
            reg: REG_1,
            mask: (CT_ESTABLISHED | CT_RELATED).to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        },
        cmp(CmpOp::Neq, &[0; 4]),
        Expr::Verdict(Verdict::Accept),
    ]);
    let mut rules = vec![replies];
    for d in doors {
        let mut e = Vec::from(from_bridge());
        e.extend([
            Expr::Meta {
                key: MetaKey::NfProto,
                dreg: REG_1,
            },
            cmp(CmpOp::Eq, &[libc::NFPROTO_IPV4 as u8]),
            Expr::Payload {
                base: PayloadBase::Network,
                offset: 12,
                len: 4,
                dreg: REG_1,
            },
            cmp(CmpOp::Eq, &d.ip.octets()),
        ]);
        e.extend(dport(Proto::Tcp, d.port));
        e.push(Expr::Verdict(Verdict::Accept));
        rules.push(e);
    }
    let mut drop = Vec::from(from_bridge());
    drop.push(Expr::Verdict(Verdict::Drop));
    rules.push(drop);
    Table {
        family: Family::Inet,
        name: GUARD_TABLE.into(),
        chains: vec![Chain {
            name: "input".into(),
            kind: ChainType::Filter,
            hook: Hook::Input,
            priority: 0,
        }],
        rules: rules
            .into_iter()
            .map(|exprs| Rule {
                chain: "input".into(),
                exprs,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(host_ip: Option<&str>, h: u16, c: u16, proto: &str) -> Port {
        let ip = host_ip.map(|i| format!("{i}:")).unwrap_or_default();
        let mut p = Port::try_from(format!("{ip}1:{c}/{proto}").as_str()).unwrap();
        // Port 0 only through the struct: its parser refuses it.
        p.host_port = h;
        p
    }

    #[test]
    fn veth_names() {
        let a = host_veth("web");
        assert_eq!(a, host_veth("web"), "deterministic");
        assert_ne!(a, host_veth("web2"));
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("veth"));
        let long = "a-container-name-much-longer-than-fifteen-bytes";
        assert_eq!(host_veth(long).len(), 15);
        let names: std::collections::BTreeSet<String> =
            (0..10_000).map(|i| host_veth(&format!("c{i}"))).collect();
        assert_eq!(names.len(), 10_000);
    }

    #[test]
    fn resolv_conf_drops_unreachable_servers() {
        let fb = [Ipv4Addr::new(1, 1, 1, 1)];
        let node = "# from DHCP\nnameserver 127.0.0.53\nnameserver 10.0.2.3\nnameserver fd00::3\nnameserver 10.0.2.3\nsearch example.org\noptions edns0\n";
        assert_eq!(
            resolv_conf(node, &fb),
            "nameserver 10.0.2.3\nsearch example.org\noptions edns0\n"
        );
        assert_eq!(
            resolv_conf("nameserver 127.0.0.1\n", &fb),
            "nameserver 1.1.1.1\n"
        );
        assert_eq!(resolv_conf("", &fb), "nameserver 1.1.1.1\n");
    }

    #[test]
    fn hosts_file() {
        let h = hosts("web", Ipv4Addr::new(10, 88, 0, 2));
        assert!(h.contains("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.88.0.2\tweb\n"));
    }

    #[test]
    fn ports_are_checked() {
        let ip = Ipv4Addr::new(10, 88, 0, 2);
        let p = published(
            "web",
            ip,
            &[
                port(None, 8080, 80, "tcp"),
                port(Some("192.0.2.1"), 53, 5353, "udp"),
            ],
        )
        .unwrap();
        assert_eq!(p[0].proto, Proto::Tcp);
        assert_eq!(p[1].host_ip, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!((p[1].port, p[1].ip), (5353, ip));
        // What the port's type refuses never reaches the plan.
        for (text, why) in [
            ("1:1/sctp", "tcp or udp"),
            ("fd00::1:1:1", "HOST:CONTAINER"),
        ] {
            let e = Port::try_from(text).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        for (bad, why) in [
            (port(Some("127.0.0.1"), 1, 1, "tcp"), "loopback"),
            (port(None, 0, 1, "tcp"), "port 0"),
        ] {
            let e = published("web", ip, &[bad]).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("web"), "{e}");
        }
    }

    #[test]
    fn clashes() {
        let ip = Ipv4Addr::new(10, 88, 0, 2);
        let p = |h: Option<&str>, n, proto| published("x", ip, &[port(h, n, 1, proto)]).unwrap();
        assert!(clash(&p(None, 80, "tcp"), &p(None, 80, "tcp")).is_some());
        assert!(clash(&p(None, 80, "tcp"), &p(None, 80, "udp")).is_none());
        assert!(clash(&p(None, 80, "tcp"), &p(Some("192.0.2.1"), 80, "tcp")).is_some());
        assert!(clash(
            &p(Some("192.0.2.2"), 80, "tcp"),
            &p(Some("192.0.2.1"), 80, "tcp")
        )
        .is_none());
    }

    #[test]
    fn the_ruleset() {
        let s: Subnet = "10.88.0.0/16".parse().unwrap();
        let ip = Ipv4Addr::new(10, 88, 0, 2);
        let ports = published("web", ip, &[port(None, 8080, 80, "tcp")]).unwrap();
        let t = ruleset("keel0", s, &ports);
        assert_eq!(t.name, "keel");
        let names: Vec<&str> = t.chains.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["prerouting", "output", "postrouting"]);
        let in_chain = |c: &str| t.rules.iter().filter(|r| r.chain == c).count();
        assert_eq!(
            (
                in_chain("prerouting"),
                in_chain("output"),
                in_chain("postrouting")
            ),
            (1, 1, 2)
        );
        let d = &t.rules[0].exprs;
        assert!(d.contains(&Expr::Immediate {
            dreg: REG_1,
            data: vec![10, 88, 0, 2]
        }));
        assert!(d.contains(&Expr::Immediate {
            dreg: REG_2,
            data: vec![0, 80]
        }));
        assert!(
            d.contains(&cmp(CmpOp::Eq, &[0x1f, 0x90])),
            "8080 big-endian"
        );
        let masq = &t.rules[2].exprs;
        assert_eq!(
            masq[1],
            Expr::Bitwise {
                reg: REG_1,
                mask: vec![255, 255, 0, 0],
                xor: vec![0; 4]
            }
        );
        assert_eq!(masq[4], cmp(CmpOp::Neq, b"keel0\0\0\0\0\0\0\0\0\0\0\0"));
        assert_eq!(
            ruleset("keel0", s, &[]).rules.len(),
            2,
            "no ports: NAT out only"
        );
    }

    #[test]
    fn the_guard() {
        let g = guard("keel0", &[]);
        assert_eq!((g.family, g.name.as_str()), (Family::Inet, "keel_guard"));
        assert_eq!(g.chains[0].hook, Hook::Input);
        assert_eq!(g.chains[0].kind, ChainType::Filter);
        let from_keel0 = cmp(CmpOp::Eq, b"keel0\0\0\0\0\0\0\0\0\0\0\0");
        // No door: replies in, the rest from the bridge dropped.
        assert_eq!(g.rules.len(), 2);
        for r in &g.rules {
            assert_eq!(
                r.exprs[0],
                Expr::Meta {
                    key: MetaKey::IifName,
                    dreg: REG_1
                }
            );
            assert_eq!(r.exprs[1], from_keel0, "every rule is about the bridge");
        }
        assert_eq!(
            g.rules[0].exprs.last(),
            Some(&Expr::Verdict(Verdict::Accept))
        );
        assert_eq!(g.rules[1].exprs.len(), 3, "iifname keel0 drop");
        assert_eq!(g.rules[1].exprs[2], Expr::Verdict(Verdict::Drop));
        // A door: accepted from that address to that TCP port only, before
        // the drop.
        let d = Door {
            ip: Ipv4Addr::new(10, 88, 0, 7),
            port: 2379,
        };
        let g = guard("keel0", &[d]);
        assert_eq!(g.rules.len(), 3);
        let door = &g.rules[1].exprs;
        assert!(door.contains(&cmp(CmpOp::Eq, &[10, 88, 0, 7])));
        assert!(door.contains(&cmp(CmpOp::Eq, &[6])), "tcp");
        assert!(door.contains(&cmp(CmpOp::Eq, &2379u16.to_be_bytes())));
        assert_eq!(door.last(), Some(&Expr::Verdict(Verdict::Accept)));
        assert_eq!(g.rules[2].exprs.last(), Some(&Expr::Verdict(Verdict::Drop)));
    }
}
