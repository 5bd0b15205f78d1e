//! Value fingerprints: the normalised, hashed values that results carry and
//! arguments reuse.
//!
//! Owns: [`FpKind`], [`Fp`] and extraction from text and JSON. Hashes are
//! FNV-1a (64 bit) over a kind byte and the normalised value, so they are
//! deterministic across processes and replicas.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::detect::{Detectors, Finding, Kind, Signal};

/// What kind of value a fingerprint was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FpKind {
    /// An e-mail address (lower-cased).
    Email,
    /// A URL without fragment or trailing slash.
    Url,
    /// A host name (from a URL or an e-mail address), without `www.`.
    Domain,
    /// An IBAN without spaces.
    Iban,
    /// A card number's digits.
    Card,
    /// A long number's digits.
    Number,
    /// A secret or token.
    Secret,
    /// A short identifier-like string value (ids, handles, names).
    Value,
    /// A hashed run of words from longer text.
    Shingle,
    /// A short object reference: `#12` in text, an integer id argument.
    Ref,
    /// An amount of money, in cents.
    Amount,
}

impl FpKind {
    /// A human name for messages.
    pub fn noun(self) -> &'static str {
        match self {
            FpKind::Email => "e-mail address",
            FpKind::Url => "URL",
            FpKind::Domain => "domain",
            FpKind::Iban => "IBAN",
            FpKind::Card => "card number",
            FpKind::Number => "number",
            FpKind::Secret => "secret",
            FpKind::Value => "value",
            FpKind::Shingle => "text",
            FpKind::Ref => "reference",
            FpKind::Amount => "amount",
        }
    }

    /// True for kinds that identify a party or place (not free text).
    pub fn is_identifier(self) -> bool {
        !matches!(self, FpKind::Shingle)
    }
}

/// One fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fp {
    /// The hash of kind and normalised value.
    pub hash: u64,
    /// The kind of value.
    pub kind: FpKind,
}

