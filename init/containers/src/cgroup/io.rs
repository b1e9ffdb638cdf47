//! io: `io.weight` (proportional share against the other containers) and
//! `io.max` (absolute caps on one block device).
//!
//! A missing io controller (no block device, e.g. a diskless node) is not
//! an error for the weight: it has nothing to apply to. For `io.max` it is:
//! a cap asked for and not applied must not pass silently. `io.max`:
//!
//! 1. the group must have its `io.max` file (the io controller enabled);
//! 2. each device is resolved to `MAJ:MIN` by a stat of its node under the
//!    device root; one that is missing or not a block device is an error;
//! 3. a line per device (`MAJ:MIN rbps=N wbps=N riops=N wiops=N`, only
//!    the caps given) is written, each with its own write(2): the kernel
//!    reads one device per write.
//!
//! All devices are resolved before any line is written, so a bad one
//! leaves the group without a partial set of caps.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use keel_config::model::{IoMax, Resources};

use super::{read, write, CgroupError, Stats};

/// A device as `(major, minor)`.
pub type DevNumber = (u64, u64);

pub fn apply(dir: &Path, res: &Resources, dev_root: &Path) -> Result<(), CgroupError> {
    if let Some(w) = res.io_weight {
        if dir.join("io.weight").exists() {
            write(dir, "io.weight", &format!("default {w}"))?;
        }
    }
    max(dir, &res.io_max, dev_root)
}

fn max(dir: &Path, limits: &[IoMax], dev_root: &Path) -> Result<(), CgroupError> {
    if limits.is_empty() {
        return Ok(());
    }
    let path = dir.join("io.max");
    if !path.exists() {
        return Err(CgroupError::Missing { path });
    }
    let lines = limits
        .iter()
        .map(|m| Ok(max_line(resolve(dev_root, &m.device)?, m)))
        .collect::<Result<Vec<_>, CgroupError>>()?;
    write_lines(&path, &lines)
}

/// The kernel's `dev_t` split into major and minor (12 + 20 bits of the
/// major and 8 + 24 of the minor, interleaved for the old 16-bit layout).
pub fn dev_number(rdev: u64) -> DevNumber {
    (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev))
}

/// `device` (an absolute path such as `/dev/vda`) under `dev_root`
/// (`/` on the node), as the block device number it names. Symlinks
/// (`/dev/disk/by-id/...`) are followed.
pub fn resolve(dev_root: &Path, device: &str) -> Result<DevNumber, CgroupError> {
    let path = dev_root.join(device.trim_start_matches('/'));
    let meta = std::fs::metadata(&path).map_err(|source| CgroupError::Device {
        path: path.clone(),
        source,
    })?;
    if !meta.file_type().is_block_device() {
        return Err(CgroupError::NotBlockDevice { path });
    }
    Ok(dev_number(meta.rdev()))
}

/// One `io.max` line: the device and the caps `m` gives, newline-ended.
pub fn max_line((major, minor): DevNumber, m: &IoMax) -> String {
    let mut line = format!("{major}:{minor}");
    for (key, v) in [
        ("rbps", m.rbps),
        ("wbps", m.wbps),
        ("riops", m.riops),
        ("wiops", m.wiops),
    ] {
        if let Some(v) = v {
            line.push_str(&format!(" {key}={v}"));
        }
    }
    line.push('\n');
    line
}

