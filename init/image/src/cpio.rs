//! The `newc` cpio format the kernel unpacks into its rootfs.

use std::io::Write;

use crate::spec::{Entry, Kind};

#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error("read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is {size} bytes, over the 4 GiB a newc entry can hold")]
    TooBig { path: String, size: u64 },
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[allow(clippy::too_many_arguments)]
fn header(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    size: u32,
    rdev: (u32, u32),
    name: &str,
) {
    let fields = [
        ino,
        mode,
        uid,
        gid,
        nlink,
        mtime,
        size,
        0,
        0,
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

/// The archive of `entries` (already sorted), every entry stamped `mtime`.
pub fn archive(entries: &[Entry], mtime: u32) -> Result<Vec<u8>, CpioError> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        let (type_bits, data, rdev): (u32, Vec<u8>, (u32, u32)) = match &e.kind {
            Kind::Dir => (0o040000, Vec::new(), (0, 0)),
            Kind::File(src) => {
                let data = std::fs::read(src).map_err(|source| CpioError::Read {
                    path: src.display().to_string(),
                    source,
                })?;
                (0o100000, data, (0, 0))
            }
            Kind::Node {
                block,
                major,
                minor,
            } => (
                if *block { 0o060000 } else { 0o020000 },
                Vec::new(),
                (*major, *minor),
            ),
            Kind::Symlink(t) => (0o120000, t.as_bytes().to_vec(), (0, 0)),
        };
        let size = u32::try_from(data.len()).map_err(|_| CpioError::TooBig {
            path: e.name.clone(),
            size: data.len() as u64,
        })?;
        let nlink = if matches!(e.kind, Kind::Dir) { 2 } else { 1 };
        header(
            &mut out,
            ino,
            type_bits | e.mode,
            e.uid,
            e.gid,
            nlink,
            mtime,
            size,
            rdev,
            &e.name,
        );
        out.extend_from_slice(&data);
        pad4(&mut out);
    }
    header(&mut out, 0, 0, 0, 0, 1, 0, 0, (0, 0), "TRAILER!!!");
    Ok(out)
}

/// The zstd window an initramfs is compressed with, as a power of two: 2
/// MiB. The kernel unpacks the initramfs as a stream and allocates a
/// buffer of the window's size for it, next to the compressed archive and
/// what it unpacks. Level 19's own window (8 MiB for an archive this size)
/// kept a 48 MB node from booting ("System is deadlocked on memory" while
/// unpacking); 2 MiB costs about 2 % of the compressed size (measured on
/// the diskless initramfs: 4,043,806 bytes with 8 MiB, 4,156,039 with 2
/// MiB), and the demo node then boots and serves in 48 MB.
pub const WINDOW_LOG: u32 = 21;

/// zstd at a fixed level with a checksum and a [`WINDOW_LOG`] window:
/// deterministic for a given zstd version (pinned in Cargo.lock). The
/// kernel's unzstd reads it.
pub fn compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    let mut enc = zstd::Encoder::new(Vec::new(), level)?;
    enc.include_checksum(true)?;
    enc.window_log(WINDOW_LOG)?;
    enc.write_all(data)?;
    enc.finish()
}

