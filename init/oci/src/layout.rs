//! Reading an OCI image layout directory.
//!
//! ```text
//! ROOT/oci-layout          {"imageLayoutVersion":"1.0.0"}
//! ROOT/index.json          image index: one descriptor per image
//! ROOT/blobs/sha256/HEX    manifests, configs, layers, by digest
//! ```
//!
//! Resolving an image:
//! 1. Check `oci-layout`'s version; read `index.json` (at most [`MAX_JSON`]).
//! 2. Pick the descriptor whose `org.opencontainers.image.ref.name` is the
//!    reference asked for, or the only one, or the one for the platform.
//! 3. While it points at an index (a multi-platform image), read that index
//!    and take the linux/amd64 entry (a few levels at most).
//! 4. Read the manifest, then its config. Every blob is read through
//!    [`open_blob`]/[`read_blob`], which check its size and sha256 against
//!    the descriptor before anything uses a byte of it.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};

use crate::digest::{copy_hashed, Digest, DigestError};
use crate::manifest::{
    is_index, is_manifest, parse, Descriptor, DocError, ImageConfig, Index, Manifest, Platform,
    MAX_JSON,
};

/// Nested indexes deeper than this are refused (real images use one level).
const MAX_NESTING: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: larger than the {limit} bytes allowed")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path}: image layout version {found:?}, expected \"1.0.0\"")]
    Version { path: PathBuf, found: String },
    #[error(transparent)]
    Document(#[from] DocError),
    #[error("{what}: {source}")]
    Digest { what: String, source: DigestError },
    #[error("blob {digest} ({path}): size {found}, descriptor says {expected}")]
    BlobSize {
        digest: Digest,
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("blob {digest} ({path}): content hashes to {found}: corrupted or tampered")]
    BlobDigest {
        digest: Digest,
        path: PathBuf,
        found: Digest,
    },
    #[error("{root}: no image named {reference:?} (images: {available:?})")]
    NoImage {
        root: PathBuf,
        reference: String,
        available: Vec<String>,
    },
    #[error("{root}: {count} images and none asked for by name")]
    Ambiguous { root: PathBuf, count: usize },
    #[error("index {digest}: no manifest for {os}/{architecture}")]
    NoPlatform {
        digest: String,
        os: String,
        architecture: String,
    },
    #[error("index {digest}: indexes nested more than {MAX_NESTING} deep")]
    Nesting { digest: Digest },
    #[error("{digest}: media type {media_type:?} is neither an index nor an image manifest")]
    NotManifest { digest: String, media_type: String },
}

/// An image resolved from a layout or a store: its manifest (and the
/// descriptor that names it) and its config.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest_digest: Digest,
    pub manifest_size: u64,
    pub manifest: Manifest,
    pub config: ImageConfig,
}

/// Where a blob lives under a layout (or store) root.
pub fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs").join("sha256").join(digest.hex())
}

fn descriptor_digest(desc: &Descriptor) -> Result<Digest, LayoutError> {
    desc.digest().map_err(|source| LayoutError::Digest {
        what: "descriptor".into(),
        source,
    })
}

/// Open a blob after checking its size and sha256 against `desc`; the file
/// is returned positioned at its start.
pub fn open_blob(root: &Path, desc: &Descriptor) -> Result<File, LayoutError> {
    let digest = descriptor_digest(desc)?;
    let path = blob_path(root, &digest);
    let read_err = |source| LayoutError::Read {
        path: path.clone(),
        source,
    };
    let mut f = File::open(&path).map_err(read_err)?;
    let found_size = f.metadata().map_err(read_err)?.len();
    if found_size != desc.size {
        return Err(LayoutError::BlobSize {
            digest,
            path,
            expected: desc.size,
            found: found_size,
        });
    }
    let (n, found) = copy_hashed(&mut f, &mut io::sink(), desc.size).map_err(read_err)?;
    if n != desc.size {
        return Err(LayoutError::BlobSize {
            digest,
            path,
            expected: desc.size,
            found: n,
        });
    }
    if found != digest {
        return Err(LayoutError::BlobDigest {
            digest,
            path,
            found,
        });
    }
    f.rewind().map_err(read_err)?;
    Ok(f)
}

/// A whole blob in memory, verified, refused above `limit` bytes before it
/// is read.
pub fn read_blob(root: &Path, desc: &Descriptor, limit: u64) -> Result<Vec<u8>, LayoutError> {
    if desc.size > limit {
        let digest = descriptor_digest(desc)?;
        return Err(LayoutError::TooLarge {
            path: blob_path(root, &digest),
            limit,
        });
    }
    let mut f = open_blob(root, desc)?;
    let mut out = Vec::with_capacity(desc.size as usize);
    f.read_to_end(&mut out)
        .map_err(|source| LayoutError::Read {
            path: blob_path(
                root,
                &descriptor_digest(desc).expect("checked by open_blob"),
            ),
            source,
        })?;
    Ok(out)
}

