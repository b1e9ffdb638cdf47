//! keel's `registries:` section: how the node pulls images it lacks.
//!
//! ```yaml
//! registries:
//!   insecure: [10.0.2.2:5000]      # plain http, no TLS
//!   auth:
//!     - registry: registry.example
//!       username: bot
//!       password: s3cret
//! ```
//!
//! 1. The section is a mapping with `insecure` (a list of `host[:port]`)
//!    and `auth` (a list of mappings with `registry`, `username` and
//!    `password`, all three required); any other key is an error with a
//!    "did you mean".
//! 2. A registry is written as in image references: a host name, an IPv4
//!    address or a bracketed IPv6 address, then an optional port 1-65535.
//!    Two `auth` entries for one registry are an error at the second.
//! 3. The section gets one `applied` verdict saying what it configures.

use crate::model::{Registries, RegistryAuth};
use crate::schema;
use crate::validate::{join, key_of, Verdict, V};
use crate::yaml::Node;

/// `host[:port]` of a registry.
pub fn registry(s: &str) -> Result<(), String> {
    let bad = || Err(format!("{s:?} is not a registry (host[:port])"));
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return bad();
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return bad();
        }
        match after {
            "" => (None, None),
            p => match p.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => return bad(),
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(s), None),
        }
    };
    if let Some(h) = host {
        if schema::hostname(h).is_err() && h.parse::<std::net::Ipv4Addr>().is_err() {
            return bad();
        }
    }
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(n) if n > 0) || p.starts_with('+') {
            return Err(format!("{s:?}: {p:?} is not a port (1-65535)"));
        }
    }
    Ok(())
}

fn nonempty(s: &str) -> Result<(), String> {
    if s.is_empty() {
        Err("must not be empty".into())
    } else if s.chars().any(char::is_control) {
        Err("contains control characters".into())
    } else {
        Ok(())
    }
}

pub(crate) fn section(v: &mut V, k: &Node, n: &Node) {
    let path = "registries";
    let Some(entries) = v.map(path, n) else {
        return;
    };
    v.known(path, entries, &["insecure", "auth"]);
    let mut r = Registries::default();
    for (key, val) in entries {
        let p = join(path, key_of(key));
        match key_of(key) {
            "insecure" => r.insecure = v.strings(&p, val, registry),
            "auth" => {
                let Some(list) = v.seq(&p, val) else { continue };
                for (i, item) in list.iter().enumerate() {
                    let ip = format!("{p}[{i}]");
                    let Some(e) = v.map(&ip, item) else { continue };
                    v.known(&ip, e, &["registry", "username", "password"]);
                    let mut a = RegistryAuth::default();
                    let mut ok = true;
                    for field in ["registry", "username", "password"] {
                        let fp = join(&ip, field);
                        let got = match e.iter().find(|(fk, _)| key_of(fk) == field) {
                            Some((_, fv)) => {
                                let check = if field == "registry" {
                                    registry
                                } else {
                                    nonempty
                                };
                                v.checked(&fp, fv, check)
                            }
                            None => {
                                v.err(&ip, item, format!("an auth entry needs {field}"));
                                None
                            }
                        };
                        match (field, got) {
                            ("registry", Some(s)) => a.registry = s,
                            ("username", Some(s)) => a.username = s,
                            ("password", Some(s)) => a.password = s,
                            _ => ok = false,
                        }
                    }
                    if ok && r.auth.iter().any(|o| o.registry == a.registry) {
                        v.err(
                            &join(&ip, "registry"),
                            item,
                            format!("{:?} has credentials already", a.registry),
                        );
                    } else if ok {
                        r.auth.push(a);
                    }
                }
            }
            _ => {}
        }
    }
    v.item(
        path,
        k,
        Verdict::Applied,
        format!(
            "images are pulled with {} insecure registries and credentials for {}",
            r.insecure.len(),
            r.auth.len()
        ),
    );
    v.report.config.registries = r;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::validate;

    #[test]
    fn registry_syntax() {
        for ok in [
            "registry.example",
            "registry.example:5000",
            "10.0.2.2:5000",
            "localhost",
            "[::1]:5000",
            "[fd00::2]",
        ] {
            assert_eq!(registry(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "http://r.example",
            "r.example:0",
            "r.example:99999",
            "r.example:+80",
            "r.example/path",
            "::1",
            "[::1",
            "[nothex]:5",
            "a b",
        ] {
            assert!(registry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_section() {
        let r = validate(
            "#cloud-config
registries:
  insecure: [10.0.2.2:5000, 'registry.lan']
  auth:
    - registry: registry.example
      username: bot
      password: s3cret
",
        );
        assert!(r.accepted(), "{:#?}", r.errors);
        let g = &r.config.registries;
        assert_eq!(g.insecure, ["10.0.2.2:5000", "registry.lan"]);
        assert_eq!(
            g.auth,
            [RegistryAuth {
                registry: "registry.example".into(),
                username: "bot".into(),
                password: "s3cret".into(),
            }]
        );
        assert!(!format!("{g:?}").contains("s3cret"));
        let item = r.items.iter().find(|i| i.path == "registries").unwrap();
        assert_eq!((item.verdict, item.line), (Verdict::Applied, 2));
    }

    #[test]
    fn errors_have_paths_and_lines() {
        let r = validate(
            "#cloud-config
registries:
  insecur: [a]
  insecure: [http://10.0.2.2:5000]
  auth:
    - registry: r.example
      username: bot
    - registry: r.example:70000
      username: u
      password: p
      passwd: x
    - {registry: r.example, username: a, password: b}
    - {registry: r.example, username: c, password: d}
",
        );
        let got: Vec<String> = r.errors.iter().map(|e| e.to_string()).collect();
        let want = [
            "3:3: registries.insecur: unknown key \"insecur\" (did you mean \"insecure\"?)",
            "4:14: registries.insecure[0]: \"http://10.0.2.2:5000\" is not a registry (host[:port])",
            "6:15: registries.auth[0]: an auth entry needs password",
            "11:7: registries.auth[1].passwd: unknown key \"passwd\" (did you mean \"password\"?)",
            "8:17: registries.auth[1].registry: \"r.example:70000\": \"70000\" is not a port (1-65535)",
            "13:7: registries.auth[3].registry: \"r.example\" has credentials already",
        ];
        for w in want {
            assert!(got.iter().any(|g| g == w), "missing {w}\n{got:#?}");
        }
        assert_eq!(got.len(), want.len(), "{got:#?}");
    }
}
