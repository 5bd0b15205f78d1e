//! Tool definitions checked for poisoning: instructions aimed at the model
//! hidden in a tool's name, description or input schema, invisible
//! characters, references to credential files, and secrets.

use serde::Serialize;
use serde_json::Value;

use super::{Detectors, Kind, SignalKind};
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

fn text(det: &Detectors, location: &str, s: &str, out: &mut Vec<DefinitionFinding>) {
    let mut sigs = Vec::new();
    det.signals(s, &mut sigs);
    for g in sigs {
        out.push(DefinitionFinding {
            location: location.to_owned(),
            signal: Some(g.kind),
            start: g.range.start,
            end: g.range.end,
            reason: format!("{}: {}", g.kind.as_str(), g.what),
        });
    }
    let lower = s.to_ascii_lowercase();
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
                out.push(DefinitionFinding {
                    location: location.to_owned(),
                    signal: None,
                    start: at,
                    end: at + p.len(),
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
