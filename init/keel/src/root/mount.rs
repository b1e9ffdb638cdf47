//! MountRoot's decisions, apart from the disk and the kernel.
//!
//! 1. **Pick** the next slot ([`next_slot`]): diskless, the one slot; on a
//!    disk the slot a kexec named (`keel.slot=`, first try only), else the
//!    bootable slot of highest priority with one try taken, written before
//!    the slot is trusted.
//! 2. **Open** its signed manifest; **kexec** ([`wants_kexec`]) when on a
//!    disk the slot's build differs from the running one and no kexec
//!    happened yet, with the old command line plus `keel.slot=`
//!    ([`kexec_cmdline`]); a failed kexec boots the root with the running
//!    kernel.
//! 3. **Check the content** in full ([`wants_content_check`]) when the slot
//!    is not known good or `keel.verify=full` asks for it.
//! 4. **Map and mount** it. A failure at 2-4 records the refusal, marks the
//!    slot bad on a disk and goes back to 1; no slot left is rescue mode.
//!
//! Every read and write of the disk and every kexec step goes through
//! [`RootIo`], so the decisions run in tests against a fake that records
//! the calls.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keel_api::{ContentCheck, RefusedSlot, RootStatus};
use keel_boot::root::{Found, Mounted, RootError, Slot, Source};
use keel_boot::{error, info, warn};
use keel_slot::manifest::{Manifest, TrustedKey, Verified};
use keel_slot::state::{self, SlotState};
use keel_sys::SysError;

use super::{slot_infos, RootCtx};

/// The disk and kernel I/O of MountRoot. The boot's implementation calls
/// `keel_boot::root` and `keel_sys`; tests record the calls.
pub trait RootIo {
    /// Write a slot's A/B state into the GPT (and into `found` once written).
    fn write_state(
        &mut self,
        found: &mut Found,
        slot: &str,
        state: SlotState,
    ) -> Result<(), RootError>;
    /// Read the slot's footer and verify its manifest against `keys`.
    fn open(&mut self, slot: &Slot, keys: &[TrustedKey]) -> Result<Verified, RootError>;
    /// BLAKE3 of the slot's whole content against the signed digest; how long
    /// it took.
    fn check_content(&mut self, slot: &Slot, m: &Manifest) -> Result<Duration, RootError>;
    /// Map the root image through dm-verity and mount it on the sysroot.
    fn map_and_mount(&mut self, slot: &Slot, m: &Manifest) -> Result<Mounted, RootError>;
    /// Copy out the slot's kernel and initramfs (checked); `None` when the
    /// slot carries none.
    fn extract_boot(
        &mut self,
        slot: &Slot,
        m: &Manifest,
    ) -> Result<Option<(PathBuf, PathBuf)>, RootError>;
    /// The running kernel's command line.
    fn kernel_cmdline(&mut self) -> String;
    fn kexec_load(
        &mut self,
        kernel: &Path,
        initramfs: &Path,
        cmdline: &str,
    ) -> Result<(), SysError>;
    /// Jump into the loaded kernel; returns only when that failed.
    fn kexec_exec(&mut self) -> SysError;
}

/// What the kernel command line asks of the root.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked<'a> {
    /// `keel.slot=`: the slot the keel before the kexec chose.
    pub slot: Option<&'a str>,
    /// `keel.verify=full`: check the content even of a known good slot.
    pub verify_full: bool,
}

/// The slot to try next, and the state to write before trusting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    pub name: String,
    /// The state with one try taken, when that changes it.
    pub write: Option<SlotState>,
}

