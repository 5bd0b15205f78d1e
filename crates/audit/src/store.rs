use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};

use crate::record::{GENESIS, Record, chain_hash};
use crate::sign::{self, Checkpointing, PublicKey, Retention};

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
    /// A signing or public key could not be used.
    #[error("key `{path}`: {message}")]
    Key {
        /// The key file.
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

/// How the writer batches, signs and prunes.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Most records per transaction.
    pub max_batch: usize,
    /// Longest a record waits for its batch to fill.
    pub max_delay: Duration,
    /// Signed checkpoints of the chain head, if a key is configured.
    pub checkpoint: Option<std::sync::Arc<Checkpointing>>,
    /// What to delete, oldest first.
    pub retention: Retention,
    /// How often retention runs (after a write, and at start).
    pub prune_every: Duration,
    /// A file outside the log every signed checkpoint is also appended to
    /// (see [`crate::verify_anchor`]).
    pub anchor: Option<PathBuf>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_batch: 512,
            max_delay: Duration::from_millis(20),
            checkpoint: None,
            retention: Retention::default(),
            prune_every: Duration::from_secs(60),
            anchor: None,
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where a strict caller waits for its record to be durable.
type Ack = SyncSender<Result<(), String>>;
/// A record waiting for its batch.
type Pending = (Box<Record>, Option<Ack>);

enum Msg {
    Append(Box<Record>, Option<Ack>, Instant),
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
CREATE INDEX IF NOT EXISTS records_session_hashed ON records(json_extract(record, '$.session'));
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
    conn.execute_batch(sign::SCHEMA).map_err(db_err(path))?;
    Ok(conn)
}

/// The handle the gateway appends through. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: Sender<Msg>,
    durability: Durability,
    path: PathBuf,
    stats: std::sync::Arc<Stats>,
}

/// What the writer reports for monitoring.
#[derive(Debug, Default)]
struct Stats {
    /// Records appended and not yet committed.
    queued: std::sync::atomic::AtomicU64,
    /// Microseconds from the oldest record of the last batch being appended
    /// to the batch being durable.
    lag_us: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Append(r, _, _) => write!(f, "Append({})", r.id),
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
        let file = path.clone();
        let stats = std::sync::Arc::new(Stats::default());
        let counters = stats.clone();
        let handle = std::thread::Builder::new()
            .name("castellan-audit".into())
            .spawn(move || write_loop(conn, path, prev, rx, cfg, &counters))
            .map_err(|e| AuditError::Db {
                path: String::new(),
                message: format!("cannot start the audit writer: {e}"),
            })?;
        Ok((
            Writer {
                tx,
                durability,
                path: file,
                stats,
            },
            handle,
        ))
    }
}

