/// Why a configuration could not be loaded. Every variant names the file
/// and, where the text is at fault, the line and column.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {message}")]
    Io {
        /// The file.
        file: String,
        /// The OS error.
        message: String,
    },
    /// The text is not valid YAML or does not fit the schema.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The values are well-formed but do not make sense together.
    #[error("{file}{}: {message}", LineOf(*line))]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line of the offending entry (0 if unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// The line the error points at, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Syntax { line, .. } | ConfigError::Invalid { line, .. } if *line > 0 => {
                Some(*line)
            }
            _ => None,
        }
    }
}

/// `:<line>`, or nothing when the line is unknown (0): a missing section
/// has no line to point at.
struct LineOf(usize);

impl std::fmt::Display for LineOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, ":{n}"),
        }
    }
}
