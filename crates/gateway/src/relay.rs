//! Relaying one forwarded request: from the upstream's reply stream to the
//! agent's answer (JSON, or SSE event by event), including the bridge
//! between the two ways MCP lets a server ask the agent for input mid-call:
//!
//! - legacy upstream, modern agent: the upstream's `sampling/createMessage`,
//!   `elicitation/create` or `roots/list` request is turned into an
//!   `input_required` result; the upstream call stays parked until the agent
//!   retries with `inputResponses` and the gateway's `requestState`;
//! - modern upstream, legacy agent: an `input_required` result is turned
//!   into server requests on the agent's SSE stream; the answers go back
//!   upstream as `inputResponses` on a retried request.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use castellan_protocol::jsonrpc::{
    Envelope, ErrorObject, INVALID_PARAMS, RawObject, RequestId, to_raw,
};
use castellan_protocol::{Kind, mcp, sse};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::call::{Call, Caller, Outcome, Parked, Post, Routed};
use crate::gateway::{Gateway, status_for};
use crate::session::{InFlight, ServerRequestRoute};
use crate::upstream::http::UpSession;
use crate::upstream::{Outbound, ReplyRx, UpMsg};

/// Prefix of the `requestState` tokens the gateway issues.
const STATE_PREFIX: &str = "castellan-mrtr:";
/// Most rounds of input a legacy agent is asked for in one call.
const MAX_ROUNDS: usize = 10;

fn result_type(env: &Envelope) -> Option<String> {
    let r = env.result.as_ref()?;
    // Most results have no `resultType`: skip parsing the whole result
    // (the key can only be spelt otherwise with `\u` escapes).
    if !r.get().contains("resultType") && !r.get().contains("\\u") {
        return None;
    }
    serde_json::from_str::<RawObject>(r.get())
        .ok()?
        .get_str("resultType")
}

impl Gateway {
    /// Forwards a routed request to upstream `i` and relays the answer.
    pub(crate) async fn forward(
        self: &Arc<Self>,
        caller: &Caller,
        client_id: &RequestId,
        routed: Routed,
        wants_sse: bool,
        post: Post,
    ) -> Result<Outcome, ErrorObject> {
        let Routed {
            upstream: i,
            method,
            params,
        } = routed;
        let method = method.as_str();
        if let (Caller::Modern(_), Some(token)) = (caller, params.get_str("requestState"))
            && token.starts_with(STATE_PREFIX)
        {
            return self
                .resume_parked(caller, client_id, method, &params, &token, wants_sse)
                .await;
        }
        let (up_id, rx, up_session) = self.send_call(caller, i, method, &params).await?;
        if let Some(s) = caller.session() {
            s.start_request(
                client_id.clone(),
                InFlight {
                    upstream: i,
                    upstream_id: up_id.clone(),
                    up_session: up_session.clone(),
                },
            );
        }
        let call = Call {
            caller: caller.clone(),
            client_id: client_id.clone(),
            upstream: i,
            up_id,
            up_session,
            rx,
            method: method.into(),
            params,
            post,
        };
        Ok(self.relay(call, wants_sse).await)
    }

    async fn send_call(
        &self,
        caller: &Caller,
        i: usize,
        method: &str,
        params: &RawObject,
    ) -> Result<(RequestId, ReplyRx, Option<Arc<UpSession>>), ErrorObject> {
        let out = Outbound {
            id: self.next_id(),
            method: method.into(),
            params: Some(params.to_raw()),
            extra_headers: match caller {
                Caller::Modern(m) => m.param_headers.clone(),
                Caller::Legacy(_) => Vec::new(),
            },
        };
        let up_id = out.id.clone();
        let (rx, up_session) = self
            .send(caller, i, out)
            .await
            .map_err(|e| e.to_error_object())?;
        Ok((up_id, rx, up_session))
    }