/// Each line with its own write(2) to the existing file `path` (neither
/// created nor truncated: on a fake cgroup dir the lines follow each
/// other).
fn write_lines(path: &Path, lines: &[String]) -> Result<(), CgroupError> {
    let err = |line: &str| {
        let (path, value) = (path.to_path_buf(), line.to_string());
        move |source| CgroupError::Write {
            path,
            value,
            source,
        }
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(err(&lines.concat()))?;
    for line in lines {
        f.write_all(line.as_bytes()).map_err(err(line))?;
    }
    Ok(())
}

/// Bytes read and written, summed over the devices of `io.stat`.
pub fn stats(dir: &Path, s: &mut Stats) {
    let Ok(text) = read(dir, "io.stat") else {
        return;
    };
    let (r, w) = io_bytes(&text);
    s.io_rbytes = r;
    s.io_wbytes = w;
}

/// `(rbytes, wbytes)` summed over the lines of an `io.stat`
/// (`MAJ:MIN rbytes=N wbytes=N rios=N ...`).
fn io_bytes(text: &str) -> (u64, u64) {
    let mut sum = (0u64, 0u64);
    for field in text.lines().flat_map(|l| l.split_whitespace().skip(1)) {
        let Some((k, v)) = field.split_once('=') else {
            continue;
        };
        let Ok(v) = v.parse::<u64>() else { continue };
        match k {
            "rbytes" => sum.0 = sum.0.saturating_add(v),
            "wbytes" => sum.1 = sum.1.saturating_add(v),
            _ => {}
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(device: &str) -> IoMax {
        IoMax {
            device: device.into(),
            ..IoMax::default()
        }
    }

    #[test]
    fn dev_number_decodes_the_kernel_encoding() {
        // 8:0 (sda) and 254:0 (vda) fit the old 8+8 layout.
        assert_eq!(dev_number(0x0800), (8, 0));
        assert_eq!(dev_number(0xfe00), (254, 0));
        // 259:1 (nvme0n1p1): major over 255 still in the low 12 bits.
        assert_eq!(dev_number(0x0001_0301), (259, 1));
        // Major 0x12345 and minor 0x6789a use the high halves: the low 12
        // bits of the major at 8..20, its high 8 at 44..; the low 8 bits
        // of the minor at 0..8, the rest at 20..44.
        let rdev = (0x12u64 << 44) | (0x345 << 8) | (0x678 << 20) | 0x9a;
        assert_eq!(dev_number(rdev), (0x12345, 0x6789a));
        assert_eq!(dev_number(0), (0, 0));
    }

    #[test]
    fn max_line_has_only_the_caps_given() {
        let all = IoMax {
            device: "/dev/vda".into(),
            rbps: Some(10 << 20),
            wbps: Some(1 << 20),
            riops: Some(1000),
            wiops: Some(500),
        };
        assert_eq!(
            max_line((254, 0), &all),
            "254:0 rbps=10485760 wbps=1048576 riops=1000 wiops=500\n"
        );
        let one = IoMax {
            wiops: Some(7),
            ..limit("/dev/vdb")
        };
        assert_eq!(max_line((254, 16), &one), "254:16 wiops=7\n");
    }

    #[test]
    fn resolve_refuses_what_is_not_a_block_device() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("dev")).unwrap();
        std::fs::write(t.path().join("dev/vda"), "").unwrap();
        let e = resolve(t.path(), "/dev/vda").unwrap_err();
        assert!(matches!(e, CgroupError::NotBlockDevice { .. }), "{e:?}");
        assert!(
            e.to_string().contains("dev/vda is not a block device"),
            "{e}"
        );
        let e = resolve(t.path(), "/dev").unwrap_err();
        assert!(matches!(e, CgroupError::NotBlockDevice { .. }), "{e:?}");
        let e = resolve(t.path(), "/dev/vdz").unwrap_err();
        assert!(matches!(e, CgroupError::Device { .. }), "{e:?}");
        assert!(e.to_string().contains("dev/vdz"), "{e}");
    }

    /// The node's own block devices (stat needs no permission on the
    /// node), checked against the numbers sysfs gives for them.
    #[test]
    fn resolve_reads_a_real_block_device() {
        let found = std::fs::read_dir("/sys/class/block").ok().and_then(|d| {
            d.flatten().find_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let num = std::fs::read_to_string(e.path().join("dev")).ok()?;
                let dev = format!("/dev/{name}");
                Path::new(&dev)
                    .exists()
                    .then(|| (dev, num.trim().to_string()))
            })
        });
        let Some((dev, num)) = found else {
            keel_testkit::skip("no block device in both /sys/class/block and /dev");
            return;
        };
        let (major, minor) = resolve(Path::new("/"), &dev).unwrap();
        assert_eq!(format!("{major}:{minor}"), num, "{dev}");
    }

    #[test]
    fn max_writes_a_line_per_device() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("io.max"), "").unwrap();
        let lines = [
            max_line(
                (254, 0),
                &IoMax {
                    rbps: Some(1 << 20),
                    ..limit("/dev/vda")
                },
            ),
            max_line(
                (259, 1),
                &IoMax {
                    riops: Some(100),
                    wiops: Some(50),
                    ..limit("/dev/nvme0n1p1")
                },
            ),
        ];
        write_lines(&t.path().join("io.max"), &lines).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("io.max")).unwrap(),
            "254:0 rbps=1048576\n259:1 riops=100 wiops=50\n"
        );
    }

    #[test]
    fn max_errors_name_the_file_or_the_device() {
        let t = tempfile::tempdir().unwrap();
        let res = Resources {
            io_max: vec![IoMax {
                rbps: Some(1),
                ..limit("/dev/vda")
            }],
            ..Resources::default()
        };
        // No io controller: no io.max.
        std::fs::write(t.path().join("io.weight"), "").unwrap();
        let e = apply(t.path(), &res, t.path()).unwrap_err();
        assert!(matches!(e, CgroupError::Missing { .. }), "{e:?}");
        assert!(e.to_string().contains("io.max"), "{e}");
        assert!(!t.path().join("io.max").exists(), "not created");
        // The controller, but no such device: nothing is written.
        std::fs::write(t.path().join("io.max"), "").unwrap();
        let e = apply(t.path(), &res, t.path()).unwrap_err();
        assert!(e.to_string().contains("dev/vda"), "{e}");
        assert_eq!(
            std::fs::read_to_string(t.path().join("io.max")).unwrap(),
            ""
        );
        // Without io_max, io.max is left alone even when it is missing.
        std::fs::remove_file(t.path().join("io.max")).unwrap();
        apply(t.path(), &Resources::default(), t.path()).unwrap();
    }

    #[test]
    fn io_bytes_sum_over_devices() {
        let text = "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n\
                    7:0 rbytes=100 wbytes=1 rios=3 wios=1 dbytes=0 dios=0\n";
        assert_eq!(io_bytes(text), (4196, 8193));
        assert_eq!(io_bytes(""), (0, 0));
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("io.stat"), text).unwrap();
        let mut s = Stats::default();
        stats(t.path(), &mut s);
        assert_eq!((s.io_rbytes, s.io_wbytes), (4196, 8193));
    }
}
