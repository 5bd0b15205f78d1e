//! Judges a typical call with the default pack (Cedar policy, detectors,
//! provenance) plus 50 extra sequence rules, on a 1 KiB argument, against a
//! session that has already seen a few results.

use std::fmt::Write as _;
use std::hint::black_box;

use castellan_judge::{
    AgentId, AggregateState, Call, Catalog, Judge, Millis, Policy, RuleSet, SessionKey,
    SessionState, StateMut, ToolDef, ToolResult, UserId, pack,
};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

const HARD_LIMITS: &str = r#"
@id("default-permit")
permit (principal, action, resource);

@id("no-egress-after-injection")
@reason("egress is forbidden once a result carried injected instructions")
forbid (principal, action == Action::"call_tool", resource)
when { context.session.injection_seen && resource.labels.contains("egress") };

@id("no-money-to-untrusted-payees")
forbid (principal, action, resource)
when { resource.labels.contains("money") && context.destination.from.contains("untrusted") };

@id("no-secrets-out")
forbid (principal, action, resource)
when { resource.labels.contains("egress") && context.carries.contains("secret") && context.destination.new };
"#;

fn extra_sequences(n: usize) -> String {
    let mut s = String::from("rules:\n");
    for i in 0..n {
        let _ = write!(
            s,
            "  - id: bench-seq-{i}\n    action: alert\n    risk: 1\n    sequence:\n      by: {}\n      within: 10m\n      steps:\n        - tool: [\"{}\"]\n        - labels: [egress]\n          destination: {{ new: true, in_intent: false }}\n          carries: [secret]\n",
            if i % 2 == 0 { "session" } else { "agent" },
            if i % 3 == 0 {
                "read_*"
            } else {
                "tool_that_never_runs_*"
            },
        );
    }
    s
}

fn catalog() -> Catalog {
    let mut c = Catalog::default();
    for (server, name) in [
        ("mail", "read_inbox"),
        ("mail", "send_email"),
        ("files", "read_file"),
        ("files", "delete_file"),
        ("web", "fetch_url"),
        ("payments", "transfer_funds"),
    ] {
        c.insert(ToolDef {
            server: server.into(),
            name: name.into(),
            description: String::new(),
            input_schema: json!({"type": "object"}),
            annotations: Default::default(),
        });
    }
    c
}