/// FNV-1a over a kind tag and bytes.
pub fn hash(kind: FpKind, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(kind as u8).chain(bytes.iter().copied()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// FNV-1a over a kind tag and several byte slices, as if concatenated.
pub fn hash_parts(kind: FpKind, parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    h ^= u64::from(kind as u8);
    h = h.wrapping_mul(0x0100_0000_01b3);
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn fp_of(kind: FpKind, s: &str) -> Fp {
    Fp {
        hash: hash(kind, s.as_bytes()),
        kind,
    }
}

/// Normalises a URL for fingerprinting and returns it with its host.
pub fn normalise_url(u: &str) -> (String, String) {
    let lower = u
        .trim()
        .trim_end_matches(['.', ',', ';', ':', '!', '?'])
        .to_ascii_lowercase();
    let no_frag = lower
        .split('#')
        .next()
        .unwrap_or("")
        .trim_end_matches('/')
        .to_owned();
    let rest = no_frag
        .split_once("://")
        .map_or(no_frag.as_str(), |(_, r)| r);
    let host = rest.split(['/', '?', ':']).next().unwrap_or("");
    let host = host
        .rsplit('@')
        .next()
        .unwrap_or(host)
        .trim_start_matches("www.")
        .to_owned();
    (no_frag, host)
}

/// Options for extraction.
#[derive(Debug, Clone, Copy)]
pub struct Extract {
    /// Also take word shingles of long text.
    pub shingles: bool,
    /// Take short strings as identifier values.
    pub values: bool,
    /// Stop after this many fingerprints.
    pub cap: usize,
    /// Keep only one shingle in four of long texts (64 words or more).
    /// Stored results are sampled; arguments are not, so that any sampled
    /// shingle of a result is found in an argument that copies it.
    pub sample: bool,
}

/// Extracts fingerprints from one piece of text.
pub fn from_text(
    det: &Detectors,
    text: &str,
    opts: Extract,
    scratch: &mut Vec<Finding>,
    out: &mut Vec<Fp>,
) {
    from_text_impl(det, text, opts, scratch, out, None);
}

/// [`from_text`] and the text's injection signals (appended to `sigs`, as
/// [`Detectors::signals`] would) from one pass of the detectors.
pub fn from_text_and_signals(
    det: &Detectors,
    text: &str,
    opts: Extract,
    scratch: &mut Vec<Finding>,
    out: &mut Vec<Fp>,
    sigs: &mut Vec<Signal>,
) {
    from_text_impl(det, text, opts, scratch, out, Some(sigs));
}

fn from_text_impl(
    det: &Detectors,
    text: &str,
    opts: Extract,
    scratch: &mut Vec<Finding>,
    out: &mut Vec<Fp>,
    sigs: Option<&mut Vec<Signal>>,
) {
    scratch.clear();
    // Longer texts are classified once for the scan, the tokens and the
    // shingles (each walks the same byte-class blocks).
    let pre = (text.len() >= 128).then(|| crate::detect::classify_all(text.as_bytes()));
    match sigs {
        Some(v) => det.scan_classified_signals(text, pre.as_deref(), scratch, v),
        None => det.scan_classified(text, pre.as_deref(), scratch),
    }
    from_findings_classified(text, pre.as_deref(), scratch, opts, out);
}

/// [`from_text`] for a text already scanned: `found` are all the detector
/// findings of `text`.
pub fn from_findings(text: &str, found: &[Finding], opts: Extract, out: &mut Vec<Fp>) {
    from_findings_classified(text, None, found, opts, out);
}

/// [`from_findings`] with the blocks of `text` already classified.
fn from_findings_classified(
    text: &str,
    pre: Option<&[crate::detect::Block]>,
    found: &[Finding],
    opts: Extract,
    out: &mut Vec<Fp>,
) {
    for f in found {
        if out.len() >= opts.cap {
            return;
        }
        let s = &text[f.range.clone()];
        match f.kind {
            // Hashed lower-cased in place (lower-casing ASCII moves no `@`):
            // the same values as hashing a lower-cased copy.
            Kind::Email => {
                out.push(Fp {
                    hash: hash_ascii_lower(FpKind::Email, s.as_bytes()),
                    kind: FpKind::Email,
                });
                if let Some((_, d)) = s.rsplit_once('@') {
                    out.push(Fp {
                        hash: hash_ascii_lower(FpKind::Domain, d.as_bytes()),
                        kind: FpKind::Domain,
                    });
                }
            }
            Kind::Url => {
                let (u, host) = normalise_url(s);
                out.push(fp_of(FpKind::Url, &u));
                if !host.is_empty() {
                    out.push(fp_of(FpKind::Domain, &host));
                }
            }
            Kind::Iban => {
                let v: String = s
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect::<String>()
                    .to_ascii_uppercase();
                out.push(fp_of(FpKind::Iban, &v));
            }
            Kind::Card => out.push(Fp {
                hash: hash_digits(FpKind::Card, s),
                kind: FpKind::Card,
            }),
            Kind::LongNumber => out.push(fp_of(FpKind::Number, s)),
            // Phones and SSNs by their digits, so that `(415) 555-0100`
            // and `415.555.0100` are the same value.
            Kind::Phone | Kind::Ssn => out.push(Fp {
                hash: hash_digits(FpKind::Number, s),
                kind: FpKind::Number,
            }),
            Kind::Secret | Kind::Token => out.push(fp_of(FpKind::Secret, s)),
            Kind::Passport | Kind::Address | Kind::Custom => {
                out.push(fp_of(FpKind::Value, &s.to_lowercase()));
            }
        }
    }
    let t = text.trim();
    // The blocks of `text` serve `t` only when trimming left its start
    // where it was.
    let pre = pre.filter(|_| t.as_ptr() == text.as_ptr());
    if opts.values && (3..=96).contains(&t.len()) && found.is_empty() && out.len() < opts.cap {
        out.push(fp_of(FpKind::Value, &t.to_lowercase()));
    }
    if opts.values && t.len() > 3 {
        tokens(t, pre, opts.cap, out);
    }
    if opts.values {
        refs(t, out, opts.cap);
    }
    if opts.shingles && t.len() >= 48 {
        shingles(t, pre, opts.cap, opts.sample, out);
    }
}

/// The fingerprint of an object reference (`#12` in text, an integer id
/// argument), without leading zeros.
pub(crate) fn ref_fp(digits: &str) -> Fp {
    let d = digits.trim_start_matches('0');
    Fp {
        hash: hash(FpKind::Ref, if d.is_empty() { b"0" } else { d.as_bytes() }),
        kind: FpKind::Ref,
    }
}

/// The references `#12` (one to nine digits, not inside a word) in
/// `text`: a message, ticket or item number a result names, so that a
/// later call on that object (`delete_email {"id": 12}`) is linked to it.
pub(crate) fn refs(text: &str, out: &mut Vec<Fp>, cap: usize) {
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'#', &b[i..]) {
        let at = i + p;
        i = at + 1;
        let digits = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if (1..=9).contains(&digits)
            && b.get(at + 1 + digits).is_none_or(|c| !word(*c))
            && (at == 0 || !word(b[at - 1]))
        {
            if out.len() >= cap {
                return;
            }
            out.push(ref_fp(&text[at + 1..at + 1 + digits]));
        }
    }
}

/// The digits of `s`, as the card and number fingerprints were taken
/// from (the reference [`hash_digits`] is tested against).
#[cfg(test)]
fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// [`hash`] of the ASCII digits of `s`, without collecting them (no byte
/// of a multi-byte character is an ASCII digit).
fn hash_digits(kind: FpKind, s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(kind as u8).chain(s.bytes().filter(u8::is_ascii_digit)) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Byte classes for token extraction, as bit flags.
const T_DELIM: u8 = 1;
const T_DIGIT: u8 = 2;
const T_ALPHA: u8 = 4;
const T_SLASH: u8 = 8;
const T_DOT: u8 = 16;
const T_DASH: u8 = 32;
const T_BAD: u8 = 64;
const TOKEN_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | b'"' | b'\'' | b',' | b';' | b'('
            | b')' | b'[' | b']' | b'{' | b'}' | b'<' | b'>' | b'`' => T_DELIM,
            b'0'..=b'9' => T_DIGIT,
            b'a'..=b'z' | b'A'..=b'Z' => T_ALPHA,
            b'/' => T_SLASH,
            b'.' => T_DOT,
            b'-' | b'_' => T_DASH,
            b'@' | b':' => T_BAD,
            _ => 0,
        };
        i += 1;
    }
    t
};

