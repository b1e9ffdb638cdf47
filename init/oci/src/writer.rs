//! Writing OCI image layouts from in-memory entries.
//!
//! Used by `keel-image oci` to build images reproducibly and by tests to
//! craft layers, malicious ones included: entry paths and link targets are
//! written as given, byte for byte, without the checks the `tar` crate's
//! builder applies (it refuses `..`, which is exactly what tests need).
//!
//! 1. [`layer_tar`]: a ustar archive of the entries in the order given;
//!    names over 100 bytes go in a PAX `path`/`linkpath` record. No user or
//!    group names, no host metadata: the bytes depend on the entries alone.
//! 2. [`Layer::tar_gzip`]: gzip with a fixed header (no name, mtime 0) and a
//!    fixed level; the diff id is the sha256 of the tar.
//! 3. [`write_layout`]: layer blobs, the config, the manifest, `index.json`
//!    naming the manifest by `org.opencontainers.image.ref.name`, and
//!    `oci-layout`. Maps serialize sorted, so the JSON is stable too.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::manifest::{
    ContainerConfig, Descriptor, ImageConfig, Index, Manifest, Platform, RootFs, OCI_CONFIG,
    OCI_INDEX, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD, OCI_MANIFEST, REF_NAME,
};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("tar entry {path:?}: {source}")]
    Tar { path: String, source: io::Error },
    #[error("compress layer: {0}")]
    Compress(io::Error),
    #[error("serialize image document: {0}")]
    Json(serde_json::Error),
    #[error("write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    /// A hard link to an earlier entry (archive path).
    Hardlink(String),
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// One layer entry. `path` is the archive path, written verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    pub path: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub kind: EntryKind,
}

impl LayerEntry {
    fn new(path: &str, mode: u32, kind: EntryKind) -> LayerEntry {
        LayerEntry {
            path: path.to_string(),
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            kind,
        }
    }
    pub fn dir(path: &str) -> LayerEntry {
        LayerEntry::new(path, 0o755, EntryKind::Dir)
    }
    pub fn file(path: &str, data: &[u8]) -> LayerEntry {
        LayerEntry::new(path, 0o644, EntryKind::File(data.to_vec()))
    }
    pub fn symlink(path: &str, target: &str) -> LayerEntry {
        LayerEntry::new(path, 0o777, EntryKind::Symlink(target.to_string()))
    }
    pub fn hardlink(path: &str, target: &str) -> LayerEntry {
        LayerEntry::new(path, 0o644, EntryKind::Hardlink(target.to_string()))
    }
    pub fn with_mode(mut self, mode: u32) -> LayerEntry {
        self.mode = mode;
        self
    }
    pub fn with_owner(mut self, uid: u64, gid: u64) -> LayerEntry {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn with_mtime(mut self, mtime: u64) -> LayerEntry {
        self.mtime = mtime;
        self
    }
}

fn copy_field(field: &mut [u8], value: &str) {
    field.fill(0);
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value.as_bytes()[..n]);
}

fn append_entry(b: &mut tar::Builder<Vec<u8>>, e: &LayerEntry) -> io::Result<()> {
    use tar::EntryType;
    let mut path = e.path.clone();
    if matches!(e.kind, EntryKind::Dir) && !path.ends_with('/') {
        path.push('/');
    }
    let (ty, data, link, dev): (EntryType, &[u8], Option<&str>, (u32, u32)) = match &e.kind {
        EntryKind::Dir => (EntryType::Directory, &[], None, (0, 0)),
        EntryKind::File(d) => (EntryType::Regular, d, None, (0, 0)),
        EntryKind::Symlink(t) => (EntryType::Symlink, &[], Some(t), (0, 0)),
        EntryKind::Hardlink(t) => (EntryType::Link, &[], Some(t), (0, 0)),
        EntryKind::CharDevice { major, minor } => (EntryType::Char, &[], None, (*major, *minor)),
        EntryKind::BlockDevice { major, minor } => (EntryType::Block, &[], None, (*major, *minor)),
        EntryKind::Fifo => (EntryType::Fifo, &[], None, (0, 0)),
    };
    // Long names go in a PAX record, which readers prefer over the header's
    // (truncated) fields.
    let mut pax: Vec<(&str, &[u8])> = Vec::new();
    if path.len() > 100 {
        pax.push(("path", path.as_bytes()));
    }
    if let Some(l) = link.filter(|l| l.len() > 100) {
        pax.push(("linkpath", l.as_bytes()));
    }
    if !pax.is_empty() {
        b.append_pax_extensions(pax)?;
    }
    let mut h = tar::Header::new_ustar();
    let ustar = h.as_ustar_mut().expect("a ustar header");
    copy_field(&mut ustar.name, &path);
    copy_field(&mut ustar.linkname, link.unwrap_or(""));
    h.set_entry_type(ty);
    h.set_mode(e.mode);
    h.set_uid(e.uid);
    h.set_gid(e.gid);
    h.set_mtime(e.mtime);
    h.set_size(data.len() as u64);
    if matches!(ty, EntryType::Char | EntryType::Block) {
        h.set_device_major(dev.0)?;
        h.set_device_minor(dev.1)?;
    }
    h.set_cksum();
    b.append(&h, data)
}

