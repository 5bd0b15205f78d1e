//! One operation as an MCP tool: its arguments (where each one goes in the
//! HTTP request), input schema, description, annotations and digest.

use serde_json::{Map, Value, json};

use crate::error::SpecError;
use crate::labels;
use crate::spec::{MAX_NODES, RawOperation, Spec};

/// Longest tool description; the rest of a long API description is cut
/// (clients show the first lines, and every character costs tokens).
pub const MAX_DESCRIPTION: usize = 1024;
/// Longest description of one argument.
const MAX_ARG_DESCRIPTION: usize = 300;

/// Headers an agent may never set through a header parameter: the
/// gateway's credentials and the framing are its own.
const RESERVED_HEADERS: [&str; 8] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-type",
    "content-length",
    "accept",
    "transfer-encoding",
];

/// Where an argument goes in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A `{name}` in the path template.
    Path,
    /// The query string.
    Query,
    /// A request header.
    Header,
    /// One property of an object body.
    BodyProperty,
    /// The whole body.
    Body,
}

impl Location {
    fn as_str(self) -> &'static str {
        match self {
            Location::Path => "path",
            Location::Query => "query",
            Location::Header => "header",
            Location::BodyProperty | Location::Body => "body",
        }
    }
}

/// How a body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    /// `application/json`.
    Json,
    /// `application/x-www-form-urlencoded` (nested keys as `a[b]`).
    Form,
}

/// One argument of a tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// The property name in the tool's arguments.
    pub key: String,
    /// The name in the request (parameter or body property name).
    pub name: String,
    /// Where it goes.
    pub location: Location,
    /// Whether the call fails without it.
    pub required: bool,
    /// Query arrays: `a=1&a=2` (true, the default) or `a=1,2`.
    pub explode: bool,
}

/// An operation exposed as a tool.
#[derive(Debug, Clone)]
pub struct Tool {
    /// The tool name (without the upstream's prefix).
    pub name: String,
    /// `operationId`, when the spec gives one.
    pub operation_id: Option<String>,
    /// Lower-case HTTP method.
    pub method: &'static str,
    /// Path template.
    pub path: String,
    /// What the model reads.
    pub description: String,
    /// JSON Schema of the arguments.
    pub input_schema: Value,
    /// Labels inferred from method, path, names and schema (judge label
    /// names: `write`, `money`, ...).
    pub labels: Vec<&'static str>,
    /// `blake3:` hash of the canonical tool definition (method, path,
    /// description, schema): changes whenever the operation does.
    pub definition_digest: String,
    /// The arguments, in schema order.
    pub args: Vec<Arg>,
    /// The body's encoding, when the operation takes one.
    pub body: Option<BodyEncoding>,
}