/// Identifier-like tokens inside longer text: paths, file names and ids
/// such as `msg-7712` or `C-2201`. One pass over the bytes with a class
/// table (no per-byte branches on the byte value).
// Out of line (as `shingles`): inlined into `from_findings_classified`
// the two loops compiled to more instructions per call.
#[inline(never)]
fn tokens(t: &str, pre: Option<&[crate::detect::Block]>, cap: usize, out: &mut Vec<Fp>) {
    let b = t.as_bytes();
    // Only a digit, `/`, `.`, `-` or `_` can make a token interesting;
    // letters and spaces (most of prose) are skipped a block at a time.
    crate::detect::digits_and_punct(b, pre, |i| {
        if TOKEN_CLASS[usize::from(b[i])] & (T_DIGIT | T_SLASH | T_DOT | T_DASH) == 0 {
            return Some(i + 1);
        }
        let (start, k, acc) = token_around(b, i);
        if let Some(h) = token_hash(t, start, k, acc) {
            if out.len() >= cap {
                return None;
            }
            out.push(Fp {
                hash: h,
                kind: FpKind::Value,
            });
        }
        Some(k)
    });
}

/// The token (bytes between delimiters) around `i`: its start, end and the
/// union of its byte classes.
fn token_around(b: &[u8], i: usize) -> (usize, usize, u8) {
    let mut start = i;
    while start > 0 && TOKEN_CLASS[usize::from(b[start - 1])] & T_DELIM == 0 {
        start -= 1;
    }
    let mut acc = 0u8;
    let mut k = start;
    while k < b.len() {
        let c = TOKEN_CLASS[usize::from(b[k])];
        if c & T_DELIM != 0 {
            break;
        }
        acc |= c;
        k += 1;
    }
    (start, k, acc)
}

