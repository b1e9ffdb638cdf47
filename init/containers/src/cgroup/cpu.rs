//! cpu: `cpu.max` (a quota per 100 ms period: `cpus: 1.5` is 150 ms of CPU
//! time every 100 ms) and `cpu.weight`.

use std::path::Path;

use keel_config::model::Resources;

use super::{keyed, read, write, write_default, CgroupError, Stats};

/// The `cpu.max` period, µs.
pub const PERIOD_US: u64 = 100_000;

pub fn apply(dir: &Path, res: &Resources) -> Result<(), CgroupError> {
    match res.millicpus {
        Some(m) => write(
            dir,
            "cpu.max",
            &format!("{} {PERIOD_US}", m * PERIOD_US / 1000),
        )?,
        None => write_default(dir, "cpu.max", &format!("max {PERIOD_US}"))?,
    }
    if let Some(w) = res.cpu_weight {
        write(dir, "cpu.weight", &w.to_string())?;
    }
    Ok(())
}

pub fn stats(dir: &Path, s: &mut Stats) {
    s.cpu_usec = read(dir, "cpu.stat")
        .ok()
        .and_then(|t| keyed(&t, "usage_usec"))
        .unwrap_or(0);
}
