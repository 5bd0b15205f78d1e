//! Streamable HTTP upstreams, spoken in either era.
//!
//! Legacy era: the gateway opens an upstream session (`initialize`) per
//! agent session, so server-to-client requests and notifications reach the
//! right agent, plus one shared session for stateless (modern) agents and
//! for catalogue reads. Modern era: every request is self-contained; the
//! gateway forwards the agent's `_meta` and mirrors the routing headers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use castellan_config::UpstreamEra;
use castellan_protocol::jsonrpc::{Envelope, RawObject, RequestId, raw_json, to_raw};
use castellan_protocol::mcp;
use castellan_protocol::sse;
use futures_util::StreamExt;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyStream, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::{Mutex, OnceCell, mpsc};
use tokio::task::JoinHandle;

use super::oauth::TokenSource;
use super::pool::{Answer, Pool};
use super::{Outbound, Push, PushTx, ReplyRx, UpMsg, UpstreamError, classify};
use crate::reload::Live;

pub(crate) type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// What the gateway tells an upstream about the agent it acts for, in
/// `initialize` (legacy) or `_meta` (modern).
#[derive(Debug, Clone)]
pub struct ClientProfile {
    /// Protocol version the agent negotiated.
    pub version: String,
    /// The agent's declared capabilities (kept as sent: a session holds
    /// them for its whole life, and raw text is far smaller than a map).
    pub capabilities: Box<RawValue>,
    /// The agent's self-description, as sent.
    pub client_info: Box<RawValue>,
}

impl ClientProfile {
    /// The profile the gateway uses for its own sessions: every client
    /// capability, so upstreams may ask; the gateway refuses such requests
    /// when the agent behind it cannot serve them.
    pub fn gateway() -> Self {
        ClientProfile {
            version: mcp::LATEST_LEGACY.into(),
            capabilities: raw_json(
                r#"{"roots":{"listChanged":true},"sampling":{},"elicitation":{}}"#,
            ),
            client_info: to_raw(
                &json!({"name": "castellan", "version": env!("CARGO_PKG_VERSION")}),
            ),
        }
    }

    /// Whether the agent declared a client capability (`sampling`,
    /// `elicitation`, `roots`).
    pub fn declares(&self, capability: &str) -> bool {
        serde_json::from_str::<RawObject>(self.capabilities.get())
            .is_ok_and(|c| c.get(capability).is_some())
    }
}

/// A legacy session the gateway holds with an upstream.
#[derive(Debug)]
pub struct UpSession {
    id: Option<HeaderValue>,
    version: HeaderValue,
    /// Capabilities the upstream declared.
    pub capabilities: serde_json::Value,
    dead: AtomicBool,
    listener: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl UpSession {
    /// Whether the upstream forgot this session (404) and it must be reopened.
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }
}

impl Drop for UpSession {
    fn drop(&mut self) {
        if let Ok(mut l) = self.listener.lock()
            && let Some(h) = l.take()
        {
            h.abort();
        }
    }
}

/// The era an upstream speaks, found by probing once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detected {
    Modern,
    Legacy,
}

/// A Streamable HTTP upstream.
#[derive(Debug)]
pub struct HttpUpstream {
    index: usize,
    name: Arc<str>,
    uri: Uri,
    credentials: Live<Credentials>,
    era: UpstreamEra,
    detected: OnceCell<Detected>,
    client: HttpsClient,
    /// Connections for calls, driven by the call itself (see `pool`).
    pool: Pool,
    timeout: Duration,
    max_message: usize,
    shared: Mutex<Option<Arc<UpSession>>>,
    push: PushTx,
    ids: Arc<AtomicU64>,
}

/// What the gateway presents to one upstream: its own headers and OAuth
/// client, never the agent's token. Replaced as a whole on reload; an
/// OAuth client keeps no token across a reload, so rotated secrets apply
/// at once.
#[derive(Debug)]
pub struct Credentials {
    headers: Vec<(HeaderName, HeaderValue)>,
    oauth: Option<TokenSource>,
}

