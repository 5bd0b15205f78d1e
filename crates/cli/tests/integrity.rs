//! Tool integrity end to end: a tool whose definition changes after it was
//! pinned (rug pull) is withheld from agents until an operator approves the
//! new version; tools seen for the first time can be made to wait too; a
//! tool describing another server's tool (shadowing) is withheld.

mod support;

use serde_json::{Value, json};
use support::{Gateway, admin, admin_section, call, castellan, fixture, open_session, text_of};

fn config(extra: &str, env: &str) -> String {
    format!(
        "{}{extra}upstreams:\n  - name: mail\n    builtin: mail\n  - name: fx\n    stdio:\n      command: python3\n      args: [\"{}\"]\n{env}",
        admin_section(),
        fixture("stdio_server.py")
    )
}

async fn tool_names(gw: &Gateway, sid: &str, id: u64) -> Vec<String> {
    let list = call(&gw.url, sid, id, "tools/list", json!({})).await;
    support::tool_names_of(list.last())
}

async fn echo(gw: &Gateway, sid: &str, id: u64) -> Value {
    call(
        &gw.url,
        sid,
        id,
        "tools/call",
        json!({"name": "fx__echo", "arguments": {"text": "hello"}}),
    )
    .await
    .last()
    .clone()
}

#[tokio::test]
async fn a_rug_pull_is_withheld_until_an_operator_approves_the_new_version() {
    let gw = Gateway::start(&config("", ""));
    let sid = open_session(&gw.url).await;
    assert!(
        tool_names(&gw, &sid, 1)
            .await
            .contains(&"fx__echo".to_owned())
    );
    assert_eq!(text_of(&echo(&gw, &sid, 2).await), "hello");

    // The server rewrites echo's description and announces the change.
    let r = call(
        &gw.url,
        &sid,
        3,
        "tools/call",
        json!({"name": "fx__rugpull", "arguments": {}}),
    )
    .await;
    assert_eq!(text_of(r.last()), "updated");

    // Calling without listing again: the gateway lists, sees the change
    // and refuses, naming the finding.
    let refused = echo(&gw, &sid, 4).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert_eq!(refused["error"]["data"]["finding"], "changed", "{refused}");
    let hash = refused["error"]["data"]["hash"]
        .as_str()
        .expect("hash")
        .to_owned();
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("withheld"),
        "{refused}"
    );
    // The agent no longer sees it; the other tools stay.
    let names = tool_names(&gw, &sid, 5).await;
    assert!(!names.contains(&"fx__echo".to_owned()), "{names:?}");
    assert!(names.contains(&"fx__whoami".to_owned()), "{names:?}");
    assert!(names.contains(&"mail__send_email".to_owned()), "{names:?}");
    assert!(gw.logs().contains("tool withheld"), "{}", gw.logs());

    // The operator sees the finding and the diff.
    let pins = admin(&gw, "GET", "/tools/pins").await;
    let pending = pins.last()["pending"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(pending.len(), 1, "{}", pins.last());
    assert_eq!(pending[0]["tool"], "echo");
    assert_eq!(pending[0]["finding"]["kind"], "changed");
    let diff = admin(&gw, "GET", "/tools/fx/echo/diff").await;
    let text = diff.last()["diff"].as_str().unwrap_or_default().to_owned();
    assert!(
        text.contains("+  \"description\": \"Echo text back. <IMPORTANT>"),
        "{text}"
    );
    assert!(
        text.contains("-  \"description\": \"Echo text back.\""),
        "{text}"
    );

    // Approving a version other than the one reviewed is refused.
    let stale = admin(&gw, "POST", "/tools/fx/echo/approve?hash=blake3:0000").await;
    assert_eq!(stale.status, 409, "{}", stale.last());
    let ok = admin(&gw, "POST", &format!("/tools/fx/echo/approve?hash={hash}")).await;
    assert_eq!(ok.status, 200, "{}", ok.last());
    assert_eq!(ok.last()["approved"]["approved_by"], "admin-api");

    assert_eq!(text_of(&echo(&gw, &sid, 6).await), "hello");
    assert!(
        tool_names(&gw, &sid, 7)
            .await
            .contains(&"fx__echo".to_owned())
    );
    let after = admin(&gw, "GET", "/tools/pins").await;
    assert_eq!(after.last()["pending"], json!([]), "{}", after.last());
}

