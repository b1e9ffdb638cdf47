//! The root image: a spec staged into a directory, packed by `mkfs.erofs`.
//!
//! EROFS rather than squashfs: it is built for read-only, verified system
//! partitions (Android's), reads with less CPU and fewer metadata blocks for
//! the small random reads a root gets, and its block size equals the page
//! size and the dm-verity block size (4 KiB), so one verified block is one
//! filesystem block. Files are LZ4HC-compressed (the kernel's EROFS
//! decompressor; fast to unpack under emulation).
//!
//! Reproducible: entries staged in sorted order with the spec's modes, every
//! timestamp `SOURCE_DATE_EPOCH` (`-T`), all files owned by root
//! (`--all-root`; the spec must say 0:0), a UUID derived from the epoch and
//! the spec, no extended attributes from the staging directory (`-x -1`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::spec::{Entry, Kind};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("root image entry /{name}: {problem}")]
    Entry { name: String, problem: String },
    #[error("stage /{name}: {source}")]
    Stage {
        name: String,
        source: std::io::Error,
    },
    #[error("run mkfs.erofs: {0} (install erofs-utils: make deps)")]
    Spawn(std::io::Error),
    #[error("mkfs.erofs failed: {0}")]
    Mkfs(String),
}

/// Write `entries` under `dir` (which exists and is empty).
pub fn stage(entries: &[Entry], dir: &Path) -> Result<(), RootfsError> {
    for e in entries {
        let at = dir.join(&e.name);
        let err = |source| RootfsError::Stage {
            name: e.name.clone(),
            source,
        };
        if e.uid != 0 || e.gid != 0 {
            return Err(RootfsError::Entry {
                name: e.name.clone(),
                problem: "the root image holds root-owned files only (owner 0 0)".into(),
            });
        }
        match &e.kind {
            Kind::Dir => std::fs::create_dir_all(&at).map_err(err)?,
            Kind::File(src) => {
                std::fs::copy(src, &at).map_err(|source| RootfsError::Stage {
                    name: format!("{} (from {})", e.name, src.display()),
                    source,
                })?;
            }
            Kind::Symlink(target) => std::os::unix::fs::symlink(target, &at).map_err(err)?,
            Kind::Node { .. } => {
                return Err(RootfsError::Entry {
                    name: e.name.clone(),
                    problem:
                        "device nodes do not belong in the root image (devtmpfs provides /dev)"
                            .into(),
                })
            }
        }
        if !matches!(e.kind, Kind::Symlink(_)) {
            std::fs::set_permissions(&at, std::fs::Permissions::from_mode(e.mode)).map_err(err)?;
        }
    }
    Ok(())
}

/// Pack `dir` into an EROFS image at `out`.
pub fn mkfs_erofs(dir: &Path, out: &Path, epoch: u64, uuid: &str) -> Result<(), RootfsError> {
    let _ = std::fs::remove_file(out);
    let o = Command::new("mkfs.erofs")
        .arg("-zlz4hc")
        .arg(format!("-T{epoch}"))
        .arg(format!("-U{uuid}"))
        .arg("--all-root")
        .arg("-x-1")
        .arg("--quiet")
        .arg(out)
        .arg(dir)
        .output()
        .map_err(RootfsError::Spawn)?;
    if !o.status.success() {
        return Err(RootfsError::Mkfs(format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )));
    }
    Ok(())
}
