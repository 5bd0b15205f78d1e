//! Content inspection: personal data, secrets, operator-defined patterns
//! and injection signals.
//!
//! Owns: [`Detectors`] (compiled once, shared), [`Kind`] (the detector
//! classes an operator assigns actions to), [`Det`] (the built-in
//! detectors), [`Finding`], [`ContentAction`], [`CustomDetectors`] and the
//! injection [`Signal`]s, plus [`inspect_tool_definition`].
//!
//! One fused pass over byte-class masks (`blocks`, eight bytes per step)
//! visits word starts and digit-run starts in order of position: keywords,
//! numbers, the IBAN anchor and high-entropy candidates are validated only
//! there. A literal Aho-Corasick automaton finds token prefixes; e-mail,
//! URL and IBAN use a regex only when their anchor (`@`, `://` or `www.`,
//! two capitals before two digits) is present. Findings carry
//! the detector, the class and the byte range, never the matched text.

mod blocks;
mod definition;
pub(crate) mod fold;
mod keywords;
pub(crate) use keywords::load8;
mod numbers;
mod secrets;
mod signals;

use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexSet};
use serde::Serialize;

use crate::label::Label;

pub(crate) use blocks::{Block, Words, classify_all, digits_and_punct};
pub use definition::{DefinitionFinding, inspect_definition, inspect_tool_definition};
pub use signals::{Signal, SignalKind};

/// A detector class: what the operator assigns an action to.
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
    /// A credential: cloud keys, platform API tokens, private keys, JWTs,
    /// passwords in assignments and connection strings.
    Secret,
    /// A run of 8 to 19 digits (account numbers, ids).
    LongNumber,
    /// A phone number (international or common national formats).
    Phone,
    /// A US social security number.
    Ssn,
    /// A passport number next to the word "passport".
    Passport,
    /// A US street address.
    Address,
    /// A generic high-entropy token (random-looking, 20 characters or more).
    Token,
    /// An operator-defined detector (regex or word list).
    Custom,
}

impl Kind {
    /// Every class.
    pub const ALL: [Kind; 12] = [
        Kind::Email,
        Kind::Url,
        Kind::Iban,
        Kind::Card,
        Kind::Secret,
        Kind::LongNumber,
        Kind::Phone,
        Kind::Ssn,
        Kind::Passport,
        Kind::Address,
        Kind::Token,
        Kind::Custom,
    ];

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Url => "url",
            Kind::Iban => "iban",
            Kind::Card => "card",
            Kind::Secret => "secret",
            Kind::LongNumber => "long_number",
            Kind::Phone => "phone",
            Kind::Ssn => "ssn",
            Kind::Passport => "passport",
            Kind::Address => "address",
            Kind::Token => "token",
            Kind::Custom => "custom",
        }
    }

    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The session label a finding of this class gives when its action is
    /// `label`, `redact` or `block` (custom detectors carry their own).
    pub fn label(self) -> Option<Label> {
        match self {
            Kind::Email | Kind::Phone | Kind::Ssn | Kind::Passport | Kind::Address => {
                Some(Label::Private)
            }
            Kind::Iban | Kind::Card => Some(Label::Financial),
            Kind::Secret | Kind::Token => Some(Label::Secret),
            Kind::Url | Kind::LongNumber => None,
            Kind::Custom => Some(Label::Private),
        }
    }
}

/// The built-in detectors. A [`Finding`]'s `detector` is one of these (as
/// `u16`) or, from [`Det::COUNT`] on, an operator-defined detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Det {
    /// E-mail address.
    Email,
    /// URL.
    Url,
    /// IBAN (mod 97).
    Iban,
    /// Payment card (Luhn).
    Card,
    /// Long digit run.
    LongNumber,
    /// Phone number.
    Phone,
    /// US SSN.
    Ssn,
    /// Passport number after the keyword.
    Passport,
    /// US street address.
    UsAddress,
    /// AWS access key id (`AKIA`, `ASIA`).
    AwsKey,
    /// GitHub token (`ghp_`, `github_pat_` ...).
    GithubToken,
    /// GitLab personal access token (`glpat-`).
    GitlabToken,
    /// Slack token (`xoxb-` ...).
    SlackToken,
    /// Slack incoming webhook URL.
    SlackWebhook,
    /// Stripe secret or restricted key.
    StripeKey,
    /// Google API key (`AIza`).
    GoogleKey,
    /// OpenAI-style key (`sk-`, `sk-proj-`).
    OpenaiKey,
    /// JSON Web Token.
    Jwt,
    /// PEM private key block.
    PrivateKey,
    /// `password=...`, `api_key: ...`.
    PasswordAssign,
    /// Password in a URL (`postgres://user:pw@host`).
    ConnectionString,
    /// Generic high-entropy token.
    HighEntropy,
}

