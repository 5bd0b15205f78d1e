//! A small case-insensitive keyword matcher tuned for prose: candidates are
//! only word starts (a letter after a non-letter) and a few marker bytes
//! (`<`, `[`, `#`, `!`, `]`, newline). Two table loads on the first two
//! bytes (both ASCII cases are in the tables, so nothing is lower-cased)
//! reject almost every candidate; the few left compare their first eight bytes
//! with each pattern of their group as one `u64` (case folded by OR-ing
//! 0x20 into the pattern's letter positions only). On ordinary text it is
//! several times faster than a case-insensitive Aho-Corasick automaton,
//! which gets no SIMD prefilter with dozens of patterns.

use super::blocks;

/// One compiled pattern.
#[derive(Debug, Clone)]
struct Pat<T> {
    /// The lower-cased pattern.
    bytes: Vec<u8>,
    /// Its first eight bytes (zero-padded), as a little-endian `u64`.
    prefix: u64,
    /// 0xff in the bytes `prefix` covers.
    mask: u64,
    /// 0x20 in the bytes of `prefix` that are letters: OR-ing it into the
    /// text lower-cases exactly the letters the pattern compares.
    fold: u64,
    /// A two-letter pattern (a street abbreviation) must end its word.
    short_alpha: bool,
    payload: T,
}

/// Compiled keywords with a payload each.
#[derive(Debug, Clone)]
pub(super) struct Keywords<T: Copy> {
    /// Patterns grouped by their first two (lower-cased) bytes, longest
    /// first within a group.
    pats: Vec<Pat<T>>,
    /// Row of each first byte in `cells` (both ASCII cases share one), or
    /// 0 if no pattern starts with it.
    rows: [u8; 256],
    /// Per row, 256 cells by second byte (both ASCII cases): the group of
    /// patterns starting with those two bytes, or 0. (Fixed-size tables
    /// indexed by a byte need no bounds checks.)
    cells: Vec<[u8; 256]>,
    /// The groups (start, end in `pats`); group 0 is empty.
    groups: Box<[(u16, u16); 256]>,
    /// Per group, a 64-bit filter on the third byte: bit `(c | 0x20) & 63`
    /// for each pattern's third byte `c` (OR-ing 0x20 maps both cases of a
    /// letter to one bit), every bit for a pattern of two bytes.
    thirds: Box<[u64; 256]>,
    /// Some pattern starts with a digit or a space, which the block masks
    /// do not offer as candidates.
    sym_outside_other: bool,
}

#[inline(always)]
fn key(a: u8, b: u8) -> u16 {
    (u16::from(a.to_ascii_lowercase()) << 8) | u16::from(b.to_ascii_lowercase())
}

/// The eight bytes at `i` as a little-endian `u64`, zero-padded past the
/// end (patterns hold no NUL, so padding never matches).
#[inline(always)]
pub(crate) fn load8(text: &[u8], i: usize) -> u64 {
    let rest = text.get(i..).unwrap_or(&[]);
    match rest.first_chunk::<8>() {
        Some(a) => u64::from_le_bytes(*a),
        None => {
            let mut a = [0u8; 8];
            a[..rest.len()].copy_from_slice(rest);
            u64::from_le_bytes(a)
        }
    }
}

