//! Content digests: `sha256:` followed by 64 lowercase hex digits.
//!
//! A digest names a file under `blobs/sha256/`, so parsing is strict: any
//! other algorithm, length, case or character is refused before the digest
//! can become part of a path (`sha256:../../etc/passwd` never reaches the
//! filesystem).

use std::fmt;
use std::io::{self, Read, Write};

use keel_types::Sha256;
use sha2::Digest as _;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("digest {value:?}: algorithm is not sha256 (only sha256 is supported)")]
    Algorithm { value: String },
    #[error("digest {value:?}: expected sha256: and 64 lowercase hex digits")]
    Malformed { value: String },
}

/// A validated sha256 digest; its hex part is safe to use as a file name.
/// The digest of a config's image reference is the same value
/// (`From<Sha256>`), checked once by `keel_types`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(Sha256);

impl From<Sha256> for Digest {
    fn from(s: Sha256) -> Digest {
        Digest(s)
    }
}

impl Digest {
    /// Parse `sha256:<64 lowercase hex>`.
    pub fn parse(value: &str) -> Result<Digest, DigestError> {
        let Some((alg, hex)) = value.split_once(':') else {
            return Err(DigestError::Malformed {
                value: value.to_string(),
            });
        };
        if alg != "sha256" {
            return Err(DigestError::Algorithm {
                value: value.to_string(),
            });
        }
        Digest::from_hex(hex).ok_or_else(|| DigestError::Malformed {
            value: value.to_string(),
        })
    }

    /// The digest whose hex part is `hex` (a blob's file name), if well formed.
    pub fn from_hex(hex: &str) -> Option<Digest> {
        Sha256::from_hex(hex).map(Digest)
    }

    /// The sha256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hasher(sha2::Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(h: sha2::Sha256) -> Digest {
        Digest(Sha256::from_sum(h.finalize().into()))
    }

    /// The 64 hex digits (the blob's file name).
    pub fn hex(&self) -> &str {
        self.0.hex()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Copy `from` into `to`, returning the byte count and the sha256 of what
/// passed through; stops with an error after `limit` bytes so a descriptor
/// that lies about its size cannot make a reader consume without end.
pub(crate) fn copy_hashed(
    from: &mut impl Read,
    to: &mut impl Write,
    limit: u64,
) -> io::Result<(u64, Digest)> {
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let got = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        n += got as u64;
        if n > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("more than the expected {limit} bytes"),
            ));
        }
        h.update(&buf[..got]);
        to.write_all(&buf[..got])?;
    }
    Ok((n, Digest::from_hasher(h)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sha256() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
    }

    #[test]
    fn refuses_other_algorithms_and_malformed_hex() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(
            Digest::parse(&format!("sha512:{hex}")),
            Err(DigestError::Algorithm { .. })
        ));
        for bad in [
            hex.to_string(),
            format!("sha256:{}", hex.to_uppercase()),
            format!("sha256:{}", &hex[1..]),
            format!("sha256:{hex}0"),
            "sha256:../../../../etc/passwd".to_string(),
            format!("sha256:../{}", &hex[3..]),
            format!("sha256:{}/x", &hex[2..]),
            String::new(),
        ] {
            let err = Digest::parse(&bad).unwrap_err();
            assert!(err.to_string().contains("64 lowercase hex"), "{bad}: {err}");
        }
    }

    #[test]
    fn copy_hashed_stops_past_the_limit() {
        let mut out = Vec::new();
        let (n, d) = copy_hashed(&mut &b"abc"[..], &mut out, 3).unwrap();
        assert_eq!((n, d), (3, Digest::of(b"abc")));
        assert!(copy_hashed(&mut &b"abcd"[..], &mut io::sink(), 3).is_err());
    }
}
