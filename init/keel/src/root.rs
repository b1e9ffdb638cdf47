//! The boot tasks of the verified root: find the slots, mount the root of a
//! slot that passes every check (refusing the others), switch into it, then
//! STATE and /etc. The checks themselves live in `keel_boot::root`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_api::{RefusedSlot, SlotInfo, StateMount};
use keel_boot::root::{self, Found, Mounted, RootError, Slot, Source};
use keel_boot::{error, info, statefs, warn};
use keel_slot::manifest::{Manifest, TrustedKey, Verified};
use keel_slot::state::SlotState;
use keel_sys::fs::MountFlags;
use keel_sys::SysError;

use crate::boot_table::{Ctx, TaskError};

#[cfg(test)]
mod fixtures;
mod mount;

/// Where the verified root is mounted before the switch.
pub const SYSROOT: &str = "/sysroot";
/// The slot a diskless initramfs carries.
pub const DISKLESS_SLOT: &str = "/keel/root.slot";
/// Public keys baked into the initramfs.
pub const KEYS_DIR: &str = "/etc/keel/keys";
/// The build id of the running kernel + initramfs.
pub const BUILD_ID: &str = "/etc/keel/build-id";
/// The device-mapper name of the root.
pub const DM_NAME: &str = "keel-root";
/// Where a slot's kernel and initramfs are copied for kexec.
const KEXEC_DIR: &str = "/run/keel/kexec";
/// Where STATE is mounted.
pub const STATE_DIR: &str = "/var/lib/keel";

/// What the boot decided about the root, for later tasks and the timer that
/// marks the slot successful.
#[derive(Debug, Default)]
pub struct RootCtx {
    pub found: Option<Found>,
    pub keys: Vec<TrustedKey>,
    pub running_build: Option<String>,
    pub mounted: bool,
    pub booted: Option<String>,
}

fn slot_infos(found: &Found) -> Vec<SlotInfo> {
    found
        .slots
        .iter()
        .filter_map(|s| {
            s.state.map(|st| SlotInfo {
                name: s.name.clone(),
                priority: st.priority,
                tries: st.tries,
                successful: st.successful,
            })
        })
        .collect()
}

pub fn find_slots(ctx: &mut Ctx) -> Result<(), TaskError> {
    ctx.root.running_build = std::fs::read_to_string(BUILD_ID)
        .ok()
        .map(|s| s.trim().to_string());
    let keys = match root::load_keys(Path::new(KEYS_DIR)) {
        Ok(k) => k,
        Err(e) => {
            ctx.node.update_root(|st| {
                st.refused.push(RefusedSlot {
                    slot: "*".into(),
                    reason: e.to_string(),
                })
            });
            return Err(e.into());
        }
    };
    ctx.root.keys = keys;
    let found = root::find(
        Path::new("/sys/block"),
        Path::new("/dev"),
        Path::new(DISKLESS_SLOT),
    )?;
    match &found {
        Some(f) => {
            let names: Vec<&str> = f.slots.iter().map(|s| s.name.as_str()).collect();
            match &f.source {
                Source::Disk { disk, .. } => {
                    info!("slots on {}: {}", disk.display(), names.join(" "))
                }
                Source::Diskless => info!("diskless slot {DISKLESS_SLOT}"),
            }
            ctx.node.update_root(|st| st.slots = slot_infos(f));
        }
        None => warn!("no OS slot: no keel disk and no {DISKLESS_SLOT}"),
    }
    ctx.root.found = found;
    Ok(())
}

/// MountRoot: the decisions are in `root::mount`; this is the real disk and
/// kernel under them.
pub fn mount_root(ctx: &mut Ctx) -> Result<(), TaskError> {
    let asked = mount::Asked {
        slot: ctx.cmdline.slot.as_deref(),
        verify_full: ctx.cmdline.verify_full,
    };
    let root = &mut ctx.root;
    ctx.node
        .update_root(|st| mount::mount_root_with(&mut KernelIo, root, st, asked));
    Ok(())
}

/// [`mount::RootIo`] on the machine: `keel_boot::root` and `keel_sys`.
struct KernelIo;

impl mount::RootIo for KernelIo {
    fn write_state(
        &mut self,
        found: &mut Found,
        slot: &str,
        state: SlotState,
    ) -> Result<(), RootError> {
        root::write_state(found, slot, state)
    }

    fn open(&mut self, slot: &Slot, keys: &[TrustedKey]) -> Result<Verified, RootError> {
        root::open(slot, keys)
    }

