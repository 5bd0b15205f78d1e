//! Learned baselines of amounts and counts, per agent and tool.
//!
//! Owns: [`Histogram`] (a sparse log-bucket histogram: four buckets per
//! doubling, so a quantile is known to within 19%), [`Learned`] (one
//! agent's histograms per tool: the amounts its calls carried and how many
//! times one session called the tool), [`SessionCounts`] (a session's calls
//! per tool) and [`BaselineSettings`]. The caller persists [`Learned`]
//! (it is serde); the judge reads and updates it.
//!
//! Learning: only calls that were forwarded (allowed, redacted, or approved
//! by a human) are learnt, so refused attempts cannot train the baseline.
//! A session's count is one sample that moves up a bucket as the session
//! calls the tool again, so each session counts once.
//!
//! Bounded: at most [`TOOLS_CAP`] tools per agent (the least used evicted),
//! at most [`BUCKETS`] buckets per histogram, [`COUNTS_CAP`] tools per
//! session; histograms halve their counts past [`AGE_AT`] samples, so old
//! behaviour fades.

use serde::{Deserialize, Serialize};

/// Most tools with a baseline per agent.
pub const TOOLS_CAP: usize = 64;
/// Most tools counted per session.
pub const COUNTS_CAP: usize = 16;
/// Buckets of a histogram: from 2^-8 to 2^40 at four per doubling.
pub const BUCKETS: u16 = 4 * 48 + 1;
/// Past this many samples a histogram halves its counts.
pub const AGE_AT: u32 = 100_000;
const OFFSET: f64 = 32.0;

/// A sparse log-bucket histogram of positive values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// `(bucket, count)`, sorted by bucket.
    buckets: Vec<(u16, u32)>,
    n: u32,
}

fn bucket(v: f64) -> u16 {
    if v.is_nan() || v <= 0.0 {
        return 0;
    }
    let b = (v.log2() * 4.0 + OFFSET).floor();
    if b < 1.0 {
        1
    } else if b >= f64::from(BUCKETS - 1) {
        BUCKETS - 1
    } else {
        b as u16
    }
}

/// The upper edge of a bucket.
fn upper(b: u16) -> f64 {
    if b == 0 {
        return 0.0;
    }
    ((f64::from(b) + 1.0 - OFFSET) / 4.0).exp2()
}

impl Histogram {
    /// Samples held.
    pub fn count(&self) -> u32 {
        self.n
    }

    /// Adds a sample.
    pub fn add(&mut self, v: f64) {
        self.add_bucket(bucket(v));
    }

    fn add_bucket(&mut self, b: u16) {
        match self.buckets.binary_search_by_key(&b, |x| x.0) {
            Ok(i) => self.buckets[i].1 = self.buckets[i].1.saturating_add(1),
            Err(i) => self.buckets.insert(i, (b, 1)),
        }
        self.n = self.n.saturating_add(1);
        if self.n > AGE_AT {
            self.age();
        }
    }

    fn remove_bucket(&mut self, b: u16) {
        if let Ok(i) = self.buckets.binary_search_by_key(&b, |x| x.0) {
            self.buckets[i].1 -= 1;
            self.n = self.n.saturating_sub(1);
            if self.buckets[i].1 == 0 {
                self.buckets.remove(i);
            }
        }
    }

    /// Moves one sample from `from` to `to` (a session's count growing).
    fn shift(&mut self, from: f64, to: f64) {
        let (a, b) = (bucket(from), bucket(to));
        if a != b {
            self.remove_bucket(a);
            self.add_bucket(b);
        }
    }

    fn age(&mut self) {
        for b in &mut self.buckets {
            b.1 /= 2;
        }
        self.buckets.retain(|b| b.1 > 0);
        self.n = self.buckets.iter().map(|b| b.1).sum();
    }

    /// The upper edge of the bucket holding quantile `q` (0..1), if any
    /// sample is held.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.quantile_without(q, None)
    }

    /// [`Histogram::quantile`] with one sample of value `without` left out
    /// (the session being judged, whose count is already in).
    fn quantile_without(&self, q: f64, without: Option<f64>) -> Option<f64> {
        let skip = without.map(bucket);
        let n = self.n.saturating_sub(u32::from(skip.is_some()));
        if n == 0 {
            return None;
        }
        let want = (q.clamp(0.0, 1.0) * f64::from(n)).ceil().max(1.0);
        let mut cum = 0.0;
        for (b, c) in &self.buckets {
            let c = if Some(*b) == skip {
                c.saturating_sub(1)
            } else {
                *c
            };
            if c == 0 {
                continue;
            }
            cum += f64::from(c);
            if cum >= want {
                return Some(upper(*b));
            }
        }
        self.buckets.last().map(|(b, _)| upper(*b))
    }
}

/// One tool's baselines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolBaseline {
    /// Hash of `server/tool`.
    pub tool: u64,
    /// Amounts its calls carried.
    pub amounts: Histogram,
    /// Calls per session.
    pub per_session: Histogram,
}

