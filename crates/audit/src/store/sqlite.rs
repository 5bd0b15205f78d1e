//! The embedded store: one SQLite file in WAL mode, written by one process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};

use super::{AuditError, Backend, now_ms};
use crate::query::{Condition, Filter, Stored};
use crate::read::{ChainRow, Reader};
use crate::record::{GENESIS, Record, chain_hash};
use crate::sign::{Anchor, Checkpoint, Retention, SignedHead, SigningKey};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    at_ms INTEGER NOT NULL,
    agent TEXT NOT NULL,
    session TEXT NOT NULL,
    target TEXT NOT NULL,
    decision TEXT NOT NULL,
    record TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_session_hashed ON records(json_extract(record, '$.session'));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta(key, value) VALUES ('hash', 'blake3-v1');
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    head BLOB NOT NULL,
    signature BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS prunes (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    removed INTEGER NOT NULL,
    anchor_seq INTEGER NOT NULL,
    anchor_prev BLOB NOT NULL,
    signature BLOB
);
";

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> AuditError + '_ {
    move |e| AuditError::Db {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Opens (or creates) the file with the schema.
pub(crate) fn open(path: &Path) -> Result<Connection, AuditError> {
    let conn = Connection::open(path).map_err(db_err(path))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db_err(path))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db_err(path))?;
    conn.execute_batch(SCHEMA).map_err(db_err(path))?;
    Ok(conn)
}

/// The writer's side. Only this process writes the file, so the chain
/// head is kept in memory between batches.
pub(crate) struct SqliteBackend {
    conn: Connection,
    path: PathBuf,
    prev: [u8; 32],
}

