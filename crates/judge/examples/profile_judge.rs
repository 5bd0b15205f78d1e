//! Judges the same 1 KiB `send_email` call 1000 times on a warmed session
//! (default pack, catalogued tools). Meant for deterministic instruction
//! counts rather than wall time:
//!
//! ```sh
//! cargo build --release -p castellan-judge --example profile_judge
//! valgrind --tool=callgrind target/release/examples/profile_judge
//! ```
#![allow(clippy::unwrap_used)]
use castellan_judge::{
    AgentId, AggregateState, Call, Catalog, Judge, Millis, SessionKey, SessionState, StateMut,
    ToolResult, pack,
};
use serde_json::json;
fn main() {
    let mut cat = Catalog::default();
    for (server, name) in [
        ("mail", "read_inbox"),
        ("mail", "send_email"),
        ("files", "read_file"),
    ] {
        cat.insert(castellan_judge::ToolDef {
            server: server.into(),
            name: name.into(),
            description: String::new(),
            input_schema: json!({}),
            annotations: Default::default(),
        });
    }
    let judge = if std::env::var("PROFILE_FORBIDS").is_ok() {
        let src = "permit(principal, action, resource);\nforbid(principal, action, resource) when { context.session.injection_seen && resource.labels.contains(\"egress\") };\nforbid(principal, action, resource) when { resource.labels.contains(\"money\") && context.destination.from.contains(\"untrusted\") };";
        let policy = castellan_judge::Policy::new(&cat, "p.cedar", src).unwrap();
        Judge::new(cat, pack::rules().unwrap()).with_policy(policy)
    } else {
        Judge::with_default_pack(cat).unwrap()
    };
    let _ = pack::RULES;
    let (agent, key) = (AgentId::new("a"), SessionKey::new("s"));
    let (mut s, mut a) = (SessionState::new(), AggregateState::new());
    for (tool, args, result) in [
        (
            "read_inbox",
            json!({}),
            json!(
                "From: carol@client.example\nSubject: order 1182\nWhen will my order ship? Thanks, Carol"
            ),
        ),
        (
            "read_file",
            json!({"path": "/r/q3.md"}),
            json!(
                "Q3 revenue 4.2M, churn 3.1%, top accounts: Globex, Initech, Umbrella. Contact finance@northwind.example. IBAN DE89370400440532013000"
            ),
        ),
    ] {
        let call = Call::tool(&agent, &key, tool, &args).on(if tool == "read_file" {
            "files"
        } else {
            "mail"
        });
        let v = judge.judge_call(
            StateMut {
                session: &mut s,
                agent: &mut a,
                user: None,
            },
            &call,
            Millis(1),
        );
        let _ = judge.observe_result(
            StateMut {
                session: &mut s,
                agent: &mut a,
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
    }
    let body: String = "Hi Carol, thanks for your patience. Your order 1182 left our warehouse today and shipping takes 3-5 business days within the EU. ".repeat(9).chars().take(1024).collect();
    let args = json!({"to": "carol@client.example", "subject": "Re: order 1182", "body": body});
    let call = Call::tool(&agent, &key, "send_email", &args).on("mail");
    for i in 0..1000 {
        let (mut s2, mut a2) = (s.clone(), a.clone());
        let _ = std::hint::black_box(judge.judge_call(
            StateMut {
                session: &mut s2,
                agent: &mut a2,
                user: None,
            },
            &call,
            Millis(10 + i),
        ));
    }
}
