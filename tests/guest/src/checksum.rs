//! The memory pattern of the `checksum` test and the checksum over it.
//!
//! Word `i` of the region at [`crate::CHECKSUM_BASE`] holds [`fill_word`]`(i)`
//! (the `i`-th output of SplitMix64 seeded with 0); the checksum is FNV-1a
//! (64-bit) over the words' little-endian bytes, i.e. over the region's bytes
//! in address order. The driver checks the value the guest writes to
//! [`crate::testdev::CHECKSUM`] against [`expected_checksum`].

/// SplitMix64's increment (2^64 / golden ratio).
const SPLITMIX_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The word at `index` (counted in 64-bit words) of the checksum region: the
/// `index`-th output of SplitMix64 seeded with 0.
pub const fn fill_word(index: u64) -> u64 {
    let mut z = index.wrapping_add(1).wrapping_mul(SPLITMIX_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a (64-bit) over the little-endian bytes of `words`.
pub fn checksum(words: impl Iterator<Item = u64>) -> u64 {
    words.fold(FNV_OFFSET_BASIS, |hash, word| {
        word.to_le_bytes()
            .iter()
            .fold(hash, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
    })
}

/// The checksum of the whole region filled with [`fill_word`]: what a
/// correct guest reports.
pub fn expected_checksum() -> u64 {
    checksum((0..crate::CHECKSUM_WORDS).map(fill_word))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a over bytes, written out separately from [`checksum`].
    fn fnv1a(bytes: &[u8]) -> u64 {
        let mut h = FNV_OFFSET_BASIS;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        h
    }

    #[test]
    fn fill_word_is_splitmix64_from_zero() {
        // Reference outputs of SplitMix64 with seed 0.
        assert_eq!(fill_word(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(fill_word(1), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(fill_word(2), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn checksum_is_fnv1a_over_little_endian_bytes() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(checksum(core::iter::empty()), fnv1a(b""));
        let words = [0x0807_0605_0403_0201, u64::MAX, 0];
        let mut bytes = [0u8; 24];
        for (chunk, w) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        assert_eq!(checksum(words.into_iter()), fnv1a(&bytes));
    }

    #[test]
    fn checksum_sees_order_and_every_bit() {
        let base = checksum([1u64, 2].into_iter());
        assert_ne!(base, checksum([2u64, 1].into_iter()));
        assert_ne!(base, checksum([1u64 | 1 << 63, 2].into_iter()));
    }

    #[test]
    fn expected_checksum_is_pinned() {
        // Changing the pattern or the region changes the protocol: update
        // the driver and this value together.
        assert_eq!(expected_checksum(), 0xce7f_5a87_ed25_0ee8);
    }
}
