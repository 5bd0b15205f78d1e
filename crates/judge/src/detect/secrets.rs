//! Secrets and keyword-anchored personal data, validated by hand at the
//! positions the literal prefilters found: token prefixes (`AKIA`, `ghp_`,
//! `eyJ`, `-----BEGIN` ...), `password=`-style assignments, passwords in
//! connection strings, passport numbers after a keyword, US street
//! addresses before a street suffix, and generic high-entropy tokens.

use super::{Det, Finding};

/// Token prefixes, matched case-sensitively. The detector and the minimum
/// length of the token body after the prefix.
pub(super) const HINTS: [(&str, Det, usize); 24] = [
    ("AKIA", Det::AwsKey, 16),
    ("ASIA", Det::AwsKey, 16),
    ("ghp_", Det::GithubToken, 30),
    ("gho_", Det::GithubToken, 30),
    ("ghu_", Det::GithubToken, 30),
    ("ghs_", Det::GithubToken, 30),
    ("ghr_", Det::GithubToken, 30),
    ("github_pat_", Det::GithubToken, 40),
    ("glpat-", Det::GitlabToken, 20),
    ("xoxb-", Det::SlackToken, 10),
    ("xoxp-", Det::SlackToken, 10),
    ("xoxa-", Det::SlackToken, 10),
    ("xoxo-", Det::SlackToken, 10),
    ("xoxs-", Det::SlackToken, 10),
    ("xoxr-", Det::SlackToken, 10),
    ("hooks.slack.com/services/", Det::SlackWebhook, 20),
    ("sk_live_", Det::StripeKey, 16),
    ("rk_live_", Det::StripeKey, 16),
    ("sk_test_", Det::StripeKey, 16),
    ("rk_test_", Det::StripeKey, 16),
    ("AIza", Det::GoogleKey, 35),
    ("sk-", Det::OpenaiKey, 20),
    ("eyJ", Det::Jwt, 8),
    ("-----BEGIN", Det::PrivateKey, 0),
];

/// Case-insensitive keywords. `Kw` says what each anchors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kw {
    /// `password=...`, `api_key: ...`.
    Assign,
    /// A passport number follows.
    Passport,
    /// An SSN follows.
    Ssn,
    /// A street suffix ends an address.
    Street,
    /// `www.` at a word start: the URL regex may match (see
    /// `Detectors::scan`).
    Www,
}

/// Keywords for the case-insensitive prefilter (street suffixes are
/// checked for a leading space and a capital by [`street`]).
pub(super) const WORDS: [(&str, Kw); 35] = [
    ("password", Kw::Assign),
    ("passwd", Kw::Assign),
    ("pwd", Kw::Assign),
    ("secret", Kw::Assign),
    ("api_key", Kw::Assign),
    ("apikey", Kw::Assign),
    ("api-key", Kw::Assign),
    ("token", Kw::Assign),
    ("passport", Kw::Passport),
    ("ssn", Kw::Ssn),
    ("social security", Kw::Ssn),
    ("street", Kw::Street),
    ("st", Kw::Street),
    ("avenue", Kw::Street),
    ("ave", Kw::Street),
    ("road", Kw::Street),
    ("rd", Kw::Street),
    ("boulevard", Kw::Street),
    ("blvd", Kw::Street),
    ("lane", Kw::Street),
    ("ln", Kw::Street),
    ("drive", Kw::Street),
    ("dr", Kw::Street),
    ("court", Kw::Street),
    ("ct", Kw::Street),
    ("way", Kw::Street),
    ("place", Kw::Street),
    ("pl", Kw::Street),
    ("terrace", Kw::Street),
    ("parkway", Kw::Street),
    ("pkwy", Kw::Street),
    ("circle", Kw::Street),
    ("highway", Kw::Street),
    ("square", Kw::Street),
    ("www.", Kw::Www),
];

fn word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn push(out: &mut Vec<Finding>, det: Det, s: usize, e: usize) {
    out.push(Finding {
        kind: det.kind(),
        detector: det as u16,
        range: s..e,
    });
}

fn run(b: &[u8], from: usize, ok: impl Fn(u8) -> bool) -> usize {
    let mut k = from;
    while k < b.len() && ok(b[k]) {
        k += 1;
    }
    work::add(k - from);
    k
}

