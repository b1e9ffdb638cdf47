//! A container's cgroup v2 directory: created under keel's `containers`
//! group with the controllers enabled, limits written one controller per
//! file (memory.rs, cpu.rs, pids.rs, io.rs), statistics read back, and
//! `cgroup.kill` to end every process in it at once.
//!
//! The cgroup root is a parameter: unit tests run against a temp dir.

pub mod cpu;
pub mod io;
pub mod memory;
pub mod pids;

use std::path::{Path, PathBuf};

use keel_config::model::Resources;

/// keel's group for containers, under the cgroup root.
pub const GROUP: &str = "containers";

/// The controllers a container's group gets.
pub const CONTROLLERS: &[&str] = &["cpu", "memory", "pids", "io"];

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("create cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("{path} is missing: its controller is not enabled for the group")]
    Missing { path: PathBuf },
    #[error("io_max device {path}: {source}")]
    Device {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("io_max device {path} is not a block device")]
    NotBlockDevice { path: PathBuf },
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("remove cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(|source| CgroupError::Write {
        path,
        value: value.to_string(),
        source,
    })
}

/// `write`, skipped when `dir` lacks `file` (its controller is not enabled
/// there) and `value` is only the kernel's default anyway.
pub(crate) fn write_default(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    if !dir.join(file).exists() {
        return Ok(());
    }
    write(dir, file, value)
}

pub(crate) fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map_err(|source| CgroupError::Read { path, source })
}

