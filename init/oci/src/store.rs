//! keel's image store: content-addressed blobs, named refs, unpacked layers.
//!
//! ```text
//! ROOT/blobs/sha256/HEX   manifests, configs, layer blobs (verified on entry)
//! ROOT/images/NAME.json   {"name": "busybox:latest", "manifest": descriptor}
//! ROOT/layers/HEX/        layer HEX (its blob digest) unpacked, an overlay lower
//! ```
//!
//! 1. Blobs enter through [`Store::put_blob`]: streamed into a temporary file
//!    in the blob directory while hashed, fsynced, and renamed to their
//!    digest only if size and sha256 match. A blob file is never partial.
//! 2. [`Store::import_layout`] resolves an image in an OCI layout (which
//!    verifies manifest and config), copies its blobs through `put_blob`,
//!    then writes the ref (temporary file, fsync, rename, fsync directory):
//!    a ref only ever names blobs that are all present. [`Store::put_ref`]
//!    writes a ref the same way for images that came by other roads (a
//!    registry pull), after checking its blobs are there.
//! 3. [`Store::resolve`] reads a ref and the manifest and config it names,
//!    and unpacks each layer not yet unpacked into a temporary directory
//!    (overlay whiteouts; root needed if the layer has whiteouts) renamed to
//!    `layers/HEX` when complete, so a layer directory is never partial and
//!    a second resolve does no work.
//! 4. [`Store::gc`] collects what the refs reach (manifest, config, layers)
//!    and deletes every other blob and layer directory, plus temporaries
//!    left by interrupted writes. It assumes no import runs at the same time.
//!
//! Image names (`docker.io/library/busybox:latest`) map to file names by
//! replacing `/` with `%`, a character names may not contain.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::digest::{copy_hashed, Digest};
use crate::extract::{extract_layer, ExtractError, Limits, Stats, Whiteouts};
use crate::layout::{self, blob_path, open_blob, read_image, LayoutError};
use crate::manifest::{Descriptor, ImageConfig, Manifest, Platform, MAX_JSON};