impl<T: Copy> Keywords<T> {
    /// Patterns must be ASCII and at least two bytes long.
    pub(super) fn new(list: &[(&str, T)]) -> Keywords<T> {
        let mut pats: Vec<Pat<T>> = list
            .iter()
            .filter(|(p, _)| p.len() >= 2 && p.is_ascii() && !p.contains('\0'))
            .map(|(p, t)| {
                let bytes = p.as_bytes().to_ascii_lowercase();
                let (mut prefix, mut mask, mut fold) = (0u64, 0u64, 0u64);
                for (k, c) in bytes.iter().take(8).enumerate() {
                    prefix |= u64::from(*c) << (8 * k);
                    mask |= 0xff << (8 * k);
                    if c.is_ascii_alphabetic() {
                        fold |= 0x20 << (8 * k);
                    }
                }
                Pat {
                    short_alpha: bytes.len() == 2 && bytes[0].is_ascii_alphabetic(),
                    bytes,
                    prefix,
                    mask,
                    fold,
                    payload: *t,
                }
            })
            .collect();
        // Longest first within a group, so `avenue` wins over `ave`.
        pats.sort_by_key(|p| {
            (
                key(p.bytes[0], p.bytes[1]),
                std::cmp::Reverse(p.bytes.len()),
            )
        });
        // At most 255 rows and groups (0 means none): far more than the
        // built-in lists need; patterns beyond are dropped.
        let mut rows = [0u8; 256];
        let mut cells = vec![[0u8; 256]];
        let mut groups = Box::new([(0u16, 0u16); 256]);
        let mut n_groups = 1usize;
        for (i, p) in pats.iter().enumerate() {
            let i = u16::try_from(i).unwrap_or(u16::MAX);
            let (a, b) = (p.bytes[0], p.bytes[1]);
            if rows[usize::from(a)] == 0 {
                let Ok(r) = u8::try_from(cells.len()) else {
                    continue;
                };
                cells.push([0u8; 256]);
                rows[usize::from(a)] = r;
                rows[usize::from(a.to_ascii_uppercase())] = r;
            }
            let row = &mut cells[usize::from(rows[usize::from(a)])];
            if row[usize::from(b)] == 0 {
                let Ok(g) = u8::try_from(n_groups) else {
                    continue;
                };
                n_groups += 1;
                groups[usize::from(g)] = (i, i);
                row[usize::from(b)] = g;
                row[usize::from(b.to_ascii_uppercase())] = g;
            }
            groups[usize::from(row[usize::from(b)])].1 = i + 1;
        }
        let mut thirds = Box::new([0u64; 256]);
        for (g, (s, e)) in groups.iter().enumerate() {
            for p in &pats[usize::from(*s)..usize::from(*e)] {
                thirds[g] |= match p.bytes.get(2) {
                    Some(c) => 1 << ((c | 0x20) & 63),
                    None => u64::MAX,
                };
            }
        }
        let sym_outside_other = pats
            .iter()
            .any(|p| p.bytes[0].is_ascii_digit() || p.bytes[0] == b' ');
        Keywords {
            pats,
            rows,
            cells,
            groups,
            thirds,
            sym_outside_other,
        }
    }

    /// True when every candidate is a word start or punctuation (what the
    /// block masks offer), so a fused pass may drive the matcher.
    pub(super) fn block_candidates(&self) -> bool {
        !self.sym_outside_other
    }

    /// Calls `f(start, end, payload)` for the first pattern that matches at
    /// each candidate position, in order. Candidates come from the block
    /// masks: word starts (letters after a non-letter) and punctuation.
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

    /// The longest pattern matching at `i` (a word start or a punctuation
    /// byte, see [`Keywords::find`]), as its end and payload. A two-letter
    /// pattern starting with a letter must not be followed by a letter or
    /// digit.
    #[inline(always)]
    pub(super) fn at_candidate(&self, text: &[u8], i: usize) -> Option<(usize, T)> {
        let &[c, next] = text.get(i..)?.first_chunk::<2>()?;
        let row = self.rows[usize::from(c)];
        if row == 0 {
            return None;
        }
        let g = self.cells.get(usize::from(row))?[usize::from(next)];
        if g == 0 {
            return None;
        }
        let c3 = text.get(i + 2).map_or(0, |c| (c | 0x20) & 63);
        if self.thirds[usize::from(g)] >> c3 & 1 == 0 {
            return None;
        }
        self.verify(text, i, g)
    }

    /// The comparison behind a two-byte hit (out of line: most candidates
    /// never get here).
    #[inline(never)]
    fn verify(&self, text: &[u8], i: usize, g: u8) -> Option<(usize, T)> {
        let (s, e) = self.groups[usize::from(g)];
        let x = load8(text, i);
        for p in &self.pats[usize::from(s)..usize::from(e)] {
            if (x | p.fold) & p.mask != p.prefix {
                continue;
            }
            let len = p.bytes.len();
            let tail_ok = len <= 8
                || text
                    .get(i + 8..i + len)
                    .is_some_and(|t| t.eq_ignore_ascii_case(&p.bytes[8..]));
            let short_ok =
                !p.short_alpha || !text.get(i + 2).is_some_and(u8::is_ascii_alphanumeric);
            if tail_ok && short_ok {
                return Some((i + len, p.payload));
            }
        }
        None
    }