/// The next slot to try, among those not in `tried`: diskless, the one
/// slot; on a disk the `keel.slot=` one on the first pick (the keel before
/// the kexec took its try), else the bootable one of highest priority with
/// its try taken.
pub fn next_slot(found: &Found, tried: &[String], asked: Option<&str>) -> Option<Pick> {
    let candidates: Vec<&Slot> = found
        .slots
        .iter()
        .filter(|s| !tried.contains(&s.name))
        .collect();
    let untouched = |s: &Slot| Pick {
        name: s.name.clone(),
        write: None,
    };
    if !matches!(found.source, Source::Disk { .. }) {
        return candidates.first().map(|s| untouched(s));
    }
    if let Some(want) = asked {
        if tried.is_empty() {
            if let Some(s) = candidates.iter().find(|s| s.name == want) {
                return Some(untouched(s));
            }
        }
    }
    let states: Vec<SlotState> = candidates
        .iter()
        .map(|s| s.state.unwrap_or_default())
        .collect();
    let i = state::choose(&states)?;
    let next = states[i].take_try();
    Some(Pick {
        name: candidates[i].name.clone(),
        write: (next != states[i]).then_some(next),
    })
}

/// Whether to kexec into the slot's own kernel: on a disk (a diskless
/// slot came with the running kernel), only when its build differs from
/// the running one (an unknown running build differs from every slot), and
/// not into the slot a kexec already named (`keel.slot=`: never loop). A
/// kexec'd kernel whose named slot was refused does kexec into the slot
/// that boots instead: its root would not match the running kernel. No
/// loop either: the refused slot was marked bad, so it is never picked
/// again.
pub fn wants_kexec(
    disk: bool,
    slot: &str,
    asked: Option<&str>,
    running_build: Option<&str>,
    slot_build: &str,
) -> bool {
    disk && asked != Some(slot) && running_build != Some(slot_build)
}

/// Whether to check the slot's whole content: a slot not yet marked
/// successful (a diskless slot counts as known good: it came inside the
/// signed initramfs), or any slot under `keel.verify=full`.
pub fn wants_content_check(disk: bool, state: Option<SlotState>, verify_full: bool) -> bool {
    let known_good = state.map(|s| s.successful).unwrap_or(!disk);
    !known_good || verify_full
}

/// The command line of the kexec'd kernel: the running one without any
/// `keel.slot=`, then `keel.slot=<slot>` so the next keel boots that slot
/// without taking another try or kexecing again.
pub fn kexec_cmdline(current: &str, slot: &str) -> String {
    let mut words: Vec<&str> = current
        .split_whitespace()
        .filter(|w| !w.starts_with("keel.slot="))
        .collect();
    let slot_arg = format!("keel.slot={slot}");
    words.push(&slot_arg);
    words.join(" ")
}

/// Try slots until one mounts; each refusal is recorded and, on a disk,
/// written as "bad" into the GPT so it is never tried again. No slot at all,
/// or none trusted, is rescue mode.
pub fn mount_root_with(
    io: &mut dyn RootIo,
    root: &mut RootCtx,
    status: &mut RootStatus,
    asked: Asked<'_>,
) {
    let Some(mut found) = root.found.take() else {
        status.mode = "rescue".into();
        return;
    };
    let disk = matches!(found.source, Source::Disk { .. });
    let mut tried: Vec<String> = Vec::new();
    loop {
        let pick = pick_slot(io, &mut found, &tried, asked.slot);
        let Some(slot) = pick else { break };
        tried.push(slot.name.clone());
        match try_slot(io, root, status, asked, &slot, disk) {
            Ok(()) => {
                status.mode = if disk { "disk" } else { "diskless" }.into();
                status.slot = Some(slot.name.clone());
                status.successful = slot.state.map(|s| s.successful).unwrap_or(false);
                root.booted = Some(slot.name.clone());
                root.mounted = true;
                break;
            }
            Err(e) => {
                error!("slot {} refused: {e}", slot.name);
                status.refused.push(RefusedSlot {
                    slot: slot.name.clone(),
                    reason: e.to_string(),
                });
                if let Some(st) = slot.state {
                    if let Err(we) = io.write_state(&mut found, &slot.name, st.mark_bad()) {
                        error!("slot {}: could not mark it bad: {we}", slot.name);
                    }
                }
            }
        }
    }
    status.slots = slot_infos(&found);
    root.found = Some(found);
    if !root.mounted {
        status.mode = "rescue".into();
        error!(
            "no slot could be trusted: rescue mode (the API says why); not rebooting into a loop"
        );
    }
}