    fn check_content(&mut self, slot: &Slot, m: &Manifest) -> Result<Duration, RootError> {
        root::check_content(slot, m)
    }

    fn map_and_mount(&mut self, slot: &Slot, m: &Manifest) -> Result<Mounted, RootError> {
        root::map_and_mount(slot, m, DM_NAME, Path::new(SYSROOT))
    }

    fn extract_boot(
        &mut self,
        slot: &Slot,
        m: &Manifest,
    ) -> Result<Option<(PathBuf, PathBuf)>, RootError> {
        root::extract_boot(slot, m, Path::new(KEXEC_DIR))
    }

    fn kernel_cmdline(&mut self) -> String {
        std::fs::read_to_string("/proc/cmdline").unwrap_or_default()
    }

    fn kexec_load(
        &mut self,
        kernel: &Path,
        initramfs: &Path,
        cmdline: &str,
    ) -> Result<(), SysError> {
        // The held-back console lines go out before this kernel is left.
        keel_boot::log::flush();
        keel_sys::kexec::load(kernel, initramfs, cmdline)
    }

    fn kexec_exec(&mut self) -> SysError {
        keel_sys::fs::sync();
        keel_sys::kexec::exec()
    }
}

pub fn leave_initramfs(ctx: &mut Ctx) -> Result<(), TaskError> {
    if !keel_boot::switch_root::is_initramfs_magic(keel_sys::fs::fs_magic(Path::new("/"))?) {
        info!("root is not the initramfs: staying on it");
        return Ok(());
    }
    let moves = keel_boot::mounts::top_level(keel_boot::mounts::EARLY);
    if ctx.root.mounted {
        keel_boot::switch_root::enter_root(Path::new(SYSROOT), &moves)?;
        info!("switched to the verified root");
        return Ok(());
    }
    crate::boot_table::leave_to_tmpfs()
}

/// Where STATE goes, decided before any mount.
#[derive(Debug, PartialEq, Eq)]
struct StatePlan {
    /// The ext4 device; `None` is a tmpfs.
    device: Option<PathBuf>,
    /// The disk's STATE partition number, to grow to fill the disk.
    grow: Option<usize>,
}

/// The STATE partition of the slots' disk, else `keel.state=`, else a
/// tmpfs. The partition grows only when a slot of its disk was trusted:
/// the GPT is not rewritten on a boot that ended in rescue mode.
fn state_plan(found: Option<&Found>, state_device: Option<&str>, root_mounted: bool) -> StatePlan {
    let disk_state = match found.map(|f| &f.source) {
        Some(Source::Disk {
            state: Some((n, dev)),
            ..
        }) => Some((*n, dev.clone())),
        _ => None,
    };
    StatePlan {
        grow: disk_state
            .as_ref()
            .filter(|_| root_mounted)
            .map(|(n, _)| *n),
        device: disk_state
            .map(|(_, d)| d)
            .or_else(|| state_device.map(PathBuf::from)),
    }
}

pub fn mount_state(ctx: &mut Ctx) -> Result<(), TaskError> {
    let target = Path::new(STATE_DIR);
    std::fs::create_dir_all(target).map_err(|source| TaskError::Io {
        op: "create",
        path: target.into(),
        source,
    })?;
    let flags = MountFlags::MS_NOSUID | MountFlags::MS_NODEV | MountFlags::MS_NOEXEC;
    let plan = state_plan(
        ctx.root.found.as_ref(),
        ctx.cmdline.state_device.as_deref(),
        ctx.root.mounted,
    );
    let tmpfs = |ctx: &mut Ctx| -> Result<(), TaskError> {
        keel_sys::fs::mount("state", target, "tmpfs", flags, Some("mode=0755"))?;
        ctx.node.update_root(|st| {
            st.state = Some(StateMount {
                source: "tmpfs".into(),
                fstype: "tmpfs".into(),
                size_bytes: 0,
                grown_from_bytes: None,
            })
        });
        Ok(())
    };
    let Some(dev) = plan.device else {
        return tmpfs(ctx);
    };
    let grown_from = plan.grow.and_then(|n| grow_partition(ctx, n));
    if let Err(e) = keel_sys::fs::mount(&dev.to_string_lossy(), target, "ext4", flags, None) {
        // Keep the node up with somewhere to write; say loudly that the
        // data will not survive a reboot.
        error!("STATE: {e}: using a tmpfs on {STATE_DIR} instead (nothing written there survives a reboot)");
        return tmpfs(ctx);
    }
    let part_bytes = File::open(&dev)
        .ok()
        .and_then(|f| keel_sys::block::size_bytes(&f, &dev).ok())
        .unwrap_or(0);
    let grown_fs = grow_filesystem(&dev, target, part_bytes);
    info!(
        "STATE: {} on {STATE_DIR} ({} MiB)",
        dev.display(),
        part_bytes >> 20
    );
    ctx.node.update_root(|st| {
        st.state = Some(StateMount {
            source: dev.display().to_string(),
            fstype: "ext4".into(),
            size_bytes: part_bytes,
            grown_from_bytes: grown_from.or(grown_fs),
        })
    });
    Ok(())
}

