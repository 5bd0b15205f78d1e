//! Numbers in text: payment cards (Luhn), US SSNs, phone numbers and long
//! digit runs, from one hand-written pass over "numeric spans" (digits with
//! single separators between them). No regex runs here: the shape of a span
//! (its digit groups and separators) and its context decide what it is, so
//! dates, times, versions, IP addresses and glued ids (`ORD-555-123-4567`,
//! `#4471-2231`, UUIDs, git SHAs) are never phones or SSNs.

use super::{Det, Finding};

/// Most digit groups a span keeps; longer spans are split.
const MAX_GROUPS: usize = 8;

/// A numeric span: `+`/`(` prefix, digit groups and separators.
#[derive(Debug, Default)]
struct Span {
    start: usize,
    end: usize,
    plus: bool,
    paren: bool,
    groups: [(u32, u32); MAX_GROUPS],
    n: usize,
    seps: [u8; MAX_GROUPS],
    digits: u32,
}

fn word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// True if the span at `start..end` is glued to a word or id around it
/// (`ORD-555`, `#1234`, `v1.2`, `2024-11-26T10`, `10:30`).
fn glued(b: &[u8], start: usize, end: usize) -> bool {
    let before = start.checked_sub(1).map(|i| b[i]);
    let before2 = start.checked_sub(2).map(|i| b[i]);
    let after = b.get(end).copied();
    let after2 = b.get(end + 1).copied();
    let glue = |c: u8| matches!(c, b'-' | b'.' | b'/' | b':' | b'_' | b'#' | b'=' | b'+');
    before.is_some_and(|c| word(c) || c == b'#' || c == b'$' || c == b'%')
        || (before.is_some_and(glue) && before2.is_some_and(word))
        || after.is_some_and(|c| word(c) || c == b'%')
        || (after.is_some_and(glue) && after2.is_some_and(|c| c.is_ascii_alphanumeric()))
}

/// Scans `text` for numeric findings and appends them to `out`, visiting
/// every digit byte by byte. The detectors' fused pass calls [`at`] on
/// digit-run starts instead; this is the reference it is tested against.
#[cfg(test)]
pub(super) fn scan(text: &str, ssn_near: &dyn Fn(usize) -> bool, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // Jump to the next digit.
        match b[i..].iter().position(u8::is_ascii_digit) {
            Some(p) => i += p,
            None => return,
        }
        i = at(text, i, ssn_near, out);
    }
}

/// [`at`] for the digit run `i..k` (`k` its end): a run of fewer than
/// eight digits that no separator continues is nothing, which most numbers
/// in prose are, so the span is not built for them.
#[inline(always)]
pub(super) fn at_run(
    text: &str,
    i: usize,
    k: usize,
    ssn_near: &dyn Fn(usize) -> bool,
    out: &mut Vec<Finding>,
) -> usize {
    let b = text.as_bytes();
    let digit = |j: usize| b.get(j).is_some_and(u8::is_ascii_digit);
    let continues = match b.get(k) {
        Some(b' ') => digit(k + 1) || b.get(k + 1) == Some(&b'('),
        Some(b'-' | b'.' | b'/') => digit(k + 1),
        Some(b')') => true,
        _ => false,
    };
    if !continues && k - i < 8 {
        return k;
    }
    at(text, i, ssn_near, out)
}

