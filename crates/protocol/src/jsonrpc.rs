//! JSON-RPC 2.0 envelopes, parsed lazily.
//!
//! The gateway needs the method, the id and sometimes one or two params
//! fields; everything else is kept as the original bytes ([`RawValue`]) and
//! written back untouched, so unknown fields, `_meta` and number formatting
//! survive the trip through the gateway.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist or is not available.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// Internal error.
pub const INTERNAL_ERROR: i64 = -32603;

/// A JSON-RPC request id, kept as the exact bytes the peer sent (a string or
/// a number) so that it is echoed back byte for byte.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Box<str>);

impl RequestId {
    /// An id from raw JSON text; it must be a JSON string or number.
    pub fn from_raw(raw: &RawValue) -> Result<Self, &'static str> {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'"') | Some(b'-') | Some(b'0'..=b'9') => Ok(RequestId(text.into())),
            _ => Err("id must be a string or a number"),
        }
    }

    /// A numeric id.
    pub fn number(n: u64) -> Self {
        RequestId(n.to_string().into_boxed_str())
    }

    /// The id as JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// The numeric value, if the id is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        self.0.parse().ok()
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The text was validated as a JSON string or number when it was built.
        match RawValue::from_string(self.0.to_string()) {
            Ok(raw) => raw.serialize(s),
            Err(e) => Err(serde::ser::Error::custom(e)),
        }
    }
}

/// What kind of message an envelope is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request: method and id.
    Request,
    /// A notification: method, no id.
    Notification,
    /// A response carrying `result`.
    Result,
    /// A response carrying `error`.
    Error,
}

/// A parsed JSON-RPC message. Only the envelope is decoded; `params`,
/// `result` and `error` stay raw.
#[derive(Debug)]
pub struct Envelope {
    /// The message kind.
    pub kind: Kind,
    /// The id (requests and responses; `None` for notifications and for
    /// error responses with a null id).
    pub id: Option<RequestId>,
    /// The method (requests and notifications).
    pub method: Option<String>,
    /// The raw params, if any.
    pub params: Option<Box<RawValue>>,
    /// The raw result (result responses).
    pub result: Option<Box<RawValue>>,
    /// The raw error object (error responses).
    pub error: Option<Box<RawValue>>,
}

/// Why bytes could not be read as a JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// [`PARSE_ERROR`] or [`INVALID_REQUEST`].
    pub code: i64,
    /// What was wrong, for the peer.
    pub message: String,
    /// The id, when it could be read, so the error can answer it.
    pub id: Option<RequestId>,
}

impl ParseError {
    fn invalid(message: impl Into<String>, id: Option<RequestId>) -> Self {
        ParseError {
            code: INVALID_REQUEST,
            message: message.into(),
            id,
        }
    }
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<Option<&'a RawValue>>,
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
    #[serde(default)]
    params: Option<Box<RawValue>>,
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<Box<RawValue>>,
}

/// Distinguishes `"id": null` (Some(None)) from an absent id (None).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<&'de RawValue>>, D::Error> {
    let raw: &'de RawValue = Deserialize::deserialize(d)?;
    if raw.get() == "null" {
        Ok(Some(None))
    } else {
        Ok(Some(Some(raw)))
    }
}

