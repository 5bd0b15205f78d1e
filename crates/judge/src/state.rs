//! Behaviour state kept between calls.
//!
//! Owns: [`SessionState`] (one per behavioural session), [`AggregateState`]
//! (one per agent and one per user, so patterns spread over several
//! sessions are seen) and [`StateMut`], the mutable view the judge works on.
//! The caller owns and stores these values; the judge mutates them in place
//! and never keeps references. All of them are plain data with serde
//! support so a shared store (Redis) can hold them later.
//!
//! Everything is bounded: provenance keeps at most a fixed number of
//! fingerprints and sources (oldest evicted first), sequence rules keep a few
//! partial matches per rule and group, threshold rules keep only events
//! inside their window, baselines keep a bounded set of hashes.

use serde::{Deserialize, Serialize};

use crate::fingerprint::{Fp, FpKind};
use crate::ids::{Millis, RuleId, SessionKey, ToolName};
use crate::label::LabelSet;

/// Where a fingerprinted value was seen: one observed tool result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Sequence number inside the provenance store.
    pub seq: u32,
    /// The session the result belonged to.
    pub session: SessionKey,
    /// The call index (0-based) inside that session.
    pub index: u32,
    /// The tool that produced the result.
    pub tool: ToolName,
    /// The read labels of the tool (plus any found by detectors).
    pub labels: LabelSet,
    /// The result contained instruction-like text aimed at the agent.
    pub injected: bool,
    /// When the result was observed (for the agent's cross-session window).
    #[serde(default)]
    pub at: Millis,
}

/// One remembered fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvEntry {
    /// The fingerprint hash.
    pub fp: u64,
    /// The first source it was seen in.
    pub src: u32,
    /// Union of the labels of every source it was seen in.
    pub labels: LabelSet,
    /// The kind of value.
    pub kind: FpKind,
    /// Also seen in a result that was not untrusted.
    pub trusted_seen: bool,
    /// Seen in a result that carried injected instructions.
    pub injected: bool,
    /// Kinds of action (`instruct::SEND`, ...) text asked for next to
    /// this value.
    #[serde(default)]
    pub asked: u8,
    /// Also seen in a result that was not untrusted, outside any request
    /// (a contact list, the CRM): the value stands on its own.
    #[serde(default)]
    pub vouched: bool,
}

/// A bounded store of fingerprints and their sources, sorted by hash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    entries: Vec<ProvEntry>,
    sources: Vec<Source>,
    next_seq: u32,
    /// A 1024-bit Bloom filter over the entries (two probes), empty while
    /// the store is empty: most lookups miss, and the filter answers them
    /// without a binary search.
    #[serde(default)]
    filter: Vec<u64>,
}

const FILTER_WORDS: usize = 16;

fn probes(fp: u64) -> [(usize, u64); 2] {
    let a = (fp & 1023) as usize;
    let b = ((fp >> 23) & 1023) as usize;
    [(a / 64, 1 << (a % 64)), (b / 64, 1 << (b % 64))]
}

