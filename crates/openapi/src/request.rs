//! A call's arguments as an HTTP request: path templating with every value
//! percent-escaped (an argument can never add a path segment, a query
//! parameter or a header line), query strings with arrays, headers and a
//! JSON or form body. The base URL is the caller's, never the spec's or the
//! agent's.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

use crate::error::CallError;
use crate::tool::{Arg, BodyEncoding, Location, Tool};

/// RFC 3986 unreserved characters stay; everything else is escaped, `/`
/// included, so a path argument stays one segment.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// An HTTP request ready to send (relative to the configured base URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Upper-case method.
    pub method: String,
    /// Path and query, to append to the base URL's path.
    pub path_and_query: String,
    /// Headers from header parameters (never credentials).
    pub headers: Vec<(String, String)>,
    /// Content type and bytes of the body, if any.
    pub body: Option<(&'static str, Vec<u8>)>,
}

impl Tool {
    /// The request for a call with `arguments`.
    pub fn request(&self, arguments: &Value) -> Result<HttpRequest, CallError> {
        let empty = Map::new();
        let args = match arguments {
            Value::Object(m) => m,
            Value::Null => &empty,
            _ => return Err(CallError::NotObject),
        };
        if let Some(k) = args
            .keys()
            .find(|k| !self.args.iter().any(|a| &a.key == *k))
        {
            return Err(CallError::Unknown(k.clone()));
        }
        let mut path = self.path.clone();
        let mut query: Vec<String> = Vec::new();
        let mut headers = Vec::new();
        let mut body_props = Map::new();
        let mut whole_body = None;
        for a in &self.args {
            let Some(v) = args.get(&a.key).filter(|v| !v.is_null()) else {
                if a.required {
                    return Err(CallError::Missing(a.key.clone()));
                }
                continue;
            };
            match a.location {
                Location::Path => {
                    let text = scalar(a, v)?;
                    let escaped = utf8_percent_encode(&text, COMPONENT).to_string();
                    path = path.replace(&format!("{{{}}}", a.name), &escaped);
                }
                Location::Query => query_pairs(a, v, &mut query)?,
                Location::Header => {
                    let text = scalar(a, v)?;
                    if text.chars().any(|c| c.is_control()) {
                        return Err(invalid(a, "contains control characters"));
                    }
                    headers.push((a.name.clone(), text));
                }
                Location::BodyProperty => {
                    body_props.insert(a.name.clone(), v.clone());
                }
                Location::Body => whole_body = Some(v.clone()),
            }
        }
        let body_value =
            whole_body.or_else(|| (!body_props.is_empty()).then_some(Value::Object(body_props)));
        let body = match (self.body, body_value) {
            (Some(BodyEncoding::Json), Some(v)) => Some((
                "application/json",
                serde_json::to_vec(&v).unwrap_or_default(),
            )),
            (Some(BodyEncoding::Form), Some(v)) => {
                let mut pairs = Vec::new();
                form_pairs("", &v, &mut pairs);
                Some((
                    "application/x-www-form-urlencoded",
                    pairs.join("&").into_bytes(),
                ))
            }
            _ => None,
        };
        let mut path_and_query = path;
        if !query.is_empty() {
            path_and_query.push('?');
            path_and_query.push_str(&query.join("&"));
        }
        Ok(HttpRequest {
            method: self.method.to_ascii_uppercase(),
            path_and_query,
            headers,
            body,
        })
    }
}

fn invalid(a: &Arg, reason: &str) -> CallError {
    CallError::Invalid {
        name: a.key.clone(),
        reason: reason.to_owned(),
    }
}

/// A scalar argument as text; objects and arrays do not fit a path
/// segment or a header.
fn scalar(a: &Arg, v: &Value) -> Result<String, CallError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(invalid(a, "must be a string, number or boolean")),
    }
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

fn query_pairs(a: &Arg, v: &Value, out: &mut Vec<String>) -> Result<(), CallError> {
    let name = enc(&a.name);
    match v {
        Value::Array(items) => {
            let texts = items
                .iter()
                .map(|i| scalar(a, i))
                .collect::<Result<Vec<_>, _>>()?;
            if a.explode {
                out.extend(texts.iter().map(|t| format!("{name}={}", enc(t))));
            } else {
                let joined: Vec<String> = texts.iter().map(|t| enc(t)).collect();
                out.push(format!("{name}={}", joined.join(",")));
            }
        }
        // deepObject-style: `filter[status]=open`.
        Value::Object(m) => {
            for (k, x) in m {
                out.push(format!("{name}%5B{}%5D={}", enc(k), enc(&scalar(a, x)?)));
            }
        }
        other => out.push(format!("{name}={}", enc(&scalar(a, other)?))),
    }
    Ok(())
}

/// Form encoding with nested keys as `a[b]` and arrays as `a[]`.
fn form_pairs(prefix: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}[{k}]")
                };
                form_pairs(&key, x, out);
            }
        }
        Value::Array(items) => {
            for x in items {
                form_pairs(&format!("{prefix}[]"), x, out);
            }
        }
        Value::Null => {}
        Value::String(s) => out.push(format!("{}={}", enc(prefix), enc(s))),
        other => out.push(format!("{}={}", enc(prefix), enc(&other.to_string()))),
    }
}
