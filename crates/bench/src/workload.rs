//! The workload: a realistic `tools/call` with about 1 KiB of arguments and
//! a result of about 1 KiB, plus `tools/list`.

use serde_json::{Value, json};

/// About 1 KiB of ordinary business prose (no secrets, no injection), so
/// content inspection does the work it does on real traffic.
pub const TEXT: &str = "Quarterly planning notes. The operations team reviewed the migration \
of the reporting service to the new cluster. Three dashboards still read from the legacy \
warehouse; owners will move them before the end of the month. Latency of the nightly export \
dropped from forty minutes to twelve after the index change. The support backlog is down to \
sixty tickets, most of them about invoice formatting, which the billing team will fix in the \
next release. Hiring: two backend engineers start in March, one data analyst in April. The \
offsite is planned for the second week of May; travel requests go through the usual portal. \
Action items: confirm the dashboard owners, publish the export runbook, schedule the billing \
release review, and collect feedback on the new on-call rotation before the retrospective. \
Budget remains within the approved envelope; no new vendors this quarter. Next review in four \
weeks, same agenda, with a short demo of the new reporting pipeline by the platform team.";

/// Tools the bench upstream lists.
pub const TOOLS: [&str; 8] = [
    "summarize",
    "search_docs",
    "get_ticket",
    "list_projects",
    "read_report",
    "lookup_customer",
    "create_note",
    "translate",
];

/// `tools/list` result.
pub fn tools_list() -> Value {
    json!({"tools": TOOLS.iter().map(|n| json!({
        "name": n,
        "description": format!("{n} over the team's documents."),
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}, "project": {"type": "string"}}},
        "annotations": {"readOnlyHint": true},
    })).collect::<Vec<_>>()})
}

/// `tools/call` result (about 1 KiB).
pub fn call_result() -> Value {
    json!({"content": [{"type": "text", "text": TEXT}], "isError": false})
}

/// The arguments of a benchmark call (about 1 KiB).
pub fn call_arguments() -> Value {
    json!({"text": TEXT, "project": "reporting-migration"})
}
