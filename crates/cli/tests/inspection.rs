//! Content inspection on the live path, end to end: a result carrying a
//! class the operator blocks reaches the agent as a refusal with its
//! decision id, and the audit log records what was found (never the value);
//! an upstream streaming SSE events has secrets masked (or blocked events
//! dropped) in every event, and the stream stays valid.

mod support;

use serde_json::{Value, json};
use support::{Gateway, HttpFixture, call, castellan, open_session, post, text_of};

/// The fixture's key (see `fixtures/http_upstream.py`).
const KEY: &str = "AKIAIOSFODNN7EXAMPLE";

/// A gateway in front of the HTTP fixture; `content` is the rule file's
/// `settings.content` (merged over the default pack).
fn gateway(up: &HttpFixture, content: &str) -> Gateway {
    let dir = support::scratch("inspect-rules");
    let rules = dir.join("content.yaml");
    std::fs::write(
        &rules,
        format!("settings:\n  content: {content}\nrules: []\n"),
    )
    .expect("write rules");
    Gateway::start(&format!(
        "judge:\n  rules: [{}]\nlimits:\n  upstream_timeout: 5s\nupstreams:\n  - name: remote\n    http:\n      url: http://127.0.0.1:{}/mcp\n      era: legacy\n",
        rules.display(),
        up.port
    ))
}

/// `castellan audit query` on the gateway's log, one JSON value per record.
fn audit(gw: &Gateway, filter: &[&str]) -> (String, Vec<Value>) {
    let db = gw.dir.join("audit.db").display().to_string();
    let mut args = vec!["audit", "query", db.as_str()];
    args.extend_from_slice(filter);
    let out = castellan(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let records = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    (text, records)
}

/// Waits until the batched audit log holds a record with this decision.
async fn audited(gw: &Gateway, decision: &str) -> Vec<Value> {
    let mut found = Vec::new();
    support::eventually(10, async || {
        found = audit(gw, &["--decision", decision]).1;
        !found.is_empty()
    })
    .await;
    found
}

#[tokio::test]
async fn a_blocked_result_reaches_the_agent_as_a_refusal_and_the_audit_log_has_its_findings() {
    let up = HttpFixture::start(&[]);
    let gw = gateway(&up, "{secret: block}");
    let sid = open_session(&gw.url).await;
    let r = call(
        &gw.url,
        &sid,
        1,
        "tools/call",
        json!({"name": "remote__leak_key", "arguments": {}}),
    )
    .await;
    let answer = r.last();
    assert!(
        !String::from_utf8_lossy(&r.body).contains(KEY),
        "the key must not reach the agent: {answer}"
    );
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let decision = &answer["result"]["_meta"]["io.castellan/decision"];
    let id = decision["id"].as_str().expect("decision id").to_owned();
    assert_eq!(decision["result"], "blocked", "{answer}");
    let text = text_of(answer);
    assert!(text.contains(&id), "the refusal names its decision: {text}");
    assert!(
        text.contains("secret") && text.contains("aws_access_key"),
        "{text}"
    );

    // A prompt carrying the key: a JSON-RPC refusal in the same format.
    let r = call(
        &gw.url,
        &sid,
        2,
        "prompts/get",
        json!({"name": "remote__leaky", "arguments": {}}),
    )
    .await;
    let answer = r.last();
    assert!(!String::from_utf8_lossy(&r.body).contains(KEY), "{answer}");
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    assert_eq!(answer["error"]["data"]["result"], "blocked", "{answer}");
    assert!(answer["error"]["data"]["id"].is_string(), "{answer}");

    // The call's decision and a linked record of what its result carried.
    let records = audited(&gw, "result_block").await;
    let record = records
        .iter()
        .find(|r| r["facts"]["decision"] == id.as_str())
        .unwrap_or_else(|| panic!("no result record for {id}: {records:?}"));
    assert_eq!(record["id"], format!("{id}.result"));
    assert_eq!(record["target"], "leak_key");
    let finding = &record["facts"]["findings"][0];
    assert_eq!(finding["detector"], "aws_access_key", "{record}");
    assert_eq!(finding["class"], "secret");
    assert_eq!(finding["action"], "block");
    assert_eq!(finding["in"], "result");
    assert_eq!(finding["path"], "/content/0/text");
    assert_eq!(finding["span"], json!([18, 38]));
    assert_eq!(record["facts"]["blocked"], json!(["result"]));
    assert!(
        record["rules"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("content-block-aws_access_key"))),
        "{record}"
    );
    let (all, _) = audit(&gw, &[]);
    assert!(all.contains(&format!("\"id\":\"{id}\"")), "the decision");
    assert!(!all.contains(KEY), "never the value in the audit log");
    // The operator's alert carries the findings too.
    support::eventually(10, async || {
        gw.stdout().lines().any(|l| {
            l.contains("\"result_block\"") && l.contains(&id) && l.contains("aws_access_key")
        })
    })
    .await;
    assert!(!gw.stdout().contains(KEY));
}

