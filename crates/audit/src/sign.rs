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
//!
//! This file is the cryptography; each store keeps the tables
//! (`store/sqlite.rs`, `store/postgres.rs`).

use std::path::Path;
use std::time::Duration;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;

use crate::store::AuditError;

const CHECKPOINT_CONTEXT: &[u8] = b"castellan-checkpoint-v1";
const ANCHOR_CONTEXT: &[u8] = b"castellan-anchor-v1";
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410).
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

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

    /// Signs record `seq`'s chain hash: a checkpoint of the chain head.
    pub(crate) fn sign_head(&self, seq: i64, hash: &[u8], at_ms: u64) -> SignedHead {
        SignedHead {
            seq,
            at_ms,
            head: hash.to_vec(),
            signature: self.sign(CHECKPOINT_CONTEXT, seq, hash),
        }
    }

    /// Signs a retention anchor: the first kept record and the hash it
    /// chains from.
    pub(crate) fn sign_anchor(&self, seq: i64, prev: &[u8]) -> Vec<u8> {
        self.sign(ANCHOR_CONTEXT, seq, prev)
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

/// Where verification starts.
#[derive(Debug, Clone)]
pub(crate) struct Anchor {
    pub seq: i64,
    pub prev: [u8; 32],
    pub signature: Option<Vec<u8>>,
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
