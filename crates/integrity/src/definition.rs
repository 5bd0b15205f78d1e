//! Canonical form and hash of a tool definition.

use serde_json::Value;

/// A tool definition in canonical form, with its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// Canonical JSON: object keys sorted, no whitespace, `_meta` removed
    /// at the top level (it is free-form and not shown to the model).
    pub canonical: String,
    /// `blake3:` and the hex BLAKE3 hash of `canonical`.
    pub hash: String,
}

impl Definition {
    /// Canonicalises one tool object as an upstream listed it.
    pub fn of(tool: &Value) -> Definition {
        let mut canonical = String::with_capacity(256);
        match tool {
            Value::Object(map) => write_object(&mut canonical, map, Some("_meta")),
            other => write(&mut canonical, other),
        }
        let hash = format!("blake3:{}", blake3::hash(canonical.as_bytes()).to_hex());
        Definition { canonical, hash }
    }

    /// The definition pretty-printed (for diffs and review).
    pub fn pretty(&self) -> String {
        pretty(&self.canonical)
    }
}

fn pretty(canonical: &str) -> String {
    // The canonical text was produced here from a Value, so it parses; the
    // fallback keeps the raw text rather than losing it.
    serde_json::from_str::<Value>(canonical)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&sorted(&v)).ok())
        .unwrap_or_else(|| canonical.to_owned())
}

/// A copy with every object's keys in sorted order (for printing).
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

fn write(out: &mut String, v: &Value) {
    match v {
        Value::Object(map) => write_object(out, map, None),
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write(out, item);
            }
            out.push(']');
        }
        // Scalars: serde_json's own encoding is already canonical.
        other => out.push_str(&other.to_string()),
    }
}

/// An object with its keys sorted, leaving out the key `skip`.
fn write_object(out: &mut String, map: &serde_json::Map<String, Value>, skip: Option<&str>) {
    let mut entries: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, _)| Some(k.as_str()) != skip)
        .collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (n, (k, v)) in entries.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        write_string(out, k);
        out.push(':');
        write(out, v);
    }
    out.push('}');
}

fn write_string(out: &mut String, s: &str) {
    out.push_str(&Value::String(s.to_owned()).to_string());
}

/// A unified diff between two canonical definitions, pretty-printed.
pub fn diff(approved: &str, seen: &str) -> String {
    let (a, b) = (pretty(approved), pretty(seen));
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header("approved", "seen")
        .to_string()
}
