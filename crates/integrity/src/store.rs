//! The embedded pin store: one SQLite file (WAL), shared safely by the
//! running gateway and the `castellan tools` commands.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::{Definition, Finding};

/// Errors from the pin store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("pin store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Nothing is waiting for approval under this name.
    #[error("no pending version of `{server}` tool `{tool}`")]
    NothingPending {
        /// Upstream name.
        server: String,
        /// Tool name as the upstream lists it.
        tool: String,
    },
    /// The pending version is not the one the operator reviewed.
    #[error("the pending version of `{tool}` is {actual}, not {expected}: review it again")]
    HashMismatch {
        /// Tool name.
        tool: String,
        /// Hash the operator approved.
        expected: String,
        /// Hash waiting now.
        actual: String,
    },
}

/// An approved tool definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pin {
    /// Upstream name.
    pub server: String,
    /// Tool name as the upstream lists it.
    pub tool: String,
    /// Hash of the canonical definition.
    pub hash: String,
    /// The canonical definition.
    #[serde(skip)]
    pub definition: String,
    /// When it was approved (Unix milliseconds).
    pub approved_at: i64,
    /// Who approved it (`first-sight` for automatic pins).
    pub approved_by: String,
    /// When its upstream last listed it (Unix milliseconds, refreshed at
    /// most every few minutes); pins of tools gone for long are forgotten
    /// (see [`Store::seen`]).
    pub last_seen: i64,
}

/// A version seen but not approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// Upstream name.
    pub server: String,
    /// Tool name as the upstream lists it.
    pub tool: String,
    /// Hash of the canonical definition.
    pub hash: String,
    /// The canonical definition.
    #[serde(skip)]
    pub definition: String,
    /// Why it is withheld.
    pub finding: Finding,
    /// When this version was first seen (Unix milliseconds).
    pub first_seen: i64,
}

/// The pin store.
pub struct Store {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA busy_timeout = 5000;
CREATE TABLE IF NOT EXISTS pins (
    server TEXT NOT NULL, tool TEXT NOT NULL, hash TEXT NOT NULL,
    definition TEXT NOT NULL, approved_at INTEGER NOT NULL, approved_by TEXT NOT NULL,
    PRIMARY KEY (server, tool));
CREATE TABLE IF NOT EXISTS pending (
    server TEXT NOT NULL, tool TEXT NOT NULL, hash TEXT NOT NULL,
    definition TEXT NOT NULL, finding TEXT NOT NULL, first_seen INTEGER NOT NULL,
    PRIMARY KEY (server, tool));
";

/// Stores written before pins recorded when they were last listed get the
/// column, starting from the approval time.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let has: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('pins') WHERE name = 'last_seen'",
        [],
        |r| r.get(0),
    )?;
    if has == 0 {
        conn.execute_batch(
            "ALTER TABLE pins ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
             UPDATE pins SET last_seen = approved_at;",
        )?;
    }
    Ok(())
}

