//! The agent-facing HTTP listener: transport rules of Streamable HTTP for
//! both eras (methods, headers, sessions, DNS-rebinding checks, body
//! limits), then one call into [`Gateway::handle`], then rendering.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use castellan_protocol::jsonrpc::{self, Envelope, ErrorObject, RawObject};
use castellan_protocol::{Kind, mcp, sse};
use futures_util::stream;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::gateway::{Caller, Gateway, ModernCaller, Outcome};
use crate::identity::Principal;
use crate::tls::CertIdentity;
use crate::transport::{FirstByte, HostRules, PerSource};
use crate::upstream::http::ClientProfile;
use tokio_rustls::TlsAcceptor;

type Body = BoxBody<Bytes, Infallible>;

/// Serves agents on `listener` until `shutdown` resolves, then stops
/// accepting and lets open connections finish.
///
/// With `tls` configured, connections are HTTPS (and, with `auth.mtls`, carry the
/// agent's verified client certificate); the handshake must finish within
/// the header timeout.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let bound = listener.local_addr().ok();
    let header_timeout = gateway.config.limits.header_timeout;
    let per_source = PerSource::new(gateway.config.limits.max_connections_per_source, "agent");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, from) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let Some(slot) = per_source.admit(from.ip()) else {
                    refuse_busy(stream, gateway.tls.is_some());
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let gw = gateway.clone();
                // The certificate in force now: a reload serves new
                // handshakes with the new one.
                let Some(tls) = gateway.tls.as_ref().map(|t| TlsAcceptor::from(t.get())) else {
                    let stream = FirstByte::new(stream, header_timeout);
                    serve_connection(gw, bound, None, stream, graceful.watcher(), slot);
                    continue;
                };
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(header_timeout, tls.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            return;
                        }
                    };
                    let peer = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|der| match CertIdentity::of(der) {
                            Ok(id) => Some(Arc::new(id)),
                            Err(e) => {
                                tracing::debug!(error = %e, "unreadable client certificate");
                                None
                            }
                        });
                    let stream = FirstByte::new(stream, header_timeout);
                    serve_connection(gw, bound, peer, stream, watcher, slot);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown()).await;
}

/// Serves HTTP/1.1 or HTTP/2 on one accepted connection.
fn serve_connection<IO>(
    gw: Arc<Gateway>,
    bound: Option<SocketAddr>,
    peer: Option<Arc<CertIdentity>>,
    io: IO,
    graceful: hyper_util::server::graceful::Watcher,
    slot: crate::transport::SourceSlot,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = gw.config.limits.header_timeout;
    let svc = service_fn(move |req| {
        let gw = gw.clone();
        let peer = peer.clone();
        async move { Ok::<_, Infallible>(route(gw, bound, peer, req).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that dribbles its headers does not hold a connection forever.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = graceful.watch(
        builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc)
            .into_owned(),
    );
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
        drop(slot);
    });
}

/// Closes a connection over the per-source cap; a plain-HTTP client is
/// told why first (best effort: the socket's buffer takes it or not).
pub(crate) fn refuse_busy(stream: tokio::net::TcpStream, tls: bool) {
    if !tls {
        let _ = stream.try_write(
            b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: 52\r\n\r\ntoo many connections from this address; retry later\n",
        );
    }
}

async fn route(
    gw: Arc<Gateway>,
    bound: Option<SocketAddr>,
    peer: Option<Arc<CertIdentity>>,
    req: Request<Incoming>,
) -> Response<Body> {
    let listener = &gw.config.listener;
    let rules = HostRules {
        listen: listener.addr,
        bound,
        allowed_hosts: &listener.allowed_hosts,
        allowed_origins: &listener.allowed_origins,
    };
    if let Err((status, why)) = rules.check(req.headers(), req.uri(), req.version()) {
        return json_status(
            status,
            ErrorObject::new(jsonrpc::INVALID_REQUEST, why).to_response(None),
        );
    }
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix(METADATA_PATH)
        && (rest.is_empty() || rest == listener.path)
        && req.method() == Method::GET
    {
        return protected_resource_metadata(&gw, req.headers());
    }
    if path != listener.path {
        return plain(StatusCode::NOT_FOUND, "not found");
    }
    // Every request proves who is calling; nothing below runs without it.
    // The credentials in force now; a reload applies from the next request.
    let authenticated = gw
        .auth
        .get()
        .authenticate(req.headers(), peer.as_deref())
        .await;
    let principal = match authenticated {
        Ok(p) => p,
        Err(e) => return unauthorized(&gw, req.headers(), &e),
    };
    match *req.method() {
        Method::POST => post(gw, req, principal).await,
        Method::GET => get(gw, req, principal).await,
        Method::DELETE => delete(gw, req, principal).await,
        _ => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "use POST, GET or DELETE");
            r.headers_mut().insert(
                http::header::ALLOW,
                HeaderValue::from_static("GET, POST, DELETE"),
            );
            r
        }
    }
}

