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

/// Judges a call in a fresh state, then shows the judge `text` as its
/// result.
fn judge_and_observe(
    judge: &Judge,
    tool: &str,
    args: &serde_json::Value,
    text: &str,
) -> (castellan_judge::Verdict, castellan_judge::ResultVerdict) {
    use castellan_judge::{
        AgentId, AggregateState, Call, Millis, SessionKey, SessionState, StateMut, ToolResult,
    };
    let (a, k) = (AgentId::new("a"), SessionKey::new("s"));
    let (mut s, mut ag) = (SessionState::new(), AggregateState::new());
    let call = Call::tool(&a, &k, tool, args);
    let v = judge.judge_call(
        StateMut {
            session: &mut s,
            agent: &mut ag,
            user: None,
        },
        &call,
        Millis(1),
    );
    let result = serde_json::json!({"content": [{"type": "text", "text": text}]});
    let r = judge.observe_result(
        StateMut {
            session: &mut s,
            agent: &mut ag,
            user: None,
        },
        &call,
        &v,
        &ToolResult {
            value: &result,
            is_error: false,
        },
        Millis(1),
    );
    (v, r)
}

#[test]
fn the_content_inspection_example_in_the_rules_doc_does_what_it_says() {
    let (line, src) = blocks("yaml")
        .into_iter()
        .find(|(_, b)| b.contains("project_codenames"))
        .expect("content example present");
    let rules = RuleSet::from_yaml(&format!("docs/rules.md:{line}"), &src).expect("loads");
    let judge = Judge::new(Catalog::default(), rules);
    let args = serde_json::json!({"body": "my SSN is 123-45-6789"});
    let (v, _) = judge_and_observe(&judge, "send_note", &args, "sent");
    assert_eq!(v.decision, castellan_judge::Decision::Deny);
    let text = "Employee EMP-004211 works on Nightjar.";
    let (v, r) = judge_and_observe(&judge, "lookup", &serde_json::json!({"q": "staff"}), text);
    assert!(v.decision.forwards());
    assert!(r.blocked);
    let masked: Vec<&str> = r.redactions.iter().map(|x| &text[x.start..x.end]).collect();
    assert_eq!(masked, vec!["EMP-004211", "Nightjar"]);
}
