//! Block devices: sizes, loop devices, partition resizing.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::SysError;

fn ioctl_err(op: &'static str, path: &Path) -> SysError {
    SysError::BlockIoctl {
        op,
        path: path.to_path_buf(),
        source: nix::Error::last(),
    }
}

/// `(major, minor)` of a device number (`st_rdev`, or what device-mapper
/// returns).
pub fn devno(dev: u64) -> (u32, u32) {
    (
        libc::major(dev as libc::dev_t),
        libc::minor(dev as libc::dev_t),
    )
}

/// Size of the block device (or regular file) open as `file`, in bytes.
pub fn size_bytes(file: &File, path: &Path) -> Result<u64, SysError> {
    let md = file.metadata().map_err(|e| SysError::Io {
        op: "stat",
        path: path.to_path_buf(),
        source: e,
    })?;
    if md.is_file() {
        return Ok(md.len());
    }
    let mut size: u64 = 0;
    // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    // SAFETY: BLKGETSIZE64 writes one u64 to the pointer, which points to a
    // live local of that type.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
    if rc < 0 {
        return Err(ioctl_err("BLKGETSIZE64", path));
    }
    Ok(size)
}

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// A read-only loop device over `backing`, detached automatically when its
/// last user (the device-mapper target stacked on it) closes it. Returns the
/// device's path and its open file.
pub fn attach_loop_ro(backing: &Path, block_size: u32) -> Result<(PathBuf, File), SysError> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| SysError::Io { op, path, source }
    };
    let ctl_path = Path::new("/dev/loop-control");
    let ctl = File::open(ctl_path).map_err(io("open", ctl_path))?;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
    let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
    if n < 0 {
        return Err(ioctl_err("LOOP_CTL_GET_FREE", ctl_path));
    }
    let dev_path = PathBuf::from(format!("/dev/loop{n}"));
    let dev = File::open(&dev_path).map_err(io("open", &dev_path))?;
    let file = File::open(backing).map_err(io("open", backing))?;
    let mut name = [0u8; 64];
    for (d, s) in name
        .iter_mut()
        .zip(backing.as_os_str().as_encoded_bytes().iter().take(63))
    {
        *d = *s;
    }
    let cfg = LoopConfig {
        fd: file.as_raw_fd() as u32,
        block_size,
        info: LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
            lo_file_name: name,
            lo_crypt_name: [0; 64],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        },
        reserved: [0; 8],
    };
    // SAFETY: LOOP_CONFIGURE reads one struct loop_config, which `cfg` is
    // (repr(C), the kernel's layout); the backing fd stays open for the call
    // and the kernel takes its own reference to the file.
    let rc = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &cfg as *const LoopConfig) };
    if rc < 0 {
        return Err(ioctl_err("LOOP_CONFIGURE", &dev_path));
    }
    Ok((dev_path, dev))
}

/// Tell the kernel that partition `number` of the disk open as `disk` now
/// spans `start`..`start + length` bytes (BLKPG_RESIZE_PARTITION): works
/// while the partition is mounted, unlike re-reading the whole table.
pub fn resize_partition(
    disk: &File,
    path: &Path,
    number: u32,
    start: u64,
    length: u64,
) -> Result<(), SysError> {
    #[repr(C)]
    struct BlkpgPartition {
        start: i64,
        length: i64,
        pno: i32,
        devname: [u8; 64],
        volname: [u8; 64],
    }
    #[repr(C)]
    struct BlkpgIoctlArg {
        op: i32,
        flags: i32,
        datalen: i32,
        data: *mut libc::c_void,
    }
    const BLKPG: libc::c_ulong = 0x1269;
    const BLKPG_RESIZE_PARTITION: i32 = 3;
    let mut part = BlkpgPartition {
        start: start as i64,
        length: length as i64,
        pno: number as i32,
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as i32,
        data: &mut part as *mut BlkpgPartition as *mut libc::c_void,
    };
    // SAFETY: BLKPG reads a blkpg_ioctl_arg whose data points to a
    // blkpg_partition of datalen bytes; both are live locals of the kernel's
    // layout for the duration of the call.
    let rc = unsafe { libc::ioctl(disk.as_raw_fd(), BLKPG, &arg as *const BlkpgIoctlArg) };
    if rc < 0 {
        return Err(ioctl_err("BLKPG_RESIZE_PARTITION", path));
    }
    Ok(())
}

/// Grow the ext4 filesystem mounted at `mountpoint` (open as `dir`) to
/// `blocks` filesystem blocks (EXT4_IOC_RESIZE_FS, online).
pub fn ext4_resize(dir: &File, mountpoint: &Path, blocks: u64) -> Result<(), SysError> {
    // EXT4_IOC_RESIZE_FS = _IOW('f', 16, __u64)
    const EXT4_IOC_RESIZE_FS: libc::c_ulong = 0x4008_6610;
    // SAFETY: the ioctl reads one u64 from the pointer, a live local.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), EXT4_IOC_RESIZE_FS, &blocks as *const u64) };
    if rc < 0 {
        return Err(ioctl_err("EXT4_IOC_RESIZE_FS", mountpoint));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn struct_layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<super::LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<super::LoopConfig>(), 304);
    }

    #[test]
    fn size_of_a_regular_file() {
        let f = tempfile_in_tmp();
        f.set_len(12345).unwrap();
        assert_eq!(
            super::size_bytes(&f, std::path::Path::new("t")).unwrap(),
            12345
        );
    }

    fn tempfile_in_tmp() -> std::fs::File {
        let p = std::env::temp_dir().join(format!("keel-sys-test-{}", std::process::id()));
        let f = std::fs::File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        let _ = std::fs::remove_file(&p);
        f
    }
}
