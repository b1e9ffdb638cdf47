//! Where each part of a slot lives.
//!
//! A slot is a partition (KEEL-A, KEEL-B) or, in diskless boots, a file:
//!
//! ```text
//! 0                  root image (EROFS), whole 4 KiB blocks   = verity data
//! root.size          verity superblock (4 KiB) + hash tree     = verity hash area
//! (4 KiB aligned)    kernel (bzImage)                           optional
//! (4 KiB aligned)    initramfs                                  optional
//! ...                free (room for bigger updates)
//! end - 64 KiB       footer: signed manifest
//! ```
//!
//! The footer is anchored at the end so a reader finds it knowing only the
//! slot's size; the manifest gives every other offset. The data and the hash
//! area share one device, so dm-verity needs no extra mapping: its hash
//! start block is the block after the superblock.

/// Size of the footer that ends every slot.
pub const FOOTER_SIZE: u64 = 64 * 1024;
/// Alignment of every part.
pub const ALIGN: u64 = crate::verity::BLOCK as u64;

/// Round `n` up to the slot alignment.
pub fn align(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

/// Byte offset of the footer in a slot of `slot_size` bytes.
pub fn footer_offset(slot_size: u64) -> Option<u64> {
    slot_size.checked_sub(FOOTER_SIZE)
}