/// `key value` lines (cpu.stat, memory.events, ...) as a lookup.
pub(crate) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Create keel's `containers` group under `root` and enable the
/// container controllers the root offers in it (and in the root).
pub fn prepare_root(root: &Path) -> Result<PathBuf, CgroupError> {
    let group = root.join(GROUP);
    std::fs::create_dir_all(&group).map_err(|source| CgroupError::Create {
        path: group.clone(),
        source,
    })?;
    let offered = read(root, "cgroup.controllers").unwrap_or_default();
    let wanted: Vec<String> = CONTROLLERS
        .iter()
        .filter(|c| offered.split_whitespace().any(|o| o == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if !wanted.is_empty() {
        let w = wanted.join(" ");
        write(root, "cgroup.subtree_control", &w)?;
        write(&group, "cgroup.subtree_control", &w)?;
    }
    Ok(group)
}

/// What the node keeps for itself (PID 1, the KV, the kernel) out of
/// `total` bytes of memory: an eighth, at least 32 MiB, at most 512 MiB.
pub fn node_reserve(total: u64) -> u64 {
    (total / 8).clamp(32 << 20, 512 << 20).min(total)
}

/// Cap all containers together at `total` less [`node_reserve`]: the
/// `containers` group's `memory.max`. Returns the cap written.
pub fn cap_group(group: &Path, total: u64) -> Result<u64, CgroupError> {
    let cap = total - node_reserve(total);
    if cap == 0 {
        return Ok(0);
    }
    write(group, "memory.max", &cap.to_string())?;
    Ok(cap)
}

/// A container's cgroup.
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub path: PathBuf,
}

/// Resource use of one container: the API's type, filled from the
/// controllers' files.
pub use keel_api::ContainerStats as Stats;

impl Cgroup {
    /// Create (or reuse, after a crash) the group `name` under `group`, and
    /// write `res` into it; `io_max` devices are the node's (under `/`).
    pub fn create(group: &Path, name: &str, res: &Resources) -> Result<Cgroup, CgroupError> {
        Cgroup::create_in(group, name, res, Path::new("/"))
    }

    /// `create`, with the `io_max` devices looked up under `dev_root`.
    pub fn create_in(
        group: &Path,
        name: &str,
        res: &Resources,
        dev_root: &Path,
    ) -> Result<Cgroup, CgroupError> {
        let path = group.join(name);
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(CgroupError::Create { path, source }),
        }
        let cg = Cgroup { path };
        memory::apply(&cg.path, res)?;
        cpu::apply(&cg.path, res)?;
        pids::apply(&cg.path, res)?;
        io::apply(&cg.path, res, dev_root)?;
        Ok(cg)
    }

    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        cpu::stats(&self.path, &mut s);
        memory::stats(&self.path, &mut s);
        pids::stats(&self.path, &mut s);
        io::stats(&self.path, &mut s);
        s
    }

    /// Whether any process is still in the group.
    pub fn populated(&self) -> bool {
        read(&self.path, "cgroup.events")
            .ok()
            .and_then(|t| keyed(&t, "populated"))
            .is_some_and(|v| v == 1)
    }

    /// SIGKILL every process in the group (`cgroup.kill`).
    pub fn kill(&self) -> Result<(), CgroupError> {
        write(&self.path, "cgroup.kill", "1")
    }

    /// Remove the (empty) group.
    pub fn remove(&self) -> Result<(), CgroupError> {
        match std::fs::remove_dir(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CgroupError::Remove {
                path: self.path.clone(),
                source,
            }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fake cgroup dir with the interface files a real one has.
    pub fn fake(dir: &Path) {
        for f in [
            "memory.max",
            "memory.high",
            "memory.oom.group",
            "cpu.max",
            "cpu.weight",
            "pids.max",
            "io.weight",
            "io.max",
        ] {
            std::fs::write(dir.join(f), "").unwrap();
        }
    }

    #[test]
    fn containers_together_leave_the_node_its_reserve() {
        const MIB: u64 = 1 << 20;
        assert_eq!(node_reserve(64 * MIB), 32 * MIB);
        assert_eq!(node_reserve(1024 * MIB), 128 * MIB);
        assert_eq!(node_reserve(64 * 1024 * MIB), 512 * MIB);
        assert_eq!(node_reserve(16 * MIB), 16 * MIB);
        let t = tempfile::tempdir().unwrap();
        assert_eq!(cap_group(t.path(), 1024 * MIB).unwrap(), 896 * MIB);
        assert_eq!(
            std::fs::read_to_string(t.path().join("memory.max")).unwrap(),
            (896 * MIB).to_string()
        );
    }

    #[test]
    fn prepare_root_enables_what_is_offered() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        std::fs::write(t.path().join("cgroup.subtree_control"), "").unwrap();
        let g = prepare_root(t.path()).unwrap();
        assert_eq!(g, t.path().join("containers"));
        assert_eq!(
            std::fs::read_to_string(g.join("cgroup.subtree_control")).unwrap(),
            "+cpu +memory +pids"
        );
    }

    #[test]
    fn create_writes_every_limit() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("web");
        std::fs::create_dir(&dir).unwrap();
        fake(&dir);
        let res = Resources {
            memory: Some(64 << 20),
            memory_high: Some(48 << 20),
            millicpus: Some(1500),
            cpu_weight: Some(200),
            pids: Some(64),
            io_weight: Some(50),
            io_max: Vec::new(),
        };
        Cgroup::create(t.path(), "web", &res).unwrap();
        let r = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(r("memory.max"), "67108864");
        assert_eq!(r("memory.high"), "50331648");
        assert_eq!(r("memory.oom.group"), "1");
        assert_eq!(r("cpu.max"), "150000 100000");
        assert_eq!(r("cpu.weight"), "200");
        assert_eq!(r("pids.max"), "64");
        assert_eq!(r("io.weight"), "default 50");
    }

    #[test]
    fn defaults_write_max() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a");
        std::fs::create_dir(&dir).unwrap();
        fake(&dir);
        Cgroup::create(t.path(), "a", &Resources::default()).unwrap();
        let r = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(r("memory.max"), "max");
        assert_eq!(r("cpu.max"), "max 100000");
        assert_eq!(r("pids.max"), "max");
    }

    #[test]
    fn stats_read_back() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("cpu.stat"), "usage_usec 1234\nuser_usec 1000\n").unwrap();
        std::fs::write(d.join("memory.current"), "4096\n").unwrap();
        std::fs::write(d.join("memory.max"), "max\n").unwrap();
        std::fs::write(
            d.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\noom_group_kill 1\n",
        )
        .unwrap();
        std::fs::write(d.join("pids.current"), "3\n").unwrap();
        std::fs::write(d.join("pids.max"), "64\n").unwrap();
        std::fs::write(
            d.join("io.stat"),
            "254:0 rbytes=4096 wbytes=512 rios=1 wios=1 dbytes=0 dios=0\n",
        )
        .unwrap();
        let s = Cgroup {
            path: d.to_path_buf(),
        }
        .stats();
        assert_eq!(
            s,
            Stats {
                cpu_usec: 1234,
                memory_bytes: 4096,
                memory_max: None,
                pids: 3,
                pids_max: Some(64),
                oom_kills: 2,
                oom_group_kills: 1,
                io_rbytes: 4096,
                io_wbytes: 512,
            }
        );
    }

    #[test]
    fn errors_name_the_file() {
        let t = tempfile::tempdir().unwrap();
        let e = Cgroup {
            path: t.path().join("gone"),
        }
        .kill()
        .unwrap_err();
        assert!(e.to_string().contains("gone/cgroup.kill"), "{e}");
    }
}
