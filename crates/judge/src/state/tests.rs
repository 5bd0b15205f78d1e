use proptest::prelude::*;

use super::{FILTER_WORDS, ProvEntry, Provenance, Risk, SessionState, Source, probes};
use crate::fingerprint::{Fp, FpKind};
use crate::ids::{Millis, SessionKey, ToolName};
use crate::label::{Label, LabelSet};

fn source(index: u32, labels: &[Label]) -> Source {
    Source {
        seq: 0,
        session: SessionKey::new("s"),
        index,
        tool: ToolName::new("read_inbox"),
        labels: LabelSet::of(labels),
        injected: false,
        at: Millis(0),
    }
}

fn fps(pairs: &[(u64, FpKind)]) -> Vec<Fp> {
    pairs
        .iter()
        .map(|&(hash, kind)| Fp { hash, kind })
        .collect()
}

/// `Provenance::record` as it was (one sorted insertion per fingerprint,
/// the stale check over every entry, eviction by sorting the sources, the
/// filter rebuilt every time): the reference the merged form is tested
/// against.
fn record_reference(
    p: &mut Provenance,
    mut source: Source,
    fps: &[(u64, FpKind)],
    cap_entries: usize,
    cap_sources: usize,
) {
    source.seq = p.next_seq;
    p.next_seq = p.next_seq.wrapping_add(1);
    let seq = source.seq;
    let trusted = !source.labels.contains(Label::Untrusted);
    let (labels, injected) = (source.labels, source.injected);
    p.sources.push(source);
    for &(fp, kind) in fps {
        match p.entries.binary_search_by_key(&fp, |e| e.fp) {
            Ok(i) => {
                let e = &mut p.entries[i];
                e.labels = e.labels.union(labels);
                e.trusted_seen |= trusted;
                e.injected |= injected;
                e.vouched |= trusted;
            }
            Err(i) => p.entries.insert(
                i,
                ProvEntry {
                    fp,
                    src: seq,
                    labels,
                    kind,
                    trusted_seen: trusted,
                    injected,
                    asked: 0,
                    vouched: trusted,
                },
            ),
        }
    }
    if p.sources.len() > cap_sources {
        let drop = p.sources.len() - cap_sources;
        p.sources.drain(..drop);
    }
    let oldest = p.sources.first().map_or(seq, |s| s.seq);
    if p.entries.len() > cap_entries || p.entries.iter().any(|e| e.src < oldest) {
        p.entries.retain(|e| e.src >= oldest);
        if p.entries.len() > cap_entries {
            let mut srcs: Vec<u32> = p.entries.iter().map(|e| e.src).collect();
            srcs.sort_unstable();
            let cut = srcs[p.entries.len() - cap_entries];
            p.entries.retain(|e| e.src > cut);
        }
    }
    p.filter.clear();
    if !p.entries.is_empty() {
        p.filter.resize(FILTER_WORDS, 0);
        for e in &p.entries {
            for (w, bit) in probes(e.fp) {
                p.filter[w] |= bit;
            }
        }
    }
}

const KINDS: [FpKind; 4] = [
    FpKind::Email,
    FpKind::Value,
    FpKind::Shingle,
    FpKind::Number,
];
const LABELS: [Label; 4] = [
    Label::Private,
    Label::Untrusted,
    Label::Secret,
    Label::Financial,
];

/// One result to record: its fingerprints (hashes from a small range so
/// that results share some, with repeats inside a result), its labels and
/// whether it carried injected text.
fn result_strategy() -> impl Strategy<Value = (Vec<(u64, FpKind)>, u8, bool, u64)> {
    (
        proptest::collection::vec((0u64..600, 0usize..4), 0..90),
        any::<u8>(),
        any::<bool>(),
        // Spreads hashes over the whole range for some results (the
        // filter's probes use high bits).
        prop_oneof![Just(1u64), Just(0x9e37_79b9_7f4a_7c15)],
    )
        .prop_map(|(v, l, inj, mul)| {
            (
                v.into_iter()
                    .map(|(h, k)| (h.wrapping_mul(mul), KINDS[k]))
                    .collect(),
                l,
                inj,
                mul,
            )
        })
}

