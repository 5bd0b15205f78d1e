//! End-to-end tests of the gateway's MCP endpoint: the real binary, real
//! HTTP, builtin, stdio and HTTP upstreams.

mod support;

use http::StatusCode;
use serde_json::{Value, json};
use support::{Gateway, call, fixture, modern_meta, open_session, post, send, text_of};

const DEMO: &str = "upstreams:\n  - name: mail\n    builtin: mail\n  - name: files\n    builtin: files\n  - name: web\n    builtin: web\n";

fn tool_names(reply: &Value) -> Vec<String> {
    reply["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

mod legacy_sessions {
    use super::*;

    #[tokio::test]
    async fn lists_namespaced_tools_of_every_upstream_and_calls_one() {
        let gw = Gateway::start(DEMO);
        let sid = open_session(&gw.url).await;
        let list = call(&gw.url, &sid, 1, "tools/list", json!({})).await;
        let names = tool_names(list.last());
        assert!(names.contains(&"mail__send_email".to_string()), "{names:?}");
        assert!(names.contains(&"files__read_file".to_string()), "{names:?}");
        assert!(names.contains(&"web__fetch_url".to_string()), "{names:?}");
        let r = call(
            &gw.url,
            &sid,
            2,
            "tools/call",
            json!({"name": "files__read_file", "arguments": {"path": "notes/todo.md"}}),
        )
        .await;
        assert_eq!(r.last()["id"], 2);
        assert!(text_of(r.last()).contains("Q3 summary"));
    }

    #[tokio::test]
    async fn requests_without_a_session_are_refused_and_unknown_sessions_get_404() {
        let gw = Gateway::start(DEMO);
        let r = post(
            &gw.url,
            &[],
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(
            r.last()["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("Mcp-Session-Id")
        );
        let r = call(
            &gw.url,
            "0123456789abcdef0123456789abcdef",
            1,
            "tools/list",
            json!({}),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn delete_ends_the_session() {
        let gw = Gateway::start(DEMO);
        let sid = open_session(&gw.url).await;
        let r = send("DELETE", &gw.url, &[("mcp-session-id", &sid)], Vec::new()).await;
        assert_eq!(r.status, StatusCode::OK);
        let r = call(&gw.url, &sid, 1, "tools/list", json!({})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn ids_are_echoed_exactly_and_unknown_tools_are_invalid_params() {
        let gw = Gateway::start(DEMO);
        let sid = open_session(&gw.url).await;
        let r = post(&gw.url, &[("mcp-session-id", &sid)], &json!({"jsonrpc": "2.0", "id": "req-ü-1", "method": "tools/call", "params": {"name": "mail__nope", "arguments": {}}})).await;
        assert_eq!(r.last()["id"], "req-ü-1");
        assert_eq!(r.last()["error"]["code"], -32602);
        let r = post(&gw.url, &[("mcp-session-id", &sid)], &json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "nobody__tool", "arguments": {}}})).await;
        assert_eq!(r.last()["error"]["code"], -32602);
        assert!(
            r.last()["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("nobody__tool")
        );
    }

    #[tokio::test]
    async fn a_foreign_cursor_is_refused() {
        let gw = Gateway::start(DEMO);
        let sid = open_session(&gw.url).await;
        let r = call(&gw.url, &sid, 1, "tools/list", json!({"cursor": "forged"})).await;
        assert_eq!(r.last()["error"]["code"], -32602);
    }
}

mod modern_requests {
    use super::*;

    fn headers<'a>(method: &'a str, name: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
        let mut h = vec![
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", method),
        ];
        if let Some(n) = name {
            h.push(("mcp-name", n));
        }
        h
    }

    #[tokio::test]
    async fn discover_and_call_statelessly_with_result_type() {
        let gw = Gateway::start(DEMO);
        let r = post(&gw.url, &headers("server/discover", None), &json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": modern_meta()}})).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            r.last()["result"]["supportedVersions"]
                .as_array()
                .expect("versions")
                .contains(&json!("2026-07-28"))
        );
        assert_eq!(r.last()["result"]["resultType"], "complete");
        let r = post(
            &gw.url,
            &headers("tools/call", Some("mail__list_inbox")),
            &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "mail__list_inbox", "arguments": {}, "_meta": modern_meta()}}),
        )
        .await;
        assert_eq!(r.last()["result"]["resultType"], "complete");
        assert!(text_of(r.last()).contains("Q3 numbers"));
    }

    #[tokio::test]
    async fn headers_that_do_not_match_the_body_are_refused() {
        let gw = Gateway::start(DEMO);
        let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "mail__send_email", "arguments": {"to": "x@example.com", "body": "b"}, "_meta": modern_meta()}});
        let r = post(
            &gw.url,
            &headers("tools/call", Some("mail__list_inbox")),
            &body,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.last()["error"]["code"], -32020);
        let r = post(
            &gw.url,
            &headers("tools/list", Some("mail__send_email")),
            &body,
        )
        .await;
        assert_eq!(r.last()["error"]["code"], -32020);
        let r = post(&gw.url, &[("mcp-protocol-version", "2026-07-28")], &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "missing Mcp-Method");
        // A base64-encoded Mcp-Name is decoded before comparison.
        let r = post(
            &gw.url,
            &headers("tools/call", Some("=?base64?bWFpbF9fc2VuZF9lbWFpbA==?=")),
            &body,
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }

    #[tokio::test]
    async fn an_unsupported_version_lists_the_supported_ones() {
        let gw = Gateway::start(DEMO);
        let mut meta = modern_meta();
        meta["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
        let r = post(
            &gw.url,
            &[
                ("mcp-protocol-version", "2099-01-01"),
                ("mcp-method", "tools/list"),
            ],
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}}),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.last()["error"]["code"], -32022);
        assert_eq!(r.last()["error"]["data"]["requested"], "2099-01-01");
    }
}

