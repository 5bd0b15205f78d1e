//! The gateway's request path: one agent message in, one answer (JSON or an
//! SSE stream) out. Data flows one way through [`Gateway::handle`]:
//! caller context -> parse -> route -> admit (the judge's seam) -> upstream
//! -> inspect result (the inspection seam) -> respond.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use castellan_config::{Config, Transport};
use castellan_protocol::jsonrpc::{
    self, Envelope, ErrorObject, INVALID_PARAMS, METHOD_NOT_FOUND, ParseError, RawObject,
    RequestId, to_raw,
};
use castellan_protocol::{Kind, json, mcp, sse};
use futures_util::future::join_all;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::behaviour::{Behaviour, Judged, META_DECISION, META_INTENT, META_SESSION};
pub use crate::call::{Caller, ModernCaller, Outcome};
use crate::call::{ParkedCalls, Post, Routed};
use crate::error::Error;
use crate::federation::{Routes, list_shape};
use crate::identity::{Authenticator, Principal};
use crate::integrity::{Check, Integrity, Listed, ScreenMemo};
use crate::list_cache::{Answers, Claim, Entry, ListCache, Page, Slot, Stamp};
use crate::listen::{Filter, Listeners};
use crate::reload::Live;
use crate::session::{ClientSession, STANDALONE, ServerRequestRoute, Sessions};
use crate::upstream::http::{ClientProfile, Credentials, HttpUpstream, UpSession};
use crate::upstream::{Outbound, Push, ReplyRx, UpMsg, UpstreamError};
use crate::upstreams::{OnBehalf, Upstreams};
use castellan_judge::{CallKind, Decision};

/// The gateway: upstreams, routing tables and sessions.
#[derive(Debug)]
pub struct Gateway {
    pub(crate) config: Arc<Config>,
    upstreams: Upstreams,
    pub(crate) names: Vec<Arc<str>>,
    routes: Routes,
    pub(crate) sessions: Sessions,
    pub(crate) behaviour: Behaviour,
    pub(crate) integrity: Integrity,
    /// The last screening of each kind of list (see [`Listed`]), reused
    /// while nothing changed.
    screen_memo: std::sync::Mutex<[ScreenMemo; 4]>,
    /// Fresh screenings so far (each rewrites the integrity status and
    /// teaches the judge): a cached list answer is reused only under the
    /// screening it was built after.
    screenings: AtomicU64,
    /// The last merged list answer per agent view.
    list_cache: ListCache,
    pub(crate) auth: Live<Authenticator>,
    /// The listener's TLS (certificate and client CA), when it serves HTTPS.
    pub(crate) tls: Option<Live<rustls::ServerConfig>>,
    listeners: Listeners,
    pub(crate) parked: ParkedCalls,
    ids: Arc<AtomicU64>,
    /// Itself, for the tasks it starts on behalf of one session.
    me: std::sync::Weak<Gateway>,
}

/// Implementation-defined JSON-RPC code: the gateway refused the request.
pub const REFUSED: i64 = -32001;

/// Largest number of pages read from one upstream for one list.
const MAX_PAGES: usize = 100;

impl Gateway {
    /// Builds the gateway and starts what runs in the background (stdio
    /// children, the broadcast of upstream pushes, session expiry).
    pub fn start(
        config: Arc<Config>,
        auth: Authenticator,
        behaviour: Behaviour,
        integrity: Integrity,
    ) -> Result<Arc<Gateway>, Error> {
        let tls = match &config.tls {
            Some(t) => Some(Live::new(
                crate::tls::server_config(t, config.auth.mtls.as_ref()).map_err(Error::Tls)?,
            )),
            None => None,
        };
        let ids = Arc::new(AtomicU64::new(1));
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let upstreams =
            Upstreams::start(&config, &push_tx, &ids, &behaviour).map_err(Error::Upstream)?;
        let gw = Arc::new_cyclic(|me| Gateway {
            me: me.clone(),
            names: config
                .upstreams
                .iter()
                .map(|u| Arc::<str>::from(u.name.as_str()))
                .collect(),
            routes: Routes::new(config.upstreams.iter().map(|u| u.prefix.clone()).collect()),
            config,
            upstreams,
            sessions: Sessions::default(),
            behaviour,
            integrity,
            screen_memo: std::sync::Mutex::default(),
            screenings: AtomicU64::new(0),
            list_cache: ListCache::default(),
            auth: Live::new(auth),
            tls,
            listeners: Listeners::default(),
            parked: ParkedCalls::default(),
            ids,
        });
        tokio::spawn(broadcast(Arc::downgrade(&gw), push_rx));
        tokio::spawn(expire_sessions(Arc::downgrade(&gw)));
        Ok(gw)
    }

    /// The credentials each HTTP upstream would use under `next`, built
    /// (and checked) without putting them in force. Upstreams are matched
    /// by name; one that `next` no longer has keeps its credentials.
    pub(crate) fn upstream_credentials(
        &self,
        next: &Config,
    ) -> Result<Vec<(&HttpUpstream, Credentials)>, String> {
        let mut out = Vec::new();
        for (i, h) in self.upstreams.https() {
            let name = &self.names[i];
            let Some(cfg) = next.upstreams.iter().find(|u| *u.name == **name) else {
                continue;
            };
            if let Transport::Http(c) = &cfg.transport {
                out.push((h, Credentials::new(name, c)?));
            }
        }
        Ok(out)
    }

    pub(crate) fn next_id(&self) -> RequestId {
        RequestId::number(self.ids.fetch_add(1, Ordering::Relaxed))
    }

    /// Opens a legacy session for an `initialize` request; returns the
    /// session and the answer.
    pub fn initialize(
        self: &Arc<Self>,
        env: &Envelope,
        principal: Principal,
    ) -> Result<(Arc<ClientSession>, Vec<u8>), Vec<u8>> {
        let id = env.id.as_ref();
        let params: RawObject = env
            .params
            .as_ref()
            .and_then(|p| serde_json::from_str(p.get()).ok())
            .unwrap_or_default();
        let requested = params.get_str("protocolVersion");
        let version = match requested.as_deref() {
            Some(v) if mcp::LEGACY_VERSIONS.contains(&v) => v,
            _ => mcp::LATEST_LEGACY,
        };
        let profile = ClientProfile {
            version: version.to_owned(),
            capabilities: params
                .get("capabilities")
                .map_or_else(jsonrpc::empty_object, ToOwned::to_owned),
            client_info: params
                .get("clientInfo")
                .map_or_else(unknown_client, ToOwned::to_owned),
        };
        let Some(sid) = crate::session::new_session_id() else {
            return Err(ErrorObject::new(
                jsonrpc::INTERNAL_ERROR,
                "cannot create a session: no randomness available",
            )
            .to_response(id));
        };
        let session = ClientSession::new(sid, profile, principal);
        let limits = &self.config.limits;
        match self.sessions.insert(
            session.clone(),
            limits.max_sessions,
            limits.max_sessions_per_agent,
        ) {
            Ok(()) => {}
            Err(crate::session::SessionLimit::Total) => {
                return Err(ErrorObject::new(
                    jsonrpc::INTERNAL_ERROR,
                    "too many sessions; try again later",
                )
                .to_response(id));
            }
            Err(crate::session::SessionLimit::Agent) => {
                return Err(ErrorObject::new(
                    jsonrpc::INTERNAL_ERROR,
                    format!(
                        "agent `{}` already has {} open sessions (`limits.max_sessions_per_agent`); end one with DELETE or let it expire",
                        session.principal.agent, limits.max_sessions_per_agent
                    ),
                )
                .to_response(id));
            }
        }
        let result = json!({
            "protocolVersion": version,
            "capabilities": server_capabilities(),
            "serverInfo": server_info(),
            "instructions": "Castellan gateway: tools of every upstream are named `upstream__tool`. Every call is judged and recorded.",
        });
        let Some(id) = id else {
            return Err(
                ErrorObject::new(jsonrpc::INVALID_REQUEST, "initialize must be a request")
                    .to_response(None),
            );
        };
        Ok((session, Envelope::result_value_bytes(id, &result, 512)))
    }

