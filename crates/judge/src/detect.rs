//! Content detectors: e-mail addresses, URLs, IBANs (mod 97), card numbers
//! (Luhn), secrets and tokens, long numbers, and prompt-injection phrasing.
//!
//! Owns: [`Detectors`] (compiled once) and [`Finding`]. Self-contained so a
//! later content-inspection layer can replace or deepen it. One pass: an
//! Aho-Corasick prefilter and a `RegexSet` decide which detectors can fire,
//! then only those run to give positions and validate checksums.

use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexSet};
use serde::Serialize;

/// What a detector found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An e-mail address.
    Email,
    /// A URL (`http://`, `https://`, `ftp://`) or bare `www.` host.
    Url,
    /// An IBAN with a valid mod-97 checksum.
    Iban,
    /// A payment card number with a valid Luhn checksum.
    Card,
    /// A credential: cloud keys, API tokens, private keys, JWTs, `password=`.
    Secret,
    /// A run of eight or more digits (account numbers, phone numbers, ids).
    LongNumber,
}

impl Kind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Url => "url",
            Kind::Iban => "iban",
            Kind::Card => "card",
            Kind::Secret => "secret",
            Kind::LongNumber => "long_number",
        }
    }

    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Option<Kind> {
        [
            Kind::Email,
            Kind::Url,
            Kind::Iban,
            Kind::Card,
            Kind::Secret,
            Kind::LongNumber,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One detection: its kind and byte range in the scanned text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The detector that fired.
    pub kind: Kind,
    /// Byte range in the text.
    pub range: Range<usize>,
}

// Patterns avoid large bounded repetitions (they blow up the automata) and
// use ASCII word boundaries so the lazy DFA handles every haystack; lengths
// are checked after matching where it matters.
const PATTERNS: [(Kind, &str); 6] = [
    (
        Kind::Email,
        r"(?i)(?-u:\b)[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,24}(?-u:\b)",
    ),
    (
        Kind::Url,
        r#"(?i)(?-u:\b)(?:https?|ftp)://[^\s"'<>()\[\]{}]+|(?-u:\b)www\.[a-z0-9-]+\.[a-z0-9.-]+[^\s"'<>()\[\]{}]*"#,
    ),
    (
        Kind::Iban,
        r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?-u:\b)",
    ),
    (
        Kind::Card,
        r"(?-u:\b)[0-9]{4}(?:[ -]?[0-9]{4}){2}[ -]?[0-9]{1,7}(?-u:\b)",
    ),
    (
        Kind::Secret,
        r#"(?-u:\b)(?:AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,}|xox[abposr]-[A-Za-z0-9-]{10,}|sk-(?:proj-|live-)?[A-Za-z0-9_-]{20,}|sk_live_[A-Za-z0-9]{16,}|AIza[0-9A-Za-z_-]{35}|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})|-----BEGIN[A-Z ]*PRIVATE KEY-----|(?i)(?:password|passwd|secret|api[_-]?key|token)[ \t]*[:=][ \t]*["']?[^\s"',;]{6,}"#,
    ),
    (Kind::LongNumber, r"(?-u:\b)[0-9]{8,19}(?-u:\b)"),
];

/// Literal prefixes of token-shaped secrets. Matched case-sensitively so
/// the Aho-Corasick searcher can use its fast prefilter.
const SECRET_HINTS: [&str; 12] = [
    "AKIA",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xox",
    "sk-",
    "sk_live_",
    "AIza",
    "-----BEGIN",
];

/// Keywords of `key = value` secrets, searched only when the text has a
/// `:` or `=`.
const SECRET_WORDS: [&str; 5] = ["password", "passwd", "secret", "token", "api"];

/// Byte classes for the prefilter pass: 1 digit, 2 separator inside
/// numbers, 3 upper-case letter.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if i >= b'0' as usize && i <= b'9' as usize {
            1
        } else if i == b' ' as usize || i == b'-' as usize {
            2
        } else if i >= b'A' as usize && i <= b'Z' as usize {
            3
        } else {
            0
        };
        i += 1;
    }
    t
};

/// Phrases typical of instructions injected into content aimed at an AI
/// agent. Matched case-insensitively.
const INJECTION_PHRASES: [&str; 30] = [
    "ignore previous instructions",
    "ignore all previous",
    "ignore the previous",
    "ignore your previous",
    "ignore the above",
    "disregard previous",
    "disregard all prior",
    "disregard your instructions",
    "forget your instructions",
    "new instructions:",
    "<information>",
    "this is an important message from me",
    "before you can solve the task",
    "please do the following first",
    "do not tell the user",
    "don't tell the user",
    "without telling the user",
    "do not mention this",
    "don't mention this",
    "note to the ai",
    "message to the ai",
    "attention ai",
    "ai assistant:",
    "ai agent:",
    "dear ai",
    "instructions for the assistant",
    "system override",
    "<|im_start|>",
    "[system]",
    "important!!!",
];

/// The compiled detectors. Build once and share.
#[derive(Debug, Clone)]
pub struct Detectors {
    set: RegexSet,
    each: Vec<(Kind, Regex)>,
    secret_hints: AhoCorasick,
    secret_words: Vec<aho_corasick::AhoCorasick>,
    injection: AhoCorasick,
}

