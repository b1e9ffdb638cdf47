//! keel's OS slot format, shared by the image tool (host) and PID 1.
//!
//! A *slot* is one copy of the OS: a root image (EROFS), its dm-verity hash
//! tree, optionally the kernel and initramfs that boot it, and a signed
//! manifest that describes all of them. On a disk the two slots are the GPT
//! partitions KEEL-A and KEEL-B; diskless boots carry one slot as a file in
//! the initramfs. Everything here is pure: bytes in, values or bytes out.
//!
//! - [`verity`]: the dm-verity hash tree and superblock (what `veritysetup
//!   format` writes), computed in Rust.
//! - [`manifest`]: the manifest, its ed25519 signature, and the footer that
//!   carries both at the end of a slot.
//! - [`gpt`]: GPT headers and entry arrays, parsed and written with CRCs.
//! - [`state`]: the A/B slot state over the GPT attribute bits and the choice
//!   of the slot to boot.
//! - [`layout`]: where each part of a slot lives.

pub mod gpt;
pub mod hex;
pub mod layout;
pub mod manifest;
pub mod state;
pub mod verity;
