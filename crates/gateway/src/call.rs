//! A call on its way through the gateway: who asks ([`Caller`]), where it
//! goes ([`Routed`]), what comes back ([`Call`]) and what the agent gets
//! ([`Outcome`]), with what the judge must see first ([`Post`]). Every
//! stage of the request path uses these; they use no stage.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use castellan_protocol::jsonrpc::{RawObject, RequestId};
use tokio::sync::mpsc;

use crate::behaviour::Judged;
use crate::identity::Principal;
use crate::session::ClientSession;
use crate::upstream::ReplyRx;
use crate::upstream::http::{ClientProfile, UpSession};

/// Who is asking: a legacy session, or a stateless modern request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Legacy era: a session opened with `initialize`.
    Legacy(Arc<ClientSession>),
    /// Modern era: what this one request declared in `_meta`.
    Modern(Arc<ModernCaller>),
}

/// What a modern (2026-07-28) request declared about its agent.
#[derive(Debug)]
pub struct ModernCaller {
    /// Version, capabilities and client info from `_meta`.
    pub profile: ClientProfile,
    /// The authenticated agent.
    pub principal: Principal,
    /// The behavioural session it named (`Castellan-Session` header), if any.
    pub session: Option<String>,
    /// `Mcp-Param-*` headers, forwarded as they came.
    pub param_headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl Caller {
    pub(crate) fn is_modern(&self) -> bool {
        matches!(self, Caller::Modern(_))
    }

    /// The authenticated agent behind the call.
    pub(crate) fn principal(&self) -> &Principal {
        match self {
            Caller::Legacy(s) => &s.principal,
            Caller::Modern(m) => &m.principal,
        }
    }

    pub(crate) fn session(&self) -> Option<&Arc<ClientSession>> {
        match self {
            Caller::Legacy(s) => Some(s),
            Caller::Modern(_) => None,
        }
    }
}

/// What the HTTP layer sends back.
#[derive(Debug)]
pub enum Outcome {
    /// One JSON-RPC message with its HTTP status.
    Json(u16, Vec<u8>),
    /// An SSE stream of already-framed events.
    Sse(mpsc::Receiver<Bytes>),
    /// 202, no body (notifications and responses).
    Accepted,
}

/// What to do with a result before the agent sees it.
#[derive(Debug, Clone)]
pub(crate) enum Post {
    /// Pass it through (plus `resultType` for modern agents).
    Passthrough,
    /// Show it to the judge first (taint, provenance, redaction).
    Judged(Arc<Judged>),
}

/// A request routed to one upstream, with its params as they go there.
#[derive(Debug)]
pub(crate) struct Routed {
    /// Upstream index.
    pub(crate) upstream: usize,
    /// JSON-RPC method.
    pub(crate) method: String,
    /// Params with names un-namespaced.
    pub(crate) params: RawObject,
}

/// An upstream call waiting for a modern agent's input.
#[derive(Debug)]
pub(crate) struct Parked {
    pub(crate) call: Call,
    /// The upstream's id for its server request.
    pub(crate) server_request: RequestId,
    /// The method and name the retry must repeat.
    pub(crate) binding: (String, Option<String>),
}

/// Upstream calls parked for modern agents, by `requestState` token.
#[derive(Debug, Default)]
pub(crate) struct ParkedCalls(Mutex<HashMap<String, Parked>>);

impl ParkedCalls {
    pub(crate) fn insert(&self, token: String, p: Parked) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(token, p);
        }
    }

    pub(crate) fn take(&self, token: &str) -> Option<Parked> {
        self.0.lock().ok()?.remove(token)
    }
}

/// One forwarded request on its way back.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) caller: Caller,
    pub(crate) client_id: RequestId,
    pub(crate) upstream: usize,
    pub(crate) up_id: RequestId,
    pub(crate) up_session: Option<Arc<UpSession>>,
    pub(crate) rx: ReplyRx,
    pub(crate) method: String,
    /// The params as sent upstream (for input-required retries).
    pub(crate) params: RawObject,
    pub(crate) post: Post,
}