    /// Handles one agent message (after the HTTP layer checked transport
    /// headers and found the caller).
    pub async fn handle(
        self: &Arc<Self>,
        caller: Caller,
        env: Envelope,
        wants_sse: bool,
    ) -> Outcome {
        self.handle_parsed(caller, env, None, wants_sse).await
    }

    /// [`Gateway::handle`] for a message whose params the HTTP layer has
    /// already parsed (`env.params_object()`), so they are not parsed twice.
    pub async fn handle_parsed(
        self: &Arc<Self>,
        caller: Caller,
        env: Envelope,
        parsed: Option<Result<RawObject, ParseError>>,
        wants_sse: bool,
    ) -> Outcome {
        if let Some(s) = caller.session() {
            s.touch();
        }
        match env.kind {
            Kind::Request => {
                let Some(id) = env.id.clone() else {
                    return Outcome::Accepted;
                };
                let span = crate::telemetry::request_span(env.method());
                match tracing::Instrument::instrument(
                    self.request(&caller, &id, env, parsed, wants_sse),
                    span,
                )
                .await
                {
                    Ok(o) => o,
                    Err(e) => {
                        // Modern agents learn "no such method" from the HTTP status too.
                        let status = if caller.is_modern() && e.code == METHOD_NOT_FOUND {
                            404
                        } else {
                            200
                        };
                        Outcome::Json(status, e.to_response(Some(&id)))
                    }
                }
            }
            Kind::Notification => {
                self.notification(&caller, &env).await;
                Outcome::Accepted
            }
            Kind::Result | Kind::Error => {
                self.client_response(&caller, env).await;
                Outcome::Accepted
            }
        }
    }