impl SqliteBackend {
    pub(crate) fn open(path: &Path) -> Result<SqliteBackend, AuditError> {
        let conn = open(path)?;
        let last: Option<Vec<u8>> = conn
            .query_row(
                "SELECT hash FROM records ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err(path))?;
        let mut prev = GENESIS;
        if let Some(h) = last.filter(|h| h.len() == 32) {
            prev.copy_from_slice(&h);
        }
        Ok(SqliteBackend {
            conn,
            path: path.to_path_buf(),
            prev,
        })
    }
}

impl Backend for SqliteBackend {
    fn commit(
        &mut self,
        batch: &[&Record],
        checkpoint: Option<&SigningKey>,
        skip_present: bool,
    ) -> Result<Option<SignedHead>, AuditError> {
        if batch.is_empty() {
            return Ok(None);
        }
        let err = db_err(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        let mut chain = self.prev;
        {
            let mut present = tx
                .prepare_cached("SELECT 1 FROM records WHERE id = ?1")
                .map_err(&err)?;
            let mut stmt = tx
                .prepare_cached("INSERT INTO records (id, at_ms, agent, session, target, decision, record, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
                .map_err(&err)?;
            for r in batch {
                if skip_present && present.exists([&r.id]).map_err(&err)? {
                    continue;
                }
                let canonical = r.canonical();
                let hash = chain_hash(&chain, &canonical);
                // serde_json writes UTF-8 only, so the hashed bytes are stored
                // as the record's text as they are, without checking them again.
                let text = ToSqlOutput::Borrowed(ValueRef::Text(&canonical));
                stmt.execute(params![
                    r.id,
                    r.at_ms as i64,
                    r.agent,
                    r.session,
                    r.target,
                    r.decision,
                    text,
                    &chain[..],
                    &hash[..]
                ])
                .map_err(&err)?;
                chain = hash;
            }
        }
        let head = match checkpoint {
            Some(key) => sign_head(&tx, key).map_err(&err)?,
            None => None,
        };
        tx.commit().map_err(&err)?;
        self.prev = chain;
        Ok(head)
    }

    fn checkpoint(&mut self, key: &SigningKey) -> Result<Option<SignedHead>, AuditError> {
        sign_head(&self.conn, key).map_err(db_err(&self.path))
    }

    fn prune(
        &mut self,
        retention: &Retention,
        key: Option<&SigningKey>,
    ) -> Result<u64, AuditError> {
        prune(&mut self.conn, retention, key, now_ms()).map_err(db_err(&self.path))
    }
}

/// Signs the current chain head unless it is already signed. Returns what
/// was signed, if anything.
pub(super) fn sign_head(
    conn: &Connection,
    key: &SigningKey,
) -> rusqlite::Result<Option<SignedHead>> {
    let head: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((seq, hash)) = head else {
        return Ok(None);
    };
    let signed = key.sign_head(seq, &hash, now_ms());
    let n = conn.execute(
        "INSERT OR IGNORE INTO checkpoints (seq, at_ms, head, signature) VALUES (?1, ?2, ?3, ?4)",
        params![seq, signed.at_ms as i64, hash, signed.signature],
    )?;
    Ok((n > 0).then_some(signed))
}

/// Deletes what `retention` no longer keeps and records the new anchor (in
/// one transaction). Returns how many records were removed.
pub(super) fn prune(
    conn: &mut Connection,
    retention: &Retention,
    key: Option<&SigningKey>,
    now_ms: u64,
) -> rusqlite::Result<u64> {
    let tx = conn.transaction()?;
    let mut cut: Option<i64> = None; // first seq kept
    if let Some(age) = retention.max_age {
        let oldest = now_ms.saturating_sub(age.as_millis() as u64) as i64;
        cut = tx
            .query_row(
                "SELECT MIN(seq) FROM records WHERE at_ms >= ?1",
                [oldest],
                |r| r.get::<_, Option<i64>>(0),
            )?
            // Every record is too old: keep the newest one as the anchor.
            .or(tx.query_row("SELECT MAX(seq) FROM records", [], |r| r.get(0))?);
    }
    if let Some(max) = retention.max_records {
        let by_count: Option<i64> = tx
            .query_row(
                "SELECT seq FROM records ORDER BY seq DESC LIMIT 1 OFFSET ?1",
                [max.max(1) as i64 - 1],
                |r| r.get(0),
            )
            .optional()?;
        cut = cut.max(by_count);
    }
    let Some(first_kept) = cut else {
        return Ok(0);
    };
    let removed = tx.execute("DELETE FROM records WHERE seq < ?1", [first_kept])? as u64;
    if removed == 0 {
        return Ok(0);
    }
    tx.execute("DELETE FROM checkpoints WHERE seq < ?1", [first_kept])?;
    let prev: Vec<u8> = tx.query_row(
        "SELECT prev_hash FROM records WHERE seq = ?1",
        [first_kept],
        |r| r.get(0),
    )?;
    let signature = key.map(|k| k.sign_anchor(first_kept, &prev));
    tx.execute(
        "INSERT INTO prunes (at_ms, removed, anchor_seq, anchor_prev, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now_ms as i64, removed as i64, first_kept, prev, signature],
    )?;
    tx.commit()?;
    Ok(removed)
}

/// A read-only view of a SQLite log.
pub(crate) struct SqliteReader {
    conn: Connection,
    path: PathBuf,
}

impl SqliteReader {
    pub(crate) fn open(path: &Path) -> Result<SqliteReader, AuditError> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(db_err(path))?;
        Ok(SqliteReader {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Logs written before checkpoints existed have no such tables.
    fn has(&self, table: &str) -> Result<bool, AuditError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(db_err(&self.path))
    }
}

/// A stored column in words (see [`ChainRow::columns`]).
fn column(row: &rusqlite::Row<'_>, i: usize, integer: bool) -> String {
    match row.get_ref(i) {
        Ok(ValueRef::Text(t)) if !integer => String::from_utf8_lossy(t).into_owned(),
        Ok(ValueRef::Integer(n)) if integer => n.to_string(),
        Ok(other) => format!("a {} value", other.data_type()),
        Err(e) => e.to_string(),
    }
}

impl Reader for SqliteReader {
    fn anchor(&mut self) -> Result<Option<Anchor>, AuditError> {
        if !self.has("prunes")? {
            return Ok(None);
        }
        let row: Option<(i64, Vec<u8>, Option<Vec<u8>>)> = self
            .conn
            .query_row(
                "SELECT anchor_seq, anchor_prev, signature FROM prunes ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(db_err(&self.path))?;
        Ok(row.and_then(|(seq, p, signature)| {
            Some(Anchor {
                seq,
                prev: p.try_into().ok()?,
                signature,
            })
        }))
    }

    fn checkpoints(&mut self) -> Result<BTreeMap<i64, Checkpoint>, AuditError> {
        if !self.has("checkpoints")? {
            return Ok(BTreeMap::new());
        }
        let err = db_err(&self.path);
        let mut stmt = self
            .conn
            .prepare("SELECT seq, head, signature FROM checkpoints ORDER BY seq")
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    Checkpoint {
                        head: r.get(1)?,
                        signature: r.get(2)?,
                    },
                ))
            })
            .map_err(&err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&err)
    }

