//! keel's boot sequence, as data.
//!
//! 1. The guard (`guard`) is installed before anything else: a panic or a fatal
//!    error anywhere logs, syncs and reboots; PID 1 never returns.
//! 2. The boot is a table of phases (`phases`), each a list of named tasks; the
//!    runner times every task into a `Timeline` and logs it on the console.
//! 3. The early mount table (`mounts`) is an array of structs mounted under a
//!    root given as a parameter, so tests run against a temp dir.
//! 4. The kernel command line (`cmdline`) is parsed from its raw text.
//! 5. The verified root (`root`): find the OS slots (a GPT disk's KEEL-A and
//!    KEEL-B, or the slot file a diskless initramfs carries), check the
//!    signed manifest, map the root image through dm-verity and mount it.
//! 6. Leave the initramfs rootfs (`switch_root`) for the verified root (or,
//!    when no slot can be trusted, a tmpfs copy: rescue mode), so that
//!    `pivot_root` works for containers later.

pub mod cgroup;
pub mod cmdline;
pub mod guard;
pub mod log;
pub mod mounts;
pub mod phases;
pub mod probe;
pub mod procfs;
pub mod root;
pub mod statefs;
pub mod switch_root;

pub use cmdline::Cmdline;
pub use phases::{Phase, Task, Timeline};
