//! Upstream credentials end to end: the gateway obtains its own OAuth
//! access token (client credentials) for an HTTP upstream, caches it, gets
//! a new one when the upstream refuses it, and never forwards the agent's
//! own token.

mod support;

use serde_json::{Value, json};
use support::{Gateway, HttpFixture, TEST_KEY, call, open_session, text_of};

fn config(port: u16, secret: &str) -> String {
    format!(
        "upstreams:\n  - name: remote\n    http:\n      url: http://127.0.0.1:{port}/mcp\n      era: legacy\n      oauth:\n        token_url: http://127.0.0.1:{port}/token\n        client_id: castellan\n        client_secret: {secret}\n        scopes: [\"mcp:call\"]\n"
    )
}

async fn whoauth(gw: &Gateway, sid: &str, id: u64) -> Value {
    let r = call(
        &gw.url,
        sid,
        id,
        "tools/call",
        json!({"name": "remote__whoauth", "arguments": {}}),
    )
    .await;
    serde_json::from_str(&text_of(r.last())).unwrap_or_else(|_| panic!("{}", r.last()))
}

#[tokio::test]
async fn the_gateway_uses_its_own_client_credentials_token_and_renews_it_when_refused() {
    let up = HttpFixture::start(&[("FIXTURE_OAUTH", "castellan:s3cret")]);
    let gw = Gateway::start(&config(up.port, "s3cret"));
    let sid = open_session(&gw.url).await;
    let first = whoauth(&gw, &sid, 1).await;
    let auth = first["authorization"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(auth.starts_with("Bearer upstream-token-"), "{first}");
    assert!(
        !auth.contains(TEST_KEY),
        "the agent's key must never reach the upstream"
    );
    // The token is cached: a second call asks for no new one.
    let second = whoauth(&gw, &sid, 2).await;
    assert_eq!(second["issued"], first["issued"], "{second}");

    // The upstream rotates its tokens: the next call gets 401 upstream, and
    // the gateway fetches a fresh token and retries, invisibly to the agent.
    let r = call(
        &gw.url,
        &sid,
        3,
        "tools/call",
        json!({"name": "remote__revoke_tokens", "arguments": {}}),
    )
    .await;
    assert_eq!(text_of(r.last()), "revoked");
    let third = whoauth(&gw, &sid, 4).await;
    assert_ne!(third["authorization"], first["authorization"], "{third}");
    assert!(
        third["issued"].as_u64() > first["issued"].as_u64(),
        "{third}"
    );
}

#[tokio::test]
async fn wrong_client_credentials_give_a_clear_upstream_error() {
    let up = HttpFixture::start(&[("FIXTURE_OAUTH", "castellan:s3cret")]);
    let gw = Gateway::start(&config(up.port, "wrong"));
    let sid = open_session(&gw.url).await;
    let r = call(
        &gw.url,
        &sid,
        1,
        "tools/call",
        json!({"name": "remote__echo", "arguments": {"text": "x"}}),
    )
    .await;
    let err = &r.last()["error"];
    assert_eq!(err["data"]["upstream"], "remote", "{err}");
    let msg = err["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("401") && msg.contains("invalid_client"),
        "{msg}"
    );
    assert!(
        !msg.contains("wrong"),
        "the secret must not appear in errors: {msg}"
    );
}