/// Steps the validators take, counted in tests only: the linearity tests
/// assert on work done, not on time.
pub(super) mod work {
    #[cfg(test)]
    thread_local! {
        static STEPS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Counts `n` steps (bytes looked at).
    #[inline(always)]
    pub(in crate::detect) fn add(n: usize) {
        #[cfg(test)]
        STEPS.with(|s| s.set(s.get() + n));
        #[cfg(not(test))]
        let _ = n;
    }

    /// The steps counted on this thread since the last call.
    #[cfg(test)]
    pub(in crate::detect) fn take() -> usize {
        STEPS.with(|s| s.replace(0))
    }
}

/// The byte classes whose runs the validators measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Capitals and digits (AWS key ids, PEM headers add the space).
    UpperDigit,
    /// Letters, digits, `_`.
    Ident,
    /// base64url: letters, digits, `_`, `-`.
    B64url,
    /// Letters, digits, `/`.
    AlnumSlash,
    /// Capitals and spaces (PEM headers).
    UpperSpace,
    /// An assigned value: anything up to whitespace, a quote, `,`, `;`,
    /// `}` or `&`.
    Value,
}

impl Class {
    fn has(self, c: u8) -> bool {
        match self {
            Class::UpperDigit => c.is_ascii_uppercase() || c.is_ascii_digit(),
            Class::Ident => alnum(c) || c == b'_',
            Class::B64url => b64url(c),
            Class::AlnumSlash => alnum(c) || c == b'/',
            Class::UpperSpace => c.is_ascii_uppercase() || c == b' ',
            Class::Value => {
                !c.is_ascii_whitespace() && !matches!(c, b'"' | b'\'' | b',' | b';' | b'}' | b'&')
            }
        }
    }
}

/// What a run holds, by the position (plus one; 0 for none) of the last
/// byte of each kind, so that any suffix of the run is judged in O(1).
#[derive(Debug, Clone, Copy, Default)]
struct RunInfo {
    class: Option<Class>,
    start: usize,
    end: usize,
    last_digit: usize,
    last_upper: usize,
    /// `(`, `)`, `[`, `]`.
    last_bracket: usize,
    /// A digit or a symbol other than `_` and `.`.
    last_digit_or_symbol: usize,
    /// Not `*`, `x`, `X`, `.` (a mask such as `xxxx` or `****`).
    last_unmasked: usize,
}

impl RunInfo {
    fn digit_from(&self, k: usize) -> bool {
        self.last_digit > k
    }
    fn upper_from(&self, k: usize) -> bool {
        self.last_upper > k
    }
}

/// The runs measured so far in one text, and the last searches for PEM
/// end markers. Validators run at increasing positions; a run's end
/// depends only on its class, so a prefix or keyword repeated inside one
/// run (`sk-sk-sk-…`, `password=password=…`) reuses it instead of
/// scanning to its end again, which made the scan quadratic.
#[derive(Debug, Default)]
pub(super) struct Memo {
    /// One slot per class, three for base64url (a JWT's three parts):
    /// classes share no slot, so hits of one prefix cannot evict another's
    /// run.
    runs: [RunInfo; 8],
    /// The next base64url slot to fill (of three).
    next_b64: usize,
    /// `(from, found)`: the first `-----END` at or after `from`.
    pem_end: Option<(usize, Option<usize>)>,
    /// `(from, found)`: the first `-----` at or after `from`.
    dashes: Option<(usize, Option<usize>)>,
}

impl Memo {
    /// The run of `class` starting at `from`.
    fn run(&mut self, b: &[u8], from: usize, class: Class) -> RunInfo {
        let slots = match class {
            Class::UpperDigit => 0..1,
            Class::Ident => 1..2,
            Class::AlnumSlash => 2..3,
            Class::UpperSpace => 3..4,
            Class::Value => 4..5,
            Class::B64url => 5..8,
        };
        if let Some(r) = self.runs[slots.clone()]
            .iter()
            .find(|r| r.class == Some(class) && r.start <= from && from <= r.end)
        {
            return *r;
        }
        let mut r = RunInfo {
            class: Some(class),
            start: from,
            ..RunInfo::default()
        };
        let mut k = from;
        while k < b.len() && class.has(b[k]) {
            let c = b[k];
            k += 1;
            if c.is_ascii_digit() {
                r.last_digit = k;
                r.last_digit_or_symbol = k;
            } else if c.is_ascii_uppercase() {
                r.last_upper = k;
            } else if !c.is_ascii_alphanumeric() && c != b'_' && c != b'.' {
                r.last_digit_or_symbol = k;
            }
            if matches!(c, b'(' | b')' | b'[' | b']') {
                r.last_bracket = k;
            }
            if !matches!(c, b'*' | b'x' | b'X' | b'.') {
                r.last_unmasked = k;
            }
        }
        work::add(k - from);
        r.end = k;
        let slot = if class == Class::B64url {
            self.next_b64 = (self.next_b64 + 1) % 3;
            5 + self.next_b64
        } else {
            slots.start
        };
        self.runs[slot] = r;
        r
    }
}