impl Tool {
    /// Builds the tool for `op`, named `name`.
    pub fn build(spec: &Spec, op: &RawOperation<'_>, name: String) -> Result<Tool, SpecError> {
        let ref_err = |reference: String| SpecError::Ref {
            origin: spec.origin().to_owned(),
            reference,
            operation: op.display(),
        };
        let mut budget = MAX_NODES;
        let mut props = Map::new();
        let mut required = Vec::new();
        let mut args: Vec<Arg> = Vec::new();
        for p in parameters(spec, op, &mut budget).map_err(ref_err)? {
            let Some(name) = p.get("name").and_then(Value::as_str) else {
                continue;
            };
            let location = match p.get("in").and_then(Value::as_str) {
                Some("path") => Location::Path,
                Some("query") => Location::Query,
                Some("header")
                    if !RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) =>
                {
                    Location::Header
                }
                // Cookies and reserved headers are the gateway's to set.
                _ => continue,
            };
            if args
                .iter()
                .any(|a| a.name == name && a.location == location)
            {
                return Err(SpecError::DuplicateParameter {
                    origin: spec.origin().to_owned(),
                    operation: op.display(),
                    name: name.to_owned(),
                    location: location.as_str().to_owned(),
                });
            }
            let key = unique_key(&props, name, location);
            let is_required = location == Location::Path
                || p.get("required").and_then(Value::as_bool).unwrap_or(false);
            let explode = p.get("explode").and_then(Value::as_bool).unwrap_or(true);
            let mut schema = param_schema(&p);
            describe(&mut schema, p.get("description"));
            props.insert(key.clone(), schema);
            if is_required {
                required.push(Value::String(key.clone()));
            }
            args.push(Arg {
                key,
                name: name.to_owned(),
                location,
                required: is_required,
                explode,
            });
        }
        let body = request_body(spec, op, &mut budget).map_err(ref_err)?;
        let encoding = body.as_ref().map(|b| b.encoding);
        if let Some(b) = body {
            add_body(b, &mut props, &mut required, &mut args);
        }
        let mut input_schema = json!({ "type": "object", "properties": props });
        if !required.is_empty() {
            input_schema["required"] = Value::Array(required);
        }
        let description = description(op);
        let labels = labels::infer(op, &input_schema);
        let definition_digest = digest(&json!({
            "method": op.method,
            "path": op.path,
            "description": description,
            "inputSchema": input_schema,
        }));
        Ok(Tool {
            name,
            operation_id: op.operation_id().map(str::to_owned),
            method: op.method,
            path: op.path.to_owned(),
            description,
            input_schema,
            labels,
            definition_digest,
            args,
            body: encoding,
        })
    }

    /// The tool as `tools/list` shows it. Method and path are in the
    /// description, so the integrity pin covers them; `_meta` names the
    /// operation and the spec for audit and review.
    pub fn to_json(&self, spec_digest: &str) -> Value {
        let read_only = matches!(self.method, "get" | "head" | "options");
        let mut annotations = json!({ "readOnlyHint": read_only });
        if !read_only {
            annotations["destructiveHint"] = Value::Bool(self.method == "delete");
            annotations["idempotentHint"] = Value::Bool(matches!(self.method, "put" | "delete"));
        }
        json!({
            "name": self.name,
            "description": self.description,
            "inputSchema": self.input_schema,
            "annotations": annotations,
            "_meta": { "castellan/openapi": {
                "operationId": self.operation_id,
                "method": self.method.to_ascii_uppercase(),
                "path": self.path,
                "specDigest": spec_digest,
                "definitionDigest": self.definition_digest,
                "labels": self.labels,
            }},
        })
    }
}

/// The operation's parameters: path-item ones overridden by operation
/// ones with the same name and location, references resolved.
fn parameters(
    spec: &Spec,
    op: &RawOperation<'_>,
    budget: &mut usize,
) -> Result<Vec<Map<String, Value>>, String> {
    let mut out: Vec<Map<String, Value>> = Vec::new();
    let list = |v: Option<&'_ Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
    for p in list(op.item.get("parameters")) {
        if let Value::Object(p) = spec.resolve(&p, budget)? {
            out.push(p);
        }
    }
    let shared = out.len();
    for p in list(op.op.get("parameters")) {
        let Value::Object(p) = spec.resolve(&p, budget)? else {
            continue;
        };
        let same =
            |q: &Map<String, Value>| q.get("name") == p.get("name") && q.get("in") == p.get("in");
        // An operation's parameter overrides the path item's; two of the
        // operation's own with one name are reported by the caller.
        match out[..shared].iter_mut().find(|q| same(q)) {
            Some(q) => *q = p,
            None => out.push(p),
        }
    }
    Ok(out)
}

fn param_schema(p: &Map<String, Value>) -> Value {
    if let Some(s) = p.get("schema") {
        return s.clone();
    }
    // `content`-style parameters: the first media type's schema.
    p.get("content")
        .and_then(Value::as_object)
        .and_then(|c| c.values().next())
        .and_then(|m| m.get("schema"))
        .cloned()
        .unwrap_or_else(|| json!({}))
}

struct Body {
    schema: Value,
    required: bool,
    encoding: BodyEncoding,
}

