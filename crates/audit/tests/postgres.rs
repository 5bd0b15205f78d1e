//! The fleet's audit log on a real PostgreSQL (127.0.0.1:5432, trust auth;
//! `CASTELLAN_TEST_POSTGRES` names another server). Each test makes its own
//! database, so runs do not collide.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use castellan_audit::{
    AuditError, AuditLog, Checkpointing, Durability, Filter, Location, PublicKey, Record,
    SigningKey, Verification, WriterConfig, query, verify, verify_anchor, verify_with,
};

fn server() -> String {
    std::env::var("CASTELLAN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Drops a test's database when the test ends, passed or not.
struct Dropped(String);

impl Drop for Dropped {
    fn drop(&mut self) {
        if let Ok(mut admin) =
            postgres::Client::connect(&format!("{}/postgres", server()), postgres::NoTls)
        {
            let _ =
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
        }
    }
}

/// A fresh database for one test, and the server's port.
fn database(name: &str) -> (String, u16) {
    let db = format!("castellan_audit_{}_{name}", std::process::id());
    let mut admin = postgres::Client::connect(&format!("{}/postgres", server()), postgres::NoTls)
        .expect("PostgreSQL on 127.0.0.1:5432 (scripts/test starts it)");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .expect("drop");
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .expect("create");
    (db, server_port())
}

fn url(db: &str, port: u16) -> String {
    let base = server();
    let host = base.rsplit_once(':').map_or(base.as_str(), |(h, _)| h);
    format!("{host}:{port}/{db}")
}

fn sql(db: &str, statement: &str) -> Result<u64, postgres::Error> {
    let mut c = postgres::Client::connect(&url(db, server_port()), postgres::NoTls)?;
    c.execute(statement, &[])
}

fn server_port() -> u16 {
    server()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432)
}

fn record(replica: u32, i: u64, decision: &str) -> Record {
    Record {
        id: format!("r{replica}-{i:06}"),
        at_ms: 1_700_000_000_000 + i,
        agent: format!("bot-{}", i % 3),
        user: None,
        session: format!("s{}", i % 5),
        upstream: "mail".into(),
        method: "tools/call".into(),
        target: "send_email".into(),
        args_digest: "00".into(),
        args_redacted: serde_json::json!({"to": "[email]", "quote": "it's \"fine\"\n"}),
        decision: decision.into(),
        rules: vec!["r1".into()],
        reason: "because".into(),
        facts: serde_json::json!({}),
        risk_before: 0,
        risk_after: 5,
        latency_us: 7,
    }
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("castellan-pg-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

#[test]
fn three_replicas_append_one_chain_that_verifies_and_an_edit_is_named() {
    let (db, port) = database("three");
    let _drop = Dropped(db.clone());
    let log = Location::parse(&url(&db, port));
    let replicas: Vec<_> = (0..3u32)
        .map(|n| {
            let durability = if n == 0 {
                Durability::Strict
            } else {
                Durability::Batched
            };
            let cfg = WriterConfig {
                max_batch: 16,
                max_delay: Duration::from_millis(2),
                ..WriterConfig::default()
            };
            AuditLog::open_at(&log, durability, cfg).expect("open")
        })
        .collect();
    // Each replica appends from two threads at once, all replicas together.
    let threads: Vec<JoinHandle<()>> = replicas
        .iter()
        .enumerate()
        .flat_map(|(n, (w, _))| {
            (0..2u64).map(move |t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..60 {
                        let i = t * 1000 + i;
                        let d = if i % 7 == 0 { "deny" } else { "allow" };
                        w.append(record(n as u32, i, d)).expect("append");
                    }
                })
            })
        })
        .collect();
    for t in threads {
        t.join().expect("appender");
    }
    for (w, handle) in replicas {
        w.flush().expect("flush");
        drop(w);
        handle.join().expect("writer");
    }
    assert_eq!(
        verify(&log).expect("verify"),
        Verification::Intact { records: 360 }
    );
    let denies = query(
        &log,
        &Filter {
            decision: Some("deny".into()),
            session: Some("s0".into()),
            ..Filter::default()
        },
    )
    .expect("query");
    assert!(!denies.is_empty());
    assert!(
        denies
            .iter()
            .all(|s| s.record.decision == "deny" && s.record.session == "s0")
    );
    let last = query(
        &log,
        &Filter {
            limit: Some(3),
            ..Filter::default()
        },
    )
    .expect("query");
    assert_eq!(
        last.iter().map(|s| s.seq).collect::<Vec<_>>(),
        vec![358, 359, 360]
    );
    // An edit by someone with database access is named.
    sql(
        &db,
        "UPDATE records SET record = replace(record, '\"deny\"', '\"allow\"') WHERE seq = (SELECT min(seq) FROM records WHERE decision = 'deny')",
    )
    .expect("edit");
    match verify(&log).expect("verify") {
        Verification::Broken { reason, .. } => assert!(reason.contains("modified"), "{reason}"),
        other => panic!("an edited record passed: {other:?}"),
    }
}

