//! A small case-insensitive keyword matcher tuned for prose: candidates are
//! only word starts (a letter after a non-letter) and a few marker bytes
//! (`<`, `[`, `#`, `!`, `]`, newline); a bit set over the first two bytes
//! rejects almost all of them before any comparison. On ordinary text it
//! is several times faster than a case-insensitive Aho-Corasick automaton,
//! which gets no SIMD prefilter with dozens of patterns.

use super::blocks;

/// Lower-cases an ASCII byte.
#[inline(always)]
fn low(c: u8) -> u8 {
    c.to_ascii_lowercase()
}

/// Compiled keywords with a payload each.
#[derive(Debug, Clone)]
pub(super) struct Keywords<T: Copy> {
    /// Lower-case patterns and payloads, sorted by their first two bytes.
    pats: Vec<(Vec<u8>, T)>,
    /// Bucket start per first-two-byte key, as (key, first index).
    keys: Vec<(u16, u16)>,
    /// For each (lower-cased) first byte, the set of (lower-cased) second
    /// bytes, as a 128-bit set in 16 bytes.
    pairs: [[u8; 16]; 128],
    /// Pairs that are whole two-byte patterns (no third byte to check).
    short: [[u8; 16]; 128],
    /// A bit set over a hash of the first three (lower-cased) bytes of the
    /// longer patterns.
    tri: [u8; 512],
    /// Byte classes: [`ALPHA`], [`START`], [`SYM`].
    cls: [u8; 256],
    /// Some pattern starts with a digit or a space, which the block masks
    /// do not offer as candidates.
    sym_outside_other: bool,
}

#[inline(always)]
fn tri_hash(a: u8, b: u8, c: u8) -> usize {
    (usize::from(low(a)) * 961 + usize::from(low(b)) * 31 + usize::from(low(c))) & 4095
}

#[inline(always)]
fn has(set: &[[u8; 16]; 128], a: u8, b: u8) -> bool {
    set[usize::from(a & 0x7f)][usize::from((b & 0x7f) >> 3)] & (1 << (b & 7)) != 0
}

/// An ASCII letter.
const ALPHA: u8 = 1;
/// A letter that starts some pattern (at a word start).
const START: u8 = 2;
/// A non-letter that starts some pattern (anywhere).
const SYM: u8 = 4;

#[inline(always)]
fn key(a: u8, b: u8) -> u16 {
    (u16::from(low(a)) << 8) | u16::from(low(b))
}

impl<T: Copy> Keywords<T> {
    /// Patterns must be ASCII and at least two bytes long.
    pub(super) fn new(list: &[(&str, T)]) -> Keywords<T> {
        let mut pats: Vec<(Vec<u8>, T)> = list
            .iter()
            .filter(|(p, _)| p.len() >= 2 && p.is_ascii())
            .map(|(p, t)| (p.as_bytes().to_ascii_lowercase(), *t))
            .collect();
        // Longest first within a bucket, so `avenue` wins over `ave`.
        pats.sort_by_key(|(p, _)| (key(p[0], p[1]), std::cmp::Reverse(p.len())));
        let mut keys: Vec<(u16, u16)> = Vec::new();
        let mut pairs = [[0u8; 16]; 128];
        let mut short = [[0u8; 16]; 128];
        let mut tri = [0u8; 512];
        let mut cls = [0u8; 256];
        for c in 0..=255u8 {
            if c.is_ascii_alphabetic() {
                cls[usize::from(c)] = ALPHA;
            }
        }
        for (i, (p, _)) in pats.iter().enumerate() {
            let k = key(p[0], p[1]);
            if keys.last().is_none_or(|l| l.0 != k) {
                keys.push((k, u16::try_from(i).unwrap_or(u16::MAX)));
            }
            let c2 = p[1] & 0x7f;
            pairs[usize::from(p[0] & 0x7f)][usize::from(c2 >> 3)] |= 1 << (c2 & 7);
            if p.len() == 2 {
                short[usize::from(p[0] & 0x7f)][usize::from(c2 >> 3)] |= 1 << (c2 & 7);
            } else {
                let h = tri_hash(p[0], p[1], p[2]);
                tri[h >> 3] |= 1 << (h & 7);
            }
            if p[0].is_ascii_alphabetic() {
                cls[usize::from(p[0].to_ascii_lowercase())] |= START;
                cls[usize::from(p[0].to_ascii_uppercase())] |= START;
            } else {
                cls[usize::from(p[0])] |= SYM;
            }
        }
        let sym_outside_other = pats
            .iter()
            .any(|(p, _)| p[0].is_ascii_digit() || p[0] == b' ');
        Keywords {
            sym_outside_other,
            pats,
            keys,
            pairs,
            short,
            tri,
            cls,
        }
    }

