//! A fast MCP server for benchmarks: answers `initialize`, `tools/list`,
//! `tools/call` (about 1 KiB back), `ping` and `server/discover` with JSON,
//! statelessly (any session id is accepted), on loopback.
//!
//! ```text
//! bench-upstream [PORT]     # prints "listening on PORT"
//! ```

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use castellan_bench::workload;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};

static SESSIONS: AtomicU64 = AtomicU64::new(1);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("listening on {}", listener.local_addr()?.port());
        // Pre-serialised bodies: the upstream should cost as little as possible.
        let list = Bytes::from(serde_json::to_vec(&workload::tools_list())?);
        let result = Bytes::from(serde_json::to_vec(&workload::call_result())?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let (list, result) = (list.clone(), result.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let (list, result) = (list.clone(), result.clone());
                    async move { Ok::<_, Infallible>(answer(req, &list, &result).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

async fn answer(req: Request<Incoming>, list: &Bytes, result: &Bytes) -> Response<Full<Bytes>> {
    if req.method() == http::Method::DELETE {
        return empty(StatusCode::OK);
    }
    if req.method() != http::Method::POST {
        return empty(StatusCode::METHOD_NOT_ALLOWED);
    }
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let Some(id) = msg.get("id").cloned() else {
        return empty(StatusCode::ACCEPTED);
    };
    let id = serde_json::to_string(&id).unwrap_or_else(|_| "null".into());
    let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
    let mut session = None;
    let result: Bytes = match method {
        "tools/call" => result.clone(),
        "tools/list" => list.clone(),
        "initialize" => {
            session = Some(SESSIONS.fetch_add(1, Ordering::Relaxed));
            let version = msg["params"]["protocolVersion"].as_str().unwrap_or("2025-06-18");
            Bytes::from(json!({"protocolVersion": version, "capabilities": {"tools": {}}, "serverInfo": {"name": "bench-upstream", "version": "1"}}).to_string())
        }
        "server/discover" => Bytes::from(json!({"supportedVersions": ["2025-11-25", "2025-06-18"], "capabilities": {"tools": {}}, "serverInfo": {"name": "bench-upstream", "version": "1"}}).to_string()),
        _ => Bytes::from_static(b"{}"),
    };
    let mut out = Vec::with_capacity(result.len() + 48);
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b",\"result\":");
    out.extend_from_slice(&result);
    out.push(b'}');
    let mut r = Response::new(Full::new(Bytes::from(out)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Some(s) = session
        && let Ok(v) = http::HeaderValue::try_from(format!("bench-{s}"))
    {
        r.headers_mut().insert("mcp-session-id", v);
    }
    r
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}
