//! Newtypes for identifiers and units the judge works with.
//!
//! Owns: `AgentId`, `UserId`, `SessionKey`, `ServerName`, `ToolName`,
//! `RuleId`, `Millis` (time) and `RiskPoints`.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Creates the id from any string.
            pub fn new(s: impl AsRef<str>) -> Self {
                Self(Arc::from(s.as_ref()))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::new(s)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(Arc::from(s))
            }
        }
    };
}

string_id!(
    /// The authenticated agent (workload) making calls.
    AgentId
);
string_id!(
    /// The human user on whose behalf an agent acts, when known.
    UserId
);
string_id!(
    /// The behavioural session a call belongs to.
    SessionKey
);
string_id!(
    /// The name of an upstream MCP server, e.g. `mail`.
    ServerName
);
string_id!(
    /// The name of a tool as its upstream server names it, e.g. `send_email`.
    ToolName
);
string_id!(
    /// The id of a behaviour rule, e.g. `exfil-untrusted-destination`.
    RuleId
);

/// A point in time: milliseconds since the Unix epoch. The caller supplies it;
/// the judge never reads a clock.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    /// Milliseconds elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// This instant plus `ms` milliseconds.
    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
}

/// Risk points, the unit of the risk ladder. Whole points; decay rounds down.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct RiskPoints(pub u32);

impl fmt::Display for RiskPoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
