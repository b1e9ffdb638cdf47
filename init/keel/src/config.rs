//! The boot tasks of the cloud-config: load it from the first datasource that
//! has one, validate it, apply it all or nothing. A config with errors puts
//! the node in maintenance mode: every error on the console and in the API,
//! nothing written.
//!
//! Datasources, in order (the first found wins):
//! 1. qemu fw_cfg `opt/keel/config`, then `opt/com.coreos/config` and
//!    `opt/org.flatcar-linux/config` (Ignition JSON there is refused, with
//!    what keel reads instead).

use std::path::Path;

use keel_api::{ConfigItem, ConfigStatus};
use keel_boot::{error, info};

use crate::boot_table::{Ctx, TaskError};

/// Where the kernel shows qemu's fw_cfg files.
pub const FW_CFG: &str = "/sys/firmware/qemu_fw_cfg/by_name";
/// fw_cfg names keel reads, in order.
pub const FW_CFG_NAMES: &[&str] = &[
    "opt/keel/config",
    "opt/com.coreos/config",
    "opt/org.flatcar-linux/config",
];

/// Read at most `max + 1` bytes of `path` (to tell "too big" from "exactly
/// max").
fn read_bounded(path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(max as u64 + 1)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// The first config found: `(source, bytes)`.
pub fn find(fw_cfg: &Path) -> Option<(String, Vec<u8>)> {
    for name in FW_CFG_NAMES {
        let raw = fw_cfg.join(name).join("raw");
        if let Ok(b) = read_bounded(&raw, keel_config::yaml::MAX_BYTES) {
            return Some((format!("fw_cfg {name}"), b));
        }
    }
    None
}

pub fn load_config(ctx: &mut Ctx) -> Result<(), TaskError> {
    match find(Path::new(FW_CFG)) {
        Some((source, bytes)) => {
            info!("config: from {source} ({} bytes)", bytes.len());
            ctx.config_status.source = Some(source);
            ctx.config_text = Some(bytes);
        }
        None => info!("config: no datasource has one: defaults"),
    }
    Ok(())
}

pub fn apply_config(ctx: &mut Ctx) -> Result<(), TaskError> {
    let Some(bytes) = ctx.config_text.take() else {
        return Ok(());
    };
    let st = &mut ctx.config_status;
    let report = if bytes.len() > keel_config::yaml::MAX_BYTES {
        st.errors.push(format!(
            "1:1: (document): over the {} byte limit",
            keel_config::yaml::MAX_BYTES
        ));
        None
    } else {
        match String::from_utf8(bytes) {
            Ok(text) => Some(keel_config::validate(&text)),
            Err(_) => {
                st.errors.push("1:1: (document): not UTF-8 text".into());
                None
            }
        }
    };
    if let Some(r) = &report {
        st.errors.extend(r.errors.iter().map(|e| e.to_string()));
        st.items = r
            .items
            .iter()
            .map(|i| ConfigItem {
                path: i.path.clone(),
                line: i.line,
                verdict: i.verdict.as_str().into(),
                note: i.note.clone(),
            })
            .collect();
    }
    let plan = match &report {
        Some(r) if r.accepted() => match keel_config::plan::plan(&r.config) {
            Ok(p) => Some(p),
            Err(e) => {
                st.errors.push(e.to_string());
                None
            }
        },
        _ => None,
    };
    let Some(plan) = plan else {
        return maintenance(st);
    };
    match keel_config::apply::apply(&plan, Path::new("/"), false) {
        Ok(done) => {
            if let Some(h) = &plan.hostname {
                keel_sys::proc::set_hostname(h)?;
            }
            info!(
                "config: applied ({} files changed, {} unchanged, {} directories created; {} items)",
                done.files_changed.len(),
                done.files_unchanged.len(),
                done.dirs_created.len(),
                st.items.len()
            );
            for i in st.items.iter().filter(|i| i.verdict == "refused") {
                info!("config: refused {} (line {}): {}", i.path, i.line, i.note);
            }
            st.changed = done.files_changed;
            Ok(())
        }
        Err(e) => {
            st.errors.push(format!("apply: {e} (nothing was changed)"));
            maintenance(st)
        }
    }
}

fn maintenance(st: &mut ConfigStatus) -> Result<(), TaskError> {
    st.maintenance = true;
    error!(
        "config: {} errors: maintenance mode, nothing applied",
        st.errors.len()
    );
    for e in &st.errors {
        error!("config: {e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fw_cfg_name_wins() {
        let t = tempfile::tempdir().unwrap();
        assert!(find(t.path()).is_none());
        let coreos = t.path().join("opt/com.coreos/config");
        std::fs::create_dir_all(&coreos).unwrap();
        std::fs::write(coreos.join("raw"), b"#cloud-config\n").unwrap();
        assert_eq!(find(t.path()).unwrap().0, "fw_cfg opt/com.coreos/config");
        let keel = t.path().join("opt/keel/config");
        std::fs::create_dir_all(&keel).unwrap();
        std::fs::write(keel.join("raw"), b"#cloud-config\nhostname: a\n").unwrap();
        assert_eq!(find(t.path()).unwrap().0, "fw_cfg opt/keel/config");
    }
}
