//! keel's container confinement policy, as data.
//!
//! keel starts containers with clone3 from a multi-threaded PID 1: between
//! clone and execve the child may only do async-signal-safe work, so nothing
//! here runs in the child. The parent uses this crate to
//!
//! 1. work out the container's capability set ([`CapSet`]: containerd's
//!    defaults adjusted by the spec's add and drop lists),
//! 2. compile the seccomp filter for that set ([`default_filter`], moby's
//!    default profile for x86_64),
//! 3. hand both, as plain numbers and a `struct sock_filter` array
//!    ([`to_kernel`]), to `keel_sys::confine::Prepared`, which the child
//!    applies with raw syscalls.

mod error;
mod seccomp;

// The capabilities are modelled types of the ground crate (the config
// parses them there too): re-exported for the policy's callers.
pub use error::ConfineError;
pub use keel_types::{CapEntry, CapSet, Capability, DEFAULT_CAPS, LAST_CAP};
pub use seccomp::{default_filter, to_kernel};
pub use seccompiler::BpfProgram;

/// The syscall tables, for callers that document or audit the policy.
pub mod tables {
    pub use crate::seccomp::{
        Syscall, ALWAYS, AUDIT_ARCH_X86_64, BY_CAPABILITY, CLONE_NAMESPACE_FLAGS,
        PERSONALITY_ALLOWED, X32_SYSCALL_BIT,
    };
}
