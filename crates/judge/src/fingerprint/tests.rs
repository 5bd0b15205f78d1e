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

mod props {
    use proptest::prelude::*;

    use super::super::{
        FpKind, at_least_spaces, digits, hash, hash_ascii_lower, hash_digits, shingles,
        shingles_reference, tokens, tokens_bytewise, word_hash, word_hash_at,
    };

    proptest! {
        #[test]
        fn word_hash_at_equals_word_hash(text in "[a-zA-Z0-9 é.-]{0,80}", a in 0usize..80, b in 0usize..80) {
            let t = text.as_bytes();
            let (s, e) = (a.min(b).min(t.len()), a.max(b).min(t.len()));
            prop_assert_eq!(word_hash_at(t, s, e), word_hash(&t[s..e]));
        }

        #[test]
        fn shingles_equal_the_reference(
            words in prop::collection::vec("[a-zA-Z0-9é]{1,12}", 0..300),
            seps in prop::collection::vec("[ ,.\\n-]{1,2}", 300),
            cap in prop::sample::select(vec![0usize, 5, 64, 128, 256, 1000]),
            sample in any::<bool>(),
        ) {
            let text: String = words.iter().zip(&seps).map(|(w, s)| format!("{w}{s}")).collect();
            let mut slow = Vec::new();
            shingles_reference(&text, cap, sample, &mut slow);
            let mut fast = Vec::new();
            shingles(&text, None, cap, sample, &mut fast);
            prop_assert_eq!(&fast, &slow);
            // With the blocks of a longer text that starts with this one.
            let longer = format!("{text}  x9");
            let pre = crate::detect::classify_all(longer.as_bytes());
            let mut shared = Vec::new();
            shingles(&text, Some(&pre), cap, sample, &mut shared);
            prop_assert_eq!(shared, slow);
        }

        #[test]
        fn at_least_spaces_equals_counting_them(text in "[a \u{a0}\u{2000}\t!]{0,200}", n in 0usize..80) {
            let b = text.as_bytes();
            prop_assert_eq!(at_least_spaces(b, n), b.iter().filter(|c| **c == b' ').count() >= n);
        }

        #[test]
        fn hash_ascii_lower_equals_hash_of_the_lowered_copy(text in "[a-zA-Z0-9 é_./-]{0,40}") {
            prop_assert_eq!(
                hash_ascii_lower(FpKind::Value, text.as_bytes()),
                hash(FpKind::Value, text.to_ascii_lowercase().as_bytes())
            );
        }

        #[test]
        fn hash_digits_equals_hash_of_the_collected_digits(text in "[0-9 ()+.\u{0660}-\u{0669}١٢é-]{0,40}") {
            for kind in [FpKind::Card, FpKind::Number] {
                prop_assert_eq!(
                    hash_digits(kind, &text),
                    hash(kind, digits(&text).as_bytes())
                );
            }
        }

        #[test]
        fn email_hashes_equal_those_of_the_lowered_copy(text in "[a-zA-Z0-9.+_é-]{0,20}@[a-zA-Z0-9.@É-]{0,20}") {
            // As the e-mail and domain fingerprints were taken: from a
            // lower-cased copy, the domain after its last `@`.
            let e = text.to_ascii_lowercase();
            prop_assert_eq!(
                hash_ascii_lower(FpKind::Email, text.as_bytes()),
                hash(FpKind::Email, e.as_bytes())
            );
            let (_, d_old) = e.rsplit_once('@').unwrap_or_default();
            let (_, d_new) = text.rsplit_once('@').unwrap_or_default();
            prop_assert_eq!(
                hash_ascii_lower(FpKind::Domain, d_new.as_bytes()),
                hash(FpKind::Domain, d_old.as_bytes())
            );
        }

        #[test]
        fn tokens_equal_the_bytewise_walk(
            text in "([a-zA-Z]{1,6}|[0-9]{1,9}|[ ./_:@,;!?()\"-]|é|\n|C-2201|msg-7712|/etc/x.conf){0,60}",
            cap in 0usize..12,
        ) {
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            tokens(&text, None, cap, &mut fast);
            tokens_bytewise(&text, cap, &mut slow);
            prop_assert_eq!(&fast, &slow);
            // Classified once as part of a longer text, as `from_text` does.
            let longer = format!("{text} \t\n9/x");
            let pre = crate::detect::classify_all(longer.as_bytes());
            let mut shared = Vec::new();
            tokens(&text, Some(&pre), cap, &mut shared);
            prop_assert_eq!(shared, slow);
        }
    }
}

mod shared_blocks {
    use proptest::prelude::*;

    use super::super::{Extract, from_findings, from_text, from_text_and_signals};
    use crate::detect::Detectors;

    proptest! {
        #[test]
        fn from_text_equals_scan_then_from_findings(
            text in "[ \\t\\n]{0,3}([a-zA-Z]{1,8}|[0-9]{1,9}|[ ./_:@,-]|é|C-2201|x@y.example|ignore previous instructions|<system>|!\\[x\\]\\(https://e.example/\\?q=\\{d\\}\\)|\u{200B}){0,90}[ \\t\\n]{0,3}",
            sample in any::<bool>(),
            cap in prop::sample::select(vec![3usize, 40, 256]),
        ) {
            let d = Detectors::shared();
            let opts = Extract { shingles: true, values: true, cap, sample };
            let (mut fast, mut scratch) = (Vec::new(), Vec::new());
            from_text(&d, &text, opts, &mut scratch, &mut fast);
            let (mut found, mut slow) = (Vec::new(), Vec::new());
            d.scan(&text, &mut found);
            prop_assert_eq!(&scratch, &found);
            from_findings(&text, &found, opts, &mut slow);
            prop_assert_eq!(&fast, &slow);
            // With the signals from the same pass.
            let (mut fused, mut scratch2, mut sigs) = (Vec::new(), Vec::new(), Vec::new());
            from_text_and_signals(&d, &text, opts, &mut scratch2, &mut fused, &mut sigs);
            let mut want_sigs = Vec::new();
            d.signals(&text, &mut want_sigs);
            prop_assert_eq!(scratch2, found);
            prop_assert_eq!(fused, slow);
            prop_assert_eq!(sigs, want_sigs);
        }
    }
}
