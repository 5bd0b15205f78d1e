use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

use crate::record::{GENESIS, Record, chain_hash};

/// Why the audit log failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The database failed.
    #[error("audit database `{path}`: {message}")]
    Db {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The writer thread is gone (the log is closed or crashed).
    #[error("the audit writer has stopped")]
    Closed,
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> AuditError + '_ {
    move |e| AuditError::Db {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// When a decision's record must be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Before the agent gets the answer.
    Strict,
    /// In the next batch; a crash loses at most one batch.
    Batched,
}

/// How the writer batches.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Most records per transaction.
    pub max_batch: usize,
    /// Longest a record waits for its batch to fill.
    pub max_delay: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_batch: 512,
            max_delay: Duration::from_millis(20),
        }
    }
}

/// Where a strict caller waits for its record to be durable.
type Ack = SyncSender<Result<(), String>>;
/// A record waiting for its batch.
type Pending = (Box<Record>, Option<Ack>);

enum Msg {
    Append(Box<Record>, Option<Ack>),
    Flush(SyncSender<()>),
}

/// The SQLite audit log.
#[derive(Debug)]
pub struct AuditLog;

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
CREATE INDEX IF NOT EXISTS records_agent ON records(agent, at_ms);
CREATE INDEX IF NOT EXISTS records_session ON records(session, at_ms);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta(key, value) VALUES ('hash', 'blake3-v1');
";

fn open(path: &Path) -> Result<Connection, AuditError> {
    let conn = Connection::open(path).map_err(db_err(path))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db_err(path))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db_err(path))?;
    conn.execute_batch(SCHEMA).map_err(db_err(path))?;
    Ok(conn)
}

/// The handle the gateway appends through. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: Sender<Msg>,
    durability: Durability,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Append(r, _) => write!(f, "Append({})", r.id),
            Msg::Flush(_) => write!(f, "Flush"),
        }
    }
}

impl AuditLog {
    /// Opens (or creates) the log at `path` and starts its writer thread.
    pub fn open(
        path: &Path,
        durability: Durability,
        cfg: WriterConfig,
    ) -> Result<(Writer, JoinHandle<()>), AuditError> {
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
        let (tx, rx) = mpsc::channel();
        let path = path.to_path_buf();
        let handle = std::thread::Builder::new()
            .name("castellan-audit".into())
            .spawn(move || write_loop(conn, path, prev, rx, cfg))
            .map_err(|e| AuditError::Db {
                path: String::new(),
                message: format!("cannot start the audit writer: {e}"),
            })?;
        Ok((Writer { tx, durability }, handle))
    }
}

impl Writer {
    /// The configured durability.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Appends a record. In strict mode this blocks until it is durable, so
    /// call it off the async executor (e.g. `spawn_blocking`) or accept the
    /// wait; in batched mode it returns at once.
    pub fn append(&self, record: Record) -> Result<(), AuditError> {
        match self.durability {
            Durability::Batched => self
                .tx
                .send(Msg::Append(Box::new(record), None))
                .map_err(|_| AuditError::Closed),
            Durability::Strict => {
                let (ack, done) = mpsc::sync_channel(1);
                self.tx
                    .send(Msg::Append(Box::new(record), Some(ack)))
                    .map_err(|_| AuditError::Closed)?;
                match done.recv() {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(message)) => Err(AuditError::Db {
                        path: String::new(),
                        message,
                    }),
                    Err(_) => Err(AuditError::Closed),
                }
            }
        }
    }

    /// Waits until everything appended so far is on disk.
    pub fn flush(&self) -> Result<(), AuditError> {
        let (ack, done) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Flush(ack))
            .map_err(|_| AuditError::Closed)?;
        done.recv().map_err(|_| AuditError::Closed)
    }
}

