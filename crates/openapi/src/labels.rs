//! Labels an operation probably deserves, inferred from its method, path,
//! `operationId`, tags and input schema. Names are the judge's label names
//! (`write`, `money`, ...); the operator's label overrides still apply on
//! top, so a wrong guess is corrected in configuration.

use serde_json::Value;

use crate::spec::RawOperation;

/// Words (singular, lower case) that make a writing operation move money.
const MONEY: &[&str] = &[
    "payment",
    "pay",
    "refund",
    "charge",
    "transfer",
    "payout",
    "transaction",
    "invoice",
    "withdrawal",
    "deposit",
    "capture",
];
/// Words that make a reading operation read financial records.
const FINANCIAL: &[&str] = &[
    "payment",
    "refund",
    "charge",
    "transfer",
    "payout",
    "transaction",
    "invoice",
    "balance",
    "billing",
    "account",
    "statement",
    "subscription",
];
/// Words that make a writing operation change identities or permissions.
const IDENTITY: &[&str] = &[
    "user",
    "member",
    "membership",
    "role",
    "permission",
    "group",
    "collaborator",
    "token",
    "key",
    "credential",
    "password",
    "secret",
    "acl",
    "grant",
    "invitation",
    "invite",
    "team",
];
/// Words that make a reading operation read credentials.
const SECRET: &[&str] = &["token", "secret", "credential", "password", "key", "apikey"];
/// Words that make a writing operation send data to other parties.
const EGRESS: &[&str] = &[
    "send",
    "email",
    "mail",
    "message",
    "notify",
    "notification",
    "sms",
    "webhook",
    "share",
    "invite",
    "export",
    "upload",
    "publish",
    "post",
    "comment",
    "reply",
    "forward",
];
/// Words that make a reading operation read content outside parties wrote.
const UNTRUSTED: &[&str] = &[
    "comment",
    "review",
    "ticket",
    "message",
    "mail",
    "email",
    "issue",
    "post",
    "feedback",
    "inbox",
    "conversation",
    "chat",
];
/// Argument names that carry a destination.
const DESTINATIONS: &[&str] = &[
    "to",
    "recipient",
    "recipients",
    "email",
    "url",
    "webhook_url",
    "callback_url",
    "cc",
    "bcc",
];

/// The inferred labels, in a fixed order.
pub fn infer(op: &RawOperation<'_>, input_schema: &Value) -> Vec<&'static str> {
    let words = words(op);
    let has = |set: &[&str]| words.iter().any(|w| set.contains(&w.as_str()));
    let mut out = Vec::new();
    let writes = !matches!(op.method, "get" | "head" | "options");
    if writes {
        out.push("write");
        if op.method == "delete" {
            out.push("destructive");
        }
        if has(MONEY) {
            out.push("money");
        }
        if has(IDENTITY) {
            out.push("identity");
        }
        let destination = input_schema
            .get("properties")
            .and_then(Value::as_object)
            .is_some_and(|p| {
                p.keys()
                    .any(|k| DESTINATIONS.contains(&k.to_ascii_lowercase().as_str()))
            });
        if has(EGRESS) || destination {
            out.push("egress");
        }
    } else {
        // An organisation's API answers with its data.
        out.push("private");
        if has(FINANCIAL) {
            out.push("financial");
        }
        if has(SECRET) {
            out.push("secret");
        }
        if has(UNTRUSTED) {
            out.push("untrusted");
        }
    }
    out
}

/// Lower-case singular words of the path (not its parameters), the
/// `operationId` (camelCase and snake_case split) and the tags.
fn words(op: &RawOperation<'_>) -> Vec<String> {
    let mut text = String::new();
    for seg in op.path.split('/').filter(|s| !s.starts_with('{')) {
        text.push(' ');
        text.push_str(seg);
    }
    for t in op.operation_id().into_iter().chain(op.tags()) {
        text.push(' ');
        text.push_str(t);
    }
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in text.chars() {
        let boundary = !c.is_ascii_alphanumeric() || (c.is_ascii_uppercase() && prev_lower);
        if boundary && !cur.is_empty() {
            words.push(singular(std::mem::take(&mut cur)));
        }
        if c.is_ascii_alphanumeric() {
            cur.push(c.to_ascii_lowercase());
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    if !cur.is_empty() {
        words.push(singular(cur));
    }
    words
}

fn singular(w: String) -> String {
    if let Some(stem) = w.strip_suffix("ies") {
        return format!("{stem}y");
    }
    if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") {
        return w[..w.len() - 1].to_owned();
    }
    w
}
