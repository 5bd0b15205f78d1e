//! Messages an upstream streams to the agent before its result (log and
//! progress notifications, server requests such as sampling and
//! elicitation) carry content too: each is inspected like the result
//! before it is relayed. A clean message is relayed as it came (only
//! scanned, never parsed); a redacted one with its values masked; a blocked
//! one never reaches the agent: a notification is dropped, a server request
//! is refused to the upstream. Messages an upstream pushes outside any call
//! (the agent's standalone stream) are inspected the same way.

use bytes::Bytes;
use castellan_protocol::Kind;
use castellan_protocol::jsonrpc::{Envelope, ErrorObject};
use serde_json::value::RawValue;

use crate::behaviour::Screened;
use crate::call::{Call, Post};
use crate::gateway::{Gateway, REFUSED};
use crate::session::ClientSession;

/// Methods whose params carry no content of the upstream's for the agent.
fn carries_content(method: &str) -> bool {
    !matches!(
        method,
        "ping"
            | "roots/list"
            | "notifications/cancelled"
            | "notifications/resources/updated"
            | "notifications/tools/list_changed"
            | "notifications/prompts/list_changed"
            | "notifications/resources/list_changed"
    )
}

impl Gateway {
    /// Inspects a streamed message's params when its call was judged and
    /// it carries content.
    async fn screen(&self, post: &Post, method: &str, params: Option<&RawValue>) -> Screened {
        match (post, params) {
            (Post::Judged(judged), Some(p)) if carries_content(method) => {
                self.behaviour.inspect_event(judged, method, p).await
            }
            _ => Screened::Clean,
        }
    }

    /// Inspects one streamed message of a call. `None`: the agent must not
    /// see it (already refused upstream when it was a request).
    pub(crate) async fn screen_event(
        &self,
        call: &Call,
        env: &mut Envelope,
        bytes: Bytes,
    ) -> Option<Bytes> {
        match self
            .screen(&call.post, env.method(), env.params.as_deref())
            .await
        {
            Screened::Clean => Some(bytes),
            Screened::Redacted(params) => {
                env.params = Some(params);
                Some(Bytes::from(Envelope::request_bytes(
                    env.id.as_ref(),
                    env.method(),
                    env.params.as_deref(),
                )))
            }
            Screened::Blocked(why) => {
                if env.kind == Kind::Request {
                    self.refuse_server_request(
                        call.upstream,
                        &call.up_session,
                        env,
                        &format!("its content carries {why}, which the content policy blocks"),
                    )
                    .await;
                }
                None
            }
        }
    }

    /// Inspects a message upstream `i` pushes outside any call, on its way
    /// to `session`'s standalone stream: `Ok(None)` as it is, `Ok(Some)`
    /// with its redacted params and bytes, `Err(why)` when the agent must
    /// not see it.
    pub(crate) async fn screen_push(
        &self,
        session: &ClientSession,
        i: usize,
        message: &Envelope,
    ) -> Result<Option<(Box<RawValue>, Bytes)>, String> {
        let method = message.method();
        let params = match message.params.as_deref() {
            Some(p) if self.config.judge.enabled && carries_content(method) => p,
            _ => return Ok(None),
        };
        match self
            .behaviour
            .inspect_push(
                &session.principal,
                &session.id,
                &self.names[i],
                method,
                params,
            )
            .await
        {
            Screened::Clean => Ok(None),
            Screened::Redacted(p) => {
                let bytes = Bytes::from(Envelope::request_bytes(
                    message.id.as_ref(),
                    method,
                    Some(&p),
                ));
                Ok(Some((p, bytes)))
            }
            Screened::Blocked(why) => Err(why),
        }
    }

    /// Inspects the params of an input request a modern upstream asks a
    /// legacy agent through the gateway; a blocked one fails the call.
    pub(crate) async fn screen_input(
        &self,
        post: &Post,
        method: &str,
        params: Option<Box<RawValue>>,
    ) -> Result<Option<Box<RawValue>>, ErrorObject> {
        match self.screen(post, method, params.as_deref()).await {
            Screened::Clean => Ok(params),
            Screened::Redacted(p) => Ok(Some(p)),
            Screened::Blocked(why) => Err(ErrorObject::new(
                REFUSED,
                format!(
                    "Castellan refused the upstream's `{method}` request: its content carries {why}, which the content policy blocks"
                ),
            )),
        }
    }
}
