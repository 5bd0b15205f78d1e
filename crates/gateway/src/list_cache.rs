//! The last merged list answer per agent view, reused while every input it
//! was built from is unchanged: agents re-list constantly while nothing
//! changed, and parsing, screening, filtering and writing the merged list
//! costs far more than asking the upstreams and comparing their bytes.
//!
//! The upstreams are still asked every time; an answer is reused only when
//! each of them answered with exactly the bytes it answered last time (all
//! pages, the same ones failing), under the same tool pins, the same judge
//! and the same screening, for the same principal (as the policy reads it),
//! era and method.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::call::Caller;
use crate::identity::Principal;
use crate::integrity::Version;
use crate::upstream::UpstreamError;

/// Entries kept at most: one per (principal, era, method) in use. Enough
/// for every agent of a typical deployment to re-list from cache; small
/// enough that agents with ever new identities (one JWT subject per task)
/// cannot grow it without bound. The oldest entry makes room.
const MAX_ENTRIES: usize = 256;

/// Bytes kept at most over all entries (upstream pages plus answer): a
/// deployment with large tool lists keeps fewer agents' views rather than
/// more memory.
const MAX_BYTES: usize = 16 << 20;

/// One page of an upstream's list, as it answered.
#[derive(Debug)]
pub(crate) struct Page {
    /// The `result`, byte for byte.
    pub(crate) raw: Box<RawValue>,
    /// Its `nextCursor`, when it names a further page.
    pub(crate) next: Option<String>,
}

/// Every upstream's answer to one list, by upstream index: its pages, or
/// why it failed.
pub(crate) type Answers = Vec<Result<Vec<Page>, UpstreamError>>;

/// Whether two fetches would merge into the same answer: the same
/// upstreams failed, and the others answered the same pages byte for byte.
/// (A failure's reason does not reach the answer: the upstream is left out.)
pub(crate) fn same_answers(a: &Answers, b: &Answers) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Ok(p), Ok(q)) => {
                p.len() == q.len() && p.iter().zip(q).all(|(p, q)| p.raw.get() == q.raw.get())
            }
            (Err(_), Err(_)) => true,
            _ => false,
        })
}

/// The `nextCursor` of upstream `i`'s page `k`, taken from `known` when
/// that page is the same bytes as then, else read from the page.
pub(crate) fn cursor_of(
    known: Option<&Answers>,
    i: usize,
    k: usize,
    raw: &RawValue,
) -> Option<String> {
    let same = known
        .and_then(|a| a.get(i)?.as_ref().ok()?.get(k))
        .filter(|p| p.raw.get() == raw.get());
    match same {
        Some(p) => p.next.clone(),
        None => next_cursor(raw),
    }
}

/// The `nextCursor` of a list result, when it is a non-empty string (the
/// result parsed as a `Value`, `result.get("nextCursor").and_then(as_str)`
/// with the last of duplicate keys), read without building the result.
pub(crate) fn next_cursor(result: &RawValue) -> Option<String> {
    let mut de = serde_json::Deserializer::from_str(result.get());
    de.deserialize_any(CursorScan)
        .ok()
        .flatten()
        .filter(|c| !c.is_empty())
}

struct CursorScan;

impl<'de> Visitor<'de> for CursorScan {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list result object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        let mut cursor = None;
        while let Some(is_cursor) = map.next_key_seed(IsCursorKey)? {
            if is_cursor {
                cursor = match map.next_value::<Value>()? {
                    Value::String(s) => Some(s),
                    _ => None,
                };
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(cursor)
    }
}

/// A key, answered as whether it is `nextCursor` (escaped or not).
struct IsCursorKey;

impl<'de> DeserializeSeed<'de> for IsCursorKey {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for IsCursorKey {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == "nextCursor")
    }
}

/// The state of the gateway an answer was built under, besides the
/// upstreams' bytes: equal stamps mean the same pins and findings, the same
/// judge (policy, rules, learnt tools) and the same last screening (so the
/// integrity status and what the judge learnt are as a fresh list leaves
/// them). The rest a merge reads is fixed while the gateway runs (prefixes,
/// whether judging is on: a reload that changes them needs a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) integrity: Version,
    pub(crate) judge: u64,
    pub(crate) screenings: u64,
}