#[tokio::test]
async fn secrets_in_streamed_log_and_progress_events_and_in_the_result_are_masked() {
    let up = HttpFixture::start(&[]);
    let gw = gateway(&up, "{secret: redact}");
    let sid = open_session(&gw.url).await;
    let r = call(
        &gw.url,
        &sid,
        1,
        "tools/call",
        json!({"name": "remote__stream_secrets", "arguments": {}, "_meta": {"progressToken": "p-1"}}),
    )
    .await;
    assert_eq!(
        r.header("content-type"),
        Some("text/event-stream"),
        "{}",
        gw.logs()
    );
    let body = String::from_utf8_lossy(&r.body);
    assert!(!body.contains(KEY), "{body}");
    // Every event parsed as JSON-RPC (support::send decodes each one).
    let methods: Vec<Value> = r.messages.iter().map(|m| m["method"].clone()).collect();
    assert_eq!(
        methods,
        [
            json!("notifications/message"),
            json!("notifications/progress"),
            json!("notifications/message"),
            Value::Null
        ],
        "{body}"
    );
    assert_eq!(
        r.messages[0]["params"]["data"],
        "loaded key [redacted secret] from the vault"
    );
    assert_eq!(r.messages[0]["params"]["logger"], "deploy");
    assert_eq!(
        r.messages[1]["params"]["message"],
        "using [redacted secret]"
    );
    assert_eq!(r.messages[1]["params"]["progressToken"], "p-1");
    assert_eq!(
        r.messages[2]["params"]["data"],
        json!({"step": "upload", "files": 3})
    );
    assert_eq!(r.last()["id"], 1);
    assert_eq!(text_of(r.last()), "deployed with [redacted secret]");

    let records = audited(&gw, "result_redact").await;
    let found: Vec<(&str, &str)> = records[0]["facts"]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["in"].as_str().unwrap_or_default(),
                f["path"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("notifications/message", "/data"),
            ("notifications/progress", "/message"),
            ("result", "/content/0/text"),
        ],
        "{}",
        records[0]
    );
    assert_eq!(records[0]["facts"]["redacted"], 3);
}

#[tokio::test]
async fn a_blocked_event_is_dropped_and_the_clean_rest_of_the_stream_goes_through() {
    let up = HttpFixture::start(&[]);
    let gw = gateway(&up, "{secret: block}");
    let sid = open_session(&gw.url).await;
    let r = post(
        &gw.url,
        &[
            ("mcp-session-id", &sid),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        &json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "remote__stream_log_secret", "arguments": {}, "_meta": {"progressToken": 9}}}),
    )
    .await;
    let body = String::from_utf8_lossy(&r.body);
    assert!(!body.contains(KEY), "{body}");
    let methods: Vec<Value> = r.messages.iter().map(|m| m["method"].clone()).collect();
    assert_eq!(
        methods,
        [
            json!("notifications/progress"),
            json!("notifications/message"),
            Value::Null
        ],
        "the log event carrying the key is dropped: {body}"
    );
    assert_eq!(r.last()["id"], 7);
    assert_eq!(text_of(r.last()), "deployed");
    assert_ne!(r.last()["result"]["isError"], true);

    let records = audited(&gw, "result_block").await;
    assert_eq!(
        records[0]["facts"]["blocked"],
        json!(["notifications/message"]),
        "{}",
        records[0]
    );
    assert_eq!(
        records[0]["facts"]["findings"][0]["in"],
        "notifications/message"
    );
}

