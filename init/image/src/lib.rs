//! keel's image tool: a reproducible initramfs.
//!
//! 1. Read one or more spec files in the kernel's `gen_init_cpio` syntax
//!    (`dir`, `file`, `nod`, `slink`), expanding `${VAR}` in source paths.
//! 2. Add missing parent directories, sort entries by path, number inodes in
//!    that order, stamp every entry with one mtime (`SOURCE_DATE_EPOCH`).
//! 3. Write a `newc` cpio archive and compress it with zstd at a fixed level.
//!
//! The same inputs give the same bytes.

pub mod cpio;
pub mod spec;

pub use spec::{Entry, Kind, Spec, SpecError};
