//! The operators' API, on its own listener (loopback by default) with its
//! own bearer token: health and readiness, held calls (list, approve,
//! refuse) and releasing quarantined agents.
//!
//! ```text
//! GET  /health                    liveness
//! GET  /ready                     readiness
//! GET  /metrics                   Prometheus metrics (no token, like /health)
//! GET  /holds                     calls waiting for a human
//! POST /holds/{id}/approve        let a held call through
//! POST /holds/{id}/refuse         refuse it
//! POST /agents/{agent}/release    lift an agent's quarantine
//! GET  /tools/pins                pinned tools and versions withheld
//! GET  /tools/{up}/{tool}/diff    a withheld version against its pin
//! POST /tools/{up}/{tool}/approve approve it (`?hash=` pins exactly that one)
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::gateway::Gateway;
use crate::identity::digest;

/// Installs the process-wide metrics recorder; call once at start, before
/// the gateway serves, so no decision goes uncounted.
pub fn install_metrics() -> Option<PrometheusHandle> {
    match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    }
}

/// Serves the admin API until `shutdown` resolves. `token_sha256` is the
/// SHA-256 of the operators' bearer token.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    token_sha256: [u8; 32],
    metrics: Option<PrometheusHandle>,
    shutdown: impl Future<Output = ()>,
) {
    let handle = metrics;
    gateway
        .behaviour
        .approvals
        .store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let gw = gateway.clone();
                let handle = handle.clone();
                let svc = service_fn(move |req| {
                    let gw = gw.clone();
                    let handle = handle.clone();
                    async move { Ok::<_, Infallible>(route(&gw, handle.as_ref(), token_sha256, req)) }
                });
                tokio::spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
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

fn route(
    gw: &Gateway,
    metrics: Option<&metrics_exporter_prometheus::PrometheusHandle>,
    token_sha256: [u8; 32],
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    if path == "/health" {
        return reply(StatusCode::OK, json!({"status": "ok"}));
    }
    if path == "/metrics" {
        metrics::gauge!("castellan_sessions").set(gw.sessions.len() as f64);
        metrics::gauge!("castellan_held_calls").set(gw.behaviour.holds().len() as f64);
        let text = metrics.map(|h| h.render()).unwrap_or_default();
        let mut r = Response::new(Full::new(Bytes::from(text)));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        return r;
    }
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| digest(t.trim()));
    let authorised = presented.is_some_and(|d| {
        aws_lc_rs::constant_time::verify_slices_are_equal(&d, &token_sha256).is_ok()
    });
    if !authorised {
        let mut r = reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_token", "error_description": "send the admin token as `Authorization: Bearer <token>`"}),
        );
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method(), parts.as_slice()) {
        (&Method::GET, ["ready"]) => reply(
            StatusCode::OK,
            json!({"status": "ready", "sessions": gw.sessions.len()}),
        ),
        (&Method::GET, ["holds"]) => reply(StatusCode::OK, json!({"holds": gw.behaviour.holds()})),
        (&Method::POST, ["holds", id, verb @ ("approve" | "refuse")]) => {
            let approve = *verb == "approve";
            if gw.behaviour.answer_hold(id, approve) {
                tracing::info!(decision_id = id, approve, "hold answered by an operator");
                reply(StatusCode::OK, json!({"id": id, "approved": approve}))
            } else {
                reply(
                    StatusCode::NOT_FOUND,
                    json!({"error": "not_found", "error_description": format!("no held call `{id}` (answered or expired)")}),
                )
            }
        }
        (&Method::POST, ["agents", agent, "release"]) => {
            let released = gw.behaviour.release(agent);
            if released {
                tracing::warn!(agent, "quarantine lifted by an operator");
            }
            reply(
                StatusCode::OK,
                json!({"agent": agent, "released": released}),
            )
        }
        (&Method::GET, ["tools", "pins"]) => match gw.integrity.report() {
            Ok(report) => reply(StatusCode::OK, report),
            Err(e) => store_error(&e),
        },
        (&Method::GET, ["tools", upstream, tool, "diff"]) => {
            match gw.integrity.diff(upstream, tool) {
                Ok(Some(diff)) => reply(StatusCode::OK, diff),
                Ok(None) => reply(
                    StatusCode::NOT_FOUND,
                    json!({"error": "not_found", "error_description": format!("no version of `{upstream}` tool `{tool}` is waiting for approval")}),
                ),
                Err(e) => store_error(&e),
            }
        }
        (&Method::POST, ["tools", upstream, tool, "approve"]) => {
            let hash = query_param(req.uri().query(), "hash");
            match gw
                .integrity
                .approve(upstream, tool, hash.as_deref(), "admin-api")
            {
                Ok(pin) => {
                    gw.announce_tools_changed();
                    reply(StatusCode::OK, json!({"approved": pin}))
                }
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
        _ => reply(StatusCode::NOT_FOUND, json!({"error": "not_found"})),
    }
}

fn store_error(e: &castellan_integrity::StoreError) -> Response<Full<Bytes>> {
    tracing::error!(error = %e, "pin store");
    reply(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"error": "store_unavailable", "error_description": "the pin store could not be read or written; see the gateway log"}),
    )
}

/// One `key=value` of a query string (values here are plain tokens: no
/// percent-decoding needed beyond `%3A` for the hash's colon).
fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.replace("%3A", ":").replace("%3a", ":"))
}
