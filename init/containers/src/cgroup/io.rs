//! io: `io.weight` (proportional share against the other containers). A
//! missing io controller (no block device, e.g. a diskless node) is not an
//! error: the weight has nothing to apply to.

use std::path::Path;

use keel_config::model::Resources;

use super::{write, CgroupError};

pub fn apply(dir: &Path, res: &Resources) -> Result<(), CgroupError> {
    let Some(w) = res.io_weight else {
        return Ok(());
    };
    if !dir.join("io.weight").exists() {
        return Ok(());
    }
    write(dir, "io.weight", &format!("default {w}"))
}
