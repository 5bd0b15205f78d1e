//! Reading a log back, whichever store holds it: what [`crate::verify`],
//! [`crate::query`] and [`crate::verify_anchor`] need from a store.

use std::collections::BTreeMap;

use crate::location::Location;
use crate::query::{Filter, Stored};
use crate::sign::{Anchor, Checkpoint};
use crate::store::{AuditError, PostgresReader, SqliteReader};

/// One stored record as verification sees it.
pub(crate) struct ChainRow {
    pub seq: i64,
    pub id: String,
    /// The hashed canonical record.
    pub text: String,
    pub prev: Vec<u8>,
    pub hash: Vec<u8>,
    /// The plain columns beside it, as stored (`at_ms`, `agent`, `session`,
    /// `target`, `decision`), each in words: a value of the wrong type
    /// reads as "a text value".
    pub columns: [String; 5],
}

/// The names of [`ChainRow::columns`], in order.
pub(crate) const COLUMNS: [&str; 5] = ["at_ms", "agent", "session", "target", "decision"];

/// A read-only view of one log.
pub(crate) trait Reader {
    /// Where retention left the chain's start, if it pruned.
    fn anchor(&mut self) -> Result<Option<Anchor>, AuditError>;
    /// Every signed checkpoint, by the record it signs.
    fn checkpoints(&mut self) -> Result<BTreeMap<i64, Checkpoint>, AuditError>;
    /// Calls `each` with every record in chain order until it returns false.
    fn rows(&mut self, each: &mut dyn FnMut(ChainRow) -> bool) -> Result<(), AuditError>;
    /// The first and last sequence numbers stored.
    fn bounds(&mut self) -> Result<(Option<i64>, Option<i64>), AuditError>;
    /// The chain hash of record `seq`, if it is stored.
    fn hash_at(&mut self, seq: i64) -> Result<Option<Vec<u8>>, AuditError>;
    /// Records matching `filter`, read from the hashed record itself.
    fn query(&mut self, filter: &Filter) -> Result<Vec<Stored>, AuditError>;
}

/// Opens the log at `location` read-only.
pub(crate) fn open(location: &Location) -> Result<Box<dyn Reader>, AuditError> {
    Ok(match location {
        Location::Sqlite(path) => Box::new(SqliteReader::open(path)?),
        Location::Postgres(url) => Box::new(PostgresReader::open(url)?),
    })
}

/// Whether the log can be reached: a PostgreSQL log is connected to (as
/// `castellan check` does before a start); a file is not opened, since a
/// missing one is created at start.
pub fn probe(location: &Location) -> Result<(), AuditError> {
    match location {
        Location::Sqlite(_) => Ok(()),
        Location::Postgres(url) => isolated(|| PostgresReader::open(url).map(|_| ())),
    }
}

/// Runs a read on a thread of its own. The PostgreSQL driver blocks on a
/// runtime of its own, which may not run inside the caller's (the gateway
/// reads timelines from its async handlers); for a SQLite file this is one
/// thread spawn beside a file read.
pub(crate) fn isolated<T: Send>(
    read: impl FnOnce() -> Result<T, AuditError> + Send,
) -> Result<T, AuditError> {
    std::thread::scope(|s| {
        s.spawn(read).join().unwrap_or_else(|_| {
            Err(AuditError::Db {
                path: String::new(),
                message: "the audit reader failed".into(),
            })
        })
    })
}
