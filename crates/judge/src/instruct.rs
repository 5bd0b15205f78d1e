//! Instruction-following: does a call do what untrusted text asked for?
//!
//! Owns: action kinds ([`SEND`], [`PAY`], [`DELETE`], [`GRANT`]), the kinds
//! a tool's labels perform ([`tool_kinds`]), requests for actions found in
//! untrusted text ([`requests`], [`asked_fps`]) and the kinds a user's
//! request names ([`intent_kinds`]).
//!
//! The signal does not depend on how an injection is worded. A result
//! labelled untrusted (a web page, an inbound mail, a ticket) is searched
//! for verbs that name a kind of action (send, forward, mail, post, pay,
//! transfer, delete, invite ...), used as requests rather than statements:
//! not after a subject or auxiliary that makes them a report (`we sent`,
//! `will send`, `has been paid`, `do not send`) and not as a label
//! (`Email: ...`). The values that follow such a verb in the same
//! sentence (addresses, URLs, accounts, paths, `#12`-style references,
//! amounts) and the text that follows it in the same paragraph (a
//! payload) are marked in provenance as *asked for that kind of action*.
//! A later call of the same kind whose destination, object, amount or
//! payload carries such a value did what the text asked. English verbs
//! only; obfuscated addresses and requests phrased without a verb
//! ("the list is expected at x@y") are not seen (see the tests).

use std::ops::Range;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use crate::detect::Finding;
use crate::fingerprint::{self, Extract, Fp, FpKind};
use crate::label::{Label, LabelSet};

/// Sending or publishing something to a party.
pub(crate) const SEND: u8 = 1;
/// Moving money.
pub(crate) const PAY: u8 = 2;
/// Deleting or destroying.
pub(crate) const DELETE: u8 = 4;
/// Granting or removing access.
pub(crate) const GRANT: u8 = 8;

/// The kinds of action a tool with `labels` performs.
pub(crate) fn tool_kinds(labels: LabelSet) -> u8 {
    let mut k = 0;
    if labels.contains(Label::Egress) {
        k |= SEND;
    }
    if labels.contains(Label::Money) {
        k |= PAY;
    }
    if labels.contains(Label::Destructive) {
        k |= DELETE;
    }
    if labels.contains(Label::Identity) {
        k |= GRANT;
    }
    k
}

/// The names of the kinds in a set, for messages.
pub(crate) fn kind_names(kinds: u8) -> String {
    let mut out = Vec::new();
    for (bit, name) in [
        (SEND, "send"),
        (PAY, "pay"),
        (DELETE, "delete"),
        (GRANT, "grant access"),
    ] {
        if kinds & bit != 0 {
            out.push(name);
        }
    }
    out.join("/")
}

/// Verbs in their base (imperative) form, with the kinds they name.
const VERBS: &[(&str, u8)] = &[
    ("send", SEND | PAY),
    ("forward", SEND),
    ("mail", SEND),
    ("email", SEND),
    ("e-mail", SEND),
    ("reply", SEND),
    ("respond", SEND),
    ("cc", SEND),
    ("bcc", SEND),
    ("post", SEND),
    ("upload", SEND),
    ("submit", SEND),
    ("deliver", SEND),
    ("transmit", SEND),
    ("notify", SEND),
    ("publish", SEND),
    ("tweet", SEND),
    ("broadcast", SEND),
    ("export", SEND),
    ("share", SEND | GRANT),
    ("write to", SEND),
    ("pass on", SEND),
    ("pass along", SEND),
    ("loop in", SEND | GRANT),
    ("pay", PAY),
    ("transfer", PAY | SEND),
    ("wire", PAY),
    ("remit", PAY),
    ("refund", PAY),
    ("deposit", PAY),
    ("reimburse", PAY),
    ("settle", PAY),
    ("donate", PAY),
    ("credit", PAY),
    ("top up", PAY),
    ("delete", DELETE),
    ("remove", DELETE | GRANT),
    ("erase", DELETE),
    ("wipe", DELETE),
    ("purge", DELETE),
    ("drop", DELETE),
    ("destroy", DELETE),
    ("clear", DELETE),
    ("empty", DELETE),
    ("trash", DELETE),
    ("discard", DELETE),
    ("shred", DELETE),
    ("truncate", DELETE),
    ("clean up", DELETE),
    ("get rid of", DELETE),
    ("invite", GRANT),
    ("add", GRANT),
    ("grant", GRANT),
    ("give", GRANT),
    ("promote", GRANT),
    ("authorize", GRANT),
    ("authorise", GRANT),
    ("elevate", GRANT),
    ("assign", GRANT),
    ("allow", GRANT),
    ("admit", GRANT),
    ("revoke", GRANT),
    ("kick", GRANT),
];

