//! An MCP load generator: each connection is one agent session (legacy:
//! `initialize` first; 2026-07-28: stateless, with its own behavioural
//! session in `_meta`), sending `tools/call` with about 1 KiB of arguments
//! and now and then `tools/list`.
//!
//! With `--rate`, calls are scheduled open-loop at that total rate. A
//! call's latency runs from when it was sent, plus however much later than
//! scheduled it was sent beyond the timer's 2 ms granularity: a stall that
//! holds calls back is counted (no coordinated omission), while where the
//! scheduled instant falls between two timer ticks, the same for every
//! call of a run but different from run to run, is not. Sends held back
//! that way are counted as `late_sends`. Without `--rate`, every
//! connection sends as fast as it can (saturation). Prints one JSON line
//! of figures.
//!
//! `--open-sessions N` opens N legacy sessions and leaves them idle (for
//! memory per session), then exits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use castellan_bench::workload;
use clap::{Parser, ValueEnum};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::time::Instant;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Era {
    Legacy,
    Modern,
}

#[derive(Parser, Debug)]
struct Args {
    /// MCP endpoint, e.g. http://127.0.0.1:8080/mcp.
    #[arg(long)]
    url: String,
    /// Bearer token (none when empty).
    #[arg(long, default_value = "")]
    auth: String,
    #[arg(long, value_enum, default_value = "legacy")]
    era: Era,
    /// Concurrent connections, one session each.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Total calls per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Warm-up seconds, not measured.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// One `tools/list` every N requests (0: never).
    #[arg(long, default_value_t = 10)]
    list_every: u64,
    /// Tool to call (as the agent sees it).
    #[arg(long, default_value = "summarize")]
    tool: String,
    /// Name of this measurement in the output.
    #[arg(long, default_value = "run")]
    label: String,
    /// Open this many idle legacy sessions, then exit.
    #[arg(long)]
    open_sessions: Option<usize>,
}

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u32>,
    sent: u64,
    errors: u64,
    /// Calls sent later than scheduled by more than the timer's granularity.
    late_sends: u64,
    first_error: Option<String>,
}

/// How late tokio's timer wakes a sleep on its own: the deadline is rounded
/// up to the next millisecond tick and the driver's wait to whole
/// milliseconds again, so up to two.
const TIMER_GRANULARITY: Duration = Duration::from_millis(2);

struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
}

fn target(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr = host
        .parse()
        .map_err(|e| format!("`{host}` is not ip:port: {e}"))?;
    Ok(Target {
        addr,
        host: host.to_owned(),
        path: format!("/{path}"),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(run(Arc::new(args)))
}

async fn run(args: Arc<Args>) -> Result<(), Box<dyn std::error::Error>> {
    let t = Arc::new(target(&args.url)?);
    if let Some(n) = args.open_sessions {
        return open_sessions(&args, &t, n).await;
    }
    let start = Instant::now() + Duration::from_millis(200);
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.seconds);
    let mut tasks = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let (args, t) = (args.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            worker(i, &args, &t, start, measure_from, end).await
        }));
    }
    let mut all = Stats::default();
    for task in tasks {
        let s = task.await?;
        all.latencies_us.extend(s.latencies_us);
        all.sent += s.sent;
        all.errors += s.errors;
        all.late_sends += s.late_sends;
        if all.first_error.is_none() {
            all.first_error = s.first_error;
        }
    }
    all.latencies_us.sort_unstable();
    let q = |p: f64| -> u32 {
        let n = all.latencies_us.len();
        if n == 0 {
            return 0;
        }
        all.latencies_us[((n as f64 * p) as usize).min(n - 1)]
    };
    let measured = all.latencies_us.len() as f64;
    let out = json!({
        "label": args.label,
        "era": format!("{:?}", args.era).to_lowercase(),
        "connections": args.connections,
        "rate": args.rate,
        "seconds": args.seconds,
        "completed": all.latencies_us.len(),
        "errors": all.errors,
        "late_sends": all.late_sends,
        "first_error": all.first_error,
        "throughput": measured / args.seconds,
        "p50_us": q(0.50),
        "p90_us": q(0.90),
        "p99_us": q(0.99),
        "p999_us": q(0.999),
        "max_us": all.latencies_us.last().copied().unwrap_or(0),
    });
    println!("{out}");
    Ok(())
}

