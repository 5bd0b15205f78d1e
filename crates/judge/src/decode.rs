//! Seeing through the encodings a model applies before data leaves.
//!
//! Owns: [`Encoding`] and [`views`], which turns one argument string into
//! the decoded texts it may be hiding (base64, hex, percent/URL escapes,
//! HTML entities, reversed text, characters spread out with separators),
//! so that the provenance of the decoded text can be looked up like that
//! of plain text.
//!
//! Cost: a cheap pre-check decides whether a string could be encoded at
//! all (a run of 24 or more base64 or hex characters, a `%XX` escape, an
//! `&...;` entity, a reversed top-level domain or function word, many
//! single characters between separators); ordinary prose and short values
//! stop there. Decoding is bounded: a few views per string, each at most
//! [`MAX_VIEW`] bytes, and one more layer on top of a decoded view
//! (base64 of percent-escaped text, a URL whose query holds base64).

use std::sync::LazyLock;

use memchr::memmem;

/// An encoding seen through, as a bit in a small set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Base64 (standard or URL-safe, padded or not).
    Base64,
    /// Hexadecimal bytes.
    Hex,
    /// Percent (URL) escapes.
    Percent,
    /// HTML character references (`&#64;`, `&#x40;`, `&commat;`).
    Html,
    /// The text reversed.
    Reversed,
    /// Characters spread out with a separator (`D-E-8-9`, `m a r i a`).
    Separated,
}

impl Encoding {
    const ALL: [Encoding; 6] = [
        Encoding::Base64,
        Encoding::Hex,
        Encoding::Percent,
        Encoding::Html,
        Encoding::Reversed,
        Encoding::Separated,
    ];

    /// The encoding's bit.
    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Base64 => "base64",
            Encoding::Hex => "hex",
            Encoding::Percent => "percent-encoding",
            Encoding::Html => "HTML entities",
            Encoding::Reversed => "reversal",
            Encoding::Separated => "separators",
        }
    }

    /// The names of the encodings in a bit set, outermost last, joined
    /// with `+`.
    pub(crate) fn names(bits: u8) -> String {
        let mut s = String::new();
        for e in Encoding::ALL {
            if bits & e.bit() != 0 {
                if !s.is_empty() {
                    s.push('+');
                }
                s.push_str(e.as_str());
            }
        }
        s
    }
}

/// Most bytes of one decoded view.
pub(crate) const MAX_VIEW: usize = 16 * 1024;
/// Most views of one string (all layers).
const MAX_VIEWS: usize = 6;
/// Shortest run of base64 or hex characters worth decoding: 24 base64
/// characters are 18 bytes, about one e-mail address.
const MIN_RUN: usize = 24;

/// One decoded view of a string: the text and the encodings undone to
/// get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct View {
    pub text: String,
    pub via: u8,
}

/// The decoded views of `s` (none for text that shows no sign of an
/// encoding), appended to `out`.
pub(crate) fn views(s: &str, out: &mut Vec<View>) {
    let start = out.len();
    layer(s, 0, out);
    // One more layer on top of each first-layer view.
    let first = out.len();
    for i in start..first {
        if out.len() - start >= MAX_VIEWS {
            break;
        }
        let View { text, via } = out[i].clone();
        let mut more = Vec::new();
        layer(&text, via, &mut more);
        for v in more {
            if out.len() - start >= MAX_VIEWS {
                break;
            }
            out.push(v);
        }
    }
}

/// What the pre-check saw.
#[derive(Debug, Default)]
struct Signs {
    percent: bool,
    entity: bool,
    /// Base64 runs (start, end, all hex) of at least `MIN_RUN` bytes.
    runs: Vec<(usize, usize, bool)>,
    /// Single characters between two equal separators.
    singles: usize,
}

/// Byte classes of the precise pass.
const B64: u8 = 1;
const HEX: u8 = 2;
const SEP: u8 = 4;
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = match c {
            b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => B64 | HEX,
            b'g'..=b'z' | b'G'..=b'Z' | b'+' | b'/' => B64,
            b'-' | b'_' => B64 | SEP,
            b' ' | b'.' | b',' | b'|' | b'\t' => SEP,
            _ => 0,
        };
        i += 1;
    }
    t
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether `s` could hold an encoding at all, eight bytes at a time:
/// two aligned words in a row without whitespace (a run of 16 bytes or
/// more: base64, hex, a long URL), three words of four spaces or more
/// (`m a r i a`), a `%XX` escape, an `&...;` entity or a reversed domain
/// or function word. Prose answers no after one pass of a few
/// instructions per word.
fn maybe_encoded(b: &[u8]) -> (bool, bool) {
    let (mut dense, mut spread) = (false, false);
    let (mut prev_solid, mut spaced) = (false, 0u32);
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        let x = u64::from_le_bytes(a);
        // A byte below 0x21 (space, tab, newline) sets its high bit here
        // (bytes of 0x80 and above are not whitespace and may set it
        // too, which only makes a word look less solid).
        let ws = x.wrapping_sub(ONES * 0x21) & !x & HIGHS;
        let solid = ws == 0;
        if solid && prev_solid {
            dense = true;
            break;
        }
        prev_solid = solid;
        if ws.count_ones() >= 4 {
            spaced += 1;
            if spaced >= 3 {
                spread = true;
            }
        }
    }
    if !dense && chunks.remainder().len() >= 8 {
        dense = true;
    }
    (dense, spread)
}

