//! The upstream set: every configured upstream behind one type, so that
//! the choice of transport (builtin, Streamable HTTP, stdio child, OpenAPI) is made
//! here and nowhere else on the request path. The gateway sends, cancels,
//! delivers and closes through [`Upstreams`]; only this file matches on
//! [`Upstream`].

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use castellan_config::{Config, Transport};
use castellan_protocol::jsonrpc::{RawObject, RequestId, to_raw};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::session::ClientSession;
use crate::upstream::builtin::BuiltinUpstream;
use crate::upstream::http::{HttpUpstream, UpSession, modern_meta};
use crate::upstream::openapi::OpenApiUpstream;
use crate::upstream::stdio::StdioUpstream;
use crate::upstream::{Outbound, Push, ReplyRx, UpstreamError};

/// How an upstream is reached.
#[derive(Debug)]
pub enum Upstream {
    /// In-process demo server.
    Builtin(BuiltinUpstream),
    /// Streamable HTTP.
    Http(Box<HttpUpstream>),
    /// Child process.
    Stdio(StdioUpstream),
    /// A REST API described by OpenAPI, served as tools in-process.
    OpenApi(Box<OpenApiUpstream>),
}

/// On whose behalf a request goes upstream.
#[derive(Clone, Copy)]
pub(crate) enum OnBehalf<'a> {
    /// A stateless 2026-07-28 agent.
    Modern,
    /// A legacy session; `pushes` starts relaying what an upstream session
    /// opened for it pushes (called once, when the first one opens).
    Legacy {
        session: &'a Arc<ClientSession>,
        pushes: &'a (dyn Fn(mpsc::UnboundedReceiver<Push>) + Sync),
    },
}

/// Every upstream of the configuration, in its order (the index is the
/// upstream's number everywhere in the gateway).
#[derive(Debug)]
pub struct Upstreams {
    list: Vec<Upstream>,
}

impl Upstreams {
    /// Builds every upstream and starts stdio children. Pushes outside any
    /// agent's session go to `push_tx`; `ids` numbers every request.
    /// OpenAPI upstreams declare their operations' labels to `behaviour`.
    pub(crate) fn start(
        config: &Config,
        push_tx: &mpsc::UnboundedSender<Push>,
        ids: &Arc<AtomicU64>,
        behaviour: &crate::behaviour::Behaviour,
    ) -> Result<Upstreams, String> {
        let mut list = Vec::with_capacity(config.upstreams.len());
        let l = &config.limits;
        for (i, u) in config.upstreams.iter().enumerate() {
            list.push(match &u.transport {
                Transport::Builtin(b) => Upstream::Builtin(
                    BuiltinUpstream::new(b).ok_or_else(|| format!("unknown builtin `{b}`"))?,
                ),
                Transport::Http(h) => Upstream::Http(Box::new(HttpUpstream::new(
                    i,
                    &u.name,
                    h,
                    l.upstream_timeout,
                    l.connect_timeout,
                    l.max_message_bytes,
                    push_tx.clone(),
                    ids.clone(),
                )?)),
                Transport::Stdio(s) => Upstream::Stdio(StdioUpstream::start(
                    i,
                    &u.name,
                    s,
                    l.upstream_timeout,
                    l.max_message_bytes,
                    push_tx.clone(),
                    ids.clone(),
                )),
                Transport::OpenApi(o) => Upstream::OpenApi(Box::new(
                    OpenApiUpstream::new(
                        &u.name,
                        &u.prefix,
                        o,
                        l.upstream_timeout,
                        l.connect_timeout,
                        behaviour,
                    )
                    .map_err(|e| e.to_string())?,
                )),
            });
        }
        Ok(Upstreams { list })
    }

    /// How many upstreams there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Upstream `i` when it speaks Streamable HTTP.
    pub(crate) fn http(&self, i: usize) -> Option<&HttpUpstream> {
        match self.list.get(i) {
            Some(Upstream::Http(h)) => Some(h),
            _ => None,
        }
    }

    /// The Streamable HTTP upstreams with their numbers.
    pub(crate) fn https(&self) -> impl Iterator<Item = (usize, &HttpUpstream)> {
        (0..self.list.len()).filter_map(|i| self.http(i).map(|h| (i, h)))
    }

