//! Fuzzes the rule-file parser: it must never panic, and every error must
//! name the file it was given.
#![no_main]

use castellan_judge::RuleSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    match RuleSet::from_yaml("fuzz.yaml", src) {
        Ok(set) => {
            for r in set.rules() {
                assert!(!r.id.as_str().is_empty());
            }
        }
        Err(e) => assert_eq!(e.location().file, "fuzz.yaml"),
    }
});
