//! The child's mount plan: what a container sees at /proc, /dev, /sys and
//! its own mounts, as data for `keel_sys::spawn` to carry out.
//!
//! Every target is a host path under the container root (the child mounts
//! before its root changes), so a symbolic link on the way would be
//! followed by the kernel *on the host* (an image shipping `/proc -> /`
//! would otherwise get the host's root mounted over). The parent settles
//! each target first, while the root is not yet reachable by any process
//! (so nothing can race it):
//!
//! - keel's own targets (/proc, /dev, /sys, the bridge's /etc files):
//!   [`inside`] refuses any link on the way;
//! - the container's own mounts (`mounts:`): [`resolve_target`] resolves
//!   the target *inside the root*, as Docker does, with
//!   `openat2(RESOLVE_IN_ROOT)`: an image's link means what it means in the
//!   container (`/etc/nginx/sites-enabled/default` ->
//!   `/etc/nginx/sites-available/default`), an absolute link or `..`
//!   never leaves the root, and a missing target (or what a dangling link
//!   names) is created under its resolved parent's descriptor. The child
//!   gets the canonical host path of what was found, which has no link.
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
    #[error("mount target {target}: {why}")]
    Resolve { target: String, why: String },
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

/// How many symbolic links [`resolve_target`] follows at most while it
/// creates what a dangling one names (the kernel's own limit is 40).
const MAX_LINKS: usize = 40;

/// The host path of what the container path `target` names inside `root`
/// (see the module's doc): links followed as the container would follow
/// them, never out of `root`. When the target is missing, it is created (a
/// file when `file`, else a directory, and its missing parents as
/// directories), each under its parent's descriptor; a dangling link is
/// followed to what it names, which is created the same way.
pub fn resolve_target(root: &Path, target: &str, file: bool) -> Result<PathBuf, PlanError> {
    use std::os::unix::fs::OpenOptionsExt;
    let bad = |why: String| PlanError::Resolve {
        target: target.to_string(),
        why,
    };
    if !target.starts_with('/') {
        return Err(bad("not an absolute path".into()));
    }
    // As written, a target is a normal path (the image's links may have
    // `..`; they are resolved, and stop at the root).
    if Path::new(target)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Err(bad("contains ..".into()));
    }
    let root_fd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(root)
        .map_err(|e| bad(format!("open the root {}: {e}", root.display())))?;
    let host_root = fd_path(&root_fd).map_err(|e| bad(format!("the root's path: {e}")))?;
    let mut path = PathBuf::from(target);
    for _ in 0..=MAX_LINKS {
        match walk(root_fd.as_fd(), &path, file).map_err(|e| bad(e.to_string()))? {
            Walk::Found(fd) => {
                let host = fd_path(&fd).map_err(|e| bad(format!("its path: {e}")))?;
                return match host.strip_prefix(&host_root) {
                    Ok(rel) if rel.as_os_str().is_empty() => {
                        Err(bad("is the container's root".into()))
                    }
                    Ok(_) => Ok(host),
                    // openat2 does not let it happen: refuse rather than trust.
                    Err(_) => Err(bad(format!(
                        "resolves out of the root, to {}",
                        host.display()
                    ))),
                };
            }
            Walk::Dangling(next) => path = next,
        }
    }
    Err(bad(format!(
        "more than {MAX_LINKS} symbolic links to follow"
    )))
}

/// What one walk of a target found.
enum Walk {
    /// The target, opened `O_PATH`.
    Found(OwnedFd),
    /// A dangling link on the way: the path to walk again, the link's
    /// value in place of the link.
    Dangling(PathBuf),
}

/// Open each prefix of `path` in `root` (`RESOLVE_IN_ROOT`); create a
/// missing one under the descriptor of the prefix before it, or return
/// the path through a dangling link.
fn walk(root: std::os::fd::BorrowedFd<'_>, path: &Path, file: bool) -> std::io::Result<Walk> {
    let comps: Vec<Component> = path.components().collect();
    let mut parent: Option<OwnedFd> = None;
    for i in 0..comps.len() {
        let prefix: PathBuf = comps[..=i].iter().collect();
        match keel_sys::fs::open_in_root(root, &prefix) {
            Ok(fd) => {
                parent = Some(fd);
                continue;
            }
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
            Err(e) => {
                let Component::Normal(name) = comps[i] else {
                    return Err(e);
                };
                let dir = parent.as_ref().map_or(root, |p| p.as_fd()).as_raw_fd();
                match nix::fcntl::readlinkat(Some(dir), name) {
                    Ok(link) => {
                        // Relative: from the link's directory (`..` taken
                        // there by the kernel, after the links before it).
                        let mut next: PathBuf = comps[..i].iter().collect();
                        next.push(link);
                        next.extend(&comps[i + 1..]);
                        return Ok(Walk::Dangling(next));
                    }
                    Err(nix::Error::ENOENT) => {}
                    Err(e) => return Err(e.into()),
                }
                let mode = nix::sys::stat::Mode::from_bits_truncate(0o755);
                if file && i == comps.len() - 1 {
                    use nix::fcntl::OFlag;
                    let fd = nix::fcntl::openat(
                        Some(dir),
                        name,
                        OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_WRONLY
                            | OFlag::O_CLOEXEC,
                        nix::sys::stat::Mode::from_bits_truncate(0o644),
                    )?;
                    nix::unistd::close(fd)?;
                } else {
                    nix::sys::stat::mkdirat(Some(dir), name, mode)?;
                }
                parent = Some(keel_sys::fs::open_in_root(root, &prefix)?);
            }
        }
    }
    parent
        .map(Walk::Found)
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))
}

