//! Carry out a [`crate::plan::Plan`] under a root directory, all or nothing.
//!
//! 1. Create the missing directories, remembering which.
//! 2. Write every file to a temporary name next to its target, set its
//!    owner and mode, fsync it.
//! 3. Only when every temporary file is in place, rename each onto its
//!    target (atomic per file), then fsync each directory once.
//!
//! fsyncs are skipped where they buy nothing: the caller says which
//! directories are durable (a tmpfs such as /etc is not), so a boot does not
//! pay for syncing memory.
//!
//! A failure in 1 or 2 removes what this apply created (temporary files,
//! new directories): nothing on disk has changed. Renames in 3 do not fail
//! short of a dying disk. The root is a parameter: tests apply to a temp
//! directory; the node applies to `/`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::plan::Plan;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What an apply changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub dirs_created: Vec<String>,
    /// Files whose content or mode changed.
    pub files_changed: Vec<String>,
    /// Files already as planned (left alone: applying twice changes nothing).
    pub files_unchanged: Vec<String>,
}

fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ApplyError {
    let path = path.to_path_buf();
    move |source| ApplyError::Io { op, path, source }
}

fn fchown(f: &std::fs::File, uid: u32, gid: u32) -> std::io::Result<()> {
    // Only root can give files away; in tests run as a user, owners stay.
    match std::os::unix::fs::fchown(f, Some(uid), Some(gid)) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
        r => r,
    }
}

fn chown(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    // Only root can give files away; in tests run as a user, owners stay.
    match std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
        r => r,
    }
}

/// Whether `path` already holds `content` with `mode`.
fn same(path: &Path, content: &[u8], mode: u32) -> bool {
    match (std::fs::metadata(path), std::fs::read(path)) {
        (Ok(m), Ok(c)) => m.permissions().mode() & 0o7777 == mode && c == content,
        _ => false,
    }
}

/// Apply `plan` under `root`, syncing every file. `dry_run` computes what
/// would change and touches nothing.
pub fn apply(plan: &Plan, root: &Path, dry_run: bool) -> Result<Applied, ApplyError> {
    apply_with(plan, root, dry_run, &|_| true)
}

