//! The child's mount plan: what a container sees at /proc, /dev, /sys and
//! its own mounts, as data for `keel_sys::spawn` to carry out.
//!
//! Every target is a host path under the container root (the child mounts
//! before its root changes). The parent checks each target first: no
//! component of it inside the root may be a symbolic link, because the
//! kernel would follow it *on the host* (an image shipping `/proc -> /`
//! would otherwise get the host's root mounted over). The root is not yet
//! reachable by any process when the check runs, so it cannot race.
//!
//! Bind sources are the other way round: they are on the node, in volume
//! directories that containers write (a volume may be shared), so a
//! checked path could be swapped for a symbolic link before the mount.
//! [`bind_trees`] resolves each source once, from a descriptor of its
//! volume root, with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, and
//! clones the mount tree of what it found (`open_tree(OPEN_TREE_CLONE)`);
//! the child attaches that clone (`move_mount`) and never looks the source
//! up by path.
//!
//! Masked and read-only paths are containerd's defaults.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use keel_config::containers::VOLUME_ROOTS;
use keel_config::model::MountSpec;
use keel_sys::spawn::{MountKind, MountOp};

/// Hidden from containers (containerd's default masked paths).
pub const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Read-only in containers (containerd's default).
pub const READ_ONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The device nodes a container gets, bound from the host's /dev.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Where a container with `init: true` finds keel's init (`keel-init`),
/// bound read-only from the node, as podman binds catatonit: on the fresh
/// /dev tmpfs, so nothing is written into the image's tree and a
/// `readonly` root needs no mount point made in it.
pub const INIT_TARGET: &str = "/dev/init";

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("mount target {target}: {why}")]
    Target { target: String, why: String },
    #[error("mount source {path}: {why}")]
    Source { path: String, why: String },
}

fn c(p: &Path) -> CString {
    // Paths here come from validated config and our own constants: no NUL.
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

fn cs(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

/// `root` joined with the absolute container path `inner`, refusing `..`
/// and any existing symlink on the way.
pub fn inside(root: &Path, inner: &str) -> Result<PathBuf, PlanError> {
    let bad = |why: &str| PlanError::Target {
        target: inner.to_string(),
        why: why.to_string(),
    };
    let p = Path::new(inner);
    if !p.is_absolute() {
        return Err(bad("not an absolute path"));
    }
    let mut out = root.to_path_buf();
    for comp in p.components() {
        match comp {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => {
                out.push(n);
                if let Ok(m) = std::fs::symlink_metadata(&out) {
                    if m.file_type().is_symlink() {
                        return Err(bad("goes through a symbolic link in the image"));
                    }
                }
            }
            _ => return Err(bad("contains ..")),
        }
    }
    Ok(out)
}

fn op(
    kind: MountKind,
    source: Option<&str>,
    target: PathBuf,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> MountOp {
    MountOp {
        kind,
        source: source.map(cs),
        target: c(&target),
        fstype: fstype.map(cs),
        flags,
        data: data.map(cs),
    }
}

/// A read-only bind of the node's file `source` at `target` in the root
/// (the bridge's /etc/resolv.conf and /etc/hosts).
pub fn bind_file(root: &Path, source: &Path, target: &str) -> Result<MountOp, PlanError> {
    Ok(MountOp {
        kind: MountKind::Bind { file: true },
        source: Some(c(source)),
        target: c(&inside(root, target)?),
        fstype: None,
        flags: libc::MS_RDONLY,
        data: None,
    })
}

/// A bind source resolved by [`bind_trees`]: a detached clone of its mount
/// tree, and whether it is a file (the mount point is then a file).
#[derive(Debug)]
pub struct BindTree {
    pub tree: OwnedFd,
    pub file: bool,
}

/// Resolve the bind sources of `user`, in order: each beneath its volume
/// root (one of the config's [`VOLUME_ROOTS`], found under `source_root`:
/// `/` on a node), without following a symbolic link, the missing
/// directories created on the way (as `docker run -v` does), then cloned
/// (see the module's doc).
pub fn bind_trees(user: &[MountSpec], source_root: &Path) -> Result<Vec<BindTree>, PlanError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = Vec::new();
    for m in user {
        let MountSpec::Bind { source, .. } = m else {
            continue;
        };
        let bad = |why: String| PlanError::Source {
            path: source.clone(),
            why,
        };
        let (prefix, rel) = VOLUME_ROOTS
            .iter()
            .find_map(|r| source.strip_prefix(r).map(|rel| (*r, rel)))
            .filter(|(_, rel)| !rel.is_empty())
            .ok_or_else(|| bad(format!("not under {}", VOLUME_ROOTS.join(" or "))))?;
        // The volume root itself is keel's (no container writes it).
        let root = source_root.join(prefix.trim_start_matches('/'));
        std::fs::create_dir_all(&root)
            .map_err(|e| bad(format!("create its volume root {}: {e}", root.display())))?;
        let root_fd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&root)
            .map_err(|e| bad(format!("open its volume root {}: {e}", root.display())))?;
        let fd =
            keel_sys::fs::open_or_create_beneath(root_fd.as_fd(), Path::new(rel)).map_err(|e| {
                bad(match e.raw_os_error() {
                    Some(libc::ELOOP) => {
                        "is or goes through a symbolic link, which is not followed".into()
                    }
                    Some(libc::EXDEV) => format!("leads out of {prefix}"),
                    _ => format!("resolve it beneath {prefix}: {e}"),
                })
            })?;
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| bad(format!("fstat: {e}")))?;
        let file = st.st_mode & libc::S_IFMT != libc::S_IFDIR;
        let tree = keel_sys::fs::clone_tree(fd.as_fd(), Path::new(source))
            .map_err(|e| bad(e.to_string()))?;
        out.push(BindTree { tree, file });
    }
    Ok(out)
}