impl Det {
    /// How many built-in detectors there are.
    pub const COUNT: u16 = 22;

    const ALL: [Det; 22] = [
        Det::Email,
        Det::Url,
        Det::Iban,
        Det::Card,
        Det::LongNumber,
        Det::Phone,
        Det::Ssn,
        Det::Passport,
        Det::UsAddress,
        Det::AwsKey,
        Det::GithubToken,
        Det::GitlabToken,
        Det::SlackToken,
        Det::SlackWebhook,
        Det::StripeKey,
        Det::GoogleKey,
        Det::OpenaiKey,
        Det::Jwt,
        Det::PrivateKey,
        Det::PasswordAssign,
        Det::ConnectionString,
        Det::HighEntropy,
    ];

    /// The detector's name, as in findings and logs.
    pub fn name(self) -> &'static str {
        match self {
            Det::Email => "email",
            Det::Url => "url",
            Det::Iban => "iban",
            Det::Card => "card",
            Det::LongNumber => "long_number",
            Det::Phone => "phone",
            Det::Ssn => "us_ssn",
            Det::Passport => "passport",
            Det::UsAddress => "us_street_address",
            Det::AwsKey => "aws_access_key",
            Det::GithubToken => "github_token",
            Det::GitlabToken => "gitlab_token",
            Det::SlackToken => "slack_token",
            Det::SlackWebhook => "slack_webhook",
            Det::StripeKey => "stripe_key",
            Det::GoogleKey => "google_api_key",
            Det::OpenaiKey => "openai_key",
            Det::Jwt => "jwt",
            Det::PrivateKey => "private_key",
            Det::PasswordAssign => "password_assignment",
            Det::ConnectionString => "connection_string_password",
            Det::HighEntropy => "high_entropy_token",
        }
    }

    /// The class the detector belongs to.
    pub fn kind(self) -> Kind {
        match self {
            Det::Email => Kind::Email,
            Det::Url => Kind::Url,
            Det::Iban => Kind::Iban,
            Det::Card => Kind::Card,
            Det::LongNumber => Kind::LongNumber,
            Det::Phone => Kind::Phone,
            Det::Ssn => Kind::Ssn,
            Det::Passport => Kind::Passport,
            Det::UsAddress => Kind::Address,
            Det::HighEntropy => Kind::Token,
            _ => Kind::Secret,
        }
    }
}

/// One detection: its class, detector and byte range in the scanned text.
/// It never holds the matched text, so logging or serialising it cannot
/// leak the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The class of the detector that fired.
    pub kind: Kind,
    /// The detector: a [`Det`] as `u16`, or `Det::COUNT + i` for the
    /// operator's `i`-th custom detector. [`Detectors::detector_name`] names
    /// it.
    pub detector: u16,
    /// Byte range in the text (always on character boundaries).
    pub range: Range<usize>,
}

/// What happens when a detector class fires in content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ContentAction {
    /// Nothing beyond provenance fingerprints.
    #[default]
    Ignore,
    /// Label the session (taint) with the class's label.
    Label,
    /// Label, and mask the value in results before the agent sees them.
    Redact,
    /// Label, and refuse the call (in arguments) or the result.
    Block,
}

impl ContentAction {
    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Option<ContentAction> {
        Some(match s {
            "ignore" => ContentAction::Ignore,
            "label" => ContentAction::Label,
            "redact" => ContentAction::Redact,
            "block" => ContentAction::Block,
            _ => return None,
        })
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentAction::Ignore => "ignore",
            ContentAction::Label => "label",
            ContentAction::Redact => "redact",
            ContentAction::Block => "block",
        }
    }
}

