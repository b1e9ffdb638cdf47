//! reboot(2): restart, power off, halt, and the Ctrl-Alt-Del behaviour.

use nix::sys::reboot::{reboot, set_cad_enabled, RebootMode};

use crate::SysError;

/// What to do with the machine at the end of a shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    Reboot,
    PowerOff,
    Halt,
}

impl PowerAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::Reboot => "reboot",
            PowerAction::PowerOff => "poweroff",
            PowerAction::Halt => "halt",
        }
    }
}

/// Ask the kernel to restart, power off or halt now. Returns only on failure.
///
/// Callers must have synced and unmounted first: the kernel does neither.
pub fn machine(action: PowerAction) -> SysError {
    let mode = match action {
        PowerAction::Reboot => RebootMode::RB_AUTOBOOT,
        PowerAction::PowerOff => RebootMode::RB_POWER_OFF,
        PowerAction::Halt => RebootMode::RB_HALT_SYSTEM,
    };
    match reboot(mode) {
        Ok(never) => match never {},
        Err(source) => SysError::Reboot {
            cmd: action.as_str(),
            source,
        },
    }
}

/// The error `machine` returns when the kernel refuses the call (EPERM: no
/// CAP_SYS_BOOT), without making it: for the guard's test knob
/// `keel.debug.reboot=fail`, which exercises what follows a failed reboot.
pub fn refused(action: PowerAction) -> SysError {
    SysError::Reboot {
        cmd: action.as_str(),
        source: nix::errno::Errno::EPERM,
    }
}

/// Make Ctrl-Alt-Del send SIGINT to PID 1 instead of an immediate hard reset,
/// so that it goes through the orderly shutdown path.
pub fn ctrl_alt_del_signals_init() -> Result<(), SysError> {
    set_cad_enabled(false).map_err(|source| SysError::Reboot {
        cmd: "cad_off",
        source,
    })
}
