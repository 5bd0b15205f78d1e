//! Reading an OpenAPI document: JSON or YAML, version check, digest, the
//! operations it declares and bounded `$ref` resolution.

use serde_json::{Map, Value};

use crate::error::SpecError;

/// HTTP methods an OpenAPI path item may declare, in spec order.
pub const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// How deep `$ref`s are followed inside one schema; deeper (recursive)
/// references become an open schema, so a self-referencing type cannot
/// make an input schema infinite.
pub const MAX_REF_DEPTH: usize = 8;

/// Most schema nodes one operation's resolved schemas may have; beyond it
/// nested schemas are left open. Stops a small spec whose references fan
/// out from expanding exponentially.
pub const MAX_NODES: usize = 20_000;

/// A parsed OpenAPI 3.x document.
#[derive(Debug, Clone)]
pub struct Spec {
    origin: String,
    doc: Value,
    digest: String,
}

/// One operation as the document declares it (references unresolved).
#[derive(Debug, Clone, Copy)]
pub struct RawOperation<'a> {
    /// Lower-case HTTP method.
    pub method: &'static str,
    /// The path template, e.g. `/users/{id}`.
    pub path: &'a str,
    /// The operation object.
    pub op: &'a Map<String, Value>,
    /// The path item (for its shared parameters).
    pub item: &'a Map<String, Value>,
}

impl<'a> RawOperation<'a> {
    /// `operationId`, if declared and not empty.
    pub fn operation_id(&self) -> Option<&'a str> {
        self.op
            .get("operationId")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
    }

    /// `METHOD /path`, for messages.
    pub fn display(&self) -> String {
        format!("{} {}", self.method.to_ascii_uppercase(), self.path)
    }

    /// The operation's tags.
    pub fn tags(&self) -> impl Iterator<Item = &'a str> {
        self.op
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    }
}

impl Spec {
    /// Reads a spec file.
    pub fn load(path: &std::path::Path) -> Result<Spec, SpecError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| SpecError::Read {
            origin: origin.clone(),
            reason: e.to_string(),
        })?;
        Spec::parse(&origin, &bytes)
    }

    /// Parses a document (JSON, or else YAML) named `origin` in messages.
    pub fn parse(origin: &str, bytes: &[u8]) -> Result<Spec, SpecError> {
        let syntax = |reason: String| SpecError::Syntax {
            origin: origin.to_owned(),
            reason,
        };
        let doc: Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(json_err) => {
                let text = std::str::from_utf8(bytes).map_err(|e| syntax(e.to_string()))?;
                // A document starting with `{` was meant as JSON: its error
                // says more than YAML's would.
                if text.trim_start().starts_with('{') {
                    return Err(syntax(json_err.to_string()));
                }
                let yaml: serde_yaml::Value =
                    serde_yaml::from_str(text).map_err(|e| syntax(e.to_string()))?;
                from_yaml(yaml)
            }
        };
        let not = |reason: &str| SpecError::NotOpenApi {
            origin: origin.to_owned(),
            reason: reason.to_owned(),
        };
        let Some(root) = doc.as_object() else {
            return Err(not("the document is not an object"));
        };
        if root.contains_key("swagger") {
            return Err(SpecError::Swagger2 {
                origin: origin.to_owned(),
            });
        }
        let version = root
            .get("openapi")
            .and_then(Value::as_str)
            .ok_or_else(|| not("no `openapi` version field"))?;
        if !(version.starts_with("3.0") || version.starts_with("3.1")) {
            return Err(not(&format!("unsupported version `{version}`")));
        }
        if !root.get("paths").is_none_or(Value::is_object) {
            return Err(not("`paths` is not an object"));
        }
        let digest = format!("blake3:{}", blake3::hash(bytes).to_hex());
        Ok(Spec {
            origin: origin.to_owned(),
            doc,
            digest,
        })
    }

    /// Where the document came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// `blake3:` and the hash of the document's bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Every operation, in document order (paths, then methods in spec
    /// order).
    pub fn operations(&self) -> Vec<RawOperation<'_>> {
        let mut out = Vec::new();
        let Some(paths) = self.doc.get("paths").and_then(Value::as_object) else {
            return out;
        };
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for method in METHODS {
                if let Some(op) = item.get(method).and_then(Value::as_object) {
                    out.push(RawOperation {
                        method,
                        path,
                        op,
                        item,
                    });
                }
            }
        }
        out
    }

    /// Follows a local reference (`#/components/...`) once.
    pub fn lookup(&self, reference: &str) -> Option<&Value> {
        let pointer = reference.strip_prefix('#')?;
        self.doc.pointer(pointer)
    }

    /// Resolves a value: a `$ref` object is replaced by its target, and
    /// references inside are resolved recursively (schemas up to
    /// [`MAX_REF_DEPTH`] references deep, at most `budget` nodes).
    pub fn resolve(&self, v: &Value, budget: &mut usize) -> Result<Value, String> {
        self.resolve_at(v, 0, budget)
    }

    fn resolve_at(&self, v: &Value, depth: usize, budget: &mut usize) -> Result<Value, String> {
        *budget = budget.saturating_sub(1);
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    if depth >= MAX_REF_DEPTH || *budget == 0 {
                        // Recursive or too large: an open schema, said so.
                        return Ok(serde_json::json!({
                            "description": format!("(nested `{}` not expanded)", ref_name(r))
                        }));
                    }
                    let target = self.lookup(r).ok_or_else(|| r.to_owned())?;
                    let mut out = self.resolve_at(target, depth + 1, budget)?;
                    // 3.1 allows siblings of `$ref` (description, ...): keep them.
                    if let Value::Object(o) = &mut out {
                        for (k, val) in m.iter().filter(|(k, _)| *k != "$ref") {
                            o.insert(k.clone(), self.resolve_at(val, depth, budget)?);
                        }
                    }
                    return Ok(out);
                }
                let mut out = Map::with_capacity(m.len());
                for (k, val) in m {
                    if *budget == 0 {
                        break;
                    }
                    out.insert(k.clone(), self.resolve_at(val, depth, budget)?);
                }
                Ok(Value::Object(out))
            }
            Value::Array(a) => {
                let mut out = Vec::with_capacity(a.len());
                for val in a {
                    if *budget == 0 {
                        break;
                    }
                    out.push(self.resolve_at(val, depth, budget)?);
                }
                Ok(Value::Array(out))
            }
            other => Ok(other.clone()),
        }
    }
}

fn ref_name(r: &str) -> &str {
    r.rsplit('/').next().unwrap_or(r)
}

/// A YAML value as JSON. YAML allows non-string keys (`200:` for a
/// response code); JSON object keys are their text.
fn from_yaml(v: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(from_yaml).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (yaml_key(k), from_yaml(v)))
                .collect(),
        ),
        Y::Tagged(t) => from_yaml(t.value),
    }
}

fn yaml_key(k: serde_yaml::Value) -> String {
    match from_yaml(k) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}
