//! VM tests of the verified root: diskless, disk (A/B), UEFI and iPXE boots,
//! tampering of every kind, the A/B state, kexec, STATE growth. Disk tests
//! boot copies of build/disk.img; the fast ones through `-kernel` with the
//! disk initramfs on microvm, the firmware ones as users do.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use keel_api::Status;
use keel_slot::gpt::{Gpt, SECTOR};
use keel_slot::layout::{footer_offset, FOOTER_SIZE};
use keel_slot::state::SlotState;
use keel_vmtests::{build_dir, keel_image, release_bin, root, Scratch, Variant, Vm, VmConfig};

const EXIT: Duration = Duration::from_secs(60);

fn boot(cfg: VmConfig) -> Vm {
    let mut vm = Vm::start(cfg);
    vm.wait_ready();
    vm.assert_kernel_alive();
    vm
}

fn build_id() -> String {
    std::fs::read_to_string(build_dir().join("build-id"))
        .expect("build/build-id (make images)")
        .trim()
        .to_string()
}

fn flip(path: &Path, offset: u64) {
    let f = File::options().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x5a;
    f.write_all_at(&b, offset).unwrap();
}

/// An initramfs like the user's, carrying `slot` instead of build/root.slot.
fn initramfs_with_slot(s: &Scratch, slot: &Path, pubkey: Option<&Path>) -> PathBuf {
    let out = s.path("initramfs.cpio.zst");
    let rel = release_bin("");
    let b = build_dir();
    let pubkey = pubkey
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root().join("keys/keel-dev.pub"));
    keel_image(&[
        "initramfs",
        "--spec",
        "initramfs/keel.list",
        "--spec",
        "initramfs/diskless.list",
        &format!("--var=KEEL_BIN={}", rel.join("keel").display()),
        &format!("--var=PUBKEY={}", pubkey.display()),
        &format!("--var=BUILD_ID_FILE={}", b.join("build-id").display()),
        &format!("--var=ROOT_SLOT={}", slot.display()),
        "--out",
        &out.to_string_lossy(),
    ]);
    out
}

/// The manifest of a slot file, read without checking (test side).
fn manifest_of(path: &Path) -> keel_slot::manifest::Manifest {
    let bytes = std::fs::read(path).unwrap();
    let at = footer_offset(bytes.len() as u64).unwrap() as usize;
    let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
    serde_json::from_slice(&bytes[at + 108..at + 108 + len]).unwrap()
}

fn assert_refused_then_rescue(vm: &Vm, needle: &str) -> Status {
    let s = vm.status();
    assert_eq!(s.root.mode, "rescue", "{:?}", s.root);
    assert_eq!(s.root.refused.len(), 1, "{:?}", s.root);
    assert!(
        s.root.refused[0].reason.contains(needle),
        "refusal {:?} should mention {needle:?}",
        s.root.refused[0].reason
    );
    assert!(vm.console().contains("refused: "), "the console says why");
    vm.assert_no_fatal();
    // `keelctl status` names the mode on its first line and the reason
    // right under it.
    assert_eq!(s.mode, keel_api::NodeMode::Rescue);
    let (ok, out, err) = vm.keelctl(&["status"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains(", RESCUE: no OS slot could be trusted, running from the initramfs,"),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!("  slot {} refused: ", s.root.refused[0].slot))
            && lines[1].contains(needle),
        "{out}"
    );
    s
}

