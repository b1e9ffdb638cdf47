//! What keel's tests share.
//!
//! - [`skip`]: a test that cannot run here says so, the skip is listed at the
//!   end of `make check` / `make test`, and in CI it fails the run.
//! - [`wait`]: waits on child processes and conditions with deadlines, so a
//!   hung program fails its test instead of holding CI for its whole time
//!   limit; a free loopback port for a program under test.

pub mod skip;
pub mod wait;

pub use skip::{ci, is_root, need_command, need_root, on_path, skip};
pub use wait::{exit_within, exited_within, free_port, output_within, until};
