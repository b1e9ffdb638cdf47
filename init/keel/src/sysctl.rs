//! Kernel settings keel owns, written under a given /proc root.
//!
//! The panic policy: an oops panics (`kernel.panic_on_oops=1`), and a
//! panic ends the way `keel.on_panic` says for PID 1's own faults, even
//! without `panic=` on the command line: reboot and power-off reboot at
//! once (`kernel.panic=-1`; the kernel cannot power off on a panic), halt
//! stays down (`kernel.panic=0`). A `panic=` on the command line is left
//! as it says.

use std::path::Path;

use keel_sys::power::PowerAction;

/// The (file under /proc/sys, value) pairs of the panic policy.
pub fn panic_policy(
    on_panic: PowerAction,
    cmdline_sets_panic: bool,
) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![("kernel/panic_on_oops", "1")];
    if !cmdline_sets_panic {
        v.push((
            "kernel/panic",
            match on_panic {
                PowerAction::Halt => "0",
                PowerAction::Reboot | PowerAction::PowerOff => "-1",
            },
        ));
    }
    v
}

/// The kernel's run-time hardening that its build cannot set (the Kernel
/// Self Protection Project's sysctls; kernel-config/70-hardening.config has
/// the build-time half):
/// - Yama's ptrace scope 1: a process may trace only its descendants
///   (Debian's kernel source starts Yama at 0);
/// - kernel addresses in /proc (kallsyms, modules, ...) only for
///   CAP_SYSLOG, which no container has by default;
/// - the protected links, FIFOs and regular files of world-writable sticky
///   directories (/tmp): no symlink or hard-link races, no O_CREAT of
///   another user's file or FIFO there.
pub const HARDENING: &[(&str, &str)] = &[
    ("kernel/yama/ptrace_scope", "1"),
    ("kernel/kptr_restrict", "1"),
    ("fs/protected_symlinks", "1"),
    ("fs/protected_hardlinks", "1"),
    ("fs/protected_fifos", "2"),
    ("fs/protected_regular", "2"),
];

/// Write each setting; errors name the file.
pub fn write(
    proc_root: &Path,
    settings: &[(&str, &str)],
) -> Result<(), crate::boot_table::TaskError> {
    for (key, value) in settings {
        let path = proc_root.join("sys").join(key);
        std::fs::write(&path, value).map_err(|source| crate::boot_table::TaskError::Io {
            op: "write",
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_follows_on_panic_and_leaves_a_given_panic_alone() {
        assert_eq!(
            panic_policy(PowerAction::Reboot, false),
            [("kernel/panic_on_oops", "1"), ("kernel/panic", "-1")]
        );
        assert_eq!(
            panic_policy(PowerAction::PowerOff, false)[1],
            ("kernel/panic", "-1")
        );
        assert_eq!(
            panic_policy(PowerAction::Halt, false)[1],
            ("kernel/panic", "0")
        );
        assert_eq!(
            panic_policy(PowerAction::Reboot, true),
            [("kernel/panic_on_oops", "1")]
        );
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("sys/kernel")).unwrap();
        write(t.path(), &panic_policy(PowerAction::Halt, false)).unwrap();
        let read = |k: &str| std::fs::read_to_string(t.path().join("sys").join(k)).unwrap();
        assert_eq!(read("kernel/panic"), "0");
        assert_eq!(read("kernel/panic_on_oops"), "1");
        let e = write(&t.path().join("none"), &[("kernel/panic", "1")]).unwrap_err();
        assert!(e.to_string().contains("none/sys/kernel/panic"), "{e}");
    }
}
