//! The slot manifest, its signature, and the footer that carries both.
//!
//! The manifest is JSON: version, channel, build id, the offsets and sizes of
//! every part of the slot (see [`crate::layout`]), the dm-verity root hash
//! and salt, the BLAKE3 digests of the kernel, the initramfs and the whole
//! slot content. It is signed with ed25519 over a domain-separated message
//! (`keel-slot-manifest-v1\n` followed by the exact manifest bytes).
//!
//! Reading a footer: check the magic and length, check the signature against
//! the trusted keys, and only then parse and validate the JSON. Every check
//! that fails names what it checked.
//!
//! Footer (the last [`FOOTER_SIZE`] bytes of a slot):
//!
//! ```text
//! 0   8  magic "KEELSLT1"
//! 8   4  manifest length, little endian
//! 12 32  id of the signing key: BLAKE3 of its public key, first 32 bytes
//! 44 64  ed25519 signature
//! 108 .. manifest bytes, then zeros
//! ```

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::layout::{ALIGN, FOOTER_SIZE};
use crate::{hex, verity};

const MAGIC: &[u8; 8] = b"KEELSLT1";
const HEADER: usize = 108;
/// Longest manifest a footer holds.
pub const MAX_MANIFEST: usize = FOOTER_SIZE as usize - HEADER;
const CONTEXT: &[u8] = b"keel-slot-manifest-v1\n";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("slot footer: no keel manifest (bad magic)")]
    Magic,
    #[error("slot footer: manifest length {len} exceeds {MAX_MANIFEST} bytes")]
    TooLong { len: usize },
    #[error("slot footer is {len} bytes, expected {FOOTER_SIZE}")]
    FooterSize { len: usize },
    #[error("manifest is signed by key {key_id}, which this node does not trust")]
    UnknownKey { key_id: String },
    #[error("manifest signature does not verify with key {key_id}: the manifest was altered or signed by another key")]
    BadSignature { key_id: String },
    #[error("manifest: {0}")]
    Json(String),
    #[error("manifest field {field}: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
    #[error("key file: {0}")]
    Key(String),
}

/// A range of the slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extent {
    pub offset: u64,
    pub size: u64,
}

/// A part of the slot with its BLAKE3 digest (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    pub offset: u64,
    pub size: u64,
    pub blake3: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verity {
    /// Always "sha256", 4 KiB blocks, format 1.
    pub algorithm: String,
    pub data_blocks: u64,
    /// Where the hash area (superblock first) starts and how long it is.
    pub hash: Extent,
    pub root_hash: String,
    pub salt: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    pub version: String,
    pub channel: String,
    /// Identifies the kernel and initramfs this slot boots (see the image tool).
    pub build_id: String,
    /// Root filesystem type ("erofs").
    pub fs: String,
    pub root: Extent,
    pub verity: Verity,
    pub kernel: Option<Part>,
    pub initramfs: Option<Part>,
    /// Everything before the footer's free space: `[0, content.size)`.
    pub content: Part,
}

fn field(field: &'static str, problem: impl Into<String>) -> ManifestError {
    ManifestError::Field {
        field,
        problem: problem.into(),
    }
}

fn check_digest(name: &'static str, s: &str) -> Result<(), ManifestError> {
    if hex::decode::<32>(s).is_none() {
        return Err(field(name, "not 64 hex digits"));
    }
    Ok(())
}