    /// The straightforward byte-by-byte loop: used when a pattern starts
    /// with a digit or a space (no block mask covers those). Candidates are
    /// the same as [`Keywords::find`]'s.
    pub(super) fn find_bytewise(&self, text: &[u8], mut f: impl FnMut(usize, usize, T)) {
        let n = text.len();
        if n < 2 {
            return;
        }
        let mut prev_alpha = false;
        for (i, c) in text[..n - 1].iter().enumerate() {
            // Letters only at word starts; any other byte may start a
            // pattern (the pair table rejects those that cannot).
            let candidate = !c.is_ascii_alphabetic() || !prev_alpha;
            prev_alpha = c.is_ascii_alphabetic();
            if !candidate {
                continue;
            }
            if let Some((e, t)) = self.at_candidate(text, i) {
                f(i, e, t);
            }
        }
    }

    /// The reference matcher the tables are tested against: every pattern
    /// compared at `i`, longest first.
    #[cfg(test)]
    pub(super) fn at_naive(&self, text: &[u8], i: usize) -> Option<(usize, T)> {
        let mut best: Option<&Pat<T>> = None;
        for p in &self.pats {
            let rest = &text[i..];
            let ok = rest.len() >= p.bytes.len()
                && rest[..p.bytes.len()].eq_ignore_ascii_case(&p.bytes)
                && !(p.short_alpha && text.get(i + 2).is_some_and(u8::is_ascii_alphanumeric));
            if ok && best.is_none_or(|b| p.bytes.len() > b.bytes.len()) {
                best = Some(p);
            }
        }
        best.map(|p| (i + p.bytes.len(), p.payload))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Keywords;
    use crate::detect::{secrets, signals};

    /// Every candidate position (as `find` defines them) checked with the
    /// naive matcher.
    fn naive<T: Copy>(k: &Keywords<T>, text: &[u8]) -> Vec<(usize, usize, T)> {
        let mut out = Vec::new();
        for i in 0..text.len().saturating_sub(1) {
            let word_start =
                text[i].is_ascii_alphabetic() && (i == 0 || !text[i - 1].is_ascii_alphabetic());
            if (word_start || !text[i].is_ascii_alphabetic())
                && let Some((e, t)) = k.at_naive(text, i)
            {
                out.push((i, e, t));
            }
        }
        out
    }

    fn texty() -> impl Strategy<Value = String> {
        let mut pieces: Vec<&'static str> = signals::patterns().into_iter().map(|p| p.0).collect();
        pieces.extend(secrets::WORDS.iter().map(|w| w.0));
        pieces.extend([
            " ", "x", "Q", "1", "_", "-", ".", ",", "\n", "é", "ST", "Street", "AI", "Ai:",
            "IGNORE ", "st", "stX", "pl9", "<|", "###", "[", "]", "!",
        ]);
        let piece = prop::sample::select(pieces);
        prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn tables_match_the_naive_matcher(text in texty(), cut in 0usize..9) {
            let text = &text.as_bytes()[..text.len().saturating_sub(cut)];
            let sig = Keywords::new(
                &signals::patterns().into_iter().map(|(p, s)| (p, (p, s))).collect::<Vec<_>>(),
            );
            let words = Keywords::new(&secrets::WORDS);
            let want = naive(&sig, text);
            let mut got = Vec::new();
            sig.find(text, |s, e, t| got.push((s, e, t)));
            prop_assert_eq!(&got, &want);
            let mut slow = Vec::new();
            sig.find_bytewise(text, |s, e, t| slow.push((s, e, t)));
            prop_assert_eq!(&slow, &want);
            let mut got = Vec::new();
            words.find(text, |s, e, t| got.push((s, e, t)));
            prop_assert_eq!(got, naive(&words, text));
        }

        #[test]
        fn tables_match_on_random_ascii(text in "[ -~\n]{0,200}") {
            let words = Keywords::new(&secrets::WORDS);
            let mut got = Vec::new();
            words.find(text.as_bytes(), |s, e, t| got.push((s, e, t)));
            prop_assert_eq!(got, naive(&words, text.as_bytes()));
        }
    }
}
