//! The GPT disk image: what a UEFI machine or a cloud boots.
//!
//! ```text
//! LBA 0-33     protective MBR, primary GPT
//! 1 MiB        ESP      vfat, \EFI\BOOT\BOOTX64.EFI = the kernel's EFI stub
//!                       with the initramfs and command line built in
//!              KEEL-A   slot (keel_slot::layout), priority 2, 3 tries
//!              KEEL-B   slot, the same OS, priority 1, 3 tries: the fallback
//!              STATE    ext4 (mkfs.ext4 -d), grown to fill the disk on first boot
//! end - 33     backup GPT
//! ```
//!
//! Partitions start on MiB boundaries. Reproducible: GUIDs derived from the
//! build id, `mkfs.vfat --invariant`, mtools and mke2fs with a fixed time,
//! staged files stamped with `SOURCE_DATE_EPOCH` and the ctimes mke2fs
//! copies from the staging directory reset with debugfs.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use keel_slot::gpt::{Entry, Gpt, Guid, SECTOR, TYPE_ESP, TYPE_KEEL_SLOT, TYPE_KEEL_STATE};
use keel_slot::state::SlotState;

const MIB: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("run {tool}: {source} (make deps installs it)")]
    Spawn {
        tool: &'static str,
        source: std::io::Error,
    },
    #[error("{tool} failed: {output}")]
    Tool { tool: &'static str, output: String },
    #[error("{what} is {size} bytes: larger than its {limit}-byte partition")]
    TooBig {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error(transparent)]
    Gpt(#[from] keel_slot::gpt::GptError),
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DiskError {
    let path = path.to_path_buf();
    move |source| DiskError::Io { op, path, source }
}

fn run(tool: &'static str, cmd: &mut Command) -> Result<(), DiskError> {
    let o = cmd
        .output()
        .map_err(|source| DiskError::Spawn { tool, source })?;
    if !o.status.success() {
        return Err(DiskError::Tool {
            tool,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        });
    }
    Ok(())
}

/// Partition sizes in MiB.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub esp_mib: u64,
    pub slot_mib: u64,
    pub state_mib: u64,
}

/// Everything that goes on the disk.
pub struct Inputs<'a> {
    /// The EFI-stub kernel with the initramfs built in.
    pub efi_kernel: &'a Path,
    pub slot_a: &'a [u8],
    pub slot_b: &'a [u8],
    /// Files for STATE (may be empty).
    pub state_dir: &'a Path,
    pub build_id: &'a str,
    pub epoch: u64,
    pub sizes: Sizes,
    /// Scratch directory.
    pub work: &'a Path,
}

/// Build the ESP image (vfat) holding the EFI kernel as the removable-media
/// boot path, so firmware boots it with no boot entry configured.
fn esp(inp: &Inputs, out: &Path) -> Result<(), DiskError> {
    let _ = std::fs::remove_file(out);
    let kib = inp.sizes.esp_mib * 1024;
    let size = std::fs::metadata(inp.efi_kernel)
        .map_err(io("stat", inp.efi_kernel))?
        .len();
    if size + MIB / 2 > inp.sizes.esp_mib * MIB {
        return Err(DiskError::TooBig {
            what: "EFI kernel",
            size,
            limit: inp.sizes.esp_mib * MIB,
        });
    }
    run(
        "mkfs.vfat",
        Command::new("mkfs.vfat")
            .args(["--invariant", "-i", "4b45454c", "-n", "KEEL-ESP", "-C"])
            .arg(out)
            .arg(kib.to_string()),
    )?;
    let staged = inp.work.join("BOOTX64.EFI");
    std::fs::copy(inp.efi_kernel, &staged).map_err(io("copy", &staged))?;
    stamp(&staged, inp.epoch)?;
    let img = out.to_string_lossy().to_string();
    run(
        "mmd",
        Command::new("mmd")
            .env("SOURCE_DATE_EPOCH", inp.epoch.to_string())
            .args(["-i", &img, "::/EFI", "::/EFI/BOOT"]),
    )?;
    run(
        "mcopy",
        Command::new("mcopy")
            .env("SOURCE_DATE_EPOCH", inp.epoch.to_string())
            .args(["-m", "-i", &img])
            .arg(&staged)
            .arg("::/EFI/BOOT/BOOTX64.EFI"),
    )
}

fn stamp(path: &Path, epoch: u64) -> Result<(), DiskError> {
    run(
        "touch",
        Command::new("touch")
            .arg("-h")
            .arg("-d")
            .arg(format!("@{epoch}"))
            .arg(path),
    )
}

