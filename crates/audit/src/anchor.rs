//! The anchor: the chain's signed heads kept outside the log.
//!
//! Checkpoints live in the same database as the records, so whoever can
//! delete the newest records can delete their checkpoints too, and the
//! shortened log still verifies. The writer therefore also appends every
//! signed head to an anchor file (one JSON line per checkpoint, synced to
//! disk), which an operator keeps elsewhere or ships to append-only
//! storage. [`verify_anchor`] checks the log against it: every head the
//! anchor holds must still be in the log with the same hash, so records cut
//! from the end, with or without their checkpoints, are found.

use std::io::Write as _;
use std::path::Path;

use crate::location::Location;
use crate::sign::{PublicKey, SignedHead};
use crate::store::AuditError;
use crate::verify::Verification;
use base64::Engine as _;

/// Appends one signed head to the anchor file and syncs it to disk.
pub(crate) fn append(path: &Path, head: &SignedHead) -> std::io::Result<()> {
    let line = serde_json::json!({
        "seq": head.seq,
        "at_ms": head.at_ms,
        "head": hex(&head.head),
        "signature": base64::engine::general_purpose::STANDARD.encode(&head.signature),
    });
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // One write per line, so a crash leaves at most a torn last line.
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_data()
}

/// A chain hash (32 bytes) in hex.
fn hex(b: &[u8]) -> String {
    <[u8; 32]>::try_from(b).map_or_else(
        |_| String::new(),
        |h| blake3::Hash::from_bytes(h).to_hex().to_string(),
    )
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    blake3::Hash::from_hex(s)
        .ok()
        .map(|h| h.as_bytes().to_vec())
}

fn parse(line: &str) -> Option<SignedHead> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(SignedHead {
        seq: v.get("seq")?.as_i64()?,
        at_ms: v.get("at_ms")?.as_u64()?,
        head: unhex(v.get("head")?.as_str()?)?,
        signature: base64::engine::general_purpose::STANDARD
            .decode(v.get("signature")?.as_str()?)
            .ok()?,
    })
}

/// What [`verify_anchor`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorReport {
    /// Intact (with the records the anchor proves), or the first head the
    /// log no longer matches.
    pub verification: Verification,
    /// The newest record the anchor vouches for.
    pub last_anchored: Option<i64>,
    /// Heads checked.
    pub heads: u64,
    /// Lines that are not a signed head (a torn last line after a crash).
    pub unreadable: u64,
}

/// Checks the log (a SQLite file or a PostgreSQL log) against the anchor file: each signed head must
/// name a record still in the log with that hash (heads older than the
/// retention anchor were pruned on purpose and are skipped), and, with
/// `key`, carry a valid signature. Intact reports how many records the
/// anchor proves: every record up to its newest head.
pub fn verify_anchor(
    log: impl Into<Location>,
    anchor: &Path,
    key: Option<&PublicKey>,
) -> Result<AnchorReport, AuditError> {
    let text = std::fs::read_to_string(anchor).map_err(|e| AuditError::Db {
        path: anchor.display().to_string(),
        message: format!("cannot read the anchor: {e}"),
    })?;
    let log = log.into();
    crate::read::isolated(|| check(&log, &text, key))
}

fn check(log: &Location, text: &str, key: Option<&PublicKey>) -> Result<AnchorReport, AuditError> {
    let mut log = crate::read::open(log)?;
    let (first, last) = log.bounds()?;
    let pruned_before = log.anchor().ok().flatten().map_or(1, |a| a.seq);
    let mut report = AnchorReport {
        verification: Verification::Intact { records: 0 },
        last_anchored: None,
        heads: 0,
        unreadable: 0,
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some(h) = parse(line) else {
            report.unreadable += 1;
            continue;
        };
        if h.seq < pruned_before {
            continue;
        }
        let broken = |reason: String| Verification::Broken {
            seq: h.seq,
            id: String::new(),
            reason,
        };
        if key.is_some_and(|k| !h.signed_by(k)) {
            report.verification = broken(
                "the anchor's signed head is not signed by this key (forged anchor line)".into(),
            );
            return Ok(report);
        }
        match log.hash_at(h.seq)? {
            None => {
                report.verification = broken(format!(
                    "the anchor vouches for record {} but the log ends at {} (records deleted from the end)",
                    h.seq,
                    last.map_or("the start".to_string(), |s| s.to_string())
                ));
                return Ok(report);
            }
            Some(hash) if hash != h.head => {
                report.verification = broken(format!(
                    "record {} does not have the hash the anchor holds (the log was rewritten)",
                    h.seq
                ));
                return Ok(report);
            }
            Some(_) => {}
        }
        report.heads += 1;
        report.last_anchored = report.last_anchored.max(Some(h.seq));
    }
    let proven = match (report.last_anchored, first) {
        (Some(l), Some(f)) if l >= f => (l - f + 1) as u64,
        _ => 0,
    };
    report.verification = Verification::Intact { records: proven };
    Ok(report)
}