    /// Sends one request to upstream `i`; with the upstream session it
    /// went in, if any.
    pub(crate) async fn send(
        &self,
        i: usize,
        on: OnBehalf<'_>,
        mut out: Outbound,
    ) -> Result<(ReplyRx, Option<Arc<UpSession>>), UpstreamError> {
        let Some(up) = self.list.get(i) else {
            return Err(UpstreamError::Failed {
                upstream: Arc::from(format!("#{i}")),
                reason: "no such upstream".into(),
            });
        };
        match (up, on) {
            (Upstream::Builtin(b), _) => Ok((b.request(&out), None)),
            (Upstream::OpenApi(o), _) => Ok((o.request(&out), None)),
            (Upstream::Stdio(s), _) => Ok((s.request(&out).await?, None)),
            (Upstream::Http(h), OnBehalf::Modern) => {
                if h.speaks_modern().await {
                    Ok((h.request(None, &out).await?, None))
                } else {
                    let s = h.shared_session().await?;
                    Ok((h.request(Some(&s), &out).await?, Some(s)))
                }
            }
            (Upstream::Http(h), OnBehalf::Legacy { session, .. }) if h.forced_modern() => {
                // A modern-only upstream: speak for the legacy agent statelessly.
                out.params = Some(with_meta(
                    out.params.as_deref(),
                    &modern_meta(&session.profile),
                ));
                Ok((h.request(None, &out).await?, None))
            }
            (Upstream::Http(h), OnBehalf::Legacy { session, pushes }) => {
                let s = match up_session(session, i, h, pushes).await {
                    Ok(s) => s,
                    Err(e) => {
                        if !h.speaks_modern().await {
                            return Err(e);
                        }
                        // A modern-only upstream: speak for the legacy agent statelessly.
                        out.params = Some(with_meta(
                            out.params.as_deref(),
                            &modern_meta(&session.profile),
                        ));
                        return Ok((h.request(None, &out).await?, None));
                    }
                };
                match h.request(Some(&s), &out).await {
                    Err(_) if s.is_dead() => {
                        session.forget_upstream(i);
                        let s = up_session(session, i, h, pushes).await?;
                        Ok((h.request(Some(&s), &out).await?, Some(s)))
                    }
                    r => Ok((r?, Some(s))),
                }
            }
        }
    }

    /// Tells upstream `i` that the gateway gave up on request `up_id`.
    pub(crate) async fn cancel(
        &self,
        i: usize,
        up_id: &RequestId,
        up_session: &Option<Arc<UpSession>>,
    ) {
        match self.list.get(i) {
            Some(Upstream::Stdio(s)) => s.cancel(up_id),
            Some(Upstream::Http(h)) => {
                if let Some(s) = up_session {
                    let params = to_raw(
                        &json!({"requestId": serde_json::from_str::<Value>(up_id.as_json()).unwrap_or_default(), "reason": "cancelled by the gateway"}),
                    );
                    let out = Outbound {
                        id: RequestId::number(0),
                        method: "notifications/cancelled".into(),
                        params: Some(params),
                        extra_headers: Vec::new(),
                    };
                    h.notify(Some(s), &out).await;
                }
            }
            Some(Upstream::Builtin(_) | Upstream::OpenApi(_)) | None => {}
        }
    }

    /// Delivers a message (an agent's answer to a server request) to
    /// upstream `i`, in `up_session` when it has sessions.
    pub(crate) async fn deliver(
        &self,
        i: usize,
        up_session: &Option<Arc<UpSession>>,
        bytes: Bytes,
    ) {
        match self.list.get(i) {
            Some(Upstream::Stdio(s)) => s.send_raw(bytes),
            Some(Upstream::Http(h)) => h.post_message(up_session.as_deref(), bytes).await,
            Some(Upstream::Builtin(_) | Upstream::OpenApi(_)) | None => {}
        }
    }

    /// Sends a notification without params to every upstream session
    /// opened for `session`.
    pub(crate) async fn notify_sessions(&self, session: &ClientSession, method: &str) {
        for (i, s) in session.upstream_sessions() {
            if let Some(h) = self.http(i) {
                let out = Outbound {
                    id: RequestId::number(0),
                    method: method.into(),
                    params: None,
                    extra_headers: Vec::new(),
                };
                h.notify(Some(&s), &out).await;
            }
        }
    }

    /// Closes the upstream sessions opened for `session`.
    pub(crate) async fn close_sessions(&self, session: &ClientSession) {
        for (i, s) in session.upstream_sessions() {
            if let Some(h) = self.http(i) {
                h.close_session(&s).await;
            }
        }
    }
}

/// The upstream session opened on `h` for a legacy `session`, opened now
/// if it has none.
async fn up_session(
    session: &Arc<ClientSession>,
    i: usize,
    h: &HttpUpstream,
    pushes: &(dyn Fn(mpsc::UnboundedReceiver<Push>) + Sync),
) -> Result<Arc<UpSession>, UpstreamError> {
    let cell = session.upstream_cell(i);
    let s = cell
        .get_or_try_init(|| {
            let push = session.push_tx(pushes);
            h.open_session(&session.profile, push)
        })
        .await?;
    Ok(s.clone())
}

/// Adds (or replaces) `_meta` in a params object.
fn with_meta(params: Option<&RawValue>, meta: &Value) -> Box<RawValue> {
    let mut obj: RawObject = params
        .and_then(|p| serde_json::from_str(p.get()).ok())
        .unwrap_or_default();
    obj.set("_meta", to_raw(meta));
    obj.to_raw()
}