/// `apply`, with `durable(dir)` saying whether files in `dir` need fsync
/// (false for a tmpfs).
pub fn apply_with(
    plan: &Plan,
    root: &Path,
    dry_run: bool,
    durable: &dyn Fn(&Path) -> bool,
) -> Result<Applied, ApplyError> {
    let mut out = Applied::default();
    let mut created: Vec<PathBuf> = Vec::new();
    let mut temps: Vec<(PathBuf, PathBuf)> = Vec::new();
    let result = (|| {
        for d in &plan.dirs {
            let p = under(root, &d.path);
            if p.is_dir() {
                continue;
            }
            out.dirs_created.push(d.path.clone());
            if dry_run {
                continue;
            }
            // Create each missing ancestor, remembering it for the undo.
            let mut missing = Vec::new();
            let mut a = p.as_path();
            while !a.exists() {
                missing.push(a.to_path_buf());
                match a.parent() {
                    Some(parent) => a = parent,
                    None => break,
                }
            }
            for m in missing.iter().rev() {
                std::fs::create_dir(m).map_err(io("create directory", m))?;
                created.push(m.clone());
            }
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(d.mode))
                .map_err(io("chmod", &p))?;
            chown(&p, d.uid, d.gid).map_err(io("chown", &p))?;
        }
        for f in &plan.files {
            let target = under(root, &f.path);
            if same(&target, &f.content, f.mode) {
                out.files_unchanged.push(f.path.clone());
                continue;
            }
            out.files_changed.push(f.path.clone());
            if dry_run {
                continue;
            }
            let parent = target.parent().unwrap_or(root).to_path_buf();
            if !parent.is_dir() {
                let mut missing = Vec::new();
                let mut a = parent.as_path();
                while !a.exists() {
                    missing.push(a.to_path_buf());
                    match a.parent() {
                        Some(p) => a = p,
                        None => break,
                    }
                }
                for m in missing.iter().rev() {
                    std::fs::create_dir(m).map_err(io("create directory", m))?;
                    created.push(m.clone());
                }
            }
            let name = target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = parent.join(format!(".{name}.keel-tmp"));
            // A leftover (or planted) temporary name is unlinked, never
            // followed: the file is created new (O_EXCL) without following
            // a symlink (O_NOFOLLOW), and owner and mode are set on the
            // descriptor, not the name.
            match std::fs::remove_file(&tmp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io("remove the stale", &tmp)(e));
                }
                _ => {}
            }
            let mut fh = std::fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)
                .map_err(io("create", &tmp))?;
            temps.push((tmp.clone(), target.clone()));
            fh.write_all(&f.content).map_err(io("write", &tmp))?;
            fchown(&fh, f.uid, f.gid).map_err(io("chown", &tmp))?;
            // chown clears set-id bits: the mode goes last.
            fh.set_permissions(std::fs::Permissions::from_mode(f.mode))
                .map_err(io("chmod", &tmp))?;
            if durable(&parent) {
                fh.sync_all().map_err(io("fsync", &tmp))?;
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        for (tmp, _) in &temps {
            let _ = std::fs::remove_file(tmp);
        }
        for d in created.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
        return Err(e);
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (tmp, target) in &temps {
        std::fs::rename(tmp, target).map_err(io("rename onto", target))?;
        if let Some(parent) = target.parent() {
            if !dirs.iter().any(|d| d == parent) {
                dirs.push(parent.to_path_buf());
            }
        }
    }
    for d in dirs.iter().filter(|d| durable(d)) {
        if let Ok(f) = std::fs::File::open(d) {
            let _ = f.sync_all();
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{DirCreate, FileWrite};

    fn plan(files: &[(&str, &[u8], u32)]) -> Plan {
        Plan {
            hostname: None,
            dirs: vec![DirCreate {
                path: "/home/a/.ssh".into(),
                mode: 0o700,
                uid: 0,
                gid: 0,
            }],
            files: files
                .iter()
                .map(|(p, c, m)| FileWrite {
                    path: p.to_string(),
                    content: c.to_vec(),
                    mode: *m,
                    uid: 0,
                    gid: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn applies_then_applying_again_changes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let p = plan(&[
            ("/etc/hostname", b"web\n", 0o644),
            ("/etc/ssl/x.pem", b"k", 0o600),
        ]);
        let a = apply(&p, t.path(), false).unwrap();
        assert_eq!(a.files_changed.len(), 2);
        assert_eq!(std::fs::read(t.path().join("etc/ssl/x.pem")).unwrap(), b"k");
        let m = std::fs::metadata(t.path().join("etc/ssl/x.pem")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o600);
        assert_eq!(
            std::fs::metadata(t.path().join("home/a/.ssh"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let again = apply(&p, t.path(), false).unwrap();
        assert!(
            again.files_changed.is_empty() && again.dirs_created.is_empty(),
            "{again:?}"
        );
        assert_eq!(again.files_unchanged.len(), 2);
    }

    #[test]
    fn dry_run_touches_nothing() {
        let t = tempfile::tempdir().unwrap();
        let p = plan(&[("/etc/hostname", b"web\n", 0o644)]);
        let a = apply(&p, t.path(), true).unwrap();
        assert_eq!(a.files_changed, ["/etc/hostname"]);
        assert_eq!(a.dirs_created, ["/home/a/.ssh"]);
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_failure_leaves_nothing_behind() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/hostname"), b"old\n").unwrap();
        // The second file's parent is a file: creating it fails after the
        // first file was staged.
        std::fs::write(t.path().join("blocker"), b"").unwrap();
        let p = plan(&[
            ("/etc/hostname", b"new\n", 0o644),
            ("/blocker/x", b"y", 0o644),
        ]);
        assert!(apply(&p, t.path(), false).is_err());
        assert_eq!(
            std::fs::read(t.path().join("etc/hostname")).unwrap(),
            b"old\n"
        );
        let mut names: Vec<String> = walk(t.path());
        names.sort();
        assert_eq!(
            names,
            ["blocker", "etc", "etc/hostname"],
            "no temp files, no new directories"
        );
    }

    #[test]
    fn a_planted_temporary_symlink_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("shadow");
        std::fs::write(&victim, b"root:secret\n").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(&victim, t.path().join("etc/.hostname.keel-tmp")).unwrap();
        let p = plan(&[("/etc/hostname", b"web\n", 0o644)]);
        apply(&p, t.path(), false).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"root:secret\n");
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the link's target was not chmod'ed");
        let host = t.path().join("etc/hostname");
        assert_eq!(std::fs::read(&host).unwrap(), b"web\n");
        assert!(!std::fs::symlink_metadata(&host)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            std::fs::metadata(&host).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }

    fn walk(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                if p.is_dir() {
                    stack.push(p);
                }
            }
        }
        out
    }
}