/// The cheap signs of `s`: `None` when nothing hints at an encoding.
fn signs(s: &str) -> Option<Signs> {
    let b = s.as_bytes();
    let mut sg = Signs::default();
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'%', &b[i..]) {
        let at = i + p;
        if b.len() > at + 2 && b[at + 1].is_ascii_hexdigit() && b[at + 2].is_ascii_hexdigit() {
            sg.percent = true;
            break;
        }
        i = at + 1;
    }
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'&', &b[i..]) {
        let at = i + p;
        let tail = &b[at + 1..b.len().min(at + 12)];
        if tail
            .first()
            .is_some_and(|c| *c == b'#' || c.is_ascii_alphabetic())
            && tail.contains(&b';')
        {
            sg.entity = true;
            break;
        }
        i = at + 1;
    }
    let (dense, spread) = maybe_encoded(b);
    if dense || spread {
        precise(b, &mut sg);
    }
    // Spread-out text has a single character every two or three bytes;
    // prose has a few (`a`, `I`).
    if sg.singles < 8 || sg.singles * 8 < b.len() {
        sg.singles = 0;
    }
    (sg.percent || sg.entity || !sg.runs.is_empty() || sg.singles > 0).then_some(sg)
}

/// Runs of base64 characters (a `=` only as trailing padding) and single
/// characters between equal separators, byte by byte.
fn precise(b: &[u8], sg: &mut Signs) {
    let (mut run, mut hex) = (0usize, true);
    let mut k = 0;
    while k <= b.len() {
        let c = b.get(k).map_or(0, |c| CLASS[usize::from(*c)]);
        if c & SEP != 0 && k >= 2 && b[k - 2] == b[k] && b[k - 1].is_ascii_alphanumeric() {
            sg.singles += 1;
        }
        if c & B64 != 0 {
            run += 1;
            hex &= c & HEX != 0;
            k += 1;
            continue;
        }
        let mut end = k;
        while b.get(end) == Some(&b'=') && end - k < 2 {
            end += 1;
        }
        if run >= MIN_RUN && sg.runs.len() < 8 {
            sg.runs.push((k - run, end, hex));
        }
        run = 0;
        hex = true;
        // Padding ends a run; the byte after it may start the next one.
        k = if end > k { end } else { k + 1 };
    }
}

fn layer(s: &str, via: u8, out: &mut Vec<View>) {
    if s.len() < 8 {
        return;
    }
    let sg = signs(s);
    let reversed = via & Encoding::Reversed.bit() == 0 && looks_reversed(s);
    let Some(sg) = sg.or_else(|| reversed.then(Signs::default)) else {
        return;
    };
    let push = |text: String, e: Encoding, out: &mut Vec<View>| {
        if !text.is_empty() && text != s && out.len() < MAX_VIEWS {
            out.push(View {
                text,
                via: via | e.bit(),
            });
        }
    };
    if sg.percent && via & Encoding::Percent.bit() == 0 {
        push(percent_decode(s), Encoding::Percent, out);
    }
    if sg.entity && via & Encoding::Html.bit() == 0 {
        push(html_decode(s), Encoding::Html, out);
    }
    for &(a, e, hex) in &sg.runs {
        let run = &s[a..e];
        let decoded = if hex && run.len().is_multiple_of(2) {
            hex_decode(run).map(|t| (t, Encoding::Hex))
        } else {
            None
        };
        if let Some((t, enc)) =
            decoded.or_else(|| base64_decode(run).map(|t| (t, Encoding::Base64)))
        {
            push(t, enc, out);
        }
    }
    if reversed {
        push(
            s.chars().rev().take(MAX_VIEW).collect(),
            Encoding::Reversed,
            out,
        );
    }
    if via & Encoding::Separated.bit() == 0 && sg.singles > 0 {
        push(unspread(s), Encoding::Separated, out);
    }
}

