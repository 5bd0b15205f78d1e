use super::*;

fn no_env(_: &str) -> Option<String> {
    None
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
    let err = load("gw.yaml", "listen: 127.0.0.1:1\nlistne: oops\n", &no_env).expect_err("typo");
    assert_eq!(err.line(), Some(2), "{err}");
    assert!(err.to_string().contains("listne"), "{err}");
}

#[test]
fn an_upstream_without_transport_points_at_its_entry() {
    let text = "upstreams:\n  - name: ok\n    builtin: mail\n  - name: broken\n";
    let err = load("gw.yaml", text, &no_env).expect_err("no transport");
    assert_eq!(err.line(), Some(4), "{err}");
    assert!(err.to_string().contains("broken"), "{err}");
}

#[test]
fn duplicate_names_and_prefixes_are_refused() {
    let text = "upstreams:\n  - name: a\n    builtin: mail\n  - name: a\n    builtin: files\n";
    assert!(load("gw.yaml", text, &no_env).is_err());
    let text = "upstreams:\n  - name: a\n    builtin: mail\n  - name: b\n    prefix: a\n    builtin: files\n";
    assert!(load("gw.yaml", text, &no_env).is_err());
}

#[test]
fn header_credentials_come_from_the_environment_and_a_missing_variable_is_an_error() {
    let text = "upstreams:\n  - name: a\n    http:\n      url: http://127.0.0.1:9/mcp\n      headers:\n        Authorization: Bearer ${TOKEN}\n";
    let cfg = load("gw.yaml", text, &|k| {
        (k == "TOKEN").then(|| "s3cret".to_string())
    })
    .expect("loads");
    match &cfg.upstreams[0].transport {
        Transport::Http(h) => assert_eq!(h.headers[0].1, "Bearer s3cret"),
        other => panic!("unexpected transport {other:?}"),
    }
    let err = load("gw.yaml", text, &no_env).expect_err("missing var");
    assert!(err.to_string().contains("TOKEN"), "{err}");
}

#[test]
fn durations_accept_units() {
    let text = "limits:\n  upstream_timeout: 250ms\n  session_idle: 10m\n";
    let cfg = load("gw.yaml", text, &no_env).expect("loads");
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
