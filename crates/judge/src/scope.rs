//! Escalation scopes: who answers for a stopped call.
//!
//! Owns: [`Corroboration`] (when an agent-wide quarantine is justified,
//! `ladder.quarantine` in rule files), [`SourceMark`] (a source of untrusted
//! content, such as a sender address, a URL host or an upstream tool, whose
//! text led to a stopped call; kept in the agent's aggregate) and
//! [`Strike`] (a quarantine-grade event of one session and user).
//!
//! The threat this answers: one agent identity serves many users, and
//! anyone who can put text in front of it (an inbound mail, a review, an
//! issue comment) can make it attempt harm. If every blocked attempt raised
//! the agent's own risk, a handful of planted texts would quarantine the
//! agent for everyone. So a stopped call ends or restricts its session and
//! marks the source of the content behind it; the user answers only for
//! sessions without untrusted content; the agent is quarantined only when
//! events across several sessions and users corroborate it, when harm is
//! attempted after a person refused a hold, or by an operator.

use serde::{Deserialize, Serialize};

use crate::call::Call;
use crate::fingerprint::{self, FpKind};
use crate::ids::{Millis, RiskPoints, RuleId};
use crate::judge::Judge;
use crate::label::{Label, LabelSet};
use crate::state::{AggregateState, SessionState, StateMut};
use crate::verdict::{Action, Decision, Origin, Reason, Verdict};

/// When quarantine-grade events quarantine the whole agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corroboration {
    /// Distinct sessions with a quarantine-grade event within the window.
    pub sessions: u32,
    /// Distinct users among those sessions (sessions without a user count
    /// as one user).
    pub users: u32,
    /// The window, in milliseconds.
    pub within_ms: u64,
    /// A stopped side effect in a session where a person refused a hold
    /// quarantines the agent at once.
    pub after_refused_hold: bool,
    /// Events in sessions that read untrusted content count too (off by
    /// default: those blame the content's source, not the agent).
    pub count_sourced: bool,
    /// How long a user stays restricted after a quarantine-grade event in
    /// a session of theirs without untrusted content, in milliseconds. The
    /// restriction covers only side effects of the kinds that session
    /// attempted: a customer who once tried to cancel someone else's
    /// booking can still read their own records, and after this time act
    /// again (their risk still decays on the ladder).
    pub user_restriction_ms: u64,
}

impl Default for Corroboration {
    fn default() -> Self {
        Corroboration {
            sessions: 5,
            users: 5,
            within_ms: 15 * 60 * 1000,
            after_refused_hold: true,
            count_sourced: false,
            user_restriction_ms: 24 * 60 * 60 * 1000,
        }
    }
}

/// What kind of source a mark names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A sender or author address found next to the injected text.
    Sender,
    /// The host of a URL the call read.
    Host,
    /// The upstream tool, when nothing finer is known.
    Tool,
}

/// A source whose content led to a stopped call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceMark {
    /// Hash of the source (kind and normalised value).
    pub key: u64,
    /// What it is.
    pub kind: SourceKind,
    /// Stopped calls blamed on it.
    pub stops: u32,
    /// When it was first marked.
    pub since: Millis,
    /// When it was last marked.
    pub last: Millis,
}

/// One quarantine-grade event, kept for corroboration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Strike {
    /// Hash of the session.
    pub session: u64,
    /// Hash of the user (0 without one).
    pub user: u64,
    /// When.
    pub at: Millis,
}

/// A session's part of the escalation scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionScope {
    /// Sources of injected content read in this session, first seen first.
    pub(crate) sources: Vec<(u64, SourceKind)>,
    /// The rule whose quarantine-grade event ended the session.
    pub(crate) ended: Option<RuleId>,
    /// A person refused a held call of this session.
    pub(crate) refused_hold: bool,
}

impl SessionScope {
    pub(crate) fn heap_bytes(&self) -> usize {
        self.sources.capacity() * std::mem::size_of::<(u64, SourceKind)>()
            + self.ended.as_ref().map_or(0, |r| r.as_str().len())
    }

