use serde_json::json;

use super::*;

#[test]
fn every_builtin_lists_tools_with_schemas_and_annotations() {
    for name in ["mail", "files", "payments", "web", "chat"] {
        let server = DemoServer::new(name).expect("builtin exists");
        let list = server
            .handle("tools/list", &Value::Null)
            .expect("tools/list");
        let tools = list["tools"].as_array().expect("array");
        assert!(!tools.is_empty(), "{name}");
        for t in tools {
            assert_eq!(t["inputSchema"]["type"], "object");
            assert!(t["annotations"].is_object());
        }
    }
}

#[test]
fn mail_round_trip_sends_then_lists_the_sent_message() {
    let mail = DemoServer::new("mail").expect("mail");
    let sent = mail.handle("tools/call", &json!({"name": "send_email", "arguments": {"to": "bob@example.com", "subject": "hi", "body": "hello"}})).expect("call");
    assert_eq!(sent["isError"], false);
    let listed = mail
        .handle(
            "tools/call",
            &json!({"name": "list_inbox", "arguments": {"folder": "sent"}}),
        )
        .expect("call");
    assert!(
        listed["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("bob@example.com")
    );
}

#[test]
fn the_offers_page_carries_an_injection() {
    let web = DemoServer::new("web").expect("web");
    let page = web.handle("tools/call", &json!({"name": "fetch_url", "arguments": {"url": "https://travel-deals.example/offers"}})).expect("call");
    assert!(
        page["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("customers.csv")
    );
}

#[test]
fn tool_errors_are_results_and_unknown_tools_are_protocol_errors() {
    let pay = DemoServer::new("payments").expect("payments");
    let r = pay.handle("tools/call", &json!({"name": "transfer_funds", "arguments": {"from_account": "nope", "to_iban": "X", "amount": 1}})).expect("call");
    assert_eq!(r["isError"], true);
    let e = pay
        .handle("tools/call", &json!({"name": "nope", "arguments": {}}))
        .expect_err("unknown");
    assert_eq!(e.code, INVALID_PARAMS);
    assert!(DemoServer::new("nope").is_none());
}
