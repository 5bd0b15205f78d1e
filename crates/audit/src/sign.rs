//! Signed checkpoints and retention.
//!
//! A checkpoint signs the chain head: Ed25519 over
//! `"castellan-checkpoint-v1" ‖ seq (8 bytes, big endian) ‖ hash of record seq`.
//! Since every record's hash covers all records before it, one valid
//! signature vouches for the whole prefix, and an auditor needs only the
//! public key: a rewritten (even fully re-hashed) chain no longer matches
//! the signed heads, and records cut from the end leave a checkpoint that
//! points past the end.
//!
//! Retention deletes the oldest records and leaves an anchor: the first kept
//! record's sequence number and the hash it chains from, recorded in the
//! `prunes` table (signed the same way when a key is configured), so
//! verification starts from the anchor instead of the genesis hash.

use std::path::Path;
use std::time::Duration;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use rusqlite::{Connection, OptionalExtension, params};

use crate::store::AuditError;

const CHECKPOINT_CONTEXT: &[u8] = b"castellan-checkpoint-v1";
const ANCHOR_CONTEXT: &[u8] = b"castellan-anchor-v1";
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410).
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

pub(crate) const SCHEMA: &str = "
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

fn bad(path: &Path, message: impl Into<String>) -> AuditError {
    AuditError::Key {
        path: path.display().to_string(),
        message: message.into(),
    }
}

fn pem_body(path: &Path, text: &str, label: &str) -> Result<Vec<u8>, AuditError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| bad(path, format!("not a PEM `{label}` file")))?;
    let rest = &text[start + begin.len()..];
    let stop = rest
        .find(&end)
        .ok_or_else(|| bad(path, format!("unterminated PEM `{label}`")))?;
    let b64: String = rest[..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| bad(path, format!("PEM `{label}` is not base64: {e}")))
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The private key checkpoints are signed with.
#[derive(Debug)]
pub struct SigningKey(Ed25519KeyPair);

impl SigningKey {
    /// Reads a PKCS#8 `PRIVATE KEY` PEM file (`openssl genpkey -algorithm
    /// ed25519`, or `castellan audit keygen`).
    pub fn from_file(path: &Path) -> Result<SigningKey, AuditError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(path, format!("cannot read the signing key: {e}")))?;
        let der = pem_body(path, &text, "PRIVATE KEY")?;
        Ed25519KeyPair::from_pkcs8(&der)
            .map(SigningKey)
            .map_err(|e| bad(path, format!("not an Ed25519 PKCS#8 private key: {e}")))
    }

    /// A new random key: its PKCS#8 PEM and its public key PEM.
    pub fn generate() -> Result<(String, String), AuditError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| bad(Path::new("<new>"), "no randomness for a key"))?;
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
            .map_err(|e| bad(Path::new("<new>"), e.to_string()))?;
        let public = SigningKey(pair).public_key_pem();
        Ok((pem("PRIVATE KEY", doc.as_ref()), public))
    }

    /// The public key as a `PUBLIC KEY` PEM (what an auditor needs).
    pub fn public_key_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.0.public_key().as_ref());
        pem("PUBLIC KEY", &der)
    }

    fn sign(&self, context: &[u8], seq: i64, hash: &[u8]) -> Vec<u8> {
        self.0.sign(&message(context, seq, hash)).as_ref().to_vec()
    }
}

/// The public key an auditor verifies checkpoints with.
#[derive(Debug, Clone)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Reads a `PUBLIC KEY` PEM file (Ed25519 SubjectPublicKeyInfo).
    pub fn from_file(path: &Path) -> Result<PublicKey, AuditError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(path, format!("cannot read the public key: {e}")))?;
        let der = pem_body(path, &text, "PUBLIC KEY")?;
        match der.strip_prefix(&SPKI_PREFIX[..]) {
            Some(k) if k.len() == 32 => {
                let mut out = [0u8; 32];
                out.copy_from_slice(k);
                Ok(PublicKey(out))
            }
            _ => Err(bad(path, "not an Ed25519 public key")),
        }
    }

    fn verifies(&self, context: &[u8], seq: i64, hash: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(&message(context, seq, hash), signature)
            .is_ok()
    }
}