/// The first occurrence of `needle` at or after `from`, remembered in
/// `slot`: validators search forward, so one remembered answer serves every
/// later search that starts before it (what keeps repeated keywords linear).
pub(super) fn find_forward(
    slot: &mut Option<(usize, Option<usize>)>,
    text: &str,
    from: usize,
    needle: &str,
) -> Option<usize> {
    if let Some((f, found)) = *slot
        && f <= from
        && found.is_none_or(|p| p >= from)
    {
        return found;
    }
    let found = text[from..].find(needle).map(|p| from + p);
    work::add(found.map_or(text.len(), |p| p + needle.len()) - from);
    *slot = Some((from, found));
    found
}

fn alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

fn b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// Validates a token prefix found at `at`.
pub(super) fn hint(text: &str, at: usize, which: usize, memo: &mut Memo, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let (prefix, det, min) = HINTS[which];
    let body = at + prefix.len();
    if det != Det::PrivateKey && det != Det::SlackWebhook && at > 0 && word(b[at - 1]) {
        return;
    }
    match det {
        Det::AwsKey => {
            let e = memo.run(b, body, Class::UpperDigit).end;
            if e - body == min && !b.get(e).copied().is_some_and(word) {
                push(out, det, at, e);
            }
        }
        Det::GithubToken | Det::StripeKey => {
            let e = memo.run(b, body, Class::Ident).end;
            if e - body >= min {
                push(out, det, at, e);
            }
        }
        Det::GitlabToken | Det::SlackToken => {
            let e = memo.run(b, body, Class::B64url).end;
            if e - body >= min {
                push(out, det, at, e);
            }
        }
        Det::SlackWebhook => {
            let e = memo.run(b, body, Class::AlnumSlash).end;
            if e - body >= min {
                push(out, det, at, e);
            }
        }
        Det::GoogleKey => {
            let e = memo.run(b, body, Class::B64url).end;
            if e - body == min {
                push(out, det, at, e);
            }
        }
        Det::OpenaiKey => {
            let r = memo.run(b, body, Class::B64url);
            if r.end - body >= min && r.digit_from(body) && r.upper_from(body) {
                let e = r.end;
                push(out, det, at, e);
            }
        }
        Det::Jwt => {
            // header.payload.signature, the payload a JSON object too.
            let e1 = memo.run(b, body, Class::B64url).end;
            if e1 - at < 10 || b.get(e1) != Some(&b'.') {
                return;
            }
            if !b[e1 + 1..].starts_with(b"eyJ") {
                return;
            }
            let e2 = memo.run(b, e1 + 1, Class::B64url).end;
            if e2 - e1 < 10 || b.get(e2) != Some(&b'.') {
                return;
            }
            let e3 = memo.run(b, e2 + 1, Class::B64url).end;
            if e3 - e2 > 8 {
                push(out, det, at, e3);
            }
        }
        Det::PrivateKey => {
            let head_end = memo.run(b, body, Class::UpperSpace).end;
            if !b[head_end..].starts_with(b"-----")
                || !text[body..head_end].ends_with("PRIVATE KEY")
            {
                return;
            }
            let after = head_end + 5;
            // Mask the whole block when its end marker is there.
            // Both searches remembered: repeated headers without an end
            // marker must not each search to the end of the text.
            let end = find_forward(&mut memo.pem_end, text, after, "-----END")
                .and_then(|p| find_forward(&mut memo.dashes, text, p + 8, "-----").map(|q| q + 5))
                .unwrap_or(after);
            push(out, det, at, end);
        }
        _ => {}
    }
}

/// True for values that are placeholders or code, not secrets: the run's
/// suffix from `k` (see [`RunInfo`]) is a mask (`****`, `xxxx`), starts
/// like a template (`$X`, `{{x}}`, `<x>`), holds brackets (a call), or is
/// a plain word without digits or symbols.
fn placeholder(b: &[u8], r: &RunInfo, k: usize) -> bool {
    r.last_unmasked <= k
        || matches!(b.get(k), Some(b'$' | b'{' | b'<' | b'%' | b'*' | b'['))
        || r.last_bracket > k
        || r.last_digit_or_symbol <= k
}

