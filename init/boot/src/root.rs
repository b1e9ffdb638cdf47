//! Finding, checking and mounting the verified root.
//!
//! 1. **Find** the slots. A disk whose GPT has partitions of keel's slot
//!    type (KEEL-A, KEEL-B) wins; otherwise the slot file a diskless
//!    initramfs carries; otherwise there is no verified root.
//! 2. **Choose** (disks): the bootable slot of highest priority
//!    ([`keel_slot::state::choose`]); take one try from it and write the
//!    GPT *before* trusting it, so a slot that hangs the boot runs out of
//!    tries instead of looping.
//! 3. **Verify** the footer: the manifest's ed25519 signature against the
//!    keys baked into the initramfs, then its consistency.
//! 4. **Check the content** when the slot is not yet known good: BLAKE3 of
//!    the whole slot content against the signed digest, so a flipped byte
//!    anywhere (root, hash tree, kernel, initramfs) refuses the slot now
//!    rather than as an I/O error later.
//! 5. **Map** the root image through dm-verity (data and hash tree on the
//!    same device; a loop device when the slot is a file), read-only, EIO
//!    on corruption.
//! 6. **Mount** it read-only. A failure at 3-6 marks the slot bad (disks)
//!    and the caller tries the next one.
//!
//! Every path comes in as a parameter (`/sys/block`, `/dev`, the key
//! directory), so the logic runs against fixtures in tests.