/// Reads the numeric span whose first digit is at `i`, appends what it is
/// (if anything) to `out` and returns where scanning resumes: past the
/// span, never inside a digit run. `ssn_near` tells whether an SSN keyword
/// sits shortly before a byte offset (for bare nine-digit runs).
#[inline(never)]
pub(super) fn at(
    text: &str,
    i: usize,
    ssn_near: &dyn Fn(usize) -> bool,
    out: &mut Vec<Finding>,
) -> usize {
    let b = text.as_bytes();
    let mut sp = Span {
        start: i,
        ..Span::default()
    };
    if i > 0 && b[i - 1] == b'+' {
        sp.plus = true;
        sp.start = i - 1;
    } else if i > 0 && b[i - 1] == b'(' {
        sp.paren = true;
        sp.start = i - 1;
    }
    if sp.start > 0 && b[sp.start - 1] == b'+' && sp.paren {
        sp.plus = true;
        sp.start -= 1;
    }
    let mut k = i;
    let mut open = sp.paren;
    loop {
        let g = k;
        while k < b.len() && b[k].is_ascii_digit() {
            k += 1;
        }
        sp.groups[sp.n] = (g as u32, k as u32);
        sp.digits += (k - g) as u32;
        sp.n += 1;
        if sp.n == MAX_GROUPS {
            break;
        }
        let at = |j: usize| b.get(j).copied().unwrap_or(0);
        let digit = |j: usize| at(j).is_ascii_digit();
        // A separator followed by a digit continues the span, and so do
        // `) ` after an area code and ` (` before one.
        let (sep, skip) = match (at(k), at(k + 1)) {
            (b')', c @ (b' ' | b'-' | b'.')) if open && digit(k + 2) => {
                open = false;
                (c, 2)
            }
            (b')', _) if open && digit(k + 1) => {
                open = false;
                (b' ', 1)
            }
            (c @ (b' ' | b'-' | b'.' | b'/'), _) if !open && digit(k + 1) => (c, 1),
            (b' ', b'(') if !sp.paren && digit(k + 2) => {
                open = true;
                sp.paren = true;
                (b' ', 2)
            }
            _ => (0, 0),
        };
        if sep == 0 {
            if open && at(k) == b')' {
                k += 1;
            }
            break;
        }
        sp.seps[sp.n - 1] = sep;
        k += skip;
    }
    sp.end = k;
    // Every numeric detector needs eight digits or more (the shortest is a
    // long number or an E.164 phone), so most numbers in prose (dates,
    // amounts, counts) stop here.
    if sp.digits >= 8 {
        classify(text, &sp, ssn_near, out);
    }
    k.max(i + 1)
}

fn group<'t>(text: &'t str, sp: &Span, g: usize) -> &'t str {
    let (s, e) = sp.groups[g];
    &text[s as usize..e as usize]
}

fn lens(sp: &Span) -> impl Iterator<Item = u32> + '_ {
    sp.groups[..sp.n].iter().map(|(s, e)| e - s)
}

fn classify(text: &str, sp: &Span, ssn_near: &dyn Fn(usize) -> bool, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let first = sp.groups[0].0 as usize;
    let last = sp.groups[sp.n - 1].1 as usize;
    let is_glued = glued(b, sp.start, sp.end);
    let seps = &sp.seps[..sp.n - 1];
    let same_sep = seps.windows(2).all(|w| w[0] == w[1]);
    let mut shape_buf = [0u32; MAX_GROUPS];
    for (d, l) in shape_buf.iter_mut().zip(lens(sp)) {
        *d = l;
    }
    let shape = &shape_buf[..sp.n];
    let push = |out: &mut Vec<Finding>, det: Det, s: usize, e: usize| {
        out.push(Finding {
            kind: det.kind(),
            detector: det as u16,
            range: s..e,
        });
    };
    if !is_glued {
        // Payment cards: 13 to 19 digits in the usual groupings, Luhn.
        let card_shape = sp.n == 1
            || (same_sep
                && !seps.contains(&b'.')
                && !seps.contains(&b'/')
                && (shape[..sp.n - 1].iter().all(|l| *l == 4)
                    || shape == [4, 6, 5]
                    || shape == [4, 6, 4]));
        if !sp.plus
            && !sp.paren
            && card_shape
            && (13..=19).contains(&sp.digits)
            && matches!(b[first], b'2'..=b'6')
            && luhn_digits(&text[first..last])
        {
            push(out, Det::Card, first, last);
            return;
        }
        // US SSN: AAA-GG-SSSS with the never-issued ranges excluded, or a
        // bare nine-digit run right after an SSN keyword.
        let ssn_shape = (shape == [3, 2, 4] && same_sep && matches!(seps[0], b'-' | b' '))
            || (shape == [9] && ssn_near(first));
        if !sp.plus && !sp.paren && ssn_shape {
            let d: Vec<u8> = text[first..last]
                .bytes()
                .filter(u8::is_ascii_digit)
                .collect();
            if ssn_valid(&d) {
                push(out, Det::Ssn, first, last);
                return;
            }
        }
        if phone_shape(text, sp, shape, seps) {
            push(out, Det::Phone, sp.start, sp.end);
            return;
        }
    }
    // Long digit runs (account numbers, ids) with word boundaries.
    for g in 0..sp.n {
        let (s, e) = sp.groups[g];
        let (s, e) = (s as usize, e as usize);
        let len = e - s;
        let before_ok = s == 0 || !word(b[s - 1]);
        let after_ok = e >= b.len() || !word(b[e]);
        if (8..=19).contains(&len) && before_ok && after_ok {
            push(out, Det::LongNumber, s, e);
        }
    }
}