/// Whose view an answer is: the method, the era (modern answers carry
/// `resultType`, cache hints and server info) and the principal as the
/// policy reads it when filtering lists (agent, user, attributes; not how
/// it authenticated).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Slot {
    method: &'static str,
    modern: bool,
    agent: Arc<str>,
    user: Option<Arc<str>>,
    attributes: Arc<[(String, String)]>,
}

impl Slot {
    /// `caller`'s view of `method`'s list.
    pub(crate) fn of(caller: &Caller, method: &'static str) -> Slot {
        let Principal {
            agent,
            user,
            attributes,
            ..
        } = caller.principal();
        Slot {
            method,
            modern: caller.is_modern(),
            agent: agent.clone(),
            user: user.clone(),
            attributes: attributes.clone(),
        }
    }
}

/// A routing claim a merge made: replayed when its answer is reused, so a
/// reused answer leaves the routing tables as a fresh merge would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim {
    /// An un-prefixed tool or prompt name, and whether the upstream got it.
    Name(usize, String, bool),
    /// A resource URI, and whether the upstream got it.
    Uri(usize, String, bool),
    /// A resource template.
    Template(usize, String),
}

impl Claim {
    fn bytes(&self) -> usize {
        match self {
            Claim::Name(_, s, _) | Claim::Uri(_, s, _) | Claim::Template(_, s) => s.len(),
        }
    }
}

/// One answer and what it was built from.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) stamp: Stamp,
    pub(crate) answers: Answers,
    /// Upstreams whose pages did not parse (left out, and logged again
    /// when the answer is reused).
    pub(crate) malformed: Vec<(usize, UpstreamError)>,
    pub(crate) claims: Vec<Claim>,
    /// The `result` as written to the agent (without the JSON-RPC id).
    pub(crate) result: Box<RawValue>,
}

impl Entry {
    fn bytes(&self) -> usize {
        let pages: usize = self
            .answers
            .iter()
            .flat_map(|a| a.iter().flatten())
            .map(|p| p.raw.get().len() + p.next.as_ref().map_or(0, String::len))
            .sum();
        let claims: usize = self.claims.iter().map(Claim::bytes).sum();
        pages + claims + self.result.get().len()
    }

    /// Whether this answer is what merging `answers` under `stamp` would
    /// give.
    pub(crate) fn answers_for(&self, stamp: Stamp, answers: &Answers) -> bool {
        self.stamp == stamp && same_answers(&self.answers, answers)
    }
}

/// The last answer per [`Slot`], bounded in entries and bytes.
#[derive(Debug, Default)]
pub(crate) struct ListCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Slot, (u64, usize, Arc<Entry>)>,
    /// Insertion counter (the oldest entry has the smallest).
    stored: u64,
    bytes: usize,
}