    async fn request(
        self: &Arc<Self>,
        caller: &Caller,
        id: &RequestId,
        env: Envelope,
        parsed: Option<Result<RawObject, ParseError>>,
        wants_sse: bool,
    ) -> Result<Outcome, ErrorObject> {
        let method = env.method().to_owned();
        if caller.is_modern() && mcp::removed_in_modern(&method) {
            return Err(ErrorObject::new(
                METHOD_NOT_FOUND,
                format!("method `{method}` was removed in MCP 2026-07-28"),
            ));
        }
        match method.as_str() {
            "ping" => Ok(self.local_result(caller, id, json!({}))),
            "initialize" => Err(ErrorObject::new(jsonrpc::INVALID_REQUEST, "session already initialized")),
            "server/discover" => Ok(self.local_result(
                caller,
                id,
                with_cache_hints(
                    caller,
                    json!({
                        "supportedVersions": mcp::SUPPORTED_VERSIONS,
                        "capabilities": server_capabilities(),
                        "serverInfo": server_info(),
                        "instructions": "Castellan gateway: tools of every upstream are named `upstream__tool`.",
                    }),
                ),
            )),
            "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
                let params = params_of(&env, parsed)?;
                if params.get("cursor").is_some_and(|c| c.get() != "null") {
                    return Err(ErrorObject::new(INVALID_PARAMS, "invalid cursor: this gateway returns complete lists and issues no cursors"));
                }
                Ok(Outcome::Json(200, self.list_answer(caller, id, &method, &params).await))
            }
            "tools/call" | "prompts/get" => {
                let mut params = params_of(&env, parsed)?;
                let exposed = params.get_str("name").ok_or_else(|| ErrorObject::new(INVALID_PARAMS, format!("{method} needs a string `name`")))?;
                // Read before anything reaches an upstream (a name lookup
                // may list tools): what the judge cannot read as the tool
                // would is refused, never judged as something else.
                let judged_params = if self.config.judge.enabled { Some(judged_params(&params)?) } else { None };
                let (i, name) = self.resolve_name(caller, &exposed, &method).await.ok_or_else(|| {
                    let what = if method == "tools/call" { "tool" } else { "prompt" };
                    ErrorObject::new(INVALID_PARAMS, format!("unknown {what} `{exposed}`"))
                })?;
                if method == "tools/call" {
                    self.check_integrity(caller, i, &exposed, &name).await?;
                } else {
                    self.check_item(caller, i, Listed::Prompts, &name).await?;
                }
                params.set_str("name", &name);
                let Some((args, meta)) = judged_params else {
                    let routed = Routed { upstream: i, method, params };
                    return self.forward(caller, id, routed, wants_sse, Post::Passthrough).await;
                };
                let kind = if method == "tools/call" { CallKind::CallTool } else { CallKind::GetPrompt };
                let judged = match self.judge(caller, i, &name, kind, args, meta).await {
                    Ok(j) => j,
                    Err(refusal) => return Ok(self.refuse(caller, id, &method, &refusal)),
                };
                let routed = Routed { upstream: i, method, params };
                self.forward(caller, id, routed, wants_sse, Post::Judged(judged)).await
            }
            "resources/read" => {
                let mut params = params_of(&env, parsed)?;
                let uri = params.get_str("uri").ok_or_else(|| ErrorObject::new(INVALID_PARAMS, "resources/read needs a string `uri`"))?;
                // Judged and forwarded in its canonical spelling: the
                // resource the policy saw is the one the upstream reads.
                let uri = crate::uri::normalise(&uri);
                params.set_str("uri", &uri);
                let meta = if self.config.judge.enabled { Some(judged_meta(&params)?) } else { None };
                let i = self.resolve_uri(caller, &uri).await.ok_or_else(|| {
                    ErrorObject::new(INVALID_PARAMS, format!("unknown resource `{uri}`")).with_data(json!({"uri": uri}))
                })?;
                self.check_item(caller, i, Listed::Resources, &uri).await?;
                let Some(meta) = meta else {
                    let routed = Routed { upstream: i, method, params };
                    return self.forward(caller, id, routed, wants_sse, Post::Passthrough).await;
                };
                let args = json!({ "uri": uri });
                let judged = match self.judge(caller, i, &uri, CallKind::ReadResource, args, meta).await {
                    Ok(j) => j,
                    Err(refusal) => return Ok(self.refuse(caller, id, &method, &refusal)),
                };
                let routed = Routed { upstream: i, method, params };
                self.forward(caller, id, routed, wants_sse, Post::Judged(judged)).await
            }
            "resources/subscribe" | "resources/unsubscribe" => {
                let mut params = params_of(&env, parsed)?;
                let uri = params.get_str("uri").ok_or_else(|| ErrorObject::new(INVALID_PARAMS, format!("{method} needs a string `uri`")))?;
                let uri = crate::uri::normalise(&uri);
                params.set_str("uri", &uri);
                let i = self.resolve_uri(caller, &uri).await.ok_or_else(|| {
                    ErrorObject::new(INVALID_PARAMS, format!("unknown resource `{uri}`")).with_data(json!({"uri": uri}))
                })?;
                let routed = Routed { upstream: i, method, params };
                self.forward(caller, id, routed, wants_sse, Post::Passthrough).await
            }
            "completion/complete" => {
                let mut params = params_of(&env, parsed)?;
                let reference: RawObject = params
                    .get("ref")
                    .and_then(|r| serde_json::from_str(r.get()).ok())
                    .ok_or_else(|| ErrorObject::new(INVALID_PARAMS, "completion/complete needs a `ref` object"))?;
                let mut reference = reference;
                let judged_args = if self.config.judge.enabled { Some(completion_args(&params)?) } else { None };
                // Judged as the prompt or resource it completes: the same
                // policy resource, so what an agent may not get or read it
                // may not complete either.
                let (i, kind, target) = match (reference.get_str("type").as_deref(), reference.get_str("name"), reference.get_str("uri")) {
                    (Some("ref/prompt"), Some(name), _) => {
                        let (i, local) = self.resolve_name(caller, &name, "prompts/get").await.ok_or_else(|| ErrorObject::new(INVALID_PARAMS, format!("unknown prompt `{name}`")))?;
                        reference.set_str("name", &local);
                        (i, CallKind::GetPrompt, local)
                    }
                    (Some("ref/resource"), _, Some(uri)) => {
                        let uri = crate::uri::normalise(&uri);
                        reference.set_str("uri", &uri);
                        let i = self.resolve_uri(caller, &uri).await.ok_or_else(|| ErrorObject::new(INVALID_PARAMS, format!("unknown resource `{uri}`")))?;
                        (i, CallKind::ReadResource, uri)
                    }
                    _ => return Err(ErrorObject::new(INVALID_PARAMS, "`ref` must be a ref/prompt with `name` or a ref/resource with `uri`")),
                };
                params.set("ref", reference.to_raw());
                let listed = if kind == CallKind::GetPrompt { Listed::Prompts } else { Listed::Resources };
                self.check_item(caller, i, listed, &target).await?;
                let Some((args, meta)) = judged_args else {
                    let routed = Routed { upstream: i, method, params };
                    return self.forward(caller, id, routed, wants_sse, Post::Passthrough).await;
                };
                let judged = match self.judge_as(caller, i, &target, kind, args, meta, true).await {
                    Ok(j) => j,
                    Err(refusal) => return Ok(self.refuse(caller, id, &method, &refusal)),
                };
                let routed = Routed { upstream: i, method, params };
                self.forward(caller, id, routed, wants_sse, Post::Judged(judged)).await
            }
            "subscriptions/listen" if caller.is_modern() => {
                let params = params_of(&env, parsed)?;
                Ok(self.listen(caller, id, params))
            }
            "logging/setLevel" => {
                let params = params_of(&env, parsed)?;
                let sends = (0..self.upstreams.len()).map(|i| {
                    let params = params.clone();
                    async move {
                        let out = Outbound { id: self.next_id(), method: "logging/setLevel".into(), params: Some(params.to_raw()), extra_headers: Vec::new() };
                        if let Ok((rx, _)) = self.send(caller, i, out).await {
                            let _ = final_of(rx, self.config.limits.upstream_timeout).await;
                        }
                    }
                });
                join_all(sends).await;
                Ok(self.local_result(caller, id, json!({})))
            }
            other => Err(ErrorObject::new(METHOD_NOT_FOUND, format!("method `{other}` not found"))),
        }
    }

    /// Judges a routed call on its arguments and `_meta` (from
    /// [`judged_params`]). `Err` carries the refused decision.
    async fn judge(
        &self,
        caller: &Caller,
        i: usize,
        target: &str,
        kind: CallKind,
        args: Value,
        meta: Option<RawObject>,
    ) -> Result<Arc<Judged>, Arc<Judged>> {
        self.judge_as(caller, i, target, kind, args, meta, false)
            .await
    }

    /// [`Self::judge`]; with `completion`, a `completion/complete` of the
    /// prompt or resource `target`.
    #[allow(clippy::too_many_arguments)]
    async fn judge_as(
        &self,
        caller: &Caller,
        i: usize,
        target: &str,
        kind: CallKind,
        args: Value,
        meta: Option<RawObject>,
        completion: bool,
    ) -> Result<Arc<Judged>, Arc<Judged>> {
        let intent = meta.as_ref().and_then(|m| m.get_str(META_INTENT));
        let session = match caller {
            Caller::Legacy(s) => s.id.clone(),
            Caller::Modern(m) => meta
                .as_ref()
                .and_then(|m| m.get_str(META_SESSION))
                .or_else(|| m.session.clone())
                .unwrap_or_else(|| "rolling".into()),
        };
        let judged = if completion {
            self.behaviour
                .decide_completion(
                    caller.principal(),
                    &session,
                    &self.names[i],
                    target,
                    kind,
                    args,
                )
                .await
        } else {
            self.behaviour
                .decide(
                    caller.principal(),
                    &session,
                    &self.names[i],
                    target,
                    kind,
                    args,
                    intent,
                )
                .await
        };
        match judged.verdict.decision {
            d if d.forwards() => Ok(judged),
            // A held call waits for an operator, bounded; then fails closed.
            Decision::Hold if self.behaviour.await_approval(&judged).await => Ok(judged),
            _ => Err(judged),
        }
    }

    /// The answer to a refused call. Tool calls get a result with `isError`
    /// so the model itself reads why (MCP's rule for tool execution errors);
    /// prompts and resources, which have no such field, get a JSON-RPC error.
    /// Both carry the decision id the operator can look up in the audit log.
    fn refuse(&self, caller: &Caller, id: &RequestId, method: &str, judged: &Judged) -> Outcome {
        let decision = judged.verdict.decision.as_str();
        let why = match judged.verdict.summary() {
            s if s.is_empty() => "the policy does not permit it".to_string(),
            s => s,
        };
        let held = judged.verdict.decision == Decision::Hold;
        let text = if held {
            format!(
                "Castellan held this call for human approval and it was not approved, so it was not executed: {why}. Decision {}.",
                judged.id
            )
        } else {
            format!(
                "Castellan refused this call ({decision}): {why}. Decision {}; rules: {}.",
                judged.id,
                judged.verdict.rule_ids().join(", ")
            )
        };
        Outcome::Json(
            200,
            self.refusal(caller, id, method, text, judged.explanation()),
        )
    }

    /// A result whose content the policy blocks: the agent gets a refusal
    /// in the same shape as a refused call, naming the classes (never the
    /// values) and the decision id.
    fn blocked_result(
        &self,
        caller: &Caller,
        id: &RequestId,
        judged: &Judged,
        why: &str,
    ) -> Vec<u8> {
        let text = format!(
            "Castellan blocked this result: it carries {why}, which the content policy does not let reach the agent. Decision {}.",
            judged.id
        );
        let mut data = judged.explanation();
        data["result"] = json!("blocked");
        self.refusal(caller, id, judged.method(), text, data)
    }

    /// One refusal format: tool calls get a result with `isError` so the
    /// model itself reads why (MCP's rule for tool execution errors);
    /// prompts and resources, which have no such field, get a JSON-RPC
    /// error. Both carry the decision.
    fn refusal(
        &self,
        caller: &Caller,
        id: &RequestId,
        method: &str,
        text: String,
        decision: Value,
    ) -> Vec<u8> {
        if method == "tools/call" {
            let result = json!({
                "content": [{"type": "text", "text": text}],
                "isError": true,
                "_meta": { META_DECISION: decision },
            });
            return self.local_result_bytes(caller, id, result);
        }
        ErrorObject::new(REFUSED, text)
            .with_data(decision)
            .to_response(Some(id))
    }

    /// A result the gateway answers itself.
    fn local_result(&self, caller: &Caller, id: &RequestId, result: Value) -> Outcome {
        Outcome::Json(200, self.local_result_bytes(caller, id, result))
    }

    fn local_result_bytes(&self, caller: &Caller, id: &RequestId, result: Value) -> Vec<u8> {
        Envelope::result_value_bytes(id, &local_result_value(caller, result), 256)
    }

    /// A list's answer to the agent: the one built last time for the
    /// same view when every input is unchanged, else merged afresh (and
    /// kept).
    async fn list_answer(
        &self,
        caller: &Caller,
        id: &RequestId,
        method: &str,
        params: &RawObject,
    ) -> Vec<u8> {
        let Some((key, _)) = list_shape(method) else {
            return self.local_result_bytes(caller, id, json!({}));
        };
        let slot = Slot::of(caller, method_name(method));
        let prior = self.list_cache.get(&slot);
        let answers = self
            .fetch_lists(caller, method, params, prior.as_ref().map(|e| &e.answers))
            .await;
        // Read before merging: a change while merging leaves the stamp
        // older than the answer, so the answer is not reused after it.
        let stamp = self.list_stamp();
        if let (Some(prior), Some(stamp)) = (&prior, stamp)
            && prior.answers_for(stamp, &answers)
            && self.replay_claims(&prior.claims)
        {
            for (i, e) in &prior.malformed {
                self.left_out(*i, method, e);
            }
            return Envelope::result_bytes(id, &prior.result);
        }
        let (items, malformed, claims) = self.merge_lists(caller, method, &answers);
        // Moved in, not serialised into a new value as `json!` would.
        let mut list = serde_json::Map::new();
        list.insert(key.into(), Value::Array(items));
        let result = to_raw(&local_result_value(
            caller,
            with_cache_hints(caller, Value::Object(list)),
        ));
        let bytes = Envelope::result_bytes(id, &result);
        if let Some(stamp) = stamp {
            let entry = Entry {
                stamp,
                answers,
                malformed,
                claims,
                result,
            };
            self.list_cache.store(slot, entry);
        }
        bytes
    }

    /// What a cached list answer depends on besides the upstreams' bytes;
    /// `None` (nothing cached) when the pin store cannot be read.
    fn list_stamp(&self) -> Option<Stamp> {
        let screenings = self.screenings.load(Ordering::Acquire);
        let judge = self.behaviour.judge_generation();
        Some(Stamp {
            integrity: self.integrity.version()?,
            judge,
            screenings,
        })
    }

    /// Makes the routing claims a merge made again, as a fresh merge
    /// would; false if one now turns out differently (then the answer must
    /// be merged afresh).
    fn replay_claims(&self, claims: &[Claim]) -> bool {
        claims.iter().all(|c| match c {
            Claim::Name(i, name, got) => {
                let now = !self.routes.is_plain(*i) || self.routes.claim_name(*i, name);
                if !now {
                    self.shadowed_name(*i, name);
                }
                now == *got
            }
            Claim::Uri(i, uri, got) => {
                let now = self.routes.claim_uri(*i, uri);
                if !now {
                    self.shadowed_uri(*i, uri);
                }
                now == *got
            }
            Claim::Template(i, t) => {
                self.routes.claim_template(*i, t);
                true
            }
        })
    }

    fn shadowed_name(&self, i: usize, exposed: &str) {
        tracing::warn!(upstream = %self.names[i], name = %exposed, "withheld: another upstream already serves this name (shadowing)");
    }

    fn shadowed_uri(&self, i: usize, uri: &str) {
        tracing::warn!(upstream = %self.names[i], uri, "withheld: another upstream already serves this resource URI");
    }

    async fn resolve_name(
        &self,
        caller: &Caller,
        exposed: &str,
        method: &str,
    ) -> Option<(usize, String)> {
        if let Some(hit) = self.routes.resolve_name(exposed) {
            return Some(hit);
        }
        // An un-prefixed name not seen yet: learn the lists, then retry.
        let list = if method == "prompts/get" {
            "prompts/list"
        } else {
            "tools/list"
        };
        let _ = self.list(caller, list, &RawObject::default()).await;
        self.routes.resolve_name(exposed)
    }

    async fn resolve_uri(&self, caller: &Caller, uri: &str) -> Option<usize> {
        if let Some(i) = self.routes.resolve_uri(uri) {
            return Some(i);
        }
        let _ = self
            .list(caller, "resources/list", &RawObject::default())
            .await;
        let _ = self
            .list(caller, "resources/templates/list", &RawObject::default())
            .await;
        self.routes
            .resolve_uri(uri)
            .or_else(|| (self.upstreams.len() == 1).then_some(0))
    }

    /// Fans a list out to every upstream, reads all their pages, namespaces
    /// and merges. An upstream that fails is left out and logged.
    async fn list(&self, caller: &Caller, method: &str, params: &RawObject) -> Vec<Value> {
        self.list_detailed(caller, method, params).await.0
    }

    /// [`Self::list`], with the failures of the upstreams left out.
    async fn list_detailed(
        &self,
        caller: &Caller,
        method: &str,
        params: &RawObject,
    ) -> (Vec<Value>, Vec<(usize, UpstreamError)>) {
        let answers = self.fetch_lists(caller, method, params, None).await;
        let (items, mut failures, _) = self.merge_lists(caller, method, &answers);
        failures.extend(
            answers
                .into_iter()
                .enumerate()
                .filter_map(|(i, a)| a.err().map(|e| (i, e))),
        );
        (items, failures)
    }

    /// Asks every upstream for `method`'s list and reads all its pages.
    /// `known` is an earlier fetch: a page with the same bytes has the same
    /// cursor, so it is not read again for it.
    async fn fetch_lists(
        &self,
        caller: &Caller,
        method: &str,
        params: &RawObject,
        known: Option<&Answers>,
    ) -> Answers {
        if list_shape(method).is_none() {
            return Vec::new();
        }
        let answers = join_all(
            (0..self.upstreams.len()).map(|i| self.fetch_one(caller, i, method, params, known)),
        )
        .await;
        for (i, e) in answers
            .iter()
            .enumerate()
            .filter_map(|(i, a)| Some((i, a.as_ref().err()?)))
        {
            self.left_out(i, method, e);
        }
        answers
    }

    fn left_out(&self, i: usize, method: &str, e: &UpstreamError) {
        tracing::warn!(upstream = %self.names[i], method, error = %e, "left out of the merged list");
    }

    /// Merges what the upstreams answered: namespaces, screens tools
    /// against their pins, keeps what the agent may see, claims names and
    /// URIs for routing. Returns the items, the upstreams whose answer was
    /// malformed (left out), and the routing claims made.
    fn merge_lists(
        &self,
        caller: &Caller,
        method: &str,
        answers: &Answers,
    ) -> (Vec<Value>, Vec<(usize, UpstreamError)>, Vec<Claim>) {
        let Some((key, name_field)) = list_shape(method) else {
            return (Vec::new(), Vec::new(), Vec::new());
        };
        let mut failures = Vec::new();
        let per_upstream: Vec<(usize, Vec<Value>)> = answers
            .iter()
            .enumerate()
            .filter_map(|(i, a)| Some((i, a.as_ref().ok()?)))
            .filter_map(|(i, pages)| match items_of(pages, key) {
                // Each tool is pinned and screened: an upstream listing
                // thousands of names (new ones every time) is refused
                // rather than let grow the store and slow every list.
                Ok(items)
                    if matches!(method, "tools/list" | "prompts/list")
                        && items.len() > self.config.integrity.max_tools =>
                {
                    let e = self.failed_upstream(
                        i,
                        &format!(
                            "{method} has {} items, more than `integrity.max_tools` ({}); the upstream's list is left out",
                            items.len(),
                            self.config.integrity.max_tools
                        ),
                    );
                    self.left_out(i, method, &e);
                    failures.push((i, e));
                    // Its earlier list no longer stands: calls list again
                    // and get this error.
                    self.integrity.invalidate(&self.names[i]);
                    None
                }
                Ok(items) => Some((i, items)),
                Err(e) => {
                    let e = self.failed_upstream(i, &format!("malformed {method} result: {e}"));
                    self.left_out(i, method, &e);
                    failures.push((i, e));
                    None
                }
            })
            .collect();
        let per_upstream = match Listed::of(method) {
            Some(kind) => self.screen_items(kind, per_upstream),
            None => per_upstream,
        };
        // What an agent may see in a list: a tool it may list, a prompt it
        // may get, a resource it may read (the policy without behavioural
        // facts).
        let visible_as = match method {
            "tools/list" => Some(CallKind::ListTools),
            "prompts/list" => Some(CallKind::GetPrompt),
            "resources/list" => Some(CallKind::ReadResource),
            _ => None,
        }
        .filter(|_| self.config.judge.enabled);
        let may_see = |i: usize, kind: CallKind, name: &str| {
            self.behaviour
                .may_list(caller.principal(), kind, &self.names[i], name)
        };
        let mut merged = Vec::new();
        let mut claims = Vec::new();
        for (i, items) in per_upstream {
            for mut item in items {
                if let Some(field) = name_field {
                    let Some(name) = item.get(field).and_then(Value::as_str).map(str::to_owned)
                    else {
                        continue;
                    };
                    let exposed = self.routes.expose(i, &name);
                    // Exposed names are unique: an un-prefixed upstream
                    // may not list a name in another upstream's namespace
                    // (`mail__send_email`).
                    if self.routes.foreign_prefix(i, &exposed) {
                        self.shadowed_name(i, &exposed);
                        continue;
                    }
                    if self.routes.is_plain(i) {
                        let got = self.routes.claim_name(i, &exposed);
                        claims.push(Claim::Name(i, exposed.clone(), got));
                        if !got {
                            self.shadowed_name(i, &exposed);
                            continue;
                        }
                    }
                    if let Some(kind) = visible_as
                        && !may_see(i, kind, &name)
                    {
                        continue;
                    }
                    item[field] = Value::String(exposed);
                } else if let Some(uri) = item.get("uri").and_then(Value::as_str) {
                    let got = self.routes.claim_uri(i, uri);
                    claims.push(Claim::Uri(i, uri.to_owned(), got));
                    if !got {
                        self.shadowed_uri(i, uri);
                        continue;
                    }
                    if let Some(kind) = visible_as
                        && !may_see(i, kind, &crate::uri::normalise(uri))
                    {
                        continue;
                    }
                } else if let Some(t) = item.get("uriTemplate").and_then(Value::as_str) {
                    self.routes.claim_template(i, t);
                    claims.push(Claim::Template(i, t.to_owned()));
                }
                merged.push(item);
            }
        }
        (merged, failures, claims)
    }

    /// Holds each upstream's tools (prompts, resources, templates) to their
    /// pins (withheld ones are left out) and lets the judge learn the tools
    /// agents will see. The same lists under the same integrity version
    /// screen the same way (and teach the judge nothing new), so the last
    /// answer is reused.
    fn screen_items(
        &self,
        kind: Listed,
        per_upstream: Vec<(usize, Vec<Value>)>,
    ) -> Vec<(usize, Vec<Value>)> {
        let version = self.integrity.version();
        let lock = || match self.screen_memo.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let reused = version.and_then(|v| lock()[kind as usize].reuse(v, &per_upstream));
        let kept = match reused {
            Some(kept) => kept,
            None => {
                let kept = self.screen_fresh(kind, &per_upstream);
                self.screenings.fetch_add(1, Ordering::AcqRel);
                if let Some(v) = version {
                    lock()[kind as usize].store(v, per_upstream.clone(), kept.clone());
                }
                kept
            }
        };
        per_upstream
            .into_iter()
            .zip(kept)
            .map(|((i, items), kept)| (i, only_kept(items, &kept)))
            .collect()
    }

    /// Screens each upstream's tools against their pins and lets the judge
    /// learn the ones agents will see; says which those are.
    fn screen_fresh(&self, kind: Listed, per_upstream: &[(usize, Vec<Value>)]) -> Vec<Vec<bool>> {
        let tools = kind == Listed::Tools;
        let all: Vec<(&str, &str, String)> = per_upstream
            .iter()
            .flat_map(|(i, items)| {
                items
                    .iter()
                    .filter_map(|t| t.get("name")?.as_str())
                    .map(|n| (&*self.names[*i], n, self.routes.expose(*i, n)))
            })
            .collect();
        let all: Vec<(&str, &str, &str)> =
            all.iter().map(|(s, n, e)| (*s, *n, e.as_str())).collect();
        // One automaton over every upstream's tools, built once per
        // screening: each definition is then read once.
        let shadows = castellan_integrity::Shadows::new(if tools { &all } else { &[] });
        let mut screened = Vec::with_capacity(per_upstream.len());
        for (i, items) in per_upstream {
            let kept = self
                .integrity
                .screen_kept(&self.names[*i], kind, items, &shadows);
            if tools {
                self.behaviour.learn_tools(
                    &self.names[*i],
                    items.iter().zip(&kept).filter_map(|(t, k)| k.then_some(t)),
                );
            }
            screened.push(kept);
        }
        screened
    }

    /// Refuses a call to a tool the agent may not see: withheld by the
    /// integrity check, or missing from its upstream's list.
    async fn check_integrity(
        &self,
        caller: &Caller,
        i: usize,
        exposed: &str,
        tool: &str,
    ) -> Result<(), ErrorObject> {
        let server = &*self.names[i];
        let mut check = self.integrity.check(server, tool);
        if check == Check::Unknown {
            let (_, failures) = self
                .list_detailed(caller, "tools/list", &RawObject::default())
                .await;
            check = self.integrity.check(server, tool);
            // The upstream could not even list its tools: say what is wrong
            // with it (unreachable, timed out, cannot start).
            if check == Check::Unknown
                && let Some((_, e)) = failures.into_iter().find(|(j, _)| *j == i)
            {
                return Err(e.to_error_object());
            }
        }
        let data = |finding: &str, hash: Option<&str>| json!({"upstream": server, "tool": tool, "finding": finding, "hash": hash});
        match check {
            Check::Approved => Ok(()),
            Check::Unknown => Err(ErrorObject::new(
                INVALID_PARAMS,
                format!("tool `{exposed}` cannot be verified: upstream `{server}` did not list its tools"),
            )
            .with_data(data("unverified", None))),
            Check::Unlisted => Err(ErrorObject::new(
                INVALID_PARAMS,
                format!("unknown tool `{exposed}`: upstream `{server}` does not list it"),
            )
            .with_data(data("unlisted", None))),
            Check::Withheld { finding, hash } => Err(ErrorObject::new(
                INVALID_PARAMS,
                format!("tool `{exposed}` is withheld: {}; an operator must approve this version", finding.explain()),
            )
            .with_data(data(finding.kind(), Some(&hash)))),
        }
    }

    /// Refuses a prompt or resource whose listed definition is withheld
    /// (poisoned, changed, renamed ...); lists it first if its upstream's
    /// list was not screened yet.
    async fn check_item(
        &self,
        caller: &Caller,
        i: usize,
        kind: Listed,
        name: &str,
    ) -> Result<(), ErrorObject> {
        let server = &*self.names[i];
        if !self.integrity.was_listed(server, kind) {
            let method = if kind == Listed::Prompts {
                "prompts/list"
            } else {
                "resources/list"
            };
            let _ = self.list(caller, method, &RawObject::default()).await;
        }
        let Some(finding) = self.integrity.withheld_item(server, kind, name) else {
            return Ok(());
        };
        let what = if kind == Listed::Prompts {
            "prompt"
        } else {
            "resource"
        };
        Err(ErrorObject::new(
            INVALID_PARAMS,
            format!(
                "{what} `{name}` is withheld: {}; an operator must approve this version",
                finding.explain()
            ),
        )
        .with_data(json!({"upstream": server, what: name, "finding": finding.kind()})))
    }

    /// Reads every page of upstream `i`'s list (see [`Self::fetch_lists`]).
    async fn fetch_one(
        &self,
        caller: &Caller,
        i: usize,
        method: &str,
        params: &RawObject,
        known: Option<&Answers>,
    ) -> Result<Vec<Page>, UpstreamError> {
        let mut pages: Vec<Page> = Vec::new();
        for k in 0..MAX_PAGES {
            let mut p = params.clone();
            p.remove("cursor");
            if let Some(c) = pages.last().and_then(|p| p.next.as_deref()) {
                p.set_str("cursor", c);
            }
            let out = Outbound {
                id: self.next_id(),
                method: method.into(),
                params: Some(p.to_raw()),
                extra_headers: Vec::new(),
            };
            let (rx, _) = self.send(caller, i, out).await?;
            let env = final_of(rx, self.config.limits.upstream_timeout).await?;
            let Some(raw) = env.result else {
                // An upstream without this capability answers -32601: an empty list.
                return Ok(pages);
            };
            let next = crate::list_cache::cursor_of(known, i, k, &raw);
            let last = next.is_none();
            pages.push(Page { raw, next });
            if last {
                break;
            }
        }
        Ok(pages)
    }

    /// Sends one request to upstream `i` on behalf of `caller`.
    pub(crate) async fn send(
        &self,
        caller: &Caller,
        i: usize,
        out: Outbound,
    ) -> Result<(ReplyRx, Option<Arc<UpSession>>), UpstreamError> {
        match caller {
            Caller::Modern(_) => self.upstreams.send(i, OnBehalf::Modern, out).await,
            Caller::Legacy(session) => {
                let pushes = |rx| {
                    tokio::spawn(session_pushes(self.me.clone(), Arc::downgrade(session), rx));
                };
                let on = OnBehalf::Legacy {
                    session,
                    pushes: &pushes,
                };
                self.upstreams.send(i, on, out).await
            }
        }
    }

    pub(crate) fn done(&self, caller: &Caller, client_id: &RequestId) {
        if let Some(s) = caller.session() {
            s.finish_request(client_id);
        }
    }

    fn failed_upstream(&self, i: usize, reason: &str) -> UpstreamError {
        UpstreamError::Failed {
            upstream: self.names[i].clone(),
            reason: reason.into(),
        }
    }

    pub(crate) fn failed(&self, i: usize, reason: &str) -> ErrorObject {
        self.failed_upstream(i, reason).to_error_object()
    }

    pub(crate) async fn timed_out(
        &self,
        i: usize,
        up_id: &RequestId,
        up_session: &Option<Arc<UpSession>>,
    ) -> ErrorObject {
        self.cancel_upstream(i, up_id, up_session).await;
        UpstreamError::Timeout {
            upstream: self.names[i].clone(),
            millis: self.config.limits.upstream_timeout.as_millis(),
        }
        .to_error_object()
    }

    pub(crate) async fn cancel_upstream(
        &self,
        i: usize,
        up_id: &RequestId,
        up_session: &Option<Arc<UpSession>>,
    ) {
        self.upstreams.cancel(i, up_id, up_session).await;
    }

    /// The agent's answer, with its id and, for modern agents, `resultType`.
    pub(crate) async fn finalize(
        &self,
        caller: &Caller,
        client_id: &RequestId,
        env: Envelope,
        post: Post,
    ) -> Vec<u8> {
        if let Some(err) = env.error {
            return Envelope::raw_error_bytes(Some(client_id), &err);
        }
        let Some(result) = env.result else {
            return ErrorObject::new(jsonrpc::INTERNAL_ERROR, "upstream sent an empty response")
                .to_response(Some(client_id));
        };
        match post {
            Post::Judged(judged) => {
                // The judge sees the result before the agent does.
                let mut value: Value = match serde_json::from_str(result.get()) {
                    Ok(v) => v,
                    Err(_) => {
                        return ErrorObject::new(
                            jsonrpc::INTERNAL_ERROR,
                            "upstream sent a malformed result",
                        )
                        .to_response(Some(client_id));
                    }
                };
                let blocked = self.behaviour.inspect(&judged, &mut value).await;
                // The record is written before the agent's answer.
                self.behaviour.report_result(&judged);
                if let Some(why) = blocked {
                    return self.blocked_result(caller, client_id, &judged, &why);
                }
                if caller.is_modern()
                    && let Some(o) = value.as_object_mut()
                {
                    o.entry("resultType").or_insert_with(|| json!("complete"));
                }
                // Written once, into the answer, sized from the upstream's text.
                Envelope::result_value_bytes(client_id, &value, result.get().len())
            }
            Post::Passthrough if caller.is_modern() => {
                if let Ok(mut obj) = serde_json::from_str::<RawObject>(result.get()) {
                    if obj.get("resultType").is_none() {
                        obj.set_str("resultType", "complete");
                    }
                    return Envelope::result_bytes(client_id, &obj.to_raw());
                }
                Envelope::result_bytes(client_id, &result)
            }
            Post::Passthrough => Envelope::result_bytes(client_id, &result),
        }
    }

    /// Relays a server-to-agent request to a legacy agent that can answer
    /// it, under a gateway id; otherwise answers the upstream with an error.
    pub(crate) async fn server_request(
        &self,
        caller: &Caller,
        i: usize,
        up_session: &Option<Arc<UpSession>>,
        env: Envelope,
    ) -> Option<Vec<u8>> {
        let needed = match env.method() {
            "sampling/createMessage" => Some("sampling"),
            "elicitation/create" => Some("elicitation"),
            "roots/list" => Some("roots"),
            _ => None,
        };
        let session = match caller {
            Caller::Legacy(s)
                if needed.is_none_or(|c| s.has_capability(c)) || env.method() == "ping" =>
            {
                s
            }
            Caller::Legacy(_) => {
                self.refuse_server_request(
                    i,
                    up_session,
                    &env,
                    "the agent did not declare this capability",
                )
                .await;
                return None;
            }
            Caller::Modern(_) => {
                self.refuse_server_request(
                    i,
                    up_session,
                    &env,
                    "a 2026-07-28 agent cannot receive server requests mid-call",
                )
                .await;
                return None;
            }
        };
        let up_id = env.id.clone()?;
        let gid = session.register_server_request(ServerRequestRoute {
            upstream: i,
            upstream_id: up_id,
            up_session: up_session.clone(),
            reply: None,
        });
        Some(Envelope::request_bytes(
            Some(&gid),
            env.method(),
            env.params.as_deref(),
        ))
    }

    pub(crate) async fn refuse_server_request(
        &self,
        i: usize,
        up_session: &Option<Arc<UpSession>>,
        env: &Envelope,
        why: &str,
    ) {
        let Some(id) = env.id.as_ref() else { return };
        let err = ErrorObject::new(
            METHOD_NOT_FOUND,
            format!("`{}` refused by the gateway: {why}", env.method()),
        )
        .to_response(Some(id));
        self.deliver_to_upstream(i, up_session, Bytes::from(err))
            .await;
    }

    pub(crate) async fn deliver_to_upstream(
        &self,
        i: usize,
        up_session: &Option<Arc<UpSession>>,
        bytes: Bytes,
    ) {
        self.upstreams.deliver(i, up_session, bytes).await;
    }

    /// An agent answered a server-to-agent request.
    async fn client_response(&self, caller: &Caller, mut env: Envelope) {
        let (Some(session), Some(id)) = (caller.session(), env.id.as_ref()) else {
            return;
        };
        let Some(route) = session.take_server_request(id) else {
            tracing::debug!(session = %session.id, "answer to an unknown server request ignored");
            return;
        };
        // The agent's answer (a sampled message, an elicited form) is
        // agent content going upstream, held to the content policy like a
        // call's arguments.
        if self.config.judge.enabled
            && let Some(result) = &env.result
            && let Some(why) = self.behaviour.outbound_blocked(result)
        {
            tracing::warn!(agent = %caller.principal().agent, upstream = %self.names[route.upstream], classes = %why, "agent's answer to an upstream request refused");
            metrics::counter!("castellan_outbound_refused_total").increment(1);
            let text = format!(
                "Castellan refused the agent's answer: it carries {why}, which the content policy does not let reach an upstream"
            );
            env.result = None;
            env.error = Some(jsonrpc::to_raw(&json!({"code": REFUSED, "message": text})));
            env.kind = Kind::Error;
        }
        if let Some(reply) = route.reply {
            // The gateway itself asked (input for a modern upstream).
            let _ = reply.send(env);
            return;
        }
        let bytes = match (&env.result, &env.error) {
            (Some(r), _) => Envelope::result_bytes(&route.upstream_id, r),
            (_, Some(e)) => Envelope::raw_error_bytes(Some(&route.upstream_id), e),
            _ => return,
        };
        self.deliver_to_upstream(route.upstream, &route.up_session, Bytes::from(bytes))
            .await;
    }

    async fn notification(&self, caller: &Caller, env: &Envelope) {
        match env.method() {
            "notifications/cancelled" => {
                let Some(session) = caller.session() else {
                    return;
                };
                let Ok(params) = env.params_object() else {
                    return;
                };
                let Some(req) = params
                    .get("requestId")
                    .and_then(|r| RequestId::from_raw(r).ok())
                else {
                    return;
                };
                if let Some(f) = session.in_flight(&req) {
                    self.cancel_upstream(f.upstream, &f.upstream_id, &f.up_session)
                        .await;
                    session.finish_request(&req);
                }
            }
            "notifications/roots/list_changed" => {
                let Some(session) = caller.session() else {
                    return;
                };
                self.upstreams.notify_sessions(session, env.method()).await;
            }
            _ => {}
        }
    }

    /// Opens a subscription stream: acknowledges at once, then relays
    /// matching notifications from every upstream until the agent leaves.
    fn listen(self: &Arc<Self>, caller: &Caller, id: &RequestId, params: RawObject) -> Outcome {
        let filter = Filter::from_params(&params);
        let (tx, body) = mpsc::channel(64);
        let max = self.config.limits.max_streams_per_agent;
        let agent = caller.principal().agent.clone();
        let Some(ack) =
            self.listeners
                .add(agent.clone(), max, id.clone(), filter.clone(), tx.clone())
        else {
            return Outcome::Json(
                429,
                ErrorObject::new(
                    jsonrpc::INTERNAL_ERROR,
                    format!("agent `{agent}` already has {max} open streams (`limits.max_streams_per_agent`); close one first"),
                )
                .to_response(Some(id)),
            );
        };
        let _ = tx.try_send(ack);
        // Modern HTTP upstreams get their own subscription, narrowed to the
        // resources they serve; legacy upstreams feed it through pushes.
        for (i, _) in self.upstreams.https() {
            let gw = self.clone();
            let caller = caller.clone();
            let tx = tx.clone();
            let id = id.clone();
            let mut up_filter = filter.clone();
            up_filter
                .resource_uris
                .retain(|uri| self.routes.resolve_uri(uri) == Some(i));
            let mut p = params.clone();
            p.set("notifications", to_raw(&up_filter.to_json()));
            tokio::spawn(async move {
                let Some(h) = gw.upstreams.http(i) else {
                    return;
                };
                if !h.speaks_modern().await {
                    return;
                }
                let out = Outbound {
                    id: gw.next_id(),
                    method: "subscriptions/listen".into(),
                    params: Some(p.to_raw()),
                    extra_headers: Vec::new(),
                };
                let Ok((mut rx, _)) = gw.send(&caller, i, out).await else {
                    return;
                };
                loop {
                    tokio::select! {
                        msg = rx.recv() => match msg {
                            Some(Ok(UpMsg::Message(env, _))) if env.kind == Kind::Notification && up_filter.matches(env.method(), env.params_object().ok().as_ref()) => {
                                let bytes = crate::listen::tag(&env, &id);
                                if tx.send(sse::encode(None, None, &bytes)).await.is_err() {
                                    return;
                                }
                            }
                            Some(Ok(UpMsg::Message(..))) => {}
                            _ => return,
                        },
                        _ = tx.closed() => return,
                    }
                }
            });
        }
        Outcome::Sse(body)
    }

    /// Why the Cedar policy does not fully apply to the learnt tools, if it
    /// does not (see [`crate::behaviour::Behaviour::policy_problem`]).
    pub fn policy_problem(&self) -> Option<String> {
        self.behaviour.policy_problem()
    }

    /// Lists every upstream's tools as the gateway itself (for `castellan
    /// tools`): the judge learns their definitions; returns the labels.
    pub async fn explain_tools(&self) -> Vec<castellan_judge::ToolLabels> {
        let caller = Caller::Modern(Arc::new(ModernCaller {
            profile: crate::upstream::http::ClientProfile::gateway(),
            principal: Principal {
                agent: "castellan-cli".into(),
                user: None,
                attributes: Arc::new([]),
                method: "local",
                trusted_intent: false,
            },
            param_headers: Vec::new(),
            session: None,
        }));
        let mut meta = RawObject::default();
        meta.set(
            "_meta",
            to_raw(&crate::upstream::http::modern_meta(
                &crate::upstream::http::ClientProfile::gateway(),
            )),
        );
        let _ = self.list(&caller, "tools/list", &meta).await;
        self.behaviour.explain()
    }

    /// Swaps in new judge rules, policy and label overrides (hot reload);
    /// on error the running ones stay.
    pub fn reload_judge(&self, cfg: &castellan_config::JudgeConfig) -> Result<(), Error> {
        self.behaviour.reload(cfg)
    }

    /// Waits until every decision so far is in the audit log (shutdown).
    pub async fn flush_audit(&self) {
        self.behaviour.flush().await;
    }

    /// Ends a legacy session and the upstream sessions opened for it.
    pub async fn end_session(&self, id: &str) -> bool {
        let Some(session) = self.sessions.remove(id) else {
            return false;
        };
        self.close_session(&session).await;
        true
    }

    /// Closes what a removed session held: its upstream sessions and its
    /// behavioural session state (the agent's aggregate state stays).
    async fn close_session(&self, session: &ClientSession) {
        self.upstreams.close_sessions(session).await;
        if let Err(e) = self
            .behaviour
            .forget_session(&session.principal.agent, &session.id)
            .await
        {
            tracing::error!(session = %session.id, error = %e, "behavioural session state not dropped");
        }
    }

    /// Tells every agent that its tool list changed (an operator approved a
    /// withheld tool).
    pub(crate) fn announce_tools_changed(&self) {
        const CHANGED: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
        for s in self.sessions.all() {
            s.emit(STANDALONE, |eid| sse::encode(None, Some(eid), CHANGED));
        }
        if let Ok(env) = Envelope::parse(CHANGED) {
            self.listeners.deliver(&env);
        }
    }

    /// An upstream announcing new tools must be listed (and its tools held
    /// to their pins) again before the next call uses one.
    fn note_push(&self, push: &Push) {
        if push.message.method() == "notifications/tools/list_changed" {
            self.integrity.invalidate(&self.names[push.upstream]);
        }
    }

    /// Delivers an upstream push to a legacy session's standalone stream.
    async fn deliver_push(&self, session: &Arc<ClientSession>, mut push: Push) {
        self.note_push(&push);
        let blocked = match self
            .screen_push(session, push.upstream, &push.message)
            .await
        {
            Ok(None) => None,
            Ok(Some((params, bytes))) => {
                push.message.params = Some(params);
                push.bytes = bytes;
                None
            }
            Err(why) => Some(why),
        };
        let bytes = match push.message.kind {
            Kind::Request => {
                let up_session = session
                    .upstream_sessions()
                    .into_iter()
                    .find(|(i, _)| *i == push.upstream)
                    .map(|(_, s)| s);
                if let Some(why) = blocked {
                    self.refuse_server_request(
                        push.upstream,
                        &up_session,
                        &push.message,
                        &format!("its content carries {why}, which the content policy blocks"),
                    )
                    .await;
                    return;
                }
                match self
                    .server_request(
                        &Caller::Legacy(session.clone()),
                        push.upstream,
                        &up_session,
                        push.message,
                    )
                    .await
                {
                    Some(b) => Bytes::from(b),
                    None => return,
                }
            }
            // A blocked notification is dropped.
            _ if blocked.is_some() => return,
            _ => push.bytes,
        };
        session.emit(STANDALONE, |eid| sse::encode(None, Some(eid), &bytes));
    }
}