    /// Remembers the source of injected content (bounded).
    pub(crate) fn add_source(&mut self, src: (u64, SourceKind)) {
        if !self.sources.contains(&src) && self.sources.len() < SESSION_SOURCES {
            self.sources.push(src);
        }
    }
}

/// An agent's (or user's) part of the escalation scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateScope {
    /// Sources marked by stopped calls.
    pub(crate) marks: Vec<SourceMark>,
    /// Quarantine-grade events awaiting corroboration.
    pub(crate) strikes: Vec<Strike>,
}

impl AggregateScope {
    pub(crate) fn heap_bytes(&self) -> usize {
        self.marks.capacity() * std::mem::size_of::<SourceMark>()
            + self.strikes.capacity() * std::mem::size_of::<Strike>()
    }

    /// The marked sources.
    pub fn marks(&self) -> &[SourceMark] {
        &self.marks
    }
}

/// Most marked sources one agent keeps (the least recently marked go).
pub(crate) const MAX_MARKS: usize = 32;
/// Most strikes one agent keeps.
const MAX_STRIKES: usize = 16;
/// Most sources of injected content one session remembers.
pub(crate) const SESSION_SOURCES: usize = 8;

/// The hash naming a source.
pub(crate) fn key(kind: SourceKind, value: &str) -> u64 {
    let tag: &[u8] = match kind {
        SourceKind::Sender => b"sender:",
        SourceKind::Host => b"host:",
        SourceKind::Tool => b"tool:",
    };
    let mut v = Vec::with_capacity(tag.len() + value.len());
    v.extend_from_slice(tag);
    v.extend(value.trim().bytes().map(|b| b.to_ascii_lowercase()));
    fingerprint::hash(FpKind::Value, &v)
}

/// Marks `src` as the source of content behind a stopped call.
pub(crate) fn mark(marks: &mut Vec<SourceMark>, src: (u64, SourceKind), now: Millis) {
    if let Some(m) = marks.iter_mut().find(|m| m.key == src.0) {
        m.stops = m.stops.saturating_add(1);
        m.last = now.max(m.last);
        return;
    }
    if marks.len() >= MAX_MARKS
        && let Some(oldest) = marks
            .iter()
            .enumerate()
            .min_by_key(|(_, m)| m.last)
            .map(|(i, _)| i)
    {
        marks.swap_remove(oldest);
    }
    marks.push(SourceMark {
        key: src.0,
        kind: src.1,
        stops: 1,
        since: now,
        last: now,
    });
}

/// The mark of `key`, if the source is marked.
pub(crate) fn marked(marks: &[SourceMark], key: u64) -> Option<&SourceMark> {
    marks.iter().find(|m| m.key == key)
}

/// Records a strike and says how many distinct sessions and users the
/// strikes inside the window come from.
pub(crate) fn strike(
    strikes: &mut Vec<Strike>,
    s: Strike,
    window_ms: u64,
    now: Millis,
) -> (u32, u32) {
    strikes.retain(|k| now.since(k.at) <= window_ms);
    if strikes.len() >= MAX_STRIKES {
        strikes.remove(0);
    }
    strikes.push(s);
    let mut sessions: Vec<u64> = strikes.iter().map(|k| k.session).collect();
    sessions.sort_unstable();
    sessions.dedup();
    let mut users: Vec<u64> = strikes.iter().map(|k| k.user).collect();
    users.sort_unstable();
    users.dedup();
    (
        u32::try_from(sessions.len()).unwrap_or(u32::MAX),
        u32::try_from(users.len()).unwrap_or(u32::MAX),
    )
}

/// Object keys whose string value names who wrote the object's content.
const SENDER_KEYS: [&str; 9] = [
    "from",
    "sender",
    "author",
    "reply_to",
    "posted_by",
    "submitted_by",
    "user",
    "username",
    "created_by",
];

