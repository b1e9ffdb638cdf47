//! Mounts, chroot and filesystem identification.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
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

/// `struct open_how` of openat2 (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `open_tree`'s flag, which libc does not name.
const OPEN_TREE_CLONE: libc::c_uint = 1;

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SysError {
    let path = path.to_path_buf();
    move |source| SysError::Io { op, path, source }
}

/// Open `rel` beneath the directory `dir` as an `O_PATH` descriptor, with
/// `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`:
/// no component may be a symbolic link (the last one included) and none
/// may lead out of `dir` (`..` above it, an absolute path). ELOOP means a
/// link was met, EXDEV that the path would leave `dir`.
pub fn open_beneath(dir: BorrowedFd<'_>, rel: &Path) -> std::io::Result<OwnedFd> {
    openat2_path(
        dir,
        rel,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// Open `path` as an `O_PATH` descriptor with `root` standing for `/`
/// (`openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`), as if the calling
/// process were chrooted there: symbolic links are followed, the last one
/// included, but an absolute link starts again at `root` and `..` stops at
/// it, so what is found is always under `root` (a container's root: its
/// image's links mean what they mean inside the container).
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path) -> std::io::Result<OwnedFd> {
    openat2_path(
        root,
        path,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// `openat2(dir, path, O_PATH | O_CLOEXEC, resolve)`.
fn openat2_path(dir: BorrowedFd<'_>, path: &Path, resolve: u64) -> std::io::Result<OwnedFd> {
    let name = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    // SAFETY: openat2 reads the NUL-terminated `name` and the `how` of the
    // size passed, both alive for the call; it returns a new descriptor
    // that nothing else owns, or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            name.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openat2 succeeded: `fd` is a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// [`open_beneath`], creating the missing directories of `rel` on the way
/// (mode 0755), each created and then opened beneath its parent's
/// descriptor: a link planted on the way is never followed, even one that
/// appears between a `mkdirat` and the next open.
pub fn open_or_create_beneath(dir: BorrowedFd<'_>, rel: &Path) -> std::io::Result<OwnedFd> {
    let mut cur: Option<OwnedFd> = None;
    for comp in rel.components() {
        let std::path::Component::Normal(name) = comp else {
            return Err(std::io::Error::from_raw_os_error(libc::EXDEV));
        };
        let parent = cur.as_ref().map_or(dir, |f| f.as_fd());
        let next = match open_beneath(parent, Path::new(name)) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                match nix::sys::stat::mkdirat(
                    Some(parent.as_raw_fd()),
                    name,
                    nix::sys::stat::Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(nix::Error::EEXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                open_beneath(parent, Path::new(name))?
            }
            r => r?,
        };
        cur = Some(next);
    }
    match cur {
        Some(f) => Ok(f),
        None => Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
    }
}

/// A detached copy of the mount tree at `fd` (`open_tree(OPEN_TREE_CLONE |
/// AT_RECURSIVE)`, like a recursive bind not attached anywhere yet): what
/// `fd` is, not what a path names later. A container's child attaches it
/// with `move_mount` ([`crate::spawn::MountKind::Tree`]).
pub fn clone_tree(fd: BorrowedFd<'_>, what: &Path) -> Result<OwnedFd, SysError> {
    let flags = OPEN_TREE_CLONE
        | libc::O_CLOEXEC as libc::c_uint
        | libc::AT_EMPTY_PATH as libc::c_uint
        | libc::AT_RECURSIVE as libc::c_uint;
    // SAFETY: open_tree reads the empty NUL-terminated path; it returns a
    // new descriptor that nothing else owns, or -1.
    let t = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    if t < 0 {
        return Err(io_err("open_tree (clone)", what)(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: open_tree succeeded: `t` is a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(t as RawFd) })
}