/// The HTTP status for an upstream's final answer: modern agents get the
/// upstream's own 4xx (header mismatch, missing capability); legacy agents
/// always get 200 with the JSON-RPC error.
pub(crate) fn status_for(caller: &Caller, upstream_status: u16) -> u16 {
    if caller.is_modern() && (400..500).contains(&upstream_status) {
        upstream_status
    } else {
        200
    }
}

/// The request's params as an object: parsed already by the HTTP layer, or
/// now.
fn params_of(
    env: &Envelope,
    parsed: Option<Result<RawObject, ParseError>>,
) -> Result<RawObject, ErrorObject> {
    parsed
        .unwrap_or_else(|| env.params_object())
        .map_err(|e| ErrorObject::new(e.code, e.message))
}

/// A tool call's or prompt's arguments and `_meta`, read for the judge.
/// The arguments are parsed strictly: a duplicate key at any depth (the
/// judge would read the last, an upstream may read the first) or anything
/// serde_json cannot read (a number out of range, nesting too deep) refuses
/// the call, as the raw arguments would reach the upstream unjudged.
/// Absent arguments are judged as `{}`, as the upstream sees none.
fn judged_params(params: &RawObject) -> Result<(Value, Option<RawObject>), ErrorObject> {
    let args = match params.get("arguments") {
        None => Value::Object(serde_json::Map::new()),
        Some(raw) => json::from_str_strict(raw.get()).map_err(|e| unreadable("arguments", &e))?,
    };
    Ok((args, judged_meta(params)?))
}

