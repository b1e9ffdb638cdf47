//! The search's set of linearized operations and the hashing its memo uses.

use std::hash::Hasher;

/// SplitMix64's finaliser: a cheap bijection that spreads every input bit over
/// the whole word. It gives each operation its Zobrist key and seeds the tests'
/// random generator.
pub(crate) fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fixed-size set of small integers over `u64` words that keeps a Zobrist
/// hash (the XOR of one random key per member) up to date, so that the memo can
/// hash a set in O(1) however many operations the history has.
#[derive(Debug, Clone)]
pub(crate) struct Bitset {
    words: Vec<u64>,
    hash: u64,
}

impl Bitset {
    pub(crate) fn new(len: usize) -> Bitset {
        Bitset {
            words: vec![0; len.div_ceil(64)],
            hash: 0,
        }
    }

    /// Adds or removes `i`; the search only ever flips a member it knows the
    /// state of, so one operation serves both.
    pub(crate) fn flip(&mut self, i: usize) {
        self.words[i / 64] ^= 1 << (i % 64);
        self.hash ^= mix64(i as u64);
    }

    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    pub(crate) fn words(&self) -> &[u64] {
        &self.words
    }

    /// The set as (number of leading all-ones words, the words after them up to
    /// the last non-zero one). Operations are numbered in call order and the
    /// linearized ones are nearly a prefix of that order, so this is a couple of
    /// words however long the history: it is what the memo stores.
    pub(crate) fn compact(&self) -> (usize, &[u64]) {
        let full = self.words.iter().take_while(|&&w| w == u64::MAX).count();
        let end = self
            .words
            .iter()
            .rposition(|&w| w != 0)
            .map_or(0, |i| i + 1);
        (full, &self.words[full..end.max(full)])
    }
}

/// Whether every member of `a` is in `b` (equal-length word slices).
pub(crate) fn is_subset(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x & !y == 0)
}

/// A `Hasher` for keys that are already well-mixed `u64` hashes: it passes them
/// through instead of hashing them again.
#[derive(Debug, Default)]
pub(crate) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; this keeps other key types correct anyway.
        for &b in bytes {
            self.0 = mix64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_compact_follow_membership() {
        let mut a = Bitset::new(200);
        let mut b = Bitset::new(200);
        assert_eq!(a.compact(), (0, &[][..]));
        for i in 0..130 {
            a.flip(i);
        }
        a.flip(150);
        // Same members added in another order: same hash and words.
        b.flip(150);
        for i in (0..130).rev() {
            b.flip(i);
        }
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.compact(), (2, &[0x3 | 1 << 22][..]));
        a.flip(150);
        assert_ne!(a.hash(), b.hash());
        assert!(is_subset(a.words(), b.words()));
        assert!(!is_subset(b.words(), a.words()));
    }
}
