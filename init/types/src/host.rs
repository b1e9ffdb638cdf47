//! Hosts and the addresses built on them: a host name or IP address, a
//! registry's `host[:port]`, and an http(s) URL.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::Invalid;

/// A DNS host name: dot-separated labels of letters, digits and dashes,
/// none empty, over 63 bytes or starting or ending with a dash; 253 bytes
/// at most.
pub fn hostname(s: &str) -> Result<(), Invalid> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(Invalid(format!("{s:?} is not a valid host name")))
    }
}

/// A host: a name resolved when it is used, or an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    /// A name or an IPv4 address as written, or an IPv6 address in
    /// brackets; None otherwise.
    fn bracketed(s: &str) -> Option<Host> {
        if let Some(v6) = s.strip_prefix('[') {
            let v6 = v6.strip_suffix(']')?;
            return v6.parse::<Ipv6Addr>().ok().map(|a| Host::Ip(a.into()));
        }
        Host::plain(s)
    }

    /// A name or an IPv4 address, without brackets.
    fn plain(s: &str) -> Option<Host> {
        if let Ok(a) = s.parse::<Ipv4Addr>() {
            return Some(Host::Ip(a.into()));
        }
        hostname(s).ok().map(|()| Host::Name(s.to_string()))
    }

    /// The name, or the address without brackets (what a resolver or a
    /// TLS server name takes).
    pub fn bare(&self) -> String {
        match self {
            Host::Name(n) => n.clone(),
            Host::Ip(a) => a.to_string(),
        }
    }
}

/// As in a URL's authority: an IPv6 address in brackets.
impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Host::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
        }
    }
}

/// A port of 1-65535 in digits only (`u16`'s parser takes "+80").
fn port_number(p: &str) -> Option<u16> {
    let n = p.parse::<u16>().ok()?;
    (n > 0 && p.bytes().all(|b| b.is_ascii_digit())).then_some(n)
}

/// Why `host[:port]` is not one.
enum AuthorityError<'a> {
    Host,
    Port(&'a str),
}

/// `host[:port]`, where host is a name, an IPv4 address or an IPv6
/// address in brackets.
fn authority(s: &str) -> Result<(Host, Option<u16>), AuthorityError<'_>> {
    let (host, port) = match s.rfind(':') {
        // `[::1]` has colons but no port after its `]`.
        Some(i) if !s[i..].contains(']') => (&s[..i], Some(&s[i + 1..])),
        _ => (s, None),
    };
    let host = Host::bracketed(host).ok_or(AuthorityError::Host)?;
    let port = match port {
        Some(p) => Some(port_number(p).ok_or(AuthorityError::Port(p))?),
        None => None,
    };
    Ok((host, port))
}

/// A registry, `host[:port]`, as image references and `registries:` name
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Registry {
    pub host: Host,
    pub port: Option<u16>,
}

impl TryFrom<&str> for Registry {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<Registry, Invalid> {
        match authority(s) {
            Ok((host, port)) => Ok(Registry { host, port }),
            Err(AuthorityError::Host) => {
                Err(Invalid(format!("{s:?} is not a registry (host[:port])")))
            }
            Err(AuthorityError::Port(p)) => {
                Err(Invalid(format!("{s:?}: {p:?} is not a port (1-65535)")))
            }
        }
    }
}

impl Registry {
    /// The registry part of an image reference, with the image's messages.
    pub(crate) fn of_image(s: &str) -> Result<Registry, String> {
        match authority(s) {
            Ok((host, port)) => Ok(Registry { host, port }),
            Err(AuthorityError::Host) => {
                let host = s.rsplit_once(':').map_or(s, |(h, _)| h);
                Err(format!("{host:?} is not a registry host"))
            }
            Err(AuthorityError::Port(p)) => Err(format!("{p:?} is not a registry port")),
        }
    }
}

impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// An http:// or https:// URL with a host (the update server, locksmith's
/// endpoints, `keel.config.url`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpUrl {
    pub https: bool,
    pub host: Host,
    pub port: Option<u16>,
    /// What follows the authority: empty, or from its `/`, `?` or `#`.
    pub rest: String,
}

impl HttpUrl {
    /// The port asked: the URL's, else the scheme's.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.https { 443 } else { 80 })
    }

    /// The path and query a request names (`/` when the URL has none),
    /// without the fragment.
    pub fn target(&self) -> String {
        let r = self.rest.split('#').next().unwrap_or("");
        match r.chars().next() {
            None => "/".into(),
            Some('?') => format!("/{r}"),
            Some(_) => r.to_string(),
        }
    }
}

impl TryFrom<&str> for HttpUrl {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<HttpUrl, Invalid> {
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(Invalid(format!("{s:?} is not an http:// or https:// URL")));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (host_port, after) = rest.split_at(end);
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) || host_port.is_empty() {
            return Err(Invalid(format!("{s:?} is not a URL with a host")));
        }
        if let Some(v6) = host_port.strip_prefix('[') {
            let Some((h, _)) = v6.split_once(']') else {
                return Err(Invalid(format!("{s:?}: unclosed [ in host")));
            };
            if h.parse::<Ipv6Addr>().is_err() {
                return Err(Invalid(format!("{s:?}: {h} is not an IPv6 address")));
            }
        }
        let (host, port) = match authority(host_port) {
            Ok(hp) => hp,
            Err(AuthorityError::Port(p)) => {
                return Err(Invalid(format!("{s:?}: {p:?} is not a port")))
            }
            Err(AuthorityError::Host) => {
                let h = match host_port.rfind(':') {
                    Some(i) if !host_port[i..].contains(']') => &host_port[..i],
                    _ => host_port,
                };
                if h.is_empty() {
                    return Err(Invalid(format!("{s:?} is not a URL with a host")));
                }
                return Err(Invalid(format!(
                    "{s:?}: {h:?} is not a host name or address"
                )));
            }
        };
        Ok(HttpUrl {
            https,
            host,
            port,
            rest: after.to_string(),
        })
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        f.write_str(&self.rest)
    }
}

