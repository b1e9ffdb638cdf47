//! The StartContainers boot task: the image store, keel's cgroup for
//! containers, and the supervisor with the config's containers.
//!
//! Images are found in the store on the state disk
//! (`/var/lib/keel/images`); an image the store lacks is imported from the
//! system images the root image carries (`/usr/lib/keel/images/*`, OCI
//! layouts made by `keel-image oci`), matched by reference name; an image
//! neither has is pulled from its registry (`registries:` in the config
//! says which are plain http and the credentials) over HTTPS checked
//! against the root image's CA bundle, names resolved through
//! `/etc/hosts` and `/etc/resolv.conf`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_boot::{error, info, warn};
use keel_config::model::{Container, Registries};
use keel_containers::runtime::{Dirs, ImageRoot};
use keel_containers::supervisor::{Settings as SupervisorSettings, Supervisor};
use keel_registry::{Credentials, Reference, Settings};
use keel_types::ImageRef;

use crate::boot_table::{Ctx, TaskError};

/// The image store on STATE.
pub const STORE: &str = "/var/lib/keel/images";
/// OCI layouts shipped in the root image.
pub const SYSTEM_IMAGES: &str = "/usr/lib/keel/images";
/// The CA bundle https servers' certificates are checked against
/// (registries, an https `keel.config.url` without a pin): a link to the
/// root image's bundle.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Container log files.
pub const LOGS: &str = "/var/lib/keel/logs";

/// Why a container's image could not be made ready: the `Images` hook's
/// error, each naming the image and the step.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image {name}: import from {dir}: {source}")]
    Import {
        name: String,
        dir: PathBuf,
        source: Box<keel_oci::StoreError>,
    },
    #[error(
        "image {name}: not in the store ({missing}) nor among the system images, and {source}"
    )]
    Pull {
        name: String,
        missing: Box<keel_oci::StoreError>,
        source: Box<keel_registry::PullError>,
    },
    #[error("image {name}: {source}")]
    Resolve {
        name: String,
        source: Box<keel_oci::StoreError>,
    },
    #[error("image {name}: its config's {field}: {source}")]
    Config {
        name: String,
        field: &'static str,
        source: keel_types::Invalid,
    },
}

/// Import `name` from the system images into `store`, if one has it.
fn import_system(store: &keel_oci::Store, system: &Path, name: &str) -> Result<bool, ImageError> {
    let Ok(dirs) = std::fs::read_dir(system) else {
        return Ok(false);
    };
    let mut dirs: Vec<PathBuf> = dirs.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort_unstable();
    for d in dirs {
        let Ok(index) = keel_oci::layout::read_index(&d) else {
            continue;
        };
        if index.manifests.iter().any(|m| m.ref_name() == Some(name)) {
            store
                .import_layout(&d, Some(name), name)
                .map_err(|source| ImageError::Import {
                    name: name.to_string(),
                    dir: d.clone(),
                    source: Box::new(source),
                })?;
            info!("images: imported {name} from {}", d.display());
            return Ok(true);
        }
    }
    Ok(false)
}

/// What a pull needs: the config's registries, with the node's CA bundle
/// and resolver files.
pub fn pull_settings(r: &Registries, ca_bundle: &Path, resolver_root: &Path) -> Settings {
    Settings {
        insecure: r.insecure.clone(),
        auth: r
            .auth
            .iter()
            .map(|a| Credentials {
                registry: a.registry.clone(),
                username: a.username.clone(),
                password: a.password.clone(),
            })
            .collect(),
        ca_bundle: ca_bundle.to_path_buf(),
        resolver_root: resolver_root.to_path_buf(),
    }
}