use std::fs::File;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keel_slot::gpt::{Gpt, TYPE_KEEL_SLOT, TYPE_KEEL_STATE};
use keel_slot::layout::{footer_offset, FOOTER_SIZE};
use keel_slot::manifest::{self, Manifest, ManifestError, TrustedKey, Verified};
use keel_slot::state::SlotState;
use keel_sys::dm::DmDevice;
use keel_sys::fs::MountFlags;

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("slot {slot}: {source}")]
    Manifest { slot: String, source: ManifestError },
    #[error("slot {slot} is {size} bytes: too small to hold a manifest")]
    TooSmall { slot: String, size: u64 },
    #[error("slot {slot}: content digest mismatch over {size} bytes: the slot is corrupted")]
    Digest { slot: String, size: u64 },
    #[error("slot {slot}: {part} digest mismatch: the slot is corrupted")]
    PartDigest { slot: String, part: &'static str },
    #[error("slot {slot}: {source}")]
    Sys {
        slot: String,
        source: keel_sys::SysError,
    },
    #[error("slot {slot}: mount the root image: {source} (dm-verity refused a block: the image is corrupted)")]
    MountCorrupt {
        slot: String,
        source: keel_sys::SysError,
    },
    #[error("no trusted keys in {dir}")]
    NoKeys { dir: PathBuf },
    #[error("key file {path}: {source}")]
    Key {
        path: PathBuf,
        source: ManifestError,
    },
    #[error(transparent)]
    Gpt(#[from] keel_slot::gpt::GptError),
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RootError {
    let path = path.to_path_buf();
    move |source| RootError::Io { op, path, source }
}

/// One slot the boot may use.
#[derive(Debug, Clone)]
pub struct Slot {
    /// "A", "B", or "diskless".
    pub name: String,
    /// The partition's device node, or the slot file.
    pub path: PathBuf,
    /// 1-based GPT partition number (disks).
    pub number: Option<usize>,
    /// The A/B state bits (disks).
    pub state: Option<SlotState>,
}

/// Where the slots are.
#[derive(Debug, Clone)]
pub enum Source {
    Disk {
        /// The whole disk's node, e.g. /dev/vda.
        disk: PathBuf,
        sectors: u64,
        gpt: Gpt,
        /// The STATE partition's number and node, when there is one.
        state: Option<(usize, PathBuf)>,
    },
    Diskless,
}

#[derive(Debug, Clone)]
pub struct Found {
    pub source: Source,
    pub slots: Vec<Slot>,
}

/// Load every `*.pub` key in `dir`.
pub fn load_keys(dir: &Path) -> Result<Vec<TrustedKey>, RootError> {
    let mut keys = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RootError::NoKeys {
                dir: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(io("read", dir)(e)),
    };
    let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort_unstable();
    for p in paths {
        if p.extension().and_then(|e| e.to_str()) != Some("pub") {
            continue;
        }
        let text = std::fs::read_to_string(&p).map_err(io("read", &p))?;
        keys.push(TrustedKey::parse(&text).map_err(|source| RootError::Key {
            path: p.clone(),
            source,
        })?);
    }
    if keys.is_empty() {
        return Err(RootError::NoKeys {
            dir: dir.to_path_buf(),
        });
    }
    Ok(keys)
}

/// Whole disks under `sys_block` worth reading a GPT from (not loop, ram,
/// dm, zram or optical devices), sorted by name.
pub fn disks(sys_block: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(sys_block)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    !["loop", "ram", "dm-", "zram", "sr", "nbd"]
                        .iter()
                        .any(|p| n.starts_with(p))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}

/// The node name of partition `number` of `disk` (from
/// `/sys/block/<disk>/<part>/partition`), e.g. vda2 or nvme0n1p2.
pub fn partition_name(sys_block: &Path, disk: &str, number: usize) -> Option<String> {
    let rd = std::fs::read_dir(sys_block.join(disk)).ok()?;
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(disk) {
            continue;
        }
        if let Ok(n) = std::fs::read_to_string(e.path().join("partition")) {
            if n.trim().parse::<usize>().ok() == Some(number) {
                return Some(name);
            }
        }
    }
    None
}

/// Find the slots: the first disk with keel slot partitions, else the
/// diskless slot file, else `None`.
pub fn find(sys_block: &Path, dev: &Path, diskless: &Path) -> Result<Option<Found>, RootError> {
    for disk in disks(sys_block) {
        let path = dev.join(&disk);
        let Ok(f) = File::open(&path) else { continue };
        let Ok(bytes) = keel_sys::block::size_bytes(&f, &path) else {
            continue;
        };
        let sectors = bytes / keel_slot::gpt::SECTOR;
        let Ok(gpt) = Gpt::read(&f, sectors) else {
            continue;
        };
        let mut slots = Vec::new();
        let mut state = None;
        for (n, e) in gpt.partitions() {
            let node = || partition_name(sys_block, &disk, n).map(|p| dev.join(p));
            if e.type_guid == TYPE_KEEL_SLOT {
                let name = e.name.strip_prefix("KEEL-").unwrap_or(&e.name).to_string();
                if let Some(p) = node() {
                    slots.push(Slot {
                        name,
                        path: p,
                        number: Some(n),
                        state: Some(SlotState::from_attributes(e.attributes)),
                    });
                }
            } else if e.type_guid == TYPE_KEEL_STATE && state.is_none() {
                state = node().map(|p| (n, p));
            }
        }
        if !slots.is_empty() {
            return Ok(Some(Found {
                source: Source::Disk {
                    disk: path,
                    sectors,
                    gpt,
                    state,
                },
                slots,
            }));
        }
    }
    if diskless.exists() {
        return Ok(Some(Found {
            source: Source::Diskless,
            slots: vec![Slot {
                name: "diskless".into(),
                path: diskless.to_path_buf(),
                number: None,
                state: None,
            }],
        }));
    }
    Ok(None)
}

/// Read and check the slot's footer.
pub fn open(slot: &Slot, keys: &[TrustedKey]) -> Result<Verified, RootError> {
    let f = File::open(&slot.path).map_err(io("open", &slot.path))?;
    let size = keel_sys::block::size_bytes(&f, &slot.path).map_err(|source| RootError::Sys {
        slot: slot.name.clone(),
        source,
    })?;
    let at = footer_offset(size).ok_or(RootError::TooSmall {
        slot: slot.name.clone(),
        size,
    })?;
    let mut footer = vec![0u8; FOOTER_SIZE as usize];
    f.read_exact_at(&mut footer, at)
        .map_err(io("read footer of", &slot.path))?;
    let v = manifest::open(&footer, keys).map_err(|source| RootError::Manifest {
        slot: slot.name.clone(),
        source,
    })?;
    if v.manifest.content.size > at {
        return Err(RootError::Manifest {
            slot: slot.name.clone(),
            source: ManifestError::Field {
                field: "content.size",
                problem: format!("{} runs into the footer at {at}", v.manifest.content.size),
            },
        });
    }
    Ok(v)
}

fn digest_range(f: &File, path: &Path, offset: u64, size: u64) -> Result<blake3::Hash, RootError> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < size {
        let n = (size - done).min(buf.len() as u64) as usize;
        f.read_exact_at(&mut buf[..n], offset + done)
            .map_err(io("read", path))?;
        h.update(&buf[..n]);
        done += n as u64;
    }
    Ok(h.finalize())
}

