//! The gateway's overhead on a REST call (issue 18): the same operation
//! called directly over HTTP and as a tool of an `openapi:` upstream.
//!
//! ```text
//! bench-openapi CASTELLAN_BINARY [CALLS]     # default 2000 calls each way
//! ```
//!
//! Starts a small REST API in-process (`GET /items/{id}` answers about
//! 1 KiB of JSON), starts `castellan serve` in front of it with everything
//! on (API-key auth, the default pack, content inspection, pins, audit
//! `batched`), then sends the calls one after another (one connection
//! each way, keep-alive) and prints p50/p99 of both paths and their
//! difference, as a table and as one JSON line.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

const KEY: &str = "cst_bench_0123456789abcdef0123456789abcdef";

const SPEC: &str = r#"openapi: 3.0.3
info: { title: bench, version: "1" }
paths:
  /items/{id}:
    get:
      operationId: getItem
      parameters:
        - { name: id, in: path, required: true, schema: { type: string } }
        - { name: fields, in: query, schema: { type: array, items: { type: string } } }
"#;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let castellan = args
        .next()
        .ok_or("usage: bench-openapi CASTELLAN_BINARY [CALLS]")?;
    let calls: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(run(&castellan, calls))
}

async fn run(castellan: &str, calls: usize) -> Result<(), Error> {
    let api = start_api().await?;
    let dir = std::env::temp_dir().join(format!("castellan-bench-openapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let key_sha = sha256(KEY)?;
    std::fs::write(dir.join("spec.yaml"), SPEC)?;
    std::fs::write(
        dir.join("castellan.yaml"),
        format!(
            "auth:\n  api_keys:\n    - agent: bench-agent\n      sha256: {key_sha}\naudit:\n  path: {d}/audit.db\nintegrity:\n  store: {d}/pins.db\nupstreams:\n  - name: api\n    openapi:\n      spec: {d}/spec.yaml\n      base_url: http://127.0.0.1:{api}\n",
            d = dir.display()
        ),
    )?;
    let mut child = Command::new(castellan)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.join("castellan.yaml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let url = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.trim().strip_prefix("MCP endpoint: ").map(str::to_owned))
        .ok_or("the gateway printed no endpoint")?;
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let direct = format!("http://127.0.0.1:{api}/items/it-7?fields=a&fields=b");
    let direct_req = || {
        Request::get(direct.as_str())
            .header("accept", "application/json")
            .body(Full::new(Bytes::new()))
    };
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
    "name": "api__getItem", "arguments": {"id": "it-7", "fields": ["a", "b"]},
    "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "bench-openapi", "version": "1"},
        "io.castellan/session": "bench-openapi"
    }}})
    .to_string();
    let gateway_req = || {
        Request::post(url.as_str())
            .header("authorization", format!("Bearer {KEY}"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "api__getItem")
            .body(Full::new(Bytes::from(call.clone())))
    };
    // Warm up both paths (connections, the first list, pins).
    time(&client, 200, &gateway_req).await?;
    time(&client, 200, &direct_req).await?;
    let mut d = time(&client, calls, &direct_req).await?;
    let mut g = time(&client, calls, &gateway_req).await?;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let (d50, d99) = (pct(&mut d, 50.0), pct(&mut d, 99.0));
    let (g50, g99) = (pct(&mut g, 50.0), pct(&mut g, 99.0));
    println!("path      p50 µs  p99 µs");
    println!("direct    {d50:>6}  {d99:>6}");
    println!("castellan {g50:>6}  {g99:>6}");
    println!(
        "added     {:>6}  {:>6}",
        g50.saturating_sub(d50),
        g99.saturating_sub(d99)
    );
    println!(
        "{}",
        json!({"bench": "openapi", "calls": calls, "direct_p50_us": d50, "direct_p99_us": d99,
               "castellan_p50_us": g50, "castellan_p99_us": g99,
               "added_p50_us": g50.saturating_sub(d50), "added_p99_us": g99.saturating_sub(d99)})
    );
    Ok(())
}

/// Sends `n` requests one after another; the latency of each, in µs.
async fn time(
    client: &Client<HttpConnector, Full<Bytes>>,
    n: usize,
    make: &dyn Fn() -> Result<Request<Full<Bytes>>, http::Error>,
) -> Result<Vec<u64>, Error> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let req = make()?;
        let started = Instant::now();
        let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req)).await??;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        out.push(started.elapsed().as_micros() as u64);
        if !status.is_success() {
            return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)).into());
        }
        if let Ok(v) = serde_json::from_slice::<Value>(&body)
            && v["result"]["isError"] == true
        {
            return Err(format!("the call failed: {v}").into());
        }
    }
    Ok(out)
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p / 100.0).round() as usize;
    v.get(i).copied().unwrap_or(0)
}

fn sha256(s: &str) -> Result<String, Error> {
    use std::io::Write as _;
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    c.stdin.take().ok_or("stdin")?.write_all(s.as_bytes())?;
    let out = c.wait_with_output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

async fn start_api() -> Result<u16, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let item = Bytes::from(
        json!({"id": "it-7", "name": "bench item", "notes": "x".repeat(900), "tags": ["a", "b"]})
            .to_string(),
    );
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let item = item.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<Incoming>| {
                    let item = item.clone();
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(item))
                                .unwrap_or_default(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(port)
}
