//! Every YAML and Cedar example in `docs/rules.md` must load, and the replay
//! example must produce the output line the document shows.

use std::path::PathBuf;

use castellan_judge::{CallOutcome, Catalog, Judge, RuleSet, TraceSession, replay};

fn blocks(lang: &str) -> Vec<(usize, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/rules.md");
    let text = std::fs::read_to_string(path).expect("docs/rules.md reads");
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut cur {
            None if line.trim() == format!("```{lang}") => cur = Some((i + 2, String::new())),
            Some(_) if line.trim() == "```" => out.extend(cur.take()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
fn every_yaml_example_in_the_rules_doc_loads() {
    let yaml = blocks("yaml");
    assert!(yaml.len() >= 4);
    for (line, src) in yaml {
        RuleSet::from_yaml(&format!("docs/rules.md:{line}"), &src)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[cfg(feature = "cedar")]
#[test]
fn every_cedar_example_in_the_rules_doc_validates() {
    let cedar = blocks("cedar");
    assert!(cedar.len() >= 2);
    // The attributes and the payments tool the examples' configuration has.
    let mut catalog = Catalog::default();
    catalog.insert(
        serde_json::from_value(serde_json::json!({"server": "payments", "name": "transfer_funds",
            "inputSchema": {"type": "object", "properties": {"to_iban": {"type": "string"}, "amount": {"type": "number"}}}}))
        .expect("tool def"),
    );
    let attributes = ["team".to_owned(), "environment".to_owned()];
    for (line, src) in cedar {
        let p = castellan_judge::Policy::with_attributes(
            &catalog,
            &attributes,
            &format!("docs/rules.md:{line}"),
            &src,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            p.pending().is_none(),
            "docs/rules.md:{line}: {:?}",
            p.pending()
        );
    }
}

#[test]
fn the_replay_example_in_the_rules_doc_gives_the_documented_output() {
    let json = blocks("json");
    assert_eq!(json.len(), 2);
    let trace: TraceSession = serde_json::from_str(&json[0].1).expect("trace example parses");
    let expected: CallOutcome = serde_json::from_str(&json[1].1).expect("output example parses");
    let judge = Judge::with_default_pack(Catalog::default()).expect("pack");
    let out = replay(&judge, &trace);
    assert_eq!(out[1], expected);
}
