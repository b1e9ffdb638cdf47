//! Image references, `[REGISTRY[:PORT]/]PATH[:TAG][@sha256:HEX]`, and the
//! sha256 digests that pin them.
//!
//! The first path component is a registry when more follow and it holds a
//! `.` or a `:` or is `localhost` (as docker reads it). What a reference
//! means on the wire (Docker Hub's API host, its `library/` prefix) is the
//! registry client's business; here a reference is what was written.

use std::fmt;

use crate::host::Registry;
use crate::Invalid;

/// A sha256 digest: 64 lower-case hex digits. Safe as a file name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256 {
    hex: String,
}

impl Sha256 {
    /// The digest whose hex part is `hex`, if it is 64 lower-case hex
    /// digits.
    pub fn from_hex(hex: &str) -> Option<Sha256> {
        let ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Sha256 {
            hex: hex.to_string(),
        })
    }

    /// The digest of a computed sum.
    pub fn from_sum(sum: [u8; 32]) -> Sha256 {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(64);
        for b in sum {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 15)]));
        }
        Sha256 { hex }
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

/// `sha256:HEX`.
impl TryFrom<&str> for Sha256 {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<Sha256, Invalid> {
        s.strip_prefix("sha256:")
            .and_then(Sha256::from_hex)
            .ok_or_else(|| Invalid(format!("{s:?} is not sha256: and 64 lower-case hex digits")))
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// An image reference as written in a config or on `docker run`'s line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// The registry named in the reference; None: Docker Hub.
    pub registry: Option<Registry>,
    /// The repository path: components of lower-case letters and digits
    /// joined by `.`, `_`, `__` or dashes, separated by `/`.
    pub path: String,
    pub tag: Option<String>,
    /// With a digest, the image is fetched and checked by it; a tag beside
    /// it only names it.
    pub digest: Option<Sha256>,
}

/// A path component: lower-case letters and digits, joined by `.`, `_`,
/// `__` or dashes.
fn component(p: &str) -> bool {
    !p.is_empty()
        && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && p.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        && !p.contains("..")
        && !p.contains("___")
}

fn tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl TryFrom<&str> for ImageRef {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<ImageRef, Invalid> {
        let bad = |why: &str| Invalid(format!("image {s:?}: {why}"));
        if s.is_empty() || s.len() > 512 {
            return Err(bad("empty or over 512 bytes"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let d = d
                    .strip_prefix("sha256:")
                    .and_then(Sha256::from_hex)
                    .ok_or_else(|| bad("the digest is not sha256: and 64 lower-case hex digits"))?;
                (r, Some(d))
            }
            None => (s, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (Some(Registry::of_image(first).map_err(|e| bad(&e))?), path)
            }
            _ => (None, rest),
        };
        let last = path.rfind('/').map_or(0, |i| i + 1);
        let (path, t) = match path[last..].split_once(':') {
            Some((_, t)) => (&path[..path.len() - t.len() - 1], Some(t)),
            None => (path, None),
        };
        if let Some(p) = path.split('/').find(|p| !component(p)) {
            return Err(bad(&format!(
                "{p:?} is not a path component (lower-case letters and digits, joined by . _ or -)"
            )));
        }
        if let Some(t) = t.filter(|t| !tag(t)) {
            return Err(bad(&format!(
                "{t:?} is not a tag (1-128 of A-Z a-z 0-9 _ . -)"
            )));
        }
        Ok(ImageRef {
            registry,
            path: path.to_string(),
            tag: t.map(str::to_string),
            digest,
        })
    }
}

impl ImageRef {
    /// The name the node's image store keeps it under: as written, with
    /// `:latest` when it names neither a tag nor a digest.
    pub fn store_name(&self) -> String {
        if self.tag.is_none() && self.digest.is_none() {
            format!("{self}:latest")
        } else {
            self.to_string()
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.registry {
            write!(f, "{r}/")?;
        }
        f.write_str(&self.path)?;
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
    use crate::host::Host;
    use proptest::prelude::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_as_written() {
        let r = ImageRef::try_from("busybox").unwrap();
        assert_eq!(
            (r.registry.clone(), r.path.as_str(), r.tag.clone()),
            (None, "busybox", None)
        );
        assert_eq!(r.store_name(), "busybox:latest");
        let r = ImageRef::try_from("registry.example:5000/team/web:1.2").unwrap();
        let reg = r.registry.clone().unwrap();
        assert_eq!(
            (reg.host, reg.port),
            (Host::Name("registry.example".into()), Some(5000))
        );
        assert_eq!(
            (r.path.as_str(), r.tag.as_deref()),
            ("team/web", Some("1.2"))
        );
        assert_eq!(r.store_name(), "registry.example:5000/team/web:1.2");
        let s = format!("localhost/x@sha256:{HEX}");
        let r = ImageRef::try_from(s.as_str()).unwrap();
        assert_eq!(r.digest.as_ref().map(Sha256::hex), Some(HEX));
        assert_eq!(r.store_name(), s, "a digest is enough");
        assert_eq!(
            ImageRef::try_from("a.b/c")
                .unwrap()
                .registry
                .unwrap()
                .to_string(),
            "a.b"
        );
        assert!(ImageRef::try_from("team/web").unwrap().registry.is_none());
        assert!(ImageRef::try_from("[fd00::1]:5000/web").is_ok());
    }

    #[test]
    fn sums_show_as_hex() {
        let mut sum = [0u8; 32];
        sum[0] = 0xab;
        sum[31] = 0x0f;
        let d = Sha256::from_sum(sum);
        assert_eq!(d.hex(), format!("ab{}0f", "0".repeat(60)));
        assert_eq!(Sha256::try_from(d.to_string().as_str()), Ok(d));
    }

    #[test]
    fn refusals_with_the_validators_messages() {
        let e = |s: &str| ImageRef::try_from(s).unwrap_err().to_string();
        assert_eq!(e(""), "image \"\": empty or over 512 bytes");
        assert_eq!(
            e("app@sha256:abc"),
            "image \"app@sha256:abc\": the digest is not sha256: and 64 lower-case hex digits"
        );
        assert_eq!(
            e("registry.example:99999/app"),
            "image \"registry.example:99999/app\": \"99999\" is not a registry port"
        );
        assert_eq!(
            e("a_b.c:80/app"),
            "image \"a_b.c:80/app\": \"a_b.c\" is not a registry host"
        );
        assert_eq!(
            e("Busybox"),
            "image \"Busybox\": \"Busybox\" is not a path component (lower-case letters and digits, joined by . _ or -)"
        );
        assert_eq!(
            e("x:-t"),
            "image \"x:-t\": \"-t\" is not a tag (1-128 of A-Z a-z 0-9 _ . -)"
        );
        assert_eq!(
            Sha256::try_from("sha256:ABC").unwrap_err().to_string(),
            "\"sha256:ABC\" is not sha256: and 64 lower-case hex digits"
        );
    }

    proptest! {
        #[test]
        fn references_show_as_written(
            registry in proptest::option::of(
                "(localhost|[a-z][a-z0-9]{0,5}\\.[a-z]{1,4}|10\\.0\\.2\\.[0-9]{1,2})(:[1-9][0-9]{0,3})?"
            ),
            path in "[a-z0-9]{1,4}([_-][a-z0-9]{1,3}){0,2}(/[a-z0-9]{1,6}([._-][a-z0-9]{1,3})?){0,2}",
            tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,12}"),
            digest in proptest::option::of("[0-9a-f]{64}"),
        ) {
            let mut s = registry.map(|r| format!("{r}/")).unwrap_or_default();
            s.push_str(&path);
            if let Some(t) = tag {
                s.push_str(&format!(":{t}"));
            }
            if let Some(d) = digest {
                s.push_str(&format!("@sha256:{d}"));
            }
            let r = ImageRef::try_from(s.as_str()).unwrap();
            prop_assert_eq!(r.to_string(), s);
            prop_assert_eq!(ImageRef::try_from(r.to_string().as_str()), Ok(r));
        }
    }
}
