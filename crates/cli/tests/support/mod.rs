//! Test support: start the real `castellan` binary on a free port with a
//! given configuration, and talk to it over HTTP.
#![allow(dead_code)]

pub mod idp;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use castellan_protocol::sse;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The API key of the test agent.
pub const TEST_KEY: &str = "cst_test_0123456789abcdef0123456789abcdef";
/// The bearer header for [`TEST_KEY`].
pub const TEST_AUTH: &str = "Bearer cst_test_0123456789abcdef0123456789abcdef";
/// A second agent's key.
pub const OTHER_KEY: &str = "cst_other_0123456789abcdef0123456789abcdef";

/// SHA-256 hex of a key, as the configuration stores it.
pub fn sha256_hex(key: &str) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(key.as_bytes())?;
            c.wait_with_output()
        });
    String::from_utf8_lossy(&out.expect("sha256sum").stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

/// An `auth` section with the test agent and a second agent.
pub fn test_auth() -> String {
    format!(
        "auth:\n  api_keys:\n    - agent: test-agent\n      sha256: {}\n      attributes: {{team: qa}}\n    - agent: other-agent\n      sha256: {}\n",
        sha256_hex(TEST_KEY),
        sha256_hex(OTHER_KEY)
    )
}

/// A unique scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "castellan-test-{}-{}-{name}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The fixtures folder.
pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A running gateway; killed on drop.
pub struct Gateway {
    child: Child,
    pub dir: PathBuf,
    /// The admin API's base URL, when the configuration enables it.
    pub admin: Option<String>,
    pub url: String,
    pub config: PathBuf,
    pub stderr_log: PathBuf,
    pub stdout_log: PathBuf,
}

impl Gateway {
    /// Starts `castellan serve` with `yaml` (listen address forced to a free
    /// loopback port). Without an `auth` section the test agent's API key
    /// ([`TEST_KEY`], agent `test-agent`) is configured.
    pub fn start(yaml: &str) -> Gateway {
        Gateway::start_with_env(yaml, &[])
    }

    /// [`Gateway::start`] with extra environment variables.
    pub fn start_with_env(yaml: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = scratch("gw");
        let config = dir.join("castellan.yaml");
        let yaml = if yaml.contains("\nauth:") || yaml.starts_with("auth:") {
            yaml.to_string()
        } else {
            format!("{}{yaml}", test_auth())
        };
        let yaml_has_admin = yaml.contains("\nadmin:") || yaml.starts_with("admin:");
        let yaml = if yaml.contains("\naudit:") {
            yaml
        } else {
            format!("audit:\n  path: {}\n{yaml}", dir.join("audit.db").display())
        };
        let yaml = if yaml.contains("\nintegrity:") || yaml.starts_with("integrity:") {
            yaml
        } else {
            format!(
                "integrity:\n  store: {}\n{yaml}",
                dir.join("pins.db").display()
            )
        };
        std::fs::write(&config, yaml).expect("write config");
        let stderr_log = dir.join("stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_castellan"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .env("CASTELLAN_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log).expect("log file"))
            .spawn()
            .expect("start castellan");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let (admin_tx, admin_rx) = std::sync::mpsc::channel();
        let stdout_log = dir.join("stdout.log");
        let mut copy = std::fs::File::create(&stdout_log).expect("stdout log");
        std::thread::spawn(move || {
            use std::io::Write as _;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(copy, "{line}");
                if let Some(url) = line.trim().strip_prefix("admin API: ") {
                    let _ = admin_tx.send(
                        url.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
                if let Some(url) = line.trim().strip_prefix("MCP endpoint: ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!(
                    "gateway did not start: {}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                )
            });
        // The admin line, when there is one, comes right after the endpoint.
        let admin = admin_rx
            .recv_timeout(Duration::from_millis(if yaml_has_admin { 5000 } else { 1 }))
            .ok();
        Gateway {
            child,
            dir,
            url,
            admin,
            config,
            stderr_log,
            stdout_log,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Everything the gateway printed on standard output so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_log).unwrap_or_default()
    }

    /// Scrapes the admin listener's `/metrics` (no token needed).
    pub async fn metrics(&self) -> String {
        let base = self.admin.as_deref().expect("admin API");
        let r = send(
            "GET",
            &format!("{base}/metrics"),
            &[("authorization", "")],
            Vec::new(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        String::from_utf8_lossy(&r.body).into_owned()
    }

    /// Calls the admin API with `token`.
    pub async fn admin(&self, token: &str, method: &str, path: &str) -> Reply {
        let base = self.admin.as_deref().expect("admin API");
        send(
            method,
            &format!("{base}{path}"),
            &[("authorization", &format!("Bearer {token}"))],
            Vec::new(),
        )
        .await
    }
}

impl Gateway {
    /// Kills the gateway at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response: status, headers, body and the JSON-RPC messages in it
/// (one for JSON, each event's data for SSE).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub messages: Vec<Value>,
}

impl Reply {
    /// The last message (the final answer of a request).
    pub fn last(&self) -> &Value {
        self.messages.last().unwrap_or_else(|| {
            panic!(
                "no message in reply {:?}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// Sends a request and reads the whole answer.
pub async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
    send_via(&client(), method, url, headers, body).await
}

/// [`send`] through a given client (e.g. one speaking TLS).
pub async fn send_via<C>(
    client: &Client<C, Full<Bytes>>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        if !v.is_empty() {
            b = b.header(*k, *v);
        }
    }
    // The test agent authenticates unless the test sets Authorization itself
    // (an empty value means: send none).
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    {
        b = b.header("authorization", TEST_AUTH);
    }
    let req = b.body(Full::new(Bytes::from(body))).expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("answer in time")
        .expect("http");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(Duration::from_secs(30), resp.into_body().collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    let is_sse = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let messages = if is_sse {
        let mut d = sse::Decoder::new(1 << 24);
        let mut events = Vec::new();
        d.feed(&body, &mut events).expect("valid SSE");
        events
            .iter()
            .filter(|e| !e.data.is_empty())
            .map(|e| serde_json::from_str(&e.data).expect("JSON event"))
            .collect()
    } else {
        serde_json::from_slice::<Value>(&body).into_iter().collect()
    };
    Reply {
        status,
        headers,
        body,
        messages,
    }
}

/// Posts a JSON-RPC message with the usual MCP headers plus `extra`.
pub async fn post(url: &str, extra: &[(&str, &str)], msg: &Value) -> Reply {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    headers.extend_from_slice(extra);
    send(
        "POST",
        url,
        &headers,
        serde_json::to_vec(msg).expect("json"),
    )
    .await
}

/// A legacy session: initialize + initialized; returns the session id.
pub async fn open_session(url: &str) -> String {
    open_session_as(url, TEST_KEY).await
}

/// [`open_session`] for the agent holding `key`.
pub async fn open_session_as(url: &str, key: &str) -> String {
    let auth = format!("Bearer {key}");
    let r = post(
        url,
        &[("authorization", &auth)],
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}}),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let sid = r.header("mcp-session-id").expect("session id").to_string();
    let n = post(
        url,
        &[("mcp-session-id", &sid), ("authorization", &auth)],
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(n.status, StatusCode::ACCEPTED);
    sid
}

/// Calls a method in a legacy session.
pub async fn call(url: &str, sid: &str, id: u64, method: &str, params: Value) -> Reply {
    post(
        url,
        &[
            ("mcp-session-id", sid),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
    )
    .await
}

/// The modern `_meta` block.
pub fn modern_meta() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}, "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"}})
}

/// Waits until `f` is true or panics after `secs`.
pub async fn eventually(secs: u64, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not met within {secs}s");
}

/// Text of the first content item of a tools/call result.
pub fn text_of(msg: &Value) -> String {
    msg["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {msg}"))
        .to_string()
}

/// The admin token the tests configure (`admin.token_sha256`).
pub const ADMIN_TOKEN: &str = "cst_admin_0123456789abcdef0123456789abcdef";

/// An `admin:` section on a free loopback port with [`ADMIN_TOKEN`].
pub fn admin_section() -> String {
    format!(
        "admin:\n  listen: 127.0.0.1:0\n  token_sha256: {}\n",
        sha256_hex(ADMIN_TOKEN)
    )
}

/// A request to the gateway's admin API with [`ADMIN_TOKEN`].
pub async fn admin(gw: &Gateway, method: &str, path: &str) -> Reply {
    let base = gw.admin.as_deref().expect("admin API");
    send(
        method,
        &format!("{base}{path}"),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        Vec::new(),
    )
    .await
}

/// Runs the `castellan` binary with `args` and waits for it.
pub fn castellan(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_castellan"))
        .args(args)
        .output()
        .expect("castellan runs")
}

/// `fixtures/http_upstream.py`, a Streamable HTTP upstream on a free
/// loopback port, killed on drop.
pub struct HttpFixture {
    child: Child,
    pub port: u16,
}

impl HttpFixture {
    /// Starts the fixture with extra environment variables.
    pub fn start(env: &[(&str, &str)]) -> HttpFixture {
        let mut child = Command::new("python3")
            .arg("-u")
            .arg(fixture("http_upstream.py"))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("port line");
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .expect("port");
        HttpFixture { child, port }
    }
}

impl Drop for HttpFixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tool names a `tools/list` answer shows.
pub fn tool_names_of(answer: &Value) -> Vec<String> {
    answer["result"]["tools"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
