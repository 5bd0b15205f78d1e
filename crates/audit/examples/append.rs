//! Appends records like the gateway's through the batched writer and
//! prints the cost per record: the figure to compare when changing the
//! store or the record.
//!
//! `cargo run --release -p castellan-audit --example append -- [records] [batch]`
//! (defaults 20000 and 40: about 1,000 calls/s with a result record for
//! each in a 20 ms window). Each batch is appended at once and cut by a
//! flush, so batch sizes do not depend on timing; wall time includes the
//! writer's 20 ms window and the fsync of each commit, so the CPU time is
//! the figure to compare. For instruction counts run the binary under
//! `valgrind --tool=callgrind --separate-threads=yes`: the writer thread
//! (`castellan-audit`) is the store's cost, the main thread building the
//! records is not.

use std::time::{Duration, Instant};

use castellan_audit::{AuditLog, Durability, Record, WriterConfig};
use serde_json::{Value, json};

/// A 1 KiB `tools/call` as the bench workload sends, reduced to its shape
/// as the gateway logs it (every string replaced by its length).
fn shape() -> Value {
    json!({
        "to": "<24 chars>",
        "subject": "<38 chars>",
        "body": "<880 chars>",
        "cc": ["<21 chars>", "<19 chars>"],
        "priority": 3,
        "attachments": [{"name": "<12 chars>", "size": 20411}],
    })
}

fn record(i: u64, facts_decision: &Value, facts_result: &Value) -> Record {
    let result = i % 2 == 1;
    let call = i / 2;
    let id = format!("{:013x}-{call:08x}", 1_767_225_600_000 + call);
    let agent = format!("agent-{}", call % 8);
    Record {
        id: if result { format!("{id}.result") } else { id },
        at_ms: 1_767_225_600_000 + call,
        session: format!("{agent}/session-{}", call % 32),
        agent,
        user: None,
        upstream: "mail".into(),
        method: "tools/call".into(),
        target: ["send_email", "read_inbox", "search", "get_thread"][(call % 4) as usize].into(),
        args_digest: blake3::hash(&call.to_le_bytes()).to_hex().to_string(),
        args_redacted: if result { Value::Null } else { shape() },
        decision: if result { "result_label" } else { "allow" }.into(),
        rules: if result {
            vec!["content-label-email".into()]
        } else {
            vec![]
        },
        reason: if result {
            "the session was labelled for email".into()
        } else {
            "allowed: no rule or policy objected".into()
        },
        facts: if result {
            facts_result.clone()
        } else {
            facts_decision.clone()
        },
        risk_before: 10,
        risk_after: if result { 15 } else { 10 },
        latency_us: 42,
    }
}

/// `sysconf(_SC_CLK_TCK)` on Linux.
const TICKS_PER_SEC: f64 = 100.0;

/// The process's user and system time so far, in clock ticks (wall time is
/// mostly the fsync of each commit on a slow disk; CPU is what the writer
/// takes from the gateway's cores, and user time the part this code
/// controls).
fn cpu_ticks() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0, 0);
    };
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15, the 12th and 13th after `)`.
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (tick(11), tick(12))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let batch: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(40)
        .max(1);
    let dir = std::env::temp_dir().join(format!("castellan-audit-append-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot make {}: {e}", dir.display());
        std::process::exit(1);
    }
    let path = dir.join("audit.db");
    let facts_decision = json!({
        "labels": "untrusted",
        "provenance": [],
        "reasons": [{
            "rule": "policy:permit-mail",
            "origin": "policy",
            "action": "allow",
            "message": "permitted by policy `permit-mail`",
            "facts": [{"name": "tool.name", "value": "send_email"}],
        }],
    });
    let facts_result = json!({
        "decision": "019b7a3c4e000-00000001",
        "findings": [{"in": "result", "detector": "email", "class": "email", "path": "/content/0/text", "span": [120, 141], "action": "label"}],
        "signals": [],
        "labels_added": "pii",
        "redacted": 0,
        "blocked": [],
    });
    let records: Vec<Record> = (0..n)
        .map(|i| record(i, &facts_decision, &facts_result))
        .collect();
    let bytes: usize = records.iter().map(|r| r.canonical().len()).sum();
    let cfg = WriterConfig {
        max_batch: batch as usize,
        // The writer sleeps through this window after a batch's first
        // record, then takes what came: the batch's records and its flush.
        max_delay: Duration::from_millis(20),
        ..WriterConfig::default()
    };
    let (writer, handle) = match AuditLog::open(&path, Durability::Batched, cfg) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let cpu_before = cpu_ticks();
    let started = Instant::now();
    for (i, r) in records.into_iter().enumerate() {
        if let Err(e) = writer.append(r) {
            eprintln!("{e}");
            std::process::exit(1);
        }
        if (i as u64 + 1).is_multiple_of(batch)
            && let Err(e) = writer.flush()
        {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
    if let Err(e) = writer.flush() {
        eprintln!("{e}");
        std::process::exit(1);
    }
    let elapsed = started.elapsed();
    let cpu_after = cpu_ticks();
    let user = cpu_after.0.saturating_sub(cpu_before.0);
    let system = cpu_after.1.saturating_sub(cpu_before.1);
    drop(writer);
    let _ = handle.join();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(dir.join("audit.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    println!(
        "{n} records in batches of {batch}: {:.1} µs user + {:.1} µs system CPU, {:.1} µs wall per record ({:.0} canonical bytes, {:.0} bytes on disk per record)",
        user as f64 * 1e6 / TICKS_PER_SEC / n as f64,
        system as f64 * 1e6 / TICKS_PER_SEC / n as f64,
        elapsed.as_secs_f64() * 1e6 / n as f64,
        bytes as f64 / n as f64,
        size as f64 / n as f64,
    );
    let _ = std::fs::remove_dir_all(&dir);
}
