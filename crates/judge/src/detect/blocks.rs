//! Byte classes of text, 64 bytes at a time, as bit masks (bit `j` is byte
//! `j` of the block). On x86-64 computed sixteen bytes per step with SSE2
//! (part of the x86-64 baseline; `safe_arch` wraps its intrinsics safely),
//! elsewhere eight bytes per step with SWAR arithmetic on `u64`; no
//! `unsafe`, no per-byte branches or table lookups. Finding word starts,
//! digit runs and punctuation then costs about one instruction per byte, and
//! the detectors visit only the set bits.

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
pub(crate) struct Block {
    /// ASCII letters.
    pub(crate) alpha: u64,
    /// ASCII digits.
    pub(crate) digit: u64,
    /// ASCII bytes that are neither letters, digits nor spaces
    /// (punctuation, control characters, newlines).
    pub(crate) other: u64,
    /// Bytes of multi-byte UTF-8 characters (0x80 and above).
    pub(crate) high: u64,
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
    #[cfg(target_arch = "x86_64")]
    {
        classify_sse2(bytes)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        classify_swar(bytes)
    }
}

/// [`classify`] sixteen bytes per step: SSE2 compares give a byte mask per
/// class and `movemask` packs it, where SWAR needs a multiply per class and
/// eight bytes (about four times the instructions per block).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn classify_sse2(bytes: &[u8; 64]) -> Block {
    use safe_arch::{
        bitand_m128i, bitor_m128i, cmp_eq_mask_i8_m128i, cmp_gt_mask_i8_m128i,
        cmp_lt_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i, set_splat_i8_m128i,
    };
    let splat = |c: u8| set_splat_i8_m128i(c as i8);
    let (mut alpha, mut digit, mut space, mut high) = (0u64, 0u64, 0u64, 0u64);
    for (k, w) in bytes.chunks_exact(16).enumerate() {
        let mut a = [0u8; 16];
        a.copy_from_slice(w);
        let v = load_unaligned_m128i(&a);
        // Signed compares: bytes of 0x80 and above are negative, so no
        // letter or digit range takes them.
        let folded = bitor_m128i(v, splat(0x20));
        let letters = bitand_m128i(
            cmp_gt_mask_i8_m128i(folded, splat(b'a' - 1)),
            cmp_lt_mask_i8_m128i(folded, splat(b'z' + 1)),
        );
        let digits = bitand_m128i(
            cmp_gt_mask_i8_m128i(v, splat(b'0' - 1)),
            cmp_lt_mask_i8_m128i(v, splat(b'9' + 1)),
        );
        let spaces = cmp_eq_mask_i8_m128i(v, splat(b' '));
        // `movemask` gives sixteen bits in the low half of an `i32`.
        let mask = |m| u64::from(move_mask_i8_m128i(m) as u16) << (16 * k);
        alpha |= mask(letters);
        digit |= mask(digits);
        space |= mask(spaces);
        high |= mask(v);
    }
    Block {
        alpha,
        digit,
        other: !(alpha | digit | space | high),
        high,
    }
}

/// [`classify`] eight bytes per step with `u64` arithmetic: the portable
/// form, and the reference the SSE2 form is tested against.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn classify_swar(bytes: &[u8; 64]) -> Block {
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

/// The classes of every 64-byte block of `text`, for passes that share
/// them ([`Words`], [`digits_and_punct`], `Detectors::scan_classified`).
pub(crate) fn classify_all(text: &[u8]) -> Vec<Block> {
    text.chunks(64).map(classify).collect()
}

/// Block `bi` (the bytes `chunk`) from `pre` when given (the blocks of
/// `text` or of a longer text starting with it), else computed.
#[inline(always)]
fn block(pre: Option<&[Block]>, bi: usize, chunk: &[u8]) -> Block {
    match pre.and_then(|p| p.get(bi)) {
        Some(b) => *b,
        None => classify(chunk),
    }
}

/// Calls `f(p)` for every ASCII digit and punctuation byte `p` of `text`
/// (neither a letter, a space nor part of a multi-byte character), in
/// order, from the position the previous call returned (0 at first): `f`
/// returns where to go on, or `None` to stop. Prose is mostly letters and
/// spaces, which are skipped a block at a time.
// Out of line (see `fingerprint::token_hash`).
#[inline(never)]
pub(crate) fn digits_and_punct(
    text: &[u8],
    pre: Option<&[Block]>,
    mut f: impl FnMut(usize) -> Option<usize>,
) {
    let mut next = 0usize;
    for (bi, chunk) in text.chunks(64).enumerate() {
        let base = bi * 64;
        if next >= base + chunk.len() {
            continue;
        }
        let cls = block(pre, bi, chunk);
        // Padding past a short last block is NUL, which is in `other`.
        let mut m = (cls.digit | cls.other) & (u64::MAX >> (64 - chunk.len()));
        loop {
            if next > base {
                m &= u64::MAX.checked_shl((next - base) as u32).unwrap_or(0);
            }
            if m == 0 {
                break;
            }
            match f(base + m.trailing_zeros() as usize) {
                Some(n) => next = n,
                None => return,
            }
            m &= m - 1;
        }
    }
}

