//! Tool names: from `operationId` (or method and path), made of
//! `[A-Za-z0-9_-]` only (what every MCP client and LLM function-calling API
//! accepts), within a length budget, and stable across restarts.
//!
//! A name depends only on its own operation, never on which other
//! operations exist: a name that had to be changed (invalid characters, too
//! long) ends in `_` and 8 hex digits of the hash of the original, so
//! adding or removing another operation never renames this one and the
//! pins of its tools stay valid.

/// Length of the hash suffix: `_` and 8 hex digits.
const SUFFIX: usize = 9;

/// Shortest budget accepted: room for a few characters and the suffix.
pub const MIN_BUDGET: usize = 16;

/// The tool name for an operation, at most `budget` characters (at least
/// [`MIN_BUDGET`]). `original` is the `operationId`, or `None` to name the
/// operation by `method` and `path`.
pub fn tool_name(original: Option<&str>, method: &str, path: &str, budget: usize) -> String {
    let budget = budget.max(MIN_BUDGET);
    let source = match original {
        Some(id) => id.to_owned(),
        None => format!("{}_{}", method.to_ascii_lowercase(), path),
    };
    let clean = sanitize(&source);
    // A method+path name always loses its `/` and `{}`: that is expected,
    // not a reason for a suffix; an operationId that needed changes is.
    let lossless = original.is_none() || clean == source;
    if lossless && !clean.is_empty() && clean.len() <= budget {
        return clean;
    }
    let hash = blake3::hash(source.as_bytes()).to_hex();
    let keep = budget - SUFFIX;
    let head: String = clean.chars().take(keep).collect();
    let head = head.trim_end_matches('_');
    let head = if head.is_empty() { "op" } else { head };
    format!("{head}_{}", &hash.as_str()[..SUFFIX - 1])
}

/// Replaces every character outside `[A-Za-z0-9_-]` with `_`, collapses
/// runs of `_` and trims them at both ends.
fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '-' {
            c
        } else {
            '_'
        };
        if c == '_' && (out.is_empty() || out.ends_with('_')) {
            continue;
        }
        out.push(c);
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// Whether a name is what [`tool_name`] produces: non-empty, ASCII
/// letters, digits, `_` and `-`.
pub fn is_valid(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