impl Credentials {
    /// Checks and builds the credentials configured for upstream `name`.
    pub fn new(name: &str, cfg: &castellan_config::HttpUpstream) -> Result<Self, String> {
        let mut headers = Vec::with_capacity(cfg.headers.len());
        for (k, v) in &cfg.headers {
            let k = HeaderName::try_from(k.as_str())
                .map_err(|_| format!("upstream `{name}`: invalid header name `{k}`"))?;
            let v = HeaderValue::try_from(v.as_str())
                .map_err(|_| format!("upstream `{name}`: invalid value for header `{k}`"))?;
            headers.push((k, v));
        }
        let oauth = cfg
            .oauth
            .as_ref()
            .map(TokenSource::new)
            .transpose()
            .map_err(|e| format!("upstream `{name}`: {e}"))?;
        Ok(Credentials { headers, oauth })
    }

    fn apply(&self, mut b: http::request::Builder) -> http::request::Builder {
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        b
    }

    /// Puts these credentials on `req`, replacing any header of the same
    /// name already there (one an agent's argument may have set).
    pub(crate) async fn authorize(
        &self,
        client: &HttpsClient,
        timeout: Duration,
        req: &mut Request<Full<Bytes>>,
    ) -> Result<(), String> {
        for (k, v) in &self.headers {
            req.headers_mut().insert(k.clone(), v.clone());
        }
        if let Some(oauth) = &self.oauth {
            let bearer = oauth.bearer(client, timeout).await?;
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, bearer);
        }
        Ok(())
    }

    /// After a 401: drops a cached OAuth token; true when a retry with a
    /// fresh one may help.
    pub(crate) async fn refused(&self) -> bool {
        match &self.oauth {
            Some(oauth) => {
                oauth.invalidate().await;
                true
            }
            None => false,
        }
    }
}

/// An HTTP(S) connector with the system's TLS roots, for upstream `name`.
pub(crate) fn https_connector(
    name: &str,
    connect_timeout: Duration,
) -> hyper_rustls::HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(upstream = name, error = %e, "no native TLS roots; https upstreams will fail");
            let tls = rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
        }
    };
    builder.https_or_http().enable_http1().wrap_connector(http)
}

impl HttpUpstream {
    /// Puts new credentials in force for the next request.
    pub fn set_credentials(&self, credentials: Credentials) {
        self.credentials.replace(credentials);
    }