mod bad_input {
    use super::*;

    #[tokio::test]
    async fn malformed_json_is_a_parse_error_and_batches_are_invalid() {
        let gw = Gateway::start(DEMO);
        let h = [
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ];
        let r = send("POST", &gw.url, &h, b"{\"jsonrpc\":\"2.0\",".to_vec()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.last()["error"]["code"], -32700);
        let r = send(
            "POST",
            &gw.url,
            &h,
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.to_vec(),
        )
        .await;
        assert_eq!(r.last()["error"]["code"], -32600);
        let r = send("POST", &gw.url, &h, br#"{"jsonrpc":"2.0","id":1}"#.to_vec()).await;
        assert_eq!(r.last()["error"]["code"], -32600);
        let r = send(
            "POST",
            &gw.url,
            &[("content-type", "text/plain")],
            b"{}".to_vec(),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    /// Arguments the judge would read differently from the tool (a
    /// duplicate key: serde_json keeps the last, other parsers the first)
    /// or cannot read at all are refused before anything reaches the
    /// upstream, never judged as `{}`.
    #[tokio::test]
    async fn arguments_with_a_duplicate_key_are_refused_and_never_reach_the_upstream() {
        let calls = support::scratch("duplicate-keys").join("calls.log");
        let gw = Gateway::start(&format!(
            "upstreams:\n  - name: py\n    stdio:\n      command: python3\n      args: [\"-u\", \"{}\"]\n      env:\n        FIXTURE_CALLS: \"{}\"\n",
            fixture("stdio_server.py"),
            calls.display()
        ));
        let sid = open_session(&gw.url).await;
        let h = [
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-session-id", sid.as_str()),
        ];
        let post_raw = |body: &str| {
            let body = body.as_bytes().to_vec();
            let url = gw.url.clone();
            async move { send("POST", &url, &h, body).await }
        };
        let r = post_raw(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"py__echo","arguments":{"text":"hi","mail":{"to":"a@example.com","to":"b@evil.example"}}}}"#).await;
        assert_eq!(r.last()["id"], 1);
        assert_eq!(r.last()["error"]["code"], -32602, "{}", r.last());
        let message = r.last()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            message.starts_with("duplicate key `to` in `arguments`"),
            "{message}"
        );
        // A number the judge cannot read, and a duplicate in `_meta`, too.
        let r = post_raw(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"py__echo","arguments":{"text":"hi","n":1e400}}}"#).await;
        assert_eq!(r.last()["error"]["code"], -32602, "{}", r.last());
        let r = post_raw(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"py__echo","arguments":{"text":"hi"},"_meta":{"intent":"a","intent":"b"}}}"#).await;
        assert_eq!(r.last()["error"]["code"], -32602, "{}", r.last());
        assert!(
            r.last()["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("`_meta`"),
            "{}",
            r.last()
        );
        assert!(!calls.exists(), "the upstream saw a refused call");
        // The same call without the duplicate goes through, and is seen.
        let r = post_raw(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"py__echo","arguments":{"text":"hi","mail":{"to":"a@example.com"}}}}"#).await;
        assert_eq!(text_of(r.last()), "hi", "{}", r.last());
        let seen = std::fs::read_to_string(&calls).expect("calls log");
        assert_eq!(seen.lines().count(), 1, "{seen}");
    }

    #[tokio::test]
    async fn bodies_over_the_limit_get_413_and_the_gateway_keeps_serving() {
        let gw = Gateway::start(&format!("limits:\n  max_body_bytes: 2048\n{DEMO}"));
        let sid = open_session(&gw.url).await;
        let big = "x".repeat(4096);
        let r = call(
            &gw.url,
            &sid,
            1,
            "tools/call",
            json!({"name": "mail__send_email", "arguments": {"to": "a@example.com", "body": big}}),
        )
        .await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        let r = call(&gw.url, &sid, 2, "tools/list", json!({})).await;
        assert_eq!(r.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn foreign_origins_and_hosts_get_403() {
        let gw = Gateway::start(DEMO);
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.to_vec();
        let r = send(
            "POST",
            &gw.url,
            &[
                ("content-type", "application/json"),
                ("origin", "https://evil.example"),
            ],
            body.clone(),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = send(
            "POST",
            &gw.url,
            &[
                ("content-type", "application/json"),
                ("host", "evil.example"),
            ],
            body.clone(),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = send(
            "POST",
            &gw.url,
            &[
                ("content-type", "application/json"),
                ("origin", "http://localhost:6274"),
            ],
            body,
        )
        .await;
        assert_ne!(
            r.status,
            StatusCode::FORBIDDEN,
            "a local origin is allowed on a loopback listener"
        );
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_disconnected() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let gw = Gateway::start(&format!("limits:\n  header_timeout: 500ms\n{DEMO}"));
        let addr = gw
            .url
            .trim_start_matches("http://")
            .trim_end_matches("/mcp")
            .to_string();
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .expect("partial headers");
        let mut buf = Vec::new();
        // The gateway closes the connection (with or without a 408) instead of waiting forever.
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            conn.read_to_end(&mut buf),
        )
        .await;
        assert!(read.is_ok(), "connection still open");
    }

    #[test]
    fn a_broken_config_file_names_file_and_line_and_exits_non_zero() {
        let dir = support::scratch("badcfg");
        let path = dir.join("castellan.yaml");
        std::fs::write(
            &path,
            "listen: 127.0.0.1:0\nupstreams:\n  - name: a\n    builtin: mail\n    colour: blue\n",
        )
        .expect("write");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_castellan"))
            .arg("check")
            .arg(&path)
            .output()
            .expect("run");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("castellan.yaml:5"), "{err}");
        assert!(err.contains("colour"), "{err}");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_castellan"))
            .args(["serve", "--config"])
            .arg(&path)
            .output()
            .expect("run");
        assert!(!out.status.success());
    }
}

mod stdio_upstreams {
    use super::*;

    fn config() -> String {
        format!(
            "limits:\n  upstream_timeout: 3s\nupstreams:\n  - name: py\n    stdio:\n      command: python3\n      args: [\"-u\", \"{}\"]\n      restart_initial: 100ms\n      restart_max: 1s\n  - name: mail\n    builtin: mail\n",
            fixture("stdio_server.py")
        )
    }

    #[tokio::test]
    async fn calls_reach_the_child_and_progress_comes_back_with_the_agents_token() {
        let gw = Gateway::start(&config());
        let sid = open_session(&gw.url).await;
        let r = call(
            &gw.url,
            &sid,
            1,
            "tools/call",
            json!({"name": "py__echo", "arguments": {"text": "hello"}}),
        )
        .await;
        assert_eq!(text_of(r.last()), "hello", "{}", gw.logs());
        let r = call(
            &gw.url,
            &sid,
            2,
            "tools/call",
            json!({"name": "py__progress", "arguments": {}, "_meta": {"progressToken": "mine"}}),
        )
        .await;
        let progress: Vec<&Value> = r
            .messages
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .collect();
        assert_eq!(progress.len(), 3, "{:?}", r.messages);
        assert!(
            progress
                .iter()
                .all(|p| p["params"]["progressToken"] == "mine")
        );
        assert_eq!(text_of(r.last()), "finished");
    }

    #[tokio::test]
    async fn a_child_that_dies_mid_call_fails_that_call_and_is_restarted() {
        let gw = Gateway::start(&config());
        let sid = open_session(&gw.url).await;
        let before = text_of(
            call(
                &gw.url,
                &sid,
                1,
                "tools/call",
                json!({"name": "py__whoami", "arguments": {}}),
            )
            .await
            .last(),
        );
        let r = call(
            &gw.url,
            &sid,
            2,
            "tools/call",
            json!({"name": "py__crash", "arguments": {}}),
        )
        .await;
        let err = &r.last()["error"];
        assert_eq!(err["code"], -32012, "{}", r.last());
        assert_eq!(err["data"]["upstream"], "py");
        // Other upstreams are unaffected.
        let r = call(
            &gw.url,
            &sid,
            3,
            "tools/call",
            json!({"name": "mail__list_inbox", "arguments": {}}),
        )
        .await;
        assert!(r.last()["result"].is_object());
        // The child comes back with a new process.
        let mut after = String::new();
        support::eventually(15, async || {
            let r = call(
                &gw.url,
                &sid,
                4,
                "tools/call",
                json!({"name": "py__whoami", "arguments": {}}),
            )
            .await;
            match r.last()["result"]["content"][0]["text"].as_str() {
                Some(pid) => {
                    after = pid.to_string();
                    true
                }
                None => false,
            }
        })
        .await;
        assert_ne!(before, after);
    }

    #[tokio::test]
    async fn a_slow_child_times_out_with_an_error_naming_the_upstream() {
        let gw = Gateway::start(&config());
        let sid = open_session(&gw.url).await;
        let r = call(
            &gw.url,
            &sid,
            1,
            "tools/call",
            json!({"name": "py__slow", "arguments": {"seconds": 10}}),
        )
        .await;
        assert_eq!(r.last()["error"]["code"], -32011, "{}", r.last());
        assert_eq!(r.last()["error"]["data"]["upstream"], "py");
    }

    #[tokio::test]
    async fn a_command_that_cannot_start_gives_a_clear_error() {
        let gw = Gateway::start(
            "limits:\n  upstream_timeout: 1s\nupstreams:\n  - name: ghost\n    stdio:\n      command: /nonexistent/mcp-server\n",
        );
        let sid = open_session(&gw.url).await;
        let r = call(
            &gw.url,
            &sid,
            1,
            "tools/call",
            json!({"name": "ghost__x", "arguments": {}}),
        )
        .await;
        let msg = r.last()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            msg.contains("ghost") && msg.contains("cannot start"),
            "{msg}"
        );
    }
}

