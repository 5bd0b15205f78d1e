use super::*;

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
    conn.execute(
        "UPDATE records SET record = ?1, hash = ?2 WHERE seq = 7",
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