/// A pin's `last_seen` is rewritten at most this often (milliseconds), so
/// listing tools does not write to the store every time.
const SEEN_REFRESH_MS: i64 = 5 * 60 * 1000;

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    /// A store that lives in memory (tests, `auth.mode: none` experiments).
    pub fn in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    /// Records that `server` listed exactly `listed` now: the pins of
    /// listed tools are marked seen, pins of tools missing for more than
    /// `forget_after_ms` are deleted, and versions waiting for tools no
    /// longer listed are dropped (there is nothing left to approve). So an
    /// upstream that lists new names on every list cannot grow the store
    /// without bound. Returns how many pins were forgotten.
    /// Only keys starting with `kind` (`prompt:` ...; `""` for tools, whose
    /// keys have none of the other kinds' prefixes) are affected.
    pub fn seen(
        &self,
        server: &str,
        kind: &str,
        listed: &[&str],
        forget_after_ms: i64,
    ) -> Result<usize, StoreError> {
        let now = now_ms();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut touch = tx.prepare_cached(
                "UPDATE pins SET last_seen = ?3 WHERE server = ?1 AND tool = ?2 AND last_seen < ?4",
            )?;
            for t in listed {
                touch.execute(params![server, t, now, now - SEEN_REFRESH_MS])?;
            }
        }
        let listed: std::collections::HashSet<&str> = listed.iter().copied().collect();
        let stale: Vec<String> = {
            let mut stmt =
                tx.prepare_cached("SELECT tool FROM pins WHERE server = ?1 AND last_seen < ?2")?;
            let rows = stmt
                .query_map(params![server, now.saturating_sub(forget_after_ms)], |r| {
                    r.get(0)
                })?;
            rows.collect::<Result<_, _>>()?
        };
        let mut forgotten = 0;
        for t in stale
            .iter()
            .filter(|t| key_of_kind(t, kind) && !listed.contains(t.as_str()))
        {
            forgotten += tx.execute(
                "DELETE FROM pins WHERE server = ?1 AND tool = ?2",
                params![server, t],
            )?;
        }
        let waiting: Vec<String> = {
            let mut stmt = tx.prepare_cached("SELECT tool FROM pending WHERE server = ?1")?;
            let rows = stmt.query_map(params![server], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        for t in waiting
            .iter()
            .filter(|t| key_of_kind(t, kind) && !listed.contains(t.as_str()))
        {
            tx.execute(
                "DELETE FROM pending WHERE server = ?1 AND tool = ?2",
                params![server, t],
            )?;
        }
        tx.commit()?;
        Ok(forgotten)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        match self.conn.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Changes whenever another connection (`castellan tools approve` or
    /// `revoke` beside a running gateway) commits to the store; this
    /// store's own writes leave it as it is (SQLite's `data_version`). Lets
    /// a caller reuse what it derived from the store while it is unchanged.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("PRAGMA data_version")?;
        Ok(stmt.query_row([], |r| r.get(0))?)
    }

    /// The pins of one upstream.
    pub fn pins_of(&self, server: &str) -> Result<Vec<Pin>, StoreError> {
        self.select_pins("WHERE server = ?1", params![server])
    }

    /// Every pin.
    pub fn pins(&self) -> Result<Vec<Pin>, StoreError> {
        self.select_pins("", params![])
    }

    /// The pin of one tool.
    pub fn pin_of(&self, server: &str, tool: &str) -> Result<Option<Pin>, StoreError> {
        Ok(self
            .select_pins("WHERE server = ?1 AND tool = ?2", params![server, tool])?
            .pop())
    }

    fn select_pins(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<Pin>, StoreError> {
        let conn = self.conn();
        // Cached: every tools/list reads the pins of each upstream, and
        // parsing the statement cost more than running it.
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT server, tool, hash, definition, approved_at, approved_by, last_seen FROM pins {filter} ORDER BY server, tool"
        ))?;
        let rows = stmt.query_map(args, |r| {
            Ok(Pin {
                server: r.get(0)?,
                tool: r.get(1)?,
                hash: r.get(2)?,
                definition: r.get(3)?,
                approved_at: r.get(4)?,
                approved_by: r.get(5)?,
                last_seen: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every version waiting for an operator.
    pub fn pending(&self) -> Result<Vec<Pending>, StoreError> {
        self.select_pending("", params![])
    }

    /// The version of one tool waiting for an operator.
    pub fn pending_of(&self, server: &str, tool: &str) -> Result<Option<Pending>, StoreError> {
        Ok(self
            .select_pending("WHERE server = ?1 AND tool = ?2", params![server, tool])?
            .pop())
    }

    fn select_pending(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<Pending>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT server, tool, hash, definition, finding, first_seen FROM pending {filter} ORDER BY server, tool"
        ))?;
        let rows = stmt.query_map(args, |r| {
            let finding: String = r.get(4)?;
            Ok(Pending {
                server: r.get(0)?,
                tool: r.get(1)?,
                hash: r.get(2)?,
                definition: r.get(3)?,
                finding: decode_finding(&finding),
                first_seen: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Pins `def` as the approved version of a tool, replacing any earlier
    /// pin; a pending entry for the same version is cleared.
    pub fn pin(
        &self,
        server: &str,
        tool: &str,
        def: &Definition,
        by: &str,
    ) -> Result<Pin, StoreError> {
        let pin = Pin {
            server: server.to_owned(),
            tool: tool.to_owned(),
            hash: def.hash.clone(),
            definition: def.canonical.clone(),
            approved_at: now_ms(),
            approved_by: by.to_owned(),
            last_seen: now_ms(),
        };
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO pins (server, tool, hash, definition, approved_at, approved_by, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?5)
             ON CONFLICT (server, tool) DO UPDATE SET hash = ?3, definition = ?4,
               approved_at = ?5, approved_by = ?6, last_seen = ?5",
            params![
                pin.server,
                pin.tool,
                pin.hash,
                pin.definition,
                pin.approved_at,
                pin.approved_by
            ],
        )?;
        tx.execute(
            "DELETE FROM pending WHERE server = ?1 AND tool = ?2 AND hash = ?3",
            params![server, tool, def.hash],
        )?;
        tx.commit()?;
        Ok(pin)
    }

    /// Records a withheld version. The first-seen time of a version already
    /// waiting is kept. Returns true when this version is new to the store
    /// (so the caller raises the finding once, not on every list).
    pub fn record_pending(
        &self,
        server: &str,
        tool: &str,
        def: &Definition,
        finding: &Finding,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        let known: Option<String> = conn
            .query_row(
                "SELECT hash FROM pending WHERE server = ?1 AND tool = ?2",
                params![server, tool],
                |r| r.get(0),
            )
            .optional()?;
        if known.as_deref() == Some(def.hash.as_str()) {
            return Ok(false);
        }
        let finding = serde_json::to_string(finding).unwrap_or_else(|_| "{}".into());
        conn.execute(
            "INSERT INTO pending (server, tool, hash, definition, finding, first_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (server, tool) DO UPDATE SET hash = ?3, definition = ?4,
               finding = ?5, first_seen = ?6",
            params![server, tool, def.hash, def.canonical, finding, now_ms()],
        )?;
        Ok(true)
    }

    /// Approves the version of a tool waiting for an operator. With
    /// `expected`, only if that is still the version waiting, so an operator
    /// never approves something other than what they reviewed.
    pub fn approve(
        &self,
        server: &str,
        tool: &str,
        expected: Option<&str>,
        by: &str,
    ) -> Result<Pin, StoreError> {
        let Some(pending) = self.pending_of(server, tool)? else {
            return Err(StoreError::NothingPending {
                server: server.to_owned(),
                tool: tool.to_owned(),
            });
        };
        if let Some(expected) = expected
            && expected != pending.hash
        {
            return Err(StoreError::HashMismatch {
                tool: tool.to_owned(),
                expected: expected.to_owned(),
                actual: pending.hash,
            });
        }
        let def = Definition {
            canonical: pending.definition,
            hash: pending.hash,
        };
        self.pin(server, tool, &def, by)
    }

    /// Removes a tool's pin (it is treated as never seen). True if one
    /// existed.
    pub fn revoke(&self, server: &str, tool: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM pins WHERE server = ?1 AND tool = ?2",
            params![server, tool],
        )?;
        Ok(n > 0)
    }
}

fn decode_finding(s: &str) -> Finding {
    // Written by `record_pending`; an unreadable row still stays withheld.
    serde_json::from_str(s).unwrap_or(Finding::New)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Kinds of pinned item other than tools, by the prefix of their key.
const KIND_PREFIXES: [&str; 3] = ["prompt:", "resource:", "template:"];

/// Whether the pin `key` is of `kind`: the key prefix (`prompt:`,
/// `resource:`, `template:`), or `""` for tools, whose keys carry none.
pub fn key_of_kind(key: &str, kind: &str) -> bool {
    if kind.is_empty() {
        !KIND_PREFIXES.iter().any(|p| key.starts_with(p))
    } else {
        key.starts_with(kind)
    }
}