impl Provenance {
    /// Records the fingerprints of one result. Keeps at most `cap_entries`
    /// fingerprints and `cap_sources` sources, evicting the oldest.
    ///
    /// The store ends exactly as if each fingerprint had been inserted in
    /// turn (the first occurrence of a hash keeps its kind and source), but
    /// in one pass: known hashes are updated in place, new ones merged in
    /// hash order, so each entry moves at most once per result (inserting
    /// one at a time moved the store's tail for every new fingerprint).
    /// `asked` are fingerprints among `fps` that untrusted text asked an
    /// action for, with the kinds asked (see `instruct`).
    pub(crate) fn record(
        &mut self,
        mut source: Source,
        fps: &[Fp],
        asked: &[(u64, u8)],
        cap_entries: usize,
        cap_sources: usize,
    ) {
        source.seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let seq = source.seq;
        let trusted = !source.labels.contains(crate::label::Label::Untrusted);
        // Values this result asked an action for do not vouch for themselves.
        let vouch = |fp: u64| trusted && !asked.iter().any(|(h, _)| *h == fp);
        let (labels, injected) = (source.labels, source.injected);
        let had_sources = !self.sources.is_empty();
        self.sources.push(source);
        let filtered = self.filter.len() == FILTER_WORDS;
        // The new hashes with the position of their first occurrence.
        let mut fresh: Vec<(u64, u32)> = Vec::with_capacity(fps.len());
        // Results repeat values (a domain per row, a boilerplate line): a
        // repeat changes nothing, so a small table of hashes already seen
        // in this result skips it (a slot keeps its first hash; a hash that
        // finds its slot taken is simply handled again).
        let mut seen = [0u16; 256];
        for (i, f) in fps.iter().enumerate() {
            let slot = &mut seen[((f.hash ^ (f.hash >> 32)) & 255) as usize];
            match usize::from(*slot).checked_sub(1).and_then(|j| fps.get(j)) {
                Some(first) if first.hash == f.hash => continue,
                Some(_) => {}
                None => *slot = u16::try_from(i + 1).unwrap_or(0),
            }
            // The filter holds every entry: a hash it lacks is new, without
            // a binary search (most of a new result's hashes).
            let known = (!filtered || self.may_hold(f.hash))
                .then(|| self.entries.binary_search_by_key(&f.hash, |e| e.fp).ok())
                .flatten();
            match known {
                Some(k) => {
                    let e = &mut self.entries[k];
                    e.labels = e.labels.union(labels);
                    e.trusted_seen |= trusted;
                    e.injected |= injected;
                    e.vouched |= vouch(f.hash);
                }
                None => fresh.push((f.hash, u32::try_from(i).unwrap_or(u32::MAX))),
            }
        }
        // A hash met twice keeps its first kind, as inserting the first and
        // updating it with the second did.
        fresh.sort_unstable();
        fresh.dedup_by_key(|p| p.0);
        self.merge(&fresh, |fp, at| ProvEntry {
            fp,
            src: seq,
            labels,
            kind: fps.get(at as usize).map_or(FpKind::Value, |f| f.kind),
            trusted_seen: trusted,
            injected,
            asked: 0,
            vouched: vouch(fp),
        });
        self.mark_asked(asked);
        let dropped = self.sources.len() > cap_sources;
        if dropped {
            let drop = self.sources.len() - cap_sources;
            self.sources.drain(..drop);
        }
        let oldest = self.sources.first().map_or(seq, |s| s.seq);
        // Every entry is at least as young as the oldest source when a
        // record ends, so an entry can be older only when sources were just
        // dropped (or none were held, or the sequence wrapped).
        let stale = dropped || !had_sources || seq < oldest;
        if self.entries.len() > cap_entries || stale {
            self.evict(cap_entries, oldest);
        } else if filtered {
            // Nothing left the store: the filter only gains the new hashes.
            for &(fp, _) in &fresh {
                for (w, bit) in probes(fp) {
                    self.filter[w] |= bit;
                }
            }
        } else {
            self.rebuild_filter();
        }
    }

    /// Marks the entries of `asked` with the kinds of action asked.
    fn mark_asked(&mut self, asked: &[(u64, u8)]) {
        for &(fp, kinds) in asked {
            if let Ok(i) = self.entries.binary_search_by_key(&fp, |e| e.fp) {
                self.entries[i].asked |= kinds;
            }
        }
    }

    /// Drops the entries older than the `oldest` source and then, while
    /// more than `cap` remain, those of the oldest sources (every entry of
    /// the source at the cut goes), and rebuilds the filter: one pass to
    /// count the entries per source, one to keep and re-filter them (the
    /// sources are a few dozen consecutive seqs; a store whose seqs are
    /// spread wider takes the sorting path).
    fn evict(&mut self, cap: usize, oldest: u32) {
        let mut counts = [0u32; 64];
        let (mut kept, mut spread) = (0usize, false);
        for e in &self.entries {
            if e.src >= oldest {
                kept += 1;
                match counts.get_mut(e.src.wrapping_sub(oldest) as usize) {
                    Some(c) => *c += 1,
                    None => spread = true,
                }
            }
        }
        if spread {
            self.entries.retain(|e| e.src >= oldest);
            if self.entries.len() > cap {
                let cut = self.eviction_cut(cap);
                self.entries.retain(|e| e.src > cut);
            }
            self.rebuild_filter();
            return;
        }
        // The youngest source seq that goes (entries at or below it go).
        let mut cut = oldest.wrapping_sub(1);
        if kept > cap {
            // None left when `cap` is 0.
            cut = u32::MAX;
            let rank = kept - cap;
            let mut below = 0usize;
            for (d, c) in counts.iter().enumerate() {
                below += *c as usize;
                if below > rank {
                    cut = oldest.wrapping_add(d as u32);
                    break;
                }
            }
        }
        let keep_all_from_oldest = kept <= cap;
        let mut filter = [0u64; FILTER_WORDS];
        self.entries.retain(|e| {
            let keep = e.src >= oldest && (keep_all_from_oldest || e.src > cut);
            if keep {
                for (w, bit) in probes(e.fp) {
                    filter[w] |= bit;
                }
            }
            keep
        });
        self.filter.clear();
        if !self.entries.is_empty() {
            self.filter.extend_from_slice(&filter);
        }
    }