/// Check the BLAKE3 digest of the slot's whole content; returns how long it
/// took (for the throughput figure).
pub fn check_content(slot: &Slot, m: &Manifest) -> Result<Duration, RootError> {
    let f = File::open(&slot.path).map_err(io("open", &slot.path))?;
    let t = Instant::now();
    let got = digest_range(&f, &slot.path, 0, m.content.size)?;
    if keel_slot::hex::encode(got.as_bytes()) != m.content.blake3 {
        return Err(RootError::Digest {
            slot: slot.name.clone(),
            size: m.content.size,
        });
    }
    Ok(t.elapsed())
}

/// Copy the slot's kernel and initramfs to `dir`, checking each against its
/// signed digest; returns their paths (for kexec, which wants files).
pub fn extract_boot(
    slot: &Slot,
    m: &Manifest,
    dir: &Path,
) -> Result<Option<(PathBuf, PathBuf)>, RootError> {
    let (Some(k), Some(i)) = (&m.kernel, &m.initramfs) else {
        return Ok(None);
    };
    let f = File::open(&slot.path).map_err(io("open", &slot.path))?;
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let mut out = Vec::new();
    for (part, name) in [(k, "kernel"), (i, "initramfs")] {
        let mut data = vec![0u8; part.size as usize];
        f.read_exact_at(&mut data, part.offset)
            .map_err(io("read", &slot.path))?;
        if keel_slot::hex::encode(blake3::hash(&data).as_bytes()) != part.blake3 {
            return Err(RootError::PartDigest {
                slot: slot.name.clone(),
                part: name,
            });
        }
        let p = dir.join(name);
        std::fs::write(&p, &data).map_err(io("write", &p))?;
        out.push(p);
    }
    Ok(Some((out[0].clone(), out[1].clone())))
}

/// A mounted verified root.
#[derive(Debug)]
pub struct Mounted {
    pub device: DmDevice,
    /// The loop device under it (diskless slots).
    pub loop_dev: Option<PathBuf>,
    /// Time to set up the loop device (if any) and the verity mapping.
    pub map_time: Duration,
    /// Time to mount the root image.
    pub mount_time: Duration,
}

/// Map the slot's root image through dm-verity as `dm_name` and mount it
/// read-only on `target`.
pub fn map_and_mount(
    slot: &Slot,
    m: &Manifest,
    dm_name: &str,
    target: &Path,
) -> Result<Mounted, RootError> {
    let t = Instant::now();
    let sys = |source| RootError::Sys {
        slot: slot.name.clone(),
        source,
    };
    let md = std::fs::metadata(&slot.path).map_err(io("stat", &slot.path))?;
    let (rdev, loop_dev, _loop_file) = if md.file_type().is_block_device() {
        (md.rdev(), None, None)
    } else {
        let (p, f) = keel_sys::block::attach_loop_ro(&slot.path, keel_slot::verity::BLOCK as u32)
            .map_err(sys)?;
        let rdev = std::fs::metadata(&p).map_err(io("stat", &p))?.rdev();
        (rdev, Some(p), Some(f))
    };
    let (major, minor) = keel_sys::block::devno(rdev);
    let devno = format!("{major}:{minor}");
    let params = m.verity_params();
    let device = keel_sys::dm::create_ro(
        dm_name,
        &format!("KEEL-VERITY-{}", slot.name),
        "verity",
        params.sectors(),
        &params.table(&devno, &devno),
    )
    .map_err(sys)?;
    let map_time = t.elapsed();
    let t = Instant::now();
    std::fs::create_dir_all(target).map_err(io("create", target))?;
    let flags = MountFlags::MS_RDONLY | MountFlags::MS_NODEV | MountFlags::MS_NOSUID;
    if let Err(source) =
        keel_sys::fs::mount(&device.path().to_string_lossy(), target, &m.fs, flags, None)
    {
        let _ = keel_sys::dm::remove(dm_name);
        return Err(RootError::MountCorrupt {
            slot: slot.name.clone(),
            source,
        });
    }
    Ok(Mounted {
        device,
        loop_dev,
        map_time,
        mount_time: t.elapsed(),
    })
}

