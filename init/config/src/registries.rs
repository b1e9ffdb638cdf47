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
use crate::validate::{join, key_of, Verdict, V};
use crate::yaml::Node;
use keel_types::Registry;

/// `host[:port]` of a registry.
pub fn registry(s: &str) -> Result<Registry, String> {
    Ok(Registry::try_from(s)?)
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
            "insecure" => r.insecure = v.parsed_seq(&p, val, registry),
            "auth" => {
                let Some(list) = v.seq(&p, val) else { continue };
                for (i, item) in list.iter().enumerate() {
                    let ip = format!("{p}[{i}]");
                    let Some(e) = v.map(&ip, item) else { continue };
                    v.known(&ip, e, &["registry", "username", "password"]);
                    let mut field = |name: &str| -> Option<&Node> {
                        let found = e
                            .iter()
                            .find(|(fk, _)| key_of(fk) == name)
                            .map(|(_, fv)| &**fv);
                        if found.is_none() {
                            v.err(&ip, item, format!("an auth entry needs {name}"));
                        }
                        found
                    };
                    let (reg, user, pass) =
                        (field("registry"), field("username"), field("password"));
                    let registry = reg.and_then(|n| v.parsed(&join(&ip, "registry"), n, registry));
                    let username =
                        user.and_then(|n| v.checked(&join(&ip, "username"), n, nonempty));
                    let password =
                        pass.and_then(|n| v.checked(&join(&ip, "password"), n, nonempty));
                    let (Some(registry), Some(username), Some(password)) =
                        (registry, username, password)
                    else {
                        continue;
                    };
                    let a = RegistryAuth {
                        registry,
                        username,
                        password,
                    };
                    if r.auth.iter().any(|o| o.registry == a.registry) {
                        v.err(
                            &join(&ip, "registry"),
                            item,
                            format!("{:?} has credentials already", a.registry.to_string()),
                        );
                    } else {
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
            assert_eq!(registry(ok).map(|r| r.to_string()), Ok(ok.to_string()));
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
        let shown: Vec<String> = g.insecure.iter().map(|r| r.to_string()).collect();
        assert_eq!(shown, ["10.0.2.2:5000", "registry.lan"]);
        assert_eq!(
            g.auth,
            [RegistryAuth {
                registry: registry("registry.example").unwrap(),
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