/// What an operator-defined detector matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomPattern {
    /// A regular expression (Rust `regex` syntax).
    Regex(String),
    /// Whole words or phrases, matched without ASCII case.
    Words(Vec<String>),
}

/// An operator-defined detector as declared in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomSpec {
    /// Its name (a word), reported as the detector.
    pub name: String,
    /// What it matches.
    pub pattern: CustomPattern,
    /// What happens when it fires.
    pub action: ContentAction,
    /// The label it gives the session.
    pub label: Label,
}

/// Operator-defined detectors, compiled: regexes in one `RegexSet` (one
/// pass tells which can match), word lists in one Aho-Corasick automaton.
#[derive(Debug, Clone)]
pub struct CustomDetectors {
    specs: Vec<CustomSpec>,
    set: RegexSet,
    regexes: Vec<(usize, Regex)>,
    words: Option<(AhoCorasick, Vec<usize>)>,
}

impl PartialEq for CustomDetectors {
    fn eq(&self, o: &Self) -> bool {
        self.specs == o.specs
    }
}

impl Eq for CustomDetectors {}

impl CustomDetectors {
    /// Compiles custom detectors. On error, the index of the detector at
    /// fault and a message.
    pub fn new(specs: Vec<CustomSpec>) -> Result<CustomDetectors, (usize, String)> {
        let mut regexes = Vec::new();
        let mut words = Vec::new();
        let mut word_owner = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            match &s.pattern {
                CustomPattern::Regex(p) => {
                    let re = regex::RegexBuilder::new(p)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| (i, format!("bad regex: {e}")))?;
                    if re.is_match("") {
                        return Err((i, "regex matches the empty string".to_owned()));
                    }
                    regexes.push((i, re));
                }
                CustomPattern::Words(ws) => {
                    if ws.is_empty() {
                        return Err((i, "word list is empty".to_owned()));
                    }
                    for w in ws {
                        if w.trim().is_empty() {
                            return Err((i, "empty word in word list".to_owned()));
                        }
                        words.push(w.trim().to_owned());
                        word_owner.push(i);
                    }
                }
            }
        }
        let set = RegexSet::new(regexes.iter().map(|(_, r)| r.as_str())).map_err(|e| {
            (
                regexes.first().map_or(0, |r| r.0),
                format!("bad regex: {e}"),
            )
        })?;
        let words = if words.is_empty() {
            None
        } else {
            let ac = AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostLongest)
                .build(&words)
                .map_err(|e| (word_owner[0], format!("word list: {e}")))?;
            Some((ac, word_owner))
        };
        Ok(CustomDetectors {
            specs,
            set,
            regexes,
            words,
        })
    }

    /// The declared detectors.
    pub fn specs(&self) -> &[CustomSpec] {
        &self.specs
    }

    fn scan(&self, text: &str, out: &mut Vec<Finding>) {
        let id = |i: usize| Det::COUNT.saturating_add(u16::try_from(i).unwrap_or(u16::MAX));
        if !self.regexes.is_empty() {
            let m = self.set.matches(text);
            for (k, (i, re)) in self.regexes.iter().enumerate() {
                if !m.matched(k) {
                    continue;
                }
                for f in re.find_iter(text).filter(|f| !f.is_empty()) {
                    out.push(Finding {
                        kind: Kind::Custom,
                        detector: id(*i),
                        range: f.range(),
                    });
                }
            }
        }
        if let Some((ac, owner)) = &self.words {
            let b = text.as_bytes();
            let w = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
            for m in ac.find_iter(text) {
                let (s, e) = (m.start(), m.end());
                let alone = (s == 0 || !w(b[s - 1])) && (e >= b.len() || !w(b[e]));
                if alone {
                    out.push(Finding {
                        kind: Kind::Custom,
                        detector: id(owner[m.pattern().as_usize()]),
                        range: s..e,
                    });
                }
            }
        }
    }
}

/// Per-class actions (built-in classes; custom detectors carry their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentActions(pub [ContentAction; 12]);

impl Default for ContentActions {
    /// Secrets label the session; everything else is only fingerprinted.
    fn default() -> Self {
        let mut a = [ContentAction::Ignore; 12];
        a[Kind::Secret as usize] = ContentAction::Label;
        ContentActions(a)
    }
}