#[test]
fn diskless_boot_runs_from_the_verified_root() {
    let mut cfg = VmConfig::new("root-diskless");
    cfg.append = "keel.run=/usr/lib/keel/test-helper,read,/etc/os-release,/etc/ssl/certs/ca-certificates.crt,/usr/lib/keel/build-id".into();
    let mut vm = boot(cfg);
    // The helper prints one line; its last item ends it.
    vm.wait_for(
        &format!(
            "/usr/lib/keel/build-id: 33 bytes, first line \"{}\"",
            build_id()
        ),
        EXIT,
    );
    let s = vm.status();
    let r = &s.root;
    assert_eq!(r.mode, "diskless");
    assert_eq!(r.slot.as_deref(), Some("diskless"));
    assert_eq!(r.verity, "verified");
    assert_eq!(r.build_id.as_deref(), Some(build_id().as_str()));
    assert_eq!(r.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert!(r.refused.is_empty(), "{:?}", r.refused);
    let c = vm.console();
    assert!(c.contains("switched to the verified root"), "{c}");
    assert!(
        c.contains("/etc/os-release: ") && c.contains("first line \"NAME=keel\""),
        "{c}"
    );
    assert!(
        c.contains("first line \"-----BEGIN CERTIFICATE-----\""),
        "{c}"
    );
    assert!(
        c.contains(&format!(
            "/usr/lib/keel/build-id: 33 bytes, first line \"{}\"",
            build_id()
        )),
        "{c}"
    );
    let (ok, out, err) = vm.keelctl(&["status"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("root:      diskless slot diskless, keel 0.1.0"),
        "{out}"
    );
    assert!(out.contains("verity verified"), "{out}");
}

#[test]
fn the_root_is_read_only_and_etc_and_state_are_writable() {
    let mut cfg = VmConfig::new("root-readonly");
    cfg.append =
        "keel.run=/usr/lib/keel/test-helper,write,/usr/lib/x,/x,/etc/x,/var/lib/keel/x".into();
    let mut vm = boot(cfg);
    // The helper prints one line; its last item ends it.
    vm.wait_for("/var/lib/keel/x: written", EXIT);
    let c = vm.console();
    assert!(c.contains("/usr/lib/x: Read-only file system"), "{c}");
    assert!(c.contains("/x: Read-only file system"), "{c}");
    assert!(c.contains("/etc/x: written"), "{c}");
    assert!(c.contains("/var/lib/keel/x: written"), "{c}");
}

#[test]
fn a_corrupted_diskless_root_is_refused_and_the_node_comes_up_in_rescue() {
    let s = Scratch::new("root-corrupt-diskless");
    let slot = s.path("root.slot");
    std::fs::copy(build_dir().join("root.slot"), &slot).unwrap();
    // The EROFS superblock (byte 1024): read by the mount, so refused at once.
    flip(&slot, 1024 + 40);
    let mut cfg = VmConfig::new("root-corrupt-diskless");
    cfg.initrd = Some(initramfs_with_slot(&s, &slot, None));
    let vm = boot(cfg);
    assert_refused_then_rescue(&vm, "dm-verity refused a block");
}

#[test]
fn a_slot_signed_by_another_key_is_refused() {
    let s = Scratch::new("root-other-key");
    let keys = s.path("keys");
    keel_image(&["keygen", "--dir", &keys.to_string_lossy()]);
    let slot = s.path("root.slot");
    keel_image(&[
        "slot",
        "--root",
        &build_dir().join("root.erofs").to_string_lossy(),
        "--key",
        &keys.join("keel-dev.key").to_string_lossy(),
        "--version",
        "0.1.0",
        "--build-id",
        &build_id(),
        "--out",
        &slot.to_string_lossy(),
    ]);
    let mut cfg = VmConfig::new("root-other-key");
    cfg.initrd = Some(initramfs_with_slot(&s, &slot, None));
    let vm = boot(cfg);
    assert_refused_then_rescue(&vm, "which this node does not trust");
}

#[test]
fn a_manifest_edited_after_signing_is_refused() {
    let s = Scratch::new("root-edited");
    let slot = s.path("root.slot");
    std::fs::copy(build_dir().join("root.slot"), &slot).unwrap();
    let bytes = std::fs::read(&slot).unwrap();
    let at = footer_offset(bytes.len() as u64).unwrap() as usize;
    let text = String::from_utf8_lossy(&bytes[at..]).to_string();
    let channel = text.find("\"dev\"").expect("channel in the manifest");
    // "dev" -> "deV": same length, valid JSON, the signature no longer holds.
    let f = File::options().write(true).open(&slot).unwrap();
    f.write_all_at(b"V", (at + channel + 3) as u64).unwrap();
    let mut cfg = VmConfig::new("root-edited");
    cfg.initrd = Some(initramfs_with_slot(&s, &slot, None));
    let vm = boot(cfg);
    assert_refused_then_rescue(&vm, "signature does not verify");
}

#[test]
fn a_diskless_node_keeps_state_on_the_disk_it_is_given() {
    let s = Scratch::new("diskless-state");
    let img = s.path("state.ext4");
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "mystate"])
        .arg(&img)
        .arg("32M")
        .output()
        .expect("mkfs.ext4 (make deps)");
    assert!(st.status.success(), "{st:?}");
    let mut cfg = VmConfig::new("diskless-state");
    cfg.disk = Some(img.clone());
    cfg.append =
        "keel.state=/dev/vda keel.run=/usr/lib/keel/test-helper,write,/var/lib/keel/hello".into();
    let mut vm = boot(cfg);
    vm.wait_for("/var/lib/keel/hello: written", EXIT);
    let r = vm.status().root;
    assert_eq!(r.mode, "diskless");
    let state = r.state.expect("STATE");
    assert_eq!(
        (state.source.as_str(), state.fstype.as_str()),
        ("/dev/vda", "ext4")
    );
    assert_eq!(state.size_bytes, 32 << 20);
    // An orderly power-off, then the file is on the disk image.
    let (ok, _, err) = vm.keelctl(&["poweroff"]);
    assert!(ok, "{err}");
    vm.wait_exit(EXIT);
    let out = Command::new("debugfs")
        .args(["-R", "stat /hello"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Size: 1"),
        "{out:?}"
    );
}

// ---- disks -------------------------------------------------------------

/// A raw copy of build/disk.img.
fn disk_copy(s: &Scratch) -> PathBuf {
    let d = s.path("disk.img");
    std::fs::copy(build_dir().join("disk.img"), &d).expect("build/disk.img (make disk)");
    d
}

/// A raw copy of build/disk.img made bigger by `more` (`qemu-img resize`),
/// as a cloud disk bigger than the image is.
fn resized_disk_copy(s: &Scratch, more: &str) -> PathBuf {
    let d = disk_copy(s);
    let st = Command::new("qemu-img")
        .args(["resize", "-f", "raw"])
        .arg(&d)
        .arg(more)
        .output()
        .expect("qemu-img (make deps)");
    assert!(st.status.success(), "{st:?}");
    d
}

fn read_gpt(disk: &Path) -> Gpt {
    let f = File::open(disk).unwrap();
    let sectors = f.metadata().unwrap().len() / SECTOR;
    Gpt::read(&f, sectors).unwrap()
}

fn write_gpt(disk: &Path, g: &Gpt) {
    let f = File::options().read(true).write(true).open(disk).unwrap();
    let sectors = f.metadata().unwrap().len() / SECTOR;
    g.write(&f, sectors).unwrap();
}

/// Byte offset and size of the partition called `name`.
fn partition(disk: &Path, name: &str) -> (u64, u64) {
    let g = read_gpt(disk);
    let (_, e) = g.partitions().find(|(_, e)| e.name == name).unwrap();
    (e.first_lba * SECTOR, e.bytes())
}

fn slot_state(disk: &Path, name: &str) -> SlotState {
    let g = read_gpt(disk);
    let (_, e) = g.partitions().find(|(_, e)| e.name == name).unwrap();
    SlotState::from_attributes(e.attributes)
}

fn set_slot_state(disk: &Path, name: &str, st: SlotState) {
    let mut g = read_gpt(disk);
    let i = g.entries.iter().position(|e| e.name == name).unwrap();
    g.entries[i].attributes = st.to_attributes(g.entries[i].attributes);
    write_gpt(disk, &g);
}

/// Boot the disk through -kernel with the disk initramfs (fast), on microvm.
fn boot_disk(name: &str, disk: &Path, append: &str) -> Vm {
    let mut cfg = VmConfig::new(name);
    cfg.variant = Variant::Disk;
    cfg.disk = Some(disk.to_path_buf());
    cfg.append = append.to_string();
    boot(cfg)
}

fn slot_manifest_on_disk(disk: &Path, name: &str) -> keel_slot::manifest::Manifest {
    let (off, size) = partition(disk, name);
    let f = File::open(disk).unwrap();
    let mut footer = vec![0u8; FOOTER_SIZE as usize];
    f.read_exact_at(&mut footer, off + size - FOOTER_SIZE)
        .unwrap();
    let len = u32::from_le_bytes(footer[8..12].try_into().unwrap()) as usize;
    serde_json::from_slice(&footer[108..108 + len]).unwrap()
}

#[test]
fn a_disk_boots_slot_a_after_checking_it_and_taking_a_try() {
    let s = Scratch::new("disk-a");
    let disk = disk_copy(&s);
    let vm = boot_disk("disk-a", &disk, "");
    let r = vm.status().root;
    assert_eq!(r.mode, "disk");
    assert_eq!(r.slot.as_deref(), Some("A"));
    assert_eq!(r.verity, "verified");
    let check = r.content_check.expect("a new slot gets the full check");
    assert!(
        check.bytes > 4 << 20,
        "the check covers kernel and initramfs too: {check:?}"
    );
    let a = r.slots.iter().find(|s| s.name == "A").unwrap();
    assert_eq!(
        (a.priority, a.tries, a.successful),
        (2, 2, false),
        "one try taken"
    );
    let st = r.state.expect("STATE mounted");
    assert_eq!(st.fstype, "ext4");
    assert_eq!(st.source, "/dev/vda4");
    assert_eq!(st.grown_from_bytes, None, "the disk was not resized");
    drop(vm);
    assert_eq!(
        slot_state(&disk, "KEEL-A"),
        SlotState::new(2, 2, false),
        "the try is on the disk"
    );
}

/// Slot A was refused for its content (the full BLAKE3 check), as the API
/// and the console say, and the node runs from B.
fn assert_a_refused_b_booted(vm: &Vm) {
    let r = vm.status().root;
    assert_eq!(r.mode, "disk");
    assert_eq!(r.slot.as_deref(), Some("B"), "{r:?}");
    assert_eq!(r.refused.len(), 1, "{r:?}");
    assert_eq!(r.refused[0].slot, "A");
    assert!(
        r.refused[0].reason.contains("content digest mismatch"),
        "{:?}",
        r.refused
    );
    let c = vm.console();
    assert!(c.contains("slot A refused: "), "{c}");
}

fn flipped_slot_a_boots_b(name: &str, at: impl Fn(&keel_slot::manifest::Manifest) -> u64) {
    let s = Scratch::new(name);
    let disk = disk_copy(&s);
    let m = slot_manifest_on_disk(&disk, "KEEL-A");
    let (a, _) = partition(&disk, "KEEL-A");
    flip(&disk, a + at(&m));
    let vm = boot_disk(name, &disk, "");
    assert_a_refused_b_booted(&vm);
    drop(vm);
    assert!(
        !slot_state(&disk, "KEEL-A").bootable(),
        "A is marked bad on the disk"
    );
}

#[test]
fn a_flipped_byte_in_the_data_of_slot_a_boots_b() {
    flipped_slot_a_boots_b("disk-flip-data", |m| m.root.size / 2 + 7);
}

#[test]
fn a_flipped_byte_in_the_hash_tree_of_slot_a_boots_b() {
    flipped_slot_a_boots_b("disk-flip-hash", |m| m.verity.hash.offset + 4096 + 3);
}

#[test]
fn a_slot_with_no_tries_left_is_skipped() {
    let s = Scratch::new("disk-no-tries");
    let disk = disk_copy(&s);
    set_slot_state(&disk, "KEEL-A", SlotState::new(3, 0, false));
    let vm = boot_disk("disk-no-tries", &disk, "");
    let r = vm.status().root;
    assert_eq!(r.slot.as_deref(), Some("B"));
    assert!(
        r.refused.is_empty(),
        "skipped, not refused: {:?}",
        r.refused
    );
}

#[test]
fn a_healthy_slot_is_marked_successful() {
    let s = Scratch::new("disk-successful");
    let disk = disk_copy(&s);
    let mut vm = boot_disk("disk-successful", &disk, "keel.healthy_after=1");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = vm.status().root;
        if r.successful {
            let a = r.slots.iter().find(|s| s.name == "A").unwrap();
            assert!(a.successful);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slot A never marked successful: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    vm.wait_for(
        "slot A: healthy for 1s: marked successful",
        Duration::from_secs(10),
    );
    drop(vm);
    assert!(slot_state(&disk, "KEEL-A").successful);
    // A known-good slot is not checked in full again.
    let vm = boot_disk("disk-successful-2", &disk, "");
    assert_eq!(vm.status().root.content_check, None);
}

#[test]
fn first_boot_grows_state_to_fill_a_resized_disk() {
    let s = Scratch::new("disk-grow");
    let disk = resized_disk_copy(&s, "+200M");
    let vm = boot_disk("disk-grow", &disk, "");
    let state = vm.status().root.state.expect("STATE");
    assert_eq!(state.grown_from_bytes, Some(12 << 20), "{state:?}");
    assert!(state.size_bytes >= 211 << 20, "{state:?}");
    assert!(vm.console().contains("STATE: ext4 grown from 12 to "));
    drop(vm);
    // Both GPT copies are valid at the new size, and sgdisk agrees.
    let g = read_gpt(&disk);
    assert_eq!(
        g.backup_lba,
        std::fs::metadata(&disk).unwrap().len() / SECTOR - 1
    );
    let out = Command::new("sgdisk")
        .arg("--verify")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("No problems found"),
        "{out:?}"
    );
    // The next boot has nothing to grow.
    let vm = boot_disk("disk-grow-2", &disk, "");
    assert_eq!(vm.status().root.state.unwrap().grown_from_bytes, None);
}

/// The busybox layer of the root image `image` (its path in the node) and
/// the byte offset in the image of one of its 4 KiB blocks. Nothing reads
/// the layer at boot (only a container that names busybox does), so a
/// block of it changed on the disk is found by dm-verity only when read.
/// The layer is zstd, which EROFS stores uncompressed and block-aligned:
/// the block is found by its content.
fn busybox_layer_block(image: &Path) -> (String, u64) {
    let blobs = build_dir().join("busybox-oci/blobs/sha256");
    let layer = std::fs::read_dir(&blobs)
        .expect("build/busybox-oci (make images)")
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let data = std::fs::read(&layer).unwrap();
    let blocks = data.len() / 4096;
    assert!(blocks >= 4, "{} is too small", layer.display());
    let want = &data[blocks / 2 * 4096..(blocks / 2 + 1) * 4096];
    let img = std::fs::read(image).unwrap();
    let at = img
        .chunks_exact(4096)
        .position(|b| b == want)
        .unwrap_or_else(|| {
            panic!(
                "a block of {} is not in {}",
                layer.display(),
                image.display()
            )
        });
    let name = layer.file_name().unwrap().to_string_lossy();
    (
        format!("/usr/lib/keel/images/busybox/blobs/sha256/{name}"),
        at as u64 * 4096,
    )
}

#[test]
fn a_block_corrupted_after_boot_gives_eio_and_the_slot_is_not_marked_successful() {
    let s = Scratch::new("disk-corrupt-late");
    let disk = disk_copy(&s);
    // Slot A with the test root (it carries the helper), this build: no
    // kexec, and a new slot, so the boot checks it in full.
    let test_root = build_dir().join("root-test.erofs");
    let kernel = build_dir().join("kernel/bzImage");
    put_slot(
        &s,
        &disk,
        "KEEL-A",
        &test_root,
        &kernel,
        &build_id(),
        env!("CARGO_PKG_VERSION"),
    );
    let (layer, block) = busybox_layer_block(&test_root);
    let (a, _) = partition(&disk, "KEEL-A");
    // Long enough for the corruption below (under a second after ready
    // here) to come well before the mark, on a loaded host too.
    let append =
        format!("keel.healthy_after=8 keel.run=/usr/lib/keel/test-helper,reread,{layer},60");
    let mut vm = boot_disk("disk-corrupt-late", &disk, &append);
    vm.wait_for(&format!("test-helper: reread {layer}: first read ok"), EXIT);
    let r = vm.status().root;
    assert_eq!(r.slot.as_deref(), Some("A"), "{r:?}");
    assert!(r.content_check.is_some(), "A passed the full check: {r:?}");
    assert_eq!(r.verity, "verified");
    // The disk changes under the running node (cache=unsafe: qemu reads the
    // file through the host's page cache, so the next read sees this).
    flip(&disk, a + block + 100);
    vm.wait_for(
        &format!("test-helper: reread {layer}: Input/output error"),
        EXIT,
    );
    vm.wait_for(
        "slot A: dm-verity saw corruption: not marking it successful",
        EXIT,
    );
    let c = vm.console();
    assert!(
        c.contains("is corrupted"),
        "the kernel names the block: {c}"
    );
    assert!(!c.contains("marked successful"), "{c}");
    let r = vm.status().root;
    assert_eq!(r.verity, "corrupted", "{r:?}");
    assert!(!r.successful, "{r:?}");
    let a_info = r.slots.iter().find(|s| s.name == "A").unwrap();
    assert!(!a_info.successful, "{r:?}");
    let (ok, out, err) = vm.keelctl(&["status"]);
    assert!(ok, "{err}");
    assert!(out.contains("verity corrupted"), "{out}");
    assert!(out.contains("A priority 2 tries 2;"), "{out}");
    drop(vm);
    assert_eq!(
        slot_state(&disk, "KEEL-A"),
        SlotState::new(2, 2, false),
        "on the disk: the try taken, not successful"
    );
}

#[test]
fn keel_verify_full_refuses_a_known_good_slot_that_the_lazy_boot_accepts() {
    let s = Scratch::new("disk-verify-full");
    let disk = disk_copy(&s);
    // A is known good (as after an earlier healthy boot) and has a flipped
    // byte where the boot does not read.
    set_slot_state(&disk, "KEEL-A", SlotState::new(2, 0, true));
    let (_, block) = busybox_layer_block(&build_dir().join("root.erofs"));
    let (a, _) = partition(&disk, "KEEL-A");
    flip(&disk, a + block + 100);
    // Without keel.verify=full the full check is skipped for a known-good
    // slot, and dm-verity reads nothing of that block: A boots.
    let vm = boot_disk("disk-verify-lazy", &disk, "");
    let r = vm.status().root;
    assert_eq!(r.slot.as_deref(), Some("A"), "{r:?}");
    assert_eq!(r.content_check, None, "{r:?}");
    assert_eq!(r.verity, "verified");
    assert!(r.refused.is_empty(), "{r:?}");
    drop(vm);
    assert_eq!(slot_state(&disk, "KEEL-A"), SlotState::new(2, 0, true));
    // With it, the flipped byte refuses A; B boots.
    let vm = boot_disk("disk-verify-full", &disk, "keel.verify=full");
    assert_a_refused_b_booted(&vm);
    let (ok, out, err) = vm.keelctl(&["status"]);
    assert!(ok, "{err}");
    assert!(out.contains("refused    slot A: "), "{out}");
    drop(vm);
    assert!(
        !slot_state(&disk, "KEEL-A").bootable(),
        "A is marked bad on the disk"
    );
}

/// Block count and block size of the ext4 filesystem in STATE of `disk`,
/// as dumpe2fs reads them from a copy of the partition, which must be
/// clean: no journal left to replay (which `e2fsck -n` would skip, so its
/// verdict would not be the next mount's), and `e2fsck -fn` finds nothing.
fn state_ext4(s: &Scratch, disk: &Path) -> (u64, u64) {
    let (off, size) = partition(disk, "STATE");
    let mut bytes = vec![0u8; size as usize];
    File::open(disk)
        .unwrap()
        .read_exact_at(&mut bytes, off)
        .unwrap();
    let part = s.path("state.ext4");
    std::fs::write(&part, &bytes).unwrap();
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&part)
        .output()
        .expect("dumpe2fs (make deps)");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in dumpe2fs -h:\n{text}"))
    };
    let features = text
        .lines()
        .find(|l| l.starts_with("Filesystem features:"))
        .unwrap_or_default();
    assert!(
        !features.contains("needs_recovery"),
        "STATE was not left clean: {features}"
    );
    let e2fsck = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(&part)
        .output()
        .expect("e2fsck (make deps)");
    assert!(e2fsck.status.success(), "e2fsck -fn: {e2fsck:?}");
    (field("Block count:"), field("Block size:"))
}