/// [`next_slot`], its try written; the slot as it stands after the write.
fn pick_slot(
    io: &mut dyn RootIo,
    found: &mut Found,
    tried: &[String],
    asked: Option<&str>,
) -> Option<Slot> {
    let pick = next_slot(found, tried, asked)?;
    if let Some(next) = pick.write {
        if let Err(e) = io.write_state(found, &pick.name, next) {
            error!("slot {}: could not record the boot try: {e}", pick.name);
        }
    }
    found.slots.iter().find(|s| s.name == pick.name).cloned()
}

fn try_slot(
    io: &mut dyn RootIo,
    root: &RootCtx,
    status: &mut RootStatus,
    asked: Asked<'_>,
    slot: &Slot,
    disk: bool,
) -> Result<(), RootError> {
    let t = Instant::now();
    let v = io.open(slot, &root.keys)?;
    let open_time = t.elapsed();
    let m = &v.manifest;
    info!(
        "slot {}: keel {} ({}) build {}, signed by {}",
        slot.name,
        m.version,
        m.channel,
        m.build_id,
        &v.key_id[..16]
    );
    status.version = Some(m.version.clone());
    status.channel = Some(m.channel.clone());
    status.build_id = Some(m.build_id.clone());
    status.key_id = Some(v.key_id.clone());
    status.root_hash = Some(m.verity.root_hash.clone());
    let running = root.running_build.as_deref();
    if wants_kexec(disk, &slot.name, asked.slot, running, &m.build_id) {
        kexec_into(io, slot, m, running);
    }
    if wants_content_check(disk, slot.state, asked.verify_full) {
        let took = io.check_content(slot, m)?;
        let mib_s = m.content.size as f64 / 1048576.0 / took.as_secs_f64().max(1e-9);
        info!("slot {}: content ({} bytes) matches its signed BLAKE3 digest ({:.1} ms, {mib_s:.0} MiB/s)", slot.name, m.content.size, took.as_secs_f64() * 1e3);
        status.content_check = Some(ContentCheck {
            bytes: m.content.size,
            micros: took.as_micros() as u64,
        });
    }
    let mounted = io.map_and_mount(slot, m)?;
    info!(
        "slot {}: manifest checked in {:.1} ms, dm-verity mapped in {:.1} ms ({}), root mounted in {:.1} ms",
        slot.name,
        open_time.as_secs_f64() * 1e3,
        mounted.map_time.as_secs_f64() * 1e3,
        mounted.device.path().display(),
        mounted.mount_time.as_secs_f64() * 1e3
    );
    status.verity = "verified".into();
    Ok(())
}