impl ContentActions {
    /// The action for a class.
    pub fn get(&self, k: Kind) -> ContentAction {
        self.0[k as usize]
    }

    /// Sets the action for a class.
    pub fn set(&mut self, k: Kind, a: ContentAction) {
        self.0[k as usize] = a;
    }
}

/// The compiled detectors. Build once and share.
#[derive(Debug, Clone)]
pub struct Detectors {
    email: Regex,
    url: Regex,
    iban: Regex,
    hints: AhoCorasick,
    words: keywords::Keywords<secrets::Kw>,
    signals: keywords::Keywords<(&'static str, signals::Src)>,
    custom: Option<CustomDetectors>,
}

const C_DIGIT: u8 = 1;
const C_UPPER: u8 = 2;
const C_LOWER: u8 = 4;
const C_TOK: u8 = 8;
const C_MIXED: u8 = C_DIGIT | C_UPPER | C_LOWER;

/// Byte classes of token runs (high-entropy candidates).
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = match c {
            b'0'..=b'9' => C_DIGIT | C_TOK,
            b'A'..=b'Z' => C_UPPER | C_TOK,
            b'a'..=b'z' => C_LOWER | C_TOK,
            b'_' | b'-' | b'+' | b'/' | b'=' => C_TOK,
            _ => 0,
        };
        i += 1;
    }
    t
};

// Patterns avoid large bounded repetitions (they blow up the automata) and
// use ASCII word boundaries so the lazy DFA handles every haystack; lengths
// are checked after matching where it matters.
const EMAIL: &str = r"(?i)(?-u:\b)[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,24}(?-u:\b)";
const URL: &str = r#"(?i)(?-u:\b)(?:https?|ftp)://[^\s"'<>()\[\]{}]+|(?-u:\b)www\.[a-z0-9-]+\.[a-z0-9.-]+[^\s"'<>()\[\]{}]*"#;
const IBAN: &str = r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?-u:\b)";

