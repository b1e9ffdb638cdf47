//! Leaving the initramfs.
//!
//! The initramfs `rootfs` cannot be `pivot_root`ed away, which containers need
//! later. In diskless mode keel therefore:
//! 1. mounts a tmpfs at a new root;
//! 2. copies the initramfs tree into it, deleting each file from the rootfs
//!    once copied (the memory is freed as it goes, the peak stays small) and
//!    skipping mount points (they are on other devices) and keel's own binary:
//!    PID 1 runs from the rootfs pages already (a copy would double them and
//!    cost ~16 ms of memcpy under TCG), and outside the new root nothing
//!    running there, containers included, can reach or overwrite it. It stays
//!    reachable as /proc/1/exe;
//! 3. moves the early mounts (/proc, /sys, /dev, /run, /tmp) under the new root;
//! 4. moves the new root onto `/`, chroots into it and chdirs to `/`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use keel_sys::fs::MountFlags;

#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("copy {path} to the new root: {source}")]
    Copy {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("enter the new root {path}: {source}")]
    Chdir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Sys(#[from] keel_sys::SysError),
}

/// True when a `statfs` magic of `/` says it is the initramfs: the kernel's
/// rootfs is a tmpfs (ramfs without CONFIG_TMPFS). A root mounted from a disk
/// is not. (util-linux `switch_root` checks the same way.)
pub fn is_initramfs_magic(magic: i64) -> bool {
    is_memory_fs(magic)
}

/// True for a filesystem that lives in memory (tmpfs, ramfs): nothing on it
/// survives a reboot, so fsync there buys nothing.
pub fn is_memory_fs(magic: i64) -> bool {
    magic == keel_sys::fs::RAMFS_MAGIC || magic == keel_sys::fs::TMPFS_MAGIC
}

/// What was copied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    pub bytes: u64,
}

fn copy_err(path: &Path) -> impl FnOnce(std::io::Error) -> SwitchError + '_ {
    move |source| SwitchError::Copy {
        path: path.to_path_buf(),
        source,
    }
}

/// Copy the tree at `src` into `dst` (which exists), staying on `src`'s device
/// and skipping the paths in `exclude`. With `delete`, each copied file is removed from
/// `src`. Regular files, directories and symlinks are copied with their mode
/// and owner; device nodes and fifos are left (devtmpfs provides /dev).
pub fn copy_tree(
    src: &Path,
    dst: &Path,
    exclude: &[&Path],
    delete: bool,
) -> Result<CopyStats, SwitchError> {
    let dev = std::fs::symlink_metadata(src).map_err(copy_err(src))?.dev();
    let mut stats = CopyStats::default();
    copy_dir(src, dst, exclude, dev, delete, &mut stats)?;
    Ok(stats)
}

/// Give `to` the owner of `md`. PID 1 creates files as root, so root-owned
/// entries (nearly all) need no call: each distinct syscall is a cold kernel
/// path under TCG.
fn own(to: &Path, md: &std::fs::Metadata) -> Result<(), SwitchError> {
    if md.uid() == 0 && md.gid() == 0 {
        return Ok(());
    }
    std::os::unix::fs::lchown(to, Some(md.uid()), Some(md.gid())).map_err(copy_err(to))
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    exclude: &[&Path],
    dev: u64,
    delete: bool,
    st: &mut CopyStats,
) -> Result<(), SwitchError> {
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .map_err(copy_err(src))?
        .collect::<Result<_, _>>()
        .map_err(copy_err(src))?;
    entries.sort_unstable_by_key(|e| e.file_name());
    for e in entries {
        let from = e.path();
        if exclude.contains(&from.as_path()) {
            continue;
        }
        let to = dst.join(e.file_name());
        let md = std::fs::symlink_metadata(&from).map_err(copy_err(&from))?;
        let ft = md.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&to).map_err(copy_err(&to))?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(md.mode() & 0o7777))
                .map_err(copy_err(&to))?;
            own(&to, &md)?;
            // A mount point: keep the empty directory, do not descend.
            if md.dev() != dev {
                continue;
            }
            copy_dir(&from, &to, exclude, dev, delete, st)?;
            if delete {
                let _ = std::fs::remove_dir(&from);
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&from).map_err(copy_err(&from))?;
            std::os::unix::fs::symlink(&target, &to).map_err(copy_err(&to))?;
            own(&to, &md)?;
            st.files += 1;
            if delete {
                let _ = std::fs::remove_file(&from);
            }
        } else if ft.is_file() {
            // read + write, not fs::copy: between two tmpfs instances
            // copy_file_range fails (EXDEV) and std falls back to sendfile,
            // each a cold kernel path under TCG, for a few small files.
            let data = std::fs::read(&from).map_err(copy_err(&from))?;
            std::fs::write(&to, &data).map_err(copy_err(&to))?;
            st.bytes += data.len() as u64;
            own(&to, &md)?;
            // chown clears setuid bits: set the mode after it.
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(md.mode() & 0o7777))
                .map_err(copy_err(&to))?;
            st.files += 1;
            if delete {
                let _ = std::fs::remove_file(&from);
            }
        }
    }
    Ok(())
}

