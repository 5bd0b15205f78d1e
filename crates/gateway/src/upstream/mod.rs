//! Upstream MCP servers: how the gateway reaches them (builtin, Streamable
//! HTTP, stdio child, OpenAPI REST API) and the one shape every reply takes, a stream of
//! [`UpMsg`] ending in [`UpMsg::Final`].
//!
//! Every request the gateway sends upstream carries a gateway-assigned id
//! (unique across the process), so replies, progress and cancellation can
//! be matched without ever exposing one agent's ids to another.

use std::sync::Arc;

use bytes::Bytes;
use castellan_protocol::jsonrpc::{Envelope, ErrorObject, RequestId};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

pub mod builtin;
pub mod http;
pub mod oauth;
pub mod openapi;
mod pool;
pub mod stdio;

/// Implementation-defined JSON-RPC code: the upstream could not be reached.
pub const UPSTREAM_UNAVAILABLE: i64 = -32010;
/// Implementation-defined JSON-RPC code: the upstream did not answer in time.
pub const UPSTREAM_TIMEOUT: i64 = -32011;
/// Implementation-defined JSON-RPC code: the upstream failed mid-request.
pub const UPSTREAM_FAILED: i64 = -32012;

/// A message from an upstream while a request is in flight.
#[derive(Debug)]
pub enum UpMsg {
    /// A notification or a server-to-client request (with the upstream's id).
    Message(Envelope, Bytes),
    /// The final response to the gateway's request, with the HTTP status it
    /// came with (200 for other transports).
    Final(Envelope, Bytes, u16),
}

/// The receiving end of one request's replies.
pub type ReplyRx = mpsc::Receiver<Result<UpMsg, UpstreamError>>;

/// Why an upstream request failed. Each names the upstream.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// Could not connect, or the child process is not running.
    #[error("upstream `{upstream}` is unavailable: {reason}")]
    Unavailable {
        /// Upstream name.
        upstream: Arc<str>,
        /// Why.
        reason: String,
    },
    /// No final answer within the configured timeout.
    #[error("upstream `{upstream}` did not answer within {millis} ms")]
    Timeout {
        /// Upstream name.
        upstream: Arc<str>,
        /// The limit.
        millis: u128,
    },
    /// The upstream broke off (stream closed, process died) before answering.
    #[error("upstream `{upstream}` failed before answering: {reason}")]
    Failed {
        /// Upstream name.
        upstream: Arc<str>,
        /// Why.
        reason: String,
    },
}

impl UpstreamError {
    /// The JSON-RPC error the agent receives.
    pub fn to_error_object(&self) -> ErrorObject {
        let (code, upstream) = match self {
            UpstreamError::Unavailable { upstream, .. } => (UPSTREAM_UNAVAILABLE, upstream),
            UpstreamError::Timeout { upstream, .. } => (UPSTREAM_TIMEOUT, upstream),
            UpstreamError::Failed { upstream, .. } => (UPSTREAM_FAILED, upstream),
        };
        ErrorObject::new(code, self.to_string())
            .with_data(serde_json::json!({ "upstream": &**upstream }))
    }
}

/// What the gateway asks an upstream to do.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Gateway-assigned request id.
    pub id: RequestId,
    /// JSON-RPC method.
    pub method: String,
    /// Params as they go upstream (names already un-namespaced).
    pub params: Option<Box<RawValue>>,
    /// Extra headers to mirror on HTTP (`Mcp-Param-*`).
    pub extra_headers: Vec<(::http::HeaderName, ::http::HeaderValue)>,
}

impl Outbound {
    /// The request as JSON-RPC bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        Envelope::request_bytes(Some(&self.id), &self.method, self.params.as_deref())
    }
}

/// Messages an upstream pushes outside any request (list changes, resource
/// updates, server requests on a stdio child with no request in flight),
/// delivered to a client session or broadcast.
#[derive(Debug)]
pub struct Push {
    /// Index of the upstream in the configuration.
    pub upstream: usize,
    /// The message (upstream ids).
    pub message: Envelope,
    /// Its bytes.
    pub bytes: Bytes,
}

/// Where pushes go.
pub type PushTx = mpsc::UnboundedSender<Push>;

/// Reads one complete JSON-RPC message and classifies it for a request with
/// id `want`.
pub(crate) fn classify(bytes: Bytes, want: &RequestId, status: u16) -> Option<UpMsg> {
    let env = Envelope::parse(&bytes).ok()?;
    let is_final = matches!(
        env.kind,
        castellan_protocol::Kind::Result | castellan_protocol::Kind::Error
    ) && env.id.as_ref() == Some(want);
    Some(if is_final {
        UpMsg::Final(env, bytes, status)
    } else {
        UpMsg::Message(env, bytes)
    })
}