fn accepts(headers: &HeaderMap, what: &str) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(what) || v.contains("*/*"))
}

/// Where OAuth protected resource metadata (RFC 9728) is served.
const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The public URL of the MCP endpoint, for metadata and challenges.
fn resource_url(gw: &Gateway, headers: &HeaderMap) -> String {
    if let Some(r) = &gw.config.auth.resource {
        return r.clone();
    }
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| gw.config.listener.addr.to_string(), str::to_owned);
    let scheme = if gw.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}{}", gw.config.listener.path)
}

fn metadata_url(gw: &Gateway, headers: &HeaderMap) -> String {
    let resource = resource_url(gw, headers);
    match resource.split_once("://").and_then(|(scheme, rest)| {
        rest.split_once('/')
            .map(|(host, path)| (scheme, host, path))
    }) {
        Some((scheme, host, path)) => format!("{scheme}://{host}{METADATA_PATH}/{path}"),
        None => format!("{resource}{METADATA_PATH}"),
    }
}

fn protected_resource_metadata(gw: &Gateway, headers: &HeaderMap) -> Response<Body> {
    let auth = gw.auth.get();
    let body = serde_json::json!({
        "resource": resource_url(gw, headers),
        "authorization_servers": auth.issuers,
        "bearer_methods_supported": ["header"],
        "scopes_supported": auth.scopes,
        "resource_name": "Castellan MCP gateway",
    });
    json_status(
        StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

/// 401 with a challenge pointing at the metadata, or 403 for missing scopes.
/// The body says what is wrong; it never echoes the credential.
fn unauthorized(
    gw: &Gateway,
    headers: &HeaderMap,
    e: &crate::identity::AuthError,
) -> Response<Body> {
    use crate::identity::AuthError;
    let meta = metadata_url(gw, headers);
    let (status, challenge, code) = match e {
        AuthError::Missing => (
            StatusCode::UNAUTHORIZED,
            format!("Bearer resource_metadata=\"{meta}\""),
            "invalid_request",
        ),
        AuthError::Invalid(why) => (
            StatusCode::UNAUTHORIZED,
            format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\", resource_metadata=\"{meta}\"",
                why.replace('"', "'")
            ),
            "invalid_token",
        ),
        AuthError::InsufficientScope(scopes) => (
            StatusCode::FORBIDDEN,
            format!(
                "Bearer error=\"insufficient_scope\", scope=\"{scopes}\", resource_metadata=\"{meta}\""
            ),
            "insufficient_scope",
        ),
    };
    let body = serde_json::json!({"error": code, "error_description": e.to_string()});
    let mut r = json_status(status, serde_json::to_vec(&body).unwrap_or_default());
    if let Ok(v) = HeaderValue::try_from(challenge) {
        r.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
    }
    r
}

async fn post(gw: Arc<Gateway>, req: Request<Incoming>, principal: Principal) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let ct_ok = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !ct_ok {
        return json_status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorObject::new(
                jsonrpc::INVALID_REQUEST,
                "Content-Type must be application/json",
            )
            .to_response(None),
        );
    }
    if headers.contains_key(ACCEPT)
        && !accepts(&headers, "application/json")
        && !accepts(&headers, "text/event-stream")
    {
        return json_status(
            StatusCode::NOT_ACCEPTABLE,
            ErrorObject::new(
                jsonrpc::INVALID_REQUEST,
                "Accept must include application/json and text/event-stream",
            )
            .to_response(None),
        );
    }
    let max = gw.config.limits.max_body_bytes;
    // A declared body that never arrives does not hold the connection.
    let within = gw.config.limits.body_timeout;
    let Ok(collected) = tokio::time::timeout(within, Limited::new(body, max).collect()).await
    else {
        tracing::info!(agent = %principal.agent, "request body not received within limits.body_timeout; connection closed");
        let mut r = json_status(
            StatusCode::REQUEST_TIMEOUT,
            ErrorObject::new(
                jsonrpc::INVALID_REQUEST,
                format!(
                    "the request body did not arrive within {} ms",
                    within.as_millis()
                ),
            )
            .to_response(None),
        );
        r.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    };
    let body = match collected {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return json_status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorObject::new(
                        jsonrpc::INVALID_REQUEST,
                        format!("request body exceeds the limit of {max} bytes"),
                    )
                    .to_response(None),
                );
            }
            return plain(StatusCode::BAD_REQUEST, "could not read the request body");
        }
    };
    let env = match Envelope::parse(&body) {
        Ok(env) => env,
        Err(e) => {
            return json_status(
                StatusCode::BAD_REQUEST,
                ErrorObject::new(e.code, e.message).to_response(e.id.as_ref()),
            );
        }
    };
    let wants_sse = !headers.contains_key(ACCEPT) || accepts(&headers, "text/event-stream");
    // Parsed once here for the era checks below, and handed on to the
    // request path (which routes on them).
    let params = match env.kind {
        Kind::Request | Kind::Notification => Some(env.params_object()),
        _ => None,
    };
    if let Some(p) = &params
        && is_modern_request(&headers, p.as_ref().ok())
    {
        let params = params.and_then(Result::ok).unwrap_or_default();
        return match modern_meta_of(&params)
            .and_then(|meta| modern_caller(&headers, &env, &params, &meta, principal))
        {
            Ok(caller) => render(
                gw.handle_parsed(caller, env, Some(Ok(params)), wants_sse)
                    .await,
                None,
            ),
            Err((status, err)) => json_status(status, err.to_response(env.id.as_ref())),
        };
    }
    if env.kind == Kind::Request && env.method() == "initialize" {
        return match gw.initialize(&env, principal) {
            Ok((session, answer)) => {
                tracing::info!(session = %session.id, agent = %session.principal.agent, client = %session.profile.client_info, version = %session.profile.version, "session opened");
                let mut r = json_status(StatusCode::OK, answer);
                if let Ok(v) = HeaderValue::try_from(session.id.as_str()) {
                    r.headers_mut().insert(mcp::HEADER_SESSION_ID, v);
                }
                r
            }
            Err(answer) => json_status(StatusCode::SERVICE_UNAVAILABLE, answer),
        };
    }
    let session = match legacy_session(&gw, &headers, &principal) {
        Ok(s) => s,
        Err((status, msg)) => {
            return json_status(
                status,
                ErrorObject::new(jsonrpc::INVALID_REQUEST, msg).to_response(env.id.as_ref()),
            );
        }
    };
    render(
        gw.handle_parsed(Caller::Legacy(session), env, params, wants_sse)
            .await,
        None,
    )
}