impl Envelope {
    /// Parses one JSON-RPC message. Batches (JSON arrays) are refused: MCP
    /// removed them in 2025-06-18 and the gateway judges one call at a time.
    pub fn parse(bytes: &[u8]) -> Result<Envelope, ParseError> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'[') {
            if serde_json::from_slice::<&RawValue>(bytes).is_err() {
                return Err(ParseError {
                    code: PARSE_ERROR,
                    message: "parse error: body is not valid JSON".into(),
                    id: None,
                });
            }
            return Err(ParseError::invalid(
                "JSON-RPC batches are not supported; send one message per request",
                None,
            ));
        }
        let wire: Wire<'_> = match serde_json::from_slice(bytes) {
            Ok(w) => w,
            Err(e) if e.is_syntax() || e.is_eof() => {
                return Err(ParseError {
                    code: PARSE_ERROR,
                    message: format!("parse error: {e}"),
                    id: None,
                });
            }
            Err(e) => return Err(ParseError::invalid(format!("invalid request: {e}"), None)),
        };
        let id = match wire.id {
            Some(Some(raw)) => {
                Some(RequestId::from_raw(raw).map_err(|m| ParseError::invalid(m, None))?)
            }
            _ => None,
        };
        if wire.jsonrpc.map(RawValue::get) != Some("\"2.0\"") {
            return Err(ParseError::invalid("`jsonrpc` must be \"2.0\"", id));
        }
        if let Some(params) = &wire.params {
            let c = params.get().as_bytes().first();
            if c != Some(&b'{') && c != Some(&b'[') {
                return Err(ParseError::invalid(
                    "`params` must be an object or an array",
                    id,
                ));
            }
        }
        let method = match wire.method {
            Some(raw) => match serde_json::from_str::<String>(raw.get()) {
                Ok(m) => Some(m),
                Err(_) => return Err(ParseError::invalid("`method` must be a string", id)),
            },
            None => None,
        };
        let kind = match (&method, wire.id, &wire.result, &wire.error) {
            (Some(_), Some(Some(_)), None, None) => Kind::Request,
            (Some(_), Some(None), _, _) => {
                return Err(ParseError::invalid("request id must not be null", None));
            }
            (Some(_), None, None, None) => Kind::Notification,
            (None, Some(_), Some(_), None) => Kind::Result,
            (None, Some(_), None, Some(_)) => Kind::Error,
            (None, _, Some(_), Some(_)) => {
                return Err(ParseError::invalid(
                    "a response carries `result` or `error`, not both",
                    id,
                ));
            }
            (Some(_), _, _, _) => {
                return Err(ParseError::invalid(
                    "a request must not carry `result` or `error`",
                    id,
                ));
            }
            _ => {
                return Err(ParseError::invalid(
                    "message has neither `method` nor `result`/`error`",
                    id,
                ));
            }
        };
        Ok(Envelope {
            kind,
            id,
            method,
            params: wire.params,
            result: wire.result,
            error: wire.error,
        })
    }

    /// The method, or "" for responses.
    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or("")
    }

    /// Parses `params` as an object whose values stay raw.
    pub fn params_object(&self) -> Result<RawObject, ParseError> {
        match &self.params {
            None => Ok(RawObject::default()),
            Some(p) => serde_json::from_str(p.get()).map_err(|e| ParseError {
                code: INVALID_PARAMS,
                message: format!("invalid params: {e}"),
                id: self.id.clone(),
            }),
        }
    }

    /// Serialises a request or notification with the given id and params.
    pub fn request_bytes(
        id: Option<&RequestId>,
        method: &str,
        params: Option<&RawValue>,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + params.map_or(0, |p| p.get().len()));
        out.extend_from_slice(b"{\"jsonrpc\":\"2.0\"");
        if let Some(id) = id {
            out.extend_from_slice(b",\"id\":");
            out.extend_from_slice(id.as_json().as_bytes());
        }
        out.extend_from_slice(b",\"method\":");
        crate::json::write_str(&mut out, method);
        if let Some(p) = params {
            out.extend_from_slice(b",\"params\":");
            out.extend_from_slice(p.get().as_bytes());
        }
        out.push(b'}');
        out
    }

    /// Serialises a result response.
    pub fn result_bytes(id: &RequestId, result: &RawValue) -> Vec<u8> {
        let mut out = Vec::with_capacity(48 + result.get().len());
        out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
        out.extend_from_slice(id.as_json().as_bytes());
        out.extend_from_slice(b",\"result\":");
        out.extend_from_slice(result.get().as_bytes());
        out.push(b'}');
        out
    }

    /// Serialises a result response from a parsed value, written straight
    /// into the response: the same bytes as [`Envelope::result_bytes`] with
    /// the value's compact JSON, without building that text on its own
    /// first. `text_len` is the expected length of the value's text (the
    /// text it was parsed from, say), to allocate once.
    pub fn result_value_bytes(
        id: &RequestId,
        result: &serde_json::Value,
        text_len: usize,
    ) -> Vec<u8> {
        // Slack for what the gateway adds (`resultType`, a redaction label).
        let mut out = Vec::with_capacity(80 + id.as_json().len() + text_len + text_len / 16);
        out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
        out.extend_from_slice(id.as_json().as_bytes());
        out.extend_from_slice(b",\"result\":");
        crate::json::write_value(&mut out, result);
        out.push(b'}');
        out
    }

    /// Serialises an error response with a raw error object.
    pub fn raw_error_bytes(id: Option<&RequestId>, error: &RawValue) -> Vec<u8> {
        let mut out = Vec::with_capacity(48 + error.get().len());
        out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
        out.extend_from_slice(id.map_or("null", RequestId::as_json).as_bytes());
        out.extend_from_slice(b",\"error\":");
        out.extend_from_slice(error.get().as_bytes());
        out.push(b'}');
        out
    }
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorObject {
    /// The error code.
    pub code: i64,
    /// A short description.
    pub message: String,
    /// Structured detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl ErrorObject {
    /// An error without data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        ErrorObject {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Adds structured data.
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }

    /// Serialises a full error response for `id`.
    pub fn to_response(&self, id: Option<&RequestId>) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
        out.extend_from_slice(id.map_or("null", RequestId::as_json).as_bytes());
        out.extend_from_slice(b",\"error\":");
        if serde_json::to_writer(&mut out, self).is_err() {
            out.extend_from_slice(b"{\"code\":-32603,\"message\":\"internal error\"}");
        }
        out.push(b'}');
        out
    }
}