    /// Merges the new hashes `fresh` (sorted, unique, none of them held)
    /// into the sorted entries, from the back, and grows the buffer as
    /// inserting them one at a time would have (doubling), so memory use is
    /// unchanged.
    fn merge(&mut self, fresh: &[(u64, u32)], entry: impl Fn(u64, u32) -> ProvEntry) {
        let (n, k) = (self.entries.len(), fresh.len());
        let Some(&(fp0, i0)) = fresh.first() else {
            return;
        };
        let mut cap = self.entries.capacity();
        while cap < n + k {
            cap = (cap * 2).max(4);
        }
        self.entries.reserve_exact(cap - n);
        self.entries.resize(n + k, entry(fp0, i0));
        // From the largest new hash down: the held entries above it move up
        // by the number of new ones still to place, as one block; each held
        // entry moves once.
        let mut i = n;
        for (j, &(fp, at)) in fresh.iter().enumerate().rev() {
            let pos = self.entries[..i].partition_point(|e| e.fp < fp);
            self.entries.copy_within(pos..i, pos + j + 1);
            self.entries[pos + j] = entry(fp, at);
            i = pos;
        }
    }

    /// The source seq at or below which entries go so that at most `cap`
    /// remain: the `len - cap`-th smallest source of the entries.
    fn eviction_cut(&self, cap: usize) -> u32 {
        let mut srcs: Vec<u32> = self.entries.iter().map(|e| e.src).collect();
        srcs.sort_unstable();
        // No entry is kept when `cap` is 0.
        srcs.get(self.entries.len() - cap)
            .copied()
            .unwrap_or(u32::MAX)
    }

    /// False when the Bloom filter rules `fp` out.
    fn may_hold(&self, fp: u64) -> bool {
        probes(fp).iter().all(|(w, bit)| self.filter[*w] & bit != 0)
    }

    fn rebuild_filter(&mut self) {
        self.filter.clear();
        if self.entries.is_empty() {
            return;
        }
        self.filter.resize(FILTER_WORDS, 0);
        for e in &self.entries {
            for (w, bit) in probes(e.fp) {
                self.filter[w] |= bit;
            }
        }
    }

    /// The entry and first source for a fingerprint.
    pub fn lookup(&self, fp: u64) -> Option<(&ProvEntry, &Source)> {
        if self.filter.len() != FILTER_WORDS
            || probes(fp).iter().any(|(w, bit)| self.filter[*w] & bit == 0)
        {
            return None;
        }
        let i = self.entries.binary_search_by_key(&fp, |e| e.fp).ok()?;
        let e = &self.entries[i];
        let s = self.source(e.src)?;
        Some((e, s))
    }

    /// A source by sequence number.
    pub fn source(&self, seq: u32) -> Option<&Source> {
        let first = self.sources.first()?.seq;
        self.sources
            .get(seq.checked_sub(first)? as usize)
            .filter(|s| s.seq == seq)
    }

    /// Number of fingerprints held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<ProvEntry>()
            + self.sources.capacity() * std::mem::size_of::<Source>()
            + self.filter.capacity() * 8
    }
}

/// Risk points with exponential decay, stored in thousandths of a point.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Risk {
    milli: u64,
    at: Millis,
}

