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
    k
}

fn alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

fn b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// Validates a token prefix found at `at`.
pub(super) fn hint(text: &str, at: usize, which: usize, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let (prefix, det, min) = HINTS[which];
    let body = at + prefix.len();
    if det != Det::PrivateKey && det != Det::SlackWebhook && at > 0 && word(b[at - 1]) {
        return;
    }
    match det {
        Det::AwsKey => {
            let e = run(b, body, |c| c.is_ascii_uppercase() || c.is_ascii_digit());
            if e - body == min && !b.get(e).copied().is_some_and(word) {
                push(out, det, at, e);
            }
        }
        Det::GithubToken | Det::StripeKey => {
            let e = run(b, body, |c| alnum(c) || c == b'_');
            if e - body >= min {
                push(out, det, at, e);
            }
        }
        Det::GitlabToken | Det::SlackToken => {
            let e = run(b, body, b64url);
            if e - body >= min {
                push(out, det, at, e);
            }
        }
        Det::SlackWebhook => {
            let e = run(b, body, |c| alnum(c) || c == b'/');
            if e - body >= min {
                push(out, det, at, e);
            }
        }
        Det::GoogleKey => {
            let e = run(b, body, b64url);
            if e - body == min {
                push(out, det, at, e);
            }
        }
        Det::OpenaiKey => {
            let e = run(b, body, b64url);
            let t = &b[body..e];
            if t.len() >= min
                && t.iter().any(u8::is_ascii_digit)
                && t.iter().any(u8::is_ascii_uppercase)
            {
                push(out, det, at, e);
            }
        }
        Det::Jwt => {
            // header.payload.signature, the payload a JSON object too.
            let e1 = run(b, body, b64url);
            if e1 - at < 10 || b.get(e1) != Some(&b'.') {
                return;
            }
            if !b[e1 + 1..].starts_with(b"eyJ") {
                return;
            }
            let e2 = run(b, e1 + 1, b64url);
            if e2 - e1 < 10 || b.get(e2) != Some(&b'.') {
                return;
            }
            let e3 = run(b, e2 + 1, b64url);
            if e3 - e2 > 8 {
                push(out, det, at, e3);
            }
        }
        Det::PrivateKey => {
            let head_end = run(b, body, |c| c.is_ascii_uppercase() || c == b' ');
            if !b[head_end..].starts_with(b"-----")
                || !text[body..head_end].ends_with("PRIVATE KEY")
            {
                return;
            }
            let after = head_end + 5;
            // Mask the whole block when its end marker is there.
            let end = text[after..]
                .find("-----END")
                .and_then(|p| {
                    let s = after + p + 8;
                    text[s..].find("-----").map(|q| s + q + 5)
                })
                .unwrap_or(after);
            push(out, det, at, end);
        }
        _ => {}
    }
}

/// True for values that are placeholders or code, not secrets.
fn placeholder(v: &[u8]) -> bool {
    v.iter()
        .all(|c| *c == b'*' || *c == b'x' || *c == b'X' || *c == b'.')
        || matches!(v.first(), Some(b'$' | b'{' | b'<' | b'%' | b'*' | b'['))
        || v.iter().any(|c| matches!(c, b'(' | b')' | b'[' | b']'))
        || !v
            .iter()
            .any(|c| c.is_ascii_digit() || !c.is_ascii_alphanumeric() && *c != b'_' && *c != b'.')
}

/// `password = value`, `"api_key": "value"`: the keyword (ending an
/// identifier), an optional closing quote, `:` or `=`, and a value of six
/// characters or more. Reports the value's span.
pub(super) fn assignment(text: &str, kw_end: usize, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let mut k = kw_end;
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
    let e = run(b, k, |c| {
        !c.is_ascii_whitespace() && !matches!(c, b'"' | b'\'' | b',' | b';' | b'}' | b'&')
    });
    if e - k >= 6 && !placeholder(&b[k..e]) && text.is_char_boundary(e) {
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
        let e = run(b, k, |c| c.is_ascii_uppercase() || c.is_ascii_digit());
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