fn message(context: &[u8], seq: i64, hash: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(context.len() + 8 + hash.len());
    m.extend_from_slice(context);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

/// When the writer signs the chain head.
#[derive(Debug)]
pub struct Checkpointing {
    /// The key.
    pub key: SigningKey,
    /// After this many records...
    pub every: u64,
    /// ...or this long after the first record not yet covered.
    pub interval: Duration,
}

/// What retention removes: records older than `max_age`, and the oldest
/// beyond `max_records`.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    /// Oldest record kept.
    pub max_age: Option<Duration>,
    /// Most records kept.
    pub max_records: Option<u64>,
}

/// A signed chain head: what a checkpoint stores and the anchor file keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    /// The record signed (and, through the chain, every one before it).
    pub seq: i64,
    /// When it was signed, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The record's chain hash.
    pub head: Vec<u8>,
    /// Ed25519 over `"castellan-checkpoint-v1" ‖ seq ‖ head`.
    pub signature: Vec<u8>,
}

impl SignedHead {
    /// Whether `key` made the signature.
    pub fn signed_by(&self, key: &PublicKey) -> bool {
        key.verifies(CHECKPOINT_CONTEXT, self.seq, &self.head, &self.signature)
    }
}

/// Signs the current chain head unless it is already signed. Returns what
/// was signed, if anything.
pub(crate) fn checkpoint(
    conn: &Connection,
    key: &SigningKey,
    now_ms: u64,
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
    let signature = key.sign(CHECKPOINT_CONTEXT, seq, &hash);
    let n = conn.execute(
        "INSERT OR IGNORE INTO checkpoints (seq, at_ms, head, signature) VALUES (?1, ?2, ?3, ?4)",
        params![seq, now_ms as i64, hash, signature],
    )?;
    Ok((n > 0).then_some(SignedHead {
        seq,
        at_ms: now_ms,
        head: hash,
        signature,
    }))
}

/// Deletes what `retention` no longer keeps and records the new anchor (in
/// one transaction). Returns how many records were removed.
pub(crate) fn prune(
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
    let signature = key.map(|k| k.sign(ANCHOR_CONTEXT, first_kept, &prev));
    tx.execute(
        "INSERT INTO prunes (at_ms, removed, anchor_seq, anchor_prev, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now_ms as i64, removed as i64, first_kept, prev, signature],
    )?;
    tx.commit()?;
    Ok(removed)
}

/// Where verification starts.
#[derive(Debug, Clone)]
pub(crate) struct Anchor {
    pub seq: i64,
    pub prev: [u8; 32],
    pub signature: Option<Vec<u8>>,
}

pub(crate) fn anchor(conn: &Connection) -> rusqlite::Result<Option<Anchor>> {
    let row: Option<(i64, Vec<u8>, Option<Vec<u8>>)> = conn
        .query_row(
            "SELECT anchor_seq, anchor_prev, signature FROM prunes ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(row.and_then(|(seq, p, signature)| {
        let prev: [u8; 32] = p.try_into().ok()?;
        Some(Anchor {
            seq,
            prev,
            signature,
        })
    }))
}

impl Anchor {
    pub(crate) fn signed_by(&self, key: &PublicKey) -> bool {
        self.signature
            .as_ref()
            .is_some_and(|s| key.verifies(ANCHOR_CONTEXT, self.seq, &self.prev, s))
    }
}

/// A stored checkpoint.
#[derive(Debug, Clone)]
pub(crate) struct Checkpoint {
    pub head: Vec<u8>,
    pub signature: Vec<u8>,
}

impl Checkpoint {
    pub(crate) fn signed_by(&self, key: &PublicKey, seq: i64) -> bool {
        key.verifies(CHECKPOINT_CONTEXT, seq, &self.head, &self.signature)
    }
}

pub(crate) fn checkpoints(
    conn: &Connection,
) -> rusqlite::Result<std::collections::BTreeMap<i64, Checkpoint>> {
    let mut stmt = conn.prepare("SELECT seq, head, signature FROM checkpoints ORDER BY seq")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            Checkpoint {
                head: r.get(1)?,
                signature: r.get(2)?,
            },
        ))
    })?;
    rows.collect()
}
