//! In strict durability, a decision's record is on disk before the agent
//! gets its answer: killing the gateway (SIGKILL) under load, again and
//! again, loses no record of an answered call, and the chain still verifies.

mod support;

use std::sync::{Arc, Mutex};

use serde_json::json;
use support::{Gateway, call, open_session};

fn digest(args: &serde_json::Value) -> String {
    blake3::hash(&serde_json::to_vec(args).expect("json"))
        .to_hex()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strict_mode_keeps_every_answered_decision_across_kills() {
    let dir = support::scratch("crash");
    let db = dir.join("audit.db");
    let yaml = format!(
        "audit:\n  path: {}\n  durability: strict\nupstreams:\n  - name: files\n    builtin: files\n",
        db.display()
    );
    let answered: Arc<Mutex<Vec<String>>> = Arc::default();
    for round in 0..4u32 {
        let mut gw = Gateway::start(&yaml);
        let url = gw.url.clone();
        let mut workers = Vec::new();
        for w in 0..4u32 {
            let url = url.clone();
            let answered = answered.clone();
            workers.push(tokio::spawn(async move {
                let Ok(sid) =
                    tokio::time::timeout(std::time::Duration::from_secs(5), open_session(&url))
                        .await
                else {
                    return;
                };
                for n in 0..10_000u32 {
                    let args = json!({"path": format!("notes/r{round}-w{w}-n{n}.md")});
                    let (u, s, a) = (url.clone(), sid.clone(), args.clone());
                    // The helper panics when the connection dies: run it in a
                    // task so a killed gateway just ends this worker. A reply
                    // counts only when it arrived whole.
                    let req = tokio::spawn(async move {
                        call(
                            &u,
                            &s,
                            u64::from(n) + 1,
                            "tools/call",
                            json!({"name": "files__read_file", "arguments": a}),
                        )
                        .await
                    });
                    match req.await {
                        Ok(r) if r.status == http::StatusCode::OK => {
                            answered.lock().expect("lock").push(digest(&args))
                        }
                        _ => return,
                    }
                }
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(
            400 + 150 * u64::from(round),
        ))
        .await;
        gw.kill();
        for w in workers {
            let _ = w.await;
        }
    }
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_castellan"))
        .args(["audit", "verify"])
        .arg(&db)
        .output()
        .expect("verify");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let q = std::process::Command::new(env!("CARGO_BIN_EXE_castellan"))
        .args(["audit", "query"])
        .arg(&db)
        .output()
        .expect("query");
    let recorded: std::collections::HashSet<String> = String::from_utf8_lossy(&q.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|r| r["args_digest"].as_str().map(str::to_owned))
        .collect();
    let answered = answered.lock().expect("lock");
    eprintln!(
        "{} answered calls, {} records",
        answered.len(),
        recorded.len()
    );
    assert!(
        answered.len() > 20,
        "the load produced answers ({})",
        answered.len()
    );
    let missing: Vec<&String> = answered.iter().filter(|d| !recorded.contains(*d)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered calls have no audit record",
        missing.len(),
        answered.len()
    );
}