/// Step 1-2 of `keel_boot::statefs`: extend STATE in the GPT and tell the
/// kernel. Returns the old size when it grew.
fn grow_partition(ctx: &mut Ctx, number: usize) -> Option<u64> {
    let found = ctx.root.found.as_mut()?;
    let Source::Disk {
        disk, sectors, gpt, ..
    } = &mut found.source
    else {
        return None;
    };
    let plan = match statefs::grow_plan(gpt, *sectors, number) {
        Ok(Some(p)) => p,
        Ok(None) => return None,
        Err(e) => {
            warn!("STATE: cannot grow: {e}");
            return None;
        }
    };
    let old = gpt.entries[number - 1].bytes();
    let e = &plan.entries[number - 1];
    let res = File::options()
        .read(true)
        .write(true)
        .open(&*disk)
        .map_err(|e| e.to_string())
        .and_then(|f| {
            plan.write(&f, *sectors).map_err(|e| e.to_string())?;
            keel_sys::block::resize_partition(&f, disk, number as u32, e.first_lba * 512, e.bytes())
                .map_err(|e| e.to_string())
        });
    match res {
        Ok(()) => {
            info!(
                "STATE: partition grown from {} to {} MiB to fill the disk",
                old >> 20,
                e.bytes() >> 20
            );
            *gpt = plan;
            Some(old)
        }
        Err(err) => {
            warn!("STATE: cannot grow the partition: {err}");
            None
        }
    }
}

/// Step 3: grow ext4 online when it is smaller than its partition.
fn grow_filesystem(dev: &Path, mountpoint: &Path, part_bytes: u64) -> Option<u64> {
    let f = File::open(dev).ok()?;
    let mut sb = vec![0u8; 1024];
    f.read_exact_at(&mut sb, 1024).ok()?;
    let (blocks, bs) = statefs::ext4_size(&sb)?;
    let want = part_bytes / bs;
    if want <= blocks {
        return None;
    }
    let dir = File::open(mountpoint).ok()?;
    match keel_sys::block::ext4_resize(&dir, mountpoint, want) {
        Ok(()) => {
            info!(
                "STATE: ext4 grown from {} to {} MiB",
                (blocks * bs) >> 20,
                (want * bs) >> 20
            );
            Some(blocks * bs)
        }
        Err(e) => {
            warn!("STATE: cannot grow ext4: {e}");
            None
        }
    }
}

/// /etc is a tmpfs rebuilt at every boot: links into the verified root for
/// what the OS ships, files for what this node is.
pub fn build_etc(_: &mut Ctx) -> Result<(), TaskError> {
    let etc = Path::new("/etc");
    let flags = MountFlags::MS_NOSUID | MountFlags::MS_NODEV | MountFlags::MS_NOEXEC;
    keel_sys::fs::mount("etc", etc, "tmpfs", flags, Some("mode=0755"))?;
    let io = |op: &'static str, p: &Path| {
        let path = p.to_path_buf();
        move |source| TaskError::Io { op, path, source }
    };
    // Homes live on STATE (/home links there in the root image).
    let homes = Path::new(STATE_DIR).join("home");
    std::fs::create_dir_all(&homes).map_err(io("create", &homes))?;
    let ssl = etc.join("ssl/certs");
    std::fs::create_dir_all(&ssl).map_err(io("create", &ssl))?;
    for (link, target) in [
        ("os-release", "../usr/lib/os-release"),
        (
            "ssl/certs/ca-certificates.crt",
            "../../../usr/share/ca-certificates/ca-bundle.crt",
        ),
    ] {
        let p = etc.join(link);
        std::os::unix::fs::symlink(target, &p).map_err(io("link", &p))?;
    }
    for (name, text) in [
        ("hostname", "keel\n"),
        ("hosts", "127.0.0.1 localhost keel\n::1 localhost keel\n"),
    ] {
        let p = etc.join(name);
        std::fs::write(&p, text).map_err(io("write", &p))?;
    }
    Ok(())
}

