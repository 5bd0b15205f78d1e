//! Injection signals: text in tool results and tool definitions that is
//! aimed at the model rather than the user. Phrases typical of injected
//! instructions, fake system or chat-template markers, imperative text
//! addressed to the assistant, invisible and tag Unicode characters, and
//! markdown or HTML that would carry data out through an image or link.

use std::ops::Range;

use serde::Serialize;

/// What kind of injection signal was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// Phrasing typical of injected instructions ("ignore previous
    /// instructions", "do not tell the user").
    Phrase,
    /// A fake system, tool or chat-template marker (`<system>`, `[INST]`,
    /// `<|im_start|>`, `### System:`).
    Marker,
    /// Imperative text addressed to the assistant or model.
    Imperative,
    /// Invisible characters: Unicode tags (U+E0000..U+E007F), zero-width
    /// characters, bidirectional controls.
    Invisible,
    /// A markdown or HTML image or link whose URL would carry data out in
    /// its query.
    ExfilLink,
}

impl SignalKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Phrase => "phrase",
            SignalKind::Marker => "marker",
            SignalKind::Imperative => "imperative",
            SignalKind::Invisible => "invisible",
            SignalKind::ExfilLink => "exfil_link",
        }
    }
}

/// One injection signal: its kind, a fixed description and the byte range.
/// Never holds the text itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signal {
    /// The kind of signal.
    pub kind: SignalKind,
    /// A fixed description (the phrase or marker that matched, or what was
    /// found), safe to log.
    pub what: &'static str,
    /// Byte range in the scanned text.
    pub range: Range<usize>,
}

/// Phrases typical of instructions injected into content aimed at an AI
/// agent. Matched case-insensitively. Generic phrasing only: the wording of
/// our own scenario corpus (`scenarios/`) and of public benchmarks is kept
/// out, and the commonest shapes ("ignore ... instructions", "do not tell
/// the user") are recognised by structure ([`dismissal`], [`secrecy`])
/// rather than listed.
pub(super) const PHRASES: [&str; 18] = [
    "ignore the above",
    "ignore all prior",
    "disregard all prior",
    "disregard the above",
    "<important>",
    "without telling the user",
    "do not inform the user",
    "do not mention this",
    "the user must not know",
    "message to the ai",
    "attention ai",
    "ai assistant:",
    "instructions for the assistant",
    "instructions for the ai",
    "system override",
    "you are now in developer mode",
    "your new task is",
    "if you are an ai",
];

/// Verbs that dismiss earlier guidance; a signal when a word for
/// instructions or rules follows in the same clause ([`dismissal`]).
pub(super) const DISMISS: [&str; 6] = [
    "ignore",
    "disregard",
    "forget",
    "override",
    "bypass",
    "set aside",
];

/// Words for the guidance an injection wants dismissed.
const GUIDANCE: [&str; 18] = [
    "instruction",
    "rules",
    "guideline",
    "direction",
    "directive",
    "prompt",
    "guardrail",
    "constraint",
    "restriction",
    "polic",
    "orders",
    "programming",
    "safety",
    "system message",
    "what you were told",
    "task",
    "goal",
    "objective",
];

/// Negations that start hiding something; a signal when a verb of
/// telling and the user follow ([`secrecy`]).
pub(super) const NEGATIONS: [&str; 6] =
    ["do not", "don't", "dont", "never", "without", "no need to"];

const TELLING: [&str; 7] = [
    "tell", "inform", "mention", "notify", "alert", "let", "report",
];
const AUDIENCE: [&str; 7] = [
    "the user",
    "your user",
    "the human",
    "the owner",
    "the operator",
    "your principal",
    "the account holder",
];

/// Fake system, tool and chat-template markers. Matched
/// case-insensitively.
pub(super) const MARKERS: [&str; 21] = [
    "<system>",
    "</system>",
    "<|system|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|assistant|>",
    "<|user|>",
    "<|endoftext|>",
    "[inst]",
    "[/inst]",
    "<<sys>>",
    "### system:",
    "### instruction:",
    "### instructions:",
    "### assistant:",
    "<tool_call>",
    "<function_calls>",
    "</tool_result>",
    "\n\nhuman:",
    "\n\nassistant:",
    "system prompt:",
];