/// An initramfs of two segments: `packed` (a compressed archive) and then
/// `raw`, an uncompressed newc archive, which the kernel copies without
/// decompressing (for content that is compressed already, such as an EROFS
/// slot). The kernel unpacks the segments in turn; it looks for a newc header
/// only at a 4-byte boundary of the whole initramfs and skips the zero bytes
/// before it, so `raw` starts at the next multiple of 4.
pub fn with_raw_segment(packed: &[u8], raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packed.len() + 3 + raw.len());
    out.extend_from_slice(packed);
    pad4(&mut out);
    out.extend_from_slice(raw);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;
    use std::collections::HashMap;

    fn sample() -> (tempfile::TempDir, Vec<Entry>) {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::write(&bin, b"\x7fELF hello").unwrap();
        let vars = HashMap::from([("BIN".to_string(), bin.display().to_string())]);
        let mut s = Spec::default();
        s.add("t", "file /init ${BIN} 0755 0 0\nnod /dev/console 0600 0 0 c 5 1\nslink /sbin/init /init 0777 0 0\n", &vars).unwrap();
        (dir, s.entries())
    }

    #[test]
    fn same_inputs_same_bytes() {
        let (_d, e) = sample();
        let a = compress(&archive(&e, 0).unwrap(), 19).unwrap();
        let b = compress(&archive(&e, 0).unwrap(), 19).unwrap();
        assert_eq!(a, b);
        assert_ne!(archive(&e, 0).unwrap(), archive(&e, 1).unwrap());
    }

    #[test]
    fn the_raw_segment_starts_on_a_4_byte_boundary_after_zero_padding() {
        let (_d, e) = sample();
        let raw = archive(&e, 0).unwrap();
        for n in 1..=8usize {
            let packed = vec![0xaa; n];
            let both = with_raw_segment(&packed, &raw);
            let at = n.div_ceil(4) * 4;
            assert_eq!(&both[..n], &packed[..]);
            assert!(both[n..at].iter().all(|b| *b == 0), "zero padding for {n}");
            assert_eq!(&both[at..], &raw[..], "the raw segment at {at} for {n}");
            assert_eq!(&both[at..at + 6], b"070701");
        }
    }

    /// The window a zstd frame asks its reader for (RFC 8878, 3.1.1.1).
    fn frame_window(z: &[u8]) -> u64 {
        assert_eq!(&z[..4], &[0x28, 0xb5, 0x2f, 0xfd], "a zstd frame");
        let fhd = z[4];
        assert_eq!(
            fhd & 0x20,
            0,
            "no Single_Segment: a window descriptor follows"
        );
        let wd = z[5];
        let log = 10 + u64::from(wd >> 3);
        (1 << log) + ((1 << log) / 8) * u64::from(wd & 7)
    }

    #[test]
    fn the_kernel_needs_a_small_window_to_unpack() {
        // 6 MiB that do not compress away, as the keel binary does not.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let data: Vec<u8> = (0..6 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 56) as u8 & 0x3f
            })
            .collect();
        let z = compress(&data, 1).unwrap();
        assert_eq!(frame_window(&z), 1 << WINDOW_LOG);
        // Control: zstd's own choice for the same data is larger.
        let own = zstd::encode_all(&data[..], 19).unwrap();
        assert!(
            frame_window(&own) > 1 << WINDOW_LOG,
            "{}",
            frame_window(&own)
        );
    }

    #[test]
    fn layout_is_newc() {
        let (_d, e) = sample();
        let a = archive(&e, 7).unwrap();
        assert_eq!(&a[..6], b"070701");
        assert!(a.len().is_multiple_of(4));
        // First entry: the dev directory, inode 1, mode 040755, mtime 7.
        let field = |n: usize| {
            u32::from_str_radix(std::str::from_utf8(&a[6 + 8 * n..14 + 8 * n]).unwrap(), 16)
                .unwrap()
        };
        assert_eq!(field(0), 1);
        assert_eq!(field(1), 0o040755);
        assert_eq!(field(5), 7);
        assert_eq!(&a[110..114], b"dev\0");
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("TRAILER!!!"));
        assert!(text.contains("\x7fELF hello"));
    }

    #[test]
    fn real_cpio_lists_the_archive() {
        if !keel_testkit::need_command("cpio", "cpio") {
            return;
        }
        let out = std::process::Command::new("cpio")
            .arg("--version")
            .output()
            .expect("run cpio --version");
        assert!(out.status.success());
        let (d, e) = sample();
        let path = d.path().join("a.cpio");
        std::fs::write(&path, archive(&e, 0).unwrap()).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("cpio -it --quiet < {}", path.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "dev\ndev/console\ninit\nsbin\nsbin/init\n"
        );
    }
}
