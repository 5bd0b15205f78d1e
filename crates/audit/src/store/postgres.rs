//! The fleet's store: one PostgreSQL database that every replica's writer
//! appends to, keeping one chain.
//!
//! Replicas never fork the chain: each batch is appended inside a
//! transaction that first takes a transaction-scoped advisory lock (the
//! sealing step: one writer at a time reads the head and appends after it),
//! and the schema refuses a fork outright (`prev_hash` is unique: two
//! records can never follow the same one). Sequence numbers are the chain
//! position, assigned under the lock. A record's id is unique, which makes
//! replaying a spool idempotent.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator as _;
use postgres::types::ToSql;
use postgres::{Client, NoTls};

use super::{AuditError, Backend, now_ms};
use crate::location::redacted;
use crate::query::{Condition, Filter, Stored};
use crate::read::{ChainRow, Reader};
use crate::record::{GENESIS, Record, chain_hash};
use crate::sign::{Anchor, Checkpoint, Retention, SignedHead, SigningKey};

/// The advisory lock that seals appends ("Castella" in ASCII).
const SEAL: i64 = 0x4361_7374_656c_6c61;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    seq BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    at_ms BIGINT NOT NULL,
    agent TEXT NOT NULL,
    session TEXT NOT NULL,
    target TEXT NOT NULL,
    decision TEXT NOT NULL,
    record TEXT NOT NULL,
    prev_hash BYTEA NOT NULL UNIQUE,
    hash BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS records_session_hashed ON records (((record::jsonb)->>'session'));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('hash', 'blake3-v1') ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS checkpoints (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    head BYTEA NOT NULL,
    signature BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS prunes (
    id BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    removed BIGINT NOT NULL,
    anchor_seq BIGINT NOT NULL,
    anchor_prev BYTEA NOT NULL,
    signature BYTEA
);
";

/// How long a connection attempt, and any one statement, may take before
/// the database counts as unreachable (strict callers are refused rather
/// than left waiting).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const STATEMENT_TIMEOUT: &str = "SET statement_timeout = '10s'";

/// An error in words, classed as unreachable (connection lost, server
/// shutting down, timed out, out of connections) or refused.
fn classify(url: &str, e: &postgres::Error) -> AuditError {
    let path = redacted(url);
    // The driver's own text for a server error is only "db error": the
    // server's message and detail are what an operator needs.
    let message = match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        },
        None => e.to_string(),
    };
    let unavailable = match e.code() {
        None => true,
        // 08: connection exception; 53: insufficient resources;
        // 57: operator intervention (shutdown, statement timeout).
        Some(code) => ["08", "53", "57"]
            .iter()
            .any(|class| code.code().starts_with(class)),
    };
    if unavailable || e.is_closed() {
        AuditError::Unavailable { path, message }
    } else {
        AuditError::Db { path, message }
    }
}

/// Connects, with the password from `PGPASSWORD` and the user from
/// `PGUSER` when the URL leaves them out (so no secret sits in the
/// configuration file).
fn connect(url: &str) -> Result<Client, AuditError> {
    let bad = |message: String| AuditError::Db {
        path: redacted(url),
        message,
    };
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e: postgres::Error| bad(format!("not a PostgreSQL URL: {e}")))?;
    if config.get_password().is_none()
        && let Ok(password) = std::env::var("PGPASSWORD")
    {
        config.password(password);
    }
    if config.get_user().is_none()
        && let Ok(user) = std::env::var("PGUSER")
    {
        config.user(&user);
    }
    config.connect_timeout(CONNECT_TIMEOUT);
    let mut client = config.connect(NoTls).map_err(|e| classify(url, &e))?;
    client
        .batch_execute(STATEMENT_TIMEOUT)
        .map_err(|e| classify(url, &e))?;
    Ok(client)
}

/// A transaction holding the seal: one writer of the fleet at a time
/// reads the head and appends after it (released at commit or rollback).
fn sealed(client: &mut Client) -> Result<postgres::Transaction<'_>, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SEAL])?;
    Ok(tx)
}

/// The writer's side: a connection (made again after it is lost).
pub(crate) struct PostgresBackend {
    url: String,
    client: Option<Client>,
    /// No new connection attempt before this (a strict caller facing a dead
    /// database is refused at once rather than after a connect timeout).
    next_attempt: Option<Instant>,
}

