//! Helpers for the unit tests: layouts from entries, tree snapshots.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::manifest::{ContainerConfig, Platform};
use crate::writer::{layer_tar, write_layout, ImageSpec, Layer, LayerEntry};

pub fn gz_layer(entries: &[LayerEntry]) -> Layer {
    Layer::tar_gzip(&layer_tar(entries).unwrap()).unwrap()
}

pub fn spec(name: &str) -> ImageSpec {
    ImageSpec {
        name: Some(name.to_string()),
        platform: Platform::linux_amd64(),
        config: ContainerConfig {
            entrypoint: Some(vec!["/bin/sh".into()]),
            cmd: Some(vec!["-c".into(), "echo hi".into()]),
            env: Some(vec!["PATH=/bin".into()]),
            working_dir: Some("/".into()),
            ..Default::default()
        },
    }
}

/// A layout at `dir` holding one image `name` with `layers`.
pub fn layout(dir: &Path, name: &str, layers: &[Vec<LayerEntry>]) -> crate::Digest {
    let layers: Vec<Layer> = layers.iter().map(|l| gz_layer(l)).collect();
    write_layout(dir, &spec(name), &layers).unwrap()
}

/// Everything under `root`: path → (mode, size, link target or content hash).
pub fn snapshot(root: &Path, skip: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p.starts_with(skip) {
            continue;
        }
        let m = std::fs::symlink_metadata(&p).unwrap();
        let what = if m.file_type().is_symlink() {
            format!("-> {:?}", std::fs::read_link(&p).unwrap())
        } else if m.is_file() {
            format!("{:?}", crate::Digest::of(&std::fs::read(&p).unwrap()))
        } else {
            String::new()
        };
        out.insert(p.clone(), format!("{:o} {} {what}", m.mode(), m.size()));
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
