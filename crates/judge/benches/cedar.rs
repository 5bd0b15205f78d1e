//! A Cedar decision for a typical call with principal attributes and typed
//! arguments (no behaviour rules, so the policy dominates): a transfer of
//! 120.50 by an agent of team `support`, against a policy with an amount
//! limit, a recipient-domain condition and a team condition. Also the
//! per-tool `list_tools` check used to filter lists.

use std::hint::black_box;

use castellan_judge::{
    AgentId, AggregateState, Annotations, Call, Catalog, Judge, Millis, Policy, RuleSet,
    SessionKey, SessionState, StateMut, ToolDef,
};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

/// The policy of a typical deployment (also used by the gateway's
/// authentication bench).
const POLICY: &str = include_str!("typical.cedar");

fn judge() -> Judge {
    let mut catalog = Catalog::default();
    catalog.insert(ToolDef {
        server: "payments".into(),
        name: "transfer_funds".into(),
        description: "Transfer money".into(),
        input_schema: json!({"type": "object", "properties": {"from_account": {"type": "string"}, "to_iban": {"type": "string"}, "amount": {"type": "number"}, "memo": {"type": "string"}}}),
        annotations: Annotations::default(),
    });
    catalog.insert(ToolDef {
        server: "mail".into(),
        name: "send_email".into(),
        description: "Send mail".into(),
        input_schema: json!({"type": "object", "properties": {"to": {"type": "string"}, "subject": {"type": "string"}, "body": {"type": "string"}}}),
        annotations: Annotations::default(),
    });
    let attrs = ["team".to_owned(), "environment".to_owned()];
    let policy =
        Policy::with_attributes(&catalog, &attrs, "bench.cedar", POLICY).expect("policy loads");
    assert!(policy.pending().is_none());
    Judge::new(catalog, RuleSet::default()).with_policy(policy)
}

fn bench(c: &mut Criterion) {
    let j = judge();
    let agent = AgentId::new("support-bot");
    let key = SessionKey::new("s");
    let attributes = vec![
        ("team".to_owned(), "support".to_owned()),
        ("environment".to_owned(), "prod".to_owned()),
    ];
    let args = json!({"from_account": "operating", "to_iban": "DE89370400440532013000", "amount": 120.5, "memo": "invoice 42"});
    let call = Call::tool(&agent, &key, "transfer_funds", &args)
        .on("payments")
        .with_attributes(&attributes);
    let mut session = SessionState::new();
    let mut agg = AggregateState::new();
    let mut now = 0u64;
    c.bench_function("cedar_call_with_attributes_and_args", |b| {
        b.iter(|| {
            now += 1;
            if now.is_multiple_of(10_000) {
                session = SessionState::new();
                agg = AggregateState::new();
            }
            let v = j.judge_call(
                StateMut {
                    session: &mut session,
                    agent: &mut agg,
                    user: None,
                },
                black_box(&call),
                Millis(now),
            );
            black_box(v)
        })
    });
    let empty = json!({});
    let list = Call::tool(&agent, &key, "send_email", &empty)
        .on("mail")
        .with_attributes(&attributes);
    c.bench_function("cedar_may_list", |b| {
        b.iter(|| black_box(j.may_list(black_box(&list))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
