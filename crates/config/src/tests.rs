use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

/// A configuration that allows anonymous agents, for tests about other keys.
fn anon(text: &str) -> String {
    format!("auth:\n  mode: none\n{text}")
}

#[test]
fn the_default_configuration_fronts_the_demo_upstreams_on_loopback() {
    let cfg = load("<default>", DEFAULT_YAML, &no_env).expect("default config loads");
    assert!(cfg.listener.addr.ip().is_loopback());
    assert_eq!(cfg.upstreams.len(), 5);
    assert_eq!(cfg.upstreams[0].prefix, "mail");
}

#[test]
fn a_yaml_syntax_error_names_file_line_and_column() {
    let err = load(
        "gw.yaml",
        "listen: 127.0.0.1:1\nupstreams:\n  - name: a\n    builtin: [mail\n",
        &no_env,
    )
    .expect_err("broken");
    let msg = err.to_string();
    assert!(msg.starts_with("gw.yaml:"), "{msg}");
    assert!(err.line().is_some(), "{msg}");
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    let err = load(
        "gw.yaml",
        &anon("listen: 127.0.0.1:1\nlistne: oops\n"),
        &no_env,
    )
    .expect_err("typo");
    assert_eq!(err.line(), Some(4), "{err}");
    assert!(err.to_string().contains("listne"), "{err}");
}

#[test]
fn an_upstream_without_transport_points_at_its_entry() {
    let text = "upstreams:\n  - name: ok\n    builtin: mail\n  - name: broken\n";
    let err = load("gw.yaml", &anon(text), &no_env).expect_err("no transport");
    assert_eq!(err.line(), Some(6), "{err}");
    assert!(err.to_string().contains("broken"), "{err}");
}

#[test]
fn duplicate_names_and_prefixes_are_refused() {
    let text = "upstreams:\n  - name: a\n    builtin: mail\n  - name: a\n    builtin: files\n";
    assert!(load("gw.yaml", &anon(text), &no_env).is_err());
    let text = "upstreams:\n  - name: a\n    builtin: mail\n  - name: b\n    prefix: a\n    builtin: files\n";
    assert!(load("gw.yaml", &anon(text), &no_env).is_err());
}

#[test]
fn header_credentials_come_from_the_environment_and_a_missing_variable_is_an_error() {
    let text = "upstreams:\n  - name: a\n    http:\n      url: http://127.0.0.1:9/mcp\n      headers:\n        Authorization: Bearer ${TOKEN}\n";
    let cfg = load("gw.yaml", &anon(text), &|k| {
        (k == "TOKEN").then(|| "s3cret".to_string())
    })
    .expect("loads");
    match &cfg.upstreams[0].transport {
        Transport::Http(h) => assert_eq!(h.headers[0].1, "Bearer s3cret"),
        other => panic!("unexpected transport {other:?}"),
    }
    let err = load("gw.yaml", &anon(text), &no_env).expect_err("missing var");
    assert!(err.to_string().contains("TOKEN"), "{err}");
}

#[test]
fn durations_accept_units() {
    let text = "limits:\n  upstream_timeout: 250ms\n  session_idle: 10m\n";
    let cfg = load("gw.yaml", &anon(text), &no_env).expect("loads");
    assert_eq!(
        cfg.limits.upstream_timeout,
        std::time::Duration::from_millis(250)
    );
    assert_eq!(cfg.limits.session_idle, std::time::Duration::from_secs(600));
    let err = load(
        "gw.yaml",
        "limits:\n  upstream_timeout: 5 parsecs\n",
        &no_env,
    )
    .expect_err("bad unit");
    assert_eq!(err.line(), Some(2), "{err}");
}

proptest::proptest! {
    #[test]
    fn loading_arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = load("fuzz.yaml", &text, &no_env);
    }
}

#[test]
fn a_configuration_without_authentication_is_refused() {
    let err = load(
        "gw.yaml",
        "upstreams:\n  - name: a\n    builtin: mail\n",
        &no_env,
    )
    .expect_err("no auth");
    assert!(err.to_string().contains("auth"), "{err}");
    let err = load("gw.yaml", "auth: {}\n", &no_env).expect_err("empty auth");
    assert!(err.to_string().contains("no way to authenticate"), "{err}");
}

