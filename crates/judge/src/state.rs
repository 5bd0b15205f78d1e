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

use crate::fingerprint::FpKind;
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
    pub(crate) fn record(
        &mut self,
        mut source: Source,
        fps: &[(u64, FpKind)],
        cap_entries: usize,
        cap_sources: usize,
    ) {
        source.seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let seq = source.seq;
        let trusted = !source.labels.contains(crate::label::Label::Untrusted);
        let (labels, injected) = (source.labels, source.injected);
        self.sources.push(source);
        for &(fp, kind) in fps {
            match self.entries.binary_search_by_key(&fp, |e| e.fp) {
                Ok(i) => {
                    let e = &mut self.entries[i];
                    e.labels = e.labels.union(labels);
                    e.trusted_seen |= trusted;
                    e.injected |= injected;
                }
                Err(i) => self.entries.insert(
                    i,
                    ProvEntry {
                        fp,
                        src: seq,
                        labels,
                        kind,
                        trusted_seen: trusted,
                        injected,
                    },
                ),
            }
        }
        if self.sources.len() > cap_sources {
            let drop = self.sources.len() - cap_sources;
            self.sources.drain(..drop);
        }
        let oldest = self.sources.first().map_or(seq, |s| s.seq);
        if self.entries.len() > cap_entries || self.entries.iter().any(|e| e.src < oldest) {
            self.entries.retain(|e| e.src >= oldest);
            if self.entries.len() > cap_entries {
                // Evict by age: find the source seq below which to drop.
                let mut srcs: Vec<u32> = self.entries.iter().map(|e| e.src).collect();
                srcs.sort_unstable();
                let cut = srcs[self.entries.len() - cap_entries];
                self.entries.retain(|e| e.src > cut);
            }
        }
        self.rebuild_filter();
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
    /// Last time a call was judged.
    pub(crate) last: Millis,
}

impl SessionState {
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

    /// Releases a quarantine (an operator action).
    pub fn release(&mut self) {
        self.quarantine = None;
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
