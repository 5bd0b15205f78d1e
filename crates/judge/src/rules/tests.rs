use proptest::prelude::*;

use super::RuleSet;
use super::parse::duration_ms;
use crate::error::Error;
use crate::label::Label;
use crate::pack;
use crate::verdict::Action;

#[test]
fn the_default_pack_loads_and_has_every_rule_kind() {
    let set = pack::rules().expect("pack loads");
    let kinds: Vec<&str> = set.rules().iter().map(|r| r.kind_name()).collect();
    assert!(kinds.contains(&"call") && kinds.contains(&"sequence") && kinds.contains(&"threshold"));
    assert!(!set.ladder().steps.is_empty());
}

#[test]
fn parses_a_call_rule_with_labels_and_destination() {
    let src = r#"
rules:
  - id: trifecta
    description: gate it
    severity: high
    action: hold
    when:
      labels: [egress]
      session_labels: [private, untrusted]
      destination: { from: untrusted, new: true }
"#;
    let set = RuleSet::from_yaml("t.yaml", src).expect("parses");
    let r = &set.rules()[0];
    assert_eq!(r.id.as_str(), "trifecta");
    assert_eq!(r.action, Action::Hold);
    assert_eq!(r.risk, 30);
    assert_eq!(r.location.line, 3);
}

#[test]
fn yaml_syntax_errors_carry_line_and_column() {
    let src = "rules:\n  - id: a\n    action: [deny\n";
    let err = RuleSet::from_yaml("bad.yaml", src).expect_err("fails");
    assert!(matches!(err, Error::Syntax { .. }));
    assert_eq!(err.location().file, "bad.yaml");
    assert!(err.location().line >= 3, "{err}");
}

#[test]
fn unknown_fields_are_rejected_with_their_line() {
    let src = "rules:\n  - id: a\n    action: deny\n    whenn: {}\n";
    let err = RuleSet::from_yaml("f.yaml", src).expect_err("fails");
    assert!(err.to_string().contains("whenn"), "{err}");
    assert_eq!(err.location().line, 4, "{err}");
}

#[test]
fn an_unknown_label_is_reported_at_the_key_line() {
    let src = "rules:\n  - id: a\n    action: deny\n    when:\n      labels: [egres]\n";
    let err = RuleSet::from_yaml("f.yaml", src).expect_err("fails");
    assert_eq!(err.location().line, 5, "{err}");
    assert!(err.to_string().contains("`egres`"), "{err}");
    assert!(err.to_string().contains("rule `a`"), "{err}");
}

#[test]
fn an_unknown_action_names_the_choices() {
    let src = "rules:\n  - id: a\n    action: nuke\n    when: {}\n";
    let err = RuleSet::from_yaml("f.yaml", src).expect_err("fails");
    assert!(err.to_string().contains("quarantine"), "{err}");
    assert_eq!(err.location().line, 3);
}

#[test]
fn a_rule_needs_exactly_one_kind() {
    let src = "rules:\n  - id: a\n    action: deny\n";
    assert!(RuleSet::from_yaml("f.yaml", src).is_err());
    let src = "rules:\n  - id: a\n    action: deny\n    when: {}\n    threshold: { window: 1m, count: 2 }\n";
    assert!(RuleSet::from_yaml("f.yaml", src).is_err());
}

#[test]
fn from_step_must_name_an_earlier_step() {
    let src = "rules:\n  - id: s\n    action: deny\n    sequence:\n      within: 1m\n      steps:\n        - labels: [egress]\n        - from_step: 1\n";
    let err = RuleSet::from_yaml("f.yaml", src).expect_err("fails");
    assert_eq!(err.location().line, 8, "{err}");
}

#[test]
fn duplicate_ids_are_rejected() {
    let src = "rules:\n  - id: a\n    action: log\n    when: {}\n  - id: a\n    action: log\n    when: {}\n";
    assert!(RuleSet::from_yaml("f.yaml", src).is_err());
}

#[test]
fn merging_files_rejects_an_id_defined_twice() {
    let a = RuleSet::from_yaml(
        "a.yaml",
        "rules:\n  - id: x\n    action: log\n    when: {}\n",
    )
    .expect("a");
    let b = RuleSet::from_yaml(
        "b.yaml",
        "rules:\n  - id: x\n    action: log\n    when: {}\n",
    )
    .expect("b");
    let mut set = a;
    let err = set.merge(b).expect_err("duplicate");
    assert!(err.to_string().contains("a.yaml:2"), "{err}");
}

#[test]
fn threshold_needs_a_measure_and_sum_needs_a_limit() {
    let src = "rules:\n  - id: t\n    action: hold\n    threshold: { window: 1m }\n";
    assert!(RuleSet::from_yaml("f.yaml", src).is_err());
    let src =
        "rules:\n  - id: t\n    action: hold\n    threshold: { window: 1m, sum: args.amount }\n";
    assert!(RuleSet::from_yaml("f.yaml", src).is_err());
}

