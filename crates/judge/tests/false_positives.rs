//! Ordinary text full of numbers, dates, ids, versions and source code
//! must not produce personal-data or secret findings.

use castellan_judge::DetectorClass as Kind;
use castellan_judge::detect::Detectors;

#[test]
fn ordinary_text_has_no_pii_or_secret_findings() {
    let text = include_str!("fixtures/ordinary.txt");
    assert!(text.len() > 3000);
    let d = Detectors::shared();
    let mut found = Vec::new();
    d.scan(text, &mut found);
    let bad: Vec<(String, &str)> = found
        .iter()
        .filter(|f| !matches!(f.kind, Kind::Url | Kind::LongNumber))
        .map(|f| {
            (
                d.detector_name(f.detector).to_owned(),
                &text[f.range.clone()],
            )
        })
        .collect();
    assert!(bad.is_empty(), "false positives: {bad:?}");
    // Line by line too (short texts take other paths in the prefilter).
    for line in text.lines() {
        let mut f = Vec::new();
        d.scan(line, &mut f);
        assert!(
            f.iter()
                .all(|f| matches!(f.kind, Kind::Url | Kind::LongNumber)),
            "{line}"
        );
    }
    let mut sigs = Vec::new();
    d.signals(text, &mut sigs);
    assert!(sigs.is_empty(), "{sigs:?}");
}

#[test]
fn the_same_text_with_planted_values_is_caught() {
    let text = include_str!("fixtures/ordinary.txt").replace(
        "Customer account ACC-8842-1177",
        "Customer SSN 123-45-6789, card 4111 1111 1111 1111, phone +44 20 7946 0958, account",
    );
    let d = Detectors::shared();
    let mut found = Vec::new();
    d.scan(&text, &mut found);
    let kinds: Vec<Kind> = found.iter().map(|f| f.kind).collect();
    for k in [Kind::Ssn, Kind::Card, Kind::Phone] {
        assert!(kinds.contains(&k), "{k:?} missing");
    }
}