/// Switch from the initramfs to a tmpfs copy of it. `moves` are the mount
/// points (absolute) to carry over; `keep_out` are files not to copy (keel's
/// own binary). Call with `/` as the current root.
pub fn leave_initramfs(
    new_root: &Path,
    moves: &[&str],
    keep_out: &[&Path],
) -> Result<CopyStats, SwitchError> {
    let root = Path::new("/");
    std::fs::create_dir_all(new_root).map_err(copy_err(new_root))?;
    keel_sys::fs::mount(
        "root",
        new_root,
        "tmpfs",
        MountFlags::empty(),
        Some("mode=0755"),
    )?;
    let mut exclude = vec![new_root];
    exclude.extend_from_slice(keep_out);
    let stats = copy_tree(root, new_root, &exclude, true)?;
    // The copy skipped the mount points' contents; make sure each exists.
    for m in moves {
        let to = crate::mounts::under(new_root, m);
        std::fs::create_dir_all(&to).map_err(copy_err(&to))?;
    }
    enter_root(new_root, moves)?;
    Ok(stats)
}

/// Switch from the initramfs to the root already mounted at `new_root`
/// (the verified root): move the early mounts `moves` under the new root,
/// move the new root onto `/` and chroot into it.
///
/// The initramfs files are left where they are, out of reach under the new
/// root: what they hold is keel's own binary and the diskless slot, both in
/// use (the running program, the loop device under the root), so deleting
/// them would free nothing and cost a cold kernel path per file.
pub fn enter_root(new_root: &Path, moves: &[&str]) -> Result<(), SwitchError> {
    let root = Path::new("/");
    for m in moves {
        let to = crate::mounts::under(new_root, m);
        keel_sys::fs::move_mount(Path::new(m), &to)?;
    }
    std::env::set_current_dir(new_root).map_err(|source| SwitchError::Chdir {
        path: new_root.to_path_buf(),
        source,
    })?;
    keel_sys::fs::move_mount(Path::new("."), root)?;
    keel_sys::fs::chroot(Path::new("."))?;
    std::env::set_current_dir(root).map_err(|source| SwitchError::Chdir {
        path: root.to_path_buf(),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_non_root_owners_when_privileged() {
        if !keel_testkit::need_root() {
            return;
        }
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("home")).unwrap();
        std::fs::write(src.path().join("home/f"), b"x").unwrap();
        std::os::unix::fs::lchown(src.path().join("home"), Some(1000), Some(1001)).unwrap();
        std::os::unix::fs::lchown(src.path().join("home/f"), Some(1002), Some(1003)).unwrap();
        copy_tree(src.path(), dst.path(), &[], false).unwrap();
        let d = std::fs::metadata(dst.path().join("home")).unwrap();
        let f = std::fs::metadata(dst.path().join("home/f")).unwrap();
        assert_eq!((d.uid(), d.gid()), (1000, 1001));
        assert_eq!((f.uid(), f.gid()), (1002, 1003));
    }

    #[test]
    fn initramfs_magics() {
        assert!(is_initramfs_magic(keel_sys::fs::TMPFS_MAGIC));
        assert!(is_initramfs_magic(keel_sys::fs::RAMFS_MAGIC));
        assert!(!is_initramfs_magic(0xEF53)); // ext4
        assert!(!is_initramfs_magic(0xE0F5_E1E2)); // EROFS
    }

    #[test]
    fn copies_tree_with_modes_and_links_and_deletes_source() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let s = src.path();
        std::fs::create_dir_all(s.join("usr/bin")).unwrap();
        std::fs::write(s.join("init"), b"binary").unwrap();
        std::fs::set_permissions(s.join("init"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(s.join("usr/bin/tool"), b"x").unwrap();
        std::os::unix::fs::symlink("../init", s.join("usr/init-link")).unwrap();
        std::fs::create_dir(s.join("skipme")).unwrap();
        std::fs::write(s.join("skipme/f"), b"no").unwrap();

        std::fs::write(s.join("keel"), b"pid1").unwrap();
        let stats = copy_tree(s, dst.path(), &[&s.join("skipme"), &s.join("keel")], true).unwrap();
        assert_eq!(stats, CopyStats { files: 3, bytes: 7 });
        assert!(!dst.path().join("keel").exists());
        assert!(s.join("keel").exists());
        let d = dst.path();
        assert_eq!(std::fs::read(d.join("init")).unwrap(), b"binary");
        assert_eq!(
            std::fs::metadata(d.join("init")).unwrap().mode() & 0o777,
            0o755
        );
        assert_eq!(
            std::fs::read_link(d.join("usr/init-link")).unwrap(),
            Path::new("../init")
        );
        assert!(!d.join("skipme").exists());
        // Source emptied except what was excluded.
        assert!(!s.join("init").exists());
        assert!(!s.join("usr").exists());
        assert!(s.join("skipme/f").exists());
    }
}
