//! Device-mapper through its ioctls (`include/uapi/linux/dm-ioctl.h`), the
//! three calls keel needs to map a dm-verity device without `veritysetup`:
//! create a device, load a one-target table into it, resume it (which makes
//! the table live). Plus the status query and removal.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::SysError;

const HEADER: usize = 312; // sizeof(struct dm_ioctl)
const SPEC: usize = 40; // sizeof(struct dm_target_spec)
const NAME_LEN: usize = 128;
const UUID_LEN: usize = 129;

const fn iowr(nr: u64) -> libc::c_ulong {
    ((3u64 << 30) | ((HEADER as u64) << 16) | (0xfd << 8) | nr) as libc::c_ulong
}
const DM_DEV_CREATE: libc::c_ulong = iowr(3);
const DM_DEV_REMOVE: libc::c_ulong = iowr(4);
const DM_DEV_SUSPEND: libc::c_ulong = iowr(6);
const DM_TABLE_LOAD: libc::c_ulong = iowr(9);
const DM_TABLE_STATUS: libc::c_ulong = iowr(12);
const DM_READONLY_FLAG: u32 = 1 << 0;

/// A mapped device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmDevice {
    pub name: String,
    pub major: u32,
    pub minor: u32,
}

impl DmDevice {
    /// The node devtmpfs creates for it.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/dm-{}", self.minor))
    }
}

fn control() -> Result<File, SysError> {
    let p = Path::new("/dev/mapper/control");
    File::options()
        .read(true)
        .write(true)
        .open(p)
        .map_err(|source| SysError::Io {
            op: "open",
            path: p.to_path_buf(),
            source,
        })
}

/// A dm_ioctl buffer: the header, then `extra` bytes of payload.
fn buffer(name: &str, uuid: &str, flags: u32, extra: usize) -> Vec<u64> {
    // u64 elements: the kernel expects 8-byte alignment of the structs.
    let len = (HEADER + extra).div_ceil(8);
    let mut buf = vec![0u64; len];
    let b = bytes_mut(&mut buf);
    let total = b.len() as u32;
    b[0..4].copy_from_slice(&4u32.to_ne_bytes()); // version 4.0.0
    b[12..16].copy_from_slice(&total.to_ne_bytes()); // data_size
    b[16..20].copy_from_slice(&(HEADER as u32).to_ne_bytes()); // data_start
    b[28..32].copy_from_slice(&flags.to_ne_bytes());
    let n = name.as_bytes();
    b[48..48 + n.len().min(NAME_LEN - 1)].copy_from_slice(&n[..n.len().min(NAME_LEN - 1)]);
    let u = uuid.as_bytes();
    let at = 48 + NAME_LEN;
    b[at..at + u.len().min(UUID_LEN - 1)].copy_from_slice(&u[..u.len().min(UUID_LEN - 1)]);
    buf
}

fn bytes_mut(buf: &mut [u64]) -> &mut [u8] {
    let len = std::mem::size_of_val(buf);
    // SAFETY: a u64 slice is valid as bytes of the same total length; u8 has
    // alignment 1 and every byte pattern is a valid u8 and u64.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut u8, len) }
}

fn call(
    ctl: &File,
    req: libc::c_ulong,
    op: &'static str,
    name: &str,
    buf: &mut [u64],
) -> Result<(), SysError> {
    // SAFETY: `buf` starts with a struct dm_ioctl whose data_size is the
    // buffer's full length, so the kernel reads and writes within it.
    let rc = unsafe { libc::ioctl(ctl.as_raw_fd(), req, buf.as_mut_ptr()) };
    if rc < 0 {
        return Err(SysError::DeviceMapper {
            op,
            name: name.to_string(),
            source: nix::Error::last(),
        });
    }
    Ok(())
}

