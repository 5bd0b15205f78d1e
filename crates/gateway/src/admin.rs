//! The operators' API, on its own listener (loopback by default) with its
//! own bearer token. Every answer is JSON; `docs/admin-openapi.yaml`
//! describes them.
//!
//! ```text
//! GET    /health                          liveness (no token)
//! GET    /metrics                         Prometheus metrics (no token)
//! GET    /ready                           readiness
//! GET    /agents                          agents: risk, labels, quarantine, recent actions
//! POST   /agents/{agent}/quarantine       refuse every call of an agent
//! POST   /agents/{agent}/release          lift an agent's quarantine, set its risk aside
//! GET    /sessions[?agent=A]              live behavioural sessions
//! GET    /sessions/{agent}/{session}      one session and its timeline (audit log)
//! DELETE /sessions/{agent}/{session}      end a session (and its MCP session)
//! GET    /alerts[?limit=N]                recent alerts, newest first
//! GET    /holds                           calls waiting for a human
//! POST   /holds/{id}/approve              let a held call through
//! POST   /holds/{id}/refuse               refuse it
//! POST   /reload                          reload the configuration file
//! GET    /tools/pins                      pinned tools and versions withheld
//! GET    /tools/{upstream}/{tool}/diff    a withheld version against its pin
//! POST   /tools/{upstream}/{tool}/approve approve it (`?hash=` pins exactly that one)
//! ```
//!
//! Path segments are percent-decoded, so an agent or session name holding
//! `/` is written `%2F`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::identity::digest;
use crate::operator::Operator;
use crate::transport::{FirstByte, HostRules, PerSource};

/// Installs the process-wide metrics recorder; call once at start, before
/// the gateway serves, so no decision goes uncounted.
pub fn install_metrics() -> Option<PrometheusHandle> {
    let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
    // Histograms (not summaries), from 25 µs to 30 s.
    let builder = match builder.set_buckets(&LATENCY_BUCKETS) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "latency buckets not set");
            metrics_exporter_prometheus::PrometheusBuilder::new()
        }
    };
    match builder.install_recorder() {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    }
}

/// Bucket bounds (seconds) of every latency histogram.
pub const LATENCY_BUCKETS: [f64; 19] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// What the admin listener needs besides the gateway.
#[derive(Debug, Clone)]
pub struct Options {
    /// SHA-256 of the operators' bearer token.
    pub token_sha256: [u8; 32],
    /// The metrics recorder's handle, if installed.
    pub metrics: Option<PrometheusHandle>,
    /// Where `POST /reload` reads the configuration (no file for the demo).
    pub source: crate::reload::Source,
}

/// Serves the admin API until `shutdown` resolves.
pub async fn serve(
    operator: Operator,
    listener: TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()>,
) {
    operator.open_approvals(listener.local_addr().ok().map(|a| format!("http://{a}")));
    let options = Arc::new(options);
    let bound = listener.local_addr().ok();
    let limits = &operator.config().limits;
    let header_timeout = limits.header_timeout;
    let per_source = PerSource::new(limits.max_connections_per_source, "admin");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, from)) = accepted else { continue };
                let Some(slot) = per_source.admit(from.ip()) else {
                    crate::server::refuse_busy(stream, false);
                    continue;
                };
                let op = operator.clone();
                let options = options.clone();
                let svc = service_fn(move |req| {
                    let op = op.clone();
                    let options = options.clone();
                    async move { Ok::<_, Infallible>(route(&op, &options, bound, req).await) }
                });
                // The same connection limits as the agent listener.
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
                let io = TokioIo::new(FirstByte::new(stream, header_timeout));
                tokio::spawn(async move {
                    let _ = builder.serve_connection(io, svc).await;
                    drop(slot);
                });
            }
            _ = &mut shutdown => break,
        }
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(&body).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// `GET /ready`: 503 while the audit log is unreachable (a strict log
/// refuses every call then; a batched one spools), so a load balancer
/// sends agents to a replica that can record their calls.
fn ready(op: &Operator) -> Response<Full<Bytes>> {
    let sessions = op.mcp_sessions();
    match op.audit_health() {
        Some((reachable, spooled)) => reply(
            if reachable {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            json!({
                "status": if reachable { "ready" } else { "degraded" },
                "sessions": sessions,
                "audit": {"reachable": reachable, "spooled": spooled},
            }),
        ),
        None => reply(
            StatusCode::OK,
            json!({"status": "ready", "sessions": sessions}),
        ),
    }
}

fn error(status: StatusCode, code: &str, description: String) -> Response<Full<Bytes>> {
    reply(
        status,
        json!({"error": code, "error_description": description}),
    )
}

/// Decodes `%XX` escapes in a path segment; `None` if malformed.
/// `percent-encoding` passes a malformed escape through as it came; the
/// admin API refuses it instead, so a typo never names another agent.
fn percent_decode(seg: &str) -> Option<String> {
    let b = seg.as_bytes();
    let well_formed = b.iter().enumerate().all(|(i, c)| {
        *c != b'%'
            || b.get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode_str(seg)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

/// The value of `key` in a query string.
fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| percent_decode(v))
}

fn authorised(req: &Request<Incoming>, token_sha256: &[u8; 32]) -> bool {
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| digest(t.trim()));
    presented.is_some_and(|d| {
        aws_lc_rs::constant_time::verify_slices_are_equal(&d, token_sha256).is_ok()
    })
}

/// One admin request: host rules, the unauthenticated endpoints, the
/// token, then the operator's resources.
async fn route(
    op: &Operator,
    options: &Options,
    bound: Option<std::net::SocketAddr>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    // DNS rebinding: a page on another site must not read `/metrics` or
    // anything else here, just as on the agent listener.
    if let Some(admin) = &op.config().admin {
        let rules = HostRules {
            listen: admin.addr,
            bound,
            allowed_hosts: &admin.allowed_hosts,
            allowed_origins: &[],
        };
        if let Err((status, why)) = rules.check(req.headers(), req.uri(), req.version()) {
            return error(status, "invalid_request", why);
        }
    }
    let path = req.uri().path().trim_end_matches('/').to_owned();
    if path == "/health" {
        return reply(StatusCode::OK, json!({"status": "ok"}));
    }
    if path == "/metrics" {
        observe_gauges(op).await;
        let text = options
            .metrics
            .as_ref()
            .map(|h| h.render())
            .unwrap_or_default();
        let mut r = Response::new(Full::new(Bytes::from(text)));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        return r;
    }
    if !authorised(&req, &options.token_sha256) {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "send the admin token as `Authorization: Bearer <token>`".into(),
        );
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    let Some(parts) = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect::<Option<Vec<String>>>()
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "malformed percent-encoding in the path".into(),
        );
    };
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let query = req.uri().query();
    let method = req.method();
    match parts.as_slice() {
        ["ready"] if method == Method::GET => ready(op),
        ["agents", ..] => agents(op, method, &parts[1..]).await,
        ["tools", ..] => tools(op, method, &parts[1..], query),
        ["sessions", ..] => sessions(op, method, &parts[1..], query).await,
        ["alerts"] if method == Method::GET => reply(
            StatusCode::OK,
            json!({"alerts": op.alerts(limit(query, 100) as usize)}),
        ),
        ["holds", ..] => holds(op, method, &parts[1..]),
        ["reload"] if method == Method::POST => reload(op, options).await,
        _ => not_found(),
    }
}

