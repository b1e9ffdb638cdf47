//! The kernel's own defences at run time: keel locks the kernel down right
//! after its boot-time kexec decision, and reports that level and the CPU
//! mitigations the kernel chose.
//!
//! Lockdown `integrity` closes `/dev/port`, raw PCI and MSR access, ACPI
//! table and method overrides, hibernation and unsigned `kexec_file_load`
//! (in 6.1 that check sits in the KEXEC_SIG path) until the next boot. keel
//! kexecs only at boot, into a slot's kernel, before it locks; an update is
//! applied by a firmware reboot, whose boot then kexecs before it locks
//! again. The level can only go up, so nothing can unlock a running node.

use std::path::{Path, PathBuf};

use keel_api::{CpuVulnerability, KernelStatus};
use keel_sys::fs::MountFlags;

use keel_boot::{error, info, warn};

use crate::boot_table::TaskError;

/// The lockdown level keel sets.
pub const LEVEL: &str = "integrity";

/// Under the sysfs root: where securityfs is mounted, its lockdown file,
/// and the CPU vulnerabilities.
const SECURITYFS: &str = "kernel/security";
const LOCKDOWN: &str = "kernel/security/lockdown";
const VULNERABILITIES: &str = "devices/system/cpu/vulnerabilities";

/// The level the lockdown file marks (`none [integrity] confidentiality`
/// marks integrity), if any.
pub fn marked_level(text: &str) -> Option<&str> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
}

/// Lock the kernel down to [`LEVEL`] under the sysfs root `sys`: mount
/// securityfs there when it is not, write the level, and return the level
/// the kernel then reports.
pub fn lock(sys: &Path) -> Result<String, TaskError> {
    mount_securityfs(sys)?;
    let file = sys.join(LOCKDOWN);
    let read = |file: &PathBuf| {
        std::fs::read_to_string(file).map_err(|source| TaskError::Io {
            op: "read",
            path: file.clone(),
            source,
        })
    };
    // Already at the level (or above, which cannot be lowered): leave it.
    let before = read(&file)?;
    if marked_level(&before) != Some(LEVEL) && marked_level(&before) != Some("confidentiality") {
        std::fs::write(&file, LEVEL).map_err(|source| TaskError::Io {
            op: "write",
            path: file.clone(),
            source,
        })?;
    }
    let after = read(&file)?;
    Ok(marked_level(&after).unwrap_or("unknown").to_string())
}

/// Mount securityfs under the sysfs root `sys` unless its lockdown file is
/// there already.
pub fn mount_securityfs(sys: &Path) -> Result<(), TaskError> {
    if sys.join(LOCKDOWN).exists() {
        return Ok(());
    }
    keel_sys::fs::mount(
        "securityfs",
        &sys.join(SECURITYFS),
        "securityfs",
        MountFlags::MS_NOSUID | MountFlags::MS_NODEV | MountFlags::MS_NOEXEC,
        None,
    )?;
    Ok(())
}

/// Each CPU vulnerability the kernel knows, with its verdict, sorted by name.
pub fn vulnerabilities(sys: &Path) -> Vec<CpuVulnerability> {
    let dir = sys.join(VULNERABILITIES);
    let mut out: Vec<CpuVulnerability> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let state = std::fs::read_to_string(e.path()).ok()?;
            Some(CpuVulnerability {
                name: e.file_name().to_string_lossy().into_owned(),
                state: state.trim().to_string(),
            })
        })
        .collect();
    out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The boot task: lock (unless `keel.debug.lockdown=none` said not to),
/// log what the kernel says, and record it for the API. A kernel that is
/// not locked is reported as `none (WHY)`: the node still boots, and says
/// so. The CPU's vulnerabilities are left to [`report_cpu`], off the boot
/// path.
pub fn lock_and_report(sys: &Path, debug_no_lockdown: bool, cmdline: &str) -> KernelStatus {
    let lockdown = if debug_no_lockdown {
        // Mounted all the same, so that the level can be read.
        if let Err(e) = mount_securityfs(sys) {
            warn!("securityfs: {e}");
        }
        warn!("kernel lockdown: keel.debug.lockdown=none: the kernel is NOT locked down");
        "none (keel.debug.lockdown=none on the command line)".to_string()
    } else {
        lock_or_why(sys)
    };
    KernelStatus {
        lockdown,
        cpu: Vec::new(),
        cmdline: kernel_params(cmdline),
    }
}