/// What the judge reads of a `completion/complete`: the argument being
/// completed and the context's other arguments (agent content going
/// upstream), strictly parsed, and `_meta`.
fn completion_args(params: &RawObject) -> Result<(Value, Option<RawObject>), ErrorObject> {
    let mut args = serde_json::Map::new();
    for member in ["argument", "context"] {
        if let Some(raw) = params.get(member) {
            let v = json::from_str_strict(raw.get()).map_err(|e| unreadable(member, &e))?;
            args.insert(member.to_owned(), v);
        }
    }
    Ok((Value::Object(args), judged_meta(params)?))
}

/// The `_meta` of a judged request, whose intent and session the judge
/// reads: an object without duplicate keys, or refused. `null` is none.
fn judged_meta(params: &RawObject) -> Result<Option<RawObject>, ErrorObject> {
    match params.get("_meta") {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => serde_json::from_str(raw.get())
            .map(Some)
            .map_err(|e| unreadable("_meta", &e)),
    }
}

/// INVALID_PARAMS for a params member the judge cannot read, e.g.
/// "duplicate key `to` in `arguments` at line 1, column 30".
fn unreadable(member: &str, e: &serde_json::Error) -> ErrorObject {
    let full = e.to_string();
    let at = format!(" at line {} column {}", e.line(), e.column());
    let what = full.strip_suffix(&at).unwrap_or(&full);
    ErrorObject::new(
        INVALID_PARAMS,
        format!(
            "{what} in `{member}` at line {}, column {}; the call was not forwarded",
            e.line(),
            e.column()
        ),
    )
}

