//! End-to-end tests of agent identity: API keys, JWTs, the 401/403
//! answers and OAuth protected resource metadata, session binding, and the
//! zero-trust default configuration.

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::idp::{ISSUER, Idp, now};
use support::{Gateway, OTHER_KEY, call, open_session, post, send};

const DEMO: &str = "upstreams:\n  - name: mail\n    builtin: mail\n";

fn ping() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
}

#[tokio::test]
async fn a_request_without_credentials_gets_401_with_a_metadata_challenge() {
    let gw = Gateway::start(DEMO);
    let r = post(&gw.url, &[("authorization", "")], &ping()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let challenge = r.header("www-authenticate").expect("challenge").to_string();
    assert!(
        challenge.starts_with("Bearer resource_metadata=\""),
        "{challenge}"
    );
    let meta_url = challenge.split('"').nth(1).expect("url").to_string();
    assert!(
        meta_url.ends_with("/.well-known/oauth-protected-resource/mcp"),
        "{meta_url}"
    );
    let meta = send("GET", &meta_url, &[("authorization", "")], Vec::new()).await;
    assert_eq!(meta.status, StatusCode::OK);
    assert_eq!(meta.last()["resource"], gw.url);
}

#[tokio::test]
async fn unknown_and_revoked_keys_are_refused_without_echoing_them() {
    let revoked = "cst_revoked_0123456789abcdef0123456789abcdef";
    let yaml = format!(
        "{}    - agent: retired-bot\n      sha256: {}\n      revoked: true\n{DEMO}",
        support::test_auth(),
        support::sha256_hex(revoked)
    );
    let gw = Gateway::start(&yaml);
    let r = post(&gw.url, &[("authorization", "Bearer cst_guess")], &ping()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.header("www-authenticate")
            .unwrap_or_default()
            .contains("invalid_token")
    );
    assert!(!String::from_utf8_lossy(&r.body).contains("cst_guess"));
    let r = post(
        &gw.url,
        &[("authorization", &format!("Bearer {revoked}"))],
        &ping(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&r.body).contains("revoked"));
    let r = post(&gw.url, &[("authorization", "Basic dXNlcjpwYXNz")], &ping()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_session_id_presented_by_another_agent_is_refused() {
    let gw = Gateway::start(DEMO);
    let sid = open_session(&gw.url).await;
    let other = format!("Bearer {OTHER_KEY}");
    let r = post(
        &gw.url,
        &[("mcp-session-id", &sid), ("authorization", &other)],
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(
        "DELETE",
        &gw.url,
        &[("mcp-session-id", &sid), ("authorization", &other)],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The owner still has it.
    let r = call(&gw.url, &sid, 3, "tools/list", json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[test]
fn the_default_configuration_requires_the_key_it_prints() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_castellan"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .current_dir(support::scratch("default-config"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start");
    let mut url = String::new();
    let mut key = String::new();
    for line in BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok)
    {
        if let Some(u) = line.trim().strip_prefix("MCP endpoint: ") {
            url = u.trim().to_string();
        }
        if let Some(k) = line.trim().strip_prefix("API key: ") {
            key = k.trim().to_string();
            break;
        }
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let r = post(&url, &[("authorization", "")], &ping()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r = post(
            &url,
            &[("authorization", &format!("Bearer {key}"))],
            &ping(),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    });
    let _ = child.kill();
    let _ = child.wait();
}

fn config(idp: &Idp) -> String {
    format!(
        "{}{DEMO}",
        idp.auth(
            "    user_claim: act.sub\n    attribute_claims: [team]\n    required_scopes: [mcp]\n"
        )
    )
}

fn good_claims() -> Value {
    json!({"iss": ISSUER, "aud": "castellan", "sub": "billing-bot", "act": {"sub": "alice"}, "team": "finance", "scope": "mcp", "exp": now() + 600, "nbf": now() - 10})
}

#[tokio::test]
async fn jwt_bearer_tokens_are_verified_and_each_failure_is_refused() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let idp = Idp::new();
    let gw = Gateway::start(&config(&idp));
    let bearer = |t: &str| format!("Bearer {t}");

    let ok = idp.token("k1", &good_claims());
    let r = post(&gw.url, &[("authorization", &bearer(&ok))], &ping()).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(
        gw.logs().contains("billing-bot"),
        "the session is opened for the token's agent"
    );

    let mut cases: Vec<(&str, String)> = Vec::new();
    let with = |k: &str, v: Value| {
        let mut c = good_claims();
        c[k] = v;
        c
    };
    cases.push((
        "expired",
        idp.token("k1", &with("exp", json!(now() - 3600))),
    ));
    cases.push((
        "not yet valid",
        idp.token("k1", &with("nbf", json!(now() + 3600))),
    ));
    cases.push((
        "wrong audience",
        idp.token("k1", &with("aud", json!("another-service"))),
    ));
    cases.push((
        "wrong issuer",
        idp.token("k1", &with("iss", json!("https://evil.example"))),
    ));
    cases.push(("unknown key", idp.token("k2", &good_claims())));
    // A byte of the signature itself flipped (changing the last base64
    // character may only touch padding bits, leaving the same bytes).
    let (signed, signature) = ok.rsplit_once('.').expect("three parts");
    let mut sig = B64.decode(signature).expect("base64url signature");
    sig[10] ^= 0x01;
    let tampered = format!("{signed}.{}", B64.encode(&sig));
    cases.push(("tampered signature", tampered));
    let payload = B64.encode(good_claims().to_string());
    cases.push((
        "alg none",
        format!("{}.{payload}.", B64.encode(r#"{"alg":"none","typ":"JWT"}"#)),
    ));
    // Key confusion: an HMAC token keyed with the public JWKS must not pass.
    let public = std::fs::read(&idp.jwks_path).expect("jwks");
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    cases.push((
        "HS256 with the public key",
        jsonwebtoken::encode(&hs, &good_claims(), &EncodingKey::from_secret(&public))
            .expect("hs256"),
    ));
    for (what, token) in cases {
        let r = post(&gw.url, &[("authorization", &bearer(&token))], &ping()).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            r.header("www-authenticate")
                .unwrap_or_default()
                .contains("invalid_token"),
            "{what}"
        );
    }

    let no_scope = idp.token("k1", &with("scope", json!("read")));
    let r = post(&gw.url, &[("authorization", &bearer(&no_scope))], &ping()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.header("www-authenticate")
            .unwrap_or_default()
            .contains("insufficient_scope")
    );
}
