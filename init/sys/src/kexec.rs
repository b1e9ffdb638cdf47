//! kexec: load a kernel and initramfs and jump into them without firmware.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::SysError;

/// Load `kernel` and `initrd` (regular files) with `cmdline` for a later
/// `reboot(LINUX_REBOOT_CMD_KEXEC)` (`kexec_file_load(2)`: the kernel checks
/// and places the image itself).
pub fn load(kernel: &Path, initrd: &Path, cmdline: &str) -> Result<(), SysError> {
    let open = |p: &Path| {
        File::open(p).map_err(|source| SysError::Io {
            op: "open",
            path: p.to_path_buf(),
            source,
        })
    };
    let k = open(kernel)?;
    let i = open(initrd)?;
    let c = CString::new(cmdline).map_err(|_| SysError::Kexec {
        op: "command line",
        source: nix::Error::EINVAL,
    })?;
    let len = c.as_bytes_with_nul().len();
    // SAFETY: kexec_file_load takes two open fds, the command line's length
    // including its NUL and a pointer to it, and flags; all live for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            k.as_raw_fd(),
            i.as_raw_fd(),
            len as libc::c_ulong,
            c.as_ptr(),
            0 as libc::c_ulong,
        )
    };
    if rc < 0 {
        return Err(SysError::Kexec {
            op: "kexec_file_load",
            source: nix::Error::last(),
        });
    }
    Ok(())
}

/// Jump into the loaded kernel. Returns only on failure.
pub fn exec() -> SysError {
    // SAFETY: reboot(2) with LINUX_REBOOT_CMD_KEXEC; returns only on error.
    let rc = unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_KEXEC) };
    let _ = rc;
    SysError::Kexec {
        op: "reboot into kexec kernel",
        source: nix::Error::last(),
    }
}