mod http_upstreams {
    use super::*;
    use support::HttpFixture;

    fn start_upstream() -> HttpFixture {
        HttpFixture::start(&[])
    }

    fn config(port: u16) -> String {
        format!(
            "limits:\n  upstream_timeout: 2s\nupstreams:\n  - name: remote\n    http:\n      url: http://127.0.0.1:{port}/mcp\n      era: legacy\n  - name: mail\n    builtin: mail\n"
        )
    }

    #[tokio::test]
    async fn calls_go_through_an_upstream_session() {
        let up = start_upstream();
        let gw = Gateway::start(&config(up.port));
        let sid = open_session(&gw.url).await;
        let r = call(
            &gw.url,
            &sid,
            1,
            "tools/call",
            json!({"name": "remote__echo", "arguments": {"text": "via http"}}),
        )
        .await;
        assert_eq!(text_of(r.last()), "via http", "{}", gw.logs());
    }

    #[tokio::test]
    async fn an_upstream_dying_mid_stream_ends_the_agents_stream_with_an_error() {
        let up = start_upstream();
        let gw = Gateway::start(&config(up.port));
        let sid = open_session(&gw.url).await;
        let r = call(
            &gw.url,
            &sid,
            1,
            "tools/call",
            json!({"name": "remote__stream_then_die", "arguments": {}}),
        )
        .await;
        assert_eq!(
            r.messages.first().map(|m| m["method"].clone()),
            Some(json!("notifications/message")),
            "{:?}",
            r.messages
        );
        assert_eq!(r.last()["id"], 1);
        assert_eq!(r.last()["error"]["code"], -32012, "{}", r.last());
        let r = call(
            &gw.url,
            &sid,
            2,
            "tools/call",
            json!({"name": "mail__list_inbox", "arguments": {}}),
        )
        .await;
        assert!(r.last()["result"].is_object(), "the session survives");
    }

    #[tokio::test]
    async fn a_hanging_upstream_times_out_and_a_dead_one_is_named() {
        let up = start_upstream();
        let gw = Gateway::start(&config(up.port));
        let sid = open_session(&gw.url).await;
        let r = call(
            &gw.url,
            &sid,
            1,
            "tools/call",
            json!({"name": "remote__hang", "arguments": {}}),
        )
        .await;
        assert_eq!(r.last()["error"]["code"], -32011, "{}", r.last());
        drop(up);
        let gw2 = Gateway::start(&config(1));
        let sid2 = open_session(&gw2.url).await;
        let r = call(
            &gw2.url,
            &sid2,
            1,
            "tools/call",
            json!({"name": "remote__echo", "arguments": {}}),
        )
        .await;
        assert_eq!(r.last()["error"]["code"], -32010, "{}", r.last());
        assert_eq!(r.last()["error"]["data"]["upstream"], "remote");
        // The list still works: the dead upstream is left out.
        let r = call(&gw2.url, &sid2, 2, "tools/list", json!({})).await;
        assert!(tool_names(r.last()).contains(&"mail__list_inbox".to_string()));
    }
}