/// Create a device called `name` with one read-only target of `sectors`
/// sectors: `target` (e.g. "verity") with its parameter string, then resume
/// it. On failure the half-made device is removed.
pub fn create_ro(
    name: &str,
    uuid: &str,
    target: &str,
    sectors: u64,
    params: &str,
) -> Result<DmDevice, SysError> {
    let ctl = control()?;
    let mut buf = buffer(name, uuid, 0, 0);
    call(&ctl, DM_DEV_CREATE, "create", name, &mut buf)?;
    let dev = u64::from_ne_bytes(bytes_mut(&mut buf)[40..48].try_into().unwrap_or_default());
    let (major, minor) = crate::block::devno(dev);
    let device = DmDevice {
        name: name.to_string(),
        major,
        minor,
    };
    let loaded = (|| {
        let params_len = (params.len() + 1).div_ceil(8) * 8;
        let mut buf = buffer(name, "", DM_READONLY_FLAG, SPEC + params_len);
        {
            let b = bytes_mut(&mut buf);
            b[20..24].copy_from_slice(&1u32.to_ne_bytes()); // target_count
            let s = HEADER;
            b[s..s + 8].copy_from_slice(&0u64.to_ne_bytes()); // sector_start
            b[s + 8..s + 16].copy_from_slice(&sectors.to_ne_bytes()); // length
            b[s + 20..s + 24].copy_from_slice(&((SPEC + params_len) as u32).to_ne_bytes()); // next
            let t = target.as_bytes();
            b[s + 24..s + 24 + t.len().min(15)].copy_from_slice(&t[..t.len().min(15)]);
            b[s + SPEC..s + SPEC + params.len()].copy_from_slice(params.as_bytes());
        }
        call(&ctl, DM_TABLE_LOAD, "load table", name, &mut buf)?;
        // DM_DEV_SUSPEND without the suspend flag resumes: the loaded table
        // becomes the live one.
        let mut buf = buffer(name, "", 0, 0);
        call(&ctl, DM_DEV_SUSPEND, "resume", name, &mut buf)
    })();
    if let Err(e) = loaded {
        let _ = remove(name);
        return Err(e);
    }
    Ok(device)
}

/// Remove the device `name`.
pub fn remove(name: &str) -> Result<(), SysError> {
    let ctl = control()?;
    let mut buf = buffer(name, "", 0, 0);
    call(&ctl, DM_DEV_REMOVE, "remove", name, &mut buf)
}

/// The status line of the device's first target (for verity: "V" when every
/// block read so far verified, "C" once a corrupted block was seen).
pub fn status(name: &str) -> Result<String, SysError> {
    let ctl = control()?;
    let mut buf = buffer(name, "", 0, 4096);
    call(&ctl, DM_TABLE_STATUS, "status", name, &mut buf)?;
    let b = bytes_mut(&mut buf);
    let count = u32::from_ne_bytes(b[20..24].try_into().unwrap_or_default());
    let start = u32::from_ne_bytes(b[16..20].try_into().unwrap_or_default()) as usize;
    if count == 0 || start + SPEC > b.len() {
        return Ok(String::new());
    }
    let text = &b[start + SPEC..];
    let end = text.iter().position(|&c| c == 0).unwrap_or(text.len());
    Ok(String::from_utf8_lossy(&text[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_header() {
        // Values from strace of dmsetup on x86_64.
        assert_eq!(DM_DEV_CREATE, 0xc138fd03);
        assert_eq!(DM_TABLE_LOAD, 0xc138fd09);
        assert_eq!(DM_DEV_SUSPEND, 0xc138fd06);
    }

    #[test]
    fn buffer_header_fields() {
        let mut buf = buffer("keel-root", "KEEL-A", DM_READONLY_FLAG, 10);
        let b = bytes_mut(&mut buf);
        assert_eq!(b.len(), 328);
        assert_eq!(u32::from_ne_bytes(b[12..16].try_into().unwrap()), 328);
        assert_eq!(&b[48..57], b"keel-root");
        assert_eq!(&b[176..182], b"KEEL-A");
    }
}