/// The senders named in `obj` itself (not in nested objects).
fn senders_of(obj: &serde_json::Map<String, serde_json::Value>, out: &mut Vec<(u64, SourceKind)>) {
    for k in SENDER_KEYS {
        if let Some(s) = obj.get(k).and_then(serde_json::Value::as_str)
            && !s.trim().is_empty()
            && out.len() < SESSION_SOURCES * 2
        {
            let e = (key(SourceKind::Sender, s), SourceKind::Sender);
            if !out.contains(&e) {
                out.push(e);
            }
        }
    }
}

/// Every sender named anywhere in `v` (bounded), and those of the objects
/// holding a string for which `injected` is true.
pub(crate) fn senders(
    v: &serde_json::Value,
    injected: &dyn Fn(&str) -> bool,
    all: &mut Vec<(u64, SourceKind)>,
    blamed: &mut Vec<(u64, SourceKind)>,
    depth: u32,
) {
    if depth > 16 {
        return;
    }
    match v {
        serde_json::Value::Object(o) => {
            senders_of(o, all);
            if o.values().any(|x| x.as_str().is_some_and(injected)) {
                senders_of(o, blamed);
            }
            for x in o.values() {
                senders(x, injected, all, blamed, depth + 1);
            }
        }
        serde_json::Value::Array(a) => {
            for x in a {
                senders(x, injected, all, blamed, depth + 1);
            }
        }
        _ => {}
    }
}