impl Risk {
    /// The decayed value at `now`, in thousandths of a point.
    pub(crate) fn value_at(&self, now: Millis, half_life_ms: u64) -> u64 {
        if self.milli == 0 || half_life_ms == 0 {
            return self.milli;
        }
        let dt = now.since(self.at);
        if dt == 0 {
            return self.milli;
        }
        let f = (-(dt as f64) / half_life_ms as f64).exp2();
        ((self.milli as f64) * f) as u64
    }

    /// Whole points at `now`.
    pub fn points_at(&self, now: Millis, half_life_ms: u64) -> u32 {
        u32::try_from(self.value_at(now, half_life_ms) / 1000).unwrap_or(u32::MAX)
    }

    /// Decays to `now` and adds `points`.
    pub(crate) fn add(&mut self, now: Millis, half_life_ms: u64, points: u32) {
        let v = self.value_at(now, half_life_ms);
        self.milli = v.saturating_add(u64::from(points) * 1000);
        self.at = now.max(self.at);
    }

    /// Takes back `points` added earlier (never below zero). Subtracted
    /// undecayed: exact when nothing was added since, a little generous
    /// otherwise, which suits forgiving a call a human vouched for.
    pub(crate) fn take_back(&mut self, points: u32) {
        self.milli = self.milli.saturating_sub(u64::from(points) * 1000);
    }

    /// Sets every point aside; returns the whole points held at `now`.
    pub(crate) fn clear(&mut self, now: Millis, half_life_ms: u64) -> u32 {
        let points = self.points_at(now, half_life_ms);
        self.milli = 0;
        self.at = now.max(self.at);
        points
    }
}

/// A partial match of a sequence rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partial {
    /// Index of the rule in the rule set.
    pub rule: u16,
    /// The next step to match.
    pub next: u8,
    /// When step 0 matched.
    pub started: Millis,
    /// The join key captured at step 0 (0 when the rule has no join).
    pub join: u64,
    /// Session call index that matched each step so far (first 4 steps).
    pub calls: [u32; 4],
}

/// One event in a threshold window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened.
    pub at: Millis,
    /// The summed value (1 for counts).
    pub value: f64,
    /// The distinct key (for `count_distinct`).
    pub key: u64,
}

/// Sliding-window events of one threshold rule for one `per` key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    /// Index of the rule in the rule set.
    pub rule: u16,
    /// Hash of the `per` key (0 when the rule has none).
    pub key: u64,
    /// Events inside the window, oldest first.
    pub events: Vec<Event>,
}

/// Partial matches and counters of one group (a session, agent or user).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Groups {
    /// Sorted by rule, then by start time (the judge keeps this order).
    pub(crate) partials: Vec<Partial>,
    pub(crate) counters: Vec<Counter>,
}

impl Groups {
    fn heap_bytes(&self) -> usize {
        self.partials.capacity() * std::mem::size_of::<Partial>()
            + self.counters.capacity() * std::mem::size_of::<Counter>()
            + self
                .counters
                .iter()
                .map(|c| c.events.capacity() * std::mem::size_of::<Event>())
                .sum::<usize>()
    }

    /// Number of live partial matches.
    pub fn partial_count(&self) -> usize {
        self.partials.len()
    }
}

/// What is normal: tools and destinations used before (bounded hash sets).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    pub(crate) tools: Vec<u64>,
    pub(crate) dests: Vec<u64>,
}

impl Baseline {
    const CAP: usize = 96;

    pub(crate) fn knows_tool(&self, h: u64) -> bool {
        self.tools.contains(&h)
    }

    pub(crate) fn knows_dest(&self, h: u64) -> bool {
        self.dests.contains(&h)
    }

    pub(crate) fn add_tool(&mut self, h: u64) {
        if !self.tools.contains(&h) {
            if self.tools.len() >= Self::CAP {
                self.tools.remove(0);
            }
            self.tools.push(h);
        }
    }

    pub(crate) fn add_dest(&mut self, h: u64) {
        if !self.dests.contains(&h) {
            if self.dests.len() >= Self::CAP {
                self.dests.remove(0);
            }
            self.dests.push(h);
        }
    }

    fn heap_bytes(&self) -> usize {
        (self.tools.capacity() + self.dests.capacity()) * 8
    }
}

