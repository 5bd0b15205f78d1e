use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, params};

use super::sqlite::open;
use super::*;
use crate::record::{GENESIS, chain_hash};
use crate::sign::{Checkpointing, PublicKey, Retention, SigningKey};
use crate::{Filter, Report, Verification, query, verify, verify_with};

fn record(i: u64, decision: &str) -> Record {
    Record {
        id: format!("d-{i:06}"),
        at_ms: 1_700_000_000_000 + i,
        agent: if i.is_multiple_of(2) {
            "bot-a".into()
        } else {
            "bot-b".into()
        },
        user: None,
        session: "s1".into(),
        upstream: "mail".into(),
        method: "tools/call".into(),
        target: "send_email".into(),
        args_digest: "00".into(),
        args_redacted: serde_json::json!({"to": "[email]"}),
        decision: decision.into(),
        rules: vec!["r1".into()],
        reason: "because".into(),
        facts: serde_json::json!({}),
        risk_before: 0,
        risk_after: 5,
        latency_us: 7,
    }
}

fn fresh(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("castellan-audit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir.join("audit.db")
}

fn write(path: &Path, n: u64, durability: Durability) {
    write_from(path, 0, n, durability)
}

fn write_from(path: &Path, start: u64, n: u64, durability: Durability) {
    let (w, handle) = AuditLog::open(path, durability, WriterConfig::default()).expect("open");
    for i in start..start + n {
        w.append(record(
            i,
            if i.is_multiple_of(3) { "deny" } else { "allow" },
        ))
        .expect("append");
    }
    w.flush().expect("flush");
    drop(w);
    handle.join().expect("writer");
}

fn exec(path: &Path, sql: &str) {
    Connection::open(path)
        .expect("open")
        .execute_batch(sql)
        .expect(sql);
}

fn broken_at(path: &Path) -> (i64, String) {
    match verify(path).expect("verify") {
        Verification::Broken { seq, reason, .. } => (seq, reason),
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

#[test]
fn an_untouched_log_verifies_and_survives_reopening() {
    let path = fresh("intact");
    write(&path, 50, Durability::Batched);
    write_from(&path, 50, 10, Durability::Strict);
    assert_eq!(
        verify(&path).expect("verify"),
        Verification::Intact { records: 60 }
    );
}

#[test]
fn a_modified_record_is_named() {
    let path = fresh("modified");
    write(&path, 20, Durability::Batched);
    exec(
        &path,
        "UPDATE records SET record = replace(record, '\"deny\"', '\"allow\"') WHERE seq = 7",
    );
    let (seq, reason) = broken_at(&path);
    assert_eq!(seq, 7);
    assert!(reason.contains("modified"), "{reason}");
}

#[test]
fn a_modified_and_rehashed_record_still_breaks_the_next_link() {
    let path = fresh("rehashed");
    write(&path, 20, Durability::Batched);
    // An attacker rewrites record 7 and recomputes its own hash, but cannot
    // fix every later record without the log noticing.
    let conn = Connection::open(&path).expect("open");
    let (text, prev): (String, Vec<u8>) = conn
        .query_row(
            "SELECT record, prev_hash FROM records WHERE seq = 7",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row");
    let forged = text.replace("\"deny\"", "\"allow\"");
    let mut p = [0u8; 32];
    p.copy_from_slice(&prev);
    let h = chain_hash(&p, forged.as_bytes());
    // The column beside it too, or verify names the column first.
    conn.execute(
        "UPDATE records SET record = ?1, hash = ?2, decision = 'allow' WHERE seq = 7",
        params![forged, &h[..]],
    )
    .expect("forge");
    let (seq, _) = broken_at(&path);
    assert_eq!(seq, 8);
}

#[test]
fn a_deleted_record_is_named() {
    let path = fresh("deleted");
    write(&path, 20, Durability::Batched);
    exec(&path, "DELETE FROM records WHERE seq = 5");
    let (seq, reason) = broken_at(&path);
    assert_eq!(seq, 6);
    assert!(
        reason.contains("deleted") || reason.contains("missing"),
        "{reason}"
    );
}

#[test]
fn an_inserted_or_reordered_record_is_named() {
    let path = fresh("inserted");
    write(&path, 20, Durability::Batched);
    // Swap the content of two records (reorder).
    exec(
        &path,
        "UPDATE records SET seq = -1 WHERE seq = 3; UPDATE records SET seq = 3 WHERE seq = 4; UPDATE records SET seq = 4 WHERE seq = -1;",
    );
    let (seq, _) = broken_at(&path);
    assert_eq!(seq, 3);
    let path = fresh("inserted2");
    write(&path, 5, Durability::Batched);
    exec(
        &path,
        "INSERT INTO records (seq, id, at_ms, agent, session, target, decision, record, prev_hash, hash) SELECT 100, 'x', at_ms, agent, session, target, decision, record, prev_hash, hash FROM records WHERE seq = 2",
    );
    let (seq, _) = broken_at(&path);
    assert_eq!(seq, 100);
}

#[test]
fn queries_filter_by_agent_decision_and_time() {
    let path = fresh("query");
    write(&path, 30, Durability::Batched);
    let denies = query(
        &path,
        &Filter {
            decision: Some("deny".into()),
            ..Filter::default()
        },
    )
    .expect("query");
    assert_eq!(denies.len(), 10);
    let a = query(
        &path,
        &Filter {
            agent: Some("bot-a".into()),
            since_ms: Some(1_700_000_000_010),
            ..Filter::default()
        },
    )
    .expect("query");
    assert!(
        a.iter()
            .all(|s| s.record.agent == "bot-a" && s.record.at_ms >= 1_700_000_000_010)
    );
    let last = query(
        &path,
        &Filter {
            limit: Some(3),
            ..Filter::default()
        },
    )
    .expect("query");
    assert_eq!(
        last.iter().map(|s| s.seq).collect::<Vec<_>>(),
        vec![28, 29, 30]
    );
    let by_upstream = |u: &str| {
        query(
            &path,
            &Filter {
                upstream: Some(u.into()),
                target: Some("send_email".into()),
                ..Filter::default()
            },
        )
        .expect("query")
        .len()
    };
    assert_eq!(by_upstream("mail"), 30);
    assert_eq!(by_upstream("files"), 0);
}

#[test]
fn one_bad_record_does_not_lose_the_rest_of_its_batch() {
    let path = fresh("badbatch");
    write(&path, 3, Durability::Batched);
    let (w, handle) =
        AuditLog::open(&path, Durability::Batched, WriterConfig::default()).expect("open");
    w.append(record(1, "allow")).expect("queued"); // duplicate id: refused by the store
    w.append(record(10, "allow")).expect("queued");
    w.flush().expect("flush");
    drop(w);
    handle.join().expect("writer");
    assert_eq!(
        verify(&path).expect("verify"),
        Verification::Intact { records: 4 }
    );
}

/// A fresh key pair on disk: (private key file, public key file).
fn keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (private, public) = SigningKey::generate().expect("keygen");
    let k = dir.join(format!("{name}.pem"));
    let p = dir.join(format!("{name}.pub.pem"));
    std::fs::write(&k, private).expect("write key");
    std::fs::write(&p, public).expect("write pub");
    (k, p)
}

fn signed_config(key: &Path, every: u64) -> WriterConfig {
    WriterConfig {
        checkpoint: Some(std::sync::Arc::new(Checkpointing {
            key: SigningKey::from_file(key).expect("key"),
            every,
            interval: Duration::from_secs(3600),
        })),
        ..WriterConfig::default()
    }
}

fn write_signed(path: &Path, key: &Path, start: u64, n: u64, every: u64) {
    let (w, handle) =
        AuditLog::open(path, Durability::Batched, signed_config(key, every)).expect("open");
    for i in start..start + n {
        // One record per batch, so checkpoints land every `every` records.
        w.append(record(i, "allow")).expect("append");
        w.flush().expect("flush");
    }
    drop(w);
    handle.join().expect("writer");
}

fn report(path: &Path, public: &Path) -> Report {
    verify_with(path, Some(&PublicKey::from_file(public).expect("pub"))).expect("verify")
}

#[test]
fn signed_checkpoints_verify_with_only_the_public_key() {
    let path = fresh("signed");
    let dir = path.parent().expect("dir").to_path_buf();
    let (key, public) = keys(&dir, "k");
    write_signed(&path, &key, 0, 25, 10);
    let r = report(&path, &public);
    assert_eq!(r.verification, Verification::Intact { records: 25 });
    // Every 10 records, and the rest when the writer stops.
    assert_eq!(r.checkpoints, 3, "{r:?}");
    assert_eq!(r.last_checkpoint, Some(25));
    assert_eq!(r.unsigned_tail, 0);
    // Another key does not vouch for this log.
    let (_, other) = keys(&dir, "other");
    let r = report(&path, &other);
    match r.verification {
        Verification::Broken { seq, reason, .. } => {
            assert_eq!(seq, 10);
            assert!(reason.contains("signature"), "{reason}");
        }
        v => panic!("a wrong key must not verify: {v:?}"),
    }
}

#[test]
fn a_rewritten_and_fully_rehashed_chain_is_caught_by_the_signed_checkpoint() {
    let path = fresh("rewritten");
    let dir = path.parent().expect("dir").to_path_buf();
    let (key, public) = keys(&dir, "k");
    write_signed(&path, &key, 0, 20, 10);
    // The attacker changes record 3 and re-hashes every record after it:
    // the plain chain check passes, the signed checkpoint at 10 does not.
    let conn = Connection::open(&path).expect("open");
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT seq, record FROM records ORDER BY seq")
        .expect("prep")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    let mut prev = GENESIS;
    for (seq, text) in rows {
        let text = if seq == 3 {
            text.replace("\"allow\"", "\"deny\"")
        } else {
            text
        };
        let h = chain_hash(&prev, text.as_bytes());
        conn.execute(
            "UPDATE records SET record = ?1, prev_hash = ?2, hash = ?3, decision = json_extract(?1, '$.decision') WHERE seq = ?4",
            params![text, &prev[..], &h[..], seq],
        )
        .expect("rewrite");
        prev = h;
    }
    drop(conn);
    let r = report(&path, &public);
    match r.verification {
        Verification::Broken { seq, reason, .. } => {
            assert_eq!(seq, 10, "{reason}");
            assert!(reason.contains("checkpoint"), "{reason}");
        }
        v => panic!("rewrite not found: {v:?}"),
    }
    // Forging the checkpoint to match needs the private key: a re-signed
    // head with another key is refused as well.
    let (other_key, _) = keys(&dir, "attacker");
    let forged = SigningKey::from_file(&other_key).expect("key");
    let conn = Connection::open(&path).expect("open");
    conn.execute("DELETE FROM checkpoints", []).expect("drop");
    drop(conn);
    let conn = Connection::open(&path).expect("open");
    super::sqlite::sign_head(&conn, &forged).expect("forge");
    drop(conn);
    assert!(matches!(
        report(&path, &public).verification,
        Verification::Broken { .. }
    ));
}

#[test]
fn an_altered_checkpoint_and_a_cut_tail_are_named() {
    let path = fresh("altered-checkpoint");
    let dir = path.parent().expect("dir").to_path_buf();
    let (key, public) = keys(&dir, "k");
    write_signed(&path, &key, 0, 20, 10);
    exec(
        &path,
        "UPDATE checkpoints SET signature = zeroblob(64) WHERE seq = 10",
    );
    let Verification::Broken { seq, reason, .. } = report(&path, &public).verification else {
        panic!("altered checkpoint not found");
    };
    assert_eq!(seq, 10);
    assert!(reason.contains("signature"), "{reason}");

    let path = fresh("cut-tail");
    write_signed(&path, &key, 0, 20, 10);
    exec(&path, "DELETE FROM records WHERE seq > 15");
    let Verification::Broken { seq, reason, .. } = report(&path, &public).verification else {
        panic!("cut tail not found");
    };
    assert_eq!(seq, 20);
    assert!(reason.contains("deleted from the end"), "{reason}");
}

#[test]
fn retention_by_count_keeps_the_chain_verifiable_from_a_signed_anchor() {
    let path = fresh("retention-count");
    let dir = path.parent().expect("dir").to_path_buf();
    let (key, public) = keys(&dir, "k");
    write_signed(&path, &key, 0, 30, 10);
    let signing = SigningKey::from_file(&key).expect("key");
    let mut conn = Connection::open(&path).expect("open");
    let removed = super::sqlite::prune(
        &mut conn,
        &Retention {
            max_age: None,
            max_records: Some(12),
        },
        Some(&signing),
        now_ms(),
    )
    .expect("prune");
    drop(conn);
    assert_eq!(removed, 18);
    let r = report(&path, &public);
    assert_eq!(r.verification, Verification::Intact { records: 12 });
    assert_eq!(r.anchor, Some(19));
    assert_eq!(
        verify(&path).expect("verify"),
        Verification::Intact { records: 12 }
    );
    // Deleting more from the start without a new anchor is still found.
    exec(&path, "DELETE FROM records WHERE seq = 19");
    assert_eq!(broken_at(&path).0, 20);
}

#[test]
fn retention_by_age_runs_in_the_writer_and_an_unsigned_anchor_is_refused_with_the_key() {
    let path = fresh("retention-age");
    let dir = path.parent().expect("dir").to_path_buf();
    let (key, public) = keys(&dir, "k");
    // Records at_ms are in 2023: all older than a day, so only the newest
    // stays as the anchor when the next writer starts.
    write_signed(&path, &key, 0, 5, 100);
    let cfg = WriterConfig {
        retention: Retention {
            max_age: Some(Duration::from_secs(86_400)),
            max_records: None,
        },
        ..signed_config(&key, 100)
    };
    let (w, handle) = AuditLog::open(&path, Durability::Batched, cfg).expect("open");
    w.flush().expect("flush");
    drop(w);
    handle.join().expect("writer");
    let r = report(&path, &public);
    assert_eq!(r.verification, Verification::Intact { records: 1 }, "{r:?}");
    assert_eq!(r.anchor, Some(5));
    // Someone without the key prunes further and forges an anchor.
    exec(
        &path,
        "INSERT INTO prunes (at_ms, removed, anchor_seq, anchor_prev, signature) SELECT 0, 1, seq, prev_hash, NULL FROM records WHERE seq = 5",
    );
    assert!(verify(&path).is_ok());
    let Verification::Broken { reason, .. } = report(&path, &public).verification else {
        panic!("unsigned anchor accepted");
    };
    assert!(reason.contains("anchor"), "{reason}");
}

#[test]
fn batched_records_from_many_threads_past_the_batch_size_all_land_in_order() {
    // The batched writer sleeps through its window and then takes what
    // came; a burst larger than a batch spills into the next ones.
    let path = fresh("batched-burst");
    let cfg = WriterConfig {
        max_batch: 7,
        max_delay: Duration::from_millis(5),
        ..WriterConfig::default()
    };
    let (w, handle) = AuditLog::open(&path, Durability::Batched, cfg).expect("open");
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let w = w.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    w.append(record(t * 100 + i, "allow")).expect("append");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("appender");
    }
    w.flush().expect("flush");
    assert_eq!(w.queue_depth(), 0);
    let stored = query(&path, &Filter::default()).expect("query");
    assert_eq!(stored.len(), 100);
    // Each thread's records keep their order in the chain.
    for t in 0..4u64 {
        let mine: Vec<&str> = stored
            .iter()
            .map(|s| s.record.id.as_str())
            .filter(|id| id[2..].parse::<u64>().is_ok_and(|n| n / 100 == t))
            .collect();
        let mut sorted = mine.clone();
        sorted.sort_unstable();
        assert_eq!(mine, sorted);
    }
    drop(w);
    handle.join().expect("writer");
    assert_eq!(
        verify(&path).expect("verify"),
        Verification::Intact { records: 100 }
    );
}

/// A log written the way the store wrote records before the canonical
/// bytes had their own writer (`serde_json::to_vec`, stored as text) still
/// verifies, queries, and takes new records on the same chain.
#[test]
fn a_log_written_with_serde_json_bytes_verifies_and_continues() {
    let path = fresh("serde-json-bytes");
    drop(open(&path).expect("schema"));
    let conn = Connection::open(&path).expect("open");
    let mut prev = GENESIS;
    for i in 0..20u64 {
        let mut r = record(i, if i % 4 == 0 { "deny" } else { "allow" });
        r.reason = format!("quote \" backslash \\ newline \n tab \t nul \u{0} é 😀 {i}");
        r.args_redacted =
            serde_json::json!({"to": "<24 chars>", "n": i, "x": 1.5, "ctl": "\u{1f}\u{7f}"});
        r.facts = serde_json::json!({"reasons": [{"rule": "r1", "message": "a \"b\""}], "neg": -3});
        r.user = (i % 3 == 0).then(|| "u@example.com".to_owned());
        let canonical = serde_json::to_vec(&r).expect("serialise");
        let hash = chain_hash(&prev, &canonical);
        conn.execute(
            "INSERT INTO records (id, at_ms, agent, session, target, decision, record, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![r.id, r.at_ms as i64, r.agent, r.session, r.target, r.decision, String::from_utf8_lossy(&canonical), &prev[..], &hash[..]],
        )
        .expect("insert");
        prev = hash;
    }
    drop(conn);
    assert_eq!(
        verify(&path).expect("verify"),
        Verification::Intact { records: 20 }
    );
    let deny = query(
        &path,
        &Filter {
            decision: Some("deny".into()),
            ..Default::default()
        },
    )
    .expect("query");
    assert_eq!(deny.len(), 5);
    assert!(deny[0].record.reason.contains("😀"));
    write_from(&path, 20, 10, Durability::Batched);
    assert_eq!(
        verify(&path).expect("verify"),
        Verification::Intact { records: 30 }
    );
}

#[test]
fn an_edited_column_is_named_and_queries_read_the_hashed_record() {
    let path = fresh("columns");
    write(&path, 10, Durability::Strict);
    // Record 4 (index 3) is a deny; hide it from `--decision deny`.
    exec(&path, "UPDATE records SET decision = 'allow' WHERE seq = 4");
    let (seq, reason) = broken_at(&path);
    assert_eq!(seq, 4);
    assert!(reason.contains("`decision` column"), "{reason}");
    let deny = Filter {
        decision: Some("deny".into()),
        ..Filter::default()
    };
    let seqs: Vec<i64> = query(&path, &deny)
        .expect("query")
        .iter()
        .map(|s| s.seq)
        .collect();
    assert_eq!(seqs, vec![1, 4, 7, 10], "the hashed record decides");
    exec(&path, "UPDATE records SET decision = 'deny' WHERE seq = 4");
    for (column, value) in [
        ("agent", "'x'"),
        ("session", "'x'"),
        ("target", "'x'"),
        ("at_ms", "0"),
    ] {
        exec(
            &path,
            &format!("UPDATE records SET {column} = {value} WHERE seq = 4"),
        );
        let (seq, reason) = broken_at(&path);
        assert_eq!(seq, 4, "{column}");
        assert!(
            reason.contains(&format!("`{column}` column")),
            "{column}: {reason}"
        );
        let by_agent = Filter {
            agent: Some("bot-b".into()),
            session: Some("s1".into()),
            target: Some("send_email".into()),
            since_ms: Some(1_700_000_000_003),
            until_ms: Some(1_700_000_000_004),
            ..Filter::default()
        };
        let seqs: Vec<i64> = query(&path, &by_agent)
            .expect("query")
            .iter()
            .map(|s| s.seq)
            .collect();
        assert_eq!(seqs, vec![4], "{column}");
        exec(
            &path,
            "UPDATE records SET agent = 'bot-b', session = 's1', target = 'send_email', at_ms = 1700000000003 WHERE seq = 4",
        );
    }
    assert_eq!(
        verify(&path).expect("verify"),
        Verification::Intact { records: 10 }
    );
}

#[test]
fn the_anchor_outside_the_log_finds_a_cut_tail_the_log_alone_does_not() {
    let path = fresh("anchor");
    let dir = path.parent().expect("dir").to_path_buf();
    let (key, public) = keys(&dir, "k");
    let anchor = dir.join("audit.anchor");
    let cfg = WriterConfig {
        anchor: Some(anchor.clone()),
        ..signed_config(&key, 5)
    };
    let (w, handle) = AuditLog::open(&path, Durability::Strict, cfg).expect("open");
    for i in 0..20 {
        w.append(record(i, "allow")).expect("append");
    }
    drop(w);
    handle.join().expect("writer");
    let key = PublicKey::from_file(&public).expect("pub");
    let r = crate::verify_anchor(&path, &anchor, Some(&key)).expect("anchor");
    assert_eq!(
        r.verification,
        Verification::Intact { records: 20 },
        "{r:?}"
    );
    assert_eq!(r.last_anchored, Some(20));
    exec(
        &path,
        "DELETE FROM records WHERE seq > 12; DELETE FROM checkpoints WHERE seq > 12;",
    );
    assert!(matches!(
        report(&path, &public).verification,
        Verification::Intact { records: 12 }
    ));
    let r = crate::verify_anchor(&path, &anchor, Some(&key)).expect("anchor");
    let Verification::Broken { seq, reason, .. } = r.verification else {
        panic!("a cut tail passed the anchor: {r:?}");
    };
    assert_eq!(seq, 15);
    assert!(reason.contains("deleted from the end"), "{reason}");
}