#[test]
fn the_first_source_of_a_value_is_kept_and_labels_accumulate() {
    let mut p = Provenance::default();
    p.record(
        source(2, &[Label::Untrusted]),
        &fps(&[(42, FpKind::Email)]),
        &[],
        100,
        10,
    );
    p.record(
        source(5, &[Label::Private]),
        &fps(&[(42, FpKind::Email)]),
        &[],
        100,
        10,
    );
    let (e, s) = p.lookup(42).expect("found");
    assert_eq!(s.index, 2);
    assert!(e.labels.contains(Label::Untrusted) && e.labels.contains(Label::Private));
    assert!(e.trusted_seen);
}

#[test]
fn oldest_sources_are_evicted_first() {
    let mut p = Provenance::default();
    for i in 0..20u32 {
        p.record(
            source(i, &[Label::Private]),
            &fps(&[(u64::from(i) + 1000, FpKind::Value)]),
            &[],
            1000,
            8,
        );
    }
    assert!(p.lookup(1000).is_none());
    assert!(p.lookup(1019).is_some());
    assert!(p.len() <= 8);
}

#[test]
fn provenance_never_exceeds_its_entry_cap() {
    let mut p = Provenance::default();
    for i in 0..10u32 {
        let fps: Vec<Fp> = (0..50)
            .map(|k| Fp {
                hash: u64::from(i * 100 + k),
                kind: FpKind::Shingle,
            })
            .collect();
        p.record(source(i, &[]), &fps, &[], 120, 100);
        assert!(p.len() <= 120);
    }
    // The newest result's values stay; the oldest results' went first.
    assert!(p.lookup(900).is_some() && p.lookup(949).is_some());
    assert!(p.lookup(0).is_none() && p.lookup(149).is_none());
}

#[test]
fn an_empty_session_state_is_far_below_four_kib() {
    let s = SessionState::new();
    println!("empty SessionState: {} bytes", s.approx_bytes());
    println!(
        "empty AggregateState: {} bytes",
        super::AggregateState::new().approx_bytes()
    );
    assert!(s.approx_bytes() < 1024);
}

proptest! {
    /// The merged `record` leaves the store exactly as the old one did
    /// (entries, sources, filter and buffer sizes), so every lookup gives
    /// the same answer, under the session's, the agent's and tiny caps.
    #[test]
    fn record_matches_one_insertion_per_fingerprint(
        results in proptest::collection::vec(result_strategy(), 1..40),
        caps in prop_oneof![Just((384usize, 24usize)), Just((256, 16)), Just((40, 3)), Just((7, 1)), Just((1, 0))],
        start_seq in prop_oneof![Just(0u32), Just(u32::MAX - 5)],
        probe in proptest::collection::vec(0u64..600, 0..50),
    ) {
        let (mut new, mut old) = (Provenance::default(), Provenance::default());
        new.next_seq = start_seq;
        old.next_seq = start_seq;
        for (i, (pairs, l, injected, mul)) in results.iter().enumerate() {
            let labels: Vec<Label> = LABELS
                .iter()
                .enumerate()
                .filter(|(b, _)| l & (1 << b) != 0)
                .map(|(_, x)| *x)
                .collect();
            let mut src = source(i as u32, &labels);
            src.injected = *injected;
            new.record(src.clone(), &fps(pairs), &[], caps.0, caps.1);
            record_reference(&mut old, src, pairs, caps.0, caps.1);
            prop_assert_eq!(&new, &old);
            prop_assert_eq!(new.heap_bytes(), old.heap_bytes());
            for h in probe.iter().chain(pairs.iter().map(|(h, _)| h)) {
                let h = h.wrapping_mul(*mul);
                prop_assert_eq!(new.lookup(h), old.lookup(h));
            }
        }
    }

    #[test]
    fn risk_never_grows_while_it_decays(points in 1u32..1000, dt1 in 0u64..10_000_000, dt2 in 0u64..10_000_000) {
        let mut r = Risk::default();
        r.add(Millis(1000), 60_000, points);
        let a = r.value_at(Millis(1000 + dt1), 60_000);
        let b = r.value_at(Millis(1000 + dt1 + dt2), 60_000);
        prop_assert!(b <= a);
        prop_assert!(a <= u64::from(points) * 1000);
    }
}
