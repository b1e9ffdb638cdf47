//! Mounts, chroot and filesystem identification.

use std::path::Path;

pub use nix::mount::MsFlags as MountFlags;
use nix::mount::{MntFlags, MsFlags};

use crate::SysError;

/// `mount(2)` of a filesystem of type `fstype` on `target`.
pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), SysError> {
    nix::mount::mount(Some(source), target, Some(fstype), flags, data).map_err(|source| {
        SysError::Mount {
            fstype: fstype.to_string(),
            target: target.to_path_buf(),
            source,
        }
    })
}

/// Move the mount at `from` to `to` (`MS_MOVE`).
pub fn move_mount(from: &Path, to: &Path) -> Result<(), SysError> {
    nix::mount::mount(Some(from), to, None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(
        |source| SysError::MoveMount {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            source,
        },
    )
}

/// Unmount `target`; `lazy` detaches it even when busy (`MNT_DETACH`).
pub fn unmount(target: &Path, lazy: bool) -> Result<(), SysError> {
    let flags = if lazy {
        MntFlags::MNT_DETACH
    } else {
        MntFlags::empty()
    };
    nix::mount::umount2(target, flags).map_err(|source| SysError::Unmount {
        target: target.to_path_buf(),
        source,
    })
}

/// Freeze the filesystem mounted on `target` (`FIFREEZE`): the kernel
/// writes out its dirty data, flushes its journal and marks it clean on the
/// disk, and every later write to it blocks. Filesystems that cannot be
/// frozen (tmpfs, proc, EROFS, ...) give EOPNOTSUPP.
pub fn freeze(target: &Path) -> Result<(), SysError> {
    use std::os::fd::AsRawFd;
    // FIFREEZE = _IOWR('X', 119, int)
    const FIFREEZE: libc::c_ulong = 0xC004_5877;
    let dir = std::fs::File::open(target).map_err(|source| SysError::Io {
        op: "open",
        path: target.to_path_buf(),
        source,
    })?;
    // SAFETY: FIFREEZE takes no argument (the int is ignored); the
    // descriptor is open for the whole call.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), FIFREEZE, 0) };
    if rc < 0 {
        return Err(SysError::Freeze {
            target: target.to_path_buf(),
            source: nix::Error::last(),
        });
    }
    Ok(())
}

/// `chroot(2)` into `path` (the caller chdirs into it first).
pub fn chroot(path: &Path) -> Result<(), SysError> {
    nix::unistd::chroot(path).map_err(|source| SysError::Chroot {
        path: path.to_path_buf(),
        source,
    })
}

/// The filesystem magic of the filesystem holding `path` (`statfs(2)` f_type).
pub fn fs_magic(path: &Path) -> Result<i64, SysError> {
    let st = nix::sys::statfs::statfs(path).map_err(|source| SysError::Statfs {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(st.filesystem_type().0 as i64)
}

/// The device number of the filesystem holding `path`, to tell mount points apart.
pub fn dev_of(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::symlink_metadata(path)?.dev())
}

/// `statfs` magic of ramfs (the initramfs rootfs without tmpfs).
pub const RAMFS_MAGIC: i64 = 0x8584_58f6;
/// `statfs` magic of tmpfs (the initramfs rootfs when the kernel has tmpfs).
pub const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Flush every filesystem's dirty data (`sync(2)`).
pub fn sync() {
    nix::unistd::sync();
}
