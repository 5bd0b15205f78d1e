//! Tool definitions checked for poisoning: instructions aimed at the model
//! hidden in a tool's name, description or input schema, invisible
//! characters, references to credential files, and secrets.

use serde::Serialize;
use serde_json::Value;

use super::{Detectors, Kind, SignalKind, fold};
use crate::fingerprint::walk_ptr;

/// One finding in a tool definition. Carries where (a location such as
/// `description` or `inputSchema/properties/path/description`) and a byte
/// range inside that string, never the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefinitionFinding {
    /// `name`, `description`, `inputSchema` followed by a JSON pointer to a
    /// string in the schema, or that pointer with `#key` when an object key
    /// is at fault.
    pub location: String,
    /// The kind of signal (`Phrase`, `Marker`, `Imperative`, `Invisible`,
    /// `ExfilLink`); `None` for findings that are not injection signals
    /// (a credential file reference, a secret, a malformed name).
    pub signal: Option<SignalKind>,
    /// Byte range in the string at `location`.
    pub start: usize,
    /// End of the byte range (exclusive).
    pub end: usize,
    /// Why this is a finding, for operators.
    pub reason: String,
}

/// Paths and files an honest tool description has no reason to mention:
/// reading them is the classic tool-poisoning payload.
const SENSITIVE: [&str; 14] = [
    "~/.ssh",
    "id_rsa",
    "id_ed25519",
    ".ssh/",
    "~/.aws",
    ".aws/credentials",
    "/etc/passwd",
    "/etc/shadow",
    "mcp.json",
    "claude_desktop_config",
    ".env file",
    "~/.config",
    ".netrc",
    ".git-credentials",
];

/// Phrasing that tells the model to do something with another tool or
/// before using this one: shadowing and hijacking.
const HIJACK: [&str; 8] = [
    "before using this tool",
    "before calling this tool",
    "when this tool is available",
    "instead of the",
    "must always be used",
    "must be called first",
    "change the recipient",
    "all emails must be sent to",
];

/// Checks a tool definition (as listed by an upstream) for poisoning.
/// Pure; the gateway calls it when it pins or re-lists a tool.
///
/// Reports: injection signals (phrases, fake markers, imperative text to
/// the assistant, invisible characters, exfiltrating links) in the name,
/// the description and every string (and key) of the input schema;
/// references to credential files; instructions about other tools or to
/// run first; secrets; and names with characters outside
/// `[A-Za-z0-9_.-/]` or longer than 128 bytes.
pub fn inspect_tool_definition(
    name: &str,
    description: Option<&str>,
    input_schema: &Value,
) -> Vec<DefinitionFinding> {
    let det = Detectors::shared();
    let mut out = Vec::new();
    name_rule(name, &mut out);
    text(&det, "name", name, &mut out);
    if let Some(d) = description {
        text(&det, "description", d, &mut out);
    }
    let mut ptr = String::from("inputSchema");
    walk_ptr(input_schema, &mut ptr, 0, true, &mut |p, s, key| {
        if out.len() < 64 {
            if key {
                text(&det, &format!("{p}#key"), s, &mut out);
            } else {
                text(&det, p, s, &mut out);
            }
        }
    });
    out
}

/// Checks every text of a definition an agent's model reads (tool, prompt,
/// resource or resource template, as an upstream listed it): each string
/// and object key at any depth (`title`, `annotations/title`, the input
/// and output schemas, prompt arguments ...), except the free-form
/// top-level `_meta`. Locations are JSON pointers without the leading `/`
/// (`annotations/title`, `outputSchema/properties/x/description`, with
/// `#key` when a key is at fault). A tool's `name` must also be well
/// formed (see [`inspect_tool_definition`]).
pub fn inspect_definition(def: &Value, is_tool: bool) -> Vec<DefinitionFinding> {
    let det = Detectors::shared();
    let mut out = Vec::new();
    if is_tool {
        let name = def.get("name").and_then(Value::as_str).unwrap_or("");
        name_rule(name, &mut out);
    }
    let mut ptr = String::new();
    walk_ptr(def, &mut ptr, 0, true, &mut |p, s, key| {
        if out.len() >= 64 || p == "/_meta" || p.starts_with("/_meta/") {
            return;
        }
        let loc = p.strip_prefix('/').unwrap_or(p);
        if key {
            text(&det, &format!("{loc}#key"), s, &mut out);
        } else {
            text(&det, loc, s, &mut out);
        }
    });
    out
}

fn name_rule(name: &str, out: &mut Vec<DefinitionFinding>) {
    let name_ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'/'));
    if !name_ok {
        out.push(DefinitionFinding {
            location: "name".to_owned(),
            signal: None,
            start: 0,
            end: name.len(),
            reason: "tool name is empty, longer than 128 bytes or has characters outside \
                     letters, digits, `_`, `-`, `.` and `/`"
                .to_owned(),
        });
    }
}

/// One text: hidden characters and look-alike letters, then the signals,
/// credential paths and hijack phrases on the text as a model reads it
/// (see `fold`), then secrets.
fn text(det: &Detectors, location: &str, s: &str, out: &mut Vec<DefinitionFinding>) {
    if let Some((r, why)) = fold::hidden(s) {
        out.push(DefinitionFinding {
            location: location.to_owned(),
            signal: Some(SignalKind::Invisible),
            start: r.start,
            end: r.end,
            reason: format!("invisible: {why}"),
        });
    }
    let folded = fold::fold(s);
    let (t, map) = match &folded {
        Some((f, at)) => (f.as_str(), Some(at.as_slice())),
        None => (s, None),
    };
    // A range of the folded text as a range of `s`.
    let back = |start: usize, end: usize| match map {
        Some(m) => (m[start], m.get(end).copied().unwrap_or(s.len())),
        None => (start, end),
    };
    let mut sigs = Vec::new();
    det.signals(t, &mut sigs);
    for g in sigs {
        let (start, end) = back(g.range.start, g.range.end);
        out.push(DefinitionFinding {
            location: location.to_owned(),
            signal: Some(g.kind),
            start,
            end,
            reason: format!("{}: {}", g.kind.as_str(), g.what),
        });
    }
    let lower = t.to_ascii_lowercase();
    for (list, why) in [
        (
            &SENSITIVE[..],
            "mentions a credential or configuration file",
        ),
        (
            &HIJACK[..],
            "instructs the model about other tools or steps before use",
        ),
    ] {
        for p in list {
            if let Some(at) = lower.find(p) {
                let (start, end) = back(at, at + p.len());
                out.push(DefinitionFinding {
                    location: location.to_owned(),
                    signal: None,
                    start,
                    end,
                    reason: format!("{why} (`{p}`)"),
                });
            }
        }
    }
    let mut found = Vec::new();
    det.scan(s, &mut found);
    for f in found.iter().filter(|f| f.kind == Kind::Secret) {
        out.push(DefinitionFinding {
            location: location.to_owned(),
            signal: None,
            start: f.range.start,
            end: f.range.end,
            reason: format!("carries a secret ({})", det.detector_name(f.detector)),
        });
    }
}