#[test]
fn the_schema_refuses_a_fork_of_the_chain() {
    let (db, port) = database("fork");
    let _drop = Dropped(db.clone());
    let log = Location::parse(&url(&db, port));
    let (w, handle) =
        AuditLog::open_at(&log, Durability::Strict, WriterConfig::default()).expect("open");
    for i in 0..3 {
        w.append(record(0, i, "allow")).expect("append");
    }
    drop(w);
    handle.join().expect("writer");
    // A second record following record 2 (a replica that read a stale head).
    let fork = sql(
        &db,
        "INSERT INTO records SELECT 99, 'forged', at_ms, agent, session, target, decision, record, prev_hash, hash FROM records WHERE seq = 3",
    );
    let e = fork.expect_err("a fork was stored");
    let constraint = e.as_db_error().and_then(|d| d.constraint());
    assert_eq!(constraint, Some("records_prev_hash_key"), "{e:?}");
}

#[test]
fn signed_checkpoints_and_the_anchor_work_against_postgres() {
    let (db, port) = database("signed");
    let _drop = Dropped(db.clone());
    let log = Location::parse(&url(&db, port));
    let dir = temp("signed");
    let (private, public) = SigningKey::generate().expect("keygen");
    std::fs::write(dir.join("k.pem"), private).expect("key");
    std::fs::write(dir.join("k.pub"), public).expect("pub");
    let anchor = dir.join("replica.anchor");
    let cfg = WriterConfig {
        checkpoint: Some(Arc::new(Checkpointing {
            key: SigningKey::from_file(&dir.join("k.pem")).expect("key"),
            every: 5,
            interval: Duration::from_secs(3600),
        })),
        anchor: Some(anchor.clone()),
        ..WriterConfig::default()
    };
    let (w, handle) = AuditLog::open_at(&log, Durability::Strict, cfg).expect("open");
    for i in 0..20 {
        w.append(record(0, i, "allow")).expect("append");
    }
    drop(w);
    handle.join().expect("writer");
    let key = PublicKey::from_file(&dir.join("k.pub")).expect("pub");
    let report = verify_with(&log, Some(&key)).expect("verify");
    assert_eq!(report.verification, Verification::Intact { records: 20 });
    assert_eq!(report.last_checkpoint, Some(20));
    sql(&db, "DELETE FROM records WHERE seq > 12").expect("cut");
    sql(&db, "DELETE FROM checkpoints WHERE seq > 12").expect("cut");
    let r = verify_anchor(&log, &anchor, Some(&key)).expect("anchor");
    let Verification::Broken { seq, reason, .. } = r.verification else {
        panic!("a cut tail passed the anchor: {r:?}");
    };
    assert_eq!(seq, 15);
    assert!(reason.contains("deleted from the end"), "{reason}");
}