/// The state of the booted slot to mark successful later: only a disk slot
/// (it has state bits) not marked yet.
fn state_to_mark(found: &Found, booted: &str) -> Option<SlotState> {
    let st = found.slots.iter().find(|s| s.name == booted)?.state?;
    (!st.successful).then_some(st)
}

/// Whether dm-verity's status (`keel_sys::dm::status`) lets the booted slot
/// be marked successful, or why not. Only a "V" (every block read so far
/// verified) does: a status that cannot be read proves nothing, and a slot
/// marked successful is never checked in full again.
fn verity_lets_mark(status: &Result<String, SysError>) -> Result<(), String> {
    match status {
        Ok(v) if v.trim() == "V" => Ok(()),
        Ok(v) if v.trim() == "C" => Err("dm-verity saw corruption".into()),
        Ok(v) => Err(format!("dm-verity status {v:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// After the node stayed up `after`, mark the booted disk slot successful
/// (a thread: GPT writes are blocking I/O).
pub fn spawn_mark_successful(ctx: &mut Ctx, after: Duration) {
    let (Some(found), Some(name)) = (ctx.root.found.take(), ctx.root.booted.clone()) else {
        return;
    };
    let Some(st) = state_to_mark(&found, &name) else {
        return;
    };
    let node = ctx.node.clone();
    let slot_name = name.clone();
    let spawned = std::thread::Builder::new()
        .name("mark-successful".into())
        .spawn(move || {
            let mut found = found;
            std::thread::sleep(after);
            if !node.is_ready() {
                return;
            }
            if let Err(why) = verity_lets_mark(&keel_sys::dm::status(DM_NAME)) {
                error!("slot {name}: {why}: not marking it successful");
                return;
            }
            match root::write_state(&mut found, &name, st.mark_successful()) {
                Ok(()) => {
                    info!("slot {name}: healthy for {after:?}: marked successful");
                    node.update_root(|r| {
                        r.successful = true;
                        r.slots = slot_infos(&found);
                    });
                }
                Err(e) => error!("slot {name}: could not mark it successful: {e}"),
            }
        });
    if let Err(e) = spawned {
        error!("slot {slot_name}: cannot start the timer that marks it successful: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{disk, disk_with_state, diskless, st};
    use super::*;

    #[test]
    fn state_is_the_disk_partition_then_keel_state_then_tmpfs() {
        let found = disk_with_state(&[("A", st(2, 0, true))], Some(3));
        assert_eq!(
            state_plan(Some(&found), Some("/dev/vdb"), true),
            StatePlan {
                device: Some("/dev/vda3".into()),
                grow: Some(3),
            }
        );
        // Rescue: the partition is used but the GPT is left as it is.
        assert_eq!(
            state_plan(Some(&found), None, false),
            StatePlan {
                device: Some("/dev/vda3".into()),
                grow: None,
            }
        );
        let no_state = disk(&[("A", st(2, 0, true))]);
        for found in [Some(&no_state), Some(&diskless()), None] {
            assert_eq!(
                state_plan(found, Some("/dev/vdb"), true),
                StatePlan {
                    device: Some("/dev/vdb".into()),
                    grow: None,
                }
            );
            assert_eq!(
                state_plan(found, None, true),
                StatePlan {
                    device: None,
                    grow: None,
                }
            );
        }
    }

    #[test]
    fn only_a_booted_disk_slot_not_yet_successful_is_marked() {
        let found = disk(&[("A", st(2, 2, false)), ("B", st(1, 0, true))]);
        assert_eq!(state_to_mark(&found, "A"), Some(st(2, 2, false)));
        assert_eq!(state_to_mark(&found, "B"), None, "already successful");
        assert_eq!(state_to_mark(&found, "C"), None);
        assert_eq!(state_to_mark(&diskless(), "diskless"), None);
    }

    #[test]
    fn only_a_verified_dm_verity_status_lets_the_slot_be_marked() {
        assert_eq!(verity_lets_mark(&Ok("V\n".into())), Ok(()));
        assert_eq!(
            verity_lets_mark(&Ok("C".into())),
            Err("dm-verity saw corruption".into())
        );
        assert_eq!(
            verity_lets_mark(&Ok("".into())),
            Err("dm-verity status \"\"".into())
        );
        let e = SysError::Io {
            op: "open",
            path: "/dev/mapper/control".into(),
            source: std::io::Error::other("gone"),
        };
        let why = verity_lets_mark(&Err(e)).unwrap_err();
        assert!(why.contains("/dev/mapper/control"), "{why}");
    }
}