const TMP_PREFIX: &str = ".tmp-";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("image name {name:?}: {problem}")]
    Name { name: String, problem: &'static str },
    #[error("{root}: no image named {name:?}")]
    NoImage { root: PathBuf, name: String },
    #[error("blob {expected}: received {found_size} bytes hashing to {found}{size_note}")]
    Mismatch {
        expected: Digest,
        found: Digest,
        found_size: u64,
        size_note: String,
    },
    #[error("image ref {path}: {message}")]
    Ref { path: PathBuf, message: String },
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Extract(#[from] ExtractError),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

/// An image ready to run: its documents and its layer directories, lowest
/// first (overlayfs wants `lowerdir=` highest first: reverse them).
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub name: String,
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config: ImageConfig,
    pub layer_dirs: Vec<PathBuf>,
    /// The layers this call unpacked (the others were unpacked already,
    /// or by another caller it waited for).
    pub unpacked: Vec<Unpacked>,
}

/// A layer unpacked by [`Store::resolve`].
#[derive(Debug, Clone)]
pub struct Unpacked {
    pub digest: Digest,
    /// Bytes of the blob.
    pub bytes: u64,
    pub ms: u128,
    /// Device nodes it held, which were not created (see
    /// [`crate::extract`]): how many, and the first paths.
    pub devices: u64,
    pub skipped_devices: Vec<String>,
}

impl Unpacked {
    /// One line per skipped device node, for the log (`layer sha256:...:
    /// skipped device node /dev/console (keel creates no device nodes
    /// from images)`), and one for those beyond the named ones.
    pub fn skip_notes(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .skipped_devices
            .iter()
            .map(|p| {
                format!(
                    "layer {}: skipped device node {p} (keel creates no device nodes from images)",
                    self.digest
                )
            })
            .collect();
        let more = self
            .devices
            .saturating_sub(self.skipped_devices.len() as u64);
        if more > 0 {
            out.push(format!(
                "layer {}: skipped {more} more device nodes",
                self.digest
            ));
        }
        out
    }
}

/// What [`Store::gc`] deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs: Vec<Digest>,
    pub layers: Vec<Digest>,
    pub temporaries: Vec<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct Ref {
    name: String,
    manifest: Descriptor,
}

fn check_name(name: &str) -> Result<(), StoreError> {
    let err = |problem| {
        Err(StoreError::Name {
            name: name.to_string(),
            problem,
        })
    };
    if name.is_empty() || name.len() > 200 {
        return err("must be 1 to 200 characters");
    }
    if name.starts_with(['.', '/']) || name.ends_with('/') || name.contains("//") {
        return err("must not start with `.` or `/`, end with `/` or hold `//`");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:@/-".contains(&b))
    {
        return err("may hold only letters, digits and . _ : @ / -");
    }
    Ok(())
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary name in a directory, unique within this machine's processes.
fn tmp_name(what: &str) -> String {
    format!(
        "{TMP_PREFIX}{what}-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

/// Write `bytes` to `dir/name` so that a crash leaves the old file or the
/// new one, never a mix: temporary file, fsync, rename, fsync directory.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(tmp_name(name));
    let dst = dir.join(name);
    let r = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        fs::rename(&tmp, &dst).map_err(io_err("rename to", &dst))
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r?;
    sync_dir(dir)
}

/// A content-addressed image store under one root directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    limits: Limits,
}

impl Store {
    /// Open (creating its directories) the store at `root`.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        for d in ["blobs/sha256", "images", "layers"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
            limits: Limits::default(),
        })
    }

    /// Use `limits` when unpacking layers.
    pub fn with_limits(mut self, limits: Limits) -> Store {
        self.limits = limits;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }

    fn ref_path(&self, name: &str) -> PathBuf {
        self.images()
            .join(format!("{}.json", name.replace('/', "%")))
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        blob_path(&self.root, digest).is_file()
    }

    /// Store the blob read from `reader`, which must hash to `expected`
    /// (and be `size` bytes, if given). A blob already present is kept
    /// without reading `reader`.
    pub fn put_blob(
        &self,
        mut reader: impl Read,
        expected: &Digest,
        size: Option<u64>,
    ) -> Result<PathBuf, StoreError> {
        let dst = blob_path(&self.root, expected);
        if dst.is_file() {
            return Ok(dst);
        }
        let dir = self.blobs();
        let tmp = dir.join(tmp_name(expected.hex()));
        let r = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io_err("create", &tmp))?;
            // One byte past the expected size is enough to know it is wrong.
            let limit = size.map_or(u64::MAX, |s| s.saturating_add(1));
            let (n, found) = copy_hashed(&mut reader.by_ref().take(limit), &mut f, u64::MAX)
                .map_err(io_err("write", &tmp))?;
            if found != *expected || size.is_some_and(|s| s != n) {
                return Err(StoreError::Mismatch {
                    expected: expected.clone(),
                    found,
                    found_size: n,
                    size_note: size.map_or(String::new(), |s| format!(" (expected {s} bytes)")),
                });
            }
            f.sync_all().map_err(io_err("fsync", &tmp))?;
            fs::rename(&tmp, &dst).map_err(io_err("rename to", &dst))
        })();
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r?;
        sync_dir(&dir)?;
        Ok(dst)
    }

    fn copy_blob(&self, layout: &Path, desc: &Descriptor) -> Result<(), StoreError> {
        let digest = Digest::parse(&desc.digest).map_err(|source| LayoutError::Digest {
            what: format!("descriptor in {}", layout.display()),
            source,
        })?;
        if !self.has_blob(&digest) {
            let f = open_blob(layout, desc)?;
            self.put_blob(f, &digest, Some(desc.size))?;
        }
        Ok(())
    }

    /// Import `reference` (or the only image) from the OCI layout at
    /// `layout` as `name`; returns the manifest digest.
    pub fn import_layout(
        &self,
        layout: &Path,
        reference: Option<&str>,
        name: &str,
    ) -> Result<Digest, StoreError> {
        check_name(name)?;
        let image = layout::resolve(layout, reference, &Platform::linux_amd64())?;
        for l in &image.manifest.layers {
            self.copy_blob(layout, l)?;
        }
        self.copy_blob(layout, &image.manifest.config)?;
        let manifest = Descriptor {
            media_type: image
                .manifest
                .media_type
                .clone()
                .unwrap_or_else(|| crate::manifest::OCI_MANIFEST.into()),
            digest: image.manifest_digest.to_string(),
            size: image.manifest_size,
            platform: None,
            annotations: Default::default(),
        };
        self.copy_blob(layout, &manifest)?;
        self.put_ref(name, &manifest)?;
        Ok(image.manifest_digest)
    }

    /// Name the image whose manifest is `manifest` `name`, replacing any
    /// image of that name. The manifest and its config are read back
    /// (verified) and every layer blob must be present, so a ref never names
    /// a blob the store lacks.
    pub fn put_ref(&self, name: &str, manifest: &Descriptor) -> Result<(), StoreError> {
        check_name(name)?;
        let image = read_image(&self.root, manifest)?;
        for l in &image.manifest.layers {
            let digest = l.digest().map_err(|source| LayoutError::Digest {
                what: format!("manifest {} layer", image.manifest_digest),
                source,
            })?;
            if !self.has_blob(&digest) {
                return Err(StoreError::Ref {
                    path: self.ref_path(name),
                    message: format!("layer {digest} is not in the store"),
                });
            }
        }
        let r = Ref {
            name: name.to_string(),
            manifest: manifest.clone(),
        };
        let file = self.ref_path(name);
        let bytes = serde_json::to_vec_pretty(&r).map_err(|e| StoreError::Ref {
            path: file.clone(),
            message: e.to_string(),
        })?;
        let file_name = file.file_name().expect("ref files have names");
        write_atomic(&self.images(), &file_name.to_string_lossy(), &bytes)
    }

    fn read_ref(&self, path: &Path) -> Result<Ref, StoreError> {
        let bytes = layout::read_limited(path, MAX_JSON)?;
        let r: Ref = serde_json::from_slice(&bytes).map_err(|e| StoreError::Ref {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Digest::parse(&r.manifest.digest).map_err(|e| StoreError::Ref {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(r)
    }

    fn read_named(&self, name: &str) -> Result<Ref, StoreError> {
        check_name(name)?;
        let path = self.ref_path(name);
        if !path.is_file() {
            return Err(StoreError::NoImage {
                root: self.root.clone(),
                name: name.to_string(),
            });
        }
        self.read_ref(&path)
    }

    /// The directory layer `desc` is unpacked in, unpacking it first if it
    /// is not yet (true). One caller in this process unpacks a layer; the
    /// others asking for it meanwhile wait and find it unpacked.
    fn layer_dir(&self, desc: &Descriptor) -> Result<(PathBuf, Option<Stats>), StoreError> {
        let digest = Digest::parse(&desc.digest).map_err(|source| LayoutError::Digest {
            what: "layer descriptor".into(),
            source,
        })?;
        let dst = self.layers().join(digest.hex());
        if dst.is_dir() {
            return Ok((dst, None));
        }
        let lock = crate::once::lock_for(&dst.to_string_lossy());
        let _one = lock.lock().unwrap_or_else(|p| p.into_inner());
        if dst.is_dir() {
            return Ok((dst, None));
        }
        let tmp = self.layers().join(tmp_name(digest.hex()));
        let r = (|| {
            let blob = open_blob(&self.root, desc)?;
            let stats = extract_layer(
                blob,
                &desc.media_type,
                &tmp,
                &desc.digest,
                Whiteouts::Overlay,
                &self.limits,
            )?;
            match fs::rename(&tmp, &dst) {
                Ok(()) => Ok(stats),
                // Another process unpacked it meanwhile: theirs is as good.
                Err(_) if dst.is_dir() => {
                    let _ = fs::remove_dir_all(&tmp);
                    Ok(stats)
                }
                Err(e) => Err(io_err("rename to", &dst)(e)),
            }
        })();
        if r.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        let stats = r?;
        sync_dir(&self.layers())?;
        Ok((dst, Some(stats)))
    }

    /// The image named `name`, with every layer unpacked.
    pub fn resolve(&self, name: &str) -> Result<ResolvedImage, StoreError> {
        let r = self.read_named(name)?;
        let image = read_image(&self.root, &r.manifest)?;
        let mut layer_dirs = Vec::new();
        let mut unpacked = Vec::new();
        for l in &image.manifest.layers {
            let t = std::time::Instant::now();
            let (dir, fresh) = self.layer_dir(l)?;
            if let Some(stats) = fresh {
                let digest = Digest::parse(&l.digest).map_err(|source| LayoutError::Digest {
                    what: "layer descriptor".into(),
                    source,
                })?;
                unpacked.push(Unpacked {
                    digest,
                    bytes: l.size,
                    ms: t.elapsed().as_millis(),
                    devices: stats.devices,
                    skipped_devices: stats.skipped_devices,
                });
            }
            layer_dirs.push(dir);
        }
        Ok(ResolvedImage {
            name: r.name,
            manifest_digest: image.manifest_digest,
            manifest: image.manifest,
            config: image.config,
            layer_dirs,
            unpacked,
        })
    }

    fn refs(&self) -> Result<Vec<Ref>, StoreError> {
        let dir = self.images();
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            let e = e.map_err(io_err("read directory", &dir))?;
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n.starts_with('.') || !n.ends_with(".json") {
                continue;
            }
            out.push(self.read_ref(&e.path())?);
        }
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Image names and their manifest digests, sorted by name.
    pub fn list(&self) -> Result<Vec<(String, Digest)>, StoreError> {
        self.refs()?
            .into_iter()
            .map(|r| {
                let d = r.manifest.digest().map_err(|source| LayoutError::Digest {
                    what: format!("image {}", r.name),
                    source,
                })?;
                Ok((r.name, d))
            })
            .collect()
    }

    /// Remove the ref `name` (blobs stay until [`Store::gc`]); false if there
    /// was none.
    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        check_name(name)?;
        let path = self.ref_path(name);
        match fs::remove_file(&path) {
            Ok(()) => {
                sync_dir(&self.images())?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    /// Delete blobs and layer directories no image ref reaches, and
    /// temporaries. A ref whose manifest cannot be read stops the collection
    /// (with an error) rather than letting its blobs be deleted.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let mut blobs_kept = std::collections::HashSet::new();
        let mut layers_kept = std::collections::HashSet::new();
        for r in self.refs()? {
            let image = read_image(&self.root, &r.manifest)?;
            blobs_kept.insert(image.manifest_digest.clone());
            blobs_kept.insert(image.manifest.config.digest().map_err(|source| {
                LayoutError::Digest {
                    what: format!("image {} config", r.name),
                    source,
                }
            })?);
            for l in &image.manifest.layers {
                let d = l.digest().map_err(|source| LayoutError::Digest {
                    what: format!("image {} layer", r.name),
                    source,
                })?;
                blobs_kept.insert(d.clone());
                layers_kept.insert(d);
            }
        }
        let mut report = GcReport::default();
        for (dir, kept, removed, is_layer) in [
            (self.blobs(), &blobs_kept, &mut report.blobs, false),
            (self.layers(), &layers_kept, &mut report.layers, true),
        ] {
            for e in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
                let e = e.map_err(io_err("read directory", &dir))?;
                let path = e.path();
                let n = e.file_name().to_string_lossy().into_owned();
                let is_tmp = n.starts_with(TMP_PREFIX);
                let digest = Digest::from_hex(&n);
                if !is_tmp && digest.as_ref().is_none_or(|d| kept.contains(d)) {
                    continue;
                }
                let r = if is_layer && path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                r.map_err(io_err("remove", &path))?;
                match digest {
                    Some(d) if !is_tmp => removed.push(d),
                    _ => report.temporaries.push(path),
                }
            }
            removed.sort_unstable();
        }
        report.temporaries.sort_unstable();
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