/// Write `slot`'s new state into the GPT of `disk`.
pub fn write_state(found: &mut Found, slot_name: &str, state: SlotState) -> Result<(), RootError> {
    let Source::Disk {
        disk, sectors, gpt, ..
    } = &mut found.source
    else {
        return Ok(());
    };
    let Some(slot) = found.slots.iter_mut().find(|s| s.name == slot_name) else {
        return Ok(());
    };
    let Some(n) = slot.number else { return Ok(()) };
    let e = &mut gpt.entries[n - 1];
    e.attributes = state.to_attributes(e.attributes);
    let f = File::options()
        .read(true)
        .write(true)
        .open(&*disk)
        .map_err(io("open", disk))?;
    gpt.write(&f, *sectors)?;
    slot.state = Some(state);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_slot::gpt::{Entry, Guid};

    fn sys_fixture(dir: &Path) {
        for (d, parts) in [
            ("vda", vec![("vda1", 1), ("vda2", 2), ("vda3", 3)]),
            ("loop0", vec![]),
        ] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
            for (p, n) in parts {
                std::fs::create_dir_all(dir.join(d).join(p)).unwrap();
                std::fs::write(dir.join(d).join(p).join("partition"), format!("{n}\n")).unwrap();
            }
        }
        std::fs::create_dir_all(dir.join("dm-0")).unwrap();
    }

    #[test]
    fn disks_and_partition_names() {
        let t = tempfile::tempdir().unwrap();
        sys_fixture(t.path());
        assert_eq!(disks(t.path()), ["vda"]);
        assert_eq!(partition_name(t.path(), "vda", 2).as_deref(), Some("vda2"));
        assert_eq!(partition_name(t.path(), "vda", 9), None);
    }

    #[test]
    fn finds_slots_on_a_gpt_disk_image() {
        let t = tempfile::tempdir().unwrap();
        let sys = t.path().join("sys");
        let dev = t.path().join("dev");
        sys_fixture(&sys);
        std::fs::create_dir_all(&dev).unwrap();
        let sectors = 20_000;
        let f = File::create(dev.join("vda")).unwrap();
        f.set_len(sectors * 512).unwrap();
        let mut g = Gpt::new(Guid::derived(b"d"), sectors).unwrap();
        let slot = |name: &str, first, attrs| Entry {
            type_guid: TYPE_KEEL_SLOT,
            unique_guid: Guid::derived(name.as_bytes()),
            first_lba: first,
            last_lba: first + 999,
            attributes: attrs,
            name: name.into(),
        };
        g.entries[0] = slot("KEEL-A", 2048, SlotState::new(2, 3, false).to_attributes(0));
        g.entries[1] = slot("KEEL-B", 4096, SlotState::new(1, 0, true).to_attributes(0));
        g.entries[2] = Entry {
            type_guid: TYPE_KEEL_STATE,
            name: "STATE".into(),
            ..slot("STATE", 8192, 0)
        };
        g.write(&f, sectors).unwrap();
        let mut found = find(&sys, &dev, &t.path().join("none")).unwrap().unwrap();
        let names: Vec<_> = found
            .slots
            .iter()
            .map(|s| (s.name.as_str(), s.path.clone()))
            .collect();
        assert_eq!(names, [("A", dev.join("vda1")), ("B", dev.join("vda2"))]);
        assert!(
            matches!(&found.source, Source::Disk { state: Some((3, p)), .. } if *p == dev.join("vda3"))
        );
        // State writes land in the GPT and read back.
        write_state(&mut found, "A", SlotState::new(2, 2, false)).unwrap();
        let again = find(&sys, &dev, &t.path().join("none")).unwrap().unwrap();
        assert_eq!(again.slots[0].state, Some(SlotState::new(2, 2, false)));
    }

    #[test]
    fn diskless_file_when_no_disk() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("root.slot");
        assert!(find(t.path(), t.path(), &f).unwrap().is_none());
        std::fs::write(&f, b"x").unwrap();
        let found = find(t.path(), t.path(), &f).unwrap().unwrap();
        assert!(matches!(found.source, Source::Diskless));
        assert_eq!(found.slots[0].name, "diskless");
    }

    #[test]
    fn keys_are_required() {
        let t = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_keys(&t.path().join("no")),
            Err(RootError::NoKeys { .. })
        ));
        assert!(matches!(load_keys(t.path()), Err(RootError::NoKeys { .. })));
        std::fs::write(t.path().join("bad.pub"), "nonsense").unwrap();
        assert!(matches!(load_keys(t.path()), Err(RootError::Key { .. })));
    }
}
