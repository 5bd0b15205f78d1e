use serde_json::json;

use super::{Extract, FpKind, from_json, from_text, normalise_url};
use crate::detect::{Detectors, Kind};

const OPTS: Extract = Extract {
    shingles: true,
    values: true,
    cap: 256,
    sample: true,
};

#[test]
fn email_fingerprint_ignores_case_and_adds_domain() {
    let d = Detectors::new();
    let (mut a, mut b, mut s) = (Vec::new(), Vec::new(), Vec::new());
    from_text(&d, "reply to Bob@Evil.Example now", OPTS, &mut s, &mut a);
    from_text(&d, "bob@evil.example", OPTS, &mut s, &mut b);
    assert!(a.iter().any(|f| f.kind == FpKind::Email && b.contains(f)));
    assert!(a.iter().any(|f| f.kind == FpKind::Domain));
}

#[test]
fn url_normalisation_drops_fragment_and_www() {
    let (u, h) = normalise_url("https://www.Evil.example/collect/#x");
    assert_eq!(u, "https://www.evil.example/collect");
    assert_eq!(h, "evil.example");
}

#[test]
fn copied_sentence_shares_a_shingle() {
    let d = Detectors::new();
    let src = "Customer list: Alice Meyer owes 1200 for the March order; Bob Stone owes 300 for April; Carol Diaz is paid up in full and wants a call";
    let copy = "fyi: Alice Meyer owes 1200 for the March order; Bob Stone owes 300 for April; Carol Diaz is paid up";
    let (mut a, mut b, mut s) = (Vec::new(), Vec::new(), Vec::new());
    from_text(&d, src, OPTS, &mut s, &mut a);
    from_text(&d, copy, OPTS, &mut s, &mut b);
    assert!(b.iter().any(|f| f.kind == FpKind::Shingle && a.contains(f)));
}

#[test]
fn json_walk_sees_nested_strings_and_long_numbers() {
    let d = Detectors::new();
    let (mut out, mut s, mut kinds) = (Vec::new(), Vec::new(), 0u16);
    from_json(
        &d,
        &json!({"a": [{"to": "x@y.example"}], "acct": 12345678}),
        OPTS,
        &mut s,
        &mut out,
        &mut kinds,
    );
    assert_eq!(
        kinds,
        1 << (Kind::Email as u16) | 1 << (Kind::LongNumber as u16)
    );
    assert!(out.iter().any(|f| f.kind == FpKind::Email));
    assert!(out.iter().any(|f| f.kind == FpKind::Number));
}

#[test]
fn a_short_private_text_copied_whole_shares_shingles() {
    let d = Detectors::new();
    let rows = "Employee salaries: Dana Kim 148000; Eli Roth 121500; Fay Ng 99000; Gus Park 87500 (confidential, HR only)";
    let (mut a, mut b, mut s) = (Vec::new(), Vec::new(), Vec::new());
    from_text(&d, rows, OPTS, &mut s, &mut a);
    from_text(
        &d,
        rows,
        Extract {
            sample: false,
            ..OPTS
        },
        &mut s,
        &mut b,
    );
    let shared = b
        .iter()
        .filter(|f| f.kind == FpKind::Shingle && a.contains(f))
        .count();
    assert!(
        shared > 3,
        "{shared} of {:?}",
        a.iter().filter(|f| f.kind == FpKind::Shingle).count()
    );
}