impl Detectors {
    /// Compiles the built-in detectors.
    ///
    /// # Panics
    /// Never in practice: the patterns are constants covered by tests.
    #[allow(clippy::expect_used)]
    pub fn new() -> Detectors {
        let set = RegexSet::new(PATTERNS.iter().map(|(_, p)| *p))
            .expect("built-in detector patterns compile");
        let each = PATTERNS
            .iter()
            .map(|(k, p)| {
                (
                    *k,
                    Regex::new(p).expect("built-in detector pattern compiles"),
                )
            })
            .collect();
        // Leftmost-first lets the searcher use its SIMD prefilter (about
        // 20 times faster than standard semantics for `is_match`).
        let secret_hints = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostFirst)
            .build(SECRET_HINTS)
            .expect("secret hints compile");
        let secret_words = SECRET_WORDS
            .iter()
            .map(|w| {
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::LeftmostFirst)
                    .build([w])
                    .expect("secret word compiles")
            })
            .collect();
        let injection = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostFirst)
            .build(INJECTION_PHRASES)
            .expect("injection phrases compile");
        Detectors {
            set,
            each,
            secret_hints,
            secret_words,
            injection,
        }
    }

    /// One process-wide compiled instance (compiling the detectors takes a
    /// few milliseconds; every judge can share them).
    pub fn shared() -> std::sync::Arc<Detectors> {
        static SHARED: std::sync::OnceLock<std::sync::Arc<Detectors>> = std::sync::OnceLock::new();
        SHARED
            .get_or_init(|| std::sync::Arc::new(Detectors::new()))
            .clone()
    }

    /// Scans `text` and appends every validated finding to `out`.
    ///
    /// A single cheap pass over the bytes (plus the Aho-Corasick secret
    /// hints) decides which detectors can possibly match; only those run
    /// their regex. Typical prose with no `@`, no URL and no long digit run
    /// costs well under a microsecond per KiB. The `RegexSet` is used when
    /// three or more detectors are candidates, to find out in one pass which
    /// of them really match.
    pub fn scan(&self, text: &str, out: &mut Vec<Finding>) {
        if text.len() < 6 {
            return;
        }
        let b = text.as_bytes();
        let (mut digits, mut max_digits, mut upper_pair, mut uppers, mut lead) =
            (0usize, 0usize, false, 0usize, 0usize);
        for c in b {
            match CLASS[usize::from(*c)] {
                1 => {
                    if digits == 0 {
                        lead = uppers;
                    }
                    digits += 1;
                    if digits == 2 && lead >= 2 {
                        upper_pair = true;
                    }
                    uppers = 0;
                    max_digits = max_digits.max(digits);
                }
                2 => uppers = 0,
                3 => {
                    uppers += 1;
                    digits = 0;
                }
                _ => {
                    digits = 0;
                    uppers = 0;
                }
            }
        }
        let mut candidates = [false; 6];
        candidates[0] = text.contains('@');
        candidates[1] = text.contains("://") || text.contains("www.") || text.contains("WWW.");
        candidates[2] = upper_pair;
        candidates[3] = max_digits >= 13;
        candidates[4] = self.secret_hints.is_match(text) || self.secret_words(text);
        candidates[5] = max_digits >= 8;
        let n = candidates.iter().filter(|c| **c).count();
        if n == 0 {
            return;
        }
        if n >= 3 {
            let matched = self.set.matches(text);
            for (i, c) in candidates.iter_mut().enumerate() {
                *c &= matched.matched(i);
            }
        }
        for (i, (kind, re)) in self.each.iter().enumerate() {
            if !candidates[i] {
                continue;
            }
            for m in re.find_iter(text) {
                let s = m.as_str();
                let ok = match kind {
                    Kind::Email => s.len() <= 254 && s.find('@').is_some_and(|at| at <= 64),
                    Kind::Url => s.len() <= 4096,
                    Kind::Iban => iban_valid(s),
                    Kind::Card => luhn_valid(s),
                    Kind::LongNumber => !overlaps(out, m.range()),
                    _ => true,
                };
                if ok {
                    out.push(Finding {
                        kind: *kind,
                        range: m.range(),
                    });
                }
            }
        }
    }

    fn secret_words(&self, text: &str) -> bool {
        if !text.contains('=') && !text.contains(':') {
            return false;
        }
        self.secret_words
            .iter()
            .any(|f| f.find(text.as_bytes()).is_some())
    }

    /// True if the text contains phrasing typical of injected instructions.
    pub fn has_injection(&self, text: &str) -> bool {
        self.injection.is_match(text)
    }

    /// The first injection phrase found, for reasons.
    pub fn injection_phrase(&self, text: &str) -> Option<&'static str> {
        self.injection
            .find(text)
            .map(|m| INJECTION_PHRASES[m.pattern().as_usize()])
    }
}

impl Default for Detectors {
    fn default() -> Self {
        Detectors::new()
    }
}

fn overlaps(out: &[Finding], r: Range<usize>) -> bool {
    out.iter()
        .any(|f| f.range.start < r.end && r.start < f.range.end)
}

/// True if the digits of `s` (spaces and dashes ignored) pass the Luhn check
/// and there are 13 to 19 of them.
pub fn luhn_valid(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let mut sum = 0;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = *d;
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

/// True if `s` (spaces ignored) is an IBAN with a valid mod-97 checksum.
pub fn iban_valid(s: &str) -> bool {
    let compact: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem: u32 = 0;
    for b in tail.iter().chain(head.iter()) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            b'a'..=b'z' => u32::from(b - b'a') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests;