    /// Builds the upstream; nothing is sent until the first request.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        name: &str,
        cfg: &castellan_config::HttpUpstream,
        timeout: Duration,
        connect_timeout: Duration,
        max_message: usize,
        push: PushTx,
        ids: Arc<AtomicU64>,
    ) -> Result<Self, String> {
        let uri: Uri = cfg
            .url
            .parse()
            .map_err(|e| format!("upstream `{name}`: invalid url `{}`: {e}", cfg.url))?;
        let connector = https_connector(name, connect_timeout);
        let pool = Pool::new(connector.clone(), &uri, Duration::from_secs(60));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(HttpUpstream {
            index,
            name: name.into(),
            uri,
            credentials: Live::new(Credentials::new(name, cfg)?),
            era: cfg.era,
            detected: OnceCell::new(),
            client,
            pool,
            timeout,
            max_message,
            shared: Mutex::new(None),
            push,
            ids,
        })
    }

    fn err_unavailable(&self, reason: impl Into<String>) -> UpstreamError {
        UpstreamError::Unavailable {
            upstream: self.name.clone(),
            reason: reason.into(),
        }
    }

    fn err_failed(&self, reason: impl Into<String>) -> UpstreamError {
        UpstreamError::Failed {
            upstream: self.name.clone(),
            reason: reason.into(),
        }
    }

    fn next_id(&self) -> RequestId {
        RequestId::number(self.ids.fetch_add(1, Ordering::Relaxed))
    }

    /// Whether the configuration says this upstream speaks only 2026-07-28.
    pub fn forced_modern(&self) -> bool {
        self.era == UpstreamEra::Modern
    }

    /// Whether requests for a modern agent go to this upstream statelessly.
    pub async fn speaks_modern(&self) -> bool {
        match self.era {
            UpstreamEra::Modern => true,
            UpstreamEra::Legacy => false,
            UpstreamEra::Auto => {
                *self.detected.get_or_init(|| self.probe()).await == Detected::Modern
            }
        }
    }

    /// Sends `server/discover` once; a modern result means the upstream
    /// speaks 2026-07-28.
    async fn probe(&self) -> Detected {
        let out = Outbound {
            id: self.next_id(),
            method: "server/discover".into(),
            params: Some(to_raw(
                &json!({"_meta": modern_meta(&ClientProfile::gateway())}),
            )),
            extra_headers: Vec::new(),
        };
        let rx = match self.send(&out, Mode::Modern).await {
            Ok(rx) => rx,
            Err(_) => return Detected::Legacy,
        };
        match first_final(rx, self.timeout).await {
            Some(env) if env.result.is_some() => {
                tracing::info!(upstream = %self.name, "upstream speaks MCP 2026-07-28");
                Detected::Modern
            }
            _ => {
                tracing::info!(upstream = %self.name, "upstream speaks legacy MCP (initialize)");
                Detected::Legacy
            }
        }
    }

    /// Opens a legacy session on behalf of `profile`; pushes from its GET
    /// stream go to `push`.
    pub async fn open_session(
        &self,
        profile: &ClientProfile,
        push: PushTx,
    ) -> Result<Arc<UpSession>, UpstreamError> {
        let version = if mcp::is_modern(&profile.version) {
            mcp::LATEST_LEGACY.to_string()
        } else {
            profile.version.clone()
        };
        let out = Outbound {
            id: self.next_id(),
            method: "initialize".into(),
            params: Some(to_raw(&json!({
                "protocolVersion": version,
                "capabilities": profile.capabilities,
                "clientInfo": profile.client_info,
            }))),
            extra_headers: Vec::new(),
        };
        let (rx, session_id) = self.send_raw(&out, Mode::Initialize).await?;
        let env = first_final(rx, self.timeout)
            .await
            .ok_or_else(|| self.err_failed("no answer to initialize"))?;
        let result: serde_json::Value = env
            .result
            .as_ref()
            .and_then(|r| serde_json::from_str(r.get()).ok())
            .ok_or_else(|| {
                self.err_unavailable(format!(
                    "initialize refused: {}",
                    env.error.as_ref().map_or("no result", |e| e.get())
                ))
            })?;
        let negotiated = result
            .get("protocolVersion")
            .and_then(|v| v.as_str())
            .unwrap_or(&version)
            .to_owned();
        let session = Arc::new(UpSession {
            id: session_id,
            version: HeaderValue::try_from(negotiated.as_str())
                .unwrap_or(HeaderValue::from_static(mcp::LATEST_LEGACY)),
            capabilities: result.get("capabilities").cloned().unwrap_or(json!({})),
            dead: AtomicBool::new(false),
            listener: std::sync::Mutex::new(None),
        });
        let note = Outbound {
            id: RequestId::number(0),
            method: "notifications/initialized".into(),
            params: None,
            extra_headers: Vec::new(),
        };
        self.notify(Some(&session), &note).await;
        let creds = self.credentials.get();
        let mut get = self.get_request(&creds, &session);
        if let Some(req) = get.as_mut()
            && self.authorize(&creds, req).await.is_err()
        {
            get = None;
        }
        let listener = tokio::spawn(listen(
            self.client.clone(),
            get,
            self.index,
            self.max_message,
            push,
            self.name.clone(),
        ));
        if let Ok(mut l) = session.listener.lock() {
            *l = Some(listener);
        }
        Ok(session)
    }

    /// The session shared by stateless agents and catalogue reads.
    pub async fn shared_session(&self) -> Result<Arc<UpSession>, UpstreamError> {
        let mut guard = self.shared.lock().await;
        if let Some(s) = guard.as_ref().filter(|s| !s.is_dead()) {
            return Ok(s.clone());
        }
        let s = self
            .open_session(&ClientProfile::gateway(), self.push.clone())
            .await?;
        *guard = Some(s.clone());
        Ok(s)
    }

    /// Sends a request. `session` selects the legacy era; `None` sends it
    /// statelessly (the params must carry modern `_meta`).
    pub async fn request(
        &self,
        session: Option<&UpSession>,
        out: &Outbound,
    ) -> Result<ReplyRx, UpstreamError> {
        match session {
            Some(s) => self.send(out, Mode::Legacy(s)).await,
            None => self.send(out, Mode::Modern).await,
        }
    }

    /// Sends a notification or a response (fire and forget; failures are logged).
    pub async fn notify(&self, session: Option<&UpSession>, out: &Outbound) {
        let bytes = if out.method.is_empty() {
            Vec::new()
        } else {
            Envelope::request_bytes(None, &out.method, out.params.as_deref())
        };
        self.post_message(session, Bytes::from(bytes)).await;
    }

    /// Posts raw message bytes (a notification or a response to the upstream).
    pub async fn post_message(&self, session: Option<&UpSession>, bytes: Bytes) {
        let creds = self.credentials.get();
        let mut req = self.post_builder(&creds);
        if let Some(s) = session {
            req = with_session(req, s);
        }
        let Ok(mut req) = req.body(Full::new(bytes)) else {
            return;
        };
        if let Err(e) = self.authorize(&creds, &mut req).await {
            tracing::debug!(upstream = %self.name, error = %e, "no credential to post a message upstream");
            return;
        }
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => {}
            Ok(Ok(resp)) => {
                tracing::debug!(upstream = %self.name, status = %resp.status(), "upstream refused a message")
            }
            Ok(Err(e)) => {
                tracing::debug!(upstream = %self.name, error = %e, "could not post a message upstream")
            }
            Err(_) => {
                tracing::debug!(upstream = %self.name, "posting a message upstream timed out")
            }
        }
    }

    /// Ends a legacy session upstream (DELETE).
    pub async fn close_session(&self, session: &UpSession) {
        let Some(id) = &session.id else { return };
        let creds = self.credentials.get();
        // The upstream's own credentials, as on every other request.
        let b = creds.apply(
            Request::builder()
                .method(Method::DELETE)
                .uri(self.uri.clone())
                .header(mcp::HEADER_SESSION_ID, id.clone()),
        );
        let Ok(mut req) = b.body(Full::new(Bytes::new())) else {
            return;
        };
        if self.authorize(&creds, &mut req).await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.request(req)).await;
    }

    /// Adds this upstream's OAuth access token, when it has one.
    async fn authorize(
        &self,
        creds: &Credentials,
        req: &mut Request<Full<Bytes>>,
    ) -> Result<(), UpstreamError> {
        if let Some(oauth) = &creds.oauth {
            let bearer = oauth
                .bearer(&self.client, self.timeout)
                .await
                .map_err(|e| self.err_unavailable(e))?;
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, bearer);
        }
        Ok(())
    }

    /// Sends a call and reads its answer (or the head of its stream)
    /// within the upstream's timeout.
    async fn dispatch(&self, req: Request<Full<Bytes>>) -> Result<Answer, UpstreamError> {
        match tokio::time::timeout(self.timeout, self.pool.send(req, self.max_message)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(self.err_unavailable(e)),
            Err(_) => Err(UpstreamError::Timeout {
                upstream: self.name.clone(),
                millis: self.timeout.as_millis(),
            }),
        }
    }

    fn post_builder(&self, creds: &Credentials) -> http::request::Builder {
        creds.apply(
            Request::builder()
                .method(Method::POST)
                .uri(self.uri.clone())
                .header(CONTENT_TYPE, "application/json")
                .header(ACCEPT, "application/json, text/event-stream"),
        )
    }

    fn get_request(
        &self,
        creds: &Credentials,
        session: &UpSession,
    ) -> Option<Request<Full<Bytes>>> {
        let b = creds.apply(
            Request::builder()
                .method(Method::GET)
                .uri(self.uri.clone())
                .header(ACCEPT, "text/event-stream"),
        );
        with_session(b, session).body(Full::new(Bytes::new())).ok()
    }

    async fn send(&self, out: &Outbound, mode: Mode<'_>) -> Result<ReplyRx, UpstreamError> {
        self.send_raw(out, mode).await.map(|(rx, _)| rx)
    }

    async fn send_raw(
        &self,
        out: &Outbound,
        mode: Mode<'_>,
    ) -> Result<(ReplyRx, Option<HeaderValue>), UpstreamError> {
        let creds = self.credentials.get();
        let mut b = self.post_builder(&creds);
        match mode {
            Mode::Legacy(s) => b = with_session(b, s),
            Mode::Initialize => {}
            Mode::Modern => {
                b = b
                    .header(mcp::HEADER_PROTOCOL_VERSION, mcp::MODERN)
                    .header(mcp::HEADER_METHOD, out.method.as_str());
                if let Some(field) = mcp::name_field(&out.method) {
                    let name = out
                        .params
                        .as_ref()
                        .and_then(|p| {
                            serde_json::from_str::<castellan_protocol::jsonrpc::RawObject>(p.get())
                                .ok()
                        })
                        .and_then(|o| o.get_str(field));
                    if let Some(v) = name
                        .as_deref()
                        .map(mcp::encode_header_value)
                        .and_then(|v| HeaderValue::try_from(v.as_ref()).ok())
                    {
                        b = b.header(mcp::HEADER_NAME, v);
                    }
                }
                for (k, v) in &out.extra_headers {
                    b = b.header(k, v);
                }
            }
        }
        if let Some((k, v)) = crate::telemetry::traceparent() {
            b = b.header(k, v);
        }
        let body = Bytes::from(out.to_bytes());
        let mut req = b
            .body(Full::new(body.clone()))
            .map_err(|e| self.err_unavailable(e.to_string()))?;
        let headers = creds.oauth.as_ref().map(|_| req.headers().clone());
        self.authorize(&creds, &mut req).await?;
        let mut resp = self.dispatch(req).await?;
        // An expired or revoked token: get a fresh one and try once more.
        if resp.status() == StatusCode::UNAUTHORIZED
            && let (Some(oauth), Some(headers)) = (&creds.oauth, headers)
        {
            oauth.invalidate().await;
            let mut retry = Request::builder()
                .method(Method::POST)
                .uri(self.uri.clone())
                .body(Full::new(body))
                .map_err(|e| self.err_unavailable(e.to_string()))?;
            *retry.headers_mut() = headers;
            self.authorize(&creds, &mut retry).await?;
            resp = self.dispatch(retry).await?;
        }
        let status = resp.status();
        let session_id = resp.headers().get(mcp::HEADER_SESSION_ID).cloned();
        if status == StatusCode::NOT_FOUND
            && let Mode::Legacy(s) = mode
        {
            s.dead.store(true, Ordering::Relaxed);
            return Err(self.err_unavailable("upstream session expired; it will be reopened"));
        }
        let (tx, rx) = mpsc::channel(16);
        let want = out.id.clone();
        let name = self.name.clone();
        let max = self.max_message;
        if status == StatusCode::ACCEPTED {
            return Err(self.err_failed("upstream accepted the request without answering it"));
        }
        if let Answer::Streamed(resp) = resp {
            let body = resp.into_body();
            let cancel = match mode {
                Mode::Legacy(s) => {
                    Some((self.post_builder(&creds), s.id.clone(), s.version.clone()))
                }
                _ => None,
            };
            let client = self.client.clone();
            tokio::spawn(relay_sse(
                body,
                want,
                tx,
                max,
                name,
                cancel.map(|c| (client, c)),
            ));
        } else if let Answer::Buffered { body, .. } = resp {
            let collected = body.map_err(|e| self.err_failed(e))?;
            match classify(collected.clone(), &want, status.as_u16()) {
                Some(msg @ UpMsg::Final(..)) => {
                    let _ = tx.try_send(Ok(msg));
                }
                _ if !status.is_success() => {
                    return Err(self.err_unavailable(format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&collected[..collected.len().min(200)])
                    )));
                }
                _ => {
                    return Err(self.err_failed(
                        "upstream answered with something that is not a JSON-RPC response",
                    ));
                }
            }
        }
        Ok((rx, session_id))
    }
}