fn bench(c: &mut Criterion) {
    let mut rules = pack::rules().expect("pack");
    rules
        .merge(RuleSet::from_yaml("bench.yaml", &extra_sequences(50)).expect("bench rules"))
        .expect("merge");
    let policy =
        castellan_judge::Policy::new(&catalog(), pack::POLICY_FILE, pack::POLICY).expect("policy");
    let judge = Judge::new(catalog(), rules.clone()).with_policy(policy);
    // The same rules with a policy that Cedar must really evaluate.
    let forbids = Policy::new(&catalog(), "bench.cedar", HARD_LIMITS).expect("bench policy");
    let judge_forbids = Judge::new(catalog(), rules).with_policy(forbids);
    let (agent, user, key) = (
        AgentId::new("support-bot"),
        UserId::new("alice"),
        SessionKey::new("s-1"),
    );
    let (mut session, mut agg, mut usr) = (
        SessionState::new(),
        AggregateState::new(),
        AggregateState::new(),
    );
    let mut now = 1_767_225_600_000u64;
    // Warm the session up: an inbox, a file and a web page.
    let history: [(&str, &str, Value, Value); 3] = [
        (
            "mail",
            "read_inbox",
            json!({"limit": 10}),
            json!({"content": [{"type": "text", "text": "From: carol@client.example\nSubject: order 1182\nWhen will my order ship? Also cc dan@client.example. Thanks, Carol"}]}),
        ),
        (
            "files",
            "read_file",
            json!({"path": "/reports/q3.md"}),
            json!(
                "Q3 revenue 4.2M, churn 3.1%, top accounts: Globex, Initech, Umbrella. Contact finance@northwind.example for details. IBAN DE89370400440532013000"
            ),
        ),
        (
            "web",
            "fetch_url",
            json!({"url": "https://docs.example/shipping"}),
            json!(
                "Shipping takes 3-5 business days within the EU; express is available for a fee."
            ),
        ),
    ];
    for (server, tool, args, result) in &history {
        now += 1000;
        let call = Call::tool(&agent, &key, tool, args)
            .on(server)
            .for_user(&user);
        let v = judge.judge_call(
            StateMut {
                session: &mut session,
                agent: &mut agg,
                user: Some(&mut usr),
            },
            &call,
            Millis(now),
        );
        let _ = judge.observe_result(
            StateMut {
                session: &mut session,
                agent: &mut agg,
                user: Some(&mut usr),
            },
            &call,
            &v,
            &ToolResult {
                value: result,
                is_error: false,
            },
            Millis(now),
        );
    }
    let body: String = "Hi Carol, thanks for your patience. Your order 1182 left our warehouse today and shipping takes 3-5 business days within the EU. "
        .repeat(8)
        .chars()
        .take(1024)
        .collect();
    let args = json!({"to": "carol@client.example", "subject": "Re: order 1182", "body": body});
    assert!(serde_json::to_string(&args).map(|s| s.len()).unwrap_or(0) >= 1024);
    let call = Call::tool(&agent, &key, "send_email", &args)
        .on("mail")
        .for_user(&user);
    c.bench_function(
        "judge_call/send_email_1KiB_default_pack_cedar_50_sequences",
        |b| {
            b.iter_batched(
                || (session.clone(), agg.clone(), usr.clone()),
                |(mut s, mut a, mut u)| {
                    let v = judge.judge_call(
                        StateMut {
                            session: &mut s,
                            agent: &mut a,
                            user: Some(&mut u),
                        },
                        black_box(&call),
                        Millis(now + 1000),
                    );
                    // Return the state so it is dropped outside the timing.
                    (v, s, a, u)
                },
                BatchSize::SmallInput,
            )
        },
    );
    c.bench_function(
        "judge_call/send_email_1KiB_default_pack_cedar_forbids_50_sequences",
        |b| {
            b.iter_batched(
                || (session.clone(), agg.clone(), usr.clone()),
                |(mut s, mut a, mut u)| {
                    let v = judge_forbids.judge_call(
                        StateMut {
                            session: &mut s,
                            agent: &mut a,
                            user: Some(&mut u),
                        },
                        black_box(&call),
                        Millis(now + 1000),
                    );
                    (v, s, a, u)
                },
                BatchSize::SmallInput,
            )
        },
    );
    let read_args = json!({"path": "/reports/q4.md"});
    let read = Call::tool(&agent, &key, "read_file", &read_args)
        .on("files")
        .for_user(&user);
    c.bench_function("judge_call/read_file_small_args", |b| {
        b.iter_batched(
            || (session.clone(), agg.clone(), usr.clone()),
            |(mut s, mut a, mut u)| {
                let v = judge.judge_call(
                    StateMut {
                        session: &mut s,
                        agent: &mut a,
                        user: Some(&mut u),
                    },
                    black_box(&read),
                    Millis(now + 1000),
                );
                (v, s, a, u)
            },
            BatchSize::SmallInput,
        )
    });
    let result = json!({"content": [{"type": "text", "text": "Lorem ipsum dolor sit amet, contact ops@northwind.example, card 4111 1111 1111 1111. ".repeat(12)}]});
    c.bench_function("observe_result/1KiB_text", |b| {
        b.iter_batched(
            || (session.clone(), agg.clone(), usr.clone()),
            |(mut s, mut a, mut u)| {
                let v = judge.judge_call(
                    StateMut {
                        session: &mut s,
                        agent: &mut a,
                        user: Some(&mut u),
                    },
                    &read,
                    Millis(now + 1000),
                );
                let r = judge.observe_result(
                    StateMut {
                        session: &mut s,
                        agent: &mut a,
                        user: Some(&mut u),
                    },
                    &read,
                    &v,
                    &ToolResult {
                        value: &result,
                        is_error: false,
                    },
                    Millis(now + 1000),
                );
                (r, s, a, u)
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
