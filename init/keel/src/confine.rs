//! A container's confinement, prepared in keel for the child: the
//! capability set (containerd's defaults with the container's add/drop),
//! the seccomp filter for that set (compiled once per distinct set), the
//! user. The child applies it with `keel_sys::confine::confine_child`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use keel_config::model::Container;
use keel_confine::CapSet;
use keel_containers::runtime::{Confinement, HookError, Ident};

/// Compiled filters by capability mask: compiling costs more than a start.
fn filters() -> &'static Mutex<HashMap<u64, Arc<Vec<libc::sock_filter>>>> {
    static F: OnceLock<Mutex<HashMap<u64, Arc<Vec<libc::sock_filter>>>>> = OnceLock::new();
    F.get_or_init(Default::default)
}

/// Why a container's confinement could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ConfinerError {
    #[error("compile the seccomp filter for {caps}: {source}")]
    Filter {
        caps: CapSet,
        source: keel_confine::ConfineError,
    },
    #[error("prepare the confinement of uid {uid}: {source}")]
    Prepare {
        uid: u32,
        source: keel_sys::SysError,
    },
}

fn filter_for(caps: CapSet) -> Result<Arc<Vec<libc::sock_filter>>, ConfinerError> {
    if let Some(f) = filters()
        .lock()
        .ok()
        .and_then(|m| m.get(&caps.bits()).cloned())
    {
        return Ok(f);
    }
    let prog = keel_confine::default_filter(&caps)
        .map_err(|source| ConfinerError::Filter { caps, source })?;
    let f = Arc::new(keel_confine::to_kernel(&prog));
    if let Ok(mut m) = filters().lock() {
        m.insert(caps.bits(), f.clone());
    }
    Ok(f)
}

/// `keel_containers::runtime::Confiner` for the node.
pub fn confiner(c: &Container, who: &Ident) -> Result<Confinement, HookError> {
    let caps = CapSet::from_defaults_with(&c.cap_add, &c.cap_drop);
    let filter = filter_for(caps)?;
    let p = keel_sys::confine::Prepared::new(caps.bits(), &filter, who.uid, who.gid, &who.groups)
        .map_err(|source| ConfinerError::Prepare {
        uid: who.uid,
        source,
    })?;
    Ok(Box::new(move || {
        keel_sys::confine::confine_child(&p).map_err(|(_, errno)| errno)
    }))
}