#[test]
fn api_keys_are_sha256_digests_and_bad_ones_point_at_their_line() {
    let digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let cfg = load("gw.yaml", &format!("auth:\n  api_keys:\n    - agent: bot\n      sha256: {digest}\n      attributes: {{team: support}}\n"), &no_env).expect("loads");
    assert_eq!(cfg.auth.api_keys[0].agent, "bot");
    assert_eq!(cfg.auth.api_keys[0].sha256[0], 0x9f);
    let err = load(
        "gw.yaml",
        "auth:\n  api_keys:\n    - agent: bot\n      sha256: nothex\n",
        &no_env,
    )
    .expect_err("bad digest");
    assert_eq!(err.line(), Some(3), "{err}");
}

#[test]
fn jwt_validation_refuses_symmetric_algorithms_and_missing_audiences() {
    let base = "auth:\n  jwt:\n    issuer: https://idp.example\n    jwks_file: keys.json\n";
    assert!(
        load(
            "gw.yaml",
            &format!("{base}    audiences: [castellan]\n"),
            &no_env
        )
        .is_ok()
    );
    let err = load("gw.yaml", base, &no_env).expect_err("no audience");
    assert!(err.to_string().contains("audience"), "{err}");
    let err = load(
        "gw.yaml",
        &format!("{base}    audiences: [c]\n    algorithms: [HS256]\n"),
        &no_env,
    )
    .expect_err("hmac");
    assert!(err.to_string().contains("HS256"), "{err}");
    let err = load(
        "gw.yaml",
        &format!("{base}    audiences: [c]\n    algorithms: [none]\n"),
        &no_env,
    )
    .expect_err("none");
    assert!(err.to_string().contains("none"), "{err}");
}

#[test]
fn alert_webhooks_expand_secrets_and_default_to_bounded_retries() {
    let env = |k: &str| (k == "HOOK_SECRET").then(|| "s3cret".to_string());
    let cfg = load(
        "gw.yaml",
        &anon("alerts:\n  stdout: false\n  queue: 8\n  webhooks:\n    - url: https://hooks.example/c\n      secret: ${HOOK_SECRET}\n      decisions: [deny, quarantine]\n      backoff: 250ms\n"),
        &env,
    )
    .expect("loads");
    assert!(!cfg.alerts.stdout);
    assert_eq!(cfg.alerts.queue, 8);
    let w = &cfg.alerts.webhooks[0];
    assert_eq!(w.secret.as_deref(), Some("s3cret"));
    assert_eq!(w.decisions, ["deny", "quarantine"]);
    assert_eq!(w.max_attempts, 5);
    assert_eq!(w.backoff, std::time::Duration::from_millis(250));
    assert!(w.max_backoff >= w.backoff);
    let defaults = load("gw.yaml", &anon(""), &no_env).expect("loads");
    assert!(defaults.alerts.stdout && defaults.alerts.webhooks.is_empty());
}

#[test]
fn alert_webhook_mistakes_name_their_line() {
    let text = anon("alerts:\n  webhooks:\n    - url: ftp://hooks.example/c\n");
    let err = load("gw.yaml", &text, &no_env).expect_err("scheme");
    assert!(err.to_string().starts_with("gw.yaml:5:"), "{err}");
    let text = anon("alerts:\n  webhooks:\n    - url: http://h/c\n      decisions: [denied]\n");
    let err = load("gw.yaml", &text, &no_env).expect_err("decision");
    assert!(
        err.to_string().contains("unknown decision `denied`"),
        "{err}"
    );
    let text = anon("alerts:\n  webhooks:\n    - url: http://h/c\n      secret: ${MISSING}\n");
    let err = load("gw.yaml", &text, &no_env).expect_err("env");
    assert!(err.to_string().contains("MISSING"), "{err}");
    let text = anon("alerts:\n  webhook:\n    - url: http://h/c\n");
    let err = load("gw.yaml", &text, &no_env).expect_err("typo");
    assert!(err.to_string().starts_with("gw.yaml:4:"), "{err}");
}