    fn rows(&mut self, each: &mut dyn FnMut(ChainRow) -> bool) -> Result<(), AuditError> {
        let err = db_err(&self.path);
        let mut stmt = self
            .conn
            .prepare("SELECT seq, id, record, prev_hash, hash, at_ms, agent, session, target, decision FROM records ORDER BY seq")
            .map_err(&err)?;
        let mut rows = stmt.query([]).map_err(&err)?;
        while let Some(row) = rows.next().map_err(&err)? {
            let chain_row = ChainRow {
                seq: row.get(0).map_err(&err)?,
                id: row.get(1).map_err(&err)?,
                text: row.get(2).map_err(&err)?,
                prev: row.get(3).map_err(&err)?,
                hash: row.get(4).map_err(&err)?,
                columns: [
                    column(row, 5, true),
                    column(row, 6, false),
                    column(row, 7, false),
                    column(row, 8, false),
                    column(row, 9, false),
                ],
            };
            if !each(chain_row) {
                break;
            }
        }
        Ok(())
    }

    fn bounds(&mut self) -> Result<(Option<i64>, Option<i64>), AuditError> {
        self.conn
            .query_row("SELECT MIN(seq), MAX(seq) FROM records", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(db_err(&self.path))
    }

    fn hash_at(&mut self, seq: i64) -> Result<Option<Vec<u8>>, AuditError> {
        self.conn
            .query_row("SELECT hash FROM records WHERE seq = ?1", [seq], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_err(&self.path))
    }

    fn query(&mut self, filter: &Filter) -> Result<Vec<Stored>, AuditError> {
        let err = db_err(&self.path);
        let mut sql = String::from("SELECT seq, record FROM records WHERE 1=1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        for (field, condition) in filter.conditions() {
            // Written exactly as the index expression, so the session
            // filter (the admin API's timeline) uses the index.
            let (op, value): (&str, rusqlite::types::Value) = match condition {
                Condition::Equals(v) => ("=", v.to_owned().into()),
                Condition::AtLeast(t) => (">=", (t as i64).into()),
                Condition::Below(t) => ("<", (t as i64).into()),
            };
            sql.push_str(&format!(" AND json_extract(record, '$.{field}') {op} ?"));
            args.push(value);
        }
        match filter.limit {
            // The newest `limit` records, read as such rather than all of
            // them with the older ones dropped afterwards.
            Some(limit) => {
                sql.insert_str(0, "SELECT seq, record FROM (");
                sql.push_str(" ORDER BY seq DESC LIMIT ?) ORDER BY seq");
                args.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
            }
            None => sql.push_str(" ORDER BY seq"),
        }
        let mut stmt = self.conn.prepare(&sql).map_err(&err)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(&err)?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, text) = row.map_err(&err)?;
            if let Ok(record) = serde_json::from_str(&text) {
                out.push(Stored { seq, record });
            }
        }
        Ok(out)
    }
}
