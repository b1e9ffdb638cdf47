//! The STATE partition: growing it to fill the disk on first boot.
//!
//! After `qemu-img resize` or a cloud disk bigger than the image, the GPT's
//! backup copy is no longer at the disk's end and STATE ends early. The plan:
//! 1. move the usable area's end and the backup header to the disk's end and
//!    extend STATE (the last partition) to it, writing both GPT copies;
//! 2. tell the kernel the partition's new size (BLKPG, works while mounted);
//! 3. mount STATE, then grow ext4 online (EXT4_IOC_RESIZE_FS) to the
//!    partition's size. Step 3 also runs whenever the filesystem is smaller
//!    than its partition, so a boot interrupted between 1 and 3 finishes the
//!    job on the next boot.

use keel_slot::gpt::{Gpt, GptError};

/// The new table when the disk of `sectors` sectors has room past STATE
/// (partition `number`), or `None` when there is nothing to grow.
pub fn grow_plan(gpt: &Gpt, sectors: u64, number: usize) -> Result<Option<Gpt>, GptError> {
    let Some(entry) = gpt.entries.get(number.wrapping_sub(1)) else {
        return Ok(None);
    };
    let mut g = gpt.clone();
    g.resize_disk(sectors)?;
    // STATE grows only when it is the last partition.
    if gpt.partitions().any(|(_, e)| e.first_lba > entry.first_lba) {
        return Ok(None);
    }
    // Keep the end on a 1 MiB boundary (2048 sectors), as partitioners do.
    let end = ((g.last_usable + 1) / 2048 * 2048).saturating_sub(1);
    if end <= entry.last_lba {
        return Ok(None);
    }
    g.entries[number - 1].last_lba = end;
    Ok(Some(g))
}

/// `(blocks, block_size)` from an ext4 superblock (the 1024 bytes at byte
/// 1024 of the filesystem), or `None` when it is not one.
pub fn ext4_size(sb: &[u8]) -> Option<(u64, u64)> {
    if sb.len() < 0x160 || u16::from_le_bytes([sb[0x38], sb[0x39]]) != 0xEF53 {
        return None;
    }
    let u32at = |o: usize| u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]);
    let log = u32at(0x18);
    if log > 6 {
        return None;
    }
    let incompat = u32at(0x60);
    let hi = if incompat & 0x80 != 0 {
        u64::from(u32at(0x150))
    } else {
        0
    };
    Some((hi << 32 | u64::from(u32at(0x4)), 1024u64 << log))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_slot::gpt::{Entry, Guid, TYPE_KEEL_SLOT, TYPE_KEEL_STATE};

    fn table(sectors: u64) -> Gpt {
        let mut g = Gpt::new(Guid::derived(b"d"), sectors).unwrap();
        g.entries[0] = Entry {
            type_guid: TYPE_KEEL_SLOT,
            first_lba: 2048,
            last_lba: 4095,
            name: "KEEL-A".into(),
            ..Entry::default()
        };
        g.entries[1] = Entry {
            type_guid: TYPE_KEEL_STATE,
            first_lba: 4096,
            last_lba: 8191,
            name: "STATE".into(),
            ..Entry::default()
        };
        g
    }

    #[test]
    fn grows_state_to_the_last_mib() {
        let g = table(10_240);
        assert!(grow_plan(&g, 10_240, 2).unwrap().is_none() || g.last_usable < 10_240);
        let big = grow_plan(&g, 100_000, 2).unwrap().unwrap();
        assert_eq!(
            big.entries[1].last_lba,
            (100_000 - 34 + 1) / 2048 * 2048 - 1
        );
        assert_eq!(big.backup_lba, 99_999);
        // Not the last partition: no plan.
        assert!(grow_plan(&g, 100_000, 1).unwrap().is_none());
        // Already full: no plan.
        assert!(grow_plan(&big, 100_000, 2).unwrap().is_none());
    }

    #[test]
    fn reads_ext4_block_counts() {
        let mut sb = vec![0u8; 1024];
        sb[0x38..0x3a].copy_from_slice(&0xEF53u16.to_le_bytes());
        sb[0x4..0x8].copy_from_slice(&3072u32.to_le_bytes());
        sb[0x18..0x1c].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(ext4_size(&sb), Some((3072, 4096)));
        sb[0x38] = 0;
        assert_eq!(ext4_size(&sb), None);
    }
}
