//! The dm-verity hash tree, computed the way the kernel checks it.
//!
//! Format 1 (what `veritysetup format` writes by default), SHA-256, 4 KiB
//! data and hash blocks:
//!
//! 1. Level 0 holds the digest of every data block, `sha256(salt ‖ block)`,
//!    128 digests to a hash block, the last block zero-padded.
//! 2. Level i+1 holds the digests of level i's hash blocks, the same way,
//!    until a level fits in one block. The number of levels is the kernel's
//!    (`drivers/md/dm-verity-target.c`): the smallest L with
//!    `(data_blocks - 1) >> (7 * L) == 0`, so one data block has no level.
//! 3. The root hash is the digest of the top level's single block (of the
//!    only data block when there is no level).
//! 4. On disk the top level comes first, level 0 last, after a 4 KiB block
//!    that holds the 512-byte `veritysetup` superblock (algorithm, block
//!    sizes, data block count, salt), so `veritysetup verify` can check an
//!    image with no other parameter than the root hash.

use sha2::{Digest, Sha256};

/// Data and hash block size: the page size, which EROFS and dm-verity like.
pub const BLOCK: usize = 4096;
const DIGEST: usize = 32;
const PER_BLOCK_BITS: u32 = 7; // 4096 / 32 = 128 digests per hash block
/// Longest salt the superblock can carry.
pub const MAX_SALT: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerityError {
    #[error("verity data is {len} bytes: not a whole number of {BLOCK}-byte blocks")]
    Unaligned { len: usize },
    #[error("verity data is empty")]
    Empty,
    #[error("verity salt is {len} bytes: at most {MAX_SALT}")]
    SaltTooLong { len: usize },
}

/// A computed hash tree: what to write after the data, and what the kernel
/// needs to check it.
#[derive(Debug, Clone)]
pub struct Tree {
    pub root: [u8; DIGEST],
    pub salt: Vec<u8>,
    pub data_blocks: u64,
    /// Hash blocks, top level first (the on-disk order).
    pub blocks: Vec<u8>,
}

fn hash_block(salt: &[u8], block: &[u8]) -> [u8; DIGEST] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// The kernel's number of tree levels for `data_blocks` blocks.
pub fn levels(data_blocks: u64) -> u32 {
    let mut levels = 0;
    if data_blocks > 0 {
        while PER_BLOCK_BITS * levels < 64 && (data_blocks - 1) >> (PER_BLOCK_BITS * levels) != 0 {
            levels += 1;
        }
    }
    levels
}

/// Hash blocks of the tree for `data_blocks` blocks (without the superblock).
pub fn tree_blocks(data_blocks: u64) -> u64 {
    (0..levels(data_blocks))
        .map(|i| {
            let shift = (i + 1) * PER_BLOCK_BITS;
            (data_blocks + (1u64 << shift) - 1) >> shift
        })
        .sum()
}

impl Tree {
    /// Compute the tree of `data` (whole 4 KiB blocks) with `salt`.
    pub fn build(data: &[u8], salt: &[u8]) -> Result<Tree, VerityError> {
        if data.is_empty() {
            return Err(VerityError::Empty);
        }
        if !data.len().is_multiple_of(BLOCK) {
            return Err(VerityError::Unaligned { len: data.len() });
        }
        if salt.len() > MAX_SALT {
            return Err(VerityError::SaltTooLong { len: salt.len() });
        }
        let data_blocks = (data.len() / BLOCK) as u64;
        // Each level as packed, zero-padded hash blocks, level 0 first.
        let mut levels_bytes: Vec<Vec<u8>> = Vec::new();
        let mut below: &[u8] = data;
        let mut root = hash_block(salt, &data[..BLOCK]);
        for _ in 0..levels(data_blocks) {
            let mut level = Vec::with_capacity(below.len() / BLOCK * DIGEST + BLOCK);
            for block in below.chunks(BLOCK) {
                level.extend_from_slice(&hash_block(salt, block));
            }
            level.resize(level.len().div_ceil(BLOCK) * BLOCK, 0);
            levels_bytes.push(level);
            below = levels_bytes.last().map(Vec::as_slice).unwrap_or_default();
        }
        if let Some(top) = levels_bytes.last() {
            root = hash_block(salt, top);
        }
        let blocks = levels_bytes.iter().rev().flatten().copied().collect();
        Ok(Tree {
            root,
            salt: salt.to_vec(),
            data_blocks,
            blocks,
        })
    }