#[test]
fn audit_signing_and_retention_keys_are_read_and_checked() {
    let cfg = load(
        "gw.yaml",
        &anon("audit:\n  signing_key: k.pem\n  checkpoint_every: 10\n  checkpoint_interval: 5s\n  retention:\n    max_age: 30d\n    max_records: 1000\n"),
        &no_env,
    )
    .expect("loads");
    assert_eq!(cfg.audit.signing_key.as_deref(), Some("k.pem"));
    assert_eq!(cfg.audit.checkpoint_every, 10);
    assert_eq!(
        cfg.audit.checkpoint_interval,
        std::time::Duration::from_secs(5)
    );
    assert_eq!(
        cfg.audit.max_age,
        Some(std::time::Duration::from_secs(30 * 86_400))
    );
    assert_eq!(cfg.audit.max_records, Some(1000));
    let err = load(
        "gw.yaml",
        &anon("audit:\n  retention:\n    max_records: 0\n"),
        &no_env,
    )
    .expect_err("zero");
    assert!(err.to_string().starts_with("gw.yaml:4:"), "{err}");
    let err = load(
        "gw.yaml",
        &anon("audit:\n  retention:\n    max_days: 3\n"),
        &no_env,
    )
    .expect_err("typo");
    assert!(err.to_string().starts_with("gw.yaml:5:"), "{err}");
}

#[test]
fn trusted_intent_is_off_unless_a_credential_is_marked() {
    let key = "0".repeat(64);
    let other = "1".repeat(64);
    let cfg = load(
        "gw.yaml",
        &format!("auth:\n  api_keys:\n    - agent: a\n      sha256: {key}\n    - agent: b\n      sha256: {other}\n      trusted_intent: true\n  jwt:\n    issuer: https://idp\n    audiences: [c]\n    jwks_file: j.json\n    trusted_intent_scope: speaks-for-user\n"),
        &no_env,
    )
    .expect("loads");
    assert!(!cfg.auth.api_keys[0].trusted_intent);
    assert!(cfg.auth.api_keys[1].trusted_intent);
    assert_eq!(
        cfg.auth.jwt.as_ref().map(|j| j.trusted_intent.clone()),
        Some(crate::JwtIntent::WithScope("speaks-for-user".into()))
    );
    let both = load(
        "gw.yaml",
        "auth:\n  jwt:\n    issuer: https://idp\n    audiences: [c]\n    jwks_file: j.json\n    trusted_intent: true\n    trusted_intent_scope: s\n",
        &no_env,
    )
    .expect_err("both is ambiguous");
    assert!(both.to_string().contains("not both"), "{both}");
}

#[test]
fn the_audit_log_is_signed_and_anchored_beside_itself_unless_turned_off() {
    let cfg = load(
        "gw.yaml",
        &anon("audit:\n  path: /var/lib/c/audit.db\n"),
        &no_env,
    )
    .expect("loads");
    assert_eq!(
        cfg.audit.signing_key.as_deref(),
        Some("/var/lib/c/audit.key")
    );
    assert!(cfg.audit.generate_signing_key);
    assert_eq!(cfg.audit.anchor.as_deref(), Some("/var/lib/c/audit.anchor"));
    let off = load(
        "gw.yaml",
        &anon("audit:\n  signing_key: none\n  anchor: none\n"),
        &no_env,
    )
    .expect("loads");
    assert_eq!((off.audit.signing_key, off.audit.anchor), (None, None));
    let err = load("gw.yaml", &anon("audit:\n  signing_key: none\n"), &no_env)
        .expect_err("an anchor needs a key");
    assert!(err.to_string().contains("anchor"), "{err}");
}

#[test]
fn tool_annotations_give_argument_roles_and_caps() {
    let cfg = load(
        "gw.yaml",
        &anon(concat!(
            "judge:\n",
            "  tools:\n",
            "    - match: \"air/*\"\n",
            "      arguments:\n",
            "        user_id: subject\n",
            "        /payment/id: destination\n",
            "      max_amount: 500\n",
            "      max_calls_per_session: 3\n",
        )),
        &no_env,
    )
    .expect("valid");
    let t = &cfg.judge.tools[0];
    assert_eq!(t.matches, "air/*");
    assert!(t.arguments.contains(&("user_id".into(), "subject".into())));
    assert!(
        t.arguments
            .contains(&("/payment/id".into(), "destination".into()))
    );
    assert_eq!(t.max_amount, Some(500.0));
    assert_eq!(t.max_calls_per_session, Some(3));
}

