//! Subject binding and object ownership: object-level authorisation for
//! agents.
//!
//! Owns: [`SubjectState`] (kept in each session), [`BindSource`], the
//! per-call [`SubjectFacts`] and the per-result [`ResultIds`]. A session
//! acts for one subject: the authenticated end user, a subject id the
//! user's own request (intent) names, or the subject of the first identity
//! lookup that succeeded (a call with a `subject` argument). Objects belong
//! to the subject when their ids appear in results about the subject
//! (results of calls for the subject, or whose subject fields name it);
//! ids in results about someone else belong to that someone. A call then
//! knows whether its subject argument, its object ids and its money
//! destination are the subject's own, another subject's, seen without an
//! owner, or never seen.
//!
//! Bounded: at most [`OWNED_CAP`] owned ids, [`OTHERS_CAP`] ids of other
//! subjects and [`OTHER_SUBJECTS_CAP`] other subjects per session (oldest
//! evicted first); nothing is allocated until a subject is seen.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fingerprint::{self, FpKind};
use crate::roles::{ArgRole, CallRoles, is_subject_key};
use crate::state::Provenance;

/// Most ids owned by the subject kept per session.
pub const OWNED_CAP: usize = 64;
/// Most ids of other subjects kept per session.
pub const OTHERS_CAP: usize = 32;
/// Most distinct other subjects counted per session.
pub const OTHER_SUBJECTS_CAP: usize = 8;
/// Most barred objects kept per session.
pub const BARRED_CAP: usize = 8;
/// Most ids taken from one result.
const IDS_PER_RESULT: usize = 64;

/// Where the session's subject came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindSource {
    /// The authenticated end user of the call.
    User,
    /// A subject id that the user's own request names.
    Intent,
    /// The first identity lookup that succeeded.
    Lookup,
}

impl BindSource {
    /// The name used in rules.
    pub fn as_str(self) -> &'static str {
        match self {
            BindSource::User => "user",
            BindSource::Intent => "intent",
            BindSource::Lookup => "lookup",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<BindSource> {
        [BindSource::User, BindSource::Intent, BindSource::Lookup]
            .into_iter()
            .find(|b| b.as_str() == s)
    }
}

/// An id seen in a result about another subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Foreign {
    /// The id.
    pub id: u64,
    /// Its owner.
    pub owner: u64,
    /// The call whose result showed it.
    pub at: u32,
}

/// Whom a session acts for and what belongs to them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectState {
    /// The subject's id hash and where it came from.
    pub(crate) bound: Option<(u64, BindSource)>,
    /// The subject as written (short), for reasons.
    #[serde(default)]
    pub(crate) shown: String,
    /// Ids that belong to the subject (aliases such as the e-mail address
    /// behind a user id included).
    pub(crate) owned: Vec<u64>,
    /// Ids that belong to other subjects.
    pub(crate) others: Vec<Foreign>,
    /// Other subjects named in this session.
    pub(crate) other_subjects: Vec<u64>,
    /// The largest amount (in cents) a result about the subject showed
    /// under an amount-like field (a price paid, a balance, a refund due):
    /// what a refund or credit to the subject can be based on.
    #[serde(default)]
    pub(crate) quoted: Option<u64>,
    /// The subject's objects whose own record says they may not be
    /// cancelled or refunded (`non-refundable`, `refundable: false`, `final
    /// sale`), with the words that said so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) barred: Vec<(u64, String)>,
}

impl SubjectState {
    /// The subject's source, if the session has one.
    pub fn bound_by(&self) -> Option<BindSource> {
        self.bound.map(|(_, s)| s)
    }

    /// The subject as written, if bound.
    pub fn shown(&self) -> Option<&str> {
        self.bound.map(|_| self.shown.as_str())
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.shown.capacity()
            + self.owned.capacity() * 8
            + self.others.capacity() * std::mem::size_of::<Foreign>()
            + self.other_subjects.capacity() * 8
            + self
                .barred
                .iter()
                .map(|(_, w)| 8 + std::mem::size_of::<String>() + w.capacity())
                .sum::<usize>()
    }

    pub(crate) fn shrink(&mut self) {
        self.owned.shrink_to_fit();
        self.others.shrink_to_fit();
        self.other_subjects.shrink_to_fit();
    }

    fn is_self(&self, h: u64) -> bool {
        self.bound.is_some_and(|(s, _)| s == h) || self.owned.contains(&h)
    }

    fn bind(&mut self, h: u64, source: BindSource, shown: &str) {
        self.bound = Some((h, source));
        self.shown = shown.chars().take(48).collect();
        self.other_subjects.retain(|o| *o != h);
    }