/// The fingerprint hash of the token `start..k` of `t` (trailing `.:!?`
/// dropped) if it looks like a path, a file name or an id.
// Out of line, as is the block walk of `tokens`: where the compiler chose
// to inline both into `tokens` (it varies with code elsewhere in the
// crate), the walk took ~0.9k more instructions per 1 KiB argument.
#[inline(never)]
fn token_hash(t: &str, start: usize, k: usize, acc: u8) -> Option<u64> {
    let b = t.as_bytes();
    let mut end = k;
    while end > start && matches!(b[end - 1], b'.' | b':' | b'!' | b'?') {
        end -= 1;
    }
    let len = end - start;
    if acc & T_BAD != 0 || !(4..=128).contains(&len) || len == b.len() {
        return None;
    }
    let alpha = acc & T_ALPHA != 0;
    let pathish = acc & T_SLASH != 0 || (acc & T_DOT != 0 && alpha);
    // Ids: letters and digits with a separator (`msg-7712`) or long
    // enough (`US133000000121212121212`); numbers with separators and
    // at least eight digits (`123-1234-1234`, account and phone numbers).
    let digit = acc & T_DIGIT != 0;
    let idish = (digit && alpha && (acc & T_DASH != 0 || len >= 8))
        || (digit
            && !alpha
            && acc & (T_DASH | T_DOT) != 0
            && b[start..end].iter().filter(|c| c.is_ascii_digit()).count() >= 8);
    if !(pathish || idish) {
        return None;
    }
    Some(hash_ascii_lower(FpKind::Value, &b[start..end]))
}

/// [`hash`] of the ASCII-lower-cased bytes, without making the lower-cased
/// copy.
fn hash_ascii_lower(kind: FpKind, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(kind as u8).chain(bytes.iter().map(u8::to_ascii_lowercase)) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The token walk as it was, byte by byte: the reference [`tokens`] is
/// tested against.
#[cfg(test)]
fn tokens_bytewise(t: &str, cap: usize, out: &mut Vec<Fp>) {
    let b = t.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i..]
            .iter()
            .position(|c| TOKEN_CLASS[usize::from(*c)] & (T_DIGIT | T_SLASH | T_DOT | T_DASH) != 0)
        {
            Some(p) => i += p,
            None => return,
        }
        let (start, k, acc) = token_around(b, i);
        i = k;
        if let Some(h) = token_hash(t, start, k, acc) {
            if out.len() >= cap {
                return;
            }
            out.push(Fp {
                hash: h,
                kind: FpKind::Value,
            });
        }
    }
}

