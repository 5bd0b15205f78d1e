//! Walking the chain: the same checks over either store.

use crate::location::Location;
use crate::read::{COLUMNS, ChainRow};
use crate::record::{GENESIS, Record, chain_hash};
use crate::sign::PublicKey;
use crate::store::AuditError;

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
pub fn verify(at: impl Into<Location>) -> Result<Verification, AuditError> {
    verify_with(at, None).map(|r| r.verification)
}

/// Walks the chain from the start, or from the anchor retention left, and
/// checks every checkpoint against the chain; with `key`, also each
/// checkpoint's and the anchor's signature, so a chain rewritten without
/// the private key, or cut short, is found. Works on a SQLite file and on a
/// PostgreSQL log written by a whole fleet alike.
pub fn verify_with(at: impl Into<Location>, key: Option<&PublicKey>) -> Result<Report, AuditError> {
    let mut log = crate::read::open(&at.into())?;
    let anchor = log.anchor()?;
    let checkpoints = log.checkpoints()?;
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
    let mut count = 0u64;
    let mut last_seq: Option<i64> = None;
    let mut failure: Option<Verification> = None;
    log.rows(&mut |row: ChainRow| {
        let seq = row.seq;
        let broken = |reason: &str| Verification::Broken {
            seq,
            id: row.id.clone(),
            reason: reason.into(),
        };
        let fail = match expected_seq {
            Some(e) if seq != e => Some(broken(&format!(
                "records {e}..{} are missing (deleted)",
                seq - 1
            ))),
            _ if row.prev[..] != prev[..] => Some(broken(
                "does not follow the record before it (inserted, reordered or the one before was deleted)",
            )),
            _ if chain_hash(&prev, row.text.as_bytes())[..] != row.hash[..] => {
                Some(broken("its content does not match its hash (modified)"))
            }
            _ => match serde_json::from_str::<Record>(&row.text) {
                Ok(r) if r.canonical() == row.text.as_bytes() && r.id == row.id => {
                    column_mismatch(&row, &r).map(|c| broken(&c))
                }
                _ => Some(broken(
                    "its stored form is not a canonical record (modified)",
                )),
            },
        };
        let fail = fail.or_else(|| {
            let c = checkpoints.get(&seq)?;
            if c.head[..] != row.hash[..] {
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
            failure = Some(v);
            return false;
        }
        if checkpoints.contains_key(&seq) {
            report.checkpoints += 1;
            report.last_checkpoint = Some(seq);
            report.unsigned_tail = 0;
        } else {
            report.unsigned_tail += 1;
        }
        match <[u8; 32]>::try_from(&row.hash[..]) {
            Ok(h) => prev = h,
            Err(_) => {
                failure = Some(broken("its hash is not 32 bytes (modified)"));
                return false;
            }
        }
        expected_seq = Some(seq + 1);
        last_seq = Some(seq);
        count += 1;
        true
    })?;
    if let Some(v) = failure {
        report.verification = v;
        return Ok(report);
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
fn column_mismatch(row: &ChainRow, r: &Record) -> Option<String> {
    let at_ms = r.at_ms.to_string();
    let want: [&str; 5] = [&at_ms, &r.agent, &r.session, &r.target, &r.decision];
    COLUMNS
        .iter()
        .zip(row.columns.iter().zip(want))
        .find_map(|(name, (stored, want))| {
            (stored != want).then(|| {
                format!(
                    "its `{name}` column says `{stored}` but the hashed record says `{want}` (modified)"
                )
            })
        })
}
