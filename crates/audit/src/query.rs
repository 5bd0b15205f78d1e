//! Finding records: the same filter over either store.

use crate::location::Location;
use crate::record::Record;
use crate::store::AuditError;

/// Which records [`query`] returns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this agent.
    pub agent: Option<String>,
    /// Only this session.
    pub session: Option<String>,
    /// Only this tool, prompt or resource.
    pub target: Option<String>,
    /// Only calls to this upstream.
    pub upstream: Option<String>,
    /// Only this decision.
    pub decision: Option<String>,
    /// From this time (ms since epoch).
    pub since_ms: Option<u64>,
    /// Before this time.
    pub until_ms: Option<u64>,
    /// At most this many, newest last.
    pub limit: Option<u64>,
}

impl Filter {
    /// The conditions as (field of the hashed record, value), in the order
    /// the stores write them. Fields are the record's own JSON keys.
    pub(crate) fn conditions(&self) -> Vec<(&'static str, Condition<'_>)> {
        let mut out = Vec::new();
        // Session first: the stores index it (the admin API's timeline).
        let text = [
            ("session", &self.session),
            ("agent", &self.agent),
            ("target", &self.target),
            ("upstream", &self.upstream),
            ("decision", &self.decision),
        ];
        for (field, value) in text {
            if let Some(v) = value {
                out.push((field, Condition::Equals(v)));
            }
        }
        if let Some(t) = self.since_ms {
            out.push(("at_ms", Condition::AtLeast(t)));
        }
        if let Some(t) = self.until_ms {
            out.push(("at_ms", Condition::Below(t)));
        }
        out
    }
}

/// One condition of a [`Filter`].
pub(crate) enum Condition<'a> {
    Equals(&'a str),
    AtLeast(u64),
    Below(u64),
}

/// A record as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Sequence number.
    pub seq: i64,
    /// The record.
    pub record: Record,
}

/// Records matching `filter`, in log order, from a SQLite file or a
/// PostgreSQL log. The filter reads the hashed record itself, never the
/// plain columns beside it: a column edited to hide a record (or to show
/// one) changes nothing here, and `verify` names it.
pub fn query(at: impl Into<Location>, filter: &Filter) -> Result<Vec<Stored>, AuditError> {
    let at = at.into();
    crate::read::isolated(|| crate::read::open(&at)?.query(filter))
}