#[derive(Clone, Copy)]
enum Mode<'a> {
    Initialize,
    Legacy(&'a UpSession),
    Modern,
}

fn with_session(mut b: http::request::Builder, s: &UpSession) -> http::request::Builder {
    if let Some(id) = &s.id {
        b = b.header(mcp::HEADER_SESSION_ID, id.clone());
    }
    b.header(mcp::HEADER_PROTOCOL_VERSION, s.version.clone())
}

/// Modern `_meta` for a profile.
pub fn modern_meta(profile: &ClientProfile) -> serde_json::Value {
    json!({
        mcp::META_PROTOCOL_VERSION: mcp::MODERN,
        mcp::META_CLIENT_CAPABILITIES: profile.capabilities,
        mcp::META_CLIENT_INFO: profile.client_info,
    })
}

/// Waits for the final answer of a reply stream, ignoring anything before it.
async fn first_final(mut rx: ReplyRx, timeout: Duration) -> Option<Envelope> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Ok(UpMsg::Final(env, ..)))) => return Some(env),
            Ok(Some(Ok(UpMsg::Message(..)))) => continue,
            _ => return None,
        }
    }
}

type CancelInfo = (
    HttpsClient,
    (http::request::Builder, Option<HeaderValue>, HeaderValue),
);

/// Relays an upstream SSE response event by event until the final answer.
async fn relay_sse(
    body: hyper::body::Incoming,
    want: RequestId,
    tx: mpsc::Sender<Result<UpMsg, UpstreamError>>,
    max: usize,
    name: Arc<str>,
    cancel: Option<CancelInfo>,
) {
    let mut stream = BodyStream::new(body);
    let mut decoder = sse::Decoder::new(max);
    let mut events = Vec::new();
    loop {
        let frame = tokio::select! {
            f = stream.next() => f,
            _ = tx.closed() => {
                // The agent went away: tell a legacy upstream to stop (dropping
                // the stream is the cancellation signal in the modern era).
                if let Some((client, (builder, _, _))) = cancel {
                    let note = Envelope::request_bytes(None, "notifications/cancelled", Some(&to_raw(&json!({"requestId": serde_json::from_str::<serde_json::Value>(want.as_json()).unwrap_or_default(), "reason": "client disconnected"}))));
                    if let Ok(req) = builder.body(Full::new(Bytes::from(note))) {
                        let _ = tokio::time::timeout(Duration::from_secs(2), client.request(req)).await;
                    }
                }
                return;
            }
        };
        let chunk = match frame {
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
            Some(Err(e)) => {
                let _ = tx
                    .send(Err(UpstreamError::Failed {
                        upstream: name.clone(),
                        reason: format!("stream broke: {e}"),
                    }))
                    .await;
                return;
            }
            None => {
                let _ = tx
                    .send(Err(UpstreamError::Failed {
                        upstream: name.clone(),
                        reason: "stream ended before the final answer".into(),
                    }))
                    .await;
                return;
            }
        };
        if let Err(e) = decoder.feed(&chunk, &mut events) {
            let _ = tx
                .send(Err(UpstreamError::Failed {
                    upstream: name.clone(),
                    reason: e.to_string(),
                }))
                .await;
            return;
        }
        for ev in events.drain(..) {
            if ev.data.trim().is_empty() {
                continue;
            }
            let Some(msg) = classify(Bytes::from(ev.data), &want, 200) else {
                continue;
            };
            let done = matches!(msg, UpMsg::Final(..));
            if tx.send(Ok(msg)).await.is_err() || done {
                return;
            }
        }
    }
}