/// Identifier endings that make a longer name a credential's
/// (`AWS_SECRET_ACCESS_KEY`, `SECRET_TOKEN`), after a keyword that does
/// not end the identifier itself.
const CREDENTIAL_TAILS: [&[u8]; 7] = [
    b"key",
    b"token",
    b"secret",
    b"password",
    b"passwd",
    b"pwd",
    b"pass",
];

/// `password = value`, `"api_key": "value"`, `AWS_SECRET_ACCESS_KEY=value`:
/// the keyword (ending an identifier, or followed by more of it ending in
/// `_KEY`, `_TOKEN` ...), an optional closing quote, `:` or `=`, and a value
/// of six characters or more. Reports the value's span.
pub(super) fn assignment(text: &str, kw_end: usize, memo: &mut Memo, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let mut k = kw_end;
    if matches!(b.get(k), Some(b'_' | b'-')) {
        // The rest of the identifier, bounded (names are short).
        let end = (k + 40).min(b.len());
        let mut e = k;
        while e < end && (b[e].is_ascii_alphanumeric() || matches!(b[e], b'_' | b'-')) {
            e += 1;
        }
        let tail = b[k..e]
            .rsplit(|c| matches!(c, b'_' | b'-'))
            .next()
            .unwrap_or_default();
        if e == end
            || !CREDENTIAL_TAILS
                .iter()
                .any(|t| tail.eq_ignore_ascii_case(t))
        {
            return;
        }
        k = e;
    }
    if matches!(b.get(k), Some(b'"' | b'\'')) {
        k += 1;
    }
    k = run(b, k, |c| c == b' ' || c == b'\t');
    if !matches!(b.get(k), Some(b':' | b'=')) {
        return;
    }
    k = run(b, k + 1, |c| c == b' ' || c == b'\t');
    if matches!(b.get(k), Some(b'"' | b'\'')) {
        k += 1;
    }
    let r = memo.run(b, k, Class::Value);
    let e = r.end;
    if e - k >= 6 && !placeholder(b, &r, k) && text.is_char_boundary(e) {
        push(out, Det::PasswordAssign, k, e);
    }
}

