//! The StartContainers boot task: the image store, keel's cgroup for
//! containers, and the supervisor with the config's containers.
//!
//! Images are found in the store on the state disk
//! (`/var/lib/keel/images`); an image the store lacks is imported from the
//! system images the root image carries (`/usr/lib/keel/images/*`, OCI
//! layouts made by `keel-image oci`), matched by reference name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_boot::{info, warn};
use keel_config::model::Container;
use keel_containers::runtime::{Dirs, ImageRoot};
use keel_containers::supervisor::{Settings, Supervisor};

use crate::boot_table::{Ctx, TaskError};

/// The image store on STATE.
pub const STORE: &str = "/var/lib/keel/images";
/// OCI layouts shipped in the root image.
pub const SYSTEM_IMAGES: &str = "/usr/lib/keel/images";
/// Container log files.
pub const LOGS: &str = "/var/lib/keel/logs";

/// `NAME` means `NAME:latest`, as docker reads it.
pub fn normalize(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || image.contains('@') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// Import `name` from the system images into `store`, if one has it.
fn import_system(store: &keel_oci::Store, system: &Path, name: &str) -> Result<bool, String> {
    let Ok(dirs) = std::fs::read_dir(system) else {
        return Ok(false);
    };
    let mut dirs: Vec<PathBuf> = dirs.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    for d in dirs {
        let Ok(index) = keel_oci::layout::read_index(&d) else {
            continue;
        };
        if index.manifests.iter().any(|m| m.ref_name() == Some(name)) {
            store
                .import_layout(&d, Some(name), name)
                .map_err(|e| format!("import {name} from {}: {e}", d.display()))?;
            info!("images: imported {name} from {}", d.display());
            return Ok(true);
        }
    }
    Ok(false)
}

/// The root of `c`'s image: from the store, importing a system image on
/// first use.
pub fn image_root(
    store: &keel_oci::Store,
    system: &Path,
    c: &Container,
) -> Result<ImageRoot, String> {
    let name = normalize(&c.image);
    let resolved = match store.resolve(&name) {
        Ok(r) => r,
        Err(first) => {
            if !import_system(store, system, &name)? {
                return Err(format!(
                    "image {name}: not in the store ({first}) nor among the system images"
                ));
            }
            store
                .resolve(&name)
                .map_err(|e| format!("image {name}: {e}"))?
        }
    };
    let cfg = resolved.config.config.unwrap_or_default();
    let mut layers = resolved.layer_dirs;
    // overlayfs lists the top layer first.
    layers.reverse();
    Ok(ImageRoot {
        layers,
        entrypoint: cfg.entrypoint.unwrap_or_default(),
        cmd: cfg.cmd.unwrap_or_default(),
        env: cfg.env.unwrap_or_default(),
        workdir: cfg.working_dir,
        user: cfg.user,
    })
}

pub fn start_containers(ctx: &mut Ctx) -> Result<(), TaskError> {
    let containers = std::mem::take(&mut ctx.config_containers);
    let Some(services) = &ctx.services else {
        return Ok(());
    };
    let io = |op: &'static str, path: &str| {
        let path = PathBuf::from(path);
        move |source| TaskError::Io { op, path, source }
    };
    let cg = keel_containers::cgroup::prepare_root(Path::new("/sys/fs/cgroup")).map_err(|e| {
        TaskError::Io {
            op: "prepare the containers cgroup",
            path: "/sys/fs/cgroup/containers".into(),
            source: std::io::Error::other(e.to_string()),
        }
    })?;
    let store = keel_oci::Store::open(Path::new(STORE)).map_err(|e| TaskError::Io {
        op: "open the image store",
        path: STORE.into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    std::fs::create_dir_all(LOGS).map_err(io("create", LOGS))?;
    let mut dirs = Dirs::node();
    dirs.cgroup = cg;
    let store = Arc::new(store);
    let images = move |c: &Container| image_root(&store, Path::new(SYSTEM_IMAGES), c);
    let settings = Settings {
        dirs,
        logs: LOGS.into(),
        images: Arc::new(images),
        confiner: Some(Arc::new(crate::confine::confiner)),
    };
    let n = containers.len();
    let _enter = services.enter();
    let sup = Supervisor::start(settings, containers, ctx.node.exits.clone());
    if ctx.node.containers.set(sup).is_err() {
        warn!("containers: the supervisor was already started");
    }
    if n > 0 {
        info!("containers: supervising {n}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_get_latest() {
        assert_eq!(super::normalize("busybox"), "busybox:latest");
        assert_eq!(super::normalize("busybox:1.36"), "busybox:1.36");
        assert_eq!(
            super::normalize("registry:5000/app"),
            "registry:5000/app:latest"
        );
        assert_eq!(super::normalize("app@sha256:ab"), "app@sha256:ab");
    }
}