/// The whole plan for a container rooted at `root`; `binds` are the bind
/// sources of `user` resolved by [`bind_trees`], in order (they must stay
/// open until the child has run the plan). `init`: the node's `keel-init`,
/// bound read-only at [`INIT_TARGET`] (`init: true`).
pub fn plan(
    root: &Path,
    user: &[MountSpec],
    binds: &[BindTree],
    init: Option<&Path>,
) -> Result<Vec<MountOp>, PlanError> {
    use libc::{MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY};
    let mut ops = Vec::new();
    ops.push(op(
        MountKind::Mount,
        Some("proc"),
        inside(root, "/proc")?,
        Some("proc"),
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        None,
    ));
    ops.push(op(
        MountKind::Mount,
        Some("tmpfs"),
        inside(root, "/dev")?,
        Some("tmpfs"),
        // nodev: the nodes bound below keep their own mounts' flags; one
        // made here with mknod opens nothing.
        MS_NOSUID | MS_NOEXEC | MS_NODEV,
        Some("mode=755,size=65536k"),
    ));
    // Below /dev is our fresh tmpfs: no image symlink can be there.
    let dev = inside(root, "/dev")?;
    for d in DEVICES {
        ops.push(op(
            MountKind::Bind { file: true },
            Some(&format!("/dev/{d}")),
            dev.join(d),
            None,
            0,
            None,
        ));
    }
    if let Some(init) = init {
        // Read-only, and executable: the bind keeps the flags of the
        // node's mount it comes from, not /dev's noexec.
        ops.push(MountOp {
            kind: MountKind::Bind { file: true },
            source: Some(c(init)),
            target: c(&dev.join(&INIT_TARGET["/dev/".len()..])),
            fstype: None,
            flags: MS_RDONLY,
            data: None,
        });
    }
    ops.push(op(
        MountKind::Mount,
        Some("devpts"),
        dev.join("pts"),
        Some("devpts"),
        MS_NOSUID | MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    ));
    ops.push(op(
        MountKind::Mount,
        Some("shm"),
        dev.join("shm"),
        Some("tmpfs"),
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    ));
    ops.push(op(
        MountKind::Mount,
        Some("mqueue"),
        dev.join("mqueue"),
        Some("mqueue"),
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        None,
    ));
    for (name, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(op(
            MountKind::Symlink,
            Some(to),
            dev.join(name),
            None,
            0,
            None,
        ));
    }
    ops.push(op(
        MountKind::Mount,
        Some("sysfs"),
        inside(root, "/sys")?,
        Some("sysfs"),
        MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
        None,
    ));
    ops.push(op(
        MountKind::Mount,
        Some("cgroup2"),
        inside(root, "/sys")?.join("fs/cgroup"),
        Some("cgroup2"),
        MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
        None,
    ));
    let mut binds = binds.iter();
    for m in user {
        match m {
            MountSpec::Bind {
                source,
                target,
                readonly,
            } => {
                let b = binds.next().ok_or_else(|| PlanError::Source {
                    path: source.clone(),
                    why: "not resolved before the plan".into(),
                })?;
                ops.push(op(
                    MountKind::Tree {
                        fd: b.tree.as_raw_fd(),
                        file: b.file,
                    },
                    None,
                    inside(root, target)?,
                    None,
                    if *readonly { MS_RDONLY } else { 0 },
                    None,
                ));
            }
            MountSpec::Tmpfs { target, size } => {
                let data = if *size > 0 {
                    format!("mode=1777,size={size}")
                } else {
                    "mode=1777".to_string()
                };
                ops.push(op(
                    MountKind::Mount,
                    Some("tmpfs"),
                    inside(root, target)?,
                    Some("tmpfs"),
                    MS_NOSUID | MS_NODEV,
                    Some(&data),
                ));
            }
        }
    }
    // /proc and /sys are fresh mounts of ours from here on.
    for m in MASKED {
        ops.push(op(MountKind::Mask, None, root.join(&m[1..]), None, 0, None));
    }
    for m in READ_ONLY {
        ops.push(op(
            MountKind::ReadOnly,
            None,
            root.join(&m[1..]),
            None,
            0,
            None,
        ));
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinked_targets_are_refused() {
        let t = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/", t.path().join("proc")).unwrap();
        let e = plan(t.path(), &[], &[], None).unwrap_err();
        assert!(e.to_string().contains("/proc"), "{e}");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        std::fs::remove_file(t.path().join("proc")).unwrap();
        std::fs::create_dir_all(t.path().join("data")).unwrap();
        std::os::unix::fs::symlink("/etc", t.path().join("data/x")).unwrap();
        let m = MountSpec::Tmpfs {
            target: "/data/x/y".into(),
            size: 0,
        };
        let e = plan(t.path(), &[m], &[], None).unwrap_err();
        assert!(e.to_string().contains("/data/x/y"), "{e}");
    }

    #[test]
    fn dotdot_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let m = MountSpec::Tmpfs {
            target: "/a/../../b".into(),
            size: 0,
        };
        assert!(plan(t.path(), &[m], &[], None).is_err());
    }

    #[test]
    fn plan_has_the_defaults_in_order() {
        let t = tempfile::tempdir().unwrap();
        let ops = plan(t.path(), &[], &[], None).unwrap();
        let targets: Vec<String> = ops
            .iter()
            .map(|o| {
                o.target
                    .to_str()
                    .unwrap()
                    .trim_start_matches(t.path().to_str().unwrap())
                    .to_string()
            })
            .collect();
        let pos = |p: &str| targets.iter().position(|t| t == p).unwrap();
        assert!(pos("/proc") < pos("/proc/kcore"));
        assert!(pos("/dev") < pos("/dev/null"));
        assert!(pos("/sys") < pos("/sys/firmware"));
        assert!(pos("/proc/sysrq-trigger") > pos("/proc"));
        assert_eq!(ops[pos("/proc/kcore")].kind, MountKind::Mask);
        assert_eq!(ops[pos("/proc/sys")].kind, MountKind::ReadOnly);
        assert!(ops[pos("/sys")].flags & libc::MS_RDONLY != 0);
    }

    /// `init: true`: keel-init bound read-only at /dev/init, on the /dev
    /// tmpfs (after it, before the container's own mounts); nothing
    /// without it.
    #[test]
    fn the_init_is_bound_on_dev() {
        let t = tempfile::tempdir().unwrap();
        let user = [MountSpec::Tmpfs {
            target: "/data".into(),
            size: 0,
        }];
        let init = Path::new("/usr/lib/keel/keel-init");
        let ops = plan(t.path(), &user, &[], Some(init)).unwrap();
        let at = |p: &str| {
            let target = t.path().join(&p[1..]);
            ops.iter()
                .position(|o| o.target.as_bytes() == target.as_os_str().as_bytes())
        };
        let i = at(INIT_TARGET).expect("an op at /dev/init");
        assert_eq!(ops[i].kind, MountKind::Bind { file: true });
        assert_eq!(ops[i].source.as_deref(), Some(c"/usr/lib/keel/keel-init"));
        assert_eq!(ops[i].flags, libc::MS_RDONLY);
        assert!(at("/dev").unwrap() < i && i < at("/data").unwrap());
        // Control: without init, no such op.
        let ops = plan(t.path(), &user, &[], None).unwrap();
        let target = t.path().join("dev/init");
        assert!(!ops
            .iter()
            .any(|o| o.target.as_bytes() == target.as_os_str().as_bytes()));
    }

    fn bind(source: &str) -> MountSpec {
        MountSpec::Bind {
            source: source.into(),
            target: "/data".into(),
            readonly: false,
        }
    }

    /// Privileged (open_tree needs CAP_SYS_ADMIN): bind sources resolved
    /// beneath a scratch tree standing for the node's `/`.
    #[test]
    fn privileged_bind_sources_follow_no_link() {
        if !keel_testkit::need_root() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let node = t.path();
        let vols = node.join("var/lib/keel/volumes");
        std::fs::create_dir_all(vols.join("ok")).unwrap();
        std::fs::write(vols.join("ok/marker"), "volume").unwrap();
        std::fs::write(vols.join("file"), "a file").unwrap();
        let outside = node.join("etc");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "host").unwrap();

        // A directory, a file, and a missing source (created).
        let b = bind_trees(
            &[
                bind("/var/lib/keel/volumes/ok"),
                bind("/var/lib/keel/volumes/file"),
                bind("/var/lib/keel/volumes/new/sub"),
                bind("/run/keel/volumes/tmp"),
            ],
            node,
        )
        .unwrap();
        assert_eq!(
            b.iter().map(|b| b.file).collect::<Vec<_>>(),
            [false, true, false, false]
        );
        assert!(vols.join("new/sub").is_dir());
        assert!(node.join("run/keel/volumes/tmp").is_dir());

        // A link anywhere on the way, last component or not, is refused,
        // and nothing is created through it.
        std::os::unix::fs::symlink(&outside, vols.join("evil")).unwrap();
        std::os::unix::fs::symlink("/", vols.join("root")).unwrap();
        for src in [
            "/var/lib/keel/volumes/evil",
            "/var/lib/keel/volumes/evil/secret",
            "/var/lib/keel/volumes/evil/made",
            "/var/lib/keel/volumes/root",
        ] {
            let e = bind_trees(&[bind(src)], node).unwrap_err().to_string();
            assert!(e.contains(src) && e.contains("symbolic link"), "{e}");
        }
        assert!(!outside.join("made").exists());
        // Not under a volume root (the rest of /run/keel included).
        let e = bind_trees(&[bind("/run/keel/api.sock")], node)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not under"), "{e}");

        // The swap: resolved, then the path is replaced by a link to the
        // node's root. What gets mounted is the clone of what was
        // resolved: the volume, with its marker, not the host's tree.
        let b = bind_trees(&[bind("/var/lib/keel/volumes/ok")], node).unwrap();
        std::fs::rename(vols.join("ok"), vols.join("ok.away")).unwrap();
        std::os::unix::fs::symlink("/", vols.join("ok")).unwrap();
        let clone = format!("/proc/self/fd/{}", b[0].tree.as_raw_fd());
        assert_eq!(
            std::fs::read_to_string(format!("{clone}/marker")).unwrap(),
            "volume"
        );
        assert!(!Path::new(&format!("{clone}/usr")).exists());
        // And a start after the swap is refused.
        let e = bind_trees(&[bind("/var/lib/keel/volumes/ok")], node)
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
    }
}
