//! An HTTP response as an MCP `tools/call` result: JSON as
//! `structuredContent` plus its text, the status in `_meta`; 4xx and 5xx
//! as `isError` with the status and a trimmed body.

use serde_json::{Value, json};

use crate::tool::trim;

/// Longest body text put in an error result: enough to explain, not a
/// dump of the upstream's error page.
pub const MAX_ERROR_TEXT: usize = 2000;

/// The `tools/call` result for a response with `status`, `reason` phrase
/// and `body` (already size-limited by the caller).
pub fn to_result(status: u16, reason: &str, content_type: Option<&str>, body: &[u8]) -> Value {
    let text = String::from_utf8_lossy(body);
    let meta = json!({ "castellan/http": { "status": status } });
    if status >= 400 {
        let detail = trim(text.trim(), MAX_ERROR_TEXT);
        let msg = if detail.is_empty() {
            format!("HTTP {status} {reason}")
        } else {
            format!("HTTP {status} {reason}: {detail}")
        };
        return json!({
            "content": [{ "type": "text", "text": msg }],
            "isError": true,
            "_meta": meta,
        });
    }
    let is_json = content_type.is_none_or(|t| t.contains("json"));
    let parsed = if is_json {
        serde_json::from_slice::<Value>(body).ok()
    } else {
        None
    };
    let shown = if text.trim().is_empty() {
        format!("HTTP {status} {reason}")
    } else {
        text.into_owned()
    };
    let mut result = json!({
        "content": [{ "type": "text", "text": shown }],
        "isError": false,
        "_meta": meta,
    });
    match parsed {
        Some(Value::Object(o)) => result["structuredContent"] = Value::Object(o),
        // structuredContent must be an object: wrap arrays and scalars.
        Some(other) => result["structuredContent"] = json!({ "result": other }),
        None => {}
    }
    result
}