impl PostgresBackend {
    /// Connects and creates the schema (once, under the seal, so replicas
    /// starting together do not race on it).
    pub(crate) fn open(url: &str) -> Result<PostgresBackend, AuditError> {
        let mut client = connect(url)?;
        let mut tx = sealed(&mut client).map_err(|e| classify(url, &e))?;
        tx.batch_execute(SCHEMA).map_err(|e| classify(url, &e))?;
        tx.commit().map_err(|e| classify(url, &e))?;
        Ok(PostgresBackend {
            url: url.to_owned(),
            client: Some(client),
            next_attempt: None,
        })
    }

    fn client(&mut self) -> Result<&mut Client, AuditError> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() {
            if let Some(t) = self.next_attempt
                && Instant::now() < t
            {
                return Err(AuditError::Unavailable {
                    path: redacted(&self.url),
                    message: "reconnecting".into(),
                });
            }
            match connect(&self.url) {
                Ok(c) => {
                    self.next_attempt = None;
                    self.client = Some(c);
                }
                Err(e) => {
                    self.next_attempt = Some(Instant::now() + Duration::from_millis(200));
                    return Err(e);
                }
            }
        }
        self.client.as_mut().ok_or(AuditError::Closed)
    }

    /// Runs `f` on the connection; a lost connection is dropped so the next
    /// call makes a new one.
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, AuditError> {
        let url = self.url.clone();
        let client = self.client()?;
        f(client).map_err(|e| {
            let e = classify(&url, &e);
            if e.is_unavailable() {
                self.client = None;
            }
            e
        })
    }
}

impl Backend for PostgresBackend {
    fn commit(
        &mut self,
        batch: &[&Record],
        checkpoint: Option<&SigningKey>,
        skip_present: bool,
    ) -> Result<Option<SignedHead>, AuditError> {
        if batch.is_empty() {
            return Ok(None);
        }
        self.with(|client| {
            let mut tx = sealed(client)?;
            let present: std::collections::HashSet<String> = if skip_present {
                let ids: Vec<&str> = batch.iter().map(|r| r.id.as_str()).collect();
                tx.query("SELECT id FROM records WHERE id = ANY($1)", &[&ids])?
                    .iter()
                    .map(|row| row.get(0))
                    .collect()
            } else {
                Default::default()
            };
            let head = tx.query_opt("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1", &[])?;
            let (mut seq, mut chain) = match head {
                Some(row) => {
                    let hash: Vec<u8> = row.get(1);
                    (row.get::<_, i64>(0), <[u8; 32]>::try_from(&hash[..]).unwrap_or(GENESIS))
                }
                None => (0, GENESIS),
            };
            let mut columns = Columns::with_capacity(batch.len());
            for r in batch.iter().filter(|r| !present.contains(&r.id)) {
                let canonical = r.canonical();
                let hash = chain_hash(&chain, &canonical);
                seq += 1;
                columns.push(seq, r, canonical, &chain, &hash);
                chain = hash;
            }
            if !columns.seq.is_empty() {
                let texts: Vec<&str> = columns
                    .text
                    .iter()
                    // serde_json writes UTF-8 only.
                    .map(|t| std::str::from_utf8(t).unwrap_or_default())
                    .collect();
                // One statement per batch, however large.
                tx.execute(
                    "INSERT INTO records (seq, id, at_ms, agent, session, target, decision, record, prev_hash, hash)
                     SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bytea[], $10::bytea[])",
                    &[
                        &columns.seq,
                        &columns.id,
                        &columns.at_ms,
                        &columns.agent,
                        &columns.session,
                        &columns.target,
                        &columns.decision,
                        &texts,
                        &columns.prev,
                        &columns.hash,
                    ],
                )?;
            }
            let signed = match checkpoint {
                Some(key) => sign_head(&mut tx, key)?,
                None => None,
            };
            tx.commit()?;
            Ok(signed)
        })
    }

    fn checkpoint(&mut self, key: &SigningKey) -> Result<Option<SignedHead>, AuditError> {
        self.with(|client| {
            let mut tx = sealed(client)?;
            let signed = sign_head(&mut tx, key)?;
            tx.commit()?;
            Ok(signed)
        })
    }

    fn prune(
        &mut self,
        retention: &Retention,
        key: Option<&SigningKey>,
    ) -> Result<u64, AuditError> {
        self.with(|client| prune(client, retention, key, now_ms()))
    }
}

/// A batch as one array per column (for `unnest`).
struct Columns<'a> {
    seq: Vec<i64>,
    id: Vec<&'a str>,
    at_ms: Vec<i64>,
    agent: Vec<&'a str>,
    session: Vec<&'a str>,
    target: Vec<&'a str>,
    decision: Vec<&'a str>,
    text: Vec<Vec<u8>>,
    prev: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
}

