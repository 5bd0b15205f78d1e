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

    /// The instant as an RFC 3339 UTC timestamp with milliseconds
    /// (`2026-12-06T21:05:00.123Z`): what people read in messages.
    pub fn rfc3339(self) -> Rfc3339 {
        Rfc3339(self)
    }
}

/// [`Millis::rfc3339`]: formats without allocating until written.
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339(Millis);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.0;
        let secs = ms / 1000;
        let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
        let rem = secs % 86_400;
        // Civil from days (Howard Hinnant's algorithm), the inverse of the
        // one in `replay::parse_rfc3339`.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            ms % 1000
        )
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
