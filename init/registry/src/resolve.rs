//! Host names to addresses without libc's NSS (keel is a static binary,
//! where glibc's `getaddrinfo` cannot load its modules).
//!
//! 1. An IP literal (`10.0.2.2`, `::1`, `[::1]`) is its own address.
//! 2. `ROOT/etc/hosts` is searched for the name (case-insensitively);
//!    `localhost` without an entry is the loopback address, as RFC 6761
//!    wants.
//! 3. Otherwise an A query (recursion desired) goes over UDP to each
//!    `nameserver` of `ROOT/etc/resolv.conf` in turn, twice round, 3 s
//!    each. An answer counts only with the query's id and question; its A
//!    records (a CNAME chain's included) are the addresses. NXDOMAIN stops
//!    the search. The name is asked as given: no `search` domains.
//!
//! The DNS messages are encoded and decoded by `simple-dns`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use simple_dns::rdata::RData;
use simple_dns::{Name, Packet, PacketFlag, Question, CLASS, QCLASS, QTYPE, RCODE, TYPE};

const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
const ROUNDS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("resolve {host}: read {path}: {source}")]
    Read {
        host: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("resolve {host}: not in {hosts} and {resolv_conf} names no nameserver")]
    NoNameserver {
        host: String,
        hosts: PathBuf,
        resolv_conf: PathBuf,
    },
    #[error("resolve {host}: {name} is not a DNS name: {problem}")]
    Name {
        host: String,
        name: String,
        problem: String,
    },
    #[error("resolve {host}: no such host (NXDOMAIN from {server})")]
    NoSuchHost { host: String, server: IpAddr },
    #[error("resolve {host}: no address from {servers:?}: {problems}")]
    NoAnswer {
        host: String,
        servers: Vec<IpAddr>,
        problems: String,
    },
}

/// An IP literal, bracketed or not.
pub fn literal(host: &str) -> Option<IpAddr> {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    h.parse().ok()
}

/// The addresses `/etc/hosts` text gives `host`, in file order.
pub fn hosts_lookup(text: &str, host: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(Ok(ip)) = fields.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        if fields.any(|n| n.eq_ignore_ascii_case(host)) && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// The `nameserver` addresses of resolv.conf text.
pub fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            match (f.next(), f.next()) {
                (Some("nameserver"), Some(a)) => a.parse().ok(),
                _ => None,
            }
        })
        .collect()
}

/// An A query for `name` with id `id`.
pub fn query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut p = Packet::new_query(id);
    p.set_flags(PacketFlag::RECURSION_DESIRED);
    let qname = Name::new(name).map_err(|e| e.to_string())?;
    p.questions.push(Question::new(
        qname,
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    p.build_bytes_vec().map_err(|e| e.to_string())
}

/// What an answer to query `id` for `name` says.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Addresses(Vec<Ipv4Addr>),
    NoSuchName,
    /// Not an answer to this query, or a failure (SERVFAIL, REFUSED, no
    /// A record): try the next server.
    Unusable(String),
}

pub fn answer(bytes: &[u8], id: u16, name: &str) -> Answer {
    let p = match Packet::parse(bytes) {
        Ok(p) => p,
        Err(e) => return Answer::Unusable(format!("malformed answer: {e}")),
    };
    let asked = p.questions.first().is_some_and(|q| {
        q.qname
            .to_string()
            .eq_ignore_ascii_case(name.trim_end_matches('.'))
    });
    if p.id() != id || !p.has_flags(PacketFlag::RESPONSE) || !asked {
        return Answer::Unusable("an answer to another query".into());
    }
    match p.rcode() {
        RCODE::NoError => {}
        RCODE::NameError => return Answer::NoSuchName,
        rc => return Answer::Unusable(format!("{rc:?}")),
    }
    let addrs: Vec<Ipv4Addr> = p
        .answers
        .iter()
        .filter_map(|r| match &r.rdata {
            RData::A(a) => Some(Ipv4Addr::from(a.address)),
            _ => None,
        })
        .collect();
    if addrs.is_empty() {
        Answer::Unusable("no A record".into())
    } else {
        Answer::Addresses(addrs)
    }
}

/// A query id nobody off the path can guess in advance: std's hasher keys
/// are random per process.
fn query_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u16
}