impl Manifest {
    /// Check the manifest's own consistency: format, algorithm, alignment,
    /// sizes that match the verity geometry, parts inside the content and
    /// not overlapping, digests well-formed.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.format != 1 {
            return Err(field(
                "format",
                format!("{} is not supported (1 is)", self.format),
            ));
        }
        if self.fs != "erofs" && self.fs != "squashfs" {
            return Err(field(
                "fs",
                format!("{:?} is not erofs or squashfs", self.fs),
            ));
        }
        if self.verity.algorithm != "sha256" {
            return Err(field(
                "verity.algorithm",
                format!("{:?} is not sha256", self.verity.algorithm),
            ));
        }
        if self.root.offset != 0 {
            return Err(field(
                "root.offset",
                "must be 0 (the verity data starts the slot)",
            ));
        }
        if self.root.size == 0 || !self.root.size.is_multiple_of(ALIGN) {
            return Err(field("root.size", "must be a positive multiple of 4096"));
        }
        if self.verity.data_blocks * ALIGN != self.root.size {
            return Err(field("verity.data_blocks", "does not match root.size"));
        }
        if self.verity.hash.offset != self.root.size {
            return Err(field("verity.hash.offset", "must follow the root image"));
        }
        let want = (1 + verity::tree_blocks(self.verity.data_blocks)) * ALIGN;
        if self.verity.hash.size != want {
            return Err(field(
                "verity.hash.size",
                format!(
                    "{} does not match the tree of {} blocks ({want})",
                    self.verity.hash.size, self.verity.data_blocks
                ),
            ));
        }
        check_digest("verity.root_hash", &self.verity.root_hash)?;
        match hex::decode_vec(&self.verity.salt) {
            Some(s) if s.len() <= verity::MAX_SALT => {}
            _ => return Err(field("verity.salt", "not hex of at most 256 bytes")),
        }
        check_digest("content.blake3", &self.content.blake3)?;
        if self.content.offset != 0 {
            return Err(field("content.offset", "must be 0"));
        }
        let mut end = self.verity.hash.offset + self.verity.hash.size;
        for (name, part) in [("kernel", &self.kernel), ("initramfs", &self.initramfs)] {
            if let Some(p) = part {
                if !p.offset.is_multiple_of(ALIGN) || p.offset < end {
                    return Err(field(
                        if name == "kernel" {
                            "kernel.offset"
                        } else {
                            "initramfs.offset"
                        },
                        "must be 4096-aligned, after the parts before it",
                    ));
                }
                check_digest(
                    if name == "kernel" {
                        "kernel.blake3"
                    } else {
                        "initramfs.blake3"
                    },
                    &p.blake3,
                )?;
                end = p.offset + p.size;
            }
        }
        if self.content.size < end {
            return Err(field("content.size", "smaller than the parts it holds"));
        }
        for (name, s) in [
            ("name", &self.name),
            ("version", &self.version),
            ("channel", &self.channel),
            ("build_id", &self.build_id),
        ] {
            if s.is_empty() || s.len() > 128 || s.chars().any(|c| c.is_control()) {
                return Err(ManifestError::Field {
                    field: name,
                    problem: "must be 1-128 printable characters".into(),
                });
            }
        }
        Ok(())
    }

    /// What dm-verity needs, with data and hash on the same device.
    pub fn verity_params(&self) -> verity::Params {
        verity::Params {
            data_blocks: self.verity.data_blocks,
            hash_start_block: self.verity.hash.offset / ALIGN + 1,
            root: hex::decode(&self.verity.root_hash).unwrap_or([0; 32]),
            salt: hex::decode_vec(&self.verity.salt).unwrap_or_default(),
        }
    }
}

/// A public key keel trusts, with its id.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub key: VerifyingKey,
    pub id: String,
}

/// The id of a public key: BLAKE3 of its bytes, as hex.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(blake3::hash(key.as_bytes()).as_bytes())
}

impl TrustedKey {
    pub fn new(key: VerifyingKey) -> TrustedKey {
        TrustedKey {
            id: key_id(&key),
            key,
        }
    }

    /// Parse a public key file: `keel-ed25519-public <64 hex digits>`.
    pub fn parse(text: &str) -> Result<TrustedKey, ManifestError> {
        let hexkey = text
            .trim()
            .strip_prefix("keel-ed25519-public ")
            .ok_or_else(|| {
                ManifestError::Key("public key file must start with keel-ed25519-public".into())
            })?;
        let bytes = hex::decode::<32>(hexkey.trim())
            .ok_or_else(|| ManifestError::Key("public key is not 64 hex digits".into()))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|e| ManifestError::Key(format!("public key: {e}")))?;
        Ok(TrustedKey::new(key))
    }
}

/// The public key file's text for `key`.
pub fn public_key_text(key: &VerifyingKey) -> String {
    format!("keel-ed25519-public {}\n", hex::encode(key.as_bytes()))
}