fn request_body(
    spec: &Spec,
    op: &RawOperation<'_>,
    budget: &mut usize,
) -> Result<Option<Body>, String> {
    let Some(rb) = op.op.get("requestBody") else {
        return Ok(None);
    };
    let rb = spec.resolve(rb, budget)?;
    let Some(content) = rb.get("content").and_then(Value::as_object) else {
        return Ok(None);
    };
    let json_type = content
        .iter()
        .find(|(t, _)| t.starts_with("application/json") || t.ends_with("+json"));
    let (media, encoding) = match json_type {
        Some((_, m)) => (m, BodyEncoding::Json),
        None => match content.get("application/x-www-form-urlencoded") {
            Some(m) => (m, BodyEncoding::Form),
            // Binary uploads and multipart are not for an agent.
            None => return Ok(None),
        },
    };
    Ok(Some(Body {
        schema: media.get("schema").cloned().unwrap_or_else(|| json!({})),
        required: rb.get("required").and_then(Value::as_bool).unwrap_or(false),
        encoding,
    }))
}

/// Adds the body to the arguments: an object body's properties directly
/// (when none of them is already a parameter's key), anything else under
/// `body`.
fn add_body(
    b: Body,
    props: &mut Map<String, Value>,
    required: &mut Vec<Value>,
    args: &mut Vec<Arg>,
) {
    let flat = b
        .schema
        .get("properties")
        .and_then(Value::as_object)
        .filter(|p| {
            !p.is_empty()
                && !p.keys().any(|k| props.contains_key(k))
                && ["oneOf", "anyOf", "allOf"]
                    .iter()
                    .all(|k| b.schema.get(*k).is_none())
                && b.schema
                    .get("additionalProperties")
                    .is_none_or(|a| a == &Value::Bool(false))
        });
    if let Some(body_props) = flat {
        let body_required: Vec<&str> = b
            .schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for (k, schema) in body_props {
            let req = b.required && body_required.contains(&k.as_str());
            props.insert(k.clone(), schema.clone());
            if req {
                required.push(Value::String(k.clone()));
            }
            args.push(Arg {
                key: k.clone(),
                name: k.clone(),
                location: Location::BodyProperty,
                required: req,
                explode: true,
            });
        }
        return;
    }
    let key = unique_key(props, "body", Location::Body);
    props.insert(key.clone(), b.schema);
    if b.required {
        required.push(Value::String(key.clone()));
    }
    args.push(Arg {
        key,
        name: String::new(),
        location: Location::Body,
        required: b.required,
        explode: true,
    });
}

/// `name`, or `<location>_<name>` when another argument already has it.
fn unique_key(props: &Map<String, Value>, name: &str, location: Location) -> String {
    if !props.contains_key(name) {
        return name.to_owned();
    }
    let mut key = format!("{}_{name}", location.as_str());
    while props.contains_key(&key) {
        key.push('_');
    }
    key
}

fn describe(schema: &mut Value, description: Option<&Value>) {
    if let (Value::Object(s), Some(Value::String(d))) = (schema, description) {
        s.insert(
            "description".into(),
            Value::String(trim(d, MAX_ARG_DESCRIPTION)),
        );
    }
}

/// `METHOD /path`, then summary and description, trimmed.
fn description(op: &RawOperation<'_>) -> String {
    let text = |k: &str| {
        op.op
            .get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let mut out = op.display();
    for part in [text("summary"), text("description")].into_iter().flatten() {
        if !out.contains(part) {
            out.push_str("\n\n");
            out.push_str(part);
        }
    }
    trim(&out, MAX_DESCRIPTION)
}

/// At most `max` characters, cut at a character boundary, marked `…`.
pub fn trim(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `blake3:` and the hash of `v` in canonical form (keys sorted).
pub fn digest(v: &Value) -> String {
    let mut s = String::new();
    canonical(v, &mut s);
    format!("blake3:{}", blake3::hash(s.as_bytes()).to_hex())
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (n, k) in keys.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (n, x) in a.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}