#[test]
fn an_interrupted_state_growth_finishes_on_the_next_boot() {
    let s = Scratch::new("disk-grow-fs");
    let disk = resized_disk_copy(&s, "+64M");
    // Step 1 of the growth done, step 3 not (as when the power went between
    // them): STATE fills the disk in the GPT, its ext4 does not.
    let g = read_gpt(&disk);
    let sectors = std::fs::metadata(&disk).unwrap().len() / SECTOR;
    let (n, _) = g.partitions().find(|(_, e)| e.name == "STATE").unwrap();
    let plan = keel_boot::statefs::grow_plan(&g, sectors, n)
        .unwrap()
        .expect("room to grow STATE");
    write_gpt(&disk, &plan);
    let (_, part_bytes) = partition(&disk, "STATE");
    assert!(part_bytes >= 75 << 20, "{part_bytes}");
    let (blocks, bs) = state_ext4(&s, &disk);
    assert_eq!(blocks * bs, 12 << 20, "ext4 is still the image's");
    let mut vm = boot_disk("disk-grow-fs", &disk, "");
    let state = vm.status().root.state.expect("STATE");
    assert_eq!(state.size_bytes, part_bytes, "{state:?}");
    assert_eq!(state.grown_from_bytes, Some(12 << 20), "{state:?}");
    let c = vm.console();
    assert!(
        c.contains(&format!(
            "STATE: ext4 grown from 12 to {} MiB",
            part_bytes >> 20
        )),
        "{c}"
    );
    assert!(!c.contains("STATE: partition grown"), "{c}");
    let (ok, _, err) = vm.keelctl(&["poweroff"]);
    assert!(ok, "{err}");
    vm.wait_exit(EXIT);
    // An orderly power-off leaves STATE clean (frozen if busy), so the host
    // sees what the next boot would.
    let (blocks, bs) = state_ext4(&s, &disk);
    assert_eq!(blocks * bs, part_bytes, "ext4 fills its partition");
}