/// The items whose `kept` flag is set, in order.
fn only_kept(items: Vec<Value>, kept: &[bool]) -> Vec<Value> {
    items
        .into_iter()
        .zip(kept)
        .filter_map(|(t, k)| k.then_some(t))
        .collect()
}

/// Lists differ per agent (the policy filters them), so a modern agent is
/// told they are private and not to be cached.
fn with_cache_hints(caller: &Caller, mut result: Value) -> Value {
    if caller.is_modern()
        && let Some(o) = result.as_object_mut()
    {
        o.insert("ttlMs".into(), json!(0));
        o.insert("cacheScope".into(), json!("private"));
    }
    result
}

/// The self-description of an agent that gave none.
pub(crate) fn unknown_client() -> Box<RawValue> {
    jsonrpc::raw_json(r#"{"name":"unknown","version":"0"}"#)
}

/// The capabilities the gateway offers agents.
fn server_capabilities() -> Value {
    json!({
        "tools": {"listChanged": true},
        "prompts": {"listChanged": true},
        "resources": {"subscribe": true, "listChanged": true},
        "logging": {},
        "completions": {},
    })
}

fn server_info() -> Value {
    json!({"name": "castellan", "title": "Castellan MCP gateway", "version": env!("CARGO_PKG_VERSION")})
}

/// Waits for a reply's final answer.
async fn final_of(mut rx: ReplyRx, timeout: Duration) -> Result<Envelope, UpstreamError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Ok(UpMsg::Final(env, ..)))) => return Ok(env),
            Ok(Some(Ok(UpMsg::Message(..)))) => continue,
            Ok(Some(Err(e))) => return Err(e),
            Ok(None) | Err(_) => {
                return Err(UpstreamError::Failed {
                    upstream: "upstream".into(),
                    reason: "no answer".into(),
                });
            }
        }
    }
}