    /// Relays a call's replies: JSON when the first message is the answer,
    /// otherwise an SSE stream, event by event.
    pub(crate) async fn relay(self: &Arc<Self>, mut call: Call, wants_sse: bool) -> Outcome {
        let timeout = self.config.limits.upstream_timeout;
        let first = match tokio::time::timeout(timeout, call.rx.recv()).await {
            Ok(Some(Ok(msg))) => msg,
            Ok(Some(Err(e))) => {
                return self.answer_now(
                    &call,
                    200,
                    e.to_error_object().to_response(Some(&call.client_id)),
                );
            }
            Ok(None) => {
                let e = self.failed(
                    call.upstream,
                    "the upstream closed the stream without answering",
                );
                return self.answer_now(&call, 200, e.to_response(Some(&call.client_id)));
            }
            Err(_) => {
                let e = self
                    .timed_out(call.upstream, &call.up_id, &call.up_session)
                    .await;
                return self.answer_now(&call, 200, e.to_response(Some(&call.client_id)));
            }
        };
        let first = match first {
            // Content on its way to the agent is inspected first.
            UpMsg::Message(mut env, bytes)
                if wants_sse || (env.kind == Kind::Request && call.caller.is_modern()) =>
            {
                match self.screen_event(&call, &mut env, bytes).await {
                    Some(bytes) => UpMsg::Message(env, bytes),
                    None if wants_sse => return self.relay_stream(call, None),
                    None => return self.json_only(call).await,
                }
            }
            m => m,
        };
        if let UpMsg::Message(env, _) = &first
            && env.kind == Kind::Request
            && call.caller.is_modern()
        {
            // A legacy upstream asks a modern agent for input: answer at once
            // with `input_required` and park the upstream call.
            let UpMsg::Message(env, _) = first else {
                return Outcome::Accepted;
            };
            let answer = self.park(call, env);
            return Outcome::Json(200, answer);
        }
        let needs_stream = match &first {
            UpMsg::Final(env, ..) => {
                call.caller.session().is_some()
                    && result_type(env).as_deref() == Some("input_required")
            }
            UpMsg::Message(..) => wants_sse,
        };
        if !needs_stream {
            return match first {
                UpMsg::Final(env, _, status) => {
                    let bytes = self
                        .finalize(&call.caller, &call.client_id, env, call.post.clone())
                        .await;
                    self.answer_now(&call, status_for(&call.caller, status), bytes)
                }
                UpMsg::Message(..) => self.json_only(call).await,
            };
        }
        if !wants_sse && call.caller.session().is_some() {
            let e = ErrorObject::new(
                INVALID_PARAMS,
                "the upstream needs input from the agent, which requires accepting text/event-stream",
            );
            self.cancel_upstream(call.upstream, &call.up_id, &call.up_session)
                .await;
            return self.answer_now(&call, 200, e.to_response(Some(&call.client_id)));
        }
        self.relay_stream(call, Some(first))
    }

    fn relay_stream(self: &Arc<Self>, call: Call, first: Option<UpMsg>) -> Outcome {
        // Room for a burst of notifications (allocated only as queued).
        let (tx, body) = mpsc::channel(64 + crate::session::MAX_LOGGED_EVENTS);
        let gw = self.clone();
        tokio::spawn(async move { gw.stream(call, first, tx).await });
        Outcome::Sse(body)
    }

    fn answer_now(&self, call: &Call, status: u16, bytes: Vec<u8>) -> Outcome {
        self.done(&call.caller, &call.client_id);
        Outcome::Json(status, bytes)
    }

    /// The agent takes only JSON: wait for the answer, refusing server
    /// requests that cannot reach it.
    async fn json_only(&self, mut call: Call) -> Outcome {
        let timeout = self.config.limits.upstream_timeout;
        let i = call.upstream;
        let answer = loop {
            match tokio::time::timeout(timeout, call.rx.recv()).await {
                Ok(Some(Ok(UpMsg::Final(env, ..)))) => {
                    break self
                        .finalize(&call.caller, &call.client_id, env, call.post.clone())
                        .await;
                }
                Ok(Some(Ok(UpMsg::Message(env, _)))) => {
                    if env.kind == Kind::Request {
                        self.refuse_server_request(
                            i,
                            &call.up_session,
                            &env,
                            "the agent accepts only JSON responses",
                        )
                        .await;
                    }
                }
                Ok(Some(Err(e))) => break e.to_error_object().to_response(Some(&call.client_id)),
                Ok(None) => {
                    break self
                        .failed(i, "stream closed")
                        .to_response(Some(&call.client_id));
                }
                Err(_) => {
                    break self
                        .timed_out(i, &call.up_id, &call.up_session)
                        .await
                        .to_response(Some(&call.client_id));
                }
            }
        };
        self.answer_now(&call, 200, answer)
    }

