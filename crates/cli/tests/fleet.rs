//! Fleet mode against the real PostgreSQL on 127.0.0.1:5432: several
//! gateway processes append one audit chain, `castellan audit verify` and
//! `audit query` read it by URL, and a strict log that cannot be reached
//! refuses calls instead of answering them unrecorded.

mod support;

use serde_json::json;
use support::{Gateway, call, open_session};

fn server() -> String {
    std::env::var("CASTELLAN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A fresh database, dropped when the test ends.
struct Database(String);

impl Database {
    fn new(name: &str) -> Database {
        let db = format!("castellan_fleet_{}_{name}", std::process::id());
        let mut admin =
            postgres::Client::connect(&format!("{}/postgres", server()), postgres::NoTls)
                .expect("PostgreSQL on 127.0.0.1:5432 (scripts/test starts it)");
        // One statement each: a batch runs as one transaction, which these
        // may not.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .expect("drop an earlier run's database");
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .expect("create the test database");
        Database(db)
    }

    fn url(&self) -> String {
        format!("{}/{}", server(), self.0)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut admin) =
            postgres::Client::connect(&format!("{}/postgres", server()), postgres::NoTls)
        {
            let _ =
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
        }
    }
}

fn castellan(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_castellan"))
        .args(args)
        .output()
        .expect("run castellan")
}

// Sync (the PostgreSQL client used to set up and tamper blocks on a runtime
// of its own); the agent's calls run on one made here.
#[test]
fn three_replicas_write_one_chain_that_castellan_verifies_by_url() {
    let db = Database::new("three");
    let replicas: Vec<Gateway> = (0..3)
        .map(|n| {
            let dir = support::scratch(&format!("replica{n}"));
            Gateway::start(&format!(
                "upstreams:\n  - name: files\n    builtin: files\naudit:\n  path: {}\n  postgres: {}\n  durability: strict\n",
                dir.join("audit.db").display(),
                db.url(),
            ))
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut sessions = Vec::new();
        for r in &replicas {
            sessions.push(open_session(&r.url).await);
        }
        // One agent's calls spread over the replicas, round robin.
        for n in 0..30u64 {
            let i = (n % 3) as usize;
            let reply = call(
                &replicas[i].url,
                &sessions[i],
                n + 10,
                "tools/call",
                json!({"name": "files__read_file", "arguments": {"path": format!("notes/{n}.md")}}),
            )
            .await;
            assert_eq!(reply.status, http::StatusCode::OK);
        }
    });
    // Strict: every answered call's record is in the database already.
    drop(replicas);
    let url = db.url();
    let verify = castellan(&["audit", "verify", &url]);
    let out = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(out.contains("intact"), "{out}");
    let query = castellan(&["audit", "query", &url, "--tool", "files__read_file"]);
    let calls = String::from_utf8_lossy(&query.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["method"] == "tools/call")
        .count();
    assert_eq!(calls, 30, "every call of every replica is in the one chain");
    // An edit in the database is named by the same command.
    let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let edited = c
        .execute(
            "UPDATE records SET record = replace(record, '\"allow\"', '\"deny\"') WHERE seq = 12",
            &[],
        )
        .expect("edit");
    assert_eq!(edited, 1);
    let verify = castellan(&["audit", "verify", &url]);
    assert_eq!(verify.status.code(), Some(1));
    let err = String::from_utf8_lossy(&verify.stderr);
    assert!(
        err.contains("chain broken") && err.contains("modified"),
        "{err}"
    );
}

#[test]
fn an_unreachable_fleet_log_stops_the_start_and_check_names_it() {
    let dir = support::scratch("fleet-check");
    let config = dir.join("castellan.yaml");
    std::fs::write(
        &config,
        format!(
            "{}audit:\n  path: {}\n  postgres: postgres://castellan:secret@127.0.0.1:1/audit\nupstreams:\n  - name: files\n    builtin: files\n",
            support::test_auth(),
            dir.join("audit.db").display()
        ),
    )
    .expect("config");
    let config = config.display().to_string();
    let check = castellan(&["check", &config]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(check.status.code(), Some(1), "{text}");
    assert!(text.contains("127.0.0.1:1/audit"), "{text}");
    assert!(
        !text.contains("secret"),
        "a password reached the output: {text}"
    );
}

/// Runs `sql` on the test server's `postgres` database.
fn on_server(sql: &str) {
    let mut admin = postgres::Client::connect(&format!("{}/postgres", server()), postgres::NoTls)
        .expect("PostgreSQL");
    admin.batch_execute(sql).expect(sql);
}

#[test]
fn a_strict_fleet_log_that_goes_away_refuses_calls_until_it_returns() {
    let db = Database::new("outage");
    let dir = support::scratch("fleet-outage");
    let gw = Gateway::start(&format!(
        "{}upstreams:\n  - name: files\n    builtin: files\naudit:\n  path: {}\n  postgres: {}\n  durability: strict\n",
        support::admin_section(),
        dir.join("audit.db").display(),
        db.url(),
    ));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let read = |sid: &str, n: u64| {
        let (url, sid) = (gw.url.clone(), sid.to_owned());
        runtime.block_on(async move {
            call(
                &url,
                &sid,
                n,
                "tools/call",
                json!({"name": "files__read_file", "arguments": {"path": "notes/a.md"}}),
            )
            .await
        })
    };
    let sid = runtime.block_on(open_session(&gw.url));
    assert!(read(&sid, 2).last().get("result").is_some());

    // The database stops taking connections and drops the gateway's.
    on_server(&format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS false; SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
        db.0, db.0
    ));
    let refused = read(&sid, 3);
    let text = refused.last().to_string();
    assert!(
        refused.last().get("result").is_none() || text.contains("isError"),
        "an unrecorded call was answered: {text}"
    );
    assert!(text.contains("audit-unavailable"), "{text}");
    let ready = runtime.block_on(support::admin(&gw, "GET", "/ready"));
    assert_eq!(ready.status, http::StatusCode::SERVICE_UNAVAILABLE);

    on_server(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", db.0));
    let back = std::time::Instant::now();
    loop {
        let r = read(&sid, 4);
        if r.last().to_string().contains("audit-unavailable") {
            assert!(
                back.elapsed() < std::time::Duration::from_secs(20),
                "the gateway never reconnected"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
            continue;
        }
        assert!(r.last().get("result").is_some(), "{}", r.last());
        break;
    }
    let ready = runtime.block_on(support::admin(&gw, "GET", "/ready"));
    assert_eq!(ready.status, http::StatusCode::OK);
}