#[test]
fn tool_annotation_mistakes_name_file_line_and_what_is_wrong() {
    let text = anon(concat!(
        "judge:\n",
        "  tools:\n",
        "    - match: \"shop/*\"\n",
        "      arguments:\n",
        "        order_id: object\n",
        "        amount: money\n",
    ));
    let err = load("gw.yaml", &text, &no_env).expect_err("bad role");
    let msg = err.to_string();
    assert!(msg.starts_with("gw.yaml:8:"), "{msg}");
    assert!(
        msg.contains("`amount`") && msg.contains("unknown role `money`"),
        "{msg}"
    );
    assert!(msg.contains("subject"), "lists the roles: {msg}");
    let err = load(
        "gw.yaml",
        &anon("judge:\n  tools:\n    - match: \"shop/*\"\n      max_amount: -5\n"),
        &no_env,
    )
    .expect_err("negative cap");
    assert!(err.to_string().starts_with("gw.yaml:6:"), "{err}");
    let err = load(
        "gw.yaml",
        &anon("judge:\n  tools:\n    - match: \"shop/*\"\n      argumnets: {}\n"),
        &no_env,
    )
    .expect_err("typo");
    assert!(err.line().is_some(), "{err}");
}

#[test]
fn a_judge_only_file_loads_for_replay_and_not_for_the_gateway() {
    let dir = std::env::temp_dir().join(format!("castellan-judge-only-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("judge.yaml");
    std::fs::write(&path, "judge:\n  hold_timeout: 5s\n").expect("write");
    let judge = load_judge_file(&path).expect("a file with only `judge` serves replay");
    assert_eq!(judge.hold_timeout, std::time::Duration::from_secs(5));
    let err = load_file(&path).expect_err("the gateway still needs `auth`");
    assert!(err.to_string().contains("auth"), "{err}");
    // What is present is still checked.
    std::fs::write(&path, "judge:\n  pack: other\n").expect("write");
    assert!(load_judge_file(&path).is_err());
    std::fs::write(&path, "auth:\n  mode: maybe\njudge: {}\n").expect("write");
    assert!(load_judge_file(&path).is_err());
}

#[test]
fn an_openapi_upstream_takes_its_spec_base_url_credentials_and_selection() {
    let text = "upstreams:\n  - name: crm\n    openapi:\n      spec: crm.yaml\n      base_url: https://crm.example/api/\n      headers: {X-Api-Key: \"${CRM_KEY}\"}\n      include: {tags: [customers], methods: [GET]}\n      exclude: {operations: [\"*Internal*\"]}\n      max_tools: 20\n      timeout: 5s\n";
    let cfg = load("gw.yaml", &anon(text), &|k| {
        (k == "CRM_KEY").then(|| "k-1".to_string())
    })
    .expect("loads");
    match &cfg.upstreams[0].transport {
        Transport::OpenApi(o) => {
            assert_eq!(o.base_url, "https://crm.example/api");
            assert_eq!(
                o.http.headers,
                vec![("X-Api-Key".to_string(), "k-1".to_string())]
            );
            assert_eq!(o.include.tags, ["customers"]);
            assert_eq!(o.exclude.operations, ["*Internal*"]);
            assert_eq!(
                (o.max_tools, o.timeout),
                (20, Some(std::time::Duration::from_secs(5)))
            );
        }
        other => panic!("unexpected transport {other:?}"),
    }
}

#[test]
fn an_openapi_upstream_refuses_a_bad_base_url_method_cap_or_a_second_transport() {
    for (entry, want) in [
        (
            "openapi: {spec: a.yaml, base_url: ftp://x}",
            "must start with http",
        ),
        (
            "openapi: {spec: a.yaml, base_url: http://x, include: {methods: [FETCH]}}",
            "unknown HTTP method `FETCH`",
        ),
        (
            "openapi: {spec: a.yaml, base_url: http://x, max_tools: 0}",
            "`max_tools` must be at least 1",
        ),
        (
            "openapi: {spec: a.yaml, base_url: http://x}\n    builtin: mail",
            "more than one",
        ),
        (
            "openapi: {spec: a.yaml, base_url: http://x, servers: [x]}",
            "unknown field `servers`",
        ),
    ] {
        let text = format!("upstreams:\n  - name: crm\n    {entry}\n");
        let err = load("gw.yaml", &anon(&text), &no_env).expect_err(entry);
        assert!(err.to_string().contains(want), "{entry}: {err}");
    }
}