    /// The streaming relay task.
    async fn stream(
        self: Arc<Self>,
        mut call: Call,
        first: Option<UpMsg>,
        tx: mpsc::Sender<Bytes>,
    ) {
        let timeout = self.config.limits.upstream_timeout;
        let stream_id = match &call.caller {
            Caller::Legacy(s) => {
                let sid = s.open_stream(tx.clone());
                if s.profile.version.as_str() >= "2025-11-25" {
                    s.emit(sid, |eid| sse::encode(None, Some(eid), b""));
                }
                Some(sid)
            }
            Caller::Modern(_) => None,
        };
        let emit = |caller: &Caller, bytes: &[u8]| -> bool {
            match (caller, stream_id) {
                // A legacy agent may reconnect and resume: keep going even
                // when nobody is listening right now.
                (Caller::Legacy(s), Some(sid)) => {
                    s.emit(sid, |eid| sse::encode(None, Some(eid), bytes));
                    true
                }
                _ => tx.try_send(sse::encode(None, None, bytes)).is_ok() || !tx.is_closed(),
            }
        };
        let mut next = first;
        let mut rounds = 0;
        loop {
            let msg = match next.take() {
                Some(m) => m,
                None => match tokio::time::timeout(timeout, call.rx.recv()).await {
                    // Content on its way to the agent is inspected first.
                    Ok(Some(Ok(UpMsg::Message(mut env, bytes)))) => {
                        match self.screen_event(&call, &mut env, bytes).await {
                            Some(bytes) => UpMsg::Message(env, bytes),
                            None => continue,
                        }
                    }
                    Ok(Some(Ok(m))) => m,
                    Ok(Some(Err(e))) => {
                        emit(
                            &call.caller,
                            &e.to_error_object().to_response(Some(&call.client_id)),
                        );
                        break;
                    }
                    Ok(None) => {
                        let e = self.failed(
                            call.upstream,
                            "the upstream closed the stream without answering",
                        );
                        emit(&call.caller, &e.to_response(Some(&call.client_id)));
                        break;
                    }
                    Err(_) => {
                        let e = self
                            .timed_out(call.upstream, &call.up_id, &call.up_session)
                            .await;
                        emit(&call.caller, &e.to_response(Some(&call.client_id)));
                        break;
                    }
                },
            };
            match msg {
                UpMsg::Final(env, ..)
                    if call.caller.session().is_some()
                        && result_type(&env).as_deref() == Some("input_required") =>
                {
                    rounds += 1;
                    let caller = call.caller.clone();
                    match self
                        .fulfil_input(&mut call, &env, rounds, &|b: &[u8]| emit(&caller, b))
                        .await
                    {
                        Ok(()) => continue,
                        Err(e) => {
                            emit(&call.caller, &e.to_response(Some(&call.client_id)));
                            break;
                        }
                    }
                }
                UpMsg::Final(env, ..) => {
                    let answer = self
                        .finalize(&call.caller, &call.client_id, env, call.post.clone())
                        .await;
                    // Waits for room rather than dropping the answer behind
                    // a flood of notifications (bounded by the timeout).
                    let (frame, live) = match (&call.caller, stream_id) {
                        (Caller::Legacy(s), Some(sid)) => {
                            s.emit_last(sid, |eid| sse::encode(None, Some(eid), &answer))
                        }
                        _ => (sse::encode(None, None, &answer), Some(tx.clone())),
                    };
                    if let Some(live) = live {
                        let _ = tokio::time::timeout(timeout, live.send(frame)).await;
                    }
                    break;
                }
                UpMsg::Message(env, _) if env.kind == Kind::Request && call.caller.is_modern() => {
                    // Park the upstream call and ask the modern agent for input.
                    let answer = self.park(call, env);
                    let _ = tx.try_send(sse::encode(None, None, &answer));
                    return;
                }
                UpMsg::Message(env, bytes) => {
                    let relayed = match env.kind {
                        Kind::Request => {
                            self.server_request(&call.caller, call.upstream, &call.up_session, env)
                                .await
                        }
                        _ => Some(bytes.to_vec()),
                    };
                    if let Some(b) = relayed
                        && !emit(&call.caller, &b)
                    {
                        // A modern agent closed its stream: that is cancellation.
                        self.cancel_upstream(call.upstream, &call.up_id, &call.up_session)
                            .await;
                        break;
                    }
                }
            }
        }
        self.done(&call.caller, &call.client_id);
        if let Post::Judged(judged) = &call.post {
            // A stream that ended without a result still reports its events.
            self.behaviour.report_result(judged);
        }
        if let (Caller::Legacy(s), Some(sid)) = (&call.caller, stream_id) {
            s.finish_stream(sid);
        }
    }