/// A small file read whole, refused above `limit` bytes.
pub(crate) fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, LayoutError> {
    let read_err = |source| LayoutError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = File::open(path).map_err(read_err)?;
    let mut out = Vec::new();
    // Read one byte past the limit rather than trusting the metadata size, so
    // a file that grows while read is still caught.
    f.take(limit + 1).read_to_end(&mut out).map_err(read_err)?;
    if out.len() as u64 > limit {
        return Err(LayoutError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(out)
}

/// Check `oci-layout` and read `index.json`.
pub fn read_index(root: &Path) -> Result<Index, LayoutError> {
    #[derive(serde::Deserialize)]
    struct OciLayout {
        #[serde(rename = "imageLayoutVersion")]
        version: String,
    }
    let path = root.join("oci-layout");
    let l: OciLayout = parse(&path.display().to_string(), &read_limited(&path, MAX_JSON)?)?;
    if l.version != "1.0.0" {
        return Err(LayoutError::Version {
            path,
            found: l.version,
        });
    }
    let path = root.join("index.json");
    let name = path.display().to_string();
    let index: Index = parse(&name, &read_limited(&path, MAX_JSON)?)?;
    index.check(&name)?;
    Ok(index)
}

/// Read a manifest blob and its config.
pub fn read_image(root: &Path, desc: &Descriptor) -> Result<Image, LayoutError> {
    let manifest_digest = descriptor_digest(desc)?;
    let name = format!("manifest {manifest_digest}");
    let manifest: Manifest = parse(&name, &read_blob(root, desc, MAX_JSON)?)?;
    manifest.check(&name)?;
    let config_name = format!("config {}", manifest.config.digest);
    let config = parse(&config_name, &read_blob(root, &manifest.config, MAX_JSON)?)?;
    Ok(Image {
        manifest_digest,
        manifest_size: desc.size,
        manifest,
        config,
    })
}

/// Resolve `reference` (an index entry's ref name; `None` for the only
/// image) to the manifest for `platform`, and read it with its config.
pub fn resolve(
    root: &Path,
    reference: Option<&str>,
    platform: &Platform,
) -> Result<Image, LayoutError> {
    let index = read_index(root)?;
    let mut desc = match reference {
        Some(r) => index
            .manifests
            .iter()
            .find(|d| d.ref_name() == Some(r))
            .ok_or_else(|| LayoutError::NoImage {
                root: root.to_path_buf(),
                reference: r.to_string(),
                available: index
                    .manifests
                    .iter()
                    .filter_map(|d| d.ref_name().map(str::to_string))
                    .collect(),
            })?,
        None if index.manifests.len() == 1 => &index.manifests[0],
        // A layout holding one image's per-platform manifests directly.
        None => index
            .manifests
            .iter()
            .find(|d| platform.matches(d))
            .ok_or_else(|| LayoutError::Ambiguous {
                root: root.to_path_buf(),
                count: index.manifests.len(),
            })?,
    }
    .clone();
    for _ in 0..MAX_NESTING {
        if is_manifest(&desc.media_type) {
            return read_image(root, &desc);
        }
        if !is_index(&desc.media_type) {
            return Err(LayoutError::NotManifest {
                digest: desc.digest,
                media_type: desc.media_type,
            });
        }
        let name = format!("index {}", desc.digest);
        let nested: Index = parse(&name, &read_blob(root, &desc, MAX_JSON)?)?;
        nested.check(&name)?;
        desc = nested
            .manifests
            .iter()
            .find(|d| platform.matches(d))
            .ok_or_else(|| LayoutError::NoPlatform {
                digest: desc.digest.clone(),
                os: platform.os.clone(),
                architecture: platform.architecture.clone(),
            })?
            .clone();
    }
    Err(LayoutError::Nesting {
        digest: descriptor_digest(&desc)?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::manifest::{OCI_MANIFEST, REF_NAME};
    use crate::testutil::layout;
    use crate::writer::LayerEntry as E;

    fn image(dir: &Path) -> Image {
        layout(dir, "busybox:latest", &[vec![E::file("a", b"a")]]);
        resolve(dir, Some("busybox:latest"), &Platform::linux_amd64()).unwrap()
    }

    #[test]
    fn resolves_by_name_and_reads_config() {
        let t = tempfile::tempdir().unwrap();
        let img = image(t.path());
        let c = img.config.config.unwrap();
        assert_eq!(c.cmd.unwrap(), ["-c", "echo hi"]);
        assert_eq!(img.config.rootfs.diff_ids.len(), 1);
        assert_eq!(img.manifest.layers.len(), 1);
        // The only image is found without a name too.
        assert!(resolve(t.path(), None, &Platform::linux_amd64()).is_ok());
        let err = resolve(t.path(), Some("nope"), &Platform::linux_amd64()).unwrap_err();
        assert!(
            err.to_string()
                .contains("no image named \"nope\" (images: [\"busybox:latest\"])"),
            "{err}"
        );
    }

    #[test]
    fn blobs_are_checked_against_their_descriptor() {
        let t = tempfile::tempdir().unwrap();
        let img = image(t.path());
        let layer = &img.manifest.layers[0];
        let p = blob_path(t.path(), &layer.digest().unwrap());
        let good = std::fs::read(&p).unwrap();
        let mut bad = good.clone();
        bad[0] ^= 0xff;
        std::fs::write(&p, &bad).unwrap();
        let e = open_blob(t.path(), layer).unwrap_err();
        assert!(matches!(e, LayoutError::BlobDigest { .. }), "{e}");
        assert!(e.to_string().contains(&layer.digest), "{e}");
        bad.push(0);
        std::fs::write(&p, &bad).unwrap();
        let e = open_blob(t.path(), layer).unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "size {}, descriptor says {}",
                good.len() + 1,
                good.len()
            )),
            "{e}"
        );
    }

    #[test]
    fn oversized_documents_are_refused() {
        let t = tempfile::tempdir().unwrap();
        image(t.path());
        let big = format!(
            "{{\"schemaVersion\":2,\"manifests\":[],\"x\":\"{}\"}}",
            "a".repeat(MAX_JSON as usize)
        );
        std::fs::write(t.path().join("index.json"), big).unwrap();
        let e = read_index(t.path()).unwrap_err().to_string();
        assert!(
            e.contains("index.json: larger than the 4194304 bytes allowed"),
            "{e}"
        );
        let desc = Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: Digest::of(b"").to_string(),
            size: MAX_JSON + 1,
            platform: None,
            annotations: BTreeMap::new(),
        };
        let e = read_blob(t.path(), &desc, MAX_JSON)
            .unwrap_err()
            .to_string();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn bad_digests_in_the_index_are_named() {
        let t = tempfile::tempdir().unwrap();
        image(t.path());
        for bad in [
            "sha256:../../../../etc/passwd",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:ABC",
        ] {
            std::fs::write(
                t.path().join("index.json"),
                format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{bad}","size":1}}]}}"#),
            )
            .unwrap();
            let e = resolve(t.path(), None, &Platform::linux_amd64())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("index.json: manifests[0].digest: digest"),
                "{bad}: {e}"
            );
        }
        std::fs::write(
            t.path().join("oci-layout"),
            br#"{"imageLayoutVersion":"2.0.0"}"#,
        )
        .unwrap();
        let e = read_index(t.path()).unwrap_err().to_string();
        assert!(e.contains("\"2.0.0\""), "{e}");
    }

    #[test]
    fn nested_index_picks_linux_amd64() {
        let t = tempfile::tempdir().unwrap();
        // Two single-platform layouts merged by hand into one multi-platform
        // image: an index blob listing arm64 then amd64.
        let amd = t.path().join("amd");
        let arm = t.path().join("arm");
        layout(&amd, "x", &[vec![E::file("arch", b"amd64")]]);
        layout(&arm, "x", &[vec![E::file("arch", b"arm64")]]);
        let mut entries = Vec::new();
        for (dir, arch) in [(&arm, "arm64"), (&amd, "amd64")] {
            for e in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
                let e = e.unwrap();
                if dir == &amd {
                    continue;
                }
                std::fs::copy(e.path(), amd.join("blobs/sha256").join(e.file_name())).unwrap();
            }
            let mut d = read_index(dir).unwrap().manifests.remove(0);
            d.annotations.clear();
            d.platform = Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: None,
            });
            entries.push(d);
        }
        let nested = serde_json::to_vec(&Index {
            schema_version: 2,
            media_type: Some(crate::manifest::OCI_INDEX.into()),
            manifests: entries,
            annotations: BTreeMap::new(),
        })
        .unwrap();
        let nd = Digest::of(&nested);
        std::fs::write(blob_path(&amd, &nd), &nested).unwrap();
        std::fs::write(
            amd.join("index.json"),
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{nd}","size":{},"annotations":{{"{REF_NAME}":"multi"}}}}]}}"#,
                crate::manifest::DOCKER_LIST,
                nested.len()
            ),
        )
        .unwrap();
        let img = resolve(&amd, Some("multi"), &Platform::linux_amd64()).unwrap();
        let dest = t.path().join("rootfs");
        crate::extract::apply_layers(&amd, &img.manifest.layers, &dest, &Default::default())
            .unwrap();
        assert_eq!(std::fs::read(dest.join("arch")).unwrap(), b"amd64");
        let riscv = Platform {
            architecture: "riscv64".into(),
            os: "linux".into(),
            variant: None,
        };
        let e = resolve(&amd, Some("multi"), &riscv)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no manifest for linux/riscv64"), "{e}");
    }
}