/// The slot carries another kernel and initramfs than the running ones: load
/// them and jump. Returns only when that failed (the boot goes on with the
/// running kernel, which is what the issue of a failed kexec calls for).
fn kexec_into(io: &mut dyn RootIo, slot: &Slot, m: &Manifest, running: Option<&str>) {
    let files = match io.extract_boot(slot, m) {
        Ok(Some(f)) => f,
        Ok(None) => return,
        Err(e) => {
            warn!(
                "slot {}: cannot kexec: {e}; booting its root with the running kernel",
                slot.name
            );
            return;
        }
    };
    let cmdline = kexec_cmdline(&io.kernel_cmdline(), &slot.name);
    info!(
        "slot {}: build {} differs from the running {}: kexec into its kernel",
        slot.name,
        m.build_id,
        running.unwrap_or("?")
    );
    if let Err(e) = io.kexec_load(&files.0, &files.1, &cmdline) {
        warn!(
            "slot {}: {e}; booting its root with the running kernel",
            slot.name
        );
        return;
    }
    let e = io.kexec_exec();
    warn!(
        "slot {}: {e}; booting its root with the running kernel",
        slot.name
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::fixtures::{disk, diskless, st};
    use keel_slot::manifest::{Extent, ManifestError, Part, Verity};
    use keel_sys::dm::DmDevice;

    const RUNNING: &str = "running-build";

    /// How the fake fails a slot.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fail {
        Open,
        Content,
        Mount,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Call {
        Write(String, SlotState),
        Open(String),
        Check(String),
        Mount(String),
        Extract(String),
        Cmdline,
        KexecLoad(PathBuf, PathBuf, String),
        KexecExec,
    }
    use Call::*;

    /// A disk and kernel that record every call. Slots are good and carry
    /// the running build unless told otherwise.
    #[derive(Default)]
    struct Fake {
        calls: Vec<Call>,
        fail: Vec<(&'static str, Fail)>,
        builds: Vec<(&'static str, &'static str)>,
        /// The slot carries no kernel and initramfs.
        no_kernel: bool,
        kexec_load_fails: bool,
        writes_fail: bool,
        cmdline: &'static str,
    }

    impl Fake {
        fn fails(&self, slot: &Slot, how: Fail) -> bool {
            self.fail.contains(&(slot.name.as_str(), how))
        }

        fn writes(&self) -> Vec<(String, SlotState)> {
            self.calls
                .iter()
                .filter_map(|c| match c {
                    Write(n, s) => Some((n.clone(), *s)),
                    _ => None,
                })
                .collect()
        }

        fn kexecs(&self) -> bool {
            self.calls.iter().any(|c| matches!(c, KexecLoad(..)))
        }

        fn checked(&self, slot: &str) -> bool {
            self.calls.contains(&Check(slot.into()))
        }
    }

    fn sys_err(op: &'static str) -> SysError {
        SysError::Io {
            op,
            path: "/fake".into(),
            source: std::io::Error::other("refused by the fake"),
        }
    }

    impl RootIo for Fake {
        fn write_state(
            &mut self,
            found: &mut Found,
            slot: &str,
            state: SlotState,
        ) -> Result<(), RootError> {
            self.calls.push(Write(slot.into(), state));
            if self.writes_fail {
                return Err(RootError::Io {
                    op: "open",
                    path: "/dev/vda".into(),
                    source: std::io::Error::other("read-only disk"),
                });
            }
            // As `keel_boot::root::write_state`: the new state once written.
            if let Some(s) = found.slots.iter_mut().find(|s| s.name == slot) {
                s.state = Some(state);
            }
            Ok(())
        }

        fn open(&mut self, slot: &Slot, _: &[TrustedKey]) -> Result<Verified, RootError> {
            self.calls.push(Open(slot.name.clone()));
            if self.fails(slot, Fail::Open) {
                return Err(RootError::Manifest {
                    slot: slot.name.clone(),
                    source: ManifestError::BadSignature {
                        key_id: "ab".repeat(32),
                    },
                });
            }
            let build = self
                .builds
                .iter()
                .find(|(n, _)| *n == slot.name)
                .map_or(RUNNING, |(_, b)| *b);
            Ok(Verified {
                manifest: manifest(build),
                key_id: "4b".repeat(32),
            })
        }

        fn check_content(&mut self, slot: &Slot, m: &Manifest) -> Result<Duration, RootError> {
            self.calls.push(Check(slot.name.clone()));
            if self.fails(slot, Fail::Content) {
                return Err(RootError::Digest {
                    slot: slot.name.clone(),
                    size: m.content.size,
                });
            }
            Ok(Duration::from_millis(3))
        }

        fn map_and_mount(&mut self, slot: &Slot, _: &Manifest) -> Result<Mounted, RootError> {
            self.calls.push(Mount(slot.name.clone()));
            if self.fails(slot, Fail::Mount) {
                return Err(RootError::MountCorrupt {
                    slot: slot.name.clone(),
                    source: sys_err("mount"),
                });
            }
            Ok(Mounted {
                device: DmDevice {
                    name: "keel-root".into(),
                    major: 253,
                    minor: 0,
                },
                loop_dev: None,
                map_time: Duration::from_millis(1),
                mount_time: Duration::from_millis(2),
            })
        }

        fn extract_boot(
            &mut self,
            slot: &Slot,
            _: &Manifest,
        ) -> Result<Option<(PathBuf, PathBuf)>, RootError> {
            self.calls.push(Extract(slot.name.clone()));
            Ok((!self.no_kernel).then(|| ("/run/k".into(), "/run/i".into())))
        }

        fn kernel_cmdline(&mut self) -> String {
            self.calls.push(Cmdline);
            self.cmdline.into()
        }

        fn kexec_load(
            &mut self,
            kernel: &Path,
            initramfs: &Path,
            cmdline: &str,
        ) -> Result<(), SysError> {
            self.calls
                .push(KexecLoad(kernel.into(), initramfs.into(), cmdline.into()));
            if self.kexec_load_fails {
                return Err(sys_err("kexec_file_load"));
            }
            Ok(())
        }

        fn kexec_exec(&mut self) -> SysError {
            // The real one does not return when it works; the fake always
            // returns, as a jump the kernel refused.
            self.calls.push(KexecExec);
            sys_err("reboot(KEXEC)")
        }
    }

    fn manifest(build: &str) -> Manifest {
        let part = |offset, size, d: &str| Part {
            offset,
            size,
            blake3: d.repeat(32),
        };
        Manifest {
            format: 1,
            name: "keel".into(),
            version: "0.1.0".into(),
            channel: "dev".into(),
            build_id: build.into(),
            fs: "erofs".into(),
            root: Extent {
                offset: 0,
                size: 1 << 20,
            },
            verity: Verity {
                algorithm: "sha256".into(),
                data_blocks: 256,
                hash: Extent {
                    offset: 1 << 20,
                    size: 16384,
                },
                root_hash: "ab".repeat(32),
                salt: "01".repeat(32),
            },
            kernel: Some(part(2 << 20, 5000, "cd")),
            initramfs: Some(part(3 << 20, 100, "ef")),
            content: part(0, 4 << 20, "00"),
        }
    }

    /// Run MountRoot over `found` with the fake.
    fn run(io: &mut Fake, found: Option<Found>, asked: Asked<'_>) -> (RootCtx, RootStatus) {
        let mut root = RootCtx {
            found,
            running_build: Some(RUNNING.into()),
            ..RootCtx::default()
        };
        let mut status = RootStatus::default();
        mount_root_with(io, &mut root, &mut status, asked);
        (root, status)
    }

    fn pick(name: &str, write: Option<SlotState>) -> Option<Pick> {
        Some(Pick {
            name: name.into(),
            write,
        })
    }

    // --- the pure decisions ---

    #[test]
    fn a_disk_picks_the_bootable_slot_of_highest_priority_with_a_try_taken() {
        let f = disk(&[("A", st(1, 3, false)), ("B", st(2, 3, false))]);
        assert_eq!(next_slot(&f, &[], None), pick("B", Some(st(2, 2, false))));
        // Ties go to A; a slot known good is taken as it is.
        let f = disk(&[("A", st(2, 0, true)), ("B", st(2, 3, false))]);
        assert_eq!(next_slot(&f, &[], None), pick("A", None));
        // The tried one is skipped; none bootable is none.
        assert_eq!(
            next_slot(&f, &["A".into()], None),
            pick("B", Some(st(2, 2, false)))
        );
        let f = disk(&[("A", st(0, 0, false)), ("B", st(2, 0, false))]);
        assert_eq!(next_slot(&f, &[], None), None);
    }

    #[test]
    fn after_a_kexec_the_named_slot_comes_first_and_only_first() {
        let f = disk(&[("A", st(2, 3, false)), ("B", st(1, 2, false))]);
        // The keel before the kexec took its try.
        assert_eq!(next_slot(&f, &[], Some("B")), pick("B", None));
        // B refused: back to the normal choice, try taken.
        assert_eq!(
            next_slot(&f, &["B".into()], Some("B")),
            pick("A", Some(st(2, 2, false)))
        );
        // A name that is no slot here is ignored.
        assert_eq!(
            next_slot(&f, &[], Some("C")),
            pick("A", Some(st(2, 2, false)))
        );
    }

    #[test]
    fn diskless_picks_its_one_slot_without_a_write() {
        let f = diskless();
        assert_eq!(next_slot(&f, &[], Some("A")), pick("diskless", None));
        assert_eq!(next_slot(&f, &["diskless".into()], None), None);
    }

    #[test]
    fn kexec_only_on_a_disk_before_any_kexec_into_another_build() {
        assert!(wants_kexec(true, "A", None, Some("a"), "b"));
        assert!(
            wants_kexec(true, "A", None, None, "b"),
            "unknown running build"
        );
        assert!(!wants_kexec(true, "A", None, Some("b"), "b"), "same build");
        assert!(
            !wants_kexec(true, "A", Some("A"), Some("a"), "b"),
            "after a kexec into A"
        );
        // The slot the kexec named was refused: B boots, with its kernel.
        assert!(
            wants_kexec(true, "B", Some("A"), Some("a"), "b"),
            "B after A, kexec'd, was refused"
        );
        assert!(!wants_kexec(false, "A", None, Some("a"), "b"), "diskless");
    }

    #[test]
    fn content_check_unless_known_good_or_when_asked() {
        assert!(wants_content_check(true, Some(st(2, 3, false)), false));
        assert!(!wants_content_check(true, Some(st(2, 0, true)), false));
        assert!(wants_content_check(true, Some(st(2, 0, true)), true));
        // A disk slot without state bits is not known good.
        assert!(wants_content_check(true, None, false));
        // Diskless: inside the signed initramfs, known good.
        assert!(!wants_content_check(false, None, false));
        assert!(wants_content_check(false, None, true));
    }

    #[test]
    fn kexec_cmdline_swaps_keel_slot() {
        assert_eq!(
            kexec_cmdline("console=ttyS0 quiet keel.verify=full\n", "B"),
            "console=ttyS0 quiet keel.verify=full keel.slot=B"
        );
        assert_eq!(
            kexec_cmdline("keel.slot=A  console=ttyS0 keel.slot=", "B"),
            "console=ttyS0 keel.slot=B"
        );
        assert_eq!(kexec_cmdline("", "A"), "keel.slot=A");
    }

    // --- MountRoot through the seam ---

    #[test]
    fn no_slot_at_all_is_rescue() {
        let mut io = Fake::default();
        let (root, status) = run(&mut io, None, Asked::default());
        assert_eq!(status.mode, "rescue");
        assert!(status.refused.is_empty() && status.slot.is_none());
        assert!(!root.mounted && root.found.is_none());
        assert_eq!(io.calls, []);
    }

    #[test]
    fn no_bootable_slot_is_rescue_without_refusals() {
        let mut io = Fake::default();
        let found = disk(&[("A", st(0, 0, false)), ("B", st(1, 0, false))]);
        let (root, status) = run(&mut io, Some(found), Asked::default());
        assert_eq!(status.mode, "rescue");
        assert!(status.refused.is_empty());
        assert_eq!(io.calls, []);
        assert!(!root.mounted);
        assert_eq!(status.slots.len(), 2, "the slots stay in the status");
        assert!(root.found.is_some(), "kept for STATE");
    }

    #[test]
    fn a_new_slot_has_its_try_written_before_it_is_opened_and_checked_in_full() {
        let mut io = Fake::default();
        let found = disk(&[("A", st(2, 3, false)), ("B", st(1, 0, true))]);
        let (root, status) = run(&mut io, Some(found), Asked::default());
        assert_eq!(
            io.calls,
            [
                Write("A".into(), st(2, 2, false)),
                Open("A".into()),
                Check("A".into()),
                Mount("A".into()),
            ]
        );
        assert_eq!(status.mode, "disk");
        assert_eq!(status.slot.as_deref(), Some("A"));
        assert!(!status.successful);
        assert_eq!(status.verity, "verified");
        assert_eq!(status.build_id.as_deref(), Some(RUNNING));
        assert_eq!(status.key_id.as_deref(), Some("4b".repeat(32).as_str()));
        assert_eq!(
            status.content_check,
            Some(ContentCheck {
                bytes: 4 << 20,
                micros: 3000
            })
        );
        assert_eq!(status.slots[0].tries, 2, "the status shows the try taken");
        assert!(root.mounted);
        assert_eq!(root.booted.as_deref(), Some("A"));
    }

    #[test]
    fn a_known_good_slot_is_not_checked_in_full_unless_asked() {
        let found = || Some(disk(&[("A", st(2, 0, true)), ("B", st(1, 0, false))]));
        let mut io = Fake::default();
        let (_, status) = run(&mut io, found(), Asked::default());
        assert_eq!(io.calls, [Open("A".into()), Mount("A".into())]);
        assert!(status.successful);
        assert_eq!(status.content_check, None);

        let mut io = Fake::default();
        let asked = Asked {
            verify_full: true,
            ..Asked::default()
        };
        let (_, status) = run(&mut io, found(), asked);
        assert!(io.checked("A"));
        assert!(status.content_check.is_some());
    }

    #[test]
    fn a_refused_slot_is_marked_bad_and_the_next_one_boots() {
        let mut io = Fake {
            fail: vec![("A", Fail::Content)],
            ..Fake::default()
        };
        let found = disk(&[("A", st(2, 3, false)), ("B", st(1, 3, false))]);
        let (root, status) = run(&mut io, Some(found), Asked::default());
        assert_eq!(
            io.calls,
            [
                Write("A".into(), st(2, 2, false)),
                Open("A".into()),
                Check("A".into()),
                Write("A".into(), SlotState::default()),
                Write("B".into(), st(1, 2, false)),
                Open("B".into()),
                Check("B".into()),
                Mount("B".into()),
            ]
        );
        assert_eq!(status.mode, "disk");
        assert_eq!(status.slot.as_deref(), Some("B"));
        assert_eq!(status.refused.len(), 1);
        assert_eq!(status.refused[0].slot, "A");
        assert!(
            status.refused[0].reason.contains("content digest mismatch"),
            "{:?}",
            status.refused
        );
        let a = &status.slots[0];
        assert_eq!((a.priority, a.tries, a.successful), (0, 0, false));
        assert_eq!(root.booted.as_deref(), Some("B"));
    }

    #[test]
    fn every_slot_refused_is_rescue_with_each_marked_bad() {
        let mut io = Fake {
            fail: vec![("A", Fail::Open), ("B", Fail::Mount)],
            ..Fake::default()
        };
        let found = disk(&[("A", st(2, 3, false)), ("B", st(1, 0, true))]);
        let (root, status) = run(&mut io, Some(found), Asked::default());
        assert_eq!(
            io.writes(),
            [
                ("A".into(), st(2, 2, false)),
                ("A".into(), SlotState::default()),
                ("B".into(), SlotState::default()),
            ]
        );
        assert!(!io.calls.contains(&Check("A".into())), "refused at open");
        assert_eq!(status.mode, "rescue");
        let refused: Vec<&str> = status.refused.iter().map(|r| r.slot.as_str()).collect();
        assert_eq!(refused, ["A", "B"]);
        assert!(status.refused[0]
            .reason
            .contains("signature does not verify"));
        assert!(status.refused[1]
            .reason
            .contains("dm-verity refused a block"));
        assert!(!root.mounted && root.booted.is_none());
        assert!(status.slots.iter().all(|s| s.priority == 0));
    }

    #[test]
    fn a_failed_write_still_tries_the_slot() {
        let mut io = Fake {
            writes_fail: true,
            fail: vec![("A", Fail::Content)],
            ..Fake::default()
        };
        let found = disk(&[("A", st(2, 3, false)), ("B", st(1, 3, false))]);
        let (_, status) = run(&mut io, Some(found), Asked::default());
        assert_eq!(status.slot.as_deref(), Some("B"));
        // Nothing written: the status shows the disk as it is.
        assert_eq!(status.slots[0].tries, 3);
        assert_eq!(status.slots[1].tries, 3);
    }

    #[test]
    fn another_build_is_entered_through_kexec_with_keel_slot() {
        let mut io = Fake {
            builds: vec![("A", "new-build")],
            cmdline: "console=ttyS0 keel.verify=full\n",
            ..Fake::default()
        };
        let found = disk(&[("A", st(2, 3, false))]);
        let (_, status) = run(&mut io, Some(found), Asked::default());
        assert_eq!(
            io.calls,
            [
                Write("A".into(), st(2, 2, false)),
                Open("A".into()),
                Extract("A".into()),
                Cmdline,
                KexecLoad(
                    "/run/k".into(),
                    "/run/i".into(),
                    "console=ttyS0 keel.verify=full keel.slot=A".into()
                ),
                KexecExec,
                // The jump failed: the root boots with the running kernel.
                Check("A".into()),
                Mount("A".into()),
            ]
        );
        assert_eq!(status.build_id.as_deref(), Some("new-build"));
        assert_eq!(status.slot.as_deref(), Some("A"));
    }

    #[test]
    fn a_failed_kexec_load_or_no_kernel_boots_with_the_running_kernel() {
        let mut io = Fake {
            builds: vec![("A", "new-build")],
            kexec_load_fails: true,
            ..Fake::default()
        };
        let found = || Some(disk(&[("A", st(2, 0, true))]));
        let (_, status) = run(&mut io, found(), Asked::default());
        assert!(io.kexecs() && !io.calls.contains(&KexecExec));
        assert_eq!(status.slot.as_deref(), Some("A"));

        let mut io = Fake {
            builds: vec![("A", "new-build")],
            no_kernel: true,
            ..Fake::default()
        };
        let (_, status) = run(&mut io, found(), Asked::default());
        assert_eq!(
            io.calls,
            [Open("A".into()), Extract("A".into()), Mount("A".into())]
        );
        assert_eq!(status.slot.as_deref(), Some("A"));
    }

    #[test]
    fn after_a_kexec_the_named_slot_boots_without_a_try_or_another_kexec() {
        let mut io = Fake {
            builds: vec![("B", "new-build")],
            ..Fake::default()
        };
        let found = disk(&[("A", st(2, 3, false)), ("B", st(1, 2, false))]);
        let asked = Asked {
            slot: Some("B"),
            verify_full: false,
        };
        let (_, status) = run(&mut io, Some(found), asked);
        assert_eq!(
            io.calls,
            [Open("B".into()), Check("B".into()), Mount("B".into())]
        );
        assert_eq!(status.slot.as_deref(), Some("B"));
        assert_eq!(status.slots[1].tries, 2);
    }

    #[test]
    fn diskless_never_writes_kexecs_or_checks_unless_asked() {
        let mut io = Fake {
            builds: vec![("diskless", "other-build")],
            ..Fake::default()
        };
        let (root, status) = run(&mut io, Some(diskless()), Asked::default());
        assert_eq!(
            io.calls,
            [Open("diskless".into()), Mount("diskless".into())]
        );
        assert_eq!(status.mode, "diskless");
        assert_eq!(status.slot.as_deref(), Some("diskless"));
        assert!(status.slots.is_empty());
        assert!(root.mounted);

        let mut io = Fake {
            fail: vec![("diskless", Fail::Content)],
            ..Fake::default()
        };
        let asked = Asked {
            verify_full: true,
            ..Asked::default()
        };
        let (root, status) = run(&mut io, Some(diskless()), asked);
        assert_eq!(io.writes(), [], "no GPT to mark");
        assert_eq!(status.mode, "rescue");
        assert_eq!(status.refused[0].slot, "diskless");
        assert!(!root.mounted);
    }
}
