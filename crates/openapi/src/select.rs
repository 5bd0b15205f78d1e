//! Which operations become tools: include and exclude filters by tag,
//! `operationId` glob, method and path glob, and a hard cap.

use crate::spec::RawOperation;

/// One filter. An empty list matches anything; a filter matches an
/// operation when every non-empty list does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Tags (the operation has at least one of them).
    pub tags: Vec<String>,
    /// Globs over `operationId` (`*` any run, `?` one character).
    pub operations: Vec<String>,
    /// HTTP methods, any case.
    pub methods: Vec<String>,
    /// Globs over the path template (`/users/*`).
    pub paths: Vec<String>,
}

impl Filter {
    /// Whether the filter sets nothing.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
            && self.operations.is_empty()
            && self.methods.is_empty()
            && self.paths.is_empty()
    }

    /// Whether `op` passes every list the filter sets.
    pub fn matches(&self, op: &RawOperation<'_>) -> bool {
        let tags = self.tags.is_empty() || op.tags().any(|t| self.tags.iter().any(|w| w == t));
        let ids = self.operations.is_empty()
            || op
                .operation_id()
                .is_some_and(|id| self.operations.iter().any(|g| glob(g, id)));
        let methods = self.methods.is_empty()
            || self
                .methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(op.method));
        let paths = self.paths.is_empty() || self.paths.iter().any(|g| glob(g, op.path));
        tags && ids && methods && paths
    }
}

/// The operator's selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Operations must match this (when it sets anything).
    pub include: Filter,
    /// Operations matching this (when it sets anything) are left out.
    pub exclude: Filter,
    /// Most tools exposed; more is a start-up error, never a silent cut.
    pub max_tools: usize,
}

/// The default cap: past this, clients drown in tools.
pub const DEFAULT_MAX_TOOLS: usize = 200;

impl Default for Selection {
    fn default() -> Self {
        Selection {
            include: Filter::default(),
            exclude: Filter::default(),
            max_tools: DEFAULT_MAX_TOOLS,
        }
    }
}

impl Selection {
    /// Whether `op` is selected.
    pub fn selects(&self, op: &RawOperation<'_>) -> bool {
        (self.include.is_empty() || self.include.matches(op))
            && (self.exclude.is_empty() || !self.exclude.matches(op))
    }
}

/// Matches `text` against `pattern` with `*` (any run) and `?` (one
/// character); iterative, so no pattern can make it slow.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}