    /// Modern upstream, legacy agent: asks the agent each input request on
    /// its stream, then retries the upstream call with the answers.
    async fn fulfil_input(
        &self,
        call: &mut Call,
        env: &Envelope,
        round: usize,
        emit: &(dyn Fn(&[u8]) -> bool + Sync),
    ) -> Result<(), ErrorObject> {
        if round > MAX_ROUNDS {
            return Err(ErrorObject::new(
                jsonrpc_internal(),
                format!("the upstream asked for input more than {MAX_ROUNDS} times"),
            ));
        }
        let Some(session) = call.caller.session().cloned() else {
            return Err(ErrorObject::new(
                jsonrpc_internal(),
                "no session to ask for input",
            ));
        };
        let result: Value = env
            .result
            .as_ref()
            .and_then(|r| serde_json::from_str(r.get()).ok())
            .unwrap_or(Value::Null);
        let mut responses = serde_json::Map::new();
        if let Some(requests) = result.get("inputRequests").and_then(Value::as_object) {
            for (key, req) in requests {
                let method = req
                    .get("method")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let needed = match method {
                    "sampling/createMessage" => "sampling",
                    "elicitation/create" => "elicitation",
                    "roots/list" => "roots",
                    other => {
                        return Err(ErrorObject::new(
                            INVALID_PARAMS,
                            format!("the upstream asked for unsupported input `{other}`"),
                        ));
                    }
                };
                if !session.has_capability(needed) {
                    return Err(ErrorObject::new(
                        mcp::MISSING_REQUIRED_CLIENT_CAPABILITY,
                        format!("the upstream needs `{needed}`, which the agent did not declare"),
                    )
                    .with_data(json!({"requiredCapabilities": {needed: {}}})));
                }
                // What the agent is asked may carry the upstream's content.
                let params = self
                    .screen_input(&call.post, method, req.get("params").map(to_raw))
                    .await?;
                let (reply_tx, reply_rx) = oneshot::channel();
                let gid = session.register_server_request(ServerRequestRoute {
                    upstream: call.upstream,
                    upstream_id: RequestId::number(0),
                    up_session: None,
                    reply: Some(reply_tx),
                });
                emit(&Envelope::request_bytes(
                    Some(&gid),
                    method,
                    params.as_deref(),
                ));
                let answer = tokio::time::timeout(self.config.limits.upstream_timeout, reply_rx)
                    .await
                    .map_err(|_| {
                        ErrorObject::new(
                            crate::upstream::UPSTREAM_TIMEOUT,
                            format!("the agent did not answer `{method}` in time"),
                        )
                    })?
                    .map_err(|_| ErrorObject::new(jsonrpc_internal(), "the session ended"))?;
                match answer.result {
                    Some(r) => {
                        responses.insert(
                            key.clone(),
                            serde_json::from_str(r.get()).unwrap_or(Value::Null),
                        );
                    }
                    None => {
                        return Err(ErrorObject::new(
                            INVALID_PARAMS,
                            format!("the agent refused `{method}`"),
                        ));
                    }
                }
            }
        }
        let mut params = call.params.clone();
        params.set("inputResponses", to_raw(&responses));
        match result.get("requestState").and_then(Value::as_str) {
            Some(state) => params.set_str("requestState", state),
            None => {
                params.remove("requestState");
            }
        }
        let (up_id, rx, up_session) = self
            .send_call(&call.caller, call.upstream, &call.method, &params)
            .await?;
        call.up_id = up_id;
        call.rx = rx;
        call.up_session = up_session;
        Ok(())
    }