/// Write a 20 MiB disk slot of the root image `root_image` (with the
/// built kernel `kernel` and the disk initramfs) into partition `part` of
/// `disk`, signed by the development key.
fn put_slot(
    s: &Scratch,
    disk: &Path,
    part: &str,
    root_image: &Path,
    kernel: &Path,
    build: &str,
    version: &str,
) {
    let b = build_dir();
    let slot = s.path(&format!("{part}.img"));
    keel_image(&[
        "slot",
        "--root",
        &root_image.to_string_lossy(),
        "--kernel",
        &kernel.to_string_lossy(),
        "--initramfs",
        &b.join("initramfs-disk.cpio.zst").to_string_lossy(),
        "--key",
        &root().join("keys/keel-dev.key").to_string_lossy(),
        "--version",
        version,
        "--build-id",
        build,
        "--size-mib",
        "20",
        "--out",
        &slot.to_string_lossy(),
    ]);
    let (off, size) = partition(disk, part);
    let bytes = std::fs::read(&slot).unwrap();
    assert_eq!(bytes.len() as u64, size);
    File::options()
        .write(true)
        .open(disk)
        .unwrap()
        .write_all_at(&bytes, off)
        .unwrap();
}

/// Put a slot with build id `build` (kernel `kernel`) into B of `disk`,
/// with a higher priority than A.
fn slot_b_with_build(s: &Scratch, disk: &Path, build: &str, kernel: &Path) {
    let root_image = build_dir().join("root.erofs");
    put_slot(s, disk, "KEEL-B", &root_image, kernel, build, "0.1.1");
    set_slot_state(disk, "KEEL-B", SlotState::new(5, 3, false));
}

