//! Authentication plus the Cedar decision for a typical call, as the
//! gateway runs them on every request: an API key among 100 (SHA-256 and a
//! constant-time compare), a JWT bearer token (verified once, then answered
//! from the verified-token cache), and the key followed by the judge's
//! decision for a transfer under a Cedar policy with an amount limit, a
//! recipient condition and a team condition (no behaviour rules): once
//! through the judge alone (the policy with its behavioural context: the
//! issue 3 target), once through `Behaviour::decide` with the gateway's
//! bookkeeping around it (session state, decision record, metrics; no audit
//! log).

use std::hint::black_box;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use castellan_gateway::behaviour::Behaviour;
use castellan_gateway::identity::{Authenticator, digest};
use castellan_judge::{
    AgentId, AggregateState, CallKind, Catalog, Judge, Millis, Policy, RuleSet, SessionKey,
    SessionState, StateMut, ToolDef,
};
use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

/// The same policy as the judge's Cedar bench.
const POLICY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../judge/benches/typical.cedar"
);

const ISSUER: &str = "https://idp.example.test";

fn hex(d: [u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let v = format!("Bearer {token}").parse().expect("header value");
    h.insert(http::header::AUTHORIZATION, v);
    h
}

fn bench(c: &mut Criterion) {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let dir = std::env::temp_dir().join(format!("castellan-bench-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");

    // An ES256 identity provider: its JWKS on disk, a token it signed.
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("keygen");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .expect("key pair");
    let point = pair.public_key().as_ref();
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]), "kid": "k1", "alg": "ES256", "use": "sig"}]});
    let jwks_path = dir.join("jwks.json");
    std::fs::write(&jwks_path, jwks.to_string()).expect("jwks");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    let claims = json!({"iss": ISSUER, "aud": "castellan", "sub": "billing-bot", "team": "finance", "scope": "mcp", "exp": now + 3600});
    let jwt = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(pkcs8.as_ref()))
        .expect("sign");

    let mut yaml = String::from("auth:\n  api_keys:\n");
    for i in 0..100 {
        yaml.push_str(&format!(
            "    - agent: agent-{i}\n      sha256: {}\n      attributes: {{team: support}}\n",
            hex(digest(&format!("cst_bench_key_{i:04}")))
        ));
    }
    yaml.push_str(&format!(
        "  jwt:\n    issuer: {ISSUER}\n    audiences: [castellan]\n    jwks_file: {}\n    algorithms: [ES256]\n    attribute_claims: [team]\n    required_scopes: [mcp]\njudge:\n  pack: none\n  policy: {}\nupstreams:\n  - name: payments\n    builtin: payments\n  - name: mail\n    builtin: mail\n",
        jwks_path.display(),
        POLICY
    ));
    let cfg = castellan_config::load("bench.yaml", &yaml, &|_| None).expect("config loads");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let auth = rt
        .block_on(Authenticator::new(&cfg.auth, None))
        .expect("authenticator");
    let behaviour = Behaviour::new(&cfg.judge, None).expect("judge");
    behaviour.learn_tools(
        "payments",
        &[json!({"name": "transfer_funds", "description": "Transfer money", "inputSchema": {"type": "object", "properties": {"from_account": {"type": "string"}, "to_iban": {"type": "string"}, "amount": {"type": "number"}, "memo": {"type": "string"}}}})],
    );
    assert!(behaviour.policy_problem().is_none(), "the policy validates");

    let key = bearer("cst_bench_key_0042");
    let token = bearer(&jwt);
    c.bench_function("auth_api_key", |b| {
        b.iter(|| black_box(rt.block_on(auth.authenticate(black_box(&key), None))))
    });
    c.bench_function("auth_jwt_verified_before", |b| {
        b.iter(|| black_box(rt.block_on(auth.authenticate(black_box(&token), None))))
    });
    let args = json!({"from_account": "ACC-1", "to_iban": "DE89370400440532013000", "amount": 120.5, "memo": "invoice 4411"});
    // The judge the gateway builds from the same configuration and tools.
    let mut catalog = Catalog::default();
    catalog.insert(ToolDef {
        server: "payments".into(),
        name: "transfer_funds".into(),
        description: "Transfer money".into(),
        input_schema: json!({"type": "object", "properties": {"from_account": {"type": "string"}, "to_iban": {"type": "string"}, "amount": {"type": "number"}, "memo": {"type": "string"}}}),
        annotations: Default::default(),
    });
    let policy_src = std::fs::read_to_string(POLICY).expect("policy file");
    let policy = Policy::with_attributes(&catalog, &["team".to_owned()], POLICY, &policy_src)
        .expect("policy loads");
    let judge = Judge::new(catalog, RuleSet::default()).with_policy(policy);
    let (mut session, mut agent_state) = (SessionState::new(), AggregateState::new());
    let key_s = SessionKey::new("agent-42/s1");
    c.bench_function("auth_api_key_then_cedar_decision", |b| {
        b.iter(|| {
            let principal = rt
                .block_on(auth.authenticate(black_box(&key), None))
                .expect("authenticated");
            let agent = AgentId::new(&*principal.agent);
            let call = castellan_judge::Call::tool(&agent, &key_s, "transfer_funds", &args)
                .on("payments")
                .with_attributes(&principal.attributes);
            black_box(judge.judge_call(
                StateMut {
                    session: &mut session,
                    agent: &mut agent_state,
                    user: None,
                },
                black_box(&call),
                Millis(1_767_225_600_000),
            ))
        })
    });
    // The relay bench's workload: a `tools/call` with 1 KiB of arguments,
    // where building the decision record (digest and shape of the
    // arguments) is a larger share.
    let body: String = "Quarterly figures attached; please review before Friday. ".repeat(16);
    let args_1k = json!({"from_account": "ACC-1", "to_iban": "DE89370400440532013000", "amount": 120.5, "memo": body[..880].to_owned(), "tags": ["q3", "review"], "meta": {"ref": "inv-4411", "urgent": false}});
    for (name, args) in [
        ("auth_api_key_then_gateway_decision", &args),
        ("auth_api_key_then_gateway_decision_1kib_args", &args_1k),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                let principal = rt
                    .block_on(auth.authenticate(black_box(&key), None))
                    .expect("authenticated");
                black_box(rt.block_on(behaviour.decide(
                    &principal,
                    "s1",
                    "payments",
                    "transfer_funds",
                    CallKind::CallTool,
                    args.clone(),
                    None,
                )))
            })
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