/// A tar archive of `entries`, in the order given.
pub fn layer_tar(entries: &[LayerEntry]) -> Result<Vec<u8>, WriteError> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        append_entry(&mut b, e).map_err(|source| WriteError::Tar {
            path: e.path.clone(),
            source,
        })?;
    }
    b.into_inner().map_err(|source| WriteError::Tar {
        path: "(end of archive)".into(),
        source,
    })
}

/// A layer blob ready to be written: its bytes, media type and diff id.
#[derive(Debug, Clone)]
pub struct Layer {
    pub media_type: String,
    pub blob: Vec<u8>,
    /// sha256 of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
}

impl Layer {
    pub fn tar(tar: Vec<u8>) -> Layer {
        Layer {
            media_type: OCI_LAYER_TAR.into(),
            diff_id: Digest::of(&tar),
            blob: tar,
        }
    }

    /// gzip with a fixed header: no file name, mtime 0, one OS byte, level 9.
    pub fn tar_gzip(tar: &[u8]) -> Result<Layer, WriteError> {
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(Vec::new(), flate2::Compression::best());
        gz.write_all(tar).map_err(WriteError::Compress)?;
        Ok(Layer {
            media_type: OCI_LAYER_GZIP.into(),
            diff_id: Digest::of(tar),
            blob: gz.finish().map_err(WriteError::Compress)?,
        })
    }

    pub fn tar_zstd(tar: &[u8]) -> Result<Layer, WriteError> {
        Ok(Layer {
            media_type: OCI_LAYER_ZSTD.into(),
            diff_id: Digest::of(tar),
            blob: zstd::encode_all(tar, 19).map_err(WriteError::Compress)?,
        })
    }
}

/// What goes into the image config besides the layers.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The index entry's `org.opencontainers.image.ref.name`.
    pub name: Option<String>,
    pub platform: Platform,
    pub config: ContainerConfig,
}

fn json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, WriteError> {
    serde_json::to_vec(v).map_err(WriteError::Json)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    std::fs::write(path, bytes).map_err(|source| WriteError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn put(out: &Path, bytes: &[u8]) -> Result<Digest, WriteError> {
    let d = Digest::of(bytes);
    write_file(&crate::layout::blob_path(out, &d), bytes)?;
    Ok(d)
}

/// Write a one-image layout into `out` (created if missing) and return the
/// manifest's digest.
pub fn write_layout(out: &Path, image: &ImageSpec, layers: &[Layer]) -> Result<Digest, WriteError> {
    let blobs = out.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(|source| WriteError::Write {
        path: blobs.clone(),
        source,
    })?;
    let mut layer_descs = Vec::new();
    for l in layers {
        layer_descs.push(Descriptor {
            media_type: l.media_type.clone(),
            digest: put(out, &l.blob)?.to_string(),
            size: l.blob.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        });
    }
    let config = ImageConfig {
        architecture: image.platform.architecture.clone(),
        os: image.platform.os.clone(),
        config: Some(image.config.clone()),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: layers.iter().map(|l| l.diff_id.to_string()).collect(),
        },
    };
    let config_bytes = json(&config)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        config: Descriptor {
            media_type: OCI_CONFIG.into(),
            digest: put(out, &config_bytes)?.to_string(),
            size: config_bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        },
        layers: layer_descs,
        annotations: BTreeMap::new(),
    };
    let manifest_bytes = json(&manifest)?;
    let manifest_digest = put(out, &manifest_bytes)?;
    let index = Index {
        schema_version: 2,
        media_type: Some(OCI_INDEX.into()),
        manifests: vec![Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: manifest_digest.to_string(),
            size: manifest_bytes.len() as u64,
            platform: Some(image.platform.clone()),
            annotations: image
                .name
                .iter()
                .map(|n| (REF_NAME.to_string(), n.clone()))
                .collect(),
        }],
        annotations: BTreeMap::new(),
    };
    write_file(&out.join("index.json"), &json(&index)?)?;
    write_file(
        &out.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    Ok(manifest_digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{layout, snapshot};

    #[test]
    fn same_entries_give_the_same_layout_bytes() {
        let t = tempfile::tempdir().unwrap();
        let entries = vec![
            LayerEntry::dir("bin").with_mtime(1_700_000_000),
            LayerEntry::file("bin/x", b"x").with_mode(0o755),
            LayerEntry::symlink("bin/y", "x"),
        ];
        let a = layout(&t.path().join("a"), "n:1", std::slice::from_ref(&entries));
        let b = layout(&t.path().join("b"), "n:1", &[entries]);
        assert_eq!(a, b);
        let strip = |dir: &str| -> Vec<String> {
            snapshot(&t.path().join(dir), Path::new("/nonexistent"))
                .into_iter()
                .map(|(p, v)| {
                    format!(
                        "{} {v}",
                        p.strip_prefix(t.path().join(dir)).unwrap().display()
                    )
                })
                .collect()
        };
        assert_eq!(strip("a"), strip("b"));
        // The gzip header holds no time or name: bytes 4..8 (mtime) are zero
        // and the flags byte has no FNAME.
        let gz = Layer::tar_gzip(b"abc").unwrap().blob;
        assert_eq!(&gz[3..8], &[0, 0, 0, 0, 0]);
    }
}