/// Ways of addressing the model. An imperative verb must follow within a
/// short distance for a signal.
pub(super) const ADDRESS: [&str; 16] = [
    "assistant,",
    "assistant:",
    "ai,",
    "ai:",
    "hey ai",
    "hey assistant",
    "to the ai",
    "to the assistant",
    "to the model",
    "attention assistant",
    "ai model",
    "language model",
    "llm,",
    "llm:",
    "claude,",
    "chatgpt,",
];

/// Verbs (and modal phrases) that make addressed text an instruction.
const IMPERATIVES: [&str; 26] = [
    "ignore",
    "disregard",
    "forget",
    "send",
    "forward",
    "email",
    "transfer",
    "delete",
    "remove",
    "execute",
    "run ",
    "call ",
    "invoke",
    "fetch",
    "visit",
    "open ",
    "post ",
    "upload",
    "share",
    "reveal",
    "print",
    "you must",
    "you should",
    "please",
    "immediately",
    "do not",
];

/// Starts of markdown images, links and HTML images (validated by hand).
pub(super) const LINKS: [&str; 3] = ["![", "<img", "]("];

/// Which list an entry of the combined signal automaton comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Src {
    Phrase,
    Marker,
    Address,
    Link,
    Dismiss,
    Secrecy,
    Template,
}

/// Starts of a placeholder as a URL query value (`?d=<summary>`,
/// `?q={data}`, `?k=$SECRET`): a URL template for the model to fill in
/// with data, in plain text as well as in links ([`url_template`]).
pub(super) const TEMPLATES: [&str; 5] = ["=<", "={", "=$", "=%7b", "=%3c"];

/// All literal patterns of the signal automaton, with their list.
pub(super) fn patterns() -> Vec<(&'static str, Src)> {
    PHRASES
        .iter()
        .map(|p| (*p, Src::Phrase))
        .chain(MARKERS.iter().map(|p| (*p, Src::Marker)))
        .chain(ADDRESS.iter().map(|p| (*p, Src::Address)))
        .chain(LINKS.iter().map(|p| (*p, Src::Link)))
        .chain(DISMISS.iter().map(|p| (*p, Src::Dismiss)))
        .chain(NEGATIONS.iter().map(|p| (*p, Src::Secrecy)))
        .chain(TEMPLATES.iter().map(|p| (*p, Src::Template)))
        .collect()
}

/// The lower-cased text from `end` to the end of its clause (a `.`,
/// `!`, `?`, `;` or newline), at most `span` bytes.
fn clause_after(text: &str, end: usize, span: usize) -> Option<String> {
    let b = text.as_bytes();
    if b.get(end).is_some_and(|c| word(*c)) {
        return None;
    }
    let mut limit = (end + span).min(b.len());
    while !text.is_char_boundary(limit) {
        limit -= 1;
    }
    let stop = b[end..limit]
        .iter()
        .position(|c| matches!(c, b'.' | b'!' | b'?' | b';' | b'\n'))
        .map_or(limit, |p| end + p);
    Some(text[end..stop].to_ascii_lowercase())
}

/// A placeholder at `start` that is a query value of a URL: the token it
/// ends (no whitespace, quote or bracket before it, at most 512 bytes
/// back) holds `://` and a `?` or `&` before the `=`.
pub(super) fn url_template(text: &str, start: usize, end: usize) -> Option<Signal> {
    let b = text.as_bytes();
    let from = start.saturating_sub(512);
    let tok = b[from..start]
        .iter()
        .rposition(|c| c.is_ascii_whitespace() || matches!(c, b'"' | b'\'' | b'(' | b'[' | b'<'))
        .map_or(from, |p| from + p + 1);
    let token = &b[tok..start];
    let scheme = memchr::memmem::find(token, b"://")?;
    token[scheme..]
        .iter()
        .rposition(|c| matches!(c, b'?' | b'&'))?;
    Some(Signal {
        kind: SignalKind::ExfilLink,
        what: "URL whose query is a placeholder for data",
        range: tok..end,
    })
}

