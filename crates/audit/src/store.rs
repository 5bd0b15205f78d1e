//! The writer: records arrive from the gateway's threads and one writer
//! thread appends them to the store in batches (group commit), signs the
//! chain head and prunes, whichever store holds the chain.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::location::Location;
use crate::record::Record;
use crate::sign::{self, Checkpointing, Retention, SigningKey};

mod postgres;
mod spool;
mod sqlite;
mod write_loop;

#[cfg(test)]
mod tests;

use write_loop::{MIN_BACKOFF, WriteLoop};

pub(crate) use postgres::PostgresReader;
pub(crate) use sqlite::SqliteReader;

/// Why the audit log failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The database refused or failed an operation.
    #[error("audit database `{path}`: {message}")]
    Db {
        /// The file or (redacted) URL.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The database cannot be reached (PostgreSQL down, network gone).
    #[error("audit database `{path}` is unreachable: {message}")]
    Unavailable {
        /// The (redacted) URL.
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
    /// The local spool that keeps records while the database is unreachable
    /// is full: records are refused rather than lost.
    #[error(
        "the audit database is unreachable and the local spool `{path}` holds its limit of {limit} records"
    )]
    SpoolFull {
        /// The spool file.
        path: String,
        /// Its limit.
        limit: u64,
    },
    /// The writer thread is gone (the log is closed or crashed).
    #[error("the audit writer has stopped")]
    Closed,
}

impl AuditError {
    /// Whether the store could not be reached (worth retrying later), as
    /// opposed to refusing this record.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, AuditError::Unavailable { .. })
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
    /// Where batched records wait, in order, while a PostgreSQL log is
    /// unreachable; replayed (without duplicates) when it returns. `None`
    /// loses such records (and says so on stderr).
    pub spool: Option<PathBuf>,
    /// Most records the spool holds; beyond it, appends are refused
    /// ([`AuditError::SpoolFull`]) so the gateway fails closed.
    pub spool_max: u64,
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
            spool: None,
            spool_max: 100_000,
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What a store does for the writer thread. One writer per process; in a
/// fleet several processes' writers append to one PostgreSQL chain, so a
/// store reads the head it appends after inside its own transaction.
pub(crate) trait Backend: Send {
    /// Appends `batch` after the chain head in one transaction and, with
    /// `checkpoint`, signs the new head in the same transaction. With
    /// `skip_present`, records whose id is already stored are left out (a
    /// spool replayed after a commit whose acknowledgement was lost).
    fn commit(
        &mut self,
        batch: &[&Record],
        checkpoint: Option<&SigningKey>,
        skip_present: bool,
    ) -> Result<Option<sign::SignedHead>, AuditError>;
    /// Signs the current head unless it is signed already.
    fn checkpoint(&mut self, key: &SigningKey) -> Result<Option<sign::SignedHead>, AuditError>;
    /// Deletes what `retention` no longer keeps; returns how many.
    fn prune(&mut self, retention: &Retention, key: Option<&SigningKey>)
    -> Result<u64, AuditError>;
}

/// Where a strict caller waits for its record to be durable.
type Ack = SyncSender<Result<(), AuditError>>;
/// A record waiting for its batch.
type Pending = (Box<Record>, Option<Ack>);

enum Msg {
    Append(Box<Record>, Option<Ack>, Instant),
    Flush(SyncSender<()>),
}

/// The decision log.
#[derive(Debug)]
pub struct AuditLog;

/// The handle the gateway appends through. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: Sender<Msg>,
    durability: Durability,
    location: Location,
    stats: Arc<Stats>,
    /// The spool file and its limit, when one is configured.
    spool: Option<(String, u64)>,
}

/// What the writer reports for monitoring.
#[derive(Debug, Default)]
struct Stats {
    /// Records appended and not yet committed.
    queued: AtomicU64,
    /// Microseconds from the oldest record of the last batch being appended
    /// to the batch being durable.
    lag_us: AtomicU64,
    /// Records waiting in the spool for the database.
    spooled: AtomicU64,
    /// Whether the last attempt to reach the database failed.
    down: AtomicBool,
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
    /// Opens (or creates) the SQLite log at `path` and starts its writer
    /// thread.
    pub fn open(
        path: &std::path::Path,
        durability: Durability,
        cfg: WriterConfig,
    ) -> Result<(Writer, JoinHandle<()>), AuditError> {
        Self::open_at(&Location::from(path), durability, cfg)
    }

