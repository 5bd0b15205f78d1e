//! Cedar on the live path: a policy file with argument conditions and
//! principal attributes decides calls and filters `tools/list` per agent.

mod support;

use serde_json::{Value, json};
use support::{Gateway, OTHER_KEY, TEST_KEY, post, sha256_hex, text_of};

const POLICY: &str = r#"@id("default-permit")
permit (principal, action, resource);

@id("transfer-limit")
@reason("transfers above 1000 EUR need a human")
forbid (principal, action == Action::"call_tool", resource == Tool::"payments/transfer_funds")
when { context.args has amount && context.args.amount.greaterThan(decimal("1000.0")) };

@id("interns-no-mail")
@reason("interns may not send mail")
forbid (principal, action in [Action::"list_tools", Action::"call_tool"], resource == Tool::"mail/send_email")
when { principal has team && principal.team == "interns" };
"#;

const DEMO_UPSTREAMS: &str =
    "upstreams:\n  - name: mail\n    builtin: mail\n  - name: payments\n    builtin: payments\n";

/// A gateway with `policy`, an intern (TEST_KEY) and a support agent
/// (OTHER_KEY), in front of `upstreams` (a YAML `upstreams:` section).
fn start(policy: &str, upstreams: &str) -> Gateway {
    let dir = support::scratch("cedar");
    let file = dir.join("policy.cedar");
    std::fs::write(&file, policy).expect("write policy");
    Gateway::start(&format!(
        "auth:\n  api_keys:\n    - agent: intern-bot\n      sha256: {}\n      attributes: {{team: interns}}\n    - agent: support-bot\n      sha256: {}\n      attributes: {{team: support}}\njudge:\n  policy: {}\n{upstreams}",
        sha256_hex(TEST_KEY),
        sha256_hex(OTHER_KEY),
        file.display()
    ))
}

/// `castellan policy check` on `policy` in a configuration with one agent
/// (a `team` attribute) and `builtin` as the only upstream; returns the
/// policy file and the run.
fn policy_check(policy: &str, builtin: &str) -> (std::path::PathBuf, std::process::Output) {
    let dir = support::scratch("cedar-check");
    let file = dir.join("policy.cedar");
    std::fs::write(&file, policy).expect("write policy");
    let config = dir.join("castellan.yaml");
    std::fs::write(
        &config,
        format!(
            "auth:\n  api_keys:\n    - agent: a\n      sha256: {}\n      attributes: {{team: interns}}\njudge:\n  policy: {}\nupstreams:\n  - name: {builtin}\n    builtin: {builtin}\n",
            sha256_hex(TEST_KEY),
            file.display()
        ),
    )
    .expect("write config");
    let out = support::castellan(&["policy", "check", config.to_str().expect("path")]);
    (file, out)
}

/// A legacy session for the agent holding `key`; returns a caller.
async fn session(url: &str, key: &str) -> impl AsyncFn(u64, &str, Value) -> Value {
    let auth = format!("Bearer {key}");
    let sid = support::open_session_as(url, key).await;
    let url = url.to_owned();
    move |id: u64, method: &str, params: Value| {
        let (url, sid, auth, method) = (url.clone(), sid.clone(), auth.clone(), method.to_owned());
        async move {
            let r = post(
                &url,
                &[
                    ("mcp-session-id", &sid),
                    ("mcp-protocol-version", "2025-06-18"),
                    ("authorization", &auth),
                ],
                &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
            )
            .await;
            r.last().clone()
        }
    }
}

/// The `field` of each item of a list result's `key` array.
fn listed(list: &Value, key: &str, field: &str) -> Vec<String> {
    list["result"][key]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t[field].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_policy_hides_a_tool_from_one_team_and_limits_transfers_by_amount() {
    let gw = start(POLICY, DEMO_UPSTREAMS);
    let intern = session(&gw.url, TEST_KEY).await;
    let support_bot = session(&gw.url, OTHER_KEY).await;

    let tools = listed(&intern(1, "tools/list", json!({})).await, "tools", "name");
    assert!(tools.iter().any(|n| n == "mail__list_inbox"), "{tools:?}");
    assert!(!tools.iter().any(|n| n == "mail__send_email"), "{tools:?}");
    assert!(
        tools.iter().any(|n| n == "payments__transfer_funds"),
        "{tools:?}"
    );
    let tools = listed(
        &support_bot(1, "tools/list", json!({})).await,
        "tools",
        "name",
    );
    assert!(tools.iter().any(|n| n == "mail__send_email"), "{tools:?}");

    // Hidden from the list, and refused when called anyway.
    let send = intern(2, "tools/call", json!({"name": "mail__send_email", "arguments": {"to": "bob@example.com", "subject": "hi", "body": "hello"}})).await;
    assert_eq!(send["result"]["isError"], true, "{send}");
    let decision = &send["result"]["_meta"]["io.castellan/decision"];
    assert_eq!(decision["rules"], json!(["interns-no-mail"]), "{send}");

    let transfer = |amount: f64| json!({"name": "payments__transfer_funds", "arguments": {"from_account": "operating", "to_iban": "DE89370400440532013000", "amount": amount, "memo": "invoice 42"}});
    let small = support_bot(3, "tools/call", transfer(120.5)).await;
    assert_ne!(small["result"]["isError"], true, "{small}");
    assert!(text_of(&small).contains("120.50 EUR"), "{small}");

    let large = support_bot(4, "tools/call", transfer(25_000.0)).await;
    assert_eq!(large["result"]["isError"], true, "{large}");
    let decision = &large["result"]["_meta"]["io.castellan/decision"];
    assert_eq!(decision["decision"], "deny", "{large}");
    assert!(
        decision["rules"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("transfer-limit"))),
        "{large}"
    );
    let text = text_of(&large);
    assert!(text.contains("transfer-limit"), "{text}");
    assert!(
        text.contains("transfers above 1000 EUR need a human"),
        "{text}"
    );
    // Nothing was transferred.
    let tx = support_bot(
        5,
        "tools/call",
        json!({"name": "payments__list_transactions", "arguments": {}}),
    )
    .await;
    assert!(!text_of(&tx).contains("25000"), "{tx}");
}