    /// Calls `f(start, end, payload)` for the first pattern that matches at
    /// each candidate position, in order. Candidates come from the block
    /// masks: word starts (letters after a non-letter) and punctuation;
    /// only those are looked up in the byte-class table.
    pub(super) fn find(&self, text: &[u8], mut f: impl FnMut(usize, usize, T)) {
        if text.len() < 2 {
            return;
        }
        if self.sym_outside_other {
            return self.find_bytewise(text, f);
        }
        let mut carry = false;
        for (bi, chunk) in text.chunks(64).enumerate() {
            let cls = blocks::classify(chunk);
            let mut m = blocks::starts(cls.alpha, carry) | cls.other;
            carry = cls.alpha >> 63 == 1;
            let base = bi * 64;
            while m != 0 {
                let i = base + m.trailing_zeros() as usize;
                m &= m - 1;
                if let Some((e, t)) = self.at_candidate(text, i) {
                    f(i, e, t);
                }
            }
        }
    }

    /// The first pattern matching at `i`, a word start or a punctuation
    /// byte (see [`Keywords::find`]), as its end and payload.
    #[inline(always)]
    pub(super) fn at_candidate(&self, text: &[u8], i: usize) -> Option<(usize, T)> {
        let c = *text.get(i)?;
        let next = *text.get(i + 1)?;
        if self.cls[usize::from(c)] & (START | SYM) == 0 {
            return None;
        }
        let (c1, c2) = (low(c), low(next));
        if c2 >= 128 || !has(&self.pairs, c1, c2) {
            return None;
        }
        // A two-letter pattern (a street abbreviation) must end its word;
        // otherwise the third byte must fit a longer pattern.
        let c3 = text.get(i + 2).copied();
        let short_ok = has(&self.short, c1, c2)
            && (!c1.is_ascii_alphabetic() || !c3.is_some_and(|c| c.is_ascii_alphanumeric()));
        if !short_ok {
            let h = tri_hash(c1, c2, c3?);
            if self.tri[h >> 3] & (1 << (h & 7)) == 0 {
                return None;
            }
        }
        let m = self.at(text, i)?;
        Some((i + self.pats[m].0.len(), self.pats[m].1))
    }

    /// The straightforward byte-by-byte candidate loop: used when a pattern
    /// starts with a digit or a space (no block mask covers those), and as
    /// the reference the block version is tested against.
    pub(super) fn find_bytewise(&self, text: &[u8], mut f: impl FnMut(usize, usize, T)) {
        let n = text.len();
        if n < 2 {
            return;
        }
        let mut prev_alpha = false;
        for (i, c) in text[..n - 1].iter().enumerate() {
            let k = self.cls[usize::from(*c)];
            let candidate = k & SYM != 0 || (k & START != 0 && !prev_alpha);
            prev_alpha = k & ALPHA != 0;
            if !candidate {
                continue;
            }
            if let Some((e, t)) = self.at_candidate(text, i) {
                f(i, e, t);
            }
        }
    }

    fn at(&self, text: &[u8], i: usize) -> Option<usize> {
        let k = key(text[i], text[i + 1]);
        let b = self.keys.binary_search_by_key(&k, |x| x.0).ok()?;
        let start = usize::from(self.keys[b].1);
        let end = self
            .keys
            .get(b + 1)
            .map_or(self.pats.len(), |x| usize::from(x.1));
        let rest = &text[i..];
        (start..end).find(|m| {
            let p = &self.pats[*m].0;
            rest.len() >= p.len() && rest[..p.len()].eq_ignore_ascii_case(p)
        })
    }
}