impl Writer {
    /// The configured durability.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Records appended but not yet committed.
    pub fn queue_depth(&self) -> u64 {
        self.stats.queued.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How long the last batch's oldest record waited to be durable.
    pub fn write_lag(&self) -> Duration {
        Duration::from_micros(self.stats.lag_us.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The database file (for [`query`] and [`verify`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a record. In strict mode this blocks until it is durable, so
    /// call it off the async executor (e.g. `spawn_blocking`) or accept the
    /// wait; in batched mode it returns at once.
    pub fn append(&self, record: Record) -> Result<(), AuditError> {
        match self.durability {
            Durability::Batched => {
                self.stats
                    .queued
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.tx
                    .send(Msg::Append(Box::new(record), None, Instant::now()))
                    .map_err(|_| AuditError::Closed)
            }
            Durability::Strict => {
                let (ack, done) = mpsc::sync_channel(1);
                self.stats
                    .queued
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.tx
                    .send(Msg::Append(Box::new(record), Some(ack), Instant::now()))
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
    stats: &Stats,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(cfg.max_batch);
    let mut flushes: Vec<SyncSender<()>> = Vec::new();
    // Records written since the last signed checkpoint, and since when.
    let mut uncovered = 0u64;
    let mut uncovered_since: Option<Instant> = None;
    let mut last_prune: Option<Instant> = None;
    let anchor = |head: Option<sign::SignedHead>| {
        if let (Some(file), Some(head)) = (&cfg.anchor, head)
            && let Err(e) = crate::anchor::append(file, &head)
        {
            eprintln!(
                "castellan-audit: checkpoint of record {} not appended to the anchor {}: {e}",
                head.seq,
                file.display()
            );
        }
    };
    let sign_head = |conn: &Connection, uncovered: &mut u64, since: &mut Option<Instant>| {
        if let Some(c) = &cfg.checkpoint {
            match sign::checkpoint(conn, &c.key, now_ms()) {
                Ok(head) => anchor(head),
                Err(e) => eprintln!(
                    "castellan-audit: checkpoint not written to {}: {e}",
                    path.display()
                ),
            }
            *uncovered = 0;
            *since = None;
        }
    };
    loop {
        let retain = &cfg.retention;
        if (retain.max_age.is_some() || retain.max_records.is_some())
            && last_prune.is_none_or(|t| t.elapsed() >= cfg.prune_every)
        {
            last_prune = Some(Instant::now());
            let key = cfg.checkpoint.as_ref().map(|c| &c.key);
            match sign::prune(&mut conn, retain, key, now_ms()) {
                Ok(0) => {}
                Ok(n) => eprintln!(
                    "castellan-audit: retention removed {n} records from {}",
                    path.display()
                ),
                Err(e) => eprintln!(
                    "castellan-audit: retention failed on {}: {e}",
                    path.display()
                ),
            }
        }
        // Wait for the first message (or until the uncovered records are due
        // a checkpoint), then gather more until the batch is full or its
        // first record has waited long enough.
        let due = cfg
            .checkpoint
            .as_ref()
            .zip(uncovered_since)
            .map(|(c, t)| (t + c.interval).saturating_duration_since(Instant::now()));
        let first = match due {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(wait) => rx.recv_timeout(wait),
        };
        let first = match first {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                sign_head(&conn, &mut uncovered, &mut uncovered_since);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                if uncovered > 0 {
                    sign_head(&conn, &mut uncovered, &mut uncovered_since);
                }
                return;
            }
        };
        let started = Instant::now();
        let mut closed = false;
        let mut oldest: Option<Instant> = None;
        let mut push = |m: Msg, batch: &mut Vec<_>, flushes: &mut Vec<_>| match m {
            Msg::Append(r, ack, at) => {
                oldest = Some(oldest.map_or(at, |o: Instant| o.min(at)));
                batch.push((r, ack))
            }
            Msg::Flush(ack) => flushes.push(ack),
        };
        push(first, &mut batch, &mut flushes);
        let mut strict = batch.iter().any(|(_, ack)| ack.is_some());
        // Batched: let the window fill while asleep, then take what came.
        // Waiting in `recv_timeout` instead would have every record appended
        // during the window wake this thread (a futex call on the gateway's
        // side and on this one, per record).
        let slept = !strict && flushes.is_empty() && batch.len() < cfg.max_batch;
        if slept {
            std::thread::sleep(cfg.max_delay.saturating_sub(started.elapsed()));
        }
        while batch.len() < cfg.max_batch && flushes.is_empty() {
            // A strict caller is waiting: do not hold its record for company.
            // Group commit: take what is already queued and write it; records
            // that arrive during this commit's fsync form the next group.
            let next = if strict || slept {
                rx.try_recv().map_err(|e| match e {
                    mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                    mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else {
                rx.recv_timeout(cfg.max_delay.saturating_sub(started.elapsed()))
            };
            if let Ok(Msg::Append(_, Some(_), _)) = &next {
                strict = true;
            }
            match next {
                Ok(m) => push(m, &mut batch, &mut flushes),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        let written = batch.len() as u64;
        let oldest = oldest;
        // A checkpoint that is due goes into the batch's own transaction, so
        // an acknowledged record is never left unsigned by a crash.
        let due = cfg
            .checkpoint
            .as_ref()
            .filter(|c| uncovered + written >= c.every.max(1) || closed)
            .map(|c| &c.key);
        let signed = match commit(&mut conn, &mut prev, &batch, due) {
            Ok(head) => {
                // Anchored before the strict callers are answered, so an
                // acknowledged checkpoint is outside the log too.
                anchor(head);
                for (_, ack) in batch.drain(..) {
                    if let Some(ack) = ack {
                        let _ = ack.send(Ok(()));
                    }
                }
                due.is_some()
            }
            Err(e) => {
                // One bad record must not lose the others: write them one by one.
                eprintln!(
                    "castellan-audit: batch write to {} failed ({e}); retrying record by record",
                    path.display()
                );
                for (record, ack) in batch.drain(..) {
                    let one = [(record, None)];
                    let result = commit(&mut conn, &mut prev, &one, None).map(|_| ());
                    if let Err(e) = &result {
                        eprintln!("castellan-audit: record {} not written: {e}", one[0].0.id);
                    }
                    if let Some(ack) = ack {
                        let _ = ack.send(result);
                    }
                }
                false
            }
        };
        stats
            .queued
            .fetch_sub(written, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = oldest {
            stats.lag_us.store(
                t.elapsed().as_micros() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        if signed {
            uncovered = 0;
            uncovered_since = None;
        } else if let Some(c) = &cfg.checkpoint {
            uncovered += written;
            if written > 0 && uncovered_since.is_none() {
                uncovered_since = Some(Instant::now());
            }
            if uncovered >= c.every.max(1) || (closed && uncovered > 0) {
                sign_head(&conn, &mut uncovered, &mut uncovered_since);
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

fn commit(
    conn: &mut Connection,
    prev: &mut [u8; 32],
    batch: &[Pending],
    checkpoint: Option<&sign::SigningKey>,
) -> Result<Option<sign::SignedHead>, String> {
    if batch.is_empty() {
        return Ok(None);
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
            // serde_json writes UTF-8 only, so the hashed bytes are stored as
            // the record's text as they are, without checking them again.
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
            .map_err(|e| e.to_string())?;
            chain = hash;
        }
    }
    let head = match checkpoint {
        Some(key) => sign::checkpoint(&tx, key, now_ms()).map_err(|e| e.to_string())?,
        None => None,
    };
    tx.commit().map_err(|e| e.to_string())?;
    *prev = chain;
    Ok(head)
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

/// What [`verify_with`] found besides the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Intact, or the first bad record.
    pub verification: Verification,
    /// The first sequence number kept after retention, if any was pruned.
    pub anchor: Option<i64>,
    /// Checkpoints checked (signatures too, when a public key was given).
    pub checkpoints: u64,
    /// The last checkpointed sequence number.
    pub last_checkpoint: Option<i64>,
    /// Records after the last checkpoint (not yet covered by a signature).
    pub unsigned_tail: u64,
}

/// Walks the whole chain from the start (or from the retention anchor).
pub fn verify(path: &Path) -> Result<Verification, AuditError> {
    verify_with(path, None).map(|r| r.verification)
}

/// Walks the chain from the start, or from the anchor retention left, and
/// checks every checkpoint against the chain; with `key`, also each
/// checkpoint's and the anchor's signature, so a chain rewritten without
/// the private key, or cut short, is found.
pub fn verify_with(path: &Path, key: Option<&PublicKey>) -> Result<Report, AuditError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(db_err(path))?;
    // Logs written before checkpoints existed have no such tables.
    let has = |table: &str| -> Result<bool, AuditError> {
        conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(db_err(path))
    };
    let anchor = if has("prunes")? {
        sign::anchor(&conn).map_err(db_err(path))?
    } else {
        None
    };
    let checkpoints = if has("checkpoints")? {
        sign::checkpoints(&conn).map_err(db_err(path))?
    } else {
        Default::default()
    };
    let mut report = Report {
        verification: Verification::Intact { records: 0 },
        anchor: anchor.as_ref().map(|a| a.seq),
        checkpoints: 0,
        last_checkpoint: None,
        unsigned_tail: 0,
    };
    let mut prev = GENESIS;
    let mut expected_seq: Option<i64> = None;
    if let Some(a) = &anchor {
        if let Some(k) = key
            && !a.signed_by(k)
        {
            report.verification = Verification::Broken {
                seq: a.seq,
                id: String::new(),
                reason: "the retention anchor is not signed by this key (records before it may have been removed by someone else)".into(),
            };
            return Ok(report);
        }
        prev = a.prev;
        expected_seq = Some(a.seq);
    }
    let mut stmt = conn
        .prepare("SELECT seq, id, record, prev_hash, hash, at_ms, agent, session, target, decision FROM records ORDER BY seq")
        .map_err(db_err(path))?;
    let mut rows = stmt.query([]).map_err(db_err(path))?;
    let mut count = 0u64;
    let mut last_seq: Option<i64> = None;
    while let Some(row) = rows.next().map_err(db_err(path))? {
        let seq: i64 = row.get(0).map_err(db_err(path))?;
        let id: String = row.get(1).map_err(db_err(path))?;
        let text: String = row.get(2).map_err(db_err(path))?;
        let stored_prev: Vec<u8> = row.get(3).map_err(db_err(path))?;
        let stored_hash: Vec<u8> = row.get(4).map_err(db_err(path))?;
        let broken = |reason: &str| Verification::Broken {
            seq,
            id: id.clone(),
            reason: reason.into(),
        };
        let fail = match expected_seq {
            Some(e) if seq != e => Some(broken(&format!(
                "records {e}..{} are missing (deleted)",
                seq - 1
            ))),
            _ if stored_prev[..] != prev[..] => Some(broken(
                "does not follow the record before it (inserted, reordered or the one before was deleted)",
            )),
            _ if chain_hash(&prev, text.as_bytes())[..] != stored_hash[..] => {
                Some(broken("its content does not match its hash (modified)"))
            }
            _ => match serde_json::from_str::<Record>(&text) {
                Ok(r) if r.canonical() == text.as_bytes() && r.id == id => {
                    column_mismatch(row, &r).map(|c| broken(&c))
                }
                _ => Some(broken(
                    "its stored form is not a canonical record (modified)",
                )),
            },
        };
        let fail = fail.or_else(|| {
            let c = checkpoints.get(&seq)?;
            if c.head[..] != stored_hash[..] {
                Some(broken(
                    "its checkpoint does not match the chain (the record, one before it, or the checkpoint was altered)",
                ))
            } else if key.is_some_and(|k| !c.signed_by(k, seq)) {
                Some(broken(
                    "its checkpoint's signature is not valid for this key (forged or altered checkpoint)",
                ))
            } else {
                None
            }
        });
        if let Some(v) = fail {
            report.verification = v;
            return Ok(report);
        }
        if checkpoints.contains_key(&seq) {
            report.checkpoints += 1;
            report.last_checkpoint = Some(seq);
            report.unsigned_tail = 0;
        } else {
            report.unsigned_tail += 1;
        }
        prev.copy_from_slice(&stored_hash);
        expected_seq = Some(seq + 1);
        last_seq = Some(seq);
        count += 1;
    }
    // A checkpoint past the last record: records were cut from the end.
    if let Some((&seq, _)) = checkpoints
        .range(last_seq.map_or(i64::MIN, |s| s + 1)..)
        .next()
        && anchor.as_ref().is_none_or(|a| seq >= a.seq)
    {
        report.verification = Verification::Broken {
            seq,
            id: String::new(),
            reason: format!(
                "a checkpoint signs record {seq} but the log ends at {} (records deleted from the end)",
                last_seq.map_or("the start".to_string(), |s| s.to_string())
            ),
        };
        return Ok(report);
    }
    report.verification = Verification::Intact { records: count };
    Ok(report)
}

/// The first stored column (besides the hashed record itself) that does
/// not say what the hashed record says, in words: queries filter on these
/// columns' meaning, so an edited column is as much tampering as an edited
/// record.
fn column_mismatch(row: &rusqlite::Row<'_>, r: &Record) -> Option<String> {
    let at_ms = r.at_ms.to_string();
    // (column, its index in the verify query, what the record says)
    let columns: [(&str, usize, &str); 5] = [
        ("at_ms", 5, &at_ms),
        ("agent", 6, &r.agent),
        ("session", 7, &r.session),
        ("target", 8, &r.target),
        ("decision", 9, &r.decision),
    ];
    columns.into_iter().find_map(|(name, i, want)| {
        let stored = match row.get_ref(i) {
            Ok(ValueRef::Text(t)) if name != "at_ms" => String::from_utf8_lossy(t).into_owned(),
            Ok(ValueRef::Integer(n)) if name == "at_ms" => n.to_string(),
            Ok(other) => format!("a {} value", other.data_type()),
            Err(e) => e.to_string(),
        };
        (stored != want).then(|| {
            format!(
                "its `{name}` column says `{stored}` but the hashed record says `{want}` (modified)"
            )
        })
    })
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

/// A record as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Sequence number.
    pub seq: i64,
    /// The record.
    pub record: Record,
}

/// Records matching `filter`, in log order. The filter reads the hashed
/// record itself, never the plain columns beside it: a column edited to
/// hide a record (or to show one) changes nothing here, and `verify`
/// names it.
pub fn query(path: &Path, filter: &Filter) -> Result<Vec<Stored>, AuditError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(db_err(path))?;
    let mut sql = String::from("SELECT seq, record FROM records WHERE 1=1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut add = |clause: &str, v: rusqlite::types::Value| {
        sql.push_str(clause);
        args.push(v);
    };
    // Written exactly as the index expression, so the session filter (the
    // admin API's timeline) uses the index.
    if let Some(s) = &filter.session {
        add(
            " AND json_extract(record, '$.session') = ?",
            s.clone().into(),
        );
    }
    if let Some(a) = &filter.agent {
        add(" AND json_extract(record, '$.agent') = ?", a.clone().into());
    }
    if let Some(t) = &filter.target {
        add(
            " AND json_extract(record, '$.target') = ?",
            t.clone().into(),
        );
    }
    if let Some(u) = &filter.upstream {
        // Not a column of its own: rare enough a filter to read the record.
        add(
            " AND json_extract(record, '$.upstream') = ?",
            u.clone().into(),
        );
    }
    if let Some(d) = &filter.decision {
        add(
            " AND json_extract(record, '$.decision') = ?",
            d.clone().into(),
        );
    }
    if let Some(t) = filter.since_ms {
        add(
            " AND json_extract(record, '$.at_ms') >= ?",
            (t as i64).into(),
        );
    }
    if let Some(t) = filter.until_ms {
        add(
            " AND json_extract(record, '$.at_ms') < ?",
            (t as i64).into(),
        );
    }
    match filter.limit {
        // The newest `limit` records, read as such rather than all of them
        // with the older ones dropped afterwards.
        Some(limit) => {
            sql.insert_str(0, "SELECT seq, record FROM (");
            sql.push_str(" ORDER BY seq DESC LIMIT ?) ORDER BY seq");
            args.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
        }
        None => sql.push_str(" ORDER BY seq"),
    }
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
    Ok(out)
}

#[cfg(test)]
mod tests;
