//! Filesystem labels from the first bytes of a block device: enough to find
//! a config-drive (ISO9660 or vfat labelled `config-2`) or a NoCloud seed
//! (`cidata`) without blkid.
//!
//! - ISO9660: the primary volume descriptor at byte 32768 (type 1,
//!   "CD001"), volume identifier at offset 40, 32 bytes, space padded.
//! - FAT12/16/32: the boot sector's 0x55AA signature, then the extended
//!   boot signature 0x29 with the 11-byte label at 0x2B (FAT12/16) or 0x47
//!   (FAT32, recognised by 0 sectors per FAT in the old field).

/// Bytes a probe needs from the start of the device.
pub const PROBE_BYTES: usize = 32768 + 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fs {
    Iso9660,
    Vfat,
}

impl Fs {
    pub fn mount_type(&self) -> &'static str {
        match self {
            Fs::Iso9660 => "iso9660",
            Fs::Vfat => "vfat",
        }
    }
}

/// The filesystem and its label, when the bytes hold one keel can read.
pub fn label(head: &[u8]) -> Option<(Fs, String)> {
    if head.len() >= 32768 + 72 && head[32768] == 1 && &head[32769..32774] == b"CD001" {
        let id = String::from_utf8_lossy(&head[32768 + 40..32768 + 72])
            .trim_end()
            .to_string();
        return Some((Fs::Iso9660, id));
    }
    if head.len() >= 512 && head[510] == 0x55 && head[511] == 0xAA {
        let sectors_per_fat16 = u16::from_le_bytes([head[0x16], head[0x17]]);
        let (sig, at) = if sectors_per_fat16 == 0 {
            (0x42, 0x47)
        } else {
            (0x26, 0x2B)
        };
        if head[sig] == 0x29 && &head[0x36..0x39] != b"NTF" {
            let l = String::from_utf8_lossy(&head[at..at + 11])
                .trim_end()
                .to_string();
            return Some((Fs::Vfat, l));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_and_fat_labels() {
        let mut iso = vec![0u8; PROBE_BYTES];
        iso[32768] = 1;
        iso[32769..32774].copy_from_slice(b"CD001");
        iso[32808..32840].copy_from_slice(b"config-2                        ");
        assert_eq!(label(&iso), Some((Fs::Iso9660, "config-2".into())));
        let mut fat = vec![0u8; 512];
        fat[510] = 0x55;
        fat[511] = 0xAA;
        fat[0x16] = 1;
        fat[0x26] = 0x29;
        fat[0x2B..0x36].copy_from_slice(b"CIDATA     ");
        assert_eq!(label(&fat), Some((Fs::Vfat, "CIDATA".into())));
        assert_eq!(label(&[0u8; 1024]), None);
    }
}