/// A modern request: a 2026-07-28 version header, or a protocol version
/// in `_meta`.
/// `params` is `None` when the params are not an object.
fn is_modern_request(headers: &HeaderMap, params: Option<&RawObject>) -> bool {
    let header_modern = headers
        .get(mcp::HEADER_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(mcp::is_modern);
    // A `_meta` that does not parse (a duplicate key) but names the
    // version is still a modern request, refused as such with the reason.
    header_modern
        || params.and_then(|p| p.get("_meta")).is_some_and(|m| {
            serde_json::from_str::<RawObject>(m.get()).map_or_else(
                |_| m.get().contains(mcp::META_PROTOCOL_VERSION),
                |m| m.get(mcp::META_PROTOCOL_VERSION).is_some(),
            )
        })
}

/// The request's `_meta`, which a modern request must carry with a
/// protocol version and the client's capabilities.
fn modern_meta_of(params: &RawObject) -> Result<RawObject, (StatusCode, ErrorObject)> {
    let invalid = |m: &str| {
        (
            StatusCode::BAD_REQUEST,
            ErrorObject::new(jsonrpc::INVALID_PARAMS, m),
        )
    };
    let raw = params
        .get("_meta")
        .ok_or_else(|| invalid("Invalid params: a 2026-07-28 request must carry `params._meta`"))?;
    let meta: RawObject = serde_json::from_str(raw.get()).map_err(|e| {
        // Name what is wrong: "duplicate key `x`", or not an object.
        let full = e.to_string();
        let at = format!(" at line {} column {}", e.line(), e.column());
        let what = full.strip_suffix(&at).unwrap_or(&full).to_owned();
        invalid(&format!(
            "Invalid params: `params._meta` cannot be read: {what}"
        ))
    })?;
    if meta.get_str(mcp::META_PROTOCOL_VERSION).is_none() {
        return Err(invalid(
            "Invalid params: `_meta` lacks `io.modelcontextprotocol/protocolVersion`",
        ));
    }
    if !meta
        .get(mcp::META_CLIENT_CAPABILITIES)
        .is_some_and(|c| c.get().starts_with('{'))
    {
        return Err(invalid(
            "Invalid params: `_meta` lacks the `io.modelcontextprotocol/clientCapabilities` object",
        ));
    }
    Ok(meta)
}

/// Validates a modern request's version and mirrored headers.
fn modern_caller(
    headers: &HeaderMap,
    env: &Envelope,
    params: &RawObject,
    meta: &RawObject,
    principal: Principal,
) -> Result<Caller, (StatusCode, ErrorObject)> {
    let mismatch = |m: String| {
        (
            StatusCode::BAD_REQUEST,
            ErrorObject::new(mcp::HEADER_MISMATCH, m),
        )
    };
    let version = meta.get_str(mcp::META_PROTOCOL_VERSION).unwrap_or_default();
    // A mirrored header must appear once: with two, one reader takes the
    // first and another the last.
    for name in [
        mcp::HEADER_PROTOCOL_VERSION,
        mcp::HEADER_METHOD,
        mcp::HEADER_NAME,
    ] {
        if headers.get_all(name).iter().nth(1).is_some() {
            return Err(mismatch(format!(
                "Header mismatch: the {name} header appears more than once"
            )));
        }
    }
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{0}"));
    match header(mcp::HEADER_PROTOCOL_VERSION) {
        Some(v) if v == version => {}
        Some(v) => {
            return Err(mismatch(format!(
                "Header mismatch: MCP-Protocol-Version header value '{v}' does not match body value '{version}'"
            )));
        }
        None => {
            return Err(mismatch(
                "Header mismatch: the MCP-Protocol-Version header is required".into(),
            ));
        }
    }
    if !mcp::SUPPORTED_VERSIONS.contains(&version.as_str()) || !mcp::is_modern(&version) {
        return Err((
            StatusCode::BAD_REQUEST,
            ErrorObject::new(
                mcp::UNSUPPORTED_PROTOCOL_VERSION,
                "Unsupported protocol version",
            )
            .with_data(
                serde_json::json!({"supported": mcp::SUPPORTED_VERSIONS, "requested": version}),
            ),
        ));
    }
    if env.kind == Kind::Request {
        match header(mcp::HEADER_METHOD) {
            Some(v) if v == env.method() => {}
            Some(v) => {
                return Err(mismatch(format!(
                    "Header mismatch: Mcp-Method header value '{v}' does not match body value '{}'",
                    env.method()
                )));
            }
            None => {
                return Err(mismatch(
                    "Header mismatch: the Mcp-Method header is required".into(),
                ));
            }
        }
        if let Some(field) = mcp::name_field(env.method()) {
            let body_value = params.get_str(field).unwrap_or_default();
            match header(mcp::HEADER_NAME) {
                Some(v) => match mcp::decode_header_value(v) {
                    Ok(d) if d == body_value => {}
                    Ok(d) => {
                        return Err(mismatch(format!(
                            "Header mismatch: Mcp-Name header value '{d}' does not match body value '{body_value}'"
                        )));
                    }
                    Err(e) => {
                        return Err(mismatch(format!(
                            "Header mismatch: Mcp-Name header is malformed: {e}"
                        )));
                    }
                },
                None => {
                    return Err(mismatch(
                        "Header mismatch: the Mcp-Name header is required".into(),
                    ));
                }
            }
        }
    }
    let caps = meta
        .get(mcp::META_CLIENT_CAPABILITIES)
        .map_or_else(jsonrpc::empty_object, ToOwned::to_owned);
    let info = meta
        .get(mcp::META_CLIENT_INFO)
        .map_or_else(crate::gateway::unknown_client, ToOwned::to_owned);
    let param_headers = headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("mcp-param-"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let session = headers
        .get("castellan-session")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(Caller::Modern(Arc::new(ModernCaller {
        param_headers,
        principal,
        session,
        profile: ClientProfile {
            version,
            capabilities: caps,
            client_info: info,
        },
    })))
}

fn legacy_session(
    gw: &Gateway,
    headers: &HeaderMap,
    principal: &Principal,
) -> Result<Arc<crate::session::ClientSession>, (StatusCode, String)> {
    let Some(id) = headers
        .get(mcp::HEADER_SESSION_ID)
        .and_then(|v| v.to_str().ok())
    else {
        return Err((
            StatusCode::BAD_REQUEST,
            "Bad Request: missing Mcp-Session-Id header (send initialize first, or use 2026-07-28 with `_meta`)".into(),
        ));
    };
    let session = gw.sessions.get(id).ok_or((
        StatusCode::NOT_FOUND,
        "Session not found: it expired or was ended; initialize again".to_string(),
    ))?;
    // A session id is bound to the agent that opened it, and to how it
    // authenticated (an API key's agent and a JWT subject of the same name
    // are not the same caller).
    if session.principal.agent != principal.agent || session.principal.method != principal.method {
        tracing::warn!(session = id, owner = %session.principal.agent, presented_by = %principal.agent, "session id presented by another agent");
        return Err((
            StatusCode::FORBIDDEN,
            "Forbidden: this session belongs to another agent".into(),
        ));
    }
    if let Some(v) = headers
        .get(mcp::HEADER_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
        && !mcp::LEGACY_VERSIONS.contains(&v)
    {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("Bad Request: unsupported MCP-Protocol-Version `{v}`"),
        ));
    }
    Ok(session)
}

async fn get(gw: Arc<Gateway>, req: Request<Incoming>, principal: Principal) -> Response<Body> {
    let headers = req.headers();
    if headers
        .get(mcp::HEADER_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(mcp::is_modern)
    {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "2026-07-28 has no GET stream; use subscriptions/listen",
        );
    }
    if !accepts(headers, "text/event-stream") {
        return plain(
            StatusCode::NOT_ACCEPTABLE,
            "GET needs Accept: text/event-stream",
        );
    }
    let session = match legacy_session(&gw, headers, &principal) {
        Ok(s) => s,
        Err((status, msg)) => {
            return json_status(
                status,
                ErrorObject::new(jsonrpc::INVALID_REQUEST, msg).to_response(None),
            );
        }
    };
    session.touch();
    // Room for every logged event a resume replays at once (the channel
    // allocates only what is queued): a flood of notifications before the
    // answer then takes one resume, not one per 64 events.
    let (tx, rx) = mpsc::channel(64 + crate::session::MAX_LOGGED_EVENTS);
    if let Some(last) = headers
        .get(mcp::HEADER_LAST_EVENT_ID)
        .and_then(|v| v.to_str().ok())
    {
        match session.resume(last, tx.clone()) {
            Some((missed, _open)) => {
                for frame in missed {
                    let _ = tx.try_send(frame);
                }
                return render(Outcome::Sse(rx), None);
            }
            None => {
                tracing::debug!(session = %session.id, last, "unknown Last-Event-ID; opening a fresh stream")
            }
        }
    }
    session.attach_standalone(tx);
    if session.profile.version.as_str() >= "2025-11-25" {
        session.emit(crate::session::STANDALONE, |eid| {
            sse::encode(None, Some(eid), b"")
        });
    } else {
        let _ = session;
    }
    render(Outcome::Sse(rx), None)
}

async fn delete(gw: Arc<Gateway>, req: Request<Incoming>, principal: Principal) -> Response<Body> {
    let Some(id) = req
        .headers()
        .get(mcp::HEADER_SESSION_ID)
        .and_then(|v| v.to_str().ok())
    else {
        return plain(
            StatusCode::BAD_REQUEST,
            "DELETE needs an Mcp-Session-Id header",
        );
    };
    if let Err((status, msg)) = legacy_session(&gw, req.headers(), &principal) {
        return json_status(
            status,
            ErrorObject::new(jsonrpc::INVALID_REQUEST, msg).to_response(None),
        );
    }
    if gw.end_session(id).await {
        tracing::info!(session = id, "session ended by the agent");
        plain(StatusCode::OK, "")
    } else {
        plain(StatusCode::NOT_FOUND, "session not found")
    }
}

fn render(outcome: Outcome, session: Option<&str>) -> Response<Body> {
    let mut r = match outcome {
        Outcome::Json(status, bytes) => json_status(
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            bytes,
        ),
        Outcome::Accepted => plain(StatusCode::ACCEPTED, ""),
        Outcome::Sse(rx) => {
            let frames = stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
            });
            let mut r = Response::new(StreamBody::new(frames).boxed());
            let h = r.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert("x-accel-buffering", HeaderValue::from_static("no"));
            r
        }
    };
    if let Some(v) = session.and_then(|s| HeaderValue::try_from(s).ok()) {
        r.headers_mut().insert(mcp::HEADER_SESSION_ID, v);
    }
    r
}

fn json_status(status: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    *r.status_mut() = status;
    if !text.is_empty() {
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    r
}