/// A JSON object whose values stay raw, in their original order. Used to
/// rewrite one field (a tool name, `_meta`) without touching the others.
#[derive(Debug, Default, Clone)]
pub struct RawObject(pub Vec<(String, Box<RawValue>)>);

impl RawObject {
    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }

    /// The value of `key` decoded as a string.
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.get(key)
            .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
    }

    /// Sets `key` to `value`, keeping its position if present.
    pub fn set(&mut self, key: &str, value: Box<RawValue>) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    /// Sets `key` to a JSON string.
    pub fn set_str(&mut self, key: &str, value: &str) {
        // serde_json writes the string literal and wraps it as raw JSON
        // without reading it back (`RawValue::from_string` would parse it).
        if let Ok(raw) = serde_json::value::to_raw_value(value) {
            self.set(key, raw);
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Box<RawValue>> {
        let pos = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(pos).1)
    }

    /// Serialises back to raw JSON.
    pub fn to_raw(&self) -> Box<RawValue> {
        // serde_json escapes the keys and writes the raw values verbatim,
        // and wraps the text without parsing it again: on the relay path
        // this object carries the agent's whole arguments.
        serde_json::value::to_raw_value(self).unwrap_or_else(|_| empty_object())
    }
}

/// `{}` as a raw value.
pub fn empty_object() -> Box<RawValue> {
    raw_json("{}")
}

/// Raw JSON from text known to be valid; falls back to `null`.
pub fn raw_json(text: &str) -> Box<RawValue> {
    // `Box<RawValue>::default()` is `null`.
    RawValue::from_string(text.to_owned()).unwrap_or_default()
}

/// Raw JSON from a serialisable value.
pub fn to_raw<T: Serialize + ?Sized>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_default()
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    if out
                        .iter()
                        .any(|(existing, _): &(String, Box<RawValue>)| existing == &k)
                    {
                        return Err(de::Error::custom(format!("duplicate key `{k}`")));
                    }
                    out.push((k, v));
                }
                Ok(RawObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Serialize for RawObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests;