async fn ask(server: IpAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind).await?;
    // connect() makes the kernel drop datagrams from other sources.
    sock.connect((server, 53)).await?;
    sock.send(msg).await?;
    let mut buf = vec![0u8; 1500];
    let n = tokio::time::timeout(QUERY_TIMEOUT, sock.recv(&mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 3 s"))??;
    buf.truncate(n);
    Ok(buf)
}

/// The addresses of `host`, reading `root/etc/hosts` and
/// `root/etc/resolv.conf`.
pub async fn resolve(host: &str, root: &Path) -> Result<Vec<IpAddr>, ResolveError> {
    if let Some(ip) = literal(host) {
        return Ok(vec![ip]);
    }
    let read = |p: PathBuf| match std::fs::read_to_string(&p) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(ResolveError::Read {
            host: host.to_string(),
            path: p,
            source,
        }),
    };
    let hosts = root.join("etc/hosts");
    let found = hosts_lookup(&read(hosts.clone())?, host);
    if !found.is_empty() {
        return Ok(found);
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    }
    let resolv_conf = root.join("etc/resolv.conf");
    let servers = nameservers(&read(resolv_conf.clone())?);
    if servers.is_empty() {
        return Err(ResolveError::NoNameserver {
            host: host.to_string(),
            hosts,
            resolv_conf,
        });
    }
    let id = query_id();
    let msg = query(id, host).map_err(|problem| ResolveError::Name {
        host: host.to_string(),
        name: host.to_string(),
        problem,
    })?;
    let mut problems = Vec::new();
    for _ in 0..ROUNDS {
        for &server in &servers {
            match ask(server, &msg).await {
                Ok(bytes) => match answer(&bytes, id, host) {
                    Answer::Addresses(a) => return Ok(a.into_iter().map(IpAddr::V4).collect()),
                    Answer::NoSuchName => {
                        return Err(ResolveError::NoSuchHost {
                            host: host.to_string(),
                            server,
                        })
                    }
                    Answer::Unusable(why) => problems.push(format!("{server}: {why}")),
                },
                Err(e) => problems.push(format!("{server}: {e}")),
            }
        }
    }
    Err(ResolveError::NoAnswer {
        host: host.to_string(),
        servers,
        problems: problems.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use simple_dns::rdata::A;
    use simple_dns::ResourceRecord;

    use super::*;

    #[test]
    fn literals_and_hosts() {
        assert_eq!(literal("10.0.2.2"), Some("10.0.2.2".parse().unwrap()));
        assert_eq!(literal("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(literal("registry.example"), None);
        let hosts = "127.0.0.1 localhost\n# 10.9.9.9 reg\n10.0.2.2  Reg.Example reg # the host\n::1 reg\nbad line\n";
        assert_eq!(
            hosts_lookup(hosts, "reg.example"),
            ["10.0.2.2".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(hosts_lookup(hosts, "reg").len(), 2);
        assert!(hosts_lookup(hosts, "other").is_empty());
        assert_eq!(
            nameservers("# x\nnameserver 10.0.2.3\nsearch a\nnameserver ::1\nnameserver bad\n"),
            [
                "10.0.2.3".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
    }

    fn reply(id: u16, name: &str, rcode: RCODE, a: &[[u8; 4]]) -> Vec<u8> {
        let mut p = Packet::new_reply(id);
        *p.rcode_mut() = rcode;
        p.questions.push(Question::new(
            Name::new(name).unwrap(),
            QTYPE::TYPE(TYPE::A),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        for ip in a {
            p.answers.push(ResourceRecord::new(
                Name::new(name).unwrap(),
                CLASS::IN,
                60,
                RData::A(A {
                    address: u32::from_be_bytes(*ip),
                }),
            ));
        }
        p.build_bytes_vec().unwrap()
    }

    #[test]
    fn query_and_answer_checks() {
        let q = query(7, "reg.example").unwrap();
        let p = Packet::parse(&q).unwrap();
        assert!(p.has_flags(PacketFlag::RECURSION_DESIRED));
        assert_eq!(p.questions[0].qname.to_string(), "reg.example");
        assert_eq!(
            answer(
                &reply(7, "reg.example", RCODE::NoError, &[[10, 0, 2, 2]]),
                7,
                "reg.example"
            ),
            Answer::Addresses(vec![Ipv4Addr::new(10, 0, 2, 2)])
        );
        assert_eq!(
            answer(
                &reply(7, "reg.example", RCODE::NameError, &[]),
                7,
                "reg.example"
            ),
            Answer::NoSuchName
        );
        for (bytes, why) in [
            (
                reply(8, "reg.example", RCODE::NoError, &[[1, 2, 3, 4]]),
                "another query",
            ),
            (
                reply(7, "evil.example", RCODE::NoError, &[[1, 2, 3, 4]]),
                "another query",
            ),
            (
                reply(7, "reg.example", RCODE::ServerFailure, &[]),
                "ServerFailure",
            ),
            (reply(7, "reg.example", RCODE::NoError, &[]), "no A record"),
            (vec![1, 2, 3], "malformed"),
        ] {
            match answer(&bytes, 7, "reg.example") {
                Answer::Unusable(w) => assert!(w.contains(why), "{w}"),
                other => panic!("{other:?}"),
            }
        }
        // The query is not a response: it is not mistaken for one.
        assert!(matches!(answer(&q, 7, "reg.example"), Answer::Unusable(_)));
    }

    #[tokio::test]
    async fn files_under_the_root() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/hosts"), "10.1.2.3 reg.example\n").unwrap();
        assert_eq!(
            resolve("reg.example", t.path()).await.unwrap(),
            ["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            resolve("localhost", t.path()).await.unwrap(),
            [IpAddr::V4(Ipv4Addr::LOCALHOST)]
        );
        let e = resolve("other.example", t.path())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("names no nameserver"), "{e}");
    }
}
