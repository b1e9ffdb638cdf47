//! What the helper programs share with host-side tests.
//!
//! - `crun_bench`: the container benchmark's reference runtime (Debian's
//!   crun), its bundle configuration and timing loop.

pub mod crun_bench;