/// The host of an `http(s)` URL, lower-cased, without port or user.
pub(crate) fn url_host(s: &str) -> Option<&str> {
    let t = s.trim();
    let rest = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let auth = &rest[..end];
    let host = auth.rsplit('@').next().unwrap_or(auth);
    let host = host.split(':').next().unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

/// Labels of tools whose calls change something outside the agent.
pub(crate) fn side_effects() -> LabelSet {
    LabelSet::of(&[
        Label::Egress,
        Label::Money,
        Label::Identity,
        Label::Write,
        Label::Destructive,
    ])
}

/// What a result from a marked source says in place of a signal.
pub(crate) const MARKED_SOURCE: &str =
    "content from a source an earlier stopped call was blamed on";

/// The first of `origins` that is marked, senders and hosts before tools.
pub(crate) fn marked_origin(
    marks: &[SourceMark],
    origins: &[(u64, SourceKind)],
) -> Option<(u64, SourceKind)> {
    if marks.is_empty() {
        return None;
    }
    let mut hit = None;
    for o in origins {
        if marked(marks, o.0).is_some() {
            if o.1 != SourceKind::Tool {
                return Some(*o);
            }
            hit = hit.or(Some(*o));
        }
    }
    hit
}

/// The sources a call's result comes from besides its senders: the hosts
/// of the URLs it read and the tool. When the result was injected and no
/// sender was blamed, the host (or else the tool) is.
pub(crate) fn call_origins(
    call: &Call<'_>,
    origins: &mut Vec<(u64, SourceKind)>,
    blamed: &mut Vec<(u64, SourceKind)>,
    injected: bool,
) {
    let mut host = None;
    if let Some(o) = call.args.as_object() {
        for v in o.values() {
            if let Some(h) = v.as_str().and_then(url_host) {
                let e = (key(SourceKind::Host, h), SourceKind::Host);
                host = host.or(Some(e));
                if !origins.contains(&e) {
                    origins.push(e);
                }
            }
        }
    }
    let tool = (
        key(
            SourceKind::Tool,
            &format!("{}/{}", call.server.unwrap_or_default(), call.tool),
        ),
        SourceKind::Tool,
    );
    origins.push(tool);
    if injected && blamed.is_empty() {
        blamed.push(host.unwrap_or(tool));
    }
}

/// The kinds of side effect a user's restriction covers: those of the
/// call that caused it, its most specific ones (a cancellation is a write
/// too, but an address change is not a cancellation); empty (every side
/// effect) when it was a read.
pub(crate) fn restricted_kinds(labels: LabelSet) -> LabelSet {
    let all = labels.intersection(side_effects());
    let specific = all.intersection(LabelSet::of(&[
        Label::Egress,
        Label::Money,
        Label::Identity,
        Label::Destructive,
    ]));
    if specific.is_empty() { all } else { specific }
}

/// The refusal of a call whose user is restricted or whose session was
/// ended by a quarantine-grade event; `None` when neither holds.
pub(crate) fn restriction(
    call: &Call<'_>,
    session: &SessionState,
    user: Option<&AggregateState>,
    (risk, index, labels, now): (u32, u32, LabelSet, Millis),
    only_own: bool,
) -> Option<Verdict> {
    // A user's restriction answers for what they did to others: a call on
    // nothing but their own records (the authenticated subject's account
    // and objects) is judged as usual.
    let (rule, message) = match (
        user.and_then(|u| u.quarantine.as_ref())
            .filter(|q| q.refuses(labels, now) && !(only_own && q.until.is_some())),
        &session.scope.ended,
    ) {
        (Some(q), _) => (
            q.rule.clone(),
            format!(
                "user `{}` is restricted since {} by `{}`",
                call.user.map_or("", |u| u.as_str()),
                q.since.rfc3339(),
                q.rule
            ),
        ),
        (None, Some(r)) => (r.clone(), format!("the session was ended by `{r}`")),
        (None, None) => return None,
    };
    Some(Verdict {
        decision: Decision::Deny,
        reasons: vec![Reason {
            rule,
            origin: Origin::Quarantine,
            action: Action::Deny,
            message,
            facts: Vec::new(),
        }],
        risk_before: RiskPoints(risk),
        risk_after: RiskPoints(risk),
        provenance: Vec::new(),
        alert: false,
        index,
        labels,
    })
}

/// The reason a quarantine-grade event ended its session instead of
/// quarantining the agent.
pub(crate) fn session_ended(
    rule: &RuleId,
    counts: Option<(u32, u32)>,
    c: &Corroboration,
    sourced: bool,
    has_user: bool,
) -> Reason {
    let why = match counts {
        Some((s, u)) => format!(
            "agent-wide quarantine needs {} sessions of {} users within {} min, seen {s} of {u}",
            c.sessions,
            c.users,
            c.within_ms / 60_000
        ),
        None => {
            "the session read untrusted content: its source is marked, not the agent".to_owned()
        }
    };
    let user = if !sourced && has_user {
        "; the user is restricted"
    } else {
        ""
    };
    Reason {
        rule: RuleId::new("session-ended"),
        origin: Origin::Quarantine,
        action: Action::Deny,
        message: format!("`{rule}` ended this session{user} ({why})"),
        facts: Vec::new(),
    }
}

/// The reason of a quarantine for harm attempted after a refused hold.
pub(crate) fn after_refused_hold(rule: &RuleId) -> Reason {
    Reason {
        rule: rule.clone(),
        origin: Origin::Quarantine,
        action: Action::Quarantine,
        message:
            "a side effect was attempted again after a person refused a held call in this session"
                .to_owned(),
        facts: Vec::new(),
    }
}

impl Judge {
    /// Records that a person refused a held call of this session: a later
    /// stopped side effect in it quarantines the agent
    /// (`ladder.quarantine.after_refused_hold`). A hold that times out is
    /// not a refusal.
    pub fn record_refused(&self, state: StateMut<'_>) {
        state.session.scope.refused_hold = true;
    }
}

impl AggregateState {
    /// Sources of untrusted content marked by stopped calls (an agent's).
    pub fn marked_sources(&self) -> &[SourceMark] {
        &self.scope.marks
    }
}

impl SessionState {
    /// The rule whose quarantine-grade event ended this session, if any.
    pub fn ended_by(&self) -> Option<&RuleId> {
        self.scope.ended.as_ref()
    }
}

#[cfg(test)]
mod tests;