async fn connect(t: &Target) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(t.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", t.addr))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One POST; returns the session header and body.
async fn post(
    sender: &mut SendRequest<Full<Bytes>>,
    t: &Target,
    args: &Args,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(Option<String>, Bytes), String> {
    let mut b = Request::post(&t.path)
        .header("host", &t.host)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if !args.auth.is_empty() {
        b = b.header("authorization", format!("Bearer {}", args.auth));
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    sender.ready().await.map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let session = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    Ok((session, body))
}

async fn initialize(
    sender: &mut SendRequest<Full<Bytes>>,
    t: &Target,
    args: &Args,
) -> Result<String, String> {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench-load", "version": "1"}}});
    let (session, _) = post(sender, t, args, &[], init.to_string().into_bytes()).await?;
    let session = session.ok_or("no mcp-session-id in the initialize answer")?;
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    post(
        sender,
        t,
        args,
        &[
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        note.to_string().into_bytes(),
    )
    .await?;
    Ok(session)
}

fn request(args: &Args, i: usize, id: u64, list: bool) -> Vec<u8> {
    let mut params = if list {
        json!({})
    } else {
        json!({"name": args.tool, "arguments": workload::call_arguments()})
    };
    if args.era == Era::Modern {
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "bench-load", "version": "1"},
            "io.castellan/session": format!("bench-{i}"),
        });
    }
    let method = if list { "tools/list" } else { "tools/call" };
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        .to_string()
        .into_bytes()
}

async fn worker(
    i: usize,
    args: &Args,
    t: &Target,
    start: Instant,
    measure_from: Instant,
    end: Instant,
) -> Stats {
    let mut stats = Stats::default();
    let fail = |stats: &mut Stats, e: String| {
        stats.errors += 1;
        if stats.first_error.is_none() {
            stats.first_error = Some(e);
        }
    };
    let mut sender = match connect(t).await {
        Ok(s) => s,
        Err(e) => {
            fail(&mut stats, e);
            return stats;
        }
    };
    let session = match args.era {
        Era::Legacy => match initialize(&mut sender, t, args).await {
            Ok(s) => Some(s),
            Err(e) => {
                fail(&mut stats, e);
                return stats;
            }
        },
        Era::Modern => None,
    };
    let interval =
        (args.rate > 0.0).then(|| Duration::from_secs_f64(args.connections as f64 / args.rate));
    // Connections start staggered across one interval.
    let mut next = start
        + interval.map_or(Duration::ZERO, |d| {
            d.mul_f64(i as f64 / args.connections as f64)
        });
    let mut k: u64 = 0;
    loop {
        let intended = match interval {
            Some(d) => {
                tokio::time::sleep_until(next).await;
                let at = next;
                next += d;
                at
            }
            None => Instant::now(),
        };
        if intended >= end {
            break;
        }
        k += 1;
        let list = args.list_every > 0 && k.is_multiple_of(args.list_every);
        let body = request(args, i, k, list);
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(4);
        match (&session, args.era) {
            (Some(s), _) => {
                headers.push(("mcp-session-id", s));
                headers.push(("mcp-protocol-version", "2025-06-18"));
            }
            (None, _) => {
                headers.push(("mcp-protocol-version", "2026-07-28"));
                headers.push(("mcp-method", if list { "tools/list" } else { "tools/call" }));
                if !list {
                    headers.push(("mcp-name", &args.tool));
                }
            }
        }
        let sent_at = Instant::now();
        let outcome = post(&mut sender, t, args, &headers, body).await;
        let done = Instant::now();
        stats.sent += 1;
        match outcome {
            Ok((_, body)) => {
                let text = String::from_utf8_lossy(&body);
                if !text.contains("\"result\"") || text.contains("\"isError\":true") {
                    fail(
                        &mut stats,
                        format!("refused or failed: {}", &text[..text.len().min(300)]),
                    );
                    continue;
                }
            }
            Err(e) => {
                fail(&mut stats, e);
                // A broken connection: open another and go on.
                if let Ok(s) = connect(t).await {
                    sender = s;
                }
                continue;
            }
        }
        if intended >= measure_from {
            // Timer granularity is not the gateway's doing; a longer hold-up is.
            let held = sent_at
                .saturating_duration_since(intended)
                .saturating_sub(TIMER_GRANULARITY);
            if !held.is_zero() {
                stats.late_sends += 1;
            }
            let us = (done.saturating_duration_since(sent_at) + held).as_micros();
            stats
                .latencies_us
                .push(u32::try_from(us).unwrap_or(u32::MAX));
        }
    }
    stats
}

async fn open_sessions(
    args: &Arc<Args>,
    t: &Arc<Target>,
    n: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let began = Instant::now();
    let connections = args.connections.max(1);
    let per = n.div_ceil(connections);
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (args, t) = (args.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(mut sender) = connect(&t).await else {
                return (0, per);
            };
            let (mut opened, mut errors) = (0usize, 0usize);
            for _ in 0..per {
                match initialize(&mut sender, &t, &args).await {
                    Ok(_) => opened += 1,
                    Err(_) => errors += 1,
                }
            }
            (opened, errors)
        }));
    }
    let (mut opened, mut errors) = (0, 0);
    for task in tasks {
        let (o, e) = task.await?;
        opened += o;
        errors += e;
    }
    println!(
        "{}",
        json!({"label": args.label, "opened": opened, "errors": errors, "seconds": began.elapsed().as_secs_f64()})
    );
    Ok(())
}