fn not_found() -> Response<Full<Bytes>> {
    reply(StatusCode::NOT_FOUND, json!({"error": "not_found"}))
}

/// `?limit=N`, within 1..=10,000.
fn limit(query: Option<&str>, default: u64) -> u64 {
    query_param(query, "limit")
        .and_then(|l| l.parse::<u64>().ok())
        .unwrap_or(default)
        .clamp(1, 10_000)
}

/// `/agents`: list, quarantine, release.
async fn agents(op: &Operator, method: &Method, parts: &[&str]) -> Response<Full<Bytes>> {
    match (method, parts) {
        (&Method::GET, []) => reply(StatusCode::OK, json!({"agents": op.agents().await})),
        (&Method::POST, [agent, "quarantine"]) => {
            let q = match op.quarantine(agent).await {
                Ok(q) => q,
                Err(e) => return state_error(&e),
            };
            tracing::warn!(agent, known = q.known, "agent quarantined by an operator");
            let mut body = json!({"agent": agent, "quarantined": true, "changed": q.changed});
            if !q.known {
                tracing::warn!(agent, "quarantined an agent this gateway has not seen");
                body["warning"] = json!(format!(
                    "no agent `{agent}` has called this gateway since it started: check the name (GET /agents lists them); the quarantine applies if it appears"
                ));
            }
            reply(StatusCode::OK, body)
        }
        (&Method::POST, [agent, "release"]) => match op.release(agent).await {
            Ok(Some(forgiven)) => {
                let forgiven = json!(forgiven);
                tracing::warn!(agent, forgiven = %forgiven, "quarantine lifted by an operator; its risk set aside");
                reply(
                    StatusCode::OK,
                    json!({"agent": agent, "released": true, "forgiven": forgiven}),
                )
            }
            Ok(None) => reply(StatusCode::OK, json!({"agent": agent, "released": false})),
            Err(e) => state_error(&e),
        },
        _ => not_found(),
    }
}

/// `/tools`: pins, a withheld version's diff, its approval.
fn tools(
    op: &Operator,
    method: &Method,
    parts: &[&str],
    query: Option<&str>,
) -> Response<Full<Bytes>> {
    match (method, parts) {
        (&Method::GET, ["pins"]) => match op.pins() {
            Ok(report) => reply(StatusCode::OK, report),
            Err(e) => store_error(&e),
        },
        (&Method::GET, [upstream, tool, "diff"]) => match op.pin_diff(upstream, tool) {
            Ok(Some(diff)) => reply(StatusCode::OK, diff),
            Ok(None) => reply(
                StatusCode::NOT_FOUND,
                json!({"error": "not_found", "error_description": format!("no version of `{upstream}` tool `{tool}` is waiting for approval")}),
            ),
            Err(e) => store_error(&e),
        },
        (&Method::POST, [upstream, tool, "approve"]) => {
            let hash = query_param(query, "hash");
            match op.approve_pin(upstream, tool, hash.as_deref()) {
                Ok(pin) => reply(StatusCode::OK, json!({"approved": pin})),
                Err(e @ castellan_integrity::StoreError::NothingPending { .. }) => reply(
                    StatusCode::NOT_FOUND,
                    json!({"error": "not_found", "error_description": e.to_string()}),
                ),
                Err(e @ castellan_integrity::StoreError::HashMismatch { .. }) => reply(
                    StatusCode::CONFLICT,
                    json!({"error": "conflict", "error_description": e.to_string()}),
                ),
                Err(e) => store_error(&e),
            }
        }
        _ => not_found(),
    }
}