/// Comma-separated URLs, spaces around each dropped (locksmith's
/// `endpoint`).
pub fn url_list(s: &str) -> Result<Vec<HttpUrl>, Invalid> {
    s.split(',').map(|u| HttpUrl::try_from(u.trim())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn host_names() {
        for ok in ["a", "registry.example", "a-b.c1", "x.y.z"] {
            assert!(hostname(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a..b", "a_b", "a b", &"x".repeat(64)] {
            assert_eq!(
                hostname(bad).unwrap_err().to_string(),
                format!("{bad:?} is not a valid host name")
            );
        }
    }

    #[test]
    fn registries_with_the_validators_messages() {
        let r = Registry::try_from("10.0.2.2:5000").unwrap();
        assert_eq!((r.host.bare(), r.port), ("10.0.2.2".into(), Some(5000)));
        let r = Registry::try_from("[fd00::1]:443").unwrap();
        assert_eq!((r.host.bare(), r.port), ("fd00::1".into(), Some(443)));
        assert_eq!(Registry::try_from("[::1]").unwrap().port, None);
        let e = |s: &str| Registry::try_from(s).unwrap_err().to_string();
        assert_eq!(
            e("http://10.0.2.2:5000"),
            "\"http://10.0.2.2:5000\" is not a registry (host[:port])"
        );
        assert_eq!(e("r.lan:0"), "\"r.lan:0\": \"0\" is not a port (1-65535)");
        assert_eq!(
            e("r.lan:+5"),
            "\"r.lan:+5\": \"+5\" is not a port (1-65535)"
        );
        assert_eq!(e("[::1"), "\"[::1\" is not a registry (host[:port])");
        assert_eq!(e("fd00::1"), "\"fd00::1\" is not a registry (host[:port])");
    }

    #[test]
    fn urls_with_the_validators_messages() {
        let u = HttpUrl::try_from("https://updates.example:8443/v1/update?x=1#f").unwrap();
        assert!(u.https);
        assert_eq!(u.host, Host::Name("updates.example".into()));
        assert_eq!(u.port_or_default(), 8443);
        assert_eq!(u.target(), "/v1/update?x=1");
        let u = HttpUrl::try_from("http://[fd00::1]").unwrap();
        assert_eq!((u.port_or_default(), u.target()), (80, "/".into()));
        assert_eq!(HttpUrl::try_from("http://h?q").unwrap().target(), "/?q");
        let e = |s: &str| HttpUrl::try_from(s).unwrap_err().to_string();
        assert_eq!(
            e("ftp://updates"),
            "\"ftp://updates\" is not an http:// or https:// URL"
        );
        assert_eq!(e("http://"), "\"http://\" is not a URL with a host");
        assert_eq!(e("http://a b"), "\"http://a b\" is not a URL with a host");
        assert_eq!(e("http://[::1/x"), "\"http://[::1/x\": unclosed [ in host");
        assert_eq!(
            e("http://[zz]/"),
            "\"http://[zz]/\": zz is not an IPv6 address"
        );
        assert_eq!(e("http://h:0/"), "\"http://h:0/\": \"0\" is not a port");
        assert_eq!(e("http://h:x"), "\"http://h:x\": \"x\" is not a port");
        assert_eq!(e("http://:80"), "\"http://:80\" is not a URL with a host");
        assert_eq!(
            e("http://a_b/"),
            "\"http://a_b/\": \"a_b\" is not a host name or address"
        );
        assert_eq!(
            url_list("http://a:1, https://b").unwrap(),
            [
                HttpUrl::try_from("http://a:1").unwrap(),
                HttpUrl::try_from("https://b").unwrap()
            ]
        );
        assert!(url_list("http://a,").is_err());
    }

    fn any_host() -> impl Strategy<Value = Host> {
        prop_oneof![
            "[a-z][a-z0-9-]{0,8}[a-z0-9](\\.[a-z][a-z0-9]{0,5}){0,2}".prop_map(Host::Name),
            any::<[u8; 4]>().prop_map(|a| Host::Ip(Ipv4Addr::from(a).into())),
            any::<[u16; 8]>().prop_map(|a| Host::Ip(Ipv6Addr::from(a).into())),
        ]
    }

    proptest! {
        #[test]
        fn registries_parse_from_what_they_show(host in any_host(), port in proptest::option::of(1u16..)) {
            let r = Registry { host, port };
            prop_assert_eq!(Registry::try_from(r.to_string().as_str()), Ok(r));
        }

        #[test]
        fn urls_parse_from_what_they_show(
            https in any::<bool>(),
            host in any_host(),
            port in proptest::option::of(1u16..),
            rest in "(/[a-z0-9._~-]{0,8}){0,3}(\\?[a-z=&]{0,8})?(#[a-z]{0,4})?",
        ) {
            let u = HttpUrl { https, host, port, rest };
            prop_assert_eq!(HttpUrl::try_from(u.to_string().as_str()), Ok(u));
        }
    }
}