/// Pushes from upstream sessions opened for one agent go to its GET stream.
async fn session_pushes(
    gw: std::sync::Weak<Gateway>,
    session: std::sync::Weak<ClientSession>,
    mut rx: mpsc::UnboundedReceiver<Push>,
) {
    while let Some(push) = rx.recv().await {
        let (Some(gw), Some(session)) = (gw.upgrade(), session.upgrade()) else {
            return;
        };
        // Boxed: the waiting task stays small; only a push in progress
        // holds the (large) delivery future.
        Box::pin(gw.deliver_push(&session, push)).await;
    }
}

/// Pushes from shared upstream sessions and stdio children go to every
/// legacy session.
async fn broadcast(gw: std::sync::Weak<Gateway>, mut rx: mpsc::UnboundedReceiver<Push>) {
    while let Some(push) = rx.recv().await {
        let Some(gw) = gw.upgrade() else { return };
        gw.note_push(&push);
        if push.message.kind == Kind::Request {
            // No agent to route a server request to: refuse it.
            gw.refuse_server_request(
                push.upstream,
                &None,
                &push.message,
                "no agent session is waiting on this upstream",
            )
            .await;
            continue;
        }
        for s in gw.sessions.all() {
            // Each agent's session is labelled by what it is shown.
            let bytes = match gw.screen_push(&s, push.upstream, &push.message).await {
                Ok(None) => push.bytes.clone(),
                Ok(Some((_, redacted))) => redacted,
                Err(_) => continue,
            };
            s.emit(STANDALONE, |eid| sse::encode(None, Some(eid), &bytes));
        }
        gw.listeners.deliver(&push.message);
    }
}