/// Past participles: a request only in the passive after `be` ("must be
/// sent to", "should be paid into").
const PARTICIPLES: &[(&str, u8)] = &[
    ("sent", SEND | PAY),
    ("forwarded", SEND),
    ("mailed", SEND),
    ("emailed", SEND),
    ("posted", SEND),
    ("uploaded", SEND),
    ("submitted", SEND),
    ("delivered", SEND),
    ("shared", SEND | GRANT),
    ("exported", SEND),
    ("paid", PAY),
    ("transferred", PAY | SEND),
    ("wired", PAY),
    ("refunded", PAY),
    ("deposited", PAY),
    ("deleted", DELETE),
    ("removed", DELETE | GRANT),
    ("erased", DELETE),
    ("wiped", DELETE),
    ("purged", DELETE),
    ("invited", GRANT),
    ("added", GRANT),
    ("granted", GRANT),
    ("given", GRANT),
];

/// Words that, right before a verb, make it a statement about what
/// someone did or will do, or a prohibition, rather than a request.
const NOT_A_REQUEST: &[&str] = &[
    "i", "we", "they", "he", "she", "it", "who", "will", "would", "ll", "shall", "did", "does",
    "was", "were", "is", "are", "am", "has", "have", "had", "been", "ve", "d", "not", "never", "t",
    "already", "cannot", "can't", "won't", "don't", "didn't", "the", "a", "an", "your", "our",
    "my", "this", "that", "their", "his", "her", "its", "no",
];

struct Lexicon {
    ac: AhoCorasick,
    /// Kinds of each pattern, and whether it is a participle.
    kinds: Vec<(u8, bool)>,
}

static LEXICON: LazyLock<Option<Lexicon>> = LazyLock::new(|| {
    let pats: Vec<&str> = VERBS
        .iter()
        .chain(PARTICIPLES.iter())
        .map(|(v, _)| *v)
        .collect();
    let kinds = VERBS
        .iter()
        .map(|(_, k)| (*k, false))
        .chain(PARTICIPLES.iter().map(|(_, k)| (*k, true)))
        .collect();
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostLongest)
        .build(pats)
        .ok()
        .map(|ac| Lexicon { ac, kinds })
});

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The word before byte `at` (lower-cased ASCII, at most 12 bytes), and
/// whether a clause boundary (`.`, `:`, `;`, `!`, `?`, a newline, `"`)
/// lies between it and `at`.
fn previous_word(b: &[u8], at: usize) -> (String, bool) {
    let mut i = at;
    let mut boundary = false;
    while i > 0 && !is_word(b[i - 1]) {
        i -= 1;
        boundary |= matches!(b[i], b'.' | b':' | b';' | b'!' | b'?' | b'\n' | b'"' | b'(');
    }
    let end = i;
    while i > 0 && is_word(b[i - 1]) && end - i < 12 {
        i -= 1;
    }
    (
        String::from_utf8_lossy(&b[i..end]).to_ascii_lowercase(),
        boundary,
    )
}

/// One request for an action found in text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// The kinds of action asked for.
    pub kinds: u8,
    /// Where its objects may lie: the rest of the sentence after the verb.
    pub objects: Range<usize>,
    /// Where a payload may lie: the rest of the paragraph after the verb.
    pub payload: Range<usize>,
}