/// The host path of an open descriptor, as the kernel names it.
fn fd_path(fd: &impl AsRawFd) -> std::io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
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
                    resolve_target(root, target, b.file)?,
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
                    resolve_target(root, target, false)?,
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
    fn symlinked_targets_of_keel_are_refused() {
        let t = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/", t.path().join("proc")).unwrap();
        let e = plan(t.path(), &[], &[], None).unwrap_err();
        assert!(e.to_string().contains("/proc"), "{e}");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        // Control: a directory there.
        std::fs::remove_file(t.path().join("proc")).unwrap();
        plan(t.path(), &[], &[], None).unwrap();
    }

    fn tmpfs(target: &str) -> MountSpec {
        MountSpec::Tmpfs {
            target: target.into(),
            size: 0,
        }
    }

    /// The target of the container's last mount in the plan, under the
    /// root (canonical, as the child gets it).
    fn planned(root: &Path, m: MountSpec) -> Result<String, PlanError> {
        let ops = plan(root, &[m], &[], None)?;
        let canon = std::fs::canonicalize(root).unwrap();
        let t = ops
            .iter()
            .rev()
            .find(|o| {
                o.fstype.as_deref() == Some(c"tmpfs") && o.data.as_deref() == Some(c"mode=1777")
            })
            .unwrap()
            .target
            .to_str()
            .unwrap()
            .to_string();
        Ok(t.strip_prefix(canon.to_str().unwrap()).unwrap().to_string())
    }

    /// The container's own targets are resolved inside its root, as Docker
    /// does: links mean what they mean in the container and never lead
    /// out; what is missing is created inside the root.
    #[test]
    fn targets_resolve_inside_the_root() {
        use std::os::unix::fs::symlink;
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(root.join("etc/nginx/sites-available")).unwrap();
        std::fs::create_dir_all(root.join("etc/nginx/sites-enabled")).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "host").unwrap();
        std::fs::write(root.join("etc/nginx/sites-available/default"), "image").unwrap();
        // Debian's nginx: a relative link to a file of the image.
        symlink(
            "../sites-available/default",
            root.join("etc/nginx/sites-enabled/default"),
        )
        .unwrap();
        let r = resolve_target(&root, "/etc/nginx/sites-enabled/default", true).unwrap();
        assert_eq!(
            r,
            std::fs::canonicalize(root.join("etc/nginx/sites-available/default")).unwrap()
        );
        // A directory link on the way (the old refusal's case).
        symlink("/etc", root.join("data/x")).unwrap();
        assert_eq!(planned(&root, tmpfs("/data/x/y")).unwrap(), "/etc/y");
        assert!(root.join("etc/y").is_dir());

        // Links that point "outside": an absolute one to the host's file,
        // and one with more `..` than there are levels. Both stay in the
        // root: what they name there is created, the host's file is not
        // touched, and nothing is planned on it.
        let host_secret = outside.join("secret");
        symlink(&host_secret, root.join("etc/abs")).unwrap();
        symlink(
            "../../../../../../../../outside/secret",
            root.join("etc/nginx/up"),
        )
        .unwrap();
        symlink("/", root.join("etc/slash")).unwrap();
        symlink("../../../..", root.join("etc/above")).unwrap();
        let canon_root = std::fs::canonicalize(&root).unwrap();
        let abs = resolve_target(&root, "/etc/abs", true).unwrap();
        assert_eq!(abs, canon_root.join(host_secret.strip_prefix("/").unwrap()));
        assert!(abs.is_file());
        let up = resolve_target(&root, "/etc/nginx/up", true).unwrap();
        assert_eq!(up, canon_root.join("outside/secret"));
        assert!(up.is_file());
        assert_eq!(std::fs::read_to_string(&host_secret).unwrap(), "host");
        // A link to the root itself is no target, nor one with `..` above
        // the root, which is the root too.
        for target in ["/etc/slash", "/etc/above"] {
            let e = resolve_target(&root, target, false)
                .unwrap_err()
                .to_string();
            assert!(e.contains("is the container's root"), "{target}: {e}");
        }
        // Controls: a missing target is created (with its parents), a
        // file as a file; an existing directory is itself.
        assert_eq!(planned(&root, tmpfs("/new/dir")).unwrap(), "/new/dir");
        assert!(root.join("new/dir").is_dir());
        let f = resolve_target(&root, "/new/file.conf", true).unwrap();
        assert!(f.is_file() && f.starts_with(&canon_root));
        assert_eq!(planned(&root, tmpfs("/data")).unwrap(), "/data");
        // A dangling link: what it names is created, inside the root.
        symlink("/srv/www/missing", root.join("etc/dangling")).unwrap();
        let d = resolve_target(&root, "/etc/dangling", false).unwrap();
        assert_eq!(d, canon_root.join("srv/www/missing"));
        assert!(d.is_dir());
        // A loop of links is refused, not followed forever.
        symlink("/loop/b", root.join("loop-a")).unwrap();
        std::fs::create_dir_all(root.join("loop")).unwrap();
        symlink("/loop-a", root.join("loop/b")).unwrap();
        let e = resolve_target(&root, "/loop-a", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/loop-a"), "{e}");
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