fn phone_shape(text: &str, sp: &Span, shape: &[u32], seps: &[u8]) -> bool {
    let g0 = group(text, sp, 0).as_bytes();
    if sp.plus {
        // E.164: + country code and 8 to 15 digits in all.
        return (8..=15).contains(&sp.digits) && g0[0] != b'0' && !seps.contains(&b'/');
    }
    if seps.contains(&b'/') {
        // `089/1234567` (German style) only.
        return sp.n == 2 && g0[0] == b'0' && (3..=5).contains(&shape[0]) && shape[1] >= 5;
    }
    // North American: (AAA) EEE-NNNN, AAA-EEE-NNNN, AAA.EEE.NNNN, and with a
    // leading 1.
    let nanp = |a: usize| {
        let area = group(text, sp, a).as_bytes();
        let exch = group(text, sp, a + 1).as_bytes();
        matches!(area[0], b'2'..=b'9') && matches!(exch[0], b'2'..=b'9')
    };
    if shape == [3, 3, 4] && (sp.paren || seps[0] == seps[1] || seps[0] == b' ') && nanp(0) {
        return true;
    }
    if shape == [1, 3, 3, 4] && g0 == b"1" && seps[1] == seps[2] && nanp(1) {
        return true;
    }
    // National numbers with a trunk 0: `020 7946 0958`, `07700 900123`,
    // `01 23 45 67 89`, `030 1234567`.
    if g0[0] == b'0'
        && g0.get(1).is_some_and(|c| matches!(c, b'1'..=b'9'))
        && (10..=11).contains(&sp.digits)
        && sp.n >= 2
        && shape.iter().all(|l| *l >= 2)
    {
        let all = |c: u8| seps.iter().all(|s| *s == c);
        return all(b' ') || all(b'-') || (shape == [2, 2, 2, 2, 2] && all(b'.'));
    }
    false
}

/// SSN rules: area not 000, 666 or 900-999; group not 00; serial not 0000.
fn ssn_valid(d: &[u8]) -> bool {
    if d.len() != 9 {
        return false;
    }
    let area = &d[0..3];
    area != b"000" && area != b"666" && area[0] != b'9' && &d[3..5] != b"00" && &d[5..9] != b"0000"
}

/// Luhn over the digits of `s` (other bytes ignored), 13 to 19 digits.
pub(super) fn luhn_digits(s: &str) -> bool {
    let mut sum = 0u32;
    let mut n = 0usize;
    for c in s.bytes().rev() {
        if !c.is_ascii_digit() {
            continue;
        }
        let mut v = u32::from(c - b'0');
        if n % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
        n += 1;
    }
    (13..=19).contains(&n) && sum.is_multiple_of(10)
}