/// One agent's learned baselines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Learned {
    tools: Vec<ToolBaseline>,
}

impl Learned {
    /// The baselines of a tool.
    pub fn tool(&self, tool: u64) -> Option<&ToolBaseline> {
        self.tools.iter().find(|t| t.tool == tool)
    }

    /// Tools with a baseline.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// True when nothing was learnt.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    fn tool_mut(&mut self, tool: u64) -> &mut ToolBaseline {
        if let Some(i) = self.tools.iter().position(|t| t.tool == tool) {
            return &mut self.tools[i];
        }
        if self.tools.len() >= TOOLS_CAP
            && let Some(i) = self
                .tools
                .iter()
                .enumerate()
                .min_by_key(|(_, t)| t.amounts.count().max(t.per_session.count()))
                .map(|(i, _)| i)
        {
            self.tools.swap_remove(i);
        }
        self.tools.push(ToolBaseline {
            tool,
            ..ToolBaseline::default()
        });
        let last = self.tools.len() - 1;
        &mut self.tools[last]
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.tools.capacity() * std::mem::size_of::<ToolBaseline>()
            + self
                .tools
                .iter()
                .map(|t| (t.amounts.buckets.capacity() + t.per_session.buckets.capacity()) * 8)
                .sum::<usize>()
    }
}

/// A session's calls per tool (side-effect tools only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCounts {
    counts: Vec<(u64, u32)>,
}

impl SessionCounts {
    /// Calls of `tool` so far.
    pub fn get(&self, tool: u64) -> u32 {
        self.counts.iter().find(|c| c.0 == tool).map_or(0, |c| c.1)
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.counts.capacity() * 16
    }

    pub(crate) fn shrink(&mut self) {
        self.counts.shrink_to_fit();
    }
}

/// How outliers are told (`settings.baseline` in a rule file).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaselineSettings {
    /// Samples needed before the learned quantile is used.
    pub min_samples: u32,
    /// The quantile (0.99: the p99).
    pub quantile: f64,
    /// A value is an outlier beyond `quantile × tolerance`.
    pub tolerance: f64,
}

impl Eq for BaselineSettings {}

impl Default for BaselineSettings {
    fn default() -> Self {
        BaselineSettings {
            min_samples: 30,
            quantile: 0.99,
            tolerance: 1.5,
        }
    }
}

/// Why a value is an outlier.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Limit {
    /// The operator's cap.
    Cap(f64),
    /// The learned quantile (its value, the samples it is from).
    Learned { quantile: f64, samples: u32 },
    /// The largest amount the session's records about its own subject
    /// showed (none read): value granted to the requester is based on
    /// what they paid or are due, before any baseline is learnt.
    Quoted(Option<f64>),
}

/// An outlying amount or count, with the numbers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outlier {
    pub what: &'static str,
    pub value: f64,
    pub limit: Limit,
}

