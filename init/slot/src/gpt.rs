//! GPT: the protective MBR, both headers and both entry arrays, parsed and
//! written with their CRCs (UEFI 2.10, section 5.3).
//!
//! Reading takes the primary header at LBA 1 and falls back to the backup
//! at the disk's last LBA when the primary or its entries fail their CRC.
//! Writing always writes both copies, backup first: a write torn by a power
//! cut leaves one complete, consistent copy behind.
//!
//! keel's partition types (GUIDs of its own, random, fixed forever):
//! - [`TYPE_KEEL_SLOT`] for KEEL-A and KEEL-B (an OS slot, see
//!   [`crate::layout`]); their attribute bits 48-56 carry the A/B state
//!   ([`crate::state`]).
//! - [`TYPE_KEEL_STATE`] for STATE (ext4, mounted on /var/lib/keel).
//! - The EFI system partition uses the standard [`TYPE_ESP`].

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// LBA size keel writes and expects.
pub const SECTOR: u64 = 512;
const ENTRY_SIZE: usize = 128;
/// Entries in keel's arrays (the usual 128: 32 sectors).
pub const ENTRIES: usize = 128;
const ARRAY_SECTORS: u64 = (ENTRIES * ENTRY_SIZE) as u64 / SECTOR;
const HEADER_SIZE: usize = 92;
/// Largest entry array keel reads (entries × size), against hostile headers.
const MAX_ARRAY: usize = 1024 * 1024;

pub const TYPE_ESP: Guid = Guid::from_str_const("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
pub const TYPE_KEEL_SLOT: Guid = Guid::from_str_const("6B65656C-A5A7-4E9C-9B8E-2D1F0C5A7B01");
pub const TYPE_KEEL_STATE: Guid = Guid::from_str_const("6B65656C-A5A7-4E9C-9B8E-2D1F0C5A7B02");

#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("read GPT at byte {offset}: {source}")]
    Read { offset: u64, source: std::io::Error },
    #[error("write GPT at byte {offset}: {source}")]
    Write { offset: u64, source: std::io::Error },
    #[error("sync GPT: {0}")]
    Sync(std::io::Error),
    #[error("no valid GPT: primary {primary}; backup {backup}")]
    Invalid { primary: String, backup: String },
    #[error("disk of {sectors} sectors is too small for a GPT")]
    TooSmall { sectors: u64 },
    #[error("partition {index} ({name}): {problem}")]
    Partition {
        index: usize,
        name: String,
        problem: String,
    },
}