/// Pull `image` into `store` under `name` (its store name); the store's
/// answer when it lacked it goes into the error.
fn pull(
    store: &keel_oci::Store,
    image: &ImageRef,
    name: &str,
    settings: &Settings,
    missing: keel_oci::StoreError,
) -> Result<(), ImageError> {
    let reference = Reference::from(image);
    let t = std::time::Instant::now();
    let p = keel_registry::pull_blocking(store, &reference, name, settings).map_err(|source| {
        ImageError::Pull {
            name: name.to_string(),
            missing: Box::new(missing),
            source: Box::new(source),
        }
    })?;
    info!(
        "images: pulled {name} ({}, {} blobs fetched, {} bytes, {} present) in {} ms",
        p.manifest.digest,
        p.fetched,
        p.bytes,
        p.present,
        t.elapsed().as_millis()
    );
    Ok(())
}

/// The root of `c`'s image: from the store, importing a system image or
/// pulling from the registry on first use.
pub fn image_root(
    store: &keel_oci::Store,
    system: &Path,
    registries: &Settings,
    c: &Container,
) -> Result<ImageRoot, ImageError> {
    let name = c.image.store_name();
    // One import or pull of an image at a time: containers that share it
    // and start together wait for the first, then find it in the store.
    let lock = keel_oci::once::lock_for(&format!("image {name}"));
    let one = lock.lock().unwrap_or_else(|p| p.into_inner());
    let resolved = match store.resolve(&name) {
        Ok(r) => r,
        Err(first) => {
            if !import_system(store, system, &name)? {
                pull(store, &c.image, &name, registries, first)?;
            }
            store.resolve(&name).map_err(|source| ImageError::Resolve {
                name: name.clone(),
                source: Box::new(source),
            })?
        }
    };
    drop(one);
    for u in &resolved.unpacked {
        info!(
            "images: {name}: unpacked layer {} ({} bytes) in {} ms",
            u.digest, u.bytes, u.ms
        );
        for note in u.skip_notes() {
            info!("images: {name}: {note}");
        }
    }
    let cfg = resolved.config.config.unwrap_or_default();
    let user = cfg
        .user
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(keel_types::UserSpec::try_from)
        .transpose()
        .map_err(|source| ImageError::Config {
            name: name.clone(),
            field: "User",
            source,
        })?;
    let stop_signal = cfg
        .stop_signal
        .as_deref()
        .map(keel_types::Signal::stop)
        .transpose()
        .map_err(|source| ImageError::Config {
            name: name.clone(),
            field: "StopSignal",
            source,
        })?;
    let mut layers = resolved.layer_dirs;
    // overlayfs lists the top layer first.
    layers.reverse();
    Ok(ImageRoot {
        layers,
        entrypoint: cfg.entrypoint.unwrap_or_default(),
        cmd: cfg.cmd.unwrap_or_default(),
        env: cfg.env.unwrap_or_default(),
        workdir: cfg.working_dir,
        user,
        stop_signal,
    })
}