/// `/sessions`: list, one with its timeline, end one.
async fn sessions(
    op: &Operator,
    method: &Method,
    parts: &[&str],
    query: Option<&str>,
) -> Response<Full<Bytes>> {
    match (method, parts) {
        (&Method::GET, []) => {
            let agent = query_param(query, "agent");
            reply(
                StatusCode::OK,
                json!({"sessions": op.sessions(agent.as_deref()).await}),
            )
        }
        (&Method::GET, [agent, session]) => {
            let live = op.session(agent, session).await;
            match op.timeline(agent, session, limit(query, 1000)).await {
                Ok(t) if t.is_empty() && live.is_none() => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no session `{session}` of agent `{agent}`"),
                ),
                Ok(t) => reply(
                    StatusCode::OK,
                    json!({"agent": agent, "session": session, "live": live.is_some(), "state": live, "timeline": t}),
                ),
                Err(e) => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "audit_unavailable",
                    e.to_string(),
                ),
            }
        }
        (&Method::DELETE, [agent, session]) => {
            if op.end_session(agent, session).await {
                tracing::warn!(agent, session, "session ended by an operator");
                reply(
                    StatusCode::OK,
                    json!({"agent": agent, "session": session, "ended": true}),
                )
            } else {
                error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no live session `{session}` of agent `{agent}`"),
                )
            }
        }
        _ => not_found(),
    }
}

/// `/holds`: list, approve, refuse.
fn holds(op: &Operator, method: &Method, parts: &[&str]) -> Response<Full<Bytes>> {
    match (method, parts) {
        (&Method::GET, []) => reply(StatusCode::OK, json!({"holds": op.holds()})),
        (&Method::POST, [id, verb @ ("approve" | "refuse")]) => {
            let approve = *verb == "approve";
            if op.answer_hold(id, approve) {
                tracing::info!(decision_id = id, approve, "hold answered by an operator");
                reply(StatusCode::OK, json!({"id": id, "approved": approve}))
            } else {
                error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no held call `{id}` (answered or expired)"),
                )
            }
        }
        _ => not_found(),
    }
}

/// `POST /reload`.
async fn reload(op: &Operator, options: &Options) -> Response<Full<Bytes>> {
    let Some(path) = &options.source.path else {
        return error(
            StatusCode::CONFLICT,
            "no_config_file",
            "the gateway runs the builtin demo configuration; there is no file to reload".into(),
        );
    };
    match op.reload(&options.source).await {
        Ok(done) => {
            tracing::info!(config = %path.display(), applied = ?done.applied, restart_needed = ?done.restart_needed, "configuration reloaded by an operator");
            reply(
                StatusCode::OK,
                json!({
                    "reloaded": true,
                    "config": path.display().to_string(),
                    "applied": done.applied,
                    "restart_needed": done.restart_needed,
                }),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "configuration reload refused; the running configuration stays in force");
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_config",
                e.to_string(),
            )
        }
    }
}

fn store_error(e: &castellan_integrity::StoreError) -> Response<Full<Bytes>> {
    tracing::error!(error = %e, "pin store");
    reply(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"error": "store_unavailable", "error_description": "the pin store could not be read or written; see the gateway log"}),
    )
}

fn state_error(e: &crate::Error) -> Response<Full<Bytes>> {
    tracing::error!(error = %e, "behavioural state store");
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"error": "state_unavailable", "error_description": "the behavioural state could not be read or written; see the gateway log"}),
    )
}

/// Gauges read at scrape time.
async fn observe_gauges(op: &Operator) {
    let g = op.gauges().await;
    metrics::gauge!("castellan_sessions").set(g.mcp_sessions as f64);
    metrics::gauge!("castellan_behaviour_sessions").set(g.behaviour_sessions as f64);
    metrics::gauge!("castellan_quarantined_agents").set(g.quarantined as f64);
    metrics::gauge!("castellan_held_calls").set(g.held as f64);
    if let Some((depth, lag)) = g.audit {
        metrics::gauge!("castellan_audit_queue_depth").set(depth as f64);
        metrics::gauge!("castellan_audit_write_lag_seconds").set(lag.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_and_query_values_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(
            query_param(Some("x=1&agent=a%20b"), "agent").as_deref(),
            Some("a b")
        );
        assert_eq!(query_param(Some("x=1"), "agent"), None);
    }
}
