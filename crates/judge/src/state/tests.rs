use proptest::prelude::*;

use super::{Provenance, Risk, SessionState, Source};
use crate::fingerprint::FpKind;
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
    }
}

#[test]
fn the_first_source_of_a_value_is_kept_and_labels_accumulate() {
    let mut p = Provenance::default();
    p.record(
        source(2, &[Label::Untrusted]),
        &[(42, FpKind::Email)],
        100,
        10,
    );
    p.record(
        source(5, &[Label::Private]),
        &[(42, FpKind::Email)],
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
            &[(u64::from(i) + 1000, FpKind::Value)],
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
        let fps: Vec<(u64, FpKind)> = (0..50)
            .map(|k| (u64::from(i * 100 + k), FpKind::Shingle))
            .collect();
        p.record(source(i, &[]), &fps, 120, 100);
        assert!(p.len() <= 120);
    }
    assert!(p.lookup(999).is_none() || p.lookup(949).is_some());
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