#[test]
fn ladder_and_settings_parse() {
    let src = "settings:\n  internal_domains: [Corp.Example]\n  redact: [card]\nladder:\n  half_life: 10m\n  steps:\n    - { risk: 40, action: hold, labels_any: [egress] }\n";
    let set = RuleSet::from_yaml("f.yaml", src).expect("parses");
    assert_eq!(set.ladder().half_life_ms, 600_000);
    assert!(set.ladder().steps[0].labels_any.contains(Label::Egress));
    assert_eq!(
        set.settings().internal_domains,
        vec!["corp.example".to_owned()]
    );
}

#[test]
fn disabled_rules_are_validated_but_not_loaded() {
    let src = "rules:\n  - id: a\n    action: log\n    enabled: false\n    when: {}\n";
    assert!(
        RuleSet::from_yaml("f.yaml", src)
            .expect("parses")
            .rules()
            .is_empty()
    );
}

#[test]
fn durations_parse_with_units_and_reject_zero() {
    assert_eq!(duration_ms("500ms"), Some(500));
    assert_eq!(duration_ms("10m"), Some(600_000));
    assert_eq!(duration_ms("2h"), Some(7_200_000));
    assert_eq!(duration_ms("0s"), None);
    assert_eq!(duration_ms("m"), None);
    assert_eq!(duration_ms("10 parsecs"), None);
}

proptest! {
    #[test]
    fn the_parser_never_panics_on_arbitrary_text(src in ".{0,400}") {
        let _ = RuleSet::from_yaml("p.yaml", &src);
    }

    #[test]
    fn the_parser_never_panics_on_rule_shaped_yaml(
        id in "[a-z-]{0,12}",
        action in prop::sample::select(vec!["log", "alert", "hold", "deny", "bogus", ""]),
        label in prop::sample::select(vec!["egress", "private", "injected", "nope"]),
        within in prop::sample::select(vec!["1m", "0s", "10x", "5h"]),
        count in 0u32..5,
    ) {
        let src = format!(
            "rules:\n  - id: {id}\n    action: {action}\n    sequence:\n      within: {within}\n      steps:\n{}",
            (0..count).map(|_| format!("        - labels: [{label}]\n")).collect::<String>()
        );
        match RuleSet::from_yaml("p.yaml", &src) {
            Ok(set) => prop_assert_eq!(set.rules().len(), 1),
            Err(e) => prop_assert_eq!(e.location().file.as_str(), "p.yaml"),
        }
    }
}

#[test]
fn content_actions_and_custom_detectors_parse() {
    use crate::detect::{ContentAction, Kind};
    let src = "settings:\n  redact: [secret]\n  content:\n    ssn: block\n    email: label\n  detectors:\n    - name: emp\n      regex: 'EMP-[0-9]+'\n      action: redact\n    - name: words\n      words: [a, b]\n      action: block\n      label: secret\n";
    let set = RuleSet::from_yaml("f.yaml", src).expect("parses");
    let s = set.settings();
    assert_eq!(s.content.get(Kind::Secret), ContentAction::Redact);
    assert_eq!(s.content.get(Kind::Ssn), ContentAction::Block);
    assert_eq!(s.content.get(Kind::Email), ContentAction::Label);
    assert_eq!(s.content.get(Kind::Phone), ContentAction::Ignore);
    assert_eq!(s.custom.as_ref().map(|c| c.specs().len()), Some(2));
}

#[test]
fn content_errors_name_the_file_and_line() {
    let cases = [
        (
            "settings:\n  content:\n    ssn: shred\n",
            3,
            "unknown content action",
        ),
        (
            "settings:\n  content:\n    dna: block\n",
            3,
            "unknown detector class",
        ),
        (
            "settings:\n  detectors:\n    - name: emp\n      regex: 'EMP-[0-9'\n      action: redact\n",
            4,
            "bad regex",
        ),
        (
            "settings:\n  detectors:\n    - name: emp\n      words: [x]\n      action: redact\n    - name: bad\n      regex: 'x*'\n      action: label\n",
            7,
            "empty string",
        ),
        (
            "settings:\n  detectors:\n    - name: emp\n      action: redact\n",
            3,
            "exactly one of",
        ),
        (
            "settings:\n  detectors:\n    - name: email\n      words: [x]\n      action: redact\n",
            3,
            "already taken",
        ),
        (
            "settings:\n  detectors:\n    - name: emp\n      words: [x]\n      action: redact\n      label: egress\n",
            6,
            "unknown label",
        ),
    ];
    for (src, line, msg) in cases {
        let e = RuleSet::from_yaml("f.yaml", src).expect_err(src);
        assert_eq!(e.location().file, "f.yaml");
        assert_eq!(e.location().line, line, "{e}");
        assert!(e.to_string().contains(msg), "{e}");
    }
}