/// keel's cgroup for containers, with the controllers they use, and their
/// memory together capped so that they cannot starve the node. A failure is
/// logged; each container's start then fails on its own cgroup, naming it.
fn prepare_group(root: &Path, group: &Path) {
    if let Err(e) = keel_containers::cgroup::prepare_root(root) {
        error!("containers: {e}: their starts will fail");
        return;
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total = keel_boot::procfs::meminfo(&meminfo).total_kb * 1024;
    if total == 0 {
        warn!("containers: /proc/meminfo has no MemTotal: their memory together is not capped");
        return;
    }
    match keel_containers::cgroup::cap_group(group, total) {
        Ok(cap) => info!(
            "containers: together at most {} MiB of {} MiB (the rest is kept for keel, the KV and the kernel)",
            cap >> 20,
            total >> 20
        ),
        Err(e) => warn!("containers: cannot cap their memory together: {e}"),
    }
}

pub fn start_containers(ctx: &mut Ctx) -> Result<(), TaskError> {
    let containers = std::mem::take(&mut ctx.config.containers);
    let registries = pull_settings(
        &std::mem::take(&mut ctx.config.registries),
        Path::new(CA_BUNDLE),
        Path::new("/"),
    );
    let Some(services) = &ctx.services else {
        return Ok(());
    };
    let io = |op: &'static str, path: &str| {
        let path = PathBuf::from(path);
        move |source| TaskError::Io { op, path, source }
    };
    let cgroup_root = Path::new("/sys/fs/cgroup");
    let cg = cgroup_root.join(keel_containers::cgroup::GROUP);
    let store =
        keel_oci::Store::open(Path::new(STORE)).map_err(|source| TaskError::ImageStore {
            path: STORE,
            source,
        })?;
    std::fs::create_dir_all(LOGS).map_err(io("create", LOGS))?;
    let mut dirs = Dirs::node();
    dirs.cgroup = cg.clone();
    let store = Arc::new(store);
    let gc_store = store.clone();
    let (gate, gate_rx) = tokio::sync::watch::channel(false);
    let images = move |c: &Container| {
        image_root(&store, Path::new(SYSTEM_IMAGES), &registries, c).map_err(Into::into)
    };
    let settings = SupervisorSettings {
        dirs,
        logs: LOGS.into(),
        images: Arc::new(images),
        confiner: Some(Arc::new(crate::confine::confiner)),
        start_gate: Some(gate_rx),
        // Set up when the first bridge container starts.
        bridge: Some(Arc::new(keel_containers::runtime::BridgeNet::new(
            keel_containers::bridge::BridgeConfig {
                kv_port: ctx.kv_client_port,
                ..Default::default()
            },
            "/proc".into(),
            "/var/lib/keel".into(),
            "/etc/resolv.conf".into(),
        ))),
    };
    let n = containers.len();
    if let Ok(mut a) = ctx.node.announces.lock() {
        *a = crate::announce::wanted(&containers);
    }
    let _enter = services.enter();
    tokio::spawn(crate::announce::run(ctx.node.clone()));
    let sup = Supervisor::start(settings, containers, ctx.node.exits.clone());
    if ctx.node.containers.set(sup).is_err() {
        warn!("containers: the supervisor was already started");
    }
    // Off the boot path, on the blocking pool, before the gate opens for
    // the starts: the containers' cgroup (its controllers and the cap on
    // their memory together), then collect what no image refers to (an
    // interrupted pull, a removed image): the store sees no import while it
    // is collected.
    tokio::spawn(async move {
        let collected = tokio::task::spawn_blocking(move || {
            prepare_group(cgroup_root, &cg);
            gc_store.gc()
        })
        .await;
        match collected {
            Ok(Ok(r))
                if !(r.blobs.is_empty() && r.layers.is_empty() && r.temporaries.is_empty()) =>
            {
                info!(
                    "images: collected {} blobs, {} unpacked layers, {} temporary files",
                    r.blobs.len(),
                    r.layers.len(),
                    r.temporaries.len()
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!("images: garbage collection: {e}"),
            Err(e) => warn!("images: garbage collection: {e}"),
        }
        let _ = gate.send(true);
        if n > 0 {
            info!("containers: supervising {n}");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use keel_config::model::{Container, Registries, Registry, RegistryAuth};
    use keel_types::ImageRef;

    #[test]
    fn a_missing_image_is_pulled_and_the_failure_said() {
        let t = tempfile::tempdir().unwrap();
        let store = keel_oci::Store::open(&t.path().join("store")).unwrap();
        let registries = Registries {
            insecure: vec![Registry::try_from("127.0.0.1:1").unwrap()],
            auth: vec![RegistryAuth {
                registry: Registry::try_from("127.0.0.1:1").unwrap(),
                username: "u".into(),
                password: "p".into(),
            }],
        };
        let settings = super::pull_settings(&registries, Path::new("/ca.pem"), t.path());
        assert_eq!(settings.auth[0].username, "u");
        let c = Container::new("app", ImageRef::try_from("127.0.0.1:1/app").unwrap());
        let e = super::image_root(&store, &t.path().join("none"), &settings, &c)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("image 127.0.0.1:1/app:latest: not in the store"),
            "{e}"
        );
        assert!(
            e.contains("nor among the system images, and pull 127.0.0.1:1/app:latest: connect to 127.0.0.1:1"),
            "{e}"
        );
    }
}