fn write_loop(
    mut conn: Connection,
    path: PathBuf,
    mut prev: [u8; 32],
    rx: Receiver<Msg>,
    cfg: WriterConfig,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(cfg.max_batch);
    let mut flushes: Vec<SyncSender<()>> = Vec::new();
    loop {
        // Wait for the first message, then gather more until the batch is
        // full or its first record has waited long enough.
        let first = match rx.recv() {
            Ok(m) => m,
            Err(_) => return,
        };
        let started = Instant::now();
        let mut closed = false;
        let push = |m: Msg, batch: &mut Vec<_>, flushes: &mut Vec<_>| match m {
            Msg::Append(r, ack) => batch.push((r, ack)),
            Msg::Flush(ack) => flushes.push(ack),
        };
        push(first, &mut batch, &mut flushes);
        while batch.len() < cfg.max_batch && flushes.is_empty() {
            let left = cfg.max_delay.saturating_sub(started.elapsed());
            // A strict caller is waiting: do not hold its record for company.
            if batch.iter().any(|(_, ack)| ack.is_some()) && left.is_zero() {
                break;
            }
            match rx.recv_timeout(left) {
                Ok(m) => push(m, &mut batch, &mut flushes),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        match commit(&mut conn, &mut prev, &batch) {
            Ok(()) => {
                for (_, ack) in batch.drain(..) {
                    if let Some(ack) = ack {
                        let _ = ack.send(Ok(()));
                    }
                }
            }
            Err(e) => {
                // One bad record must not lose the others: write them one by one.
                eprintln!(
                    "castellan-audit: batch write to {} failed ({e}); retrying record by record",
                    path.display()
                );
                for (record, ack) in batch.drain(..) {
                    let one = [(record, None)];
                    let result = commit(&mut conn, &mut prev, &one);
                    if let Err(e) = &result {
                        eprintln!("castellan-audit: record {} not written: {e}", one[0].0.id);
                    }
                    if let Some(ack) = ack {
                        let _ = ack.send(result);
                    }
                }
            }
        }
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
        if closed {
            return;
        }
    }
}

fn commit(conn: &mut Connection, prev: &mut [u8; 32], batch: &[Pending]) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    let mut chain = *prev;
    {
        let mut stmt = tx
            .prepare_cached("INSERT INTO records (id, at_ms, agent, session, target, decision, record, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
            .map_err(|e| e.to_string())?;
        for (r, _) in batch {
            let canonical = r.canonical();
            let hash = chain_hash(&chain, &canonical);
            let text = String::from_utf8_lossy(&canonical);
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
            .map_err(|e| e.to_string())?;
            chain = hash;
        }
    }
    tx.commit().map_err(|e| e.to_string())?;
    *prev = chain;
    Ok(())
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every record is intact and in order.
    Intact {
        /// How many records.
        records: u64,
    },
    /// The first record where the chain breaks, and why.
    Broken {
        /// Its sequence number.
        seq: i64,
        /// Its id, if readable.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

/// Walks the whole chain from the start.
pub fn verify(path: &Path) -> Result<Verification, AuditError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(db_err(path))?;
    let mut stmt = conn
        .prepare("SELECT seq, id, record, prev_hash, hash FROM records ORDER BY seq")
        .map_err(db_err(path))?;
    let mut rows = stmt.query([]).map_err(db_err(path))?;
    let mut prev = GENESIS;
    let mut expected_seq: Option<i64> = None;
    let mut count = 0u64;
    while let Some(row) = rows.next().map_err(db_err(path))? {
        let seq: i64 = row.get(0).map_err(db_err(path))?;
        let id: String = row.get(1).map_err(db_err(path))?;
        let text: String = row.get(2).map_err(db_err(path))?;
        let stored_prev: Vec<u8> = row.get(3).map_err(db_err(path))?;
        let stored_hash: Vec<u8> = row.get(4).map_err(db_err(path))?;
        let broken = |reason: &str| {
            Ok(Verification::Broken {
                seq,
                id: id.clone(),
                reason: reason.into(),
            })
        };
        if let Some(e) = expected_seq
            && seq != e
        {
            return broken(&format!("records {e}..{} are missing (deleted)", seq - 1));
        }
        if stored_prev[..] != prev[..] {
            return broken(
                "does not follow the record before it (inserted, reordered or the one before was deleted)",
            );
        }
        if chain_hash(&prev, text.as_bytes())[..] != stored_hash[..] {
            return broken("its content does not match its hash (modified)");
        }
        // The stored text must be exactly the canonical form of a record.
        match serde_json::from_str::<Record>(&text) {
            Ok(r) if r.canonical() == text.as_bytes() && r.id == id => {}
            _ => return broken("its stored form is not a canonical record (modified)"),
        }
        prev.copy_from_slice(&stored_hash);
        expected_seq = Some(seq + 1);
        count += 1;
    }
    Ok(Verification::Intact { records: count })
}

/// Which records [`query`] returns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this agent.
    pub agent: Option<String>,
    /// Only this session.
    pub session: Option<String>,
    /// Only this tool, prompt or resource.
    pub target: Option<String>,
    /// Only this decision.
    pub decision: Option<String>,
    /// From this time (ms since epoch).
    pub since_ms: Option<u64>,
    /// Before this time.
    pub until_ms: Option<u64>,
    /// At most this many, newest last.
    pub limit: Option<u64>,
}

/// A record as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Sequence number.
    pub seq: i64,
    /// The record.
    pub record: Record,
}

/// Records matching `filter`, in log order.
pub fn query(path: &Path, filter: &Filter) -> Result<Vec<Stored>, AuditError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(db_err(path))?;
    let mut sql = String::from("SELECT seq, record FROM records WHERE 1=1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut add = |clause: &str, v: rusqlite::types::Value| {
        sql.push_str(clause);
        args.push(v);
    };
    if let Some(a) = &filter.agent {
        add(" AND agent = ?", a.clone().into());
    }
    if let Some(s) = &filter.session {
        add(" AND session = ?", s.clone().into());
    }
    if let Some(t) = &filter.target {
        add(" AND target = ?", t.clone().into());
    }
    if let Some(d) = &filter.decision {
        add(" AND decision = ?", d.clone().into());
    }
    if let Some(t) = filter.since_ms {
        add(" AND at_ms >= ?", (t as i64).into());
    }
    if let Some(t) = filter.until_ms {
        add(" AND at_ms < ?", (t as i64).into());
    }
    sql.push_str(" ORDER BY seq");
    let mut stmt = conn.prepare(&sql).map_err(db_err(path))?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(db_err(path))?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, text) = row.map_err(db_err(path))?;
        if let Ok(record) = serde_json::from_str(&text) {
            out.push(Stored { seq, record });
        }
    }
    if let Some(limit) = filter.limit {
        let skip = out.len().saturating_sub(limit as usize);
        out.drain(..skip);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
