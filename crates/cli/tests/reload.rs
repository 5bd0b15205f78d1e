//! Configuration reload end to end: agent keys and upstream credentials
//! change without a restart and without dropping sessions; a reload with
//! any broken part changes nothing; changes that need a restart are named;
//! a reloaded policy shapes the very next tool list.

mod support;

use http::StatusCode;
use serde_json::{Value, json};
use support::{
    Gateway, HttpFixture, OTHER_KEY, Reply, TEST_KEY, admin, admin_section, call, open_session,
    open_session_as, post, sha256_hex,
};

const NEW_KEY: &str = "cst_new_0123456789abcdef0123456789abcdef01";

fn keys(test_agent_revoked: bool, new_agent: bool) -> String {
    let mut out = format!(
        "auth:\n  api_keys:\n    - agent: test-agent\n      sha256: {}\n      revoked: {test_agent_revoked}\n    - agent: other-agent\n      sha256: {}\n",
        sha256_hex(TEST_KEY),
        sha256_hex(OTHER_KEY)
    );
    if new_agent {
        out.push_str(&format!(
            "    - agent: new-agent\n      sha256: {}\n",
            sha256_hex(NEW_KEY)
        ));
    }
    out
}

fn upstream(port: u16, secret: &str) -> String {
    format!(
        "upstreams:\n  - name: remote\n    http:\n      url: http://127.0.0.1:{port}/mcp\n      era: legacy\n      oauth:\n        token_url: http://127.0.0.1:{port}/token\n        client_id: castellan\n        client_secret: {secret}\n        scopes: [\"mcp:call\"]\n"
    )
}

/// Replaces the gateway's configuration file, keeping the sections the test
/// harness added (audit, integrity) in front.
fn rewrite(gw: &Gateway, old: &str, new: &str) {
    let text = std::fs::read_to_string(&gw.config).expect("config");
    assert!(text.contains(old), "{text}");
    std::fs::write(&gw.config, text.replace(old, new)).expect("write config");
}

