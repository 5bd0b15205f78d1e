//! The judge crate's error type: everything that can go wrong while loading
//! rule files and policies. Judging itself never fails.
//!
//! Owns: [`Error`] and [`Location`].

use std::fmt;

/// A position in a source file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name as given by the caller.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if self.column > 0 {
            write!(f, ":{}", self.column)?;
        }
        Ok(())
    }
}

/// Errors from loading rules and policies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The rule file is not valid YAML or does not have the expected shape.
    #[error("{at}: invalid rule file: {message}")]
    Syntax {
        /// Where.
        at: Location,
        /// What the parser said.
        message: String,
    },
    /// A rule is well formed YAML but makes no sense.
    #[error("{at}: rule `{rule}`: {message}")]
    Rule {
        /// Where.
        at: Location,
        /// The rule id (empty when the rule has none).
        rule: String,
        /// What is wrong.
        message: String,
    },
    /// A Cedar policy or schema does not parse or validate.
    #[error("{at}: policy: {message}")]
    Policy {
        /// Where.
        at: Location,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    /// Where the error is.
    pub fn location(&self) -> &Location {
        match self {
            Error::Syntax { at, .. } | Error::Rule { at, .. } | Error::Policy { at, .. } => at,
        }
    }
}