    fn own(&mut self, h: u64) {
        if self.is_self(h) {
            return;
        }
        self.others.retain(|f| f.id != h);
        self.other_subjects.retain(|o| *o != h);
        if self.owned.len() >= OWNED_CAP {
            self.owned.remove(0);
        }
        self.owned.push(h);
    }

    fn foreign(&mut self, id: u64, owner: u64, at: u32) {
        if self.is_self(id) || self.others.iter().any(|f| f.id == id) {
            return;
        }
        if self.others.len() >= OTHERS_CAP {
            self.others.remove(0);
        }
        self.others.push(Foreign { id, owner, at });
    }

    fn note_other_subject(&mut self, h: u64) {
        if self.is_self(h) || self.other_subjects.contains(&h) {
            return;
        }
        if self.other_subjects.len() >= OTHER_SUBJECTS_CAP {
            self.other_subjects.remove(0);
        }
        self.other_subjects.push(h);
    }

    fn owner_of(&self, h: u64) -> Option<&Foreign> {
        self.others.iter().find(|f| f.id == h)
    }
}

/// Whose an id is, from the session's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    /// The session's subject.
    Own,
    /// Seen in a result, with no owner known (catalogue data).
    Public,
    /// Never seen in this session.
    Unknown,
    /// Another subject.
    Other,
    /// The subject's own, but its record forbids cancelling or refunding
    /// it (set only when every object of the call is the subject's own).
    Barred,
}