#[test]
fn policy_check_reports_an_undeclared_attribute_with_file_line_and_column() {
    let (file, out) = policy_check(
        "permit (principal, action, resource);\nforbid (principal, action, resource)\n  when { principal has team && principal.departement == \"x\" };\n",
        "mail",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:3:32", file.display())),
        "{stderr}"
    );
}

#[test]
fn policy_check_validates_argument_conditions_against_the_upstreams_tools() {
    let (_, out) = policy_check(
        POLICY
            .split("@id(\"interns-no-mail\")")
            .next()
            .unwrap_or(POLICY),
        "payments",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (file, out) = policy_check(
        "permit (principal, action, resource);\nforbid (principal, action, resource)\n  when { context.args has amuont && context.args.amuont.greaterThan(decimal(\"1.0\")) };\n",
        "payments",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:3:", file.display())),
        "{stderr}"
    );
}

#[tokio::test]
async fn prompts_and_resources_an_agent_may_not_use_are_left_out_of_its_lists() {
    let up = support::HttpFixture::start(&[]);
    let gw = start(
        r#"permit (principal, action, resource);

@id("interns-no-runbook")
forbid (principal, action == Action::"get_prompt", resource == Tool::"remote/internal_runbook")
when { principal has team && principal.team == "interns" };

@id("interns-no-payroll")
forbid (principal, action == Action::"read_resource", resource == Tool::"remote/file:///secret/payroll.txt")
when { principal has team && principal.team == "interns" };
"#,
        &format!(
            "upstreams:\n  - name: remote\n    http:\n      url: http://127.0.0.1:{}/mcp\n      era: legacy\n",
            up.port
        ),
    );
    let intern = session(&gw.url, TEST_KEY).await;
    let prompts = listed(
        &intern(1, "prompts/list", json!({})).await,
        "prompts",
        "name",
    );
    assert_eq!(
        prompts,
        ["remote__summarise", "remote__leaky"],
        "{prompts:?}"
    );
    let resources = listed(
        &intern(2, "resources/list", json!({})).await,
        "resources",
        "uri",
    );
    assert_eq!(resources, ["file:///public/readme.txt"], "{resources:?}");
    // Hidden, and refused when asked for anyway, with the policy's id.
    let r = intern(
        3,
        "prompts/get",
        json!({"name": "remote__internal_runbook"}),
    )
    .await;
    assert_eq!(r["error"]["code"], -32001, "{r}");
    assert!(r.to_string().contains("interns-no-runbook"), "{r}");
    let r = intern(
        4,
        "resources/read",
        json!({"uri": "file:///secret/payroll.txt"}),
    )
    .await;
    assert!(r.to_string().contains("interns-no-payroll"), "{r}");

    let support_bot = session(&gw.url, OTHER_KEY).await;
    let prompts = listed(
        &support_bot(1, "prompts/list", json!({})).await,
        "prompts",
        "name",
    );
    assert_eq!(prompts.len(), 3, "{prompts:?}");
    let resources = listed(
        &support_bot(2, "resources/list", json!({})).await,
        "resources",
        "uri",
    );
    assert_eq!(resources.len(), 2, "{resources:?}");
    let r = support_bot(
        3,
        "resources/read",
        json!({"uri": "file:///secret/payroll.txt"}),
    )
    .await;
    assert_eq!(r["result"]["contents"][0]["text"], "salaries", "{r}");
}

#[test]
fn policy_check_reports_a_tool_on_a_server_that_is_not_configured() {
    let (file, out) = policy_check(
        "permit (principal, action, resource);\n\nforbid (principal, action, resource == Tool::\"mial/send_email\");\n",
        "mail",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:3:40", file.display())) && stderr.contains("`mial`"),
        "{stderr}"
    );
    // The same literal in a `when` condition is caught too; the right
    // server name passes.
    let (_, out) = policy_check(
        "permit (principal, action, resource);\nforbid (principal, action, resource) when { resource == Tool::\"mail/send_email\" };\n",
        "mail",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn policy_check_reports_a_tool_its_server_does_not_list() {
    let (file, out) = policy_check(
        "permit (principal, action, resource);\n\nforbid (principal, action == Action::\"call_tool\", resource == Tool::\"mail/send_mail\");\n",
        "mail",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:3:63", file.display()))
            && stderr.contains("lists no tool `send_mail`"),
        "{stderr}"
    );
    let (_, out) = policy_check(
        "permit (principal, action, resource);\n\nforbid (principal, action == Action::\"call_tool\", resource == Tool::\"mail/send_email\");\n",
        "mail",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