/// Why an agent is quarantined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    /// Since when.
    pub since: Millis,
    /// The rule (or ladder step) that quarantined it.
    pub rule: RuleId,
    /// For a user restricted by one of their own sessions: the kinds of
    /// side effect the restriction covers (the labels of the call that
    /// caused it; empty: every side effect). Reads and other kinds are
    /// judged as usual. An agent's quarantine covers every call.
    #[serde(default, skip_serializing_if = "no_labels")]
    pub covers: LabelSet,
    /// When a user's restriction lapses (none: until an operator lifts it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Millis>,
}

fn no_labels(l: &LabelSet) -> bool {
    l.is_empty()
}

impl Quarantine {
    /// A quarantine of everything until an operator lifts it.
    pub fn whole(since: Millis, rule: RuleId) -> Quarantine {
        Quarantine {
            since,
            rule,
            covers: LabelSet::EMPTY,
            until: None,
        }
    }

    /// True when it refuses a call with `labels` at `now`. A scoped (user)
    /// restriction refuses only side effects of the kinds it covers.
    pub fn refuses(&self, labels: LabelSet, now: Millis) -> bool {
        if self.until.is_some_and(|u| now >= u) {
            return false;
        }
        if self.until.is_none() && self.covers.is_empty() {
            return true;
        }
        let side = crate::scope::side_effects();
        let covers = if self.covers.is_empty() {
            side
        } else {
            self.covers
        };
        labels.intersects(covers)
    }
}

/// What an operator's release of a quarantined agent forgave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Released {
    /// The quarantine lifted.
    pub quarantine: Quarantine,
    /// The aggregate's risk points set aside (decayed to the release).
    pub risk: u32,
    /// Quarantine-grade events awaiting corroboration that were forgiven.
    pub strikes: usize,
}

/// The state of one behavioural session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    /// Calls judged so far (the next call's index).
    pub(crate) calls: u32,
    /// Read labels of every result seen (session taint).
    pub(crate) taint: LabelSet,
    /// A result carried instruction-like text.
    pub(crate) injection_seen: bool,
    pub(crate) risk: Risk,
    pub(crate) prov: Provenance,
    pub(crate) groups: Groups,
    pub(crate) baseline: Baseline,
    /// Hash of the last trusted intent text and its value fingerprints.
    pub(crate) intent_hash: u64,
    pub(crate) intent_fps: Vec<u64>,
    /// Kinds of action the intent names (see `instruct`).
    #[serde(default)]
    pub(crate) intent_kinds: u8,
    /// Last time a call was judged.
    pub(crate) last: Millis,
    /// Whom the session acts for and what belongs to them.
    #[serde(default)]
    pub(crate) subject: crate::subject::SubjectState,
    /// Calls per side-effect tool (for the learned count baselines).
    #[serde(default)]
    pub(crate) counts: crate::baseline::SessionCounts,
    /// Escalation scope: sources of injected content read in this session
    /// (blamed when a call is stopped), whether the session was ended by a
    /// quarantine-grade event, and whether a person refused a hold in it.
    #[serde(default)]
    pub(crate) scope: crate::scope::SessionScope,
}

impl SessionState {
    /// Whom the session acts for, as far as the judge learnt it.
    pub fn subject(&self) -> &crate::subject::SubjectState {
        &self.subject
    }

    /// A fresh session.
    pub fn new() -> SessionState {
        SessionState::default()
    }

    /// The session's taint labels.
    pub fn labels(&self) -> LabelSet {
        self.taint
    }

    /// Calls judged so far.
    pub fn calls(&self) -> u32 {
        self.calls
    }

    /// True if a result in this session carried injected instructions.
    pub fn injection_seen(&self) -> bool {
        self.injection_seen
    }

    /// The provenance store.
    pub fn provenance(&self) -> &Provenance {
        &self.prov
    }

    /// Last time a call was judged (for idle expiry by the caller).
    pub fn last_activity(&self) -> Millis {
        self.last
    }

    /// Sets the session's risk aside (an operator released its agent);
    /// returns the whole points it held at `now`. Taint, provenance,
    /// sequences and windows stay: they say what happened, not a penalty.
    pub fn forgive_risk(&mut self, now: Millis, half_life_ms: u64) -> u32 {
        self.risk.clear(now, half_life_ms)
    }