/// The first occurrence of `w` in `s` that starts a word.
fn find_word_start(s: &str, w: &str) -> Option<usize> {
    let b = s.as_bytes();
    s.match_indices(w)
        .map(|(p, _)| p)
        .find(|&p| p == 0 || !word(b[p - 1]))
}

/// "Ignore / disregard / forget / override ... instructions (rules,
/// guidelines, your prompt ...)" in one clause, however it is worded
/// around that.
pub(super) fn dismissal(text: &str, start: usize, end: usize) -> Option<Signal> {
    if start > 0 && word(text.as_bytes()[start - 1]) {
        return None;
    }
    let clause = clause_after(text, end, 48)?;
    GUIDANCE.iter().find_map(|g| {
        find_word_start(&clause, g).map(|p| Signal {
            kind: SignalKind::Phrase,
            what: "instruction to disregard earlier instructions",
            range: start..end + p + g.len(),
        })
    })
}

/// "Do not / never / without ... tell (inform, mention, notify, let ...
/// know) ... the user" in one clause: hiding an action from the person the
/// agent works for.
pub(super) fn secrecy(text: &str, start: usize, end: usize) -> Option<Signal> {
    if start > 0 && word(text.as_bytes()[start - 1]) {
        return None;
    }
    let clause = clause_after(text, end, 64)?;
    let told = TELLING
        .iter()
        .filter_map(|t| find_word_start(&clause, t))
        .min()?;
    AUDIENCE.iter().find_map(|a| {
        clause[told..].find(a).map(|p| Signal {
            kind: SignalKind::Phrase,
            what: "instruction to keep something from the user",
            range: start..end + told + p + a.len(),
        })
    })
}

fn word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Imperative text after an address at `end`.
pub(super) fn imperative(text: &str, start: usize, end: usize) -> Option<Signal> {
    let b = text.as_bytes();
    if start > 0 && word(b[start - 1]) {
        return None;
    }
    let mut limit = (end + 80).min(b.len());
    while !text.is_char_boundary(limit) {
        limit -= 1;
    }
    let window = text[end..limit].to_ascii_lowercase();
    IMPERATIVES.iter().find_map(|v| {
        window.find(v).and_then(|p| {
            let at = end + p;
            (p == 0 || !word(window.as_bytes()[p - 1])).then_some(Signal {
                kind: SignalKind::Imperative,
                what: "imperative text addressed to the assistant",
                range: start..at + v.len(),
            })
        })
    })
}

/// The searches of [`exfil_link`] across one text, remembered: links are
/// met at increasing positions, so repeated `![`, `](` or `<img` without
/// their ends cost one pass over the text, not one each.
#[derive(Debug, Default)]
pub(super) struct Links {
    /// `(from, found)`: the first `](` at or after `from`.
    close: Option<(usize, Option<usize>)>,
    /// `(from, found)`: the first `>` at or after `from`.
    tag_end: Option<(usize, Option<usize>)>,
    /// `(from, found)`: the first `src=` at or after `from`.
    src: Option<(usize, Option<usize>)>,
    /// The last `[` before `.0` (searched up to there).
    open: (usize, Option<usize>),
    /// The end of the last URL examined: a link starting inside it was
    /// judged as part of that URL.
    url_end: usize,
}

impl Links {
    /// The last `[` before `at`.
    fn open_before(&mut self, text: &str, at: usize) -> Option<usize> {
        let (upto, last) = self.open;
        if at < upto {
            return text[..at].rfind('[');
        }
        let found = memchr::memrchr(b'[', &text.as_bytes()[upto..at]).map(|p| upto + p);
        super::secrets::work::add(at - upto);
        self.open = (at, found.or(last));
        self.open.1
    }
}