/// A TCP proxy in front of PostgreSQL that a test can cut and restore: the
/// database "goes away" for the gateway exactly as over a network.
struct Proxy {
    port: u16,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start(port: u16) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the proxy");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (s, c) = (stop.clone(), conns.clone());
        let accept = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(upstream) = TcpStream::connect(("127.0.0.1", server_port())) else {
                            continue;
                        };
                        for (a, b) in [(&client, &upstream), (&upstream, &client)] {
                            let (Ok(mut from), Ok(mut to)) = (a.try_clone(), b.try_clone()) else {
                                continue;
                            };
                            std::thread::spawn(move || {
                                let mut buf = [0u8; 16 * 1024];
                                while let Ok(n) = from.read(&mut buf) {
                                    if n == 0 || to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                let _ = to.shutdown(Shutdown::Both);
                            });
                        }
                        if let Ok(mut all) = c.lock() {
                            all.push(client);
                            all.push(upstream);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy {
            port,
            stop,
            conns,
            accept: Some(accept),
        }
    }

    /// Closes the listener and every connection through it.
    fn cut(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            t.join().expect("accept loop");
        }
        if let Ok(mut all) = self.conns.lock() {
            for c in all.drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_outage_spools_batched_records_refuses_strict_ones_and_loses_and_duplicates_nothing() {
    let (db, _) = database("outage");
    let _drop = Dropped(db.clone());
    let mut proxy = Proxy::start(0);
    let port = proxy.port;
    let log = Location::parse(&url(&db, port));
    let dir = temp("outage");
    let cfg = WriterConfig {
        max_batch: 8,
        max_delay: Duration::from_millis(2),
        spool: Some(dir.join("audit.spool")),
        spool_max: 1000,
        ..WriterConfig::default()
    };
    let (batched, b_handle) =
        AuditLog::open_at(&log, Durability::Batched, cfg).expect("open batched");
    let (strict, s_handle) =
        AuditLog::open_at(&log, Durability::Strict, WriterConfig::default()).expect("open strict");
    for i in 0..20 {
        batched.append(record(1, i, "allow")).expect("append");
    }
    strict.append(record(2, 0, "deny")).expect("strict before");
    batched.flush().expect("flush");

    proxy.cut();
    for i in 20..60 {
        batched
            .append(record(1, i, "allow"))
            .expect("batched appends go on");
    }
    batched.flush().expect("flush into the spool");
    assert!(batched.unreachable(), "the outage was not noticed");
    assert_eq!(batched.spooled(), 40, "every record waits in the spool");
    let refused = strict.append(record(2, 1, "deny"));
    assert!(
        matches!(refused, Err(AuditError::Unavailable { .. })),
        "a strict record must be refused while the database is away: {refused:?}"
    );

    // The database returns on the same address.
    let _proxy = Proxy::start(port);
    wait_for("the spool to drain", || batched.spooled() == 0);
    strict.append(record(2, 2, "deny")).expect("strict after");
    drop((batched, strict));
    b_handle.join().expect("writer");
    s_handle.join().expect("writer");
    assert_eq!(
        verify(&log).expect("verify"),
        Verification::Intact { records: 62 }
    );
    let ids: Vec<String> = query(&log, &Filter::default())
        .expect("query")
        .into_iter()
        .map(|s| s.record.id)
        .filter(|id| id.starts_with("r1-"))
        .collect();
    let expected: Vec<String> = (0..60).map(|i| format!("r1-{i:06}")).collect();
    assert_eq!(ids, expected, "in order, each once");
}

#[test]
fn a_full_spool_refuses_records_rather_than_losing_them() {
    let (db, _) = database("full");
    let _drop = Dropped(db.clone());
    let mut proxy = Proxy::start(0);
    let log = Location::parse(&url(&db, proxy.port));
    let dir = temp("full");
    let cfg = WriterConfig {
        max_delay: Duration::from_millis(1),
        spool: Some(dir.join("audit.spool")),
        spool_max: 10,
        ..WriterConfig::default()
    };
    let (w, _handle) = AuditLog::open_at(&log, Durability::Batched, cfg).expect("open");
    proxy.cut();
    let mut refused = None;
    for i in 0..200 {
        if let Err(e) = w.append(record(0, i, "allow")) {
            refused = Some(e);
            break;
        }
        let _ = w.flush();
    }
    let e = refused.expect("a full spool took more records");
    assert!(matches!(e, AuditError::SpoolFull { limit: 10, .. }), "{e}");
    assert!(w.spooled() <= 10);
}

#[test]
fn an_unreachable_database_at_start_is_a_clear_error() {
    let e = AuditLog::open_at(
        &Location::parse("postgres://castellan:secret@127.0.0.1:1/nowhere"),
        Durability::Strict,
        WriterConfig::default(),
    )
    .expect_err("opened a log on a closed port");
    let text = e.to_string();
    assert!(e.is_unavailable(), "{text}");
    assert!(
        text.contains("127.0.0.1:1/nowhere") && !text.contains("secret"),
        "{text}"
    );
}