impl<'a> Columns<'a> {
    fn with_capacity(n: usize) -> Self {
        Columns {
            seq: Vec::with_capacity(n),
            id: Vec::with_capacity(n),
            at_ms: Vec::with_capacity(n),
            agent: Vec::with_capacity(n),
            session: Vec::with_capacity(n),
            target: Vec::with_capacity(n),
            decision: Vec::with_capacity(n),
            text: Vec::with_capacity(n),
            prev: Vec::with_capacity(n),
            hash: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, seq: i64, r: &'a Record, text: Vec<u8>, prev: &[u8; 32], hash: &[u8; 32]) {
        self.seq.push(seq);
        self.id.push(&r.id);
        self.at_ms.push(r.at_ms as i64);
        self.agent.push(&r.agent);
        self.session.push(&r.session);
        self.target.push(&r.target);
        self.decision.push(&r.decision);
        self.text.push(text);
        self.prev.push(prev.to_vec());
        self.hash.push(hash.to_vec());
    }
}

/// Signs the current head unless it is signed already (call under the seal).
fn sign_head(
    tx: &mut postgres::Transaction<'_>,
    key: &SigningKey,
) -> Result<Option<SignedHead>, postgres::Error> {
    let Some(row) = tx.query_opt(
        "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1",
        &[],
    )?
    else {
        return Ok(None);
    };
    let (seq, hash): (i64, Vec<u8>) = (row.get(0), row.get(1));
    let signed = key.sign_head(seq, &hash, now_ms());
    let n = tx.execute(
        "INSERT INTO checkpoints (seq, at_ms, head, signature) VALUES ($1, $2, $3, $4) ON CONFLICT (seq) DO NOTHING",
        &[&seq, &(signed.at_ms as i64), &hash, &signed.signature],
    )?;
    Ok((n > 0).then_some(signed))
}

fn prune(
    client: &mut Client,
    retention: &Retention,
    key: Option<&SigningKey>,
    now_ms: u64,
) -> Result<u64, postgres::Error> {
    let mut tx = sealed(client)?;
    let mut cut: Option<i64> = None; // first seq kept
    if let Some(age) = retention.max_age {
        let oldest = now_ms.saturating_sub(age.as_millis() as u64) as i64;
        let by_age: Option<i64> = tx
            .query_one("SELECT MIN(seq) FROM records WHERE at_ms >= $1", &[&oldest])?
            .get(0);
        // Every record is too old: keep the newest one as the anchor.
        cut = match by_age {
            Some(s) => Some(s),
            None => tx.query_one("SELECT MAX(seq) FROM records", &[])?.get(0),
        };
    }
    if let Some(max) = retention.max_records {
        let offset = max.max(1) as i64 - 1;
        let by_count: Option<i64> = tx
            .query_opt(
                "SELECT seq FROM records ORDER BY seq DESC LIMIT 1 OFFSET $1",
                &[&offset],
            )?
            .map(|r| r.get(0));
        cut = cut.max(by_count);
    }
    let Some(first_kept) = cut else {
        return Ok(0);
    };
    let removed = tx.execute("DELETE FROM records WHERE seq < $1", &[&first_kept])?;
    if removed == 0 {
        return Ok(0);
    }
    tx.execute("DELETE FROM checkpoints WHERE seq < $1", &[&first_kept])?;
    let prev: Vec<u8> = tx
        .query_one(
            "SELECT prev_hash FROM records WHERE seq = $1",
            &[&first_kept],
        )?
        .get(0);
    let signature = key.map(|k| k.sign_anchor(first_kept, &prev));
    tx.execute(
        "INSERT INTO prunes (at_ms, removed, anchor_seq, anchor_prev, signature) VALUES ($1, $2, $3, $4, $5)",
        &[&(now_ms as i64), &(removed as i64), &first_kept, &prev, &signature],
    )?;
    tx.commit()?;
    Ok(removed)
}

/// A read-only view of a fleet's log.
pub(crate) struct PostgresReader {
    url: String,
    client: Client,
    /// Whether a writer has created the schema (a new database has not:
    /// it reads as an empty log).
    exists: bool,
}

impl PostgresReader {
    pub(crate) fn open(url: &str) -> Result<PostgresReader, AuditError> {
        let mut client = connect(url)?;
        let exists = client
            .query_one("SELECT to_regclass('records') IS NOT NULL", &[])
            .map_err(|e| classify(url, &e))?
            .get(0);
        Ok(PostgresReader {
            url: url.to_owned(),
            client,
            exists,
        })
    }
}

impl Reader for PostgresReader {
    fn anchor(&mut self) -> Result<Option<Anchor>, AuditError> {
        if !self.exists {
            return Ok(None);
        }
        let url = self.url.clone();
        let row = self
            .client
            .query_opt(
                "SELECT anchor_seq, anchor_prev, signature FROM prunes ORDER BY id DESC LIMIT 1",
                &[],
            )
            .map_err(|e| classify(&url, &e))?;
        Ok(row.and_then(|r| {
            let prev: Vec<u8> = r.get(1);
            Some(Anchor {
                seq: r.get(0),
                prev: prev.try_into().ok()?,
                signature: r.get(2),
            })
        }))
    }