/// The node runs with the command line every boot path shares (the
/// Makefile's CMDLINE, in build/cmdline) and a locked-down kernel.
fn assert_shared_cmdline_and_locked(vm: &Vm) {
    let want = std::fs::read_to_string(build_dir().join("cmdline")).expect("build/cmdline");
    let k = vm.status().kernel;
    for w in want.split_whitespace() {
        assert!(
            k.cmdline.iter().any(|c| c == w),
            "{w} not in {:?}",
            k.cmdline
        );
    }
    assert_eq!(k.lockdown, "integrity", "{k:?}");
}

#[test]
fn a_slot_with_another_build_is_entered_through_kexec() {
    let s = Scratch::new("disk-kexec");
    let disk = disk_copy(&s);
    slot_b_with_build(
        &s,
        &disk,
        "kexec-test-build",
        &build_dir().join("kernel/bzImage"),
    );
    let vm = boot_disk("disk-kexec", &disk, "");
    let c = vm.console();
    assert!(
        c.contains("slot B: build kexec-test-build differs from the running"),
        "{c}"
    );
    let r = vm.status().root;
    assert_eq!(r.slot.as_deref(), Some("B"), "{r:?}");
    assert_eq!(r.build_id.as_deref(), Some("kexec-test-build"));
    assert_eq!(r.version.as_deref(), Some("0.1.1"));
    assert_eq!(
        c.matches("starting as pid 1").count(),
        2,
        "two boots, one qemu: {c}"
    );
    assert!(
        !c.contains("booting its root with the running kernel"),
        "kexec failed: {c}"
    );
    // The first keel kexecs before it locks the kernel (a locked kernel
    // refuses the unsigned image: see the kernel test in boot.rs); the
    // kernel it started is locked by its own keel, with the same command
    // line (kexec copies it).
    assert_eq!(c.matches("kernel locked down: integrity").count(), 1, "{c}");
    assert_shared_cmdline_and_locked(&vm);
}

