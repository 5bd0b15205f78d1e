//! MCP vocabulary shared by both protocol eras.
//!
//! Legacy era (2025-03-26 to 2025-11-25): an `initialize` handshake opens a
//! session named by `Mcp-Session-Id`. Modern era (2026-07-28): no handshake;
//! every request carries its version and capabilities in `params._meta` and
//! mirrors method and name into `Mcp-Method` / `Mcp-Name` headers.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The modern, stateless protocol version.
pub const MODERN: &str = "2026-07-28";
/// The newest legacy (session-based) version.
pub const LATEST_LEGACY: &str = "2025-11-25";
/// Legacy versions the gateway accepts in `initialize`, newest first.
pub const LEGACY_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// Every version the gateway speaks, newest first (for `server/discover`).
pub const SUPPORTED_VERSIONS: &[&str] = &["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"];

/// `_meta` key: the request's protocol version (modern era).
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key: the client's capabilities for this request (modern era).
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key: the client's self-description (modern era).
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key: the log level wanted for this request (modern era).
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key on results: the server's self-description (modern era).
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// HTTP header: protocol version.
pub const HEADER_PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// HTTP header: legacy session id.
pub const HEADER_SESSION_ID: &str = "mcp-session-id";
/// HTTP header: the JSON-RPC method (modern era).
pub const HEADER_METHOD: &str = "mcp-method";
/// HTTP header: the tool or prompt name, or resource URI (modern era).
pub const HEADER_NAME: &str = "mcp-name";
/// HTTP header: SSE resumption (legacy era).
pub const HEADER_LAST_EVENT_ID: &str = "last-event-id";

/// Headers do not match the body (modern era).
pub const HEADER_MISMATCH: i64 = -32020;
/// A required client capability was not declared (modern era).
pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
/// The requested protocol version is not supported (modern era).
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
/// Resource not found (legacy era).
pub const RESOURCE_NOT_FOUND: i64 = -32002;

/// Which protocol era a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Era {
    /// Session-based, `initialize` first (2025-03-26 .. 2025-11-25).
    Legacy,
    /// Stateless, `_meta` on every request (2026-07-28).
    Modern,
}

/// Whether `version` is a modern (stateless) protocol version.
pub fn is_modern(version: &str) -> bool {
    version >= MODERN
}

/// The params field that `Mcp-Name` mirrors for `method`, if any.
pub fn name_field(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// Legacy methods that 2026-07-28 removed; a modern request for them is
/// answered 404 with -32601.
pub fn removed_in_modern(method: &str) -> bool {
    matches!(
        method,
        "initialize"
            | "ping"
            | "logging/setLevel"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "notifications/initialized"
    )
}

/// Methods that may answer with an `input_required` result (modern era).
pub fn may_require_input(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

const SENTINEL_START: &str = "=?base64?";
const SENTINEL_END: &str = "?=";

/// Decodes a header value that may use the `=?base64?...?=` sentinel.
pub fn decode_header_value(value: &str) -> Result<Cow<'_, str>, &'static str> {
    if let Some(inner) = value
        .strip_prefix(SENTINEL_START)
        .and_then(|v| v.strip_suffix(SENTINEL_END))
    {
        let bytes = STANDARD
            .decode(inner)
            .map_err(|_| "invalid base64 in header value")?;
        String::from_utf8(bytes)
            .map(Cow::Owned)
            .map_err(|_| "header value is not UTF-8")
    } else {
        Ok(Cow::Borrowed(value))
    }
}

/// Encodes a value for an `Mcp-Name`-style header, using the base64
/// sentinel when the value is not plain header-safe ASCII.
pub fn encode_header_value(value: &str) -> Cow<'_, str> {
    let sentinel_like = value.starts_with(SENTINEL_START) && value.ends_with(SENTINEL_END);
    let safe = !value.is_empty()
        && value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && !sentinel_like;
    if safe {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(format!(
            "{SENTINEL_START}{}{SENTINEL_END}",
            STANDARD.encode(value)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_round_trip_through_the_sentinel() {
        for v in [
            "get_weather",
            "Hello, 世界",
            " padded ",
            "line1\nline2",
            "=?base64?literal?=",
            "file:///a b",
        ] {
            let enc = encode_header_value(v);
            assert_eq!(decode_header_value(&enc).expect("decodes"), v);
        }
        assert_eq!(encode_header_value("us-west1"), "us-west1");
        assert_eq!(
            encode_header_value("Hello, 世界"),
            "=?base64?SGVsbG8sIOS4lueVjA==?="
        );
    }

    #[test]
    fn bad_base64_is_refused() {
        assert!(decode_header_value("=?base64?!!!?=").is_err());
    }

    #[test]
    fn modern_versions_are_recognised() {
        assert!(is_modern("2026-07-28"));
        assert!(!is_modern("2025-11-25"));
    }
}
