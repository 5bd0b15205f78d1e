//! Fuzzes content inspection: the detectors, injection signals and the
//! tool-definition check never panic, every span lies on character
//! boundaries inside the text, and the custom-detector part of the rule
//! language (`settings.detectors`) either loads or names its file.
#![no_main]

use castellan_judge::detect::Detectors;
use castellan_judge::{RuleSet, inspect_tool_definition};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let d = Detectors::shared();
    let mut out = Vec::new();
    d.scan(text, &mut out);
    for f in &out {
        assert!(f.range.start < f.range.end && f.range.end <= text.len());
        assert!(text.is_char_boundary(f.range.start) && text.is_char_boundary(f.range.end));
    }
    let mut sigs = Vec::new();
    d.signals(text, &mut sigs);
    for s in &sigs {
        assert!(text.is_char_boundary(s.range.start) && text.is_char_boundary(s.range.end));
    }
    let _ = inspect_tool_definition(text, Some(text), &serde_json::Value::String(text.to_owned()));
    // The first line as a custom regex, the rest as words.
    let (re, words) = text.split_once('\n').unwrap_or((text, "w"));
    let src = format!(
        "settings:\n  detectors:\n    - name: r\n      regex: {}\n      action: redact\n    - name: w\n      words: {}\n      action: block\n",
        serde_json::Value::String(re.to_owned()),
        serde_json::Value::Array(words.split_whitespace().map(|w| serde_json::Value::String(w.to_owned())).collect()),
    );
    match RuleSet::from_yaml("fuzz.yaml", &src) {
        Ok(set) => {
            let judge = castellan_judge::Judge::new(castellan_judge::Catalog::default(), set);
            let _ = judge;
        }
        Err(e) => assert_eq!(e.location().file, "fuzz.yaml"),
    }
});
