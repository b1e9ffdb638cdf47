//! The early mount table, as data.
//!
//! Mounted in order under a root given as a parameter (`/` on a node, a temp
//! dir in privileged tests). Parents come before children.

use std::path::{Path, PathBuf};

use keel_sys::fs::MountFlags;

/// One entry of a mount table.
#[derive(Debug, Clone, Copy)]
pub struct MountSpec {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MountFlags,
    pub data: Option<&'static str>,
}

const NOSUID_NODEV_NOEXEC: MountFlags = MountFlags::MS_NOSUID
    .union(MountFlags::MS_NODEV)
    .union(MountFlags::MS_NOEXEC);
const NOSUID_NODEV: MountFlags = MountFlags::MS_NOSUID.union(MountFlags::MS_NODEV);

/// What PID 1 mounts before anything else.
pub const EARLY: &[MountSpec] = &[
    MountSpec {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    MountSpec {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    // Device nodes without udev: the kernel creates them in devtmpfs.
    MountSpec {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MountFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    MountSpec {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MountFlags::MS_NOSUID.union(MountFlags::MS_NOEXEC),
        data: Some("gid=5,mode=0620,ptmxmode=0666"),
    },
    MountSpec {
        source: "shm",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=1777"),
    },
    MountSpec {
        source: "run",
        target: "/run",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=0755"),
    },
    MountSpec {
        source: "tmp",
        target: "/tmp",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=1777"),
    },
    // cgroup v2 only. nsdelegate makes cgroup namespaces delegation boundaries.
    MountSpec {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("nsdelegate"),
    },
];

/// A mount of the table that failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("create mount point {path}: {source}")]
    MountPoint {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Mount(#[from] keel_sys::SysError),
}

/// `root` joined with an absolute `target`.
pub fn under(root: &Path, target: &str) -> PathBuf {
    root.join(target.trim_start_matches('/'))
}

/// Mount every entry of `table` under `root`, creating mount points.
pub fn mount_all(root: &Path, table: &[MountSpec]) -> Result<(), MountError> {
    for m in table {
        let target = under(root, m.target);
        std::fs::create_dir_all(&target).map_err(|source| MountError::MountPoint {
            path: target.clone(),
            source,
        })?;
        keel_sys::fs::mount(m.source, &target, m.fstype, m.flags, m.data)?;
    }
    Ok(())
}

/// The top-level mount points of a table (`/proc`, not `/dev/pts`): what a
/// switch of root moves; their submounts move with them.
pub fn top_level(table: &[MountSpec]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for m in table {
        if !out
            .iter()
            .any(|p| m.target.starts_with(p) && m.target[p.len()..].starts_with('/'))
        {
            out.push(m.target);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_before_children_and_targets_are_unique() {
        for (i, m) in EARLY.iter().enumerate() {
            assert!(m.target.starts_with('/'));
            for later in &EARLY[i + 1..] {
                assert_ne!(m.target, later.target);
                assert!(
                    !m.target.starts_with(&format!("{}/", later.target)),
                    "{} is mounted before its parent {}",
                    m.target,
                    later.target
                );
            }
        }
    }

    #[test]
    fn top_level_keeps_only_roots_of_subtrees() {
        assert_eq!(
            top_level(EARLY),
            vec!["/proc", "/sys", "/dev", "/run", "/tmp"]
        );
    }

    #[test]
    fn writable_mounts_are_nosuid() {
        for m in EARLY {
            assert!(m.flags.contains(MountFlags::MS_NOSUID), "{}", m.target);
        }
    }

    #[test]
    fn mounts_table_under_a_temp_root_when_privileged() {
        if !keel_testkit::need_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let table = [MountSpec {
            source: "keeltest",
            target: "/run",
            fstype: "tmpfs",
            flags: NOSUID_NODEV,
            data: Some("mode=0700"),
        }];
        mount_all(dir.path(), &table).unwrap();
        let run = dir.path().join("run");
        let magic = keel_sys::fs::fs_magic(&run).unwrap();
        keel_sys::fs::unmount(&run, false).unwrap();
        assert_eq!(magic, keel_sys::fs::TMPFS_MAGIC);
    }
}