#[tokio::test]
async fn a_clean_result_writes_no_result_record() {
    let up = HttpFixture::start(&[]);
    let gw = gateway(&up, "{secret: block}");
    let sid = open_session(&gw.url).await;
    let r = call(
        &gw.url,
        &sid,
        1,
        "tools/call",
        json!({"name": "remote__echo", "arguments": {"text": "nothing to see"}}),
    )
    .await;
    assert_eq!(text_of(r.last()), "nothing to see");
    let mut records = Vec::new();
    support::eventually(10, async || {
        records = audit(&gw, &["--tool", "echo"]).1;
        !records.is_empty()
    })
    .await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["decision"], "allow");
}

/// Reads `sid`'s standalone (GET) stream until an event mentions `needle`
/// or `secs` pass; returns every event's data seen.
async fn standalone_events(gw: &Gateway, sid: &str, needle: &str, secs: u64) -> Vec<String> {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let req = hyper::Request::builder()
        .method("GET")
        .uri(&gw.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-06-18")
        .header("authorization", support::TEST_AUTH)
        .body(Empty::new())
        .expect("request");
    let resp = client.request(req).await.expect("GET stream");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let (mut raw, mut events) = (Vec::new(), Vec::new());
    let mut decoder = castellan_protocol::sse::Decoder::new(1 << 20);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await {
        if let Some(data) = frame.data_ref() {
            raw.clear();
            decoder.feed(data, &mut raw).expect("valid SSE");
            events.extend(raw.iter().map(|e| e.data.clone()));
            if events.iter().any(|e| e.contains(needle)) {
                break;
            }
        }
    }
    events
}

#[tokio::test]
async fn pushes_outside_any_call_are_inspected_on_the_standalone_stream() {
    for (content, redacted) in [("{secret: redact}", true), ("{secret: block}", false)] {
        let dir = support::scratch("inspect-push");
        let rules = dir.join("content.yaml");
        std::fs::write(
            &rules,
            format!("settings:\n  content: {content}\nrules: []\n"),
        )
        .expect("write rules");
        let gw = support::Gateway::start_with_env(
            &format!(
                "judge:\n  rules: [{}]\nupstreams:\n  - name: py\n    stdio:\n      command: python3\n      args: [\"-u\", \"{}\"]\n",
                rules.display(),
                support::fixture("stdio_server.py")
            ),
            &[("FIXTURE_ANNOUNCE", "1")],
        );
        let sid = open_session(&gw.url).await;
        let url = gw.url.clone();
        let listen = standalone_events(&gw, &sid, "rotated", 8);
        let caller = async {
            // Let the GET stream attach first.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let r = call(
                &url,
                &sid,
                1,
                "tools/call",
                json!({"name": "py__announce", "arguments": {}}),
            )
            .await;
            assert_eq!(text_of(r.last()), "announced", "{}", r.last());
        };
        let (events, ()) = tokio::join!(listen, caller);
        let all = events.join("\n");
        assert!(
            !all.contains(KEY),
            "the key must not reach the agent: {all}"
        );
        if redacted {
            assert!(
                all.contains("rotated"),
                "the message arrives with the key masked: {all}"
            );
        } else {
            assert!(!all.contains("rotated"), "a blocked push is dropped: {all}");
        }
        // What was found is in the audit log, without the value.
        let mut found = Vec::new();
        support::eventually(10, async || {
            found = audit(&gw, &["--tool", "notifications/message"]).1;
            !found.is_empty()
        })
        .await;
        let text = serde_json::to_string(&found).expect("json");
        let kind = if redacted {
            "result_redact"
        } else {
            "result_block"
        };
        assert!(text.contains(kind), "{text}");
        assert!(!text.contains(KEY), "{text}");
    }
}
