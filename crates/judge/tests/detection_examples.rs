//! The replay example in `docs/detection.md` (written from
//! `tests/detection_capabilities.md`): each session is stopped at the call
//! and by the rule the document says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use castellan_judge::{Catalog, Decision, Judge, Replayer, TraceSession};
use serde_json::Value;

#[test]
fn every_example_session_is_stopped_where_and_by_what_the_document_says() {
    let text = include_str!("detection_capabilities.md");
    let block = text
        .split("```jsonl\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a jsonl block");
    let judge = Judge::with_default_pack(Catalog::default()).expect("pack");
    let mut n = 0;
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let raw: Value = serde_json::from_str(line).expect("json");
        let session: TraceSession = serde_json::from_value(raw.clone()).expect("trace");
        let mut r = Replayer::new(&judge);
        let out = r.session(&session);
        let stop = out
            .iter()
            .find(|o| o.decision >= Decision::Hold)
            .unwrap_or_else(|| panic!("{} was not stopped: {out:?}", session.id));
        assert_eq!(
            u64::from(stop.index),
            raw["expect"]["at_index"].as_u64().expect("at_index"),
            "{}: {out:?}",
            session.id
        );
        let rule = raw["expect"]["rule"].as_str().expect("rule");
        assert!(
            stop.rules.iter().any(|r| r == rule),
            "{}: {:?}",
            session.id,
            stop
        );
        n += 1;
    }
    assert_eq!(n, 4);
}