    /// A conservative estimate of the memory this state uses: the struct
    /// itself plus the capacity of every heap buffer it owns (shared tool
    /// and session names are counted at their full length).
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.prov.heap_bytes()
            + self
                .prov
                .sources
                .iter()
                .map(|s| s.tool.as_str().len() + s.session.as_str().len() + 32)
                .sum::<usize>()
            + self.groups.heap_bytes()
            + self.baseline.heap_bytes()
            + self.intent_fps.capacity() * 8
            + self.subject.heap_bytes()
            + self.counts.heap_bytes()
            + self.scope.heap_bytes()
    }

    /// Releases spare capacity (call when a session goes idle).
    pub fn shrink(&mut self) {
        self.prov.entries.shrink_to_fit();
        self.prov.sources.shrink_to_fit();
        self.groups.partials.shrink_to_fit();
        self.groups.counters.shrink_to_fit();
        self.baseline.tools.shrink_to_fit();
        self.baseline.dests.shrink_to_fit();
        self.intent_fps.shrink_to_fit();
        self.subject.shrink();
        self.counts.shrink();
    }
}

/// State kept per agent and per user across their sessions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AggregateState {
    pub(crate) risk: Risk,
    pub(crate) groups: Groups,
    pub(crate) baseline: Baseline,
    /// Fingerprints of private, secret and financial results across sessions.
    pub(crate) prov: Provenance,
    pub(crate) quarantine: Option<Quarantine>,
    /// Learned amount and count baselines per tool (agents only).
    #[serde(default)]
    pub(crate) learned: crate::baseline::Learned,
    /// Escalation scope: for an agent, the sources marked by stopped calls
    /// and the quarantine-grade events awaiting corroboration.
    #[serde(default)]
    pub(crate) scope: crate::scope::AggregateScope,
}

impl AggregateState {
    /// A fresh aggregate.
    pub fn new() -> AggregateState {
        AggregateState::default()
    }

    /// The quarantine, if any.
    pub fn quarantine(&self) -> Option<&Quarantine> {
        self.quarantine.as_ref()
    }

    /// The learned baselines (what the caller persists across restarts).
    pub fn learned(&self) -> &crate::baseline::Learned {
        &self.learned
    }

    /// Restores learned baselines (read back at start).
    pub fn set_learned(&mut self, learned: crate::baseline::Learned) {
        self.learned = learned;
    }

    /// Quarantines the aggregate at once (an operator action); false if it
    /// already was.
    pub fn quarantine_now(&mut self, now: Millis, rule: RuleId) -> bool {
        if self.quarantine.is_some() {
            return false;
        }
        self.quarantine = Some(Quarantine::whole(now, rule));
        true
    }

    /// Lifts the quarantine (an operator action) and sets aside the risk
    /// that led to it: kept, that risk would quarantine again at the next
    /// call. The quarantine-grade events that corroborated it are forgiven
    /// too (kept, the next one would quarantine again at once). Sequences,
    /// windows, baselines, provenance and marked sources stay. Returns what
    /// was forgiven; nothing changes when there was no quarantine.
    pub fn release(&mut self, now: Millis, half_life_ms: u64) -> Option<Released> {
        let quarantine = self.quarantine.take()?;
        let risk = self.risk.clear(now, half_life_ms);
        let strikes = self.scope.strikes.len();
        self.scope.strikes.clear();
        Some(Released {
            quarantine,
            risk,
            strikes,
        })
    }

    /// A conservative estimate of the memory this state uses.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.prov.heap_bytes()
            + self
                .prov
                .sources
                .iter()
                .map(|s| s.tool.as_str().len() + s.session.as_str().len() + 32)
                .sum::<usize>()
            + self.groups.heap_bytes()
            + self.baseline.heap_bytes()
            + self.learned.heap_bytes()
            + self.scope.heap_bytes()
    }
}

/// The state one call is judged against: its session, its agent's
/// aggregate and, when the call names a user, the user's aggregate.
#[derive(Debug)]
pub struct StateMut<'a> {
    /// The session.
    pub session: &'a mut SessionState,
    /// The agent aggregate.
    pub agent: &'a mut AggregateState,
    /// The user aggregate, when the call has a user.
    pub user: Option<&'a mut AggregateState>,
}

#[cfg(test)]
mod tests;
