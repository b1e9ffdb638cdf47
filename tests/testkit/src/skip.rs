//! How a test says that it cannot run here.
//!
//! A test may skip only when the environment lacks something (root, a
//! command, a device), never when the code under test returns an error. A
//! skip is not silent:
//!
//! 1. it prints `skipped: TEST: WHY` on stderr;
//! 2. it appends the same line to the file `KEEL_SKIP_LOG` names, so that
//!    `make check` and `make test` end with a summary of every skip (libtest
//!    hides the output of passing tests);
//! 3. in CI (`CI=true`) it panics instead: there every test must run, so a
//!    skip fails the run, naming the test and what was missing.
//!
//! Use it as `if !keel_testkit::need_root() { return; }`.

use std::fmt::Display;
use std::io::Write;
use std::path::Path;

/// Skip the running test because the environment lacks `why`. Returns
/// normally outside CI (the caller then returns); panics in CI.
pub fn skip(why: impl Display) {
    let name = std::thread::current()
        .name()
        .unwrap_or("(unnamed test)")
        .to_string();
    let log = std::env::var_os("KEEL_SKIP_LOG");
    if let Err(fail) = record(ci(), log.as_deref().map(Path::new), &name, &why.to_string()) {
        panic!("{fail}");
    }
}

/// True in CI: `CI` is set to `true` or `1` (GitHub, GitLab and .ci/run).
pub fn ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true" | "1"))
}

/// True when the test runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skip unless root; returns whether the test may go on.
pub fn need_root() -> bool {
    if is_root() {
        return true;
    }
    skip("needs root");
    false
}

/// Skip unless `command` is on PATH; `package` is the Debian package that
/// has it (scripts/deps.sh installs it). Returns whether the test may go on.
pub fn need_command(command: &str, package: &str) -> bool {
    if on_path(command) {
        return true;
    }
    skip(format!(
        "{command} is not installed (Debian package {package}; make deps)"
    ));
    false
}

/// Whether `command` is an executable file in a directory of PATH (or the
/// sbin directories a non-root PATH may lack).
pub fn on_path(command: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .filter(|d| !d.is_empty())
        .any(|d| {
            std::fs::metadata(Path::new(d).join(command))
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        });
    found
}

/// The skip itself: the line on stderr and in the log, or the failure in CI.
fn record(ci: bool, log: Option<&Path>, name: &str, why: &str) -> Result<(), String> {
    if ci {
        return Err(format!(
            "{name}: would skip ({why}), and in CI (CI=true) every test must run"
        ));
    }
    let line = format!("skipped: {name}: {why}");
    eprintln!("{line}");
    if let Some(log) = log {
        // One short write with O_APPEND: lines of tests running at once do
        // not interleave.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = written {
            return Err(format!("{name}: record the skip in {}: {e}", log.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_is_logged_outside_ci() {
        let dir = std::env::temp_dir().join(format!("keel-testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("skips.log");
        record(false, Some(&log), "a::t", "needs root").unwrap();
        record(false, Some(&log), "b::t", "no etcd").unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text, "skipped: a::t: needs root\nskipped: b::t: no etcd\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_skip_fails_in_ci_and_writes_nothing() {
        let dir = std::env::temp_dir().join(format!("keel-testkit-ci-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("skips.log");
        let e = record(true, Some(&log), "a::t", "needs root").unwrap_err();
        assert!(
            e.contains("a::t") && e.contains("needs root") && e.contains("CI"),
            "{e}"
        );
        assert!(!log.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn commands_are_found_on_path() {
        assert!(on_path("sh"));
        assert!(!on_path("no-such-command-keel"));
    }
}
