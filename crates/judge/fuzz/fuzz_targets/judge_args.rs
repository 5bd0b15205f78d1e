//! Fuzzes judging: arbitrary JSON arguments and results through the default
//! pack must never panic, and the judge must stay deterministic.
#![no_main]

use castellan_judge::{AgentId, AggregateState, Call, Catalog, Judge, Millis, SessionKey, SessionState, StateMut, ToolResult};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (args_src, result_src) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(args) = serde_json::from_str::<serde_json::Value>(args_src) else { return };
    let result = serde_json::Value::String(result_src.to_owned());
    let Ok(judge) = Judge::with_default_pack(Catalog::default()) else { return };
    let (a, k) = (AgentId::new("fuzz"), SessionKey::new("s"));
    let mut decisions = Vec::new();
    for _ in 0..2 {
        let (mut s, mut ag) = (SessionState::new(), AggregateState::new());
        for (i, tool) in ["read_inbox", "send_email", "delete_file"].into_iter().enumerate() {
            let call = Call::tool(&a, &k, tool, &args);
            let now = Millis(1_000 + i as u64);
            let v = judge.judge_call(StateMut { session: &mut s, agent: &mut ag, user: None }, &call, now);
            decisions.push(v.decision);
            let _ = judge.observe_result(StateMut { session: &mut s, agent: &mut ag, user: None }, &call, &v, &ToolResult { value: &result, is_error: false }, now);
        }
    }
    assert_eq!(decisions[..3], decisions[3..]);
});