    fn checkpoints(&mut self) -> Result<BTreeMap<i64, Checkpoint>, AuditError> {
        if !self.exists {
            return Ok(BTreeMap::new());
        }
        let url = self.url.clone();
        let rows = self
            .client
            .query(
                "SELECT seq, head, signature FROM checkpoints ORDER BY seq",
                &[],
            )
            .map_err(|e| classify(&url, &e))?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, i64>(0),
                    Checkpoint {
                        head: r.get(1),
                        signature: r.get(2),
                    },
                )
            })
            .collect())
    }

    fn rows(&mut self, each: &mut dyn FnMut(ChainRow) -> bool) -> Result<(), AuditError> {
        if !self.exists {
            return Ok(());
        }
        let url = self.url.clone();
        let err = |e: postgres::Error| classify(&url, &e);
        // Streamed, so a long chain is not held in memory at once.
        let mut rows = self
            .client
            .query_raw(
                "SELECT seq, id, record, prev_hash, hash, at_ms, agent, session, target, decision FROM records ORDER BY seq",
                std::iter::empty::<&(dyn ToSql + Sync)>(),
            )
            .map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let chain_row = ChainRow {
                seq: row.get(0),
                id: row.get(1),
                text: row.get(2),
                prev: row.get(3),
                hash: row.get(4),
                columns: [
                    row.get::<_, i64>(5).to_string(),
                    row.get(6),
                    row.get(7),
                    row.get(8),
                    row.get(9),
                ],
            };
            if !each(chain_row) {
                break;
            }
        }
        Ok(())
    }

    fn bounds(&mut self) -> Result<(Option<i64>, Option<i64>), AuditError> {
        if !self.exists {
            return Ok((None, None));
        }
        let row = self
            .client
            .query_one("SELECT MIN(seq), MAX(seq) FROM records", &[])
            .map_err(|e| classify(&self.url, &e))?;
        Ok((row.get(0), row.get(1)))
    }

    fn hash_at(&mut self, seq: i64) -> Result<Option<Vec<u8>>, AuditError> {
        if !self.exists {
            return Ok(None);
        }
        let row = self
            .client
            .query_opt("SELECT hash FROM records WHERE seq = $1", &[&seq])
            .map_err(|e| classify(&self.url, &e))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn query(&mut self, filter: &Filter) -> Result<Vec<Stored>, AuditError> {
        if !self.exists {
            return Ok(Vec::new());
        }
        let mut sql = String::from("SELECT seq, record FROM records WHERE true");
        let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::new();
        for (field, condition) in filter.conditions() {
            let n = values.len() + 1;
            // The session clause is written as the index expression.
            let (clause, value): (String, Box<dyn ToSql + Sync>) = match condition {
                Condition::Equals(v) => (
                    format!(" AND (record::jsonb)->>'{field}' = ${n}"),
                    Box::new(v.to_owned()),
                ),
                Condition::AtLeast(t) => (
                    format!(" AND ((record::jsonb)->>'{field}')::bigint >= ${n}"),
                    Box::new(t as i64),
                ),
                Condition::Below(t) => (
                    format!(" AND ((record::jsonb)->>'{field}')::bigint < ${n}"),
                    Box::new(t as i64),
                ),
            };
            sql.push_str(&clause);
            values.push(value);
        }
        match filter.limit {
            // The newest `limit` records, read as such.
            Some(limit) => {
                let n = values.len() + 1;
                sql.insert_str(0, "SELECT seq, record FROM (");
                sql.push_str(&format!(
                    " ORDER BY seq DESC LIMIT ${n}) newest ORDER BY seq"
                ));
                values.push(Box::new(i64::try_from(limit).unwrap_or(i64::MAX)));
            }
            None => sql.push_str(" ORDER BY seq"),
        }
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
        let url = self.url.clone();
        let rows = self
            .client
            .query(&sql, &params)
            .map_err(|e| classify(&url, &e))?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let text: String = row.get(1);
                let record = serde_json::from_str(&text).ok()?;
                Some(Stored {
                    seq: row.get(0),
                    record,
                })
            })
            .collect())
    }
}
