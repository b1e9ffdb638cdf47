//! pids: `pids.max`, the bound that stops a fork bomb inside its container.

use std::path::Path;

use keel_config::model::Resources;

use super::{read, write, write_default, CgroupError, Stats};

pub fn apply(dir: &Path, res: &Resources) -> Result<(), CgroupError> {
    match res.pids {
        Some(p) => write(dir, "pids.max", &p.to_string()),
        None => write_default(dir, "pids.max", "max"),
    }
}

pub fn stats(dir: &Path, s: &mut Stats) {
    s.pids = read(dir, "pids.current")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    s.pids_max = read(dir, "pids.max")
        .ok()
        .and_then(|t| t.trim().parse().ok());
}