/// Word 6-gram shingles. When sampling, one in four (by hash) is kept, so
/// that any copied run of about 9 words or more is very likely to share a
/// sample. Words are
/// runs of ASCII letters and digits (and any non-ASCII bytes), compared
/// without ASCII case.
#[inline(never)]
fn shingles(
    text: &str,
    pre: Option<&[crate::detect::Block]>,
    cap: usize,
    sample: bool,
    out: &mut Vec<Fp>,
) {
    const N: usize = 6;
    let b = text.as_bytes();
    const P: u64 = 0x0000_0100_0000_01b3;
    // P^(N-1), computed at compile time.
    const P_N1: u64 = P
        .wrapping_mul(P)
        .wrapping_mul(P)
        .wrapping_mul(P)
        .wrapping_mul(P);
    // Sampling needs the word count up front: a cheap estimate from spaces.
    let sample = sample && at_least_spaces(b, 64);
    let mut ring: [u64; N] = [0; N];
    let mut roll: u64 = 0;
    let mut n = 0usize;
    let mut slot = 0usize;
    for (start, end) in crate::detect::Words::new(b, pre) {
        // Polynomial rolling hash over the last N word hashes:
        // S = sum(w_k * P^(N-1-k)); update S = (S - w_out * P^(N-1)) * P + w_in.
        let w = word_hash_at(b, start, end);
        let out_w = ring[slot];
        ring[slot] = w;
        slot = if slot + 1 == N { 0 } else { slot + 1 };
        n += 1;
        roll = roll
            .wrapping_sub(out_w.wrapping_mul(P_N1))
            .wrapping_mul(P)
            .wrapping_add(w);
        if n >= N {
            let s = roll.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (roll >> 29);
            if !sample || s >> 62 == 0 {
                if out.len() >= cap {
                    return;
                }
                out.push(Fp {
                    hash: s,
                    kind: FpKind::Shingle,
                });
            }
        }
    }
}

/// Whether `b` holds at least `n` space bytes: eight bytes per step, and
/// it stops as soon as it has seen `n` (a result's sampling is decided
/// from its first few hundred bytes instead of a byte-wise count of all).
fn at_least_spaces(b: &[u8], n: usize) -> bool {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let mut seen = 0usize;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        // Bytes equal to a space become zero; the high bit of each byte of
        // `zero` is set exactly where `x` has a zero byte (no carries
        // between bytes: the low seven bits are added separately).
        let x = u64::from_le_bytes(a) ^ 0x2020_2020_2020_2020;
        let zero = !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7);
        seen += zero.count_ones() as usize;
        if seen >= n {
            return true;
        }
    }
    seen + chunks.remainder().iter().filter(|c| **c == b' ').count() >= n
}

/// The shingles as they were (a closure per word, each word hashed from a
/// copy, the ring indexed by `n % N`): the reference [`shingles`] is tested
/// against.
#[cfg(test)]
fn shingles_reference(text: &str, cap: usize, sample: bool, out: &mut Vec<Fp>) {
    const N: usize = 6;
    const P: u64 = 0x0000_0100_0000_01b3;
    const P_N1: u64 = P
        .wrapping_mul(P)
        .wrapping_mul(P)
        .wrapping_mul(P)
        .wrapping_mul(P);
    let b = text.as_bytes();
    let sample = sample && b.iter().filter(|c| **c == b' ').count() >= 64;
    let mut ring: [u64; N] = [0; N];
    let mut roll: u64 = 0;
    let mut n = 0usize;
    for (start, end) in crate::detect::Words::new(b, None) {
        let w = word_hash(&b[start..end]);
        let out_w = ring[n % N];
        ring[n % N] = w;
        n += 1;
        roll = roll
            .wrapping_sub(out_w.wrapping_mul(P_N1))
            .wrapping_mul(P)
            .wrapping_add(w);
        if n >= N {
            let s = roll.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (roll >> 29);
            if !sample || s >> 62 == 0 {
                if out.len() >= cap {
                    return;
                }
                out.push(Fp {
                    hash: s,
                    kind: FpKind::Shingle,
                });
            }
        }
    }
}