/// The secret key file's text for `key` (its 32-byte seed).
pub fn secret_key_text(key: &SigningKey) -> String {
    format!("keel-ed25519-secret {}\n", hex::encode(&key.to_bytes()))
}

/// Parse a secret key file: `keel-ed25519-secret <64 hex digits>`.
pub fn parse_secret_key(text: &str) -> Result<SigningKey, ManifestError> {
    let h = text
        .trim()
        .strip_prefix("keel-ed25519-secret ")
        .ok_or_else(|| {
            ManifestError::Key("secret key file must start with keel-ed25519-secret".into())
        })?;
    let seed = hex::decode::<32>(h.trim())
        .ok_or_else(|| ManifestError::Key("secret key is not 64 hex digits".into()))?;
    Ok(SigningKey::from_bytes(&seed))
}

fn message(manifest: &[u8]) -> Vec<u8> {
    let mut m = CONTEXT.to_vec();
    m.extend_from_slice(manifest);
    m
}

/// Serialize, sign and wrap `manifest` into a footer of [`FOOTER_SIZE`] bytes.
pub fn seal(manifest: &Manifest, key: &SigningKey) -> Result<Vec<u8>, ManifestError> {
    manifest.validate()?;
    let bytes =
        serde_json::to_vec_pretty(manifest).map_err(|e| ManifestError::Json(e.to_string()))?;
    if bytes.len() > MAX_MANIFEST {
        return Err(ManifestError::TooLong { len: bytes.len() });
    }
    let sig = key.sign(&message(&bytes));
    let id = blake3::hash(key.verifying_key().as_bytes());
    let mut out = vec![0u8; FOOTER_SIZE as usize];
    out[0..8].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
    out[12..44].copy_from_slice(id.as_bytes());
    out[44..108].copy_from_slice(&sig.to_bytes());
    out[HEADER..HEADER + bytes.len()].copy_from_slice(&bytes);
    Ok(out)
}

/// A manifest whose signature checked out, with the key that signed it.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: Manifest,
    pub key_id: String,
}

