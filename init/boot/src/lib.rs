//! keel's boot sequence, as data.
//!
//! 1. The guard (`guard`) is installed before anything else: a panic or a fatal
//!    error anywhere logs, syncs and reboots; PID 1 never returns.
//! 2. The boot is a table of phases (`phases`), each a list of named tasks; the
//!    runner times every task into a `Timeline` and logs it on the console.
//! 3. The early mount table (`mounts`) is an array of structs mounted under a
//!    root given as a parameter, so tests run against a temp dir.
//! 4. The kernel command line (`cmdline`) is parsed from its raw text.
//! 5. Diskless boots leave the initramfs rootfs (`switch_root`) for a tmpfs so
//!    that `pivot_root` works for containers later.

pub mod cgroup;
pub mod cmdline;
pub mod guard;
pub mod log;
pub mod mounts;
pub mod phases;
pub mod procfs;
pub mod switch_root;

pub use cmdline::Cmdline;
pub use phases::{Phase, Task, Timeline};
