//! A tiny glob matcher for `server/tool` patterns (`*` and `?`).
//!
//! Owns: [`Glob`]. Matching is case-insensitive and allocation free. A
//! pattern without a `/` matches the tool name alone, so `*delete*` matches
//! `files/delete_file`.

use std::fmt;

/// A compiled glob over `server/tool` (or just `tool`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Box<str>,
    has_server: bool,
}

impl Glob {
    /// Compiles a pattern. Any string is a valid pattern.
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.to_ascii_lowercase().into_boxed_str(),
            has_server: pattern.contains('/'),
        }
    }

    /// The pattern as written (lower-cased).
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// True if the pattern matches `server/tool` (or `tool` when the
    /// pattern names no server).
    pub fn matches_tool(&self, server: &str, tool: &str) -> bool {
        if self.has_server {
            let sp = self.pattern.split_once('/');
            match sp {
                Some((ps, pt)) => {
                    wild_match(ps.as_bytes(), server.as_bytes())
                        && wild_match(pt.as_bytes(), tool.as_bytes())
                }
                None => false,
            }
        } else {
            wild_match(self.pattern.as_bytes(), tool.as_bytes())
        }
    }

    /// True if the pattern matches the whole text.
    pub fn matches(&self, text: &str) -> bool {
        wild_match(self.pattern.as_bytes(), text.as_bytes())
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// Iterative wildcard match with single-star backtracking; linear in
/// practice and never recursive.
fn wild_match(p: &[u8], t: &[u8]) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let tc = t[ti].to_ascii_lowercase();
        if pi < p.len() && (p[pi] == b'?' || p[pi] == tc) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests;