async fn reload(gw: &Gateway) -> (StatusCode, Value) {
    let r = admin(gw, "POST", "/reload").await;
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

async fn echo_as(gw: &Gateway, key: &str, sid: &str, id: u64) -> Reply {
    post(
        &gw.url,
        &[
            ("authorization", &format!("Bearer {key}")),
            ("mcp-session-id", sid),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": "remote__echo", "arguments": {"text": "hello"}}}),
    )
    .await
}

#[tokio::test]
async fn keys_and_upstream_credentials_change_without_a_restart_or_a_dropped_session() {
    let up = HttpFixture::start(&[("FIXTURE_OAUTH", "castellan:s3cret")]);
    let old_auth = keys(false, false);
    let old_upstream = upstream(up.port, "rotated-away");
    let gw = Gateway::start(&format!("{old_auth}{}{old_upstream}", admin_section()));
    let sid = open_session_as(&gw.url, TEST_KEY).await;
    let other = open_session_as(&gw.url, OTHER_KEY).await;
    let before = echo_as(&gw, OTHER_KEY, &other, 1).await;
    assert!(
        before.last()["error"].is_object(),
        "the stale client secret is refused upstream: {}",
        before.last()
    );

    rewrite(&gw, &old_auth, &keys(true, true));
    rewrite(&gw, &old_upstream, &upstream(up.port, "s3cret"));
    let (status, r) = reload(&gw).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let applied: Vec<&str> = r["applied"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        applied.contains(&"auth") && applied.contains(&"upstream credentials"),
        "{r}"
    );
    assert_eq!(r["restart_needed"], json!([]), "{r}");

    // The revoked key is refused on its very next request.
    let revoked = echo_as(&gw, TEST_KEY, &sid, 2).await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    assert!(
        String::from_utf8_lossy(&revoked.body).contains("revoked"),
        "{}",
        String::from_utf8_lossy(&revoked.body)
    );
    // The other agent's session survived and now reaches the upstream with
    // the rotated client secret.
    let after = echo_as(&gw, OTHER_KEY, &other, 3).await;
    assert_eq!(
        after.last()["result"]["content"][0]["text"],
        "hello",
        "{}",
        after.last()
    );
    // A key added in the new file works at once.
    let fresh = open_session_as(&gw.url, NEW_KEY).await;
    let r = echo_as(&gw, NEW_KEY, &fresh, 4).await;
    assert_eq!(r.last()["result"]["content"][0]["text"], "hello");
}

#[tokio::test]
async fn a_reload_with_one_broken_part_changes_nothing_and_restart_only_changes_are_named() {
    let up = HttpFixture::start(&[]);
    let old_auth = keys(false, false);
    let plain = format!(
        "upstreams:\n  - name: remote\n    http:\n      url: http://127.0.0.1:{}/mcp\n      era: legacy\n",
        up.port
    );
    let gw = Gateway::start(&format!("{old_auth}{}{plain}", admin_section()));
    let sid = open_session_as(&gw.url, TEST_KEY).await;

    // Revoking the key is valid, the missing policy file is not: neither
    // takes effect.
    rewrite(
        &gw,
        &old_auth,
        &format!(
            "{}judge:\n  policy: /nonexistent/castellan.cedar\n",
            keys(true, false)
        ),
    );
    let (status, r) = reload(&gw).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(
        r["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("castellan.cedar"),
        "{r}"
    );
    let still = echo_as(&gw, TEST_KEY, &sid, 1).await;
    assert_eq!(
        still.last()["result"]["content"][0]["text"],
        "hello",
        "the running keys stay in force: {}",
        still.last()
    );

    // A second upstream cannot be added while running: the reload applies
    // the rest and says what waits for a restart.
    let text = std::fs::read_to_string(&gw.config).expect("config");
    let text = text
        .replace("judge:\n  policy: /nonexistent/castellan.cedar\n", "")
        .replace(
            &plain,
            &format!(
                "{plain}  - name: second\n    http:\n      url: http://127.0.0.1:{}/mcp\n",
                up.port
            ),
        );
    std::fs::write(&gw.config, text).expect("write config");
    let (status, r) = reload(&gw).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert!(
        r["restart_needed"].as_array().is_some_and(|a| a
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.starts_with("upstreams")))),
        "{r}"
    );
    let revoked = echo_as(&gw, TEST_KEY, &sid, 2).await;
    assert_eq!(
        revoked.status,
        StatusCode::UNAUTHORIZED,
        "the key revocation applied"
    );
}

#[tokio::test]
async fn a_reloaded_policy_hides_a_tool_from_the_next_list_of_an_agent_that_listed_it_before() {
    let policy = support::scratch("reload-policy").join("policy.cedar");
    std::fs::write(
        &policy,
        "@id(\"all\")\npermit (principal, action, resource);\n",
    )
    .expect("policy");
    let gw = Gateway::start(&format!(
        "{}{}judge:\n  policy: {}\nupstreams:\n  - name: mail\n    builtin: mail\n",
        support::test_auth(),
        admin_section(),
        policy.display()
    ));
    let sid = open_session(&gw.url).await;
    // Listed twice: the second answer may be the first one reused.
    for id in 1..=2 {
        let list = call(&gw.url, &sid, id, "tools/list", json!({})).await;
        assert!(
            support::tool_names_of(list.last()).contains(&"mail__send_email".to_owned()),
            "{}",
            list.last()
        );
    }

    std::fs::write(
        &policy,
        "@id(\"all\")\npermit (principal, action, resource);\n@id(\"no-mail\")\nforbid (principal, action == Action::\"list_tools\", resource == Tool::\"mail/send_email\");\n",
    )
    .expect("policy");
    let (status, r) = reload(&gw).await;
    assert_eq!(status, StatusCode::OK, "{r}");

    let list = call(&gw.url, &sid, 3, "tools/list", json!({})).await;
    let shown = support::tool_names_of(list.last());
    assert!(!shown.contains(&"mail__send_email".to_owned()), "{shown:?}");
    assert!(shown.contains(&"mail__list_inbox".to_owned()), "{shown:?}");
}
