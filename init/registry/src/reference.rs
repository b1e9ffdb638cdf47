//! Image references: `[REGISTRY[:PORT]/]PATH[:TAG][@sha256:HEX]`.
//!
//! 1. The syntax is checked by [`keel_config::containers::image`], the same
//!    function the config validator uses, so every image a config accepts
//!    parses here and nothing else does.
//! 2. The first path component is a registry when more follow and it holds
//!    a `.` or a `:` or is `localhost` (docker's rule). Otherwise the image
//!    is on Docker Hub, whose API host is `registry-1.docker.io`, and a
//!    single-component name gets docker's `library/` prefix. (keel nodes
//!    usually have no route to Docker Hub: name a registry they can reach.)
//! 3. A tag and a digest may both be given; the digest is what is fetched
//!    and verified, the tag is kept for the name. With neither, the tag is
//!    `latest`.

use std::fmt;

use keel_oci::Digest;

/// The host Docker Hub's registry API answers on.
pub const DOCKER_HUB: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image reference {reference:?}: {problem}")]
pub struct ReferenceError {
    pub reference: String,
    pub problem: String,
}

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]` the registry API is reached at.
    pub registry: String,
    /// The repository path, e.g. `library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let err = |problem: String| ReferenceError {
            reference: s.to_string(),
            problem,
        };
        keel_config::containers::image(s).map_err(err)?;
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d).map_err(|e| err(e.to_string()))?)),
            None => (s, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (first, path)
            }
            _ => ("", rest),
        };
        // The tag is after the last `:` of the last component (a registry
        // port has gone with the registry).
        let last_slash = path.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match path[last_slash..].split_once(':') {
            Some((_, t)) => (&path[..path.len() - t.len() - 1], Some(t.to_string())),
            None => (path, None),
        };
        let hub = matches!(registry, "" | "docker.io" | "index.docker.io" | DOCKER_HUB);
        let repository = if hub && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t,
        };
        Ok(Reference {
            registry: if hub {
                DOCKER_HUB.into()
            } else {
                registry.into()
            },
            repository,
            tag,
            digest,
        })
    }

    /// The registry a `host[:port]` written in the config means: Docker
    /// Hub's names are its API host.
    pub fn registry_of(s: &str) -> String {
        match s {
            "docker.io" | "index.docker.io" => DOCKER_HUB.into(),
            _ => s.to_string(),
        }
    }

    /// What the manifest is asked for by: the digest if there is one, else
    /// the tag.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    type Parts = (String, String, Option<String>, Option<String>);

    fn parts(s: &str) -> Parts {
        let r = Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        (
            r.registry,
            r.repository,
            r.tag,
            r.digest.map(|d| d.to_string()),
        )
    }

    #[test]
    fn docker_rules() {
        let d = format!("sha256:{HEX}");
        let hub = DOCKER_HUB.to_string();
        let s = |x: &str| Some(x.to_string());
        let cases: Vec<(String, Parts)> = vec![
            (
                "busybox".into(),
                (hub.clone(), "library/busybox".into(), s("latest"), None),
            ),
            (
                "busybox:1.36".into(),
                (hub.clone(), "library/busybox".into(), s("1.36"), None),
            ),
            (
                "team/app".into(),
                (hub.clone(), "team/app".into(), s("latest"), None),
            ),
            (
                "docker.io/busybox".into(),
                (hub.clone(), "library/busybox".into(), s("latest"), None),
            ),
            (
                "index.docker.io/team/app:2".into(),
                (hub.clone(), "team/app".into(), s("2"), None),
            ),
            (
                "localhost/app".into(),
                ("localhost".into(), "app".into(), s("latest"), None),
            ),
            (
                "localhost:5000/a/b/c:v1".into(),
                ("localhost:5000".into(), "a/b/c".into(), s("v1"), None),
            ),
            (
                "registry.example/app".into(),
                ("registry.example".into(), "app".into(), s("latest"), None),
            ),
            (
                "10.0.2.2:5000/test/busybox:1".into(),
                ("10.0.2.2:5000".into(), "test/busybox".into(), s("1"), None),
            ),
            // A first component without `.`, `:` or localhost is a path.
            (
                "myhost/app".into(),
                (hub.clone(), "myhost/app".into(), s("latest"), None),
            ),
            (
                format!("busybox@{d}"),
                (hub.clone(), "library/busybox".into(), None, s(&d)),
            ),
            (
                format!("r.example:443/x:t@{d}"),
                ("r.example:443".into(), "x".into(), s("t"), s(&d)),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parts(&input), want, "{input}");
        }
        let r = Reference::parse(&format!("r.example/x:t@{d}")).unwrap();
        assert_eq!(r.reference(), d);
        assert_eq!(r.to_string(), format!("r.example/x:t@{d}"));
        assert_eq!(
            Reference::parse("r.example/x").unwrap().reference(),
            "latest"
        );
    }

    #[test]
    fn refusals_name_the_reference() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "a//b",
            "registry.example:99999/app",
            "app@sha256:abc",
            "app@md5:0123",
            "/app",
            "app:tag:more",
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert_eq!(e.reference, bad);
            assert!(e.to_string().starts_with("image reference"), "{e}");
        }
    }
}