/// An image or link starting at `at` whose URL carries data in its query:
/// a placeholder (`{...}`, `<...>`, `$VAR`, `%7B`) in the query, or, for
/// images, a query value of 16 characters or more.
pub(super) fn exfil_link(text: &str, at: usize, which: &str, links: &mut Links) -> Option<Signal> {
    let b = text.as_bytes();
    let (url_start, image) = match which {
        "![" => {
            let close = super::secrets::find_forward(&mut links.close, text, at, "](")? - at;
            if close > 512 {
                return None;
            }
            (at + close + 2, true)
        }
        "](" => {
            // A link, unless it is the tail of an image (handled above).
            let open = links.open_before(text, at)?;
            if open > 0 && b[open - 1] == b'!' {
                return None;
            }
            (at + 2, false)
        }
        _ => {
            let gt = super::secrets::find_forward(&mut links.tag_end, text, at, ">")
                .unwrap_or(text.len());
            let mut tag_end = gt.min(at + 1024);
            while !text.is_char_boundary(tag_end) {
                tag_end -= 1;
            }
            let src = super::secrets::find_forward(&mut links.src, text, at, "src=")? + 4;
            if src > tag_end {
                return None;
            }
            let q = usize::from(src < tag_end && matches!(b[src], b'"' | b'\''));
            (src + q, true)
        }
    };
    if url_start < links.url_end {
        return None;
    }
    let rest = &text[url_start..];
    if !(rest.starts_with("http://") || rest.starts_with("https://") || rest.starts_with("//")) {
        return None;
    }
    let url_end = url_start
        + rest
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>'))
            .unwrap_or(rest.len());
    super::secrets::work::add(url_end - url_start);
    links.url_end = url_end;
    let url = &text[url_start..url_end];
    let query = &url[url.find('?')? + 1..];
    let lower = query.to_ascii_lowercase();
    let placeholder =
        query.contains(['{', '}', '<', '>', '$']) || lower.contains("%7b") || lower.contains("%3c");
    let long_value = query
        .split('&')
        .filter_map(|kv| kv.split_once('=').map(|(_, v)| v))
        .any(|v| v.len() >= 16);
    (placeholder || (image && long_value)).then_some(Signal {
        kind: SignalKind::ExfilLink,
        what: if image {
            "image URL whose query would carry data out"
        } else {
            "link whose query would carry data out"
        },
        range: at..url_end,
    })
}

/// Invisible characters: every Unicode tag character, bidirectional
/// embedding, override and isolate controls, and zero-width characters
/// (three or more; a lone zero-width space is common in copied text). The
/// zero-width joiner is left alone (emoji sequences use it).
pub(super) fn invisible(text: &str) -> Option<Signal> {
    let b = text.as_bytes();
    let mut zw: Option<(usize, usize)> = None;
    let mut zw_count = 0;
    let mut i = 0;
    while let Some(p) = memchr::memchr3(0xE2, 0xEF, 0xF3, &b[i..]) {
        let at = i + p;
        let s = &b[at..];
        let hit = match s {
            [0xF3, 0xA0, 0x80 | 0x81, ..] => {
                Some(("Unicode tag characters (hidden text)", 4, true))
            }
            [0xE2, 0x80, 0xAA..=0xAE, ..] | [0xE2, 0x81, 0xA6..=0xA9, ..] => {
                Some(("bidirectional control characters", 3, true))
            }
            [0xE2, 0x80, 0x8B | 0x8C, ..] | [0xE2, 0x81, 0xA0, ..] => {
                Some(("zero-width characters", 3, false))
            }
            [0xEF, 0xBB, 0xBF, ..] if at > 0 => Some(("zero-width characters", 3, false)),
            _ => None,
        };
        match hit {
            Some((what, len, true)) => {
                return Some(Signal {
                    kind: SignalKind::Invisible,
                    what,
                    range: at..at + len,
                });
            }
            Some((_, len, false)) => {
                zw_count += 1;
                let start = zw.map_or(at, |z| z.0);
                zw = Some((start, at + len));
                if zw_count >= 3 {
                    return Some(Signal {
                        kind: SignalKind::Invisible,
                        what: "zero-width characters",
                        range: start..at + len,
                    });
                }
            }
            None => {}
        }
        i = at + 1;
    }
    None
}
