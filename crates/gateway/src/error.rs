//! The gateway crate's error type: what can go wrong while the gateway is
//! built from a configuration, reloaded, or asked by an operator. The
//! judge's and the configuration's errors are kept whole, so their file,
//! line and column reach the operator's screen ([`Error::location`]).
//! Serving a call never returns one: what fails there becomes the agent's
//! JSON-RPC error, and security decisions fail closed.

use crate::baselines::BaselineError;
use crate::behaviour::store::StoreError;

/// Where in a file an error is, as an editor takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file as configured.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
}

/// Why the gateway could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A rule file or policy the judge loads is at fault.
    #[error(transparent)]
    Judge(#[from] castellan_judge::Error),
    /// The configuration file is at fault.
    #[error(transparent)]
    Config(#[from] castellan_config::ConfigError),
    /// A file the configuration names cannot be read.
    #[error("{file}: cannot read: {error}")]
    Read {
        /// The file.
        file: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// A file the gateway makes (a signing key) cannot be created.
    #[error("{file}: cannot create: {error}")]
    Create {
        /// The file.
        file: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// A listener cannot be bound.
    #[error("cannot listen on {addr}{what}: {error}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Which listener, in words (empty for the agents').
        what: &'static str,
        /// The OS error.
        error: std::io::Error,
    },
    /// The system gave no randomness for a secret.
    #[error("no randomness for {0}")]
    NoRandomness(&'static str),
    /// `judge.tools` or `judge.labels` names something the judge does not
    /// know.
    #[error("judge.{section} `{matches}`: {message}")]
    JudgeEntry {
        /// `tools` or `labels`.
        section: &'static str,
        /// The entry's `matches` pattern.
        matches: String,
        /// What is wrong.
        message: String,
    },
    /// The policy does not validate against the tools learnt so far.
    #[error("{0}")]
    PolicyInvalid(String),
    /// Learned baselines cannot be read.
    #[error(transparent)]
    Baselines(#[from] BaselineError),
    /// The audit log cannot be read or written.
    #[error(transparent)]
    Audit(#[from] castellan_audit::AuditError),
    /// The gateway runs the builtin demo configuration: no file to reload.
    #[error("the gateway runs the builtin demo configuration; there is no file to reload")]
    NoConfigFile,
    /// There is no audit log to read.
    #[error("no audit log")]
    NoAudit,
    /// The behavioural state cannot be read or written.
    #[error(transparent)]
    State(#[from] StoreError),
    /// A blocking task ended before answering.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// An upstream cannot be set up as configured.
    #[error("upstream: {0}")]
    Upstream(String),
    /// The listener's TLS or client certificates cannot be set up.
    #[error("tls: {0}")]
    Tls(String),
    /// Authentication cannot be set up (keys, JWKS, certificates).
    #[error("auth: {0}")]
    Auth(String),
    /// Alert destinations cannot be set up.
    #[error("alerts: {0}")]
    Alerts(String),
    /// The tool pin store cannot be opened.
    #[error("integrity: {0}")]
    Integrity(String),
}

impl Error {
    /// The file, line and column at fault, when a file is.
    pub fn location(&self) -> Option<Location> {
        match self {
            Error::Judge(e) => {
                let at = e.location();
                Some(Location {
                    file: at.file.clone(),
                    line: at.line,
                    column: at.column,
                })
            }
            Error::Config(e) => config_location(e),
            Error::Read { file, .. } => Some(Location {
                file: file.clone(),
                line: 0,
                column: 0,
            }),
            _ => None,
        }
    }
}

fn config_location(e: &castellan_config::ConfigError) -> Option<Location> {
    use castellan_config::ConfigError as C;
    match e {
        C::Io { file, .. } => Some(Location {
            file: file.clone(),
            line: 0,
            column: 0,
        }),
        C::Syntax {
            file, line, column, ..
        } => Some(Location {
            file: file.clone(),
            line: *line,
            column: *column,
        }),
        C::Invalid { file, line, .. } => Some(Location {
            file: file.clone(),
            line: *line,
            column: 0,
        }),
        _ => None,
    }
}
