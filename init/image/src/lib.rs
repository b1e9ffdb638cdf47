//! keel's image tool: the artifacts a node boots, reproducibly.
//!
//! - `initramfs` (below): the cpio archive.
//! - [`rootfs`]: the EROFS root image.
//! - [`slot`]: a signed slot (root, dm-verity tree, kernel, initramfs, manifest).
//! - [`disk`]: the GPT disk image (ESP, KEEL-A, KEEL-B, STATE).
//! - [`oci`]: container images as OCI layouts (one reproducible layer).
//!
//! The initramfs:
//! 1. Read one or more spec files in the kernel's `gen_init_cpio` syntax
//!    (`dir`, `file`, `nod`, `slink`), expanding `${VAR}` in source paths.
//! 2. Add missing parent directories, sort entries by path, number inodes in
//!    that order, stamp every entry with one mtime (`SOURCE_DATE_EPOCH`).
//! 3. Write a `newc` cpio archive and compress it with zstd at a fixed level.
//!
//! The same inputs give the same bytes.

pub mod cpio;
pub mod disk;
pub mod oci;
pub mod rootfs;
pub mod slot;
pub mod spec;

pub use spec::{Entry, Kind, Spec, SpecError};