/// Check a footer against the trusted keys and return its manifest.
pub fn open(footer: &[u8], trusted: &[TrustedKey]) -> Result<Verified, ManifestError> {
    if footer.len() != FOOTER_SIZE as usize {
        return Err(ManifestError::FooterSize { len: footer.len() });
    }
    if &footer[0..8] != MAGIC {
        return Err(ManifestError::Magic);
    }
    let len = u32::from_le_bytes([footer[8], footer[9], footer[10], footer[11]]) as usize;
    if len > MAX_MANIFEST {
        return Err(ManifestError::TooLong { len });
    }
    let key_id = hex::encode(&footer[12..44]);
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&footer[44..108]);
    let sig = Signature::from_bytes(&sig);
    let bytes = &footer[HEADER..HEADER + len];
    let key = trusted
        .iter()
        .find(|k| k.id == key_id)
        .ok_or_else(|| ManifestError::UnknownKey {
            key_id: key_id.clone(),
        })?;
    key.key
        .verify(&message(bytes), &sig)
        .map_err(|_| ManifestError::BadSignature {
            key_id: key_id.clone(),
        })?;
    let manifest: Manifest =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
    manifest.validate()?;
    Ok(Verified { manifest, key_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        let data_blocks = 300;
        let hash_size = (1 + verity::tree_blocks(data_blocks)) * ALIGN;
        let root = data_blocks * ALIGN;
        let kernel_off = root + hash_size;
        Manifest {
            format: 1,
            name: "keel".into(),
            version: "0.1.0".into(),
            channel: "dev".into(),
            build_id: "b".repeat(16),
            fs: "erofs".into(),
            root: Extent {
                offset: 0,
                size: root,
            },
            verity: Verity {
                algorithm: "sha256".into(),
                data_blocks,
                hash: Extent {
                    offset: root,
                    size: hash_size,
                },
                root_hash: "ab".repeat(32),
                salt: "01".repeat(32),
            },
            kernel: Some(Part {
                offset: kernel_off,
                size: 5000,
                blake3: "cd".repeat(32),
            }),
            initramfs: Some(Part {
                offset: kernel_off + 8192,
                size: 100,
                blake3: "ef".repeat(32),
            }),
            content: Part {
                offset: 0,
                size: kernel_off + 8192 + 4096,
                blake3: "00".repeat(32),
            },
        }
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn seal_then_open() {
        let m = sample();
        let footer = seal(&m, &key(1)).unwrap();
        let trusted = [TrustedKey::new(key(1).verifying_key())];
        let v = open(&footer, &trusted).unwrap();
        assert_eq!(v.manifest, m);
        assert_eq!(v.key_id, trusted[0].id);
        assert_eq!(v.manifest.verity_params().hash_start_block, 301);
    }

    #[test]
    fn another_key_is_refused() {
        let footer = seal(&sample(), &key(2)).unwrap();
        let err = open(&footer, &[TrustedKey::new(key(1).verifying_key())]).unwrap_err();
        assert!(matches!(err, ManifestError::UnknownKey { .. }), "{err}");
    }

    #[test]
    fn edited_after_signing_is_refused() {
        let mut footer = seal(&sample(), &key(1)).unwrap();
        let text = String::from_utf8_lossy(&footer[HEADER..]).to_string();
        let at = text.find("0.1.0").unwrap();
        footer[HEADER + at + 4] = b'9'; // 0.1.0 -> 0.1.9
        let err = open(&footer, &[TrustedKey::new(key(1).verifying_key())]).unwrap_err();
        assert!(matches!(err, ManifestError::BadSignature { .. }), "{err}");
        // A signer lying about its key id gets the same answer.
        let mut footer = seal(&sample(), &key(2)).unwrap();
        let id = blake3::hash(key(1).verifying_key().as_bytes());
        footer[12..44].copy_from_slice(id.as_bytes());
        let err = open(&footer, &[TrustedKey::new(key(1).verifying_key())]).unwrap_err();
        assert!(matches!(err, ManifestError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn malformed_footers_are_refused() {
        let trusted = [TrustedKey::new(key(1).verifying_key())];
        assert_eq!(
            open(&[0; 10], &trusted).unwrap_err(),
            ManifestError::FooterSize { len: 10 }
        );
        assert_eq!(
            open(&vec![0; FOOTER_SIZE as usize], &trusted).unwrap_err(),
            ManifestError::Magic
        );
        let mut f = seal(&sample(), &key(1)).unwrap();
        f[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            open(&f, &trusted).unwrap_err(),
            ManifestError::TooLong { .. }
        ));
    }

    #[test]
    fn validation_names_the_field() {
        let mut m = sample();
        m.verity.hash.size += 4096;
        assert!(matches!(
            m.validate(),
            Err(ManifestError::Field {
                field: "verity.hash.size",
                ..
            })
        ));
        let mut m = sample();
        m.root.size = 1000;
        assert!(matches!(
            m.validate(),
            Err(ManifestError::Field {
                field: "root.size",
                ..
            })
        ));
        let mut m = sample();
        m.kernel.as_mut().unwrap().offset = 4096;
        assert!(matches!(
            m.validate(),
            Err(ManifestError::Field {
                field: "kernel.offset",
                ..
            })
        ));
        let mut m = sample();
        m.verity.root_hash = "xyz".into();
        assert!(matches!(
            m.validate(),
            Err(ManifestError::Field {
                field: "verity.root_hash",
                ..
            })
        ));
        let mut m = sample();
        m.version = String::new();
        assert!(matches!(
            m.validate(),
            Err(ManifestError::Field {
                field: "version",
                ..
            })
        ));
        assert!(seal(&m, &key(1)).is_err());
    }

    #[test]
    fn key_files_round_trip() {
        let k = key(9);
        let p = TrustedKey::parse(&public_key_text(&k.verifying_key())).unwrap();
        assert_eq!(p.key, k.verifying_key());
        assert_eq!(
            parse_secret_key(&secret_key_text(&k)).unwrap().to_bytes(),
            k.to_bytes()
        );
        assert!(TrustedKey::parse("keel-ed25519-public zz").is_err());
        assert!(TrustedKey::parse("ssh-ed25519 AAAA").is_err());
    }
}
