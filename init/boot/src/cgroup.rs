//! The cgroup v2 root: enable every available controller for children.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("enable controllers {wanted:?} in {path}: {source}")]
    Enable {
        path: PathBuf,
        wanted: String,
        source: std::io::Error,
    },
}

/// Write `+ctrl` for each controller listed in `cgroup.controllers` into
/// `cgroup.subtree_control` of `cgroup_root`, so that child cgroups (the
/// containers) can use them. Returns the controllers enabled.
pub fn enable_controllers(cgroup_root: &Path) -> Result<Vec<String>, CgroupError> {
    let available = cgroup_root.join("cgroup.controllers");
    let text = std::fs::read_to_string(&available).map_err(|source| CgroupError::Read {
        path: available,
        source,
    })?;
    let ctrls: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    if ctrls.is_empty() {
        return Ok(ctrls);
    }
    let wanted = ctrls
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    let control = cgroup_root.join("cgroup.subtree_control");
    std::fs::write(&control, &wanted).map_err(|source| CgroupError::Enable {
        path: control,
        wanted,
        source,
    })?;
    Ok(ctrls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enables_what_the_root_offers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("cgroup.subtree_control"), "").unwrap();
        let got = enable_controllers(dir.path()).unwrap();
        assert_eq!(got, ["cpuset", "cpu", "io", "memory", "pids"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("cgroup.subtree_control")).unwrap(),
            "+cpuset +cpu +io +memory +pids"
        );
    }

    #[test]
    fn missing_root_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = enable_controllers(&dir.path().join("nope")).unwrap_err();
        assert!(err.to_string().contains("cgroup.controllers"), "{err}");
    }
}