/// Calls `f(start, end)` for every word of `text` (see [`Words`]) until it
/// returns false.
#[cfg(test)]
fn words(text: &[u8], pre: Option<&[Block]>, mut f: impl FnMut(usize, usize) -> bool) {
    for (s, e) in Words::new(text, pre) {
        if !f(s, e) {
            return;
        }
    }
}

/// The words of a text, in order: maximal runs of ASCII letters, digits
/// and non-ASCII bytes (the words of provenance shingles). Runs are found
/// from class changes between neighbouring bytes, so the cost is per word,
/// not per byte. An iterator, so that the caller's loop body is compiled
/// into the loop (a closure called per word was not inlined).
pub(crate) struct Words<'a> {
    text: &'a [u8],
    pre: Option<&'a [Block]>,
    /// Index of the next block to classify.
    bi: usize,
    /// Word bytes of the current block.
    w: u64,
    /// Bits of the current block where the class changes, not yet seen.
    changes: u64,
    base: usize,
    /// The last byte classified is a word byte.
    in_word: bool,
    start: usize,
}

impl<'a> Words<'a> {
    /// The words of `text`; `pre`, when given, holds the blocks of `text`
    /// or of a longer text that starts with it.
    pub(crate) fn new(text: &'a [u8], pre: Option<&'a [Block]>) -> Words<'a> {
        Words {
            text,
            pre,
            bi: 0,
            w: 0,
            changes: 0,
            base: 0,
            in_word: false,
            start: 0,
        }
    }
}

impl Iterator for Words<'_> {
    type Item = (usize, usize);

    #[inline(always)]
    fn next(&mut self) -> Option<(usize, usize)> {
        loop {
            while self.changes != 0 {
                let p = self.base + self.changes.trailing_zeros() as usize;
                self.changes &= self.changes - 1;
                if self.w >> (p - self.base) & 1 == 1 {
                    self.start = p;
                } else if p <= self.text.len() {
                    return Some((self.start, p));
                }
            }
            let base = self.bi * 64;
            if base >= self.text.len() {
                // A word running to the end of the last (full) block.
                return std::mem::take(&mut self.in_word).then_some((self.start, self.text.len()));
            }
            let chunk = &self.text[base..self.text.len().min(base + 64)];
            let cls = block(self.pre, self.bi, chunk);
            // Bytes past the text (padding, or a longer text's bytes in
            // `pre`) are no word bytes.
            let w = (cls.alpha | cls.digit | cls.high) & (u64::MAX >> (64 - chunk.len()));
            // Bits where a byte's class differs from the byte before it.
            self.changes = w ^ ((w << 1) | u64::from(self.in_word));
            self.in_word = w >> 63 == 1;
            self.w = w;
            self.base = base;
            self.bi += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{classify, classify_all, classify_swar, digits_and_punct, starts, words};

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
            words(b, None, |s, e| {
                got.push((s, e));
                true
            });
            prop_assert_eq!(&got, &want);
            // The blocks of a longer text starting with this one give the
            // same words.
            let longer = format!("{text}  \n\tx9");
            let pre = classify_all(longer.as_bytes());
            let mut again = Vec::new();
            words(b, Some(&pre), |s, e| {
                again.push((s, e));
                true
            });
            prop_assert_eq!(again, want);
        }

        #[test]
        fn digits_and_punct_visits_every_such_byte_from_the_resume_point(
            text in "[a-zA-Z0-9 .,é日\\n_/-]{0,300}",
            jump in 0usize..9,
        ) {
            let b = text.as_bytes();
            let want_byte = |c: u8| c.is_ascii() && !c.is_ascii_alphabetic() && c != b' ';
            let mut want = Vec::new();
            let mut i = 0;
            while i < b.len() {
                if want_byte(b[i]) {
                    want.push(i);
                    i += 1 + (i % 7 == 0) as usize * jump;
                } else {
                    i += 1;
                }
            }
            let mut got = Vec::new();
            digits_and_punct(b, None, |p| {
                got.push(p);
                Some(p + 1 + (p % 7 == 0) as usize * jump)
            });
            prop_assert_eq!(&got, &want);
            let longer = format!("{text}  \n\t.9");
            let pre = classify_all(longer.as_bytes());
            let mut again = Vec::new();
            digits_and_punct(b, Some(&pre), |p| {
                again.push(p);
                Some(p + 1 + (p % 7 == 0) as usize * jump)
            });
            prop_assert_eq!(again, want);
        }

        #[test]
        fn classes_match_the_byte_predicates(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let b = classify(&bytes);
            let mut full = [0u8; 64];
            full[..bytes.len()].copy_from_slice(&bytes);
            let portable = classify_swar(&full);
            prop_assert_eq!(
                (b.alpha, b.digit, b.other, b.high),
                (portable.alpha, portable.digit, portable.other, portable.high)
            );
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