/// Reversed top-level domains and function words: a reversed address
/// ends `moc.`-first, reversed prose is full of ` eht ` and ` dna `.
static REVERSED: LazyLock<[memmem::Finder<'static>; 6]> = LazyLock::new(|| {
    [
        memmem::Finder::new("moc."),
        memmem::Finder::new("gro."),
        memmem::Finder::new("ten."),
        memmem::Finder::new(" eht "),
        memmem::Finder::new(" dna "),
        memmem::Finder::new(" fo "),
    ]
});

fn looks_reversed(s: &str) -> bool {
    let b = s.as_bytes();
    REVERSED.iter().any(|f| f.find(b).is_some())
}

fn hexval(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Text from decoded bytes: valid UTF-8 (lossy for a stray byte or two)
/// and mostly printable, else `None` (random bytes, binary, a hash that
/// merely looks like hex).
fn printable(bytes: Vec<u8>) -> Option<String> {
    if bytes.len() < 6 {
        return None;
    }
    let ok = bytes
        .iter()
        .filter(|c| matches!(c, b'\t' | b'\n' | b'\r' | 0x20..=0x7e | 0x80..))
        .count();
    if ok * 100 < bytes.len() * 95 {
        return None;
    }
    let text = String::from_utf8(bytes).ok()?;
    // Random bytes that happen to be valid UTF-8 are mostly non-ASCII.
    let ascii_letters = text.bytes().filter(u8::is_ascii_alphanumeric).count();
    (ascii_letters * 2 >= text.len()).then_some(text)
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len().min(MAX_VIEW));
    let mut i = 0;
    while i < b.len() && out.len() < MAX_VIEW {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hexval),
                b.get(i + 2).copied().and_then(hexval),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn html_decode(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_VIEW));
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        if out.len() >= MAX_VIEW {
            break;
        }
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        let end = rest[..rest.len().min(12)].find(';');
        let decoded = end.and_then(|e| entity(&rest[1..e]).map(|c| (c, e)));
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(name: &str) -> Option<char> {
    if let Some(n) = name.strip_prefix('#') {
        let v = match n.strip_prefix(['x', 'X']) {
            Some(h) => u32::from_str_radix(h, 16).ok()?,
            None => n.parse().ok()?,
        };
        return char::from_u32(v);
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "commat" => '@',
        "period" => '.',
        "colon" => ':',
        "sol" => '/',
        "comma" => ',',
        "hyphen" | "dash" => '-',
        "lowbar" => '_',
        "num" => '#',
        "percnt" => '%',
        "equals" => '=',
        "quest" => '?',
        "excl" => '!',
        "plus" => '+',
        _ => return None,
    })
}

fn hex_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let n = (b.len() / 2).min(MAX_VIEW);
    let mut out = Vec::with_capacity(n);
    for pair in b.chunks_exact(2).take(n) {
        out.push(hexval(pair[0])? << 4 | hexval(pair[1])?);
    }
    printable(out)
}

fn b64val(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Decodes standard or URL-safe base64, with or without padding.
pub(crate) fn base64_decode(s: &str) -> Option<String> {
    let body = s.trim_end_matches('=').as_bytes();
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity((body.len() * 3 / 4).min(MAX_VIEW));
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in body {
        acc = acc << 6 | u32::from(b64val(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
            if out.len() >= MAX_VIEW {
                break;
            }
        }
    }
    printable(out)
}

/// The text without the separator that spreads its characters out: the
/// most common separator between single characters is removed.
fn unspread(s: &str) -> String {
    let b = s.as_bytes();
    let seps = [b' ', b'.', b',', b'|', b'\t', b'-', b'_'];
    let mut counts = [0usize; 7];
    for w in b.windows(3) {
        if CLASS[usize::from(w[0])] & SEP == 0
            && CLASS[usize::from(w[2])] & SEP == 0
            && let Some(i) = seps.iter().position(|x| *x == w[1])
        {
            counts[i] += 1;
        }
    }
    let (best, _) = counts
        .iter()
        .enumerate()
        .max_by_key(|(_, c)| **c)
        .unwrap_or((0, &0));
    let sep = seps[best];
    // A run of two separators (`m a r i a  k e l l e r`) marks a word gap.
    let mut out = String::with_capacity(s.len().min(MAX_VIEW));
    let mut prev_sep = false;
    for c in s.chars().take(MAX_VIEW) {
        if c as u32 == u32::from(sep) {
            if prev_sep {
                out.push(' ');
            }
            prev_sep = true;
            continue;
        }
        prev_sep = false;
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