#[test]
fn a_kernel_that_kexec_refuses_falls_back_to_a_normal_boot() {
    let s = Scratch::new("disk-kexec-fail");
    let disk = disk_copy(&s);
    // Signed, so its digest checks out, but not a kernel: kexec_file_load
    // refuses it, and keel boots B's root with the running kernel.
    let junk = s.path("not-a-kernel");
    std::fs::write(&junk, vec![0x42u8; 64 * 1024]).unwrap();
    slot_b_with_build(&s, &disk, "junk-kernel-build", &junk);
    let vm = boot_disk("disk-kexec-fail", &disk, "");
    let c = vm.console();
    assert!(
        c.contains("booting its root with the running kernel"),
        "{c}"
    );
    assert_eq!(c.matches("starting as pid 1").count(), 1, "{c}");
    let r = vm.status().root;
    assert_eq!(r.slot.as_deref(), Some("B"), "{r:?}");
    assert_eq!(r.build_id.as_deref(), Some("junk-kernel-build"));
    assert_eq!(r.verity, "verified");
}

#[test]
fn uefi_boot_of_the_qcow2_disk_reaches_ready() {
    let s = Scratch::new("uefi");
    let disk = s.path("disk.qcow2");
    std::fs::copy(build_dir().join("disk.qcow2"), &disk).expect("build/disk.qcow2 (make disk)");
    let mut cfg = VmConfig::new("uefi");
    cfg.profile = "uefi";
    cfg.disk = Some(disk);
    let vm = boot(cfg);
    let r = vm.status().root;
    assert_eq!(r.mode, "disk");
    assert_eq!(r.slot.as_deref(), Some("A"));
    assert_eq!(r.verity, "verified");
    assert!(
        !vm.console().contains("kexec"),
        "the ESP kernel is slot A's build: no kexec"
    );
    // The EFI kernel's built-in command line is the shared one.
    assert_shared_cmdline_and_locked(&vm);
}