/// Build STATE: ext4 with 4 KiB blocks (online growth from a small image
/// to a large disk), populated from `state_dir`.
fn state(inp: &Inputs, out: &Path) -> Result<(), DiskError> {
    let _ = std::fs::remove_file(out);
    let staged = inp.work.join("state");
    let _ = std::fs::remove_dir_all(&staged);
    std::fs::create_dir_all(&staged).map_err(io("create", &staged))?;
    run(
        "cp",
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", inp.state_dir.display()))
            .arg(&staged),
    )?;
    // Stamp every staged entry; remember their paths for the ctime reset.
    let mut paths = Vec::new();
    collect(&staged, &staged, &mut paths)?;
    for p in &paths {
        stamp(&staged.join(p), inp.epoch)?;
    }
    stamp(&staged, inp.epoch)?;
    // e2fsprogs reads E2FSPROGS_FAKE_TIME=0 as "not set" (the real time).
    let fake_time = inp.epoch.max(1).to_string();
    let uuid = Guid::derived(format!("keel-state-fs:{}", inp.build_id).as_bytes()).to_string();
    let seed = Guid::derived(format!("keel-state-hash:{}", inp.build_id).as_bytes()).to_string();
    run(
        "mkfs.ext4",
        Command::new("mkfs.ext4")
            .env("E2FSPROGS_FAKE_TIME", &fake_time)
            .args(["-q", "-F", "-b", "4096", "-L", "STATE", "-U", &uuid])
            .arg("-E")
            .arg(format!("hash_seed={seed},root_owner=0:0"))
            .arg("-d")
            .arg(&staged)
            .arg(out)
            .arg(format!("{}M", inp.sizes.state_mib)),
    )?;
    // mke2fs copies each staged file's ctime, which no tool can set: reset them.
    if !paths.is_empty() {
        let script: String = paths
            .iter()
            .map(|p| format!("sif \"/{}\" ctime @{}\n", p.display(), inp.epoch))
            .collect();
        let sf = inp.work.join("debugfs.cmds");
        std::fs::write(&sf, script).map_err(io("write", &sf))?;
        run(
            "debugfs",
            Command::new("debugfs")
                .env("E2FSPROGS_FAKE_TIME", &fake_time)
                .arg("-w")
                .arg("-f")
                .arg(&sf)
                .arg(out),
        )?;
    }
    Ok(())
}

fn collect(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DiskError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io("read", dir))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_unstable_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        out.push(p.strip_prefix(base).unwrap_or(&p).to_path_buf());
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect(base, &p, out)?;
        }
    }
    Ok(())
}

/// Build the raw disk image at `out`; returns its GPT.
pub fn build(inp: &Inputs, out: &Path) -> Result<Gpt, DiskError> {
    std::fs::create_dir_all(inp.work).map_err(io("create", inp.work))?;
    let s = inp.sizes;
    for (what, bytes) in [
        ("slot A", inp.slot_a.len() as u64),
        ("slot B", inp.slot_b.len() as u64),
    ] {
        if bytes != s.slot_mib * MIB {
            return Err(DiskError::TooBig {
                what,
                size: bytes,
                limit: s.slot_mib * MIB,
            });
        }
    }
    let esp_img = inp.work.join("esp.img");
    esp(inp, &esp_img)?;
    let state_img = inp.work.join("state.img");
    state(inp, &state_img)?;

    // 1 MiB for the primary GPT and alignment, 1 MiB at the end for the backup.
    let total_mib = 1 + s.esp_mib + 2 * s.slot_mib + s.state_mib + 1;
    let sectors = total_mib * MIB / SECTOR;
    let mut gpt = Gpt::new(
        Guid::derived(format!("keel-disk:{}", inp.build_id).as_bytes()),
        sectors,
    )?;
    let parts: [(&str, Guid, u64, u64); 4] = [
        ("ESP", TYPE_ESP, s.esp_mib, 0),
        (
            "KEEL-A",
            TYPE_KEEL_SLOT,
            s.slot_mib,
            SlotState::new(2, 3, false).to_attributes(0),
        ),
        (
            "KEEL-B",
            TYPE_KEEL_SLOT,
            s.slot_mib,
            SlotState::new(1, 3, false).to_attributes(0),
        ),
        ("STATE", TYPE_KEEL_STATE, s.state_mib, 0),
    ];
    let mut lba = MIB / SECTOR;
    for (i, (name, ty, mib, attrs)) in parts.iter().enumerate() {
        let n = mib * MIB / SECTOR;
        gpt.entries[i] = Entry {
            type_guid: *ty,
            unique_guid: Guid::derived(format!("keel-part:{name}:{}", inp.build_id).as_bytes()),
            first_lba: lba,
            last_lba: lba + n - 1,
            attributes: *attrs,
            name: name.to_string(),
        };
        lba += n;
    }
    let tmp = out.with_extension("tmp");
    let f = File::create(&tmp).map_err(io("create", &tmp))?;
    f.set_len(sectors * SECTOR).map_err(io("size", &tmp))?;
    let esp_bytes = std::fs::read(&esp_img).map_err(io("read", &esp_img))?;
    let state_bytes = std::fs::read(&state_img).map_err(io("read", &state_img))?;
    for (i, data) in [&esp_bytes[..], inp.slot_a, inp.slot_b, &state_bytes[..]]
        .iter()
        .enumerate()
    {
        f.write_all_at(data, gpt.entries[i].first_lba * SECTOR)
            .map_err(io("write", &tmp))?;
    }
    gpt.write(&f, sectors)?;
    drop(f);
    std::fs::rename(&tmp, out).map_err(io("rename", out))?;
    Ok(gpt)
}

/// Convert the raw image to qcow2 with `qemu-img`.
pub fn qcow2(raw: &Path, out: &Path) -> Result<(), DiskError> {
    let _ = std::fs::remove_file(out);
    run(
        "qemu-img",
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(raw)
            .arg(out),
    )
}