    /// The `veritysetup` superblock, padded to a whole hash block.
    pub fn superblock(&self, uuid: [u8; 16]) -> Vec<u8> {
        let mut sb = vec![0u8; BLOCK];
        sb[0..8].copy_from_slice(b"verity\0\0");
        sb[8..12].copy_from_slice(&1u32.to_le_bytes()); // superblock version
        sb[12..16].copy_from_slice(&1u32.to_le_bytes()); // hash type: normal
        sb[16..32].copy_from_slice(&uuid);
        sb[32..38].copy_from_slice(b"sha256");
        sb[64..68].copy_from_slice(&(BLOCK as u32).to_le_bytes());
        sb[68..72].copy_from_slice(&(BLOCK as u32).to_le_bytes());
        sb[72..80].copy_from_slice(&self.data_blocks.to_le_bytes());
        sb[80..82].copy_from_slice(&(self.salt.len() as u16).to_le_bytes());
        sb[88..88 + self.salt.len()].copy_from_slice(&self.salt);
        sb
    }

    /// The hash area as written after the data: superblock, then the tree.
    pub fn hash_area(&self, uuid: [u8; 16]) -> Vec<u8> {
        let mut out = self.superblock(uuid);
        out.extend_from_slice(&self.blocks);
        out
    }
}

/// What the kernel's verity target needs, given where data and hash live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub data_blocks: u64,
    /// First tree block on the hash device, in hash blocks (past the superblock).
    pub hash_start_block: u64,
    pub root: [u8; DIGEST],
    pub salt: Vec<u8>,
}

impl Params {
    /// Size of the mapped device in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.data_blocks * (BLOCK as u64 / 512)
    }

    /// The target's parameters (`dmsetup table` syntax, after the
    /// `start length verity` fields). Corruption gives EIO: the default, and
    /// what lets keel refuse the slot instead of rebooting in a loop.
    pub fn table(&self, data_dev: &str, hash_dev: &str) -> String {
        let salt = if self.salt.is_empty() {
            "-".to_string()
        } else {
            crate::hex::encode(&self.salt)
        };
        format!(
            "1 {data_dev} {hash_dev} {BLOCK} {BLOCK} {} {} sha256 {} {salt}",
            self.data_blocks,
            self.hash_start_block,
            crate::hex::encode(&self.root)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_match_the_kernel() {
        assert_eq!(levels(1), 0);
        assert_eq!(levels(2), 1);
        assert_eq!(levels(128), 1);
        assert_eq!(levels(129), 2);
        assert_eq!(levels(128 * 128), 2);
        assert_eq!(levels(128 * 128 + 1), 3);
        assert_eq!(tree_blocks(1), 0);
        assert_eq!(tree_blocks(128), 1);
        assert_eq!(tree_blocks(129), 2 + 1);
    }

    #[test]
    fn tree_size_and_root_depend_on_every_byte() {
        let mut data = vec![7u8; BLOCK * 300];
        let t = Tree::build(&data, b"salt").unwrap();
        assert_eq!(t.data_blocks, 300);
        assert_eq!(t.blocks.len() as u64, tree_blocks(300) * BLOCK as u64);
        data[BLOCK * 299 + 17] ^= 1;
        let t2 = Tree::build(&data, b"salt").unwrap();
        assert_ne!(t.root, t2.root);
        let t3 = Tree::build(&data, b"pepper").unwrap();
        assert_ne!(t2.root, t3.root);
    }

    #[test]
    fn one_block_root_is_the_block_digest() {
        let data = vec![1u8; BLOCK];
        let t = Tree::build(&data, b"s").unwrap();
        assert!(t.blocks.is_empty());
        assert_eq!(t.root, hash_block(b"s", &data));
    }

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(Tree::build(&[], b"").unwrap_err(), VerityError::Empty);
        assert_eq!(
            Tree::build(&[0; 100], b"").unwrap_err(),
            VerityError::Unaligned { len: 100 }
        );
        assert!(matches!(
            Tree::build(&[0; BLOCK], &[0; 300]),
            Err(VerityError::SaltTooLong { .. })
        ));
    }

    #[test]
    fn table_syntax() {
        let p = Params {
            data_blocks: 10,
            hash_start_block: 11,
            root: [0xab; 32],
            salt: vec![1, 2],
        };
        assert_eq!(p.sectors(), 80);
        assert_eq!(
            p.table("7:0", "7:0"),
            format!("1 7:0 7:0 4096 4096 10 11 sha256 {} 0102", "ab".repeat(32))
        );
    }
}