/// Hashes a word eight bytes at a time, ignoring ASCII case (setting bit
/// 0x20 lower-cases letters and leaves digits unchanged).
#[cfg(test)]
fn word_hash(w: &[u8]) -> u64 {
    let mut h: u64 = 0x243f_6a88_85a3_08d3 ^ (w.len() as u64);
    let mut chunks = w.chunks_exact(8);
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        let v = u64::from_le_bytes(a) | 0x2020_2020_2020_2020;
        h = (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut a = [0u8; 8];
        a[..rest.len()].copy_from_slice(rest);
        let v =
            u64::from_le_bytes(a) | (0x2020_2020_2020_2020 & (u64::MAX >> (64 - 8 * rest.len())));
        h = (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
    h
}

/// [`word_hash`] of `b[start..end]`, reading whole `u64`s from the text
/// and masking the bytes past the word (the same value, without copying
/// the tail).
#[inline(always)]
fn word_hash_at(b: &[u8], start: usize, end: usize) -> u64 {
    let load = |p: usize| crate::detect::load8(b, p);
    let mut h: u64 = 0x243f_6a88_85a3_08d3 ^ ((end - start) as u64);
    let mut p = start;
    while p + 8 <= end {
        let v = load(p) | 0x2020_2020_2020_2020;
        h = (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        p += 8;
    }
    if p < end {
        let m = u64::MAX >> (64 - 8 * (end - p));
        let v = (load(p) & m) | (0x2020_2020_2020_2020 & m);
        h = (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
    h
}

/// Extracts fingerprints from every string and long number in a JSON value.
/// Sets bit `1 << kind` in `detected` for every detector class that fired.
pub fn from_json(
    det: &Detectors,
    v: &Value,
    opts: Extract,
    scratch: &mut Vec<Finding>,
    out: &mut Vec<Fp>,
    detected: &mut u16,
) {
    walk(v, 0, &mut |s| {
        if out.len() < opts.cap {
            from_text(det, s, opts, scratch, out);
        } else {
            // Past the cap nothing more is fingerprinted, but every value
            // is still scanned: a class found late in a long argument must
            // still meet the content policy.
            det.scan_into(s, scratch);
        }
        for f in scratch.iter() {
            *detected |= 1 << (f.kind as u16);
        }
    });
}

/// How deep the walks go. Above the JSON parsers' nesting limit (serde_json
/// refuses more than 128 levels), so every parsed message is walked in
/// full; a deeper value (built in process) is reported uninspectable by the
/// judge, never passed as clean.
pub const MAX_DEPTH: usize = 160;

/// Calls `f` on every string leaf (and the decimal form of integers of six
/// digits or more), depth first, up to depth [`MAX_DEPTH`].
pub fn walk(v: &Value, depth: usize, f: &mut dyn FnMut(&str)) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::String(s) => f(s),
        Value::Number(n) => {
            if let Some(i) = n.as_u64().filter(|i| *i >= 100_000) {
                f(&i.to_string());
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, depth + 1, f)),
        Value::Object(o) => o.values().for_each(|x| walk(x, depth + 1, f)),
        Value::Bool(_) | Value::Null => {}
    }
}

/// Depth-first over string leaves (and the decimal form of integers of six
/// digits or more) with their JSON pointer, up to depth [`MAX_DEPTH`]. With `keys`,
/// object keys are visited too (the last argument is then true, and the
/// pointer is that of the key's value).
pub(crate) fn walk_ptr(
    v: &Value,
    ptr: &mut String,
    depth: usize,
    keys: bool,
    f: &mut dyn FnMut(&str, &str, bool),
) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::String(s) => f(ptr, s, false),
        Value::Number(n) => {
            if let Some(i) = n.as_u64().filter(|i| *i >= 100_000) {
                f(ptr, &i.to_string(), false);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let len = ptr.len();
                ptr.push('/');
                ptr.push_str(&i.to_string());
                walk_ptr(x, ptr, depth + 1, keys, f);
                ptr.truncate(len);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                let len = ptr.len();
                ptr.push('/');
                ptr.push_str(&k.replace('~', "~0").replace('/', "~1"));
                if keys {
                    f(ptr, k, true);
                }
                walk_ptr(x, ptr, depth + 1, keys, f);
                ptr.truncate(len);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

#[cfg(test)]
mod tests;