/// How far after the verb a request's objects and payload may lie.
const OBJECT_SPAN: usize = 160;
const PAYLOAD_SPAN: usize = 480;
/// Most requests taken from one text.
const MAX_REQUESTS: usize = 16;

/// The requests for actions in `text`, in order.
pub(crate) fn requests(text: &str, out: &mut Vec<Request>) {
    let Some(lex) = LEXICON.as_ref() else {
        return;
    };
    let b = text.as_bytes();
    for m in lex.ac.find_iter(b) {
        if out.len() >= MAX_REQUESTS {
            return;
        }
        let (s, e) = (m.start(), m.end());
        if (s > 0 && is_word(b[s - 1])) || b.get(e).is_some_and(|c| is_word(*c)) {
            continue;
        }
        // `Email: x@y` is a label, `e-mail-address` a compound.
        if matches!(b.get(e), Some(b':' | b'-')) {
            continue;
        }
        let (kinds, participle) = lex.kinds[m.pattern().as_usize()];
        let (prev, boundary) = previous_word(b, s);
        if participle {
            if prev != "be" || boundary {
                continue;
            }
        } else if !boundary && NOT_A_REQUEST.contains(&prev.as_str()) {
            continue;
        }
        out.push(Request {
            kinds,
            objects: e..sentence_end(text, e, OBJECT_SPAN),
            payload: e..paragraph_end(text, e, PAYLOAD_SPAN),
        });
    }
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The end of the sentence that starts before `from`: `. ` before a
/// capital, `! `, `? `, a blank line, or `span` bytes.
fn sentence_end(text: &str, from: usize, span: usize) -> usize {
    let limit = floor_boundary(text, from + span);
    let b = text.as_bytes();
    let mut i = from;
    while i < limit {
        match b[i] {
            b'!' | b'?' if b.get(i + 1).is_none_or(u8::is_ascii_whitespace) => return i,
            b'.' if b.get(i + 1).is_none_or(u8::is_ascii_whitespace) => {
                let mut j = i + 1;
                while j < b.len() && b[j] == b' ' {
                    j += 1;
                }
                if b.get(j)
                    .is_none_or(|c| c.is_ascii_uppercase() || *c == b'\n')
                {
                    return i;
                }
            }
            b'\n' if b.get(i + 1) == Some(&b'\n') => return i,
            _ => {}
        }
        i += 1;
    }
    limit
}

/// The end of the paragraph: a blank line, or `span` bytes.
fn paragraph_end(text: &str, from: usize, span: usize) -> usize {
    let limit = floor_boundary(text, from + span);
    memchr::memmem::find(&text.as_bytes()[from..limit], b"\n\n").map_or(limit, |p| from + p)
}

/// The fingerprint of an amount, in cents.
pub(crate) fn amount_fp(cents: u64) -> Fp {
    Fp {
        hash: fingerprint::hash(FpKind::Amount, cents.to_string().as_bytes()),
        kind: FpKind::Amount,
    }
}

/// An amount as written (`2,400`, `1,980.00`, `1.980,00`, `870`) in
/// cents.
pub(crate) fn parse_amount(s: &str) -> Option<u64> {
    let s = s.trim_matches(|c: char| !c.is_ascii_digit());
    if s.is_empty() || s.len() > 18 {
        return None;
    }
    // The last separator is decimal when one or two digits follow it
    // (`1,980.00`, `12.5`, `1.980,00`), grouping when three do (`2,400`).
    let (int, frac) = match s.rfind(['.', ',']) {
        Some(i) if (1..=2).contains(&(s.len() - i - 1)) => (&s[..i], &s[i + 1..]),
        _ => (s, ""),
    };
    let digits: String = int.chars().filter(char::is_ascii_digit).collect();
    let whole: u64 = digits.parse().ok()?;
    let cents: u64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<u64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    whole.checked_mul(100)?.checked_add(cents)
}

/// The numbers in `text` as amounts.
fn amounts(text: &str, out: &mut Vec<Fp>) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && is_word(b[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len()
            && (b[i].is_ascii_digit()
                || (matches!(b[i], b',' | b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit)))
        {
            i += 1;
        }
        // Long digit runs are accounts and card numbers, not amounts.
        if i - start <= 12
            && !b.get(i).is_some_and(|c| is_word(*c))
            && let Some(c) = parse_amount(&text[start..i])
        {
            out.push(amount_fp(c));
        }
    }
}

/// The fingerprints `text` asks actions for, each with the kinds asked:
/// for every request, the identifiers (detector findings in `found`,
/// tokens, references, amounts) in the rest of its sentence and the
/// shingles of the rest of its paragraph. `found` are the detector
/// findings of `text`.
pub(crate) fn asked_fps(text: &str, found: &[Finding], out: &mut Vec<(Fp, u8)>) {
    let mut reqs = Vec::new();
    requests(text, &mut reqs);
    if reqs.is_empty() {
        return;
    }
    let mut fps: Vec<Fp> = Vec::new();
    let ids = Extract {
        shingles: false,
        values: true,
        cap: 64,
        sample: false,
    };
    let payload = Extract {
        shingles: true,
        values: false,
        cap: 96,
        sample: false,
    };
    for r in &reqs {
        fps.clear();
        // Findings first (an e-mail address and its domain), then the
        // tokens of the sentence (paths, ids).
        for f in found.iter().filter(|f| r.objects.contains(&f.range.start)) {
            fingerprint::from_findings(
                text,
                std::slice::from_ref(f),
                Extract {
                    values: false,
                    ..ids
                },
                &mut fps,
            );
        }
        let sentence = &text[r.objects.clone()];
        fingerprint::from_findings(sentence, &[], ids, &mut fps);
        fingerprint::refs(sentence, &mut fps, 64);
        if r.kinds & PAY != 0 {
            amounts(sentence, &mut fps);
        }
        if r.kinds & SEND != 0 {
            fingerprint::from_findings(&text[r.payload.clone()], &[], payload, &mut fps);
        }
        out.extend(fps.iter().map(|f| (*f, r.kinds)));
        if out.len() >= 256 {
            return;
        }
    }
}

/// Verbs users ask with that outside text rarely uses as a request for
/// the action itself (only read in the trusted intent).
const INTENT_VERBS: &[(&str, u8)] = &[
    ("answer", SEND),
    ("contact", SEND),
    ("message", SEND),
    ("text", SEND),
    ("dm", SEND),
    ("ping", SEND),
    ("tell", SEND),
    ("inform", SEND),
    ("invoice", SEND),
    ("clean", DELETE),
    ("tidy", DELETE),
    ("archive", DELETE),
    ("unsubscribe", DELETE),
    ("buy", PAY),
    ("purchase", PAY),
    ("order", PAY),
    ("book", PAY),
    ("tip", PAY),
    ("onboard", GRANT),
    ("offboard", GRANT),
];

static INTENT_LEXICON: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostLongest)
        .build(INTENT_VERBS.iter().map(|(v, _)| *v))
        .ok()
});

/// The kinds of action a user's request names: any use of a verb of the
/// request lexicon or of a few more a user asks with (`answer`, `tidy`,
/// `buy`), inflected or not (`replies`, `cleaning`): the user's own
/// words are trusted.
pub(crate) fn intent_kinds(intent: &str) -> u8 {
    let b = intent.as_bytes();
    let mut k = 0;
    let starts_word = |s: usize| s == 0 || !is_word(b[s - 1]);
    if let Some(lex) = LEXICON.as_ref() {
        for m in lex.ac.find_iter(b) {
            if starts_word(m.start()) {
                k |= lex.kinds[m.pattern().as_usize()].0;
            }
        }
    }
    if let Some(ac) = INTENT_LEXICON.as_ref() {
        for m in ac.find_iter(b) {
            if starts_word(m.start()) {
                k |= INTENT_VERBS[m.pattern().as_usize()].1;
            }
        }
    }
    k
}

#[cfg(test)]
mod tests;
