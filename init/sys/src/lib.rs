//! keel's system layer: safe wrappers over the syscalls and ioctls PID 1 needs.
//!
//! This is the only crate of keel allowed to contain `unsafe`; every block says
//! why it is sound. Everything else calls the safe functions re-exported here.

pub mod block;
pub mod child;
pub mod confine;
pub mod dm;
mod error;
pub mod fs;
pub mod kexec;
pub mod netlink;
pub mod netns;
pub mod nftables;
pub mod packet;
pub mod power;
pub mod proc;
pub mod signal;
pub mod spawn;

pub use error::SysError;
