//! Judges the same 1 KiB `send_email` call 1000 times on a warmed session
//! (default pack, catalogued tools). Meant for deterministic instruction
//! counts rather than wall time:
//!
//! ```sh
//! cargo build --release -p castellan-judge --example profile_judge
//! valgrind --tool=callgrind target/release/examples/profile_judge
//! ```
//!
//! With `PROFILE_OBSERVE=1`, inspects a 1 KiB text result 1000 times
//! instead (`Judge::observe_result`).
#![allow(clippy::unwrap_used)]
use castellan_judge::{
    AgentId, AggregateState, Call, Catalog, Judge, Millis, SessionKey, SessionState, StateMut,
    ToolResult, pack,
};
use serde_json::json;
/// crates/bench's `TEXT` (the gateway bench's result).
const PROSE: &str = "Quarterly planning notes. The operations team reviewed the migration \
of the reporting service to the new cluster. Three dashboards still read from the legacy \
warehouse; owners will move them before the end of the month. Latency of the nightly export \
dropped from forty minutes to twelve after the index change. The support backlog is down to \
sixty tickets, most of them about invoice formatting, which the billing team will fix in the \
next release. Hiring: two backend engineers start in March, one data analyst in April. The \
offsite is planned for the second week of May; travel requests go through the usual portal. \
Action items: confirm the dashboard owners, publish the export runbook, schedule the billing \
release review, and collect feedback on the new on-call rotation before the retrospective. \
Budget remains within the approved envelope; no new vendors this quarter. Next review in four \
weeks, same agenda, with a short demo of the new reporting pipeline by the platform team.";

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
    if std::env::var("PROFILE_OBSERVE").is_ok() {
        // The inspection of a 1 KiB text result (the criterion bench's
        // `observe_result/1KiB_text` result) on the warmed session; the
        // verdict is taken once, outside the loop.
        let read_args = json!({"path": "/r/q4.md"});
        let read = Call::tool(&agent, &key, "read_file", &read_args).on("files");
        let v = judge.judge_call(
            StateMut {
                session: &mut s.clone(),
                agent: &mut a.clone(),
                user: None,
            },
            &read,
            Millis(5),
        );
        // `PROFILE_OBSERVE=prose`: the gateway bench's result instead
        // (crates/bench's `TEXT`: 1 KiB of business prose, nothing found),
        // seen once before, as on a live session.
        let prose = std::env::var("PROFILE_OBSERVE").is_ok_and(|m| m == "prose");
        let result = if prose {
            json!({"content": [{"type": "text", "text": PROSE}], "isError": false})
        } else {
            json!({"content": [{"type": "text", "text": "Lorem ipsum dolor sit amet, contact ops@northwind.example, card 4111 1111 1111 1111. ".repeat(12)}]})
        };
        // `PROFILE_OBSERVE=full`: the session and agent stores already full
        // (a dozen distinct results seen), as on a long-lived session; the
        // bench's result is new to them, so every call evicts.
        if std::env::var("PROFILE_OBSERVE").is_ok_and(|m| m == "full") {
            for i in 0..12u64 {
                let text: Vec<String> = PROSE.split(' ').map(|w| format!("{w}{i}")).collect();
                let r = json!({"content": [{"type": "text", "text": text.join(" ")}]});
                let _ = judge.observe_result(
                    StateMut {
                        session: &mut s,
                        agent: &mut a,
                        user: None,
                    },
                    &read,
                    &v,
                    &ToolResult {
                        value: &r,
                        is_error: false,
                    },
                    Millis(6 + i),
                );
            }
            eprintln!(
                "store: session {} entries, agent state {} bytes",
                s.provenance().len(),
                a.approx_bytes()
            );
        }
        if prose {
            let _ = judge.observe_result(
                StateMut {
                    session: &mut s,
                    agent: &mut a,
                    user: None,
                },
                &read,
                &v,
                &ToolResult {
                    value: &result,
                    is_error: false,
                },
                Millis(6),
            );
        }
        for i in 0..1000 {
            let (mut s2, mut a2) = (s.clone(), a.clone());
            let _ = std::hint::black_box(judge.observe_result(
                StateMut {
                    session: &mut s2,
                    agent: &mut a2,
                    user: None,
                },
                &read,
                &v,
                &ToolResult {
                    value: &result,
                    is_error: false,
                },
                Millis(10 + i),
            ));
        }
        return;
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
