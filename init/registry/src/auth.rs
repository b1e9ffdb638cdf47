//! Registry authentication: the `WWW-Authenticate` challenge of a 401 and
//! the credentials configured for a registry.
//!
//! 1. A 401 carries one challenge: `Bearer realm="…",service="…",scope="…"`
//!    or `Basic realm="…"`. It is parsed strictly: a scheme, a space, then
//!    comma-separated `name=value` parameters whose values are quoted
//!    strings (backslash escapes) or tokens; a missing `=`, an unterminated
//!    quote, a repeated parameter or trailing text is an error quoting the
//!    header.
//! 2. Bearer: the token is fetched from the realm (`?service=&scope=`),
//!    with the registry's basic credentials when configured, and requests
//!    are retried with `Authorization: Bearer TOKEN`.
//! 3. Basic: requests are retried with the configured credentials; without
//!    any the pull fails saying so.

use std::fmt;

use keel_types::Registry;

use base64::Engine;

/// What a registry asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: Option<String>,
    },
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("WWW-Authenticate {header:?}: {problem}")]
pub struct ChallengeError {
    pub header: String,
    pub problem: String,
}

/// Credentials for one registry (`registries.auth` in the config).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `host[:port]`, as in image references.
    pub registry: Registry,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    // The password stays out of logs and error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The `Authorization` header value for basic authentication.
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Parse one challenge.
pub fn parse_challenge(header: &str) -> Result<Challenge, ChallengeError> {
    let err = |problem: &str| ChallengeError {
        header: header.to_string(),
        problem: problem.to_string(),
    };
    let h = header.trim();
    let (scheme, mut rest) = match h.split_once(' ') {
        Some((s, r)) => (s, r.trim_start()),
        None => (h, ""),
    };
    if scheme.is_empty() || !scheme.chars().all(is_tchar) {
        return Err(err("expected an authentication scheme"));
    }
    let mut params: Vec<(String, String)> = Vec::new();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| err("a parameter without `=`"))?;
        let name = rest[..eq].trim().to_ascii_lowercase();
        if name.is_empty() || !name.chars().all(is_tchar) {
            return Err(err("a parameter name is not a token"));
        }
        rest = rest[eq + 1..].trim_start();
        let value = if let Some(q) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let end = loop {
                match chars.next() {
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, c)) => value.push(c),
                        None => return Err(err("an unterminated quoted value")),
                    },
                    Some((_, c)) if c.is_control() => {
                        return Err(err("a control character in a quoted value"))
                    }
                    Some((_, c)) => value.push(c),
                    None => return Err(err("an unterminated quoted value")),
                }
            };
            rest = &q[end + 1..];
            value
        } else {
            let end = rest
                .find(|c: char| !is_tchar(c) && c != '/' && c != ':')
                .unwrap_or(rest.len());
            if end == 0 {
                return Err(err(&format!("parameter {name}: an empty value")));
            }
            let v = rest[..end].to_string();
            rest = &rest[end..];
            v
        };
        if params.iter().any(|(n, _)| *n == name) {
            return Err(err(&format!("parameter {name} given twice")));
        }
        params.push((name, value));
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
            if rest.is_empty() {
                return Err(err("a trailing comma"));
            }
        } else if !rest.is_empty() {
            return Err(err("text after a parameter where a comma should be"));
        }
    }
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Ok(Challenge::Bearer {
            realm: get("realm").ok_or_else(|| err("a Bearer challenge without realm"))?,
            service: get("service"),
            scope: get("scope"),
        }),
        "basic" => Ok(Challenge::Basic {
            realm: get("realm"),
        }),
        _ => Err(err(&format!(
            "scheme {scheme:?}: keel speaks Bearer and Basic"
        ))),
    }
}

/// `application/x-www-form-urlencoded` escaping of a query value.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic() {
        assert_eq!(
            parse_challenge(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#).unwrap(),
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }
        );
        // Spaces after commas, case-insensitive names, escapes, token values.
        assert_eq!(
            parse_challenge(r#"bearer Realm="https://a/t" , scope="x\"y",service=reg.example"#)
                .unwrap(),
            Challenge::Bearer {
                realm: "https://a/t".into(),
                service: Some("reg.example".into()),
                scope: Some("x\"y".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#).unwrap(),
            Challenge::Basic {
                realm: Some("Registry Realm".into())
            }
        );
        assert_eq!(
            parse_challenge("Basic").unwrap(),
            Challenge::Basic { realm: None }
        );
    }

    #[test]
    fn strict_refusals() {
        for (h, why) in [
            ("", "expected an authentication scheme"),
            (r#"Bearer service="x""#, "without realm"),
            (r#"Bearer realm="https://a"#, "unterminated"),
            (r#"Bearer realm"#, "without `=`"),
            (r#"Bearer realm="a" service="b""#, "where a comma should be"),
            (r#"Bearer realm="a",realm="b""#, "given twice"),
            (r#"Bearer realm="a","#, "trailing comma"),
            (r#"Bearer realm=,x="b""#, "empty value"),
            (r#"Digest realm="a""#, "keel speaks Bearer and Basic"),
            ("Bearer realm=\"a\u{1}\"", "control character"),
        ] {
            let e = parse_challenge(h).unwrap_err();
            assert!(e.to_string().contains(why), "{h:?}: {e}");
            assert!(e.to_string().starts_with("WWW-Authenticate"), "{e}");
        }
    }

    #[test]
    fn credentials_hide_the_password() {
        let c = Credentials {
            registry: Registry::try_from("r.example").unwrap(),
            username: "u".into(),
            password: "secret".into(),
        };
        assert!(!format!("{c:?}").contains("secret"));
        assert_eq!(c.basic(), "Basic dTpzZWNyZXQ=");
        assert_eq!(
            query_escape("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }
}