/// The CPU's vulnerabilities as the kernel words them, logged: read once,
/// right after the node is ready or when the API is first asked (reading
/// `/sys` under TCG costs the boot ~4 ms).
pub fn report_cpu(sys: &Path) -> Vec<CpuVulnerability> {
    let cpu = vulnerabilities(sys);
    let vulnerable: Vec<String> = cpu
        .iter()
        .filter(|v| v.state.starts_with("Vulnerable"))
        .map(|v| format!("{}: {}", v.name, v.state))
        .collect();
    if vulnerable.is_empty() {
        info!("cpu: {} known vulnerabilities, none unmitigated", cpu.len());
    } else {
        warn!("cpu: not mitigated: {}", vulnerable.join("; "));
    }
    cpu
}

/// The command line's words that are the kernel's, not keel's.
pub fn kernel_params(cmdline: &str) -> Vec<String> {
    cmdline
        .split_whitespace()
        .filter(|w| !w.starts_with("keel."))
        .map(str::to_string)
        .collect()
}

fn lock_or_why(sys: &Path) -> String {
    match lock(sys) {
        Ok(level) => {
            info!("kernel locked down: {level}");
            level
        }
        Err(e) => {
            error!("kernel lockdown: {e}: the kernel is NOT locked down");
            format!("none ({e})")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marked_level_is_read() {
        assert_eq!(
            marked_level("none [integrity] confidentiality\n"),
            Some("integrity")
        );
        assert_eq!(
            marked_level("[none] integrity confidentiality"),
            Some("none")
        );
        assert_eq!(marked_level("none integrity"), None);
    }

    #[test]
    fn lock_writes_the_level_and_reads_back_what_the_kernel_says() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join(LOCKDOWN);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        // A plain file stands for the kernel's: it keeps what keel wrote,
        // so the level read back is what was written.
        std::fs::write(&file, "[none] integrity confidentiality").unwrap();
        assert_eq!(lock(t.path()).unwrap(), "unknown");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), LEVEL);
        // Already at confidentiality: left alone (it cannot be lowered).
        std::fs::write(&file, "none integrity [confidentiality]").unwrap();
        assert_eq!(lock(t.path()).unwrap(), "confidentiality");
        // The status of a node whose kernel has no lockdown says so.
        let none = tempfile::tempdir().unwrap();
        let s = lock_and_report(&none.path().join("missing"), false, "");
        assert!(s.lockdown.starts_with("none ("), "{s:?}");
        // Nor is one told not to lock: nothing is written.
        std::fs::write(&file, "[none] integrity confidentiality").unwrap();
        let s = lock_and_report(
            t.path(),
            true,
            "quiet keel.config.url=https://u:p@h/ panic=-1",
        );
        assert_eq!(s.cmdline, ["quiet", "panic=-1"]);
        assert!(s.lockdown.contains("keel.debug.lockdown=none"), "{s:?}");
        assert!(std::fs::read_to_string(&file)
            .unwrap()
            .starts_with("[none]"));
    }

    #[test]
    fn vulnerabilities_are_listed_and_the_unmitigated_picked_out() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join(VULNERABILITIES);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("meltdown"), "Mitigation: PTI\n").unwrap();
        std::fs::write(
            dir.join("mds"),
            "Vulnerable: Clear CPU buffers attempted, no microcode; SMT Host state unknown\n",
        )
        .unwrap();
        std::fs::write(dir.join("l1tf"), "Not affected\n").unwrap();
        let s = KernelStatus {
            lockdown: LEVEL.into(),
            cpu: vulnerabilities(t.path()),
            cmdline: vec![],
        };
        let names: Vec<&str> = s.cpu.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["l1tf", "mds", "meltdown"]);
        assert_eq!(s.cpu[2].state, "Mitigation: PTI");
        let v: Vec<&str> = s.vulnerable().map(|v| v.name.as_str()).collect();
        assert_eq!(v, ["mds"]);
    }
}