    /// Opens (or creates) the log at `location` and starts its writer
    /// thread. A PostgreSQL log must be reachable at start (a broken URL or
    /// credential is an operator's mistake best reported at once).
    pub fn open_at(
        location: &Location,
        durability: Durability,
        cfg: WriterConfig,
    ) -> Result<(Writer, JoinHandle<()>), AuditError> {
        // Opened on the writer thread: the PostgreSQL driver blocks on a
        // runtime of its own, which may not run inside the caller's.
        let opener = location.clone();
        let open = move || -> Result<Box<dyn Backend>, AuditError> {
            Ok(match &opener {
                Location::Sqlite(path) => Box::new(sqlite::SqliteBackend::open(path)?),
                Location::Postgres(url) => Box::new(postgres::PostgresBackend::open(url)?),
            })
        };
        let spool = match &cfg.spool {
            Some(path) => Some(spool::Spool::open(path)?),
            None => None,
        };
        let stats = Arc::new(Stats::default());
        if let Some(s) = &spool {
            stats.spooled.store(s.len(), Ordering::Relaxed);
        }
        let (tx, rx) = mpsc::channel();
        let (opened_tx, opened) = mpsc::sync_channel(1);
        let counters = stats.clone();
        let name = location.to_string();
        let spool_limit = cfg
            .spool
            .as_ref()
            .map(|p| (p.display().to_string(), cfg.spool_max));
        let handle = std::thread::Builder::new()
            .name("castellan-audit".into())
            .spawn(move || {
                let backend = match open() {
                    Ok(b) => {
                        let _ = opened_tx.send(Ok(()));
                        b
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                WriteLoop {
                    backend,
                    name,
                    cfg,
                    stats: &counters,
                    spool,
                    retry_at: None,
                    backoff: MIN_BACKOFF,
                }
                .run(rx)
            })
            .map_err(|e| AuditError::Db {
                path: String::new(),
                message: format!("cannot start the audit writer: {e}"),
            })?;
        opened.recv().map_err(|_| AuditError::Closed)??;
        Ok((
            Writer {
                tx,
                durability,
                location: location.clone(),
                stats,
                spool: spool_limit,
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
        self.stats.queued.load(Ordering::Relaxed)
    }

    /// How long the last batch's oldest record waited to be durable.
    pub fn write_lag(&self) -> Duration {
        Duration::from_micros(self.stats.lag_us.load(Ordering::Relaxed))
    }

    /// Records kept in the local spool until the database returns.
    pub fn spooled(&self) -> u64 {
        self.stats.spooled.load(Ordering::Relaxed)
    }

    /// Whether the last attempt to reach the database failed.
    pub fn unreachable(&self) -> bool {
        self.stats.down.load(Ordering::Relaxed)
    }

    /// Where the log lives (for [`crate::query`] and [`crate::verify`]).
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Appends a record. In strict mode this blocks until it is durable, so
    /// call it off the async executor (e.g. `spawn_blocking`) or accept the
    /// wait; in batched mode it returns at once, unless the database is
    /// unreachable and the spool is full ([`AuditError::SpoolFull`]).
    pub fn append(&self, record: Record) -> Result<(), AuditError> {
        match self.durability {
            Durability::Batched => {
                if let Some(full) = self.spool_full() {
                    return Err(full);
                }
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
                self.tx
                    .send(Msg::Append(Box::new(record), None, Instant::now()))
                    .map_err(|_| AuditError::Closed)
            }
            Durability::Strict => {
                let (ack, done) = mpsc::sync_channel(1);
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
                self.tx
                    .send(Msg::Append(Box::new(record), Some(ack), Instant::now()))
                    .map_err(|_| AuditError::Closed)?;
                done.recv().map_err(|_| AuditError::Closed)?
            }
        }
    }

    fn spool_full(&self) -> Option<AuditError> {
        let (spool, limit) = self.spool.as_ref()?;
        let limit = *limit;
        // Records queued but not yet spooled count too: a burst while the
        // database is down must not overrun the limit.
        let held = self.stats.spooled.load(Ordering::Relaxed)
            + if self.unreachable() {
                self.queue_depth()
            } else {
                0
            };
        (held >= limit).then(|| AuditError::SpoolFull {
            path: spool.clone(),
            limit,
        })
    }

    /// Waits until everything appended so far is durable (in the store, or
    /// in the spool while the store is unreachable).
    pub fn flush(&self) -> Result<(), AuditError> {
        let (ack, done) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Flush(ack))
            .map_err(|_| AuditError::Closed)?;
        done.recv().map_err(|_| AuditError::Closed)
    }
}