impl Detectors {
    /// Compiles the built-in detectors.
    ///
    /// # Panics
    /// Never in practice: the patterns are constants covered by tests.
    #[allow(clippy::expect_used)]
    pub fn new() -> Detectors {
        let re = |p: &str| Regex::new(p).expect("built-in detector pattern compiles");
        // Leftmost-first lets the searcher use its SIMD prefilter.
        let hints = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostFirst)
            .build(secrets::HINTS.iter().map(|h| h.0))
            .expect("secret hints compile");
        let words = keywords::Keywords::new(&secrets::WORDS);
        let signals = keywords::Keywords::new(
            &signals::patterns()
                .into_iter()
                .map(|(p, src)| (p, (p, src)))
                .collect::<Vec<_>>(),
        );
        Detectors {
            email: re(EMAIL),
            url: re(URL),
            iban: re(IBAN),
            hints,
            words,
            signals,
            custom: None,
        }
    }

    /// The same detectors plus operator-defined ones.
    pub fn with_custom(&self, custom: CustomDetectors) -> Detectors {
        Detectors {
            custom: Some(custom),
            ..self.clone()
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

    /// The name of a finding's detector.
    pub fn detector_name(&self, id: u16) -> &str {
        match Det::ALL.get(usize::from(id)) {
            Some(d) => d.name(),
            None => self
                .custom
                .as_ref()
                .and_then(|c| c.specs.get(usize::from(id - Det::COUNT)))
                .map_or("custom", |s| s.name.as_str()),
        }
    }

    /// The action for a finding: the custom detector's own, or the class's.
    pub fn action(&self, f: &Finding, actions: &ContentActions) -> ContentAction {
        match self.custom_spec(f) {
            Some(s) => s.action,
            None => actions.get(f.kind),
        }
    }

    /// The label a finding gives the session when its action is not
    /// `ignore`.
    pub fn label(&self, f: &Finding) -> Option<Label> {
        match self.custom_spec(f) {
            Some(s) => Some(s.label),
            None => f.kind.label(),
        }
    }

    fn custom_spec(&self, f: &Finding) -> Option<&CustomSpec> {
        if f.kind != Kind::Custom {
            return None;
        }
        self.custom.as_ref().and_then(|c| {
            c.specs
                .get(usize::from(f.detector.checked_sub(Det::COUNT)?))
        })
    }

    /// Scans `text` and appends every validated finding to `out`.
    ///
    /// One fused pass over the text's byte-class masks (see `blocks`)
    /// visits word starts (password, passport and SSN keywords, street
    /// suffixes) and digit-run starts (cards, SSNs, phones, long numbers,
    /// the IBAN anchor and the candidates of the high-entropy detector), in
    /// order of position; SIMD byte searches decide whether the e-mail and
    /// URL regexes run at all. Validators run only at those positions.
    pub fn scan(&self, text: &str, out: &mut Vec<Finding>) {
        self.scan_classified(text, None, out);
    }

    /// [`Detectors::scan`] and [`Detectors::signals`] in one pass, for
    /// content that needs both (tool results): the text is classified once
    /// and each word start is offered to both keyword tables. Appends
    /// exactly what the two calls would.
    pub fn scan_and_signals(&self, text: &str, out: &mut Vec<Finding>, sigs: &mut Vec<Signal>) {
        self.scan_classified_signals(text, None, out, sigs);
    }

    /// [`Detectors::scan_and_signals`] with the text's blocks already
    /// classified (see [`Detectors::scan_classified`]).
    pub(crate) fn scan_classified_signals(
        &self,
        text: &str,
        pre: Option<&[Block]>,
        out: &mut Vec<Finding>,
        sigs: &mut Vec<Signal>,
    ) {
        // Signal patterns starting with a digit or a space would need
        // candidates the fused pass does not visit.
        if text.len() < 6 || !self.signals.block_candidates() {
            self.scan_classified(text, pre, out);
            self.signals(text, sigs);
            return;
        }
        self.scan_impl::<true>(text, pre, out, sigs);
    }

    /// [`Detectors::scan`] with the text's blocks already classified
    /// (`pre` from [`classify_all`] on this text), for callers that walk
    /// the same text again (fingerprints).
    pub(crate) fn scan_classified(
        &self,
        text: &str,
        pre: Option<&[Block]>,
        out: &mut Vec<Finding>,
    ) {
        self.scan_impl::<false>(text, pre, out, &mut Vec::new());
    }

    /// The fused pass; with `SIGNALS`, the injection signals go to `sigs`
    /// (a separate instance, so the scan alone pays nothing for them).
    fn scan_impl<const SIGNALS: bool>(
        &self,
        text: &str,
        pre: Option<&[Block]>,
        out: &mut Vec<Finding>,
        sigs: &mut Vec<Signal>,
    ) {
        if text.len() < 6 {
            return;
        }
        let n0 = out.len();
        let b = text.as_bytes();
        // Numeric findings go straight to `out`; keyword findings (rare)
        // wait in `words` so the order of findings stays the documented
        // one: regex and token detectors, keywords, connection strings,
        // numbers, high-entropy tokens, custom detectors.
        let mut words: Vec<Finding> = Vec::new();
        let mut kw = KwState {
            ssn: [usize::MAX; 4],
            n_ssn: 0,
            www: false,
        };
        let mut memo = secrets::Memo::default();
        let mut links = signals::Links::default();
        let mut tokens = [(0usize, 0usize); 8];
        let mut n_tokens = 0usize;
        let (mut num_next, mut tok_next) = (0usize, 0usize);
        let mut upper_pair = false;
        let (mut carry_alpha, mut carry_digit) = (false, false);
        for (bi, chunk) in b.chunks(64).enumerate() {
            let base = bi * 64;
            let cls = match pre.and_then(|p| p.get(bi)) {
                Some(c) => *c,
                None => blocks::classify(chunk),
            };
            let word_starts = blocks::starts(cls.alpha, carry_alpha);
            let digit_starts = blocks::starts(cls.digit, carry_digit);
            carry_alpha = cls.alpha >> 63 == 1;
            carry_digit = cls.digit >> 63 == 1;
            // Signal candidates: word starts and punctuation.
            let sig_m = if SIGNALS { cls.other } else { 0 };
            let mut m = word_starts | digit_starts | sig_m;
            while m != 0 {
                let bit = m & m.wrapping_neg();
                m ^= bit;
                let i = base + bit.trailing_zeros() as usize;
                if bit & digit_starts == 0 {
                    if bit & word_starts != 0
                        && let Some((e, w)) = self.words.at_candidate(b, i)
                    {
                        keyword(text, i, e, w, &mut words, &mut kw, &mut memo);
                    }
                    if SIGNALS && let Some((e, t)) = self.signals.at_candidate(b, i) {
                        sigs.extend(signal(text, i, e, t, &mut links));
                    }
                    continue;
                }
                // Two capitals right before two digits: an IBAN may start.
                upper_pair |= i >= 2
                    && b[i - 1].is_ascii_uppercase()
                    && b[i - 2].is_ascii_uppercase()
                    && b.get(i + 1).is_some_and(u8::is_ascii_digit);
                // The digit run's end, from the mask while it stays in
                // this block.
                let j = i - base;
                let run = (cls.digit >> j).trailing_ones() as usize;
                let mut k = i + run;
                if j + run == 64 {
                    while k < b.len() && b[k].is_ascii_digit() {
                        k += 1;
                    }
                }
                // A run of digits alone is never a high-entropy candidate
                // (it needs letters of both cases): look for the token
                // run around it only when a token byte touches it.
                let tok = |c: u8| CLASS[usize::from(c)] & C_TOK != 0;
                if i >= tok_next && ((i > 0 && tok(b[i - 1])) || b.get(k).is_some_and(|c| tok(*c)))
                {
                    tok_next = token_run(b, i, &mut tokens, &mut n_tokens);
                }
                if i >= num_next {
                    let near = |p: usize| kw.ssn.iter().any(|k| *k <= p && p - *k <= 40);
                    num_next = numbers::at_run(text, i, k, &near, out);
                }
            }
        }
        let n_numbers = out.len() - n0;
        // The anchors of the regex detectors. `www.` comes from the word
        // starts (the URL regex needs a word boundary before it, and
        // without `://` only that alternative can match); `@` and `://`
        // from one SIMD search that stops once both are seen.
        let (mut has_at, mut has_colon_slash) = (false, false);
        for p in memchr::memchr2_iter(b'@', b':', b) {
            if b[p] == b'@' {
                has_at = true;
            } else {
                has_colon_slash |= b[p + 1..].starts_with(b"//");
            }
            if has_at && has_colon_slash {
                break;
            }
        }
        let has_www = !has_colon_slash && kw.www;
        let push_re = |re: &Regex, det: Det, ok: &dyn Fn(&str) -> bool, out: &mut Vec<Finding>| {
            push_matches(re, text, det, ok, out)
        };
        if has_at {
            push_re(
                &self.email,
                Det::Email,
                &|s| s.len() <= 254 && s.find('@').is_some_and(|at| at <= 64),
                out,
            );
        }
        if has_colon_slash || has_www {
            push_re(&self.url, Det::Url, &|s| s.len() <= 4096, out);
        }
        if upper_pair {
            push_re(&self.iban, Det::Iban, &iban_valid, out);
        }
        for m in self.hints.find_iter(text) {
            secrets::hint(text, m.start(), m.pattern().as_usize(), &mut memo, out);
        }
        out.append(&mut words);
        if has_colon_slash && has_at {
            secrets::connection_strings(text, out);
        }
        // Numbers last, as documented; a long number inside an earlier
        // finding (a URL path, an IBAN) is not reported again.
        out[n0..].rotate_left(n_numbers);
        let n1 = out.len() - n_numbers;
        drop_covered_numbers(out, n0, n1);
        if n_tokens > tokens.len() {
            secrets::high_entropy(text, None, out);
        } else {
            secrets::high_entropy(text, Some(&tokens[..n_tokens]), out);
        }
        if let Some(c) = &self.custom {
            c.scan(text, out);
        }
        if SIGNALS {
            sigs.extend(signals::invisible(text));
            self.folded_signals(text, sigs);
        }
    }

    /// The phrase, marker and address signals of `text` as a model reads
    /// it (look-alike letters folded, invisible characters removed; see
    /// `fold`) that the text as written hides, with their ranges in
    /// `text`. Only non-ASCII text with something to fold is read again.
    fn folded_signals(&self, text: &str, out: &mut Vec<Signal>) {
        let Some((folded, at)) = fold::fold(text) else {
            return;
        };
        let mut found = Vec::new();
        let mut links = signals::Links::default();
        self.signals.find(folded.as_bytes(), |s, e, t| {
            // A few are enough to tell; more would only cost.
            if found.len() < 16
                && let Some(mut g) = signal(&folded, s, e, t, &mut links)
            {
                g.range = at[g.range.start]..at.get(g.range.end).copied().unwrap_or(text.len());
                found.push(g);
            }
        });
        // Only what the text as written did not show already.
        found.retain(|g| !out.iter().any(|x| x.what == g.what && x.range == g.range));
        out.append(&mut found);
    }

    /// Clears `out` and scans `text` into it.
    pub fn scan_into(&self, text: &str, out: &mut Vec<Finding>) {
        out.clear();
        self.scan(text, out);
    }

    /// Every injection signal in `text`, in order of position (at most one
    /// invisible-character signal).
    pub fn signals(&self, text: &str, out: &mut Vec<Signal>) {
        let mut links = signals::Links::default();
        self.signals.find(text.as_bytes(), |s, e, t| {
            out.extend(signal(text, s, e, t, &mut links));
        });
        out.extend(signals::invisible(text));
        self.folded_signals(text, out);
    }

    /// The first injection signal's description, if any.
    pub fn injection(&self, text: &str) -> Option<&'static str> {
        let mut v = Vec::new();
        self.signals(text, &mut v);
        v.first().map(|s| s.what)
    }

    /// True if the text carries any injection signal.
    pub fn has_injection(&self, text: &str) -> bool {
        self.injection(text).is_some()
    }
}