impl ListCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The last answer built for `slot`, if any.
    pub(crate) fn get(&self, slot: &Slot) -> Option<Arc<Entry>> {
        self.lock().entries.get(slot).map(|(_, _, e)| e.clone())
    }

    /// Keeps `entry` as `slot`'s answer, replacing the previous one and
    /// evicting the oldest ones beyond the bounds.
    pub(crate) fn store(&self, slot: Slot, entry: Entry) {
        let size = entry.bytes();
        if size > MAX_BYTES {
            return;
        }
        let mut inner = self.lock();
        inner.stored += 1;
        let seq = inner.stored;
        if let Some((_, old, _)) = inner.entries.insert(slot, (seq, size, Arc::new(entry))) {
            inner.bytes -= old;
        }
        inner.bytes += size;
        while inner.entries.len() > MAX_ENTRIES || inner.bytes > MAX_BYTES {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, (seq, _, _))| *seq)
                .map(|(s, _)| s.clone())
            else {
                break;
            };
            if let Some((_, old, _)) = inner.entries.remove(&oldest) {
                inner.bytes -= old;
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Answers built and kept so far (a reused answer is not counted).
    #[cfg(test)]
    pub(crate) fn stored(&self) -> u64 {
        self.lock().stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::ModernCaller;
    use crate::upstream::http::ClientProfile;
    use proptest::prelude::*;

    fn page(text: &str) -> Page {
        let raw = serde_json::value::RawValue::from_string(text.to_owned()).expect("json");
        let next = next_cursor(&raw);
        Page { raw, next }
    }

    fn failed() -> UpstreamError {
        UpstreamError::Failed {
            upstream: "up".into(),
            reason: "down".into(),
        }
    }

    fn caller(agent: &str, team: &str) -> Caller {
        Caller::Modern(Arc::new(ModernCaller {
            profile: ClientProfile::gateway(),
            principal: Principal {
                agent: agent.into(),
                user: None,
                attributes: Arc::new([("team".to_owned(), team.to_owned())]),
                method: "api_key",
                trusted_intent: false,
            },
            session: None,
            param_headers: Vec::new(),
        }))
    }

    fn stamp(judge: u64) -> Stamp {
        static VERSION: std::sync::OnceLock<Version> = std::sync::OnceLock::new();
        let integrity = *VERSION.get_or_init(|| {
            crate::integrity::Integrity::ephemeral()
                .expect("integrity")
                .version()
                .expect("version")
        });
        Stamp {
            integrity,
            judge,
            screenings: 0,
        }
    }

    fn entry(stamp: Stamp, answers: Answers, result: &str) -> Entry {
        Entry {
            stamp,
            answers,
            malformed: Vec::new(),
            claims: Vec::new(),
            result: serde_json::value::RawValue::from_string(result.to_owned()).expect("json"),
        }
    }

    /// The reference: the cursor as the merge reads it from the parsed page.
    fn cursor_by_value(text: &str) -> Option<String> {
        let v: Value = serde_json::from_str(text).ok()?;
        v.get("nextCursor")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
    }

    #[test]
    fn the_cursor_is_read_as_the_parsed_page_would_give_it() {
        for text in [
            r#"{"tools":[],"nextCursor":"p2"}"#,
            r#"{"nextCursor":"a","tools":[{"nextCursor":"inner"}],"nextCursor":"b"}"#,
            r#"{"next\u0043ursor":"escaped"}"#,
            r#"{"nextCursor":""}"#,
            r#"{"nextCursor":7}"#,
            r#"{"nextCursor":null}"#,
            r#"{"tools":[]}"#,
            r#"["nextCursor","x"]"#,
            r#""nextCursor""#,
            r"3",
        ] {
            let raw = serde_json::value::RawValue::from_string(text.to_owned()).expect("json");
            assert_eq!(next_cursor(&raw), cursor_by_value(text), "{text}");
        }
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(Value::from),
            "[a-zA-Z0-9 ]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![Just("nextCursor".to_owned()), "[a-z]{1,4}"],
                        inner
                    ),
                    0..4
                )
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_cursor_scan_agrees_with_the_parsed_page(v in json()) {
            let text = v.to_string();
            let raw = serde_json::value::RawValue::from_string(text.clone()).expect("json");
            prop_assert_eq!(next_cursor(&raw), cursor_by_value(&text));
        }
    }

    #[test]
    fn a_known_page_gives_its_cursor_and_a_changed_one_is_read_again() {
        let known: Answers = vec![Ok(vec![page(r#"{"tools":[],"nextCursor":"c1"}"#)])];
        let same =
            serde_json::value::RawValue::from_string(r#"{"tools":[],"nextCursor":"c1"}"#.into())
                .expect("json");
        let changed =
            serde_json::value::RawValue::from_string(r#"{"tools":[],"nextCursor":"c2"}"#.into())
                .expect("json");
        assert_eq!(cursor_of(Some(&known), 0, 0, &same).as_deref(), Some("c1"));
        assert_eq!(
            cursor_of(Some(&known), 0, 0, &changed).as_deref(),
            Some("c2")
        );
        assert_eq!(
            cursor_of(Some(&known), 1, 0, &changed).as_deref(),
            Some("c2")
        );
        assert_eq!(cursor_of(None, 0, 0, &changed).as_deref(), Some("c2"));
    }

    #[test]
    fn answers_match_only_byte_for_byte_with_the_same_failures() {
        let a =
            || -> Answers { vec![Ok(vec![page(r#"{"tools":[{"name":"x"}]}"#)]), Err(failed())] };
        assert!(same_answers(&a(), &a()));
        // Same value, written differently: a fresh merge could tell them apart.
        let spaced: Answers = vec![
            Ok(vec![page(r#"{"tools": [{"name":"x"}]}"#)]),
            Err(failed()),
        ];
        assert!(!same_answers(&a(), &spaced));
        // The failing upstream recovered.
        let recovered: Answers = vec![Ok(vec![page(r#"{"tools":[{"name":"x"}]}"#)]), Ok(vec![])];
        assert!(!same_answers(&a(), &recovered));
        // A further page.
        let more: Answers = vec![
            Ok(vec![
                page(r#"{"tools":[{"name":"x"}]}"#),
                page(r#"{"tools":[]}"#),
            ]),
            Err(failed()),
        ];
        assert!(!same_answers(&a(), &more));
        assert!(!same_answers(
            &a(),
            &vec![Ok(vec![page(r#"{"tools":[{"name":"x"}]}"#)])]
        ));
    }

    #[test]
    fn an_entry_answers_only_under_its_own_stamp() {
        let answers = || -> Answers { vec![Ok(vec![page(r#"{"tools":[]}"#)])] };
        let e = entry(stamp(1), answers(), r#"{"tools":[]}"#);
        assert!(e.answers_for(stamp(1), &answers()));
        assert!(!e.answers_for(stamp(2), &answers()));
        let mut other = stamp(1);
        other.screenings = 1;
        assert!(!e.answers_for(other, &answers()));
    }

    #[test]
    fn each_principal_and_era_has_its_own_slot() {
        let a = Slot::of(&caller("a", "x"), "tools/list");
        assert_eq!(a, Slot::of(&caller("a", "x"), "tools/list"));
        assert_ne!(a, Slot::of(&caller("b", "x"), "tools/list"));
        assert_ne!(a, Slot::of(&caller("a", "y"), "tools/list"));
        assert_ne!(a, Slot::of(&caller("a", "x"), "prompts/list"));
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_the_oldest() {
        let cache = ListCache::default();
        for n in 0..MAX_ENTRIES + 10 {
            let slot = Slot::of(&caller(&format!("agent-{n}"), "x"), "tools/list");
            cache.store(slot, entry(stamp(0), Vec::new(), "{}"));
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
        assert!(
            cache
                .get(&Slot::of(&caller("agent-0", "x"), "tools/list"))
                .is_none()
        );
        let newest = format!("agent-{}", MAX_ENTRIES + 9);
        assert!(
            cache
                .get(&Slot::of(&caller(&newest, "x"), "tools/list"))
                .is_some()
        );
        // Storing again for one slot replaces its entry.
        let slot = Slot::of(&caller(&newest, "x"), "tools/list");
        cache.store(slot.clone(), entry(stamp(5), Vec::new(), "{}"));
        assert_eq!(cache.len(), MAX_ENTRIES);
        assert_eq!(cache.get(&slot).map(|e| e.stamp), Some(stamp(5)));
    }

    #[test]
    fn the_cache_is_bounded_in_bytes() {
        let cache = ListCache::default();
        let big = format!("\"{}\"", "x".repeat(MAX_BYTES / 3));
        for n in 0..4 {
            let slot = Slot::of(&caller(&format!("agent-{n}"), "x"), "tools/list");
            cache.store(slot, entry(stamp(0), Vec::new(), &big));
        }
        assert_eq!(cache.len(), 2);
        let huge = format!("\"{}\"", "x".repeat(MAX_BYTES));
        let slot = Slot::of(&caller("huge", "x"), "tools/list");
        cache.store(slot.clone(), entry(stamp(0), Vec::new(), &huge));
        assert!(cache.get(&slot).is_none());
    }
}