/// Passwords in URLs: `scheme://user:password@host`. Reports the password.
pub(super) fn connection_strings(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(p) = text[from..].find("://") {
        let at = from + p;
        from = at + 3;
        let auth_end = run(b, from, |c| {
            !c.is_ascii_whitespace()
                && !matches!(c, b'/' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>')
        });
        let auth = &text[from..auth_end];
        let Some(atsign) = auth.rfind('@') else {
            continue;
        };
        let Some(colon) = auth[..atsign].find(':') else {
            continue;
        };
        let (s, e) = (from + colon + 1, from + atsign);
        if e > s && !placeholder_pw(&b[s..e]) {
            push(out, Det::ConnectionString, s, e);
        }
    }
}

fn placeholder_pw(v: &[u8]) -> bool {
    v.iter().all(|c| *c == b'*' || *c == b'x' || *c == b'X')
        || matches!(v.first(), Some(b'$' | b'{' | b'<' | b'%'))
}

/// A passport number in the 48 bytes after the keyword: six to nine
/// upper-case letters and digits, at least five of them digits.
pub(super) fn passport(text: &str, kw_end: usize, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let limit = (kw_end + 48).min(b.len());
    let mut k = kw_end;
    while k < limit {
        if !(b[k].is_ascii_uppercase() || b[k].is_ascii_digit()) || (k > 0 && word(b[k - 1])) {
            k += 1;
            continue;
        }
        // Ten bytes tell a passport number (six to nine) from a longer run.
        let e = run(&b[..(k + 10).min(b.len())], k, |c| {
            c.is_ascii_uppercase() || c.is_ascii_digit()
        });
        let len = e - k;
        let digits = b[k..e].iter().filter(|c| c.is_ascii_digit()).count();
        if (6..=9).contains(&len) && digits >= 5 && !b.get(e).copied().is_some_and(word) {
            push(out, Det::Passport, k, e);
            return;
        }
        k = e.max(k + 1);
    }
}

/// A US street address ending at a street suffix (` Street`, ` Ave` ...)
/// found at `at`: one to four capitalised words (or an ordinal such as
/// `5th`) before it and a house number of one to six digits before them.
pub(super) fn street(text: &str, at: usize, end: usize, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    // The suffix must be capitalised as listed and end a word (a `.` may
    // follow an abbreviation).
    if !b[at + 1].is_ascii_uppercase() || b.get(end).copied().is_some_and(word) {
        return;
    }
    let mut k = at;
    let mut words = 0;
    loop {
        // k is at the space before the word that follows.
        let mut ws = k;
        while ws > 0 && word(b[ws - 1]) {
            ws -= 1;
        }
        if ws == k {
            return;
        }
        let w = &b[ws..k];
        if w.iter().all(u8::is_ascii_digit) {
            if words > 0 && w.len() <= 6 {
                let mut e = end;
                if b.get(e) == Some(&b'.') {
                    e += 1;
                }
                push(out, Det::UsAddress, ws, e);
            }
            return;
        }
        if ws == 0 || b[ws - 1] != b' ' {
            return;
        }
        let capital = w[0].is_ascii_uppercase() && w[1..].iter().all(u8::is_ascii_lowercase);
        let ordinal = w.len() >= 3
            && w[..w.len() - 2].iter().all(u8::is_ascii_digit)
            && matches!(&w[w.len() - 2..], b"st" | b"nd" | b"rd" | b"th");
        if !(capital || ordinal) || words == 4 {
            return;
        }
        words += 1;
        k = ws - 1;
    }
}

/// Generic high-entropy tokens: runs of 20 to 256 token characters
/// (letters, digits, `_`, `-`, `+`, `/`, `=`) that mix upper case, lower
/// case and digits, switch character class often (unlike identifiers) and
/// carry at least 3.5 bits of entropy per character. Skips spans already
/// reported.
/// `runs` are the candidate runs found by the caller's byte pass (`None`:
/// find them here).
pub(super) fn high_entropy(text: &str, runs: Option<&[(usize, usize)]>, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let tok = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'+' | b'/' | b'=');
    // Candidates are checked against the findings so far only; new ones
    // go to `found` and join `out` at the end, in order.
    let covered = super::Covered::new(out);
    let mut found = Vec::new();
    let mut check = |s: usize, e: usize| {
        let len = e - s;
        if !(20..=256).contains(&len)
            || (s > 0 && b[s - 1] >= 0x80)
            || b.get(e).is_some_and(|c| *c >= 0x80)
            || covered.overlaps(s, e)
        {
            return;
        }
        if looks_random(&b[s..e]) {
            push(&mut found, Det::HighEntropy, s, e);
        }
    };
    if let Some(runs) = runs {
        for (s, e) in runs {
            check(*s, *e);
        }
    } else {
        let mut i = 0;
        while i < b.len() {
            if !tok(b[i]) {
                i += 1;
                continue;
            }
            let s = i;
            let e = run(b, s, tok);
            i = e;
            check(s, e);
        }
    }
    out.append(&mut found);
}

fn class(c: u8) -> u8 {
    if c.is_ascii_uppercase() {
        0
    } else if c.is_ascii_lowercase() {
        1
    } else if c.is_ascii_digit() {
        2
    } else {
        3
    }
}

fn looks_random(t: &[u8]) -> bool {
    let (mut up, mut low, mut dig, mut slash, mut switches) = (0, 0, 0, 0, 0usize);
    let mut prev = 9;
    for c in t {
        let k = class(*c);
        match k {
            0 => up += 1,
            1 => low += 1,
            2 => dig += 1,
            _ => slash += usize::from(*c == b'/'),
        }
        if k != prev {
            switches += 1;
        }
        prev = k;
    }
    if up < 2 || low < 2 || dig < 2 || slash > 1 || switches * 10 < t.len() * 3 {
        return false;
    }
    // Words: identifiers (`ThisIsAName2024`) spend most characters in
    // lower-case runs of three or more; random tokens rarely do.
    let mut in_words = 0;
    let mut run_len = 0;
    for c in t.iter().chain(std::iter::once(&b' ')) {
        if c.is_ascii_lowercase() {
            run_len += 1;
        } else {
            if run_len >= 3 {
                in_words += run_len;
            }
            run_len = 0;
        }
    }
    if in_words * 10 > t.len() * 4 {
        return false;
    }
    let mut hist = [0u16; 128];
    for c in t {
        hist[usize::from(*c & 0x7f)] += 1;
    }
    let n = t.len() as f64;
    let h: f64 = hist
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum();
    h >= 3.5
}