#[test]
fn ipxe_boot_reaches_ready() {
    let mut cfg = VmConfig::new("ipxe");
    cfg.profile = "ipxe";
    let vm = boot(cfg);
    let r = vm.status().root;
    assert_eq!(r.mode, "diskless");
    assert_eq!(r.verity, "verified");
    let script = std::fs::read_to_string(build_dir().join("netboot/boot.ipxe")).unwrap();
    assert!(script.starts_with("#!ipxe\n"), "{script}");
    // boot.ipxe passes the shared command line.
    assert_shared_cmdline_and_locked(&vm);
    let _ = manifest_of(&build_dir().join("root.slot"));
}

/// The same boot.ipxe over HTTP (iPXE resolves the kernel and initramfs
/// against the script's own URL), from a server on the host's loopback. The
/// control is the TFTP boot above: same files, same ROM.
#[test]
fn ipxe_boot_over_http_reaches_ready() {
    let (port, requests) = keel_vmtests::files::serve(&build_dir().join("netboot"));
    let mut cfg = VmConfig::new("ipxe-http");
    cfg.profile = "ipxe";
    cfg.env.push((
        "KEEL_NETBOOT_URL".into(),
        format!("http://10.0.2.2:{port}/boot.ipxe"),
    ));
    let vm = boot(cfg);
    let got = requests.lock().unwrap().clone();
    for want in [
        "GET /boot.ipxe 200",
        "GET /bzImage 200",
        "GET /initramfs.cpio.zst 200",
    ] {
        assert!(got.iter().any(|r| r == want), "{want} in {got:?}");
    }
    let r = vm.status().root;
    assert_eq!(r.mode, "diskless");
    assert_eq!(r.verity, "verified");
    assert_shared_cmdline_and_locked(&vm);
}
