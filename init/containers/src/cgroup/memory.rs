//! memory: `memory.max`, `memory.high`, and `memory.oom.group=1` so that an
//! OOM kill takes the whole container, not one of its processes (a
//! half-killed container is worse than a restarted one).

use std::path::Path;

use keel_config::model::Resources;

use super::{keyed, read, write, write_default, CgroupError, Stats};

fn limit(dir: &Path, file: &str, v: Option<u64>) -> Result<(), CgroupError> {
    match v {
        Some(b) => write(dir, file, &b.to_string()),
        None => write_default(dir, file, "max"),
    }
}

pub fn apply(dir: &Path, res: &Resources) -> Result<(), CgroupError> {
    write_default(dir, "memory.oom.group", "1")?;
    limit(dir, "memory.high", res.memory_high)?;
    limit(dir, "memory.max", res.memory)
}

pub fn stats(dir: &Path, s: &mut Stats) {
    s.memory_bytes = read(dir, "memory.current")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    s.memory_max = read(dir, "memory.max")
        .ok()
        .and_then(|t| t.trim().parse().ok());
    if let Ok(ev) = read(dir, "memory.events") {
        s.oom_kills = keyed(&ev, "oom_kill").unwrap_or(0);
        s.oom_group_kills = keyed(&ev, "oom_group_kill").unwrap_or(0);
    }
}