    /// Legacy upstream, modern agent: keeps the upstream call waiting and
    /// answers the agent `input_required` with a state token for the retry.
    fn park(self: &Arc<Self>, call: Call, env: Envelope) -> Vec<u8> {
        let client_id = call.client_id.clone();
        let needed = match env.method() {
            "sampling/createMessage" => Some("sampling"),
            "elicitation/create" => Some("elicitation"),
            "roots/list" => Some("roots"),
            _ => None,
        };
        let declared = match (&call.caller, needed) {
            (Caller::Modern(m), Some(cap)) => m.profile.declares(cap),
            _ => false,
        };
        let Some(server_request) = env.id.clone().filter(|_| declared) else {
            let asked = env.method().to_owned();
            let gw = self.clone();
            let (i, s) = (call.upstream, call.up_session.clone());
            tokio::spawn(async move {
                gw.refuse_server_request(i, &s, &env, "the agent did not declare this capability")
                    .await
            });
            return ErrorObject::new(
                mcp::MISSING_REQUIRED_CLIENT_CAPABILITY,
                format!("the upstream asked for `{asked}`, which the agent did not declare"),
            )
            .with_data(json!({"requiredCapabilities": {needed.unwrap_or("unknown"): {}}}))
            .to_response(Some(&client_id));
        };
        let Some(token) = crate::session::new_session_id().map(|t| format!("{STATE_PREFIX}{t}"))
        else {
            return ErrorObject::new(jsonrpc_internal(), "cannot issue request state")
                .to_response(Some(&client_id));
        };
        let binding = (
            call.method.clone(),
            call.params
                .get_str(mcp::name_field(&call.method).unwrap_or("name")),
        );
        let request = json!({"method": env.method(), "params": env.params.as_ref().and_then(|p| serde_json::from_str::<Value>(p.get()).ok()).unwrap_or(json!({}))});
        let result = json!({
            "resultType": "input_required",
            "inputRequests": {"input": request},
            "requestState": token,
        });
        self.done(&call.caller, &call.client_id);
        self.parked.insert(
            token.clone(),
            Parked {
                call,
                server_request,
                binding,
            },
        );
        // A parked call the agent never resumes is cancelled upstream.
        let gw = Arc::downgrade(self);
        let wait = self
            .config
            .limits
            .upstream_timeout
            .max(Duration::from_secs(1));
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if let Some(gw) = gw.upgrade()
                && let Some(p) = gw.parked.take(&token)
            {
                gw.cancel_upstream(p.call.upstream, &p.call.up_id, &p.call.up_session)
                    .await;
            }
        });
        Envelope::result_bytes(&client_id, &to_raw(&result))
    }

    /// A modern agent's retry carrying the gateway's `requestState`.
    async fn resume_parked(
        self: &Arc<Self>,
        caller: &Caller,
        client_id: &RequestId,
        method: &str,
        params: &RawObject,
        token: &str,
        wants_sse: bool,
    ) -> Result<Outcome, ErrorObject> {
        let invalid = || ErrorObject::new(INVALID_PARAMS, "Invalid or expired requestState");
        let mut parked = self.parked.take(token).ok_or_else(invalid)?;
        let name = params.get_str(mcp::name_field(method).unwrap_or("name"));
        if parked.binding != (method.to_owned(), name) {
            return Err(invalid());
        }
        let responses: Value = params
            .get("inputResponses")
            .and_then(|r| serde_json::from_str(r.get()).ok())
            .unwrap_or(Value::Null);
        // The agent's answer goes upstream: held to the content policy.
        let refused = responses.get("input").and_then(|answer| {
            if !self.config.judge.enabled {
                return None;
            }
            self.behaviour.outbound_blocked(&to_raw(answer))
        });
        if let Some(why) = &refused {
            tracing::warn!(agent = %caller.principal().agent, upstream = %self.names[parked.call.upstream], classes = %why, "agent's answer to an upstream request refused");
            metrics::counter!("castellan_outbound_refused_total").increment(1);
        }
        let bytes = match (responses.get("input"), refused) {
            (Some(_), Some(why)) => ErrorObject::new(
                crate::gateway::REFUSED,
                format!(
                    "Castellan refused the agent's answer: it carries {why}, which the content policy does not let reach an upstream"
                ),
            )
            .to_response(Some(&parked.server_request)),
            (Some(answer), None) => Envelope::result_bytes(&parked.server_request, &to_raw(answer)),
            (None, _) => ErrorObject::new(INVALID_PARAMS, "the agent gave no input")
                .to_response(Some(&parked.server_request)),
        };
        self.deliver_to_upstream(
            parked.call.upstream,
            &parked.call.up_session,
            Bytes::from(bytes),
        )
        .await;
        parked.call.caller = caller.clone();
        parked.call.client_id = client_id.clone();
        Ok(self.relay(parked.call, wants_sse).await)
    }
}

fn jsonrpc_internal() -> i64 {
    castellan_protocol::jsonrpc::INTERNAL_ERROR
}