async fn expire_sessions(gw: std::sync::Weak<Gateway>) {
    loop {
        let idle = match gw.upgrade() {
            Some(gw) => gw.config.limits.session_idle,
            None => return,
        };
        // Often enough that a session ends close to its idle limit.
        tokio::time::sleep((idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30)))
            .await;
        let Some(gw) = gw.upgrade() else { return };
        for s in gw.sessions.expire(idle) {
            tracing::info!(session = %s.id, "session expired after idle time");
            gw.close_session(&s).await;
        }
        // Learned baselines outlive a crash, not only a clean stop.
        gw.behaviour.save_baselines().await;
        // Stateless (2026-07-28) behavioural sessions, named or rolling.
        match gw.behaviour.expire_idle(idle).await {
            Ok(0) => {}
            Ok(ended) => tracing::debug!(ended, "behavioural sessions ended after idle time"),
            Err(e) => tracing::error!(error = %e, "idle behavioural sessions not ended"),
        }
    }
}

/// The `result` of an answer the gateway gives itself: for modern agents
/// with `resultType` and the gateway's server info.
fn local_result_value(caller: &Caller, mut result: Value) -> Value {
    if caller.is_modern()
        && let Some(o) = result.as_object_mut()
    {
        o.insert("resultType".into(), json!("complete"));
        let meta = o.entry("_meta").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            m.insert(mcp::META_SERVER_INFO.into(), server_info());
        }
    }
    result
}

/// The list methods by name, as `'static` (for cache slots).
fn method_name(method: &str) -> &'static str {
    match method {
        "tools/list" => "tools/list",
        "prompts/list" => "prompts/list",
        "resources/list" => "resources/list",
        _ => "resources/templates/list",
    }
}

/// The items of a list's pages, in order: each page's `key` array (a page
/// without one adds nothing).
fn items_of(pages: &[Page], key: &str) -> Result<Vec<Value>, serde_json::Error> {
    let mut items = Vec::new();
    for page in pages {
        let mut result: Value = serde_json::from_str(page.raw.get())?;
        if let Some(Value::Array(page)) = result.get_mut(key).map(Value::take) {
            items.extend(page);
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests;