impl Default for Detectors {
    fn default() -> Self {
        Detectors::new()
    }
}

/// Overlap queries against a set of findings: linear for a few, by
/// binary search over spans sorted by start (with the running maximum of
/// their ends) for many, so a large result full of URLs and addresses is
/// not checked quadratically.
pub(super) struct Covered<'a> {
    found: &'a [Finding],
    sorted: Vec<(usize, usize)>,
}

impl<'a> Covered<'a> {
    pub(super) fn new(found: &'a [Finding]) -> Covered<'a> {
        let mut sorted = Vec::new();
        if found.len() > 16 {
            sorted = found.iter().map(|f| (f.range.start, f.range.end)).collect();
            sorted.sort_unstable();
            let mut max_end = 0;
            for x in &mut sorted {
                max_end = max_end.max(x.1);
                x.1 = max_end;
            }
        }
        Covered { found, sorted }
    }

    /// True if some finding overlaps `s..e`.
    pub(super) fn overlaps(&self, s: usize, e: usize) -> bool {
        if self.sorted.is_empty() {
            return self
                .found
                .iter()
                .any(|f| f.range.start < e && s < f.range.end);
        }
        // Among the spans starting before `e`, one ends after `s`.
        let k = self.sorted.partition_point(|x| x.0 < e);
        k > 0 && self.sorted[k - 1].1 > s
    }
}

/// Drops the long numbers among `out[n1..]` that overlap a finding of
/// `out[n0..n1]` (a number inside a URL path or an IBAN), keeping order.
/// Out of line: inlined, it made the scan's block loop compile worse.
#[inline(never)]
fn drop_covered_numbers(out: &mut Vec<Finding>, n0: usize, n1: usize) {
    if out.len() == n1 {
        return;
    }
    let (head, numbers) = out.split_at_mut(n1);
    let covered = Covered::new(&head[n0..]);
    let mut keep = 0;
    for i in 0..numbers.len() {
        let r = numbers[i].range.clone();
        let dup = numbers[i].kind == Kind::LongNumber && covered.overlaps(r.start, r.end);
        if !dup {
            numbers.swap(keep, i);
            keep += 1;
        }
    }
    out.truncate(n1 + keep);
}

/// The signal (if any) of a signal pattern matched at `s..e`.
#[inline(never)]
fn signal(
    text: &str,
    s: usize,
    e: usize,
    (p, src): (&'static str, signals::Src),
    links: &mut signals::Links,
) -> Option<Signal> {
    match src {
        signals::Src::Phrase => Some(Signal {
            kind: SignalKind::Phrase,
            what: p,
            range: s..e,
        }),
        signals::Src::Marker => Some(Signal {
            kind: SignalKind::Marker,
            what: p,
            range: s..e,
        }),
        signals::Src::Address => signals::imperative(text, s, e),
        signals::Src::Link => signals::exfil_link(text, s, p, links),
        signals::Src::Dismiss => signals::dismissal(text, s, e),
        signals::Src::Secrecy => signals::secrecy(text, s, e),
        signals::Src::Template => signals::url_template(text, s, e),
    }
}

/// What keywords leave for later in a scan.
struct KwState {
    /// Ends of the last four SSN keywords (a ring).
    ssn: [usize; 4],
    /// How many SSN keywords were seen.
    n_ssn: usize,
    /// `www.` or `WWW.` starts a word.
    www: bool,
}

/// Handles a keyword of the secrets list found at `s..e`: validates what
/// it anchors (assignment, passport, street address) into `out`, notes an
/// SSN keyword's end or a `www.`.
#[inline(never)]
fn keyword(
    text: &str,
    s: usize,
    e: usize,
    kw: secrets::Kw,
    out: &mut Vec<Finding>,
    st: &mut KwState,
    memo: &mut secrets::Memo,
) {
    let b = text.as_bytes();
    let alone = (s == 0 || !b[s - 1].is_ascii_alphabetic())
        && !b.get(e).is_some_and(u8::is_ascii_alphabetic);
    match kw {
        secrets::Kw::Assign => secrets::assignment(text, e, memo, out),
        secrets::Kw::Passport if alone || b.get(e) == Some(&b's') => {
            secrets::passport(text, e, out);
        }
        secrets::Kw::Ssn if alone => {
            st.ssn[st.n_ssn % 4] = e;
            st.n_ssn += 1;
        }
        secrets::Kw::Street if s > 0 && b[s - 1] == b' ' => {
            secrets::street(text, s - 1, e, out);
        }
        // Only these two spellings, as the URL detector has always
        // required.
        secrets::Kw::Www => st.www |= matches!(&b[s..e], b"www." | b"WWW."),
        _ => {}
    }
}

/// The token run (letters, digits, `_-+/=`) around the digit at `i`:
/// records it as a high-entropy candidate when it is 20 bytes or longer
/// and mixes digits, upper and lower case (a random token always holds a
/// digit, so digit-run starts find every candidate). Returns the run's
/// end; digits before it belong to this run.
#[inline(never)]
fn token_run(b: &[u8], i: usize, runs: &mut [(usize, usize); 8], n: &mut usize) -> usize {
    let tok = |c: u8| CLASS[usize::from(c)] & C_TOK != 0;
    let mut s = i;
    while s > 0 && tok(b[s - 1]) {
        s -= 1;
    }
    let mut e = i;
    while e < b.len() && tok(b[e]) {
        e += 1;
    }
    if e - s >= 20 {
        let mixed = b[s..e].iter().fold(0u8, |a, c| a | CLASS[usize::from(*c)]);
        if mixed & C_MIXED == C_MIXED {
            if let Some(slot) = runs.get_mut(*n) {
                *slot = (s, e);
            }
            *n += 1;
        }
    }
    e
}

/// True if the digits of `s` (spaces and dashes ignored) pass the Luhn check
/// and there are 13 to 19 of them.
pub fn luhn_valid(s: &str) -> bool {
    numbers::luhn_digits(s)
}

/// Every match of `re` in `text` that `ok` accepts, as `det` findings.
pub(crate) fn push_matches(
    re: &Regex,
    text: &str,
    det: Det,
    ok: &dyn Fn(&str) -> bool,
    out: &mut Vec<Finding>,
) {
    for m in re.find_iter(text) {
        if ok(m.as_str()) {
            out.push(Finding {
                kind: det.kind(),
                detector: det as u16,
                range: m.range(),
            });
        }
    }
}

/// True if `s` (spaces ignored) is an IBAN with a valid mod-97 checksum.
pub fn iban_valid(s: &str) -> bool {
    let compact = s.bytes().filter(|b| !b.is_ascii_whitespace());
    let len = compact.clone().count();
    if !(15..=34).contains(&len) {
        return false;
    }
    let mut rem: u32 = 0;
    for b in compact.clone().skip(4).chain(compact.take(4)) {
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