/// Holds the upstream's GET stream open and pushes what arrives.
async fn listen(
    client: HttpsClient,
    req: Option<Request<Full<Bytes>>>,
    index: usize,
    max: usize,
    push: PushTx,
    name: Arc<str>,
) {
    let Some(req) = req else { return };
    let template = (req.uri().clone(), req.headers().clone());
    let mut last_event: Option<String> = None;
    let mut backoff = Duration::from_millis(250);
    let mut first = Some(req);
    loop {
        let req = match first.take() {
            Some(r) => r,
            None => {
                let mut b = Request::builder()
                    .method(Method::GET)
                    .uri(template.0.clone());
                for (k, v) in template.1.iter() {
                    b = b.header(k, v);
                }
                if let Some(id) = &last_event {
                    b = b.header(mcp::HEADER_LAST_EVENT_ID, id.as_str());
                }
                match b.body(Full::new(Bytes::new())) {
                    Ok(r) => r,
                    Err(_) => return,
                }
            }
        };
        let resp = match client.request(req).await {
            Ok(r) => r,
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        if !resp.status().is_success() {
            // 405: the upstream offers no GET stream; 404: the session is gone.
            tracing::debug!(upstream = %name, status = %resp.status(), "no GET stream from upstream");
            return;
        }
        backoff = Duration::from_millis(250);
        let mut stream = BodyStream::new(resp.into_body());
        let mut decoder = sse::Decoder::new(max);
        let mut events = Vec::new();
        while let Some(Ok(frame)) = stream.next().await {
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            if decoder.feed(&chunk, &mut events).is_err() {
                break;
            }
            for ev in events.drain(..) {
                if let Some(id) = ev.id {
                    last_event = Some(id);
                }
                let bytes = Bytes::from(ev.data);
                if let Ok(message) = Envelope::parse(&bytes)
                    && push
                        .send(Push {
                            upstream: index,
                            message,
                            bytes,
                        })
                        .is_err()
                {
                    return;
                }
            }
        }
        if push.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
    }
}
