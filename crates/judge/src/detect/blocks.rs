//! Byte classes of text, 64 bytes at a time, as bit masks (bit `j` is byte
//! `j` of the block). Computed eight bytes per step with SWAR arithmetic on
//! `u64` (no `unsafe`, no per-byte branches or table lookups), so finding
//! word starts, digit runs and punctuation costs a few instructions per
//! byte; the detectors then visit only the set bits.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// High bit of each byte set where the (7-bit) byte of `v` is in `lo..=hi`
/// (`hi` below 0x7f). `v` must have every high bit clear; neither
/// subtraction borrows across bytes.
#[inline(always)]
fn in_range(v: u64, lo: u8, hi: u8) -> u64 {
    let ge = (v | HIGH).wrapping_sub(ONES * u64::from(lo));
    let le = ((ONES * u64::from(hi)) | HIGH).wrapping_sub(v);
    ge & le & HIGH
}

/// High bit of each byte set where the byte of `x` equals `c` (exact, no
/// false positives from borrows).
#[inline(always)]
fn eq_byte(x: u64, c: u8) -> u64 {
    let t = x ^ (ONES * u64::from(c));
    !(((t & LOW7).wrapping_add(LOW7)) | t) & HIGH
}

/// Packs the high bit of each byte into eight bits (byte `k` to bit `k`).
#[inline(always)]
fn pack(m: u64) -> u64 {
    // Each byte's high bit lands on bit 56 + k; the partial products never
    // share a bit position, so no carry disturbs the result.
    (m & HIGH).wrapping_mul(0x0002_0408_1020_4081) >> 56
}

/// The classes of one block.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Block {
    /// ASCII letters.
    pub alpha: u64,
    /// ASCII digits.
    pub digit: u64,
    /// ASCII bytes that are neither letters, digits nor spaces
    /// (punctuation, control characters, newlines).
    pub other: u64,
    /// Bytes of multi-byte UTF-8 characters (0x80 and above).
    pub high: u64,
}

/// The classes of up to 64 bytes (shorter blocks are padded with NUL,
/// which is in `other`; callers stay inside the text).
#[inline(always)]
pub(super) fn classify(chunk: &[u8]) -> Block {
    let mut buf = [0u8; 64];
    let bytes: &[u8; 64] = match chunk.first_chunk::<64>() {
        Some(full) => full,
        None => {
            buf[..chunk.len()].copy_from_slice(chunk);
            &buf
        }
    };
    let mut out = Block::default();
    for (k, w) in bytes.chunks_exact(8).enumerate() {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let x = u64::from_le_bytes(a);
        let ascii = !x & HIGH;
        let v = x & LOW7;
        let alpha = in_range(v | (ONES * 0x20), b'a', b'z') & ascii;
        let digit = in_range(v, b'0', b'9') & ascii;
        let other = ascii & !alpha & !digit & !eq_byte(x, b' ');
        let shift = 8 * k;
        out.alpha |= pack(alpha) << shift;
        out.digit |= pack(digit) << shift;
        out.other |= pack(other) << shift;
        out.high |= pack(x) << shift;
    }
    out
}

/// Starts of runs in `mask` (a set bit whose predecessor is clear);
/// `carry` says whether the last byte of the previous block was set.
#[inline(always)]
pub(super) fn starts(mask: u64, carry: bool) -> u64 {
    mask & !((mask << 1) | u64::from(carry))
}

/// Calls `f(start, end)` for every word of `text`, in order, until it
/// returns false: maximal runs of ASCII letters, digits and non-ASCII bytes
/// (the words of provenance shingles). Runs are found from class changes
/// between neighbouring bytes, so the cost is per word, not per byte.
pub(crate) fn words(text: &[u8], mut f: impl FnMut(usize, usize) -> bool) {
    let mut in_word = false;
    let mut start = 0;
    for (bi, chunk) in text.chunks(64).enumerate() {
        let cls = classify(chunk);
        let w = cls.alpha | cls.digit | cls.high;
        // Bits where a byte's class differs from the byte before it.
        let mut changes = w ^ ((w << 1) | u64::from(in_word));
        in_word = w >> 63 == 1;
        let base = bi * 64;
        while changes != 0 {
            let p = base + changes.trailing_zeros() as usize;
            changes &= changes - 1;
            if w >> (p - base) & 1 == 1 {
                start = p;
            } else if p <= text.len() && !f(start, p) {
                return;
            }
        }
    }
    if in_word {
        f(start, text.len());
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{classify, starts, words};

    proptest! {
        #[test]
        fn words_are_the_maximal_runs_of_word_bytes(text in "[a-zA-Z0-9 .,é日\\n-]{0,300}") {
            let b = text.as_bytes();
            let word = |c: u8| c.is_ascii_alphanumeric() || c >= 0x80;
            let mut want = Vec::new();
            let mut i = 0;
            while i < b.len() {
                if !word(b[i]) {
                    i += 1;
                    continue;
                }
                let s = i;
                while i < b.len() && word(b[i]) {
                    i += 1;
                }
                want.push((s, i));
            }
            let mut got = Vec::new();
            words(b, |s, e| {
                got.push((s, e));
                true
            });
            prop_assert_eq!(got, want);
        }

        #[test]
        fn classes_match_the_byte_predicates(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let b = classify(&bytes);
            for (j, c) in bytes.iter().enumerate() {
                let bit = |m: u64| m >> j & 1 == 1;
                prop_assert_eq!(bit(b.alpha), c.is_ascii_alphabetic());
                prop_assert_eq!(bit(b.digit), c.is_ascii_digit());
                prop_assert_eq!(
                    bit(b.other),
                    c.is_ascii() && !c.is_ascii_alphanumeric() && *c != b' '
                );
                prop_assert_eq!(bit(b.high), *c >= 0x80);
            }
        }
    }

    #[test]
    fn run_starts_respect_the_previous_block() {
        assert_eq!(starts(0b0111_0110, false), 0b0001_0010);
        assert_eq!(starts(0b0111_0111, true), 0b0001_0000);
        assert_eq!(starts(0b0111_0111, false), 0b0001_0001);
    }
}
