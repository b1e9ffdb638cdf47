//! Image references on the wire: `[REGISTRY[:PORT]/]PATH[:TAG][@sha256:HEX]`
//! as a registry is asked for it.
//!
//! 1. The text is parsed once, into [`keel_types::ImageRef`], the value the
//!    config validator produces too: every image a config accepts is a
//!    reference here, without a second parser.
//! 2. The registry is the one the reference names. Without one the image
//!    is on Docker Hub, whose API host is `registry-1.docker.io`, and a
//!    single-component name gets docker's `library/` prefix. (keel nodes
//!    usually have no route to Docker Hub: name a registry they can reach.)
//! 3. A tag and a digest may both be given; the digest is what is fetched
//!    and verified, the tag is kept for the name. With neither, the tag is
//!    `latest`.

use std::fmt;

use keel_oci::Digest;
use keel_types::{Host, ImageRef, Registry};

/// The host Docker Hub's registry API answers on.
pub const DOCKER_HUB: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image reference {reference:?}: {problem}")]
pub struct ReferenceError {
    pub reference: String,
    pub problem: String,
}

/// An image as its registry is asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Where the registry API is reached.
    pub registry: Registry,
    /// The repository path, e.g. `library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl From<&ImageRef> for Reference {
    fn from(image: &ImageRef) -> Reference {
        let registry = image
            .registry
            .as_ref()
            .map_or_else(hub, Reference::registry_of);
        let repository = if registry == hub() && !image.path.contains('/') {
            format!("library/{}", image.path)
        } else {
            image.path.clone()
        };
        let tag = match (&image.tag, &image.digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t.clone(),
        };
        Reference {
            registry,
            repository,
            tag,
            digest: image.digest.clone().map(Digest::from),
        }
    }
}

fn hub() -> Registry {
    Registry {
        host: Host::Name(DOCKER_HUB.into()),
        port: None,
    }
}

impl Reference {
    /// The reference a text names (a tool's argument; configs hold an
    /// [`ImageRef`] already).
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let image = ImageRef::try_from(s).map_err(|e| ReferenceError {
            reference: s.to_string(),
            problem: e.to_string(),
        })?;
        Ok(Reference::from(&image))
    }

    /// The registry a config's `host[:port]` means: Docker Hub's names are
    /// its API host.
    pub fn registry_of(r: &Registry) -> Registry {
        match (&r.host, r.port) {
            (Host::Name(n), None) if matches!(n.as_str(), "docker.io" | "index.docker.io") => hub(),
            _ => r.clone(),
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
            r.registry.to_string(),
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