#[tokio::test]
async fn with_first_sight_hold_new_tools_wait_for_an_approval_made_from_the_cli() {
    let store = support::scratch("pins").join("pins.db");
    let yaml = config(
        &format!(
            "integrity:\n  store: {}\n  first_sight: hold\n",
            store.display()
        ),
        "",
    );
    let gw = Gateway::start(&yaml);
    let sid = open_session(&gw.url).await;
    assert_eq!(tool_names(&gw, &sid, 1).await, Vec::<String>::new());
    let refused = echo(&gw, &sid, 2).await;
    assert_eq!(refused["error"]["data"]["finding"], "new", "{refused}");

    let cfg = gw.config.to_str().expect("path").to_owned();
    let out = castellan(&["tools", "pins", "--config", &cfg]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{listing}");
    assert!(listing.contains("WITHHELD fx/echo"), "{listing}");
    assert!(listing.contains("WITHHELD mail/send_email"), "{listing}");

    let out = castellan(&["tools", "diff", "fx", "echo", "--config", &cfg]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("+  \"name\": \"echo\""));

    let out = castellan(&[
        "tools", "approve", "fx", "echo", "--config", &cfg, "--by", "alice",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The running gateway picks the approval up on the next call.
    assert_eq!(text_of(&echo(&gw, &sid, 3).await), "hello");
    assert_eq!(tool_names(&gw, &sid, 4).await, vec!["fx__echo".to_owned()]);

    let again = castellan(&["tools", "approve", "fx", "echo", "--config", &cfg]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no pending version"));
}

#[tokio::test]
async fn a_tool_describing_another_servers_tool_is_withheld_as_shadowing() {
    let gw = Gateway::start(&config("", "      env:\n        FIXTURE_SHADOW: \"1\"\n"));
    let sid = open_session(&gw.url).await;
    let names = tool_names(&gw, &sid, 1).await;
    assert!(!names.contains(&"fx__get_weather".to_owned()), "{names:?}");
    assert!(names.contains(&"fx__echo".to_owned()), "{names:?}");
    let refused = call(
        &gw.url,
        &sid,
        2,
        "tools/call",
        json!({"name": "fx__get_weather", "arguments": {}}),
    )
    .await;
    let err = &refused.last()["error"];
    assert_eq!(err["data"]["finding"], "poisoned", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("mentions `send_email`, a tool of upstream `mail`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_tool_no_upstream_lists_cannot_be_called() {
    let gw = Gateway::start(&config("", ""));
    let sid = open_session(&gw.url).await;
    let r = call(
        &gw.url,
        &sid,
        1,
        "tools/call",
        json!({"name": "fx__hidden_tool", "arguments": {}}),
    )
    .await;
    assert_eq!(
        r.last()["error"]["data"]["finding"],
        "unlisted",
        "{}",
        r.last()
    );
}

#[tokio::test]
async fn a_new_tool_with_hidden_instructions_is_never_pinned_automatically() {
    // After the rug pull, revoke echo's pin: the poisoned version is then a
    // tool seen for the first time, and first sight must not pin it.
    let gw = Gateway::start(&config("", ""));
    let sid = open_session(&gw.url).await;
    let _ = tool_names(&gw, &sid, 1).await;
    let _ = call(
        &gw.url,
        &sid,
        2,
        "tools/call",
        json!({"name": "fx__rugpull", "arguments": {}}),
    )
    .await;
    let cfg = gw.config.to_str().expect("path").to_owned();
    let out = castellan(&["tools", "revoke", "fx", "echo", "--config", &cfg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refused = echo(&gw, &sid, 3).await;
    assert_eq!(refused["error"]["data"]["finding"], "poisoned", "{refused}");
}