impl Outlier {
    pub(crate) fn message(&self, s: &BaselineSettings, tool: &str) -> String {
        match &self.limit {
            Limit::Cap(c) => format!(
                "{} {} is above the operator's cap of {} for `{tool}`",
                self.what,
                num(self.value),
                num(*c)
            ),
            Limit::Learned { quantile, samples } => format!(
                "{} {} is above {} × the learned p{} of {} for `{tool}` ({samples} samples)",
                self.what,
                num(self.value),
                s.tolerance,
                (s.quantile * 100.0).round(),
                num(*quantile)
            ),
            Limit::Quoted(Some(q)) => format!(
                "{} {} granted to the session's own subject with `{tool}` is above every amount its records showed (largest {})",
                self.what,
                num(self.value),
                num(*q)
            ),
            Limit::Quoted(None) => format!(
                "{} {} granted to the session's own subject with `{tool}` is what the requester asked for, and no record read in this session shows an amount it could rest on",
                self.what,
                num(self.value)
            ),
        }
    }
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

/// What baselines say about one call.
#[derive(Debug, Clone, Default)]
pub(crate) struct BaselineFacts {
    pub amount: Option<Outlier>,
    pub count: Option<Outlier>,
}

fn outlier(
    what: &'static str,
    value: f64,
    cap: Option<f64>,
    h: Option<(&Histogram, Option<f64>)>,
    s: &BaselineSettings,
    floor: f64,
) -> Option<Outlier> {
    if let Some(c) = cap
        && value > c
    {
        return Some(Outlier {
            what,
            value,
            limit: Limit::Cap(c),
        });
    }
    let (h, without) = h?;
    let samples = h.count().saturating_sub(u32::from(without.is_some()));
    if samples < s.min_samples {
        return None;
    }
    let q = h.quantile_without(s.quantile, without)?;
    (value > q * s.tolerance && value > q + floor).then_some(Outlier {
        what,
        value,
        limit: Limit::Learned {
            quantile: q,
            samples,
        },
    })
}

/// Assesses a call: its largest amount, and this session's count of the
/// tool including this call (for side-effect tools).
pub(crate) fn assess(
    learned: &Learned,
    counts: &SessionCounts,
    tool: u64,
    amount: Option<f64>,
    side_effect: bool,
    caps: (Option<f64>, Option<u32>),
    s: &BaselineSettings,
) -> BaselineFacts {
    let t = learned.tool(tool);
    let amount =
        amount.and_then(|a| outlier("amount", a, caps.0, t.map(|t| (&t.amounts, None)), s, 0.0));
    let count = side_effect
        .then(|| {
            let so_far = counts.get(tool);
            // This session's own sample is in the histogram already.
            let own = (so_far > 0).then_some(f64::from(so_far));
            outlier(
                "calls in this session",
                f64::from(so_far.saturating_add(1)),
                caps.1.map(f64::from),
                t.map(|t| (&t.per_session, own)),
                s,
                2.0,
            )
        })
        .flatten();
    BaselineFacts { amount, count }
}

/// Learns a forwarded call.
pub(crate) fn learn(
    learned: &mut Learned,
    counts: &mut SessionCounts,
    tool: u64,
    amount: Option<f64>,
    side_effect: bool,
) {
    if amount.is_none() && !side_effect {
        return;
    }
    let t = learned.tool_mut(tool);
    if let Some(a) = amount.filter(|a| a.is_finite() && *a > 0.0) {
        t.amounts.add(a);
    }
    if side_effect {
        let n = match counts.counts.iter_mut().find(|c| c.0 == tool) {
            Some(c) => {
                c.1 = c.1.saturating_add(1);
                c.1
            }
            None => {
                if counts.counts.len() >= COUNTS_CAP {
                    counts.counts.remove(0);
                }
                counts.counts.push((tool, 1));
                1
            }
        };
        if n == 1 {
            t.per_session.add(1.0);
        } else {
            t.per_session.shift(f64::from(n - 1), f64::from(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_is_within_a_bucket_of_the_truth() {
        let mut h = Histogram::default();
        for i in 1..=1000 {
            h.add(f64::from(i));
        }
        let p99 = h.quantile(0.99).unwrap_or(0.0);
        assert!((990.0..=990.0 * 1.19).contains(&p99), "{p99}");
        let p50 = h.quantile(0.5).unwrap_or(0.0);
        assert!((500.0..=500.0 * 1.19).contains(&p50), "{p50}");
    }

    #[test]
    fn histogram_stays_small_and_ages() {
        let mut h = Histogram::default();
        for i in 0..(AGE_AT + 10) {
            h.add(f64::from(i % 5000) + 0.5);
        }
        assert!(h.buckets.len() <= usize::from(BUCKETS));
        assert!(h.count() <= AGE_AT / 2 + 20, "{}", h.count());
    }

    #[test]
    fn amounts_beyond_the_learned_p99_are_outliers_after_enough_samples() {
        let s = BaselineSettings::default();
        let (mut l, mut c) = (Learned::default(), SessionCounts::default());
        for i in 0..29 {
            learn(
                &mut l,
                &mut c,
                7,
                Some(20.0 + f64::from(i % 10) * 10.0),
                false,
            );
        }
        let few = assess(&l, &c, 7, Some(5000.0), false, (None, None), &s);
        assert!(few.amount.is_none(), "29 samples are not enough");
        learn(&mut l, &mut c, 7, Some(100.0), false);
        let f = assess(&l, &c, 7, Some(5000.0), false, (None, None), &s);
        let o = f.amount.expect("outlier");
        let m = o.message(&s, "refund");
        assert!(m.contains("5000") && m.contains("30 samples"), "{m}");
        let ok = assess(&l, &c, 7, Some(110.0), false, (None, None), &s);
        assert!(ok.amount.is_none());
    }

    #[test]
    fn the_operator_cap_applies_from_the_first_call() {
        let s = BaselineSettings::default();
        let f = assess(
            &Learned::default(),
            &SessionCounts::default(),
            1,
            Some(501.0),
            false,
            (Some(500.0), None),
            &s,
        );
        let m = f.amount.expect("cap").message(&s, "credit");
        assert!(m.contains("501") && m.contains("cap of 500"), "{m}");
    }

    #[test]
    fn each_session_is_one_count_sample() {
        let s = BaselineSettings::default();
        let mut l = Learned::default();
        for _ in 0..40 {
            let mut c = SessionCounts::default();
            learn(&mut l, &mut c, 3, None, true);
            learn(&mut l, &mut c, 3, None, true);
        }
        let t = l.tool(3).expect("tool");
        assert_eq!(t.per_session.count(), 40);
        let mut c = SessionCounts::default();
        for _ in 0..4 {
            learn(&mut l, &mut c, 3, None, true);
        }
        // The fifth call: 5 > 2 × 1.5 and 5 > 2 + 2.
        let f = assess(&l, &c, 3, None, true, (None, None), &s);
        assert!(f.count.is_some());
        let mut c = SessionCounts::default();
        learn(&mut l, &mut c, 3, None, true);
        let f = assess(&l, &c, 3, None, true, (None, None), &s);
        assert!(f.count.is_none(), "a second call is normal");
    }
}