impl Owner {
    /// The name used in rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Owner::Own => "own",
            Owner::Public => "public",
            Owner::Unknown => "unknown",
            Owner::Other => "other",
            Owner::Barred => "barred",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Owner> {
        [
            Owner::Own,
            Owner::Public,
            Owner::Unknown,
            Owner::Other,
            Owner::Barred,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// What one call says about subjects, with the evidence for reasons.
#[derive(Debug, Clone, Default)]
pub(crate) struct SubjectFacts {
    pub bound: Option<BindSource>,
    /// The call's subject argument: `Own` or `Other` (None: none, or no
    /// subject bound).
    pub arg: Option<Owner>,
    /// The least owned of the call's object ids.
    pub object: Option<Owner>,
    /// The least owned of the call's destinations.
    pub payee: Option<Owner>,
    /// Other subjects named in this session, this call included.
    pub others: u32,
    /// Why, in words.
    pub detail: Option<String>,
}

impl SubjectFacts {
    /// The call names another subject or one of their objects.
    pub(crate) fn other(&self) -> bool {
        self.arg == Some(Owner::Other) || self.object == Some(Owner::Other)
    }

    /// The call names the authenticated subject or their objects and
    /// nothing else: no other subject, no object or payee that is not
    /// theirs, no object whose record forbids the change.
    pub(crate) fn only_own(&self) -> bool {
        let own_or_none = |o: Option<Owner>| o.is_none_or(|o| o == Owner::Own);
        matches!(self.bound, Some(BindSource::User | BindSource::Intent))
            && (self.arg == Some(Owner::Own) || self.object == Some(Owner::Own))
            && own_or_none(self.arg)
            && own_or_none(self.object)
            && own_or_none(self.payee)
    }

    /// The call reaches past the subject's own records.
    pub(crate) fn foreign(&self) -> bool {
        self.other() || matches!(self.object, Some(Owner::Unknown))
    }
}

/// The hash an id is kept under: as provenance fingerprints a short value
/// (trimmed, lower-cased).
pub(crate) fn id_hash(s: &str) -> u64 {
    let t = s.trim();
    if t.bytes().any(|b| b.is_ascii_uppercase()) {
        fingerprint::hash(FpKind::Value, t.to_ascii_lowercase().as_bytes())
    } else {
        fingerprint::hash(FpKind::Value, t.as_bytes())
    }
}

/// The id values of an argument (strings, integers, arrays of them).
fn id_values(v: &Value, out: &mut Vec<(u64, String)>) {
    match v {
        Value::String(s) if !s.trim().is_empty() && s.len() <= 128 => {
            out.push((id_hash(s), s.trim().to_owned()));
        }
        Value::Number(n) => {
            let s = n.to_string();
            out.push((id_hash(&s), s));
        }
        Value::Array(a) => a.iter().take(16).for_each(|x| id_values(x, out)),
        _ => {}
    }
}

/// True if the session saw `h` in any result (provenance).
fn seen(prov: &Provenance, h: u64) -> bool {
    prov.lookup(h).is_some()
}

/// Binds the subject from the end user or the intent (before the call is
/// judged) and returns the call's facts. Attempts count: another subject
/// named by a refused call is still counted.
pub(crate) fn judge(
    st: &mut SubjectState,
    prov: &Provenance,
    roles: &CallRoles<'_>,
    user: Option<&str>,
    user_ids_are_subjects: bool,
    intent: Option<&str>,
    money: bool,
) -> SubjectFacts {
    let mut subjects = Vec::new();
    for (_, v) in roles.of(ArgRole::Subject) {
        id_values(v, &mut subjects);
    }
    // The end user binds at once when the operator says the gateway's user
    // ids are the tools' ids; otherwise only once a subject argument names
    // the user (ids of another id space never look like someone else).
    if st.bound.is_none()
        && let Some(u) = user
    {
        let h = id_hash(u);
        if user_ids_are_subjects || subjects.iter().any(|(x, _)| *x == h) {
            st.bind(h, BindSource::User, u);
        }
    }
    if st.bound.is_none()
        && let Some(i) = intent
        && let Some((h, s)) = subjects
            .iter()
            .find(|(_, s)| s.len() >= 3 && i.contains(&s.to_lowercase()))
    {
        st.bind(*h, BindSource::Intent, s);
    }
    let mut f = SubjectFacts {
        bound: st.bound_by(),
        ..SubjectFacts::default()
    };
    if st.bound.is_none() {
        return f;
    }
    for (h, s) in &subjects {
        if st.is_self(*h) {
            f.arg.get_or_insert(Owner::Own);
        } else {
            f.arg = Some(Owner::Other);
            st.note_other_subject(*h);
            f.detail = Some(format!(
                "the subject argument `{s}` is not `{}`, whom this session acts for",
                st.shown
            ));
        }
    }
    let mut objects = Vec::new();
    for (arg, v) in roles.of(ArgRole::Object) {
        let at = objects.len();
        id_values(v, &mut objects);
        for (h, s) in &objects[at..] {
            let o = classify(st, prov, *h);
            if f.object.is_none_or(|x| o > x) {
                f.object = Some(o);
                if o == Owner::Other || (o == Owner::Unknown && f.detail.is_none()) {
                    f.detail = Some(describe(st, arg, s, o));
                }
            }
        }
    }
    if f.object == Some(Owner::Own)
        && let Some((_, why)) = objects
            .iter()
            .find_map(|(h, _)| st.barred.iter().find(|(b, _)| b == h))
    {
        f.object = Some(Owner::Barred);
        f.detail = Some(format!(
            "the record of this `{}` object says `{why}`",
            st.shown
        ));
    }
    if money {
        let mut dests = Vec::new();
        for (arg, v) in roles.of(ArgRole::Destination) {
            dests.clear();
            id_values(v, &mut dests);
            for (h, s) in &dests {
                let o = classify(st, prov, *h);
                if f.payee.is_none_or(|x| o > x) {
                    f.payee = Some(o);
                    if matches!(o, Owner::Other | Owner::Unknown) && !f.other() {
                        f.detail = Some(describe(st, arg, s, o));
                    }
                }
            }
        }
    }
    f.others = u32::try_from(st.other_subjects.len()).unwrap_or(u32::MAX);
    f
}

/// An amount the call grants to the session's own subject (its own
/// account, object or payee, nobody else's) that no record about the
/// subject supports: above every amount such a record showed, or, with no
/// such record read at all, an amount the requester named himself
/// (`intent`: a customer's word is not a record). `None` when the call
/// does not grant to the subject or the amount is supported. Returns the
/// largest amount quoted.
pub(crate) fn unquoted(
    st: &SubjectState,
    f: &SubjectFacts,
    amount: f64,
    intent: Option<&str>,
) -> Option<Option<f64>> {
    let to_self = [f.arg, f.object, f.payee].contains(&Some(Owner::Own));
    if !to_self || f.other() || f.payee == Some(Owner::Other) {
        return None;
    }
    let asked = cents(amount)?;
    match st.quoted {
        Some(q) if asked <= q => None,
        Some(q) => Some(Some(q as f64 / 100.0)),
        None => intent
            .is_some_and(|i| {
                i.split_whitespace()
                    .any(|w| crate::instruct::parse_amount(w) == Some(asked))
            })
            .then_some(None),
    }
}

fn classify(st: &SubjectState, prov: &Provenance, h: u64) -> Owner {
    if st.is_self(h) {
        Owner::Own
    } else if st.owner_of(h).is_some() {
        Owner::Other
    } else if seen(prov, h) {
        Owner::Public
    } else {
        Owner::Unknown
    }
}

fn describe(st: &SubjectState, arg: &str, value: &str, o: Owner) -> String {
    let who = &st.shown;
    match o {
        Owner::Other => {
            let at = st
                .owner_of(id_hash(value))
                .map_or(String::new(), |f| format!(" (call #{} showed it)", f.at));
            format!("`{arg}` `{value}` belongs to another subject than `{who}`{at}")
        }
        Owner::Unknown => format!(
            "`{arg}` `{value}` was never seen in a result about `{who}`, whom this session acts for"
        ),
        Owner::Public | Owner::Own | Owner::Barred => format!("`{arg}` `{value}`"),
    }
}

/// What a result says about ownership: the call's subject and object ids,
/// the values of subject fields in the result (`user_id`, `customer_id`,
/// `owner`, `email` beside them) and the ids it holds.
#[derive(Debug, Default)]
pub(crate) struct ResultIds {
    subject_args: Vec<u64>,
    subject_shown: String,
    object_args: Vec<u64>,
    fields: Vec<u64>,
    ids: Vec<u64>,
    /// The largest amount under an amount-like field, in cents.
    amount: Option<u64>,
    /// Words of the result that forbid cancelling or refunding.
    barred: Option<String>,
}

impl ResultIds {
    /// Reads a result of a call with subject or object arguments (others
    /// carry nothing about ownership and are not walked).
    pub(crate) fn scan(roles: &CallRoles<'_>, result: &Value) -> Option<ResultIds> {
        if !roles.has(ArgRole::Subject) && !roles.has(ArgRole::Object) {
            return None;
        }
        let mut r = ResultIds::default();
        let mut vals = Vec::new();
        for (_, v) in roles.of(ArgRole::Subject) {
            id_values(v, &mut vals);
        }
        if let Some((_, s)) = vals.first() {
            r.subject_shown = s.chars().take(48).collect();
        }
        r.subject_args = vals.drain(..).map(|(h, _)| h).collect();
        for (_, v) in roles.of(ArgRole::Object) {
            id_values(v, &mut vals);
        }
        r.object_args = vals.into_iter().map(|(h, _)| h).collect();
        walk(result, None, 0, &mut r);
        Some(r)
    }
}

fn looks_like_id(s: &str) -> bool {
    let t = s.trim();
    (3..=64).contains(&t.len())
        && !t.contains(char::is_whitespace)
        && !t.contains("://")
        && t.bytes()
            .any(|b| b.is_ascii_digit() || b == b'_' || b == b'-' || b == b'@')
}

fn walk(v: &Value, key: Option<&str>, depth: usize, r: &mut ResultIds) {
    if depth > 12 || r.ids.len() >= IDS_PER_RESULT {
        return;
    }
    match v {
        Value::String(s) => {
            let t = s.trim_start();
            if (t.starts_with('{') || t.starts_with('[')) && t.len() < 64 * 1024 {
                if let Ok(inner) = serde_json::from_str::<Value>(t) {
                    walk(&inner, key, depth + 1, r);
                }
                return;
            }
            if key.is_some_and(is_amount_key)
                && let Some(c) = crate::instruct::parse_amount(t)
            {
                r.amount = Some(r.amount.map_or(c, |a| a.max(c)));
            }
            if r.barred.is_none()
                && t.len() <= 256
                && let Some(w) = forbidding_words(t)
            {
                r.barred = Some(w.to_owned());
            }
            if key.is_some_and(is_owner_key) && !t.is_empty() && t.len() <= 128 {
                r.fields.push(id_hash(t));
            }
            if looks_like_id(t) {
                r.ids.push(id_hash(t));
            }
        }
        Value::Number(n) => {
            if key.is_some_and(is_amount_key)
                && let Some(c) = n.as_f64().and_then(cents)
            {
                r.amount = Some(r.amount.map_or(c, |a| a.max(c)));
            }
            if n.as_u64().is_some_and(|x| x >= 100) {
                let s = n.to_string();
                if key.is_some_and(is_owner_key) {
                    r.fields.push(id_hash(&s));
                }
                r.ids.push(id_hash(&s));
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, key, depth + 1, r)),
        Value::Object(o) => {
            for (k, x) in o {
                // Ids used as keys (`{"credit_card_42": {...}}`).
                if looks_like_id(k) && k.bytes().any(|b| b.is_ascii_digit()) {
                    r.ids.push(id_hash(k));
                }
                walk(x, Some(k.as_str()), depth + 1, r);
            }
        }
        Value::Bool(b) => {
            // `refundable: false`, `non_refundable: true`.
            if r.barred.is_none()
                && let Some(k) = key
                && forbidding_flag(k, *b)
            {
                r.barred = Some(format!("{k}: {b}"));
            }
        }
        Value::Null => {}
    }
}

/// Phrases with which a record says its object may not be cancelled or
/// refunded. Record vocabulary, not a domain's: fares, rates, orders and
/// plans use the same words.
const FORBIDDING: &[&str] = &[
    "non-refundable",
    "nonrefundable",
    "non refundable",
    "not refundable",
    "no refunds",
    "non-cancellable",
    "non-cancelable",
    "not cancellable",
    "not cancelable",
    "cannot be cancelled",
    "cannot be canceled",
    "cannot be refunded",
    "final sale",
    "no cancellation",
    "non-returnable",
    "not returnable",
];

fn forbidding_words(s: &str) -> Option<&'static str> {
    if s.len() < 6 {
        return None;
    }
    let low = s.to_ascii_lowercase();
    FORBIDDING.iter().copied().find(|w| low.contains(w))
}

fn forbidding_flag(key: &str, b: bool) -> bool {
    let ws = crate::catalog::words(key);
    let allowed = ws.iter().any(|w| {
        matches!(
            w.as_str(),
            "refundable" | "cancellable" | "cancelable" | "returnable" | "changeable"
        )
    });
    let negated = ws
        .iter()
        .any(|w| matches!(w.as_str(), "non" | "not" | "no"));
    allowed && (b == negated)
}

/// Fields that hold what something cost, what was paid or what is due.
/// Words of the field name, so `total_price`, `amountPaid` and `fare` all
/// count and `price_id` or `payment_method` do not.
fn is_amount_key(k: &str) -> bool {
    const AMOUNT_WORDS: &[&str] = &[
        "price",
        "amount",
        "total",
        "cost",
        "fare",
        "paid",
        "balance",
        "refund",
        "refundable",
        "charge",
        "charged",
        "fee",
        "fees",
        "value",
        "subtotal",
        "due",
        "credit",
    ];
    let ws = crate::catalog::words(k);
    ws.last()
        .is_some_and(|w| w != "id" && w != "method" && w != "currency")
        && !ws.iter().any(|w| w == "card" || w == "number")
        && ws.iter().any(|w| AMOUNT_WORDS.contains(&w.as_str()))
}

fn cents(x: f64) -> Option<u64> {
    (x.is_finite() && x > 0.0 && x < 1e15).then(|| (x * 100.0).round() as u64)
}

fn is_owner_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    is_subject_key(&k)
        || matches!(
            k.as_str(),
            "owner" | "owner_id" | "owner_email" | "account_holder"
        )
}

/// Records a result: binds the subject on the first successful lookup and
/// files the result's ids under the subject or under their owner.
pub(crate) fn observe(st: &mut SubjectState, ids: ResultIds, is_error: bool, at: u32) {
    if is_error {
        return;
    }
    if st.bound.is_none() {
        match ids.subject_args.first() {
            Some(h) => st.bind(*h, BindSource::Lookup, &ids.subject_shown),
            None => return,
        }
    }
    // Whom the result is about: the subject, when its subject fields name
    // them (the call's subject argument is then an alias, such as the
    // e-mail address behind an authenticated user id); else the call's
    // subject argument, else its object's owner, else the subject fields.
    let about: Option<u64> = if ids.fields.iter().any(|h| st.is_self(*h)) {
        for h in &ids.subject_args {
            st.own(*h);
        }
        st.bound.map(|(s, _)| s)
    } else if let Some(h) = ids.subject_args.first() {
        Some(*h)
    } else if ids.object_args.iter().any(|h| st.is_self(*h)) {
        st.bound.map(|(s, _)| s)
    } else if let Some(f) = ids.object_args.iter().find_map(|h| st.owner_of(*h)) {
        Some(f.owner)
    } else {
        ids.fields.first().copied()
    };
    let Some(about) = about else { return };
    if st.is_self(about) {
        if let Some(w) = &ids.barred {
            for h in &ids.object_args {
                if st.barred.iter().any(|(b, _)| b == h) {
                    continue;
                }
                if st.barred.len() >= BARRED_CAP {
                    st.barred.remove(0);
                }
                st.barred.push((*h, w.clone()));
            }
        }
        if let Some(a) = ids.amount {
            st.quoted = Some(st.quoted.map_or(a, |q| q.max(a)));
        }
        // Aliases too: the subject fields of a result about the subject
        // (a user id behind the e-mail address looked up).
        for h in ids.fields.iter().chain(&ids.ids).chain(&ids.object_args) {
            st.own(*h);
        }
    } else {
        st.note_other_subject(about);
        for h in ids.ids.iter().chain(&ids.object_args) {
            st.foreign(*h, about, at);
        }
    }
}

#[cfg(test)]
mod tests;