/// A GUID in GPT's mixed-endian byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Parse "XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX" at compile time; panics
    /// (at compile time, for constants) on a malformed literal.
    pub const fn from_str_const(s: &str) -> Guid {
        match Guid::parse_bytes(s.as_bytes()) {
            Some(g) => g,
            None => panic!("malformed GUID literal"),
        }
    }

    const fn parse_bytes(s: &[u8]) -> Option<Guid> {
        if s.len() != 36 || s[8] != b'-' || s[13] != b'-' || s[18] != b'-' || s[23] != b'-' {
            return None;
        }
        // Text digit pairs in order, then placed: the first three groups
        // are little-endian, the last two big-endian.
        let mut raw = [0u8; 16];
        let mut i = 0;
        let mut n = 0;
        while i < 36 {
            if s[i] == b'-' {
                i += 1;
                continue;
            }
            let hi = match Self::digit(s[i]) {
                Some(d) => d,
                None => return None,
            };
            let lo = match Self::digit(s[i + 1]) {
                Some(d) => d,
                None => return None,
            };
            raw[n] = hi << 4 | lo;
            n += 1;
            i += 2;
        }
        let order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
        let mut out = [0u8; 16];
        let mut k = 0;
        while k < 16 {
            out[k] = raw[order[k]];
            k += 1;
        }
        Some(Guid(out))
    }

    const fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }

    pub fn parse(s: &str) -> Option<Guid> {
        Guid::parse_bytes(s.as_bytes())
    }

    /// A version-4-shaped GUID derived from `seed` (reproducible images).
    pub fn derived(seed: &[u8]) -> Guid {
        let h = blake3::hash(seed);
        let mut b = [0u8; 16];
        b.copy_from_slice(&h.as_bytes()[..16]);
        b[7] = (b[7] & 0x0f) | 0x40; // version 4 (byte 7: high byte of the LE third group)
        b[8] = (b[8] & 0x3f) | 0x80; // variant
        Guid(b)
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// One partition entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub first_lba: u64,
    /// Inclusive.
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

impl Entry {
    pub fn is_used(&self) -> bool {
        !self.type_guid.is_zero()
    }

    pub fn sectors(&self) -> u64 {
        self.last_lba + 1 - self.first_lba
    }

    pub fn bytes(&self) -> u64 {
        self.sectors() * SECTOR
    }

    fn parse(b: &[u8]) -> Entry {
        let u64at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
        let mut type_guid = [0u8; 16];
        type_guid.copy_from_slice(&b[0..16]);
        let mut unique = [0u8; 16];
        unique.copy_from_slice(&b[16..32]);
        let units: Vec<u16> = b[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        Entry {
            type_guid: Guid(type_guid),
            unique_guid: Guid(unique),
            first_lba: u64at(32),
            last_lba: u64at(40),
            attributes: u64at(48),
            name: String::from_utf16_lossy(&units),
        }
    }

    fn write(&self, b: &mut [u8]) {
        b[0..16].copy_from_slice(&self.type_guid.0);
        b[16..32].copy_from_slice(&self.unique_guid.0);
        b[32..40].copy_from_slice(&self.first_lba.to_le_bytes());
        b[40..48].copy_from_slice(&self.last_lba.to_le_bytes());
        b[48..56].copy_from_slice(&self.attributes.to_le_bytes());
        for (i, u) in self.name.encode_utf16().take(36).enumerate() {
            b[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
    }
}

/// A partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    pub disk_guid: Guid,
    pub first_usable: u64,
    pub last_usable: u64,
    /// All entry slots, used or not, in table order (partition N is index N-1).
    pub entries: Vec<Entry>,
    /// Where the backup header was found (the disk's last LBA when it was
    /// written; not any more after the disk grew).
    pub backup_lba: u64,
}

fn header_problem(h: &[u8], lba: u64) -> Result<(u64, u64, u64, u32, u32, u32), String> {
    if &h[0..8] != b"EFI PART" {
        return Err(format!("no GPT signature at LBA {lba}"));
    }
    let size = u32::from_le_bytes(h[12..16].try_into().unwrap_or_default()) as usize;
    if !(HEADER_SIZE..=SECTOR as usize).contains(&size) {
        return Err(format!("header size {size}"));
    }
    let stored = u32::from_le_bytes(h[16..20].try_into().unwrap_or_default());
    let mut copy = h[..size].to_vec();
    copy[16..20].fill(0);
    if crc32fast::hash(&copy) != stored {
        return Err(format!("header CRC mismatch at LBA {lba}"));
    }
    let u64at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap_or_default());
    let u32at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().unwrap_or_default());
    if u64at(24) != lba {
        return Err(format!("header at LBA {lba} says it is at {}", u64at(24)));
    }
    Ok((
        u64at(32),
        u64at(72),
        u64at(40),
        u32at(80),
        u32at(84),
        u32at(88),
    ))
}

impl Gpt {
    /// An empty table for a disk of `sectors` sectors.
    pub fn new(disk_guid: Guid, sectors: u64) -> Result<Gpt, GptError> {
        if sectors < 2 * (ARRAY_SECTORS + 2) + 1 {
            return Err(GptError::TooSmall { sectors });
        }
        Ok(Gpt {
            disk_guid,
            first_usable: 2 + ARRAY_SECTORS,
            last_usable: sectors - 2 - ARRAY_SECTORS,
            entries: vec![Entry::default(); ENTRIES],
            backup_lba: sectors - 1,
        })
    }

    /// Read the table of `disk`, `sectors` sectors long.
    pub fn read(disk: &File, sectors: u64) -> Result<Gpt, GptError> {
        let primary = Gpt::read_copy(disk, 1);
        match primary {
            Ok(g) => Ok(g),
            Err(p) => {
                // The backup is at the end of the disk, unless the disk grew:
                // then the primary (if readable) says where; we try the end.
                Gpt::read_copy(disk, sectors.saturating_sub(1)).map_err(|b| GptError::Invalid {
                    primary: p,
                    backup: b,
                })
            }
        }
    }

    fn read_copy(disk: &File, lba: u64) -> Result<Gpt, String> {
        let mut h = vec![0u8; SECTOR as usize];
        disk.read_exact_at(&mut h, lba * SECTOR)
            .map_err(|e| format!("read LBA {lba}: {e}"))?;
        let (alternate, entries_lba, first_usable, count, size, entries_crc) =
            header_problem(&h, lba)?;
        if size as usize != ENTRY_SIZE || count == 0 || (count as usize) * ENTRY_SIZE > MAX_ARRAY {
            return Err(format!("entry array of {count} x {size} bytes"));
        }
        let mut arr = vec![0u8; count as usize * ENTRY_SIZE];
        disk.read_exact_at(&mut arr, entries_lba * SECTOR)
            .map_err(|e| format!("read entries at LBA {entries_lba}: {e}"))?;
        if crc32fast::hash(&arr) != entries_crc {
            return Err(format!("entry array CRC mismatch at LBA {entries_lba}"));
        }
        let last_usable = u64::from_le_bytes(h[48..56].try_into().unwrap_or_default());
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&h[56..72]);
        let mut entries: Vec<Entry> = arr.chunks(ENTRY_SIZE).map(Entry::parse).collect();
        entries.resize(ENTRIES.max(entries.len()), Entry::default());
        Ok(Gpt {
            disk_guid: Guid(guid),
            first_usable,
            last_usable,
            entries,
            backup_lba: if lba == 1 { alternate } else { lba },
        })
    }

    /// Used entries with their 1-based partition numbers.
    pub fn partitions(&self) -> impl Iterator<Item = (usize, &Entry)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_used())
            .map(|(i, e)| (i + 1, e))
    }

    /// Check that used entries lie within the usable area and do not overlap.
    pub fn validate(&self) -> Result<(), GptError> {
        let mut used: Vec<(usize, &Entry)> = self.partitions().collect();
        used.sort_by_key(|(_, e)| e.first_lba);
        let mut prev_end = self.first_usable;
        for (n, e) in used {
            let problem = if e.last_lba < e.first_lba {
                Some("ends before it starts")
            } else if e.first_lba < prev_end {
                Some("overlaps the table or the partition before it")
            } else if e.last_lba > self.last_usable {
                Some("ends past the last usable sector")
            } else {
                None
            };
            if let Some(p) = problem {
                return Err(GptError::Partition {
                    index: n,
                    name: e.name.clone(),
                    problem: p.into(),
                });
            }
            prev_end = e.last_lba + 1;
        }
        Ok(())
    }

    fn array_bytes(&self) -> Vec<u8> {
        let mut arr = vec![0u8; self.entries.len() * ENTRY_SIZE];
        for (e, b) in self.entries.iter().zip(arr.chunks_mut(ENTRY_SIZE)) {
            e.write(b);
        }
        arr
    }

    fn header(&self, my_lba: u64, alternate: u64, entries_lba: u64, entries_crc: u32) -> Vec<u8> {
        let mut h = vec![0u8; SECTOR as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&alternate.to_le_bytes());
        h[40..48].copy_from_slice(&self.first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&self.last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid.0);
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(self.entries.len() as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..HEADER_SIZE]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    fn protective_mbr(sectors: u64) -> Vec<u8> {
        let mut m = vec![0u8; SECTOR as usize];
        let p = &mut m[446..462];
        p[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
        p[4] = 0xEE;
        p[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
        p[8..12].copy_from_slice(&1u32.to_le_bytes());
        let size = (sectors - 1).min(u64::from(u32::MAX)) as u32;
        p[12..16].copy_from_slice(&size.to_le_bytes());
        m[510] = 0x55;
        m[511] = 0xAA;
        m
    }

    /// The writes that put this table on a disk of `sectors` sectors, in
    /// order: backup array and header, then protective MBR, primary array
    /// and header. The backup goes to the disk's end.
    pub fn writes(&self, sectors: u64) -> Result<Vec<(u64, Vec<u8>)>, GptError> {
        if self.last_usable + ARRAY_SECTORS + 1 >= sectors {
            return Err(GptError::TooSmall { sectors });
        }
        self.validate()?;
        let arr = self.array_bytes();
        let crc = crc32fast::hash(&arr);
        let last = sectors - 1;
        let backup_entries = last - ARRAY_SECTORS;
        Ok(vec![
            (backup_entries * SECTOR, arr.clone()),
            (last * SECTOR, self.header(last, 1, backup_entries, crc)),
            (0, Gpt::protective_mbr(sectors)),
            (2 * SECTOR, arr),
            (SECTOR, self.header(1, last, 2, crc)),
        ])
    }

    /// Write both copies to `disk` (`sectors` sectors) and sync, backup first.
    pub fn write(&self, disk: &File, sectors: u64) -> Result<(), GptError> {
        let writes = self.writes(sectors)?;
        for (i, (offset, bytes)) in writes.iter().enumerate() {
            disk.write_all_at(bytes, *offset)
                .map_err(|source| GptError::Write {
                    offset: *offset,
                    source,
                })?;
            if i == 1 {
                disk.sync_data().map_err(GptError::Sync)?;
            }
        }
        disk.sync_all().map_err(GptError::Sync)
    }

    /// After the disk grew to `sectors`: move the usable area's end (the
    /// backup copy moves with it on the next write).
    pub fn resize_disk(&mut self, sectors: u64) -> Result<(), GptError> {
        let last_usable = sectors
            .checked_sub(2 + ARRAY_SECTORS)
            .ok_or(GptError::TooSmall { sectors })?;
        if last_usable
            < self
                .partitions()
                .map(|(_, e)| e.last_lba)
                .max()
                .unwrap_or(0)
        {
            return Err(GptError::TooSmall { sectors });
        }
        self.last_usable = last_usable;
        self.backup_lba = sectors - 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_text_round_trip() {
        let g = TYPE_ESP;
        assert_eq!(g.to_string(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        assert_eq!(g.0[0..4], [0x28, 0x73, 0x2A, 0xC1]);
        assert_eq!(Guid::parse("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"), Some(g));
        assert_eq!(Guid::parse("c12a7328f81f11d2ba4b00a0c93ec93b"), None);
        let d = Guid::derived(b"x");
        assert_eq!(d.to_string().as_bytes()[14], b'4');
    }

    fn table(sectors: u64) -> Gpt {
        let mut g = Gpt::new(Guid::derived(b"disk"), sectors).unwrap();
        g.entries[0] = Entry {
            type_guid: TYPE_KEEL_SLOT,
            unique_guid: Guid::derived(b"a"),
            first_lba: 2048,
            last_lba: 4095,
            attributes: 0x1234 << 48,
            name: "KEEL-A".into(),
        };
        g.entries[1] = Entry {
            type_guid: TYPE_KEEL_STATE,
            unique_guid: Guid::derived(b"s"),
            first_lba: 4096,
            last_lba: 8191,
            attributes: 0,
            name: "STATE".into(),
        };
        g
    }

    fn disk(sectors: u64) -> File {
        let f = tempfile::tempfile().unwrap();
        f.set_len(sectors * SECTOR).unwrap();
        f
    }

    #[test]
    fn write_then_read_both_copies() {
        let sectors = 10_000;
        let f = disk(sectors);
        let g = table(sectors);
        g.write(&f, sectors).unwrap();
        let back = Gpt::read(&f, sectors).unwrap();
        assert_eq!(back, g);
        assert_eq!(
            back.partitions()
                .map(|(n, e)| (n, e.name.as_str()))
                .collect::<Vec<_>>(),
            [(1, "KEEL-A"), (2, "STATE")]
        );
        // Break the primary header: the backup answers.
        f.write_all_at(&[0xff], SECTOR + 100).unwrap();
        f.write_all_at(&[0xff], SECTOR + 30).unwrap();
        let from_backup = Gpt::read(&f, sectors).unwrap();
        assert_eq!(from_backup.entries, g.entries);
        // Break the backup's entries too: no valid table, and both reasons.
        f.write_all_at(&[0xff], (sectors - 1 - 32) * SECTOR + 5)
            .unwrap();
        let err = Gpt::read(&f, sectors).unwrap_err().to_string();
        assert!(err.contains("primary") && err.contains("CRC"), "{err}");
    }

    #[test]
    fn corrupt_entries_fall_back_to_backup() {
        let sectors = 10_000;
        let f = disk(sectors);
        let g = table(sectors);
        g.write(&f, sectors).unwrap();
        f.write_all_at(&[0x77], 2 * SECTOR + 40).unwrap();
        assert_eq!(Gpt::read(&f, sectors).unwrap().entries, g.entries);
    }

    #[test]
    fn grow_moves_the_backup() {
        let f = disk(10_000);
        let mut g = table(10_000);
        g.write(&f, 10_000).unwrap();
        f.set_len(20_000 * SECTOR).unwrap();
        let mut g2 = Gpt::read(&f, 20_000).unwrap();
        assert_eq!(g2.backup_lba, 9_999);
        g2.resize_disk(20_000).unwrap();
        g2.entries[1].last_lba = g2.last_usable;
        g2.write(&f, 20_000).unwrap();
        let g3 = Gpt::read(&f, 20_000).unwrap();
        assert_eq!(g3.entries[1].last_lba, 20_000 - 34);
        g.entries[1].last_lba = 19_000;
        assert!(g.resize_disk(100).is_err());
    }

    #[test]
    fn overlaps_are_refused() {
        let mut g = table(10_000);
        g.entries[1].first_lba = 4000;
        let err = g.writes(10_000).unwrap_err().to_string();
        assert!(err.contains("STATE") && err.contains("overlaps"), "{err}");
        let mut g = table(10_000);
        g.entries[1].last_lba = 9_990;
        assert!(g.validate().is_err());
    }

    #[test]
    fn hostile_header_counts_are_refused() {
        let sectors = 10_000;
        let f = disk(sectors);
        table(sectors).write(&f, sectors).unwrap();
        // A header claiming a huge array, with a correct CRC.
        let mut h = vec![0u8; 512];
        f.read_exact_at(&mut h, SECTOR).unwrap();
        h[80..84].copy_from_slice(&u32::MAX.to_le_bytes());
        h[16..20].fill(0);
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        f.write_all_at(&h, SECTOR).unwrap();
        // The primary is refused; the backup still answers.
        assert!(Gpt::read(&f, sectors).is_ok());
    }
}
