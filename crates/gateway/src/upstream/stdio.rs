//! Stdio upstreams: a supervised child process speaking newline-delimited
//! JSON-RPC (legacy era, one `initialize` per process). Requests from all
//! agents share the process; the gateway's unique ids keep their replies
//! apart, and progress tokens are rewritten so two agents choosing the same
//! token cannot see each other's progress. When the child dies, every call
//! in flight gets an error naming the upstream, and the child is restarted
//! with exponential back-off.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use castellan_protocol::jsonrpc::{Envelope, RawObject, RequestId, raw_json, to_raw};
use castellan_protocol::{Kind, stdio};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

use super::http::ClientProfile;
use super::{Outbound, Push, PushTx, ReplyRx, UpMsg, UpstreamError, classify};

type ReplyTx = mpsc::Sender<Result<UpMsg, UpstreamError>>;

#[derive(Debug, Default)]
struct Shared {
    writer: Option<mpsc::UnboundedSender<Bytes>>,
    /// Gateway request id -> (reply channel, the agent's original progress token).
    pending: HashMap<u64, (ReplyTx, Option<Box<serde_json::value::RawValue>>)>,
    /// The most recent request still in flight, for messages a stdio server
    /// cannot tie to a request (logging, server-to-client requests).
    latest: Option<u64>,
    capabilities: serde_json::Value,
    last_error: String,
}

/// A supervised stdio upstream.
#[derive(Debug)]
pub struct StdioUpstream {
    name: Arc<str>,
    shared: Arc<Mutex<Shared>>,
    ready: watch::Receiver<bool>,
    timeout: Duration,
    ids: Arc<AtomicU64>,
}

const TOKEN_PREFIX: &str = "castellan-";

impl StdioUpstream {
    /// Starts the child and its supervisor.
    pub fn start(
        index: usize,
        name: &str,
        cfg: &castellan_config::StdioUpstream,
        timeout: Duration,
        max_message: usize,
        push: PushTx,
        ids: Arc<AtomicU64>,
    ) -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (ready_tx, ready) = watch::channel(false);
        let name: Arc<str> = name.into();
        tokio::spawn(supervise(
            index,
            name.clone(),
            cfg.clone(),
            shared.clone(),
            ready_tx,
            timeout,
            max_message,
            push,
            ids.clone(),
        ));
        StdioUpstream {
            name,
            shared,
            ready,
            timeout,
            ids,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        lock(&self.shared)
    }

    /// Capabilities the child declared in `initialize`.
    pub fn capabilities(&self) -> serde_json::Value {
        self.lock().capabilities.clone()
    }

    /// Sends a request; waits (bounded) for the child to be running.
    pub async fn request(&self, out: &Outbound) -> Result<ReplyRx, UpstreamError> {
        let mut ready = self.ready.clone();
        if !*ready.borrow() {
            let wait = tokio::time::timeout(
                self.timeout.min(Duration::from_secs(10)),
                ready.wait_for(|r| *r),
            )
            .await;
            if !matches!(wait, Ok(Ok(_))) {
                let reason = self.lock().last_error.clone();
                return Err(UpstreamError::Unavailable {
                    upstream: self.name.clone(),
                    reason: if reason.is_empty() {
                        "the process is not running".into()
                    } else {
                        reason
                    },
                });
            }
        }
        let id = out
            .id
            .as_u64()
            .unwrap_or_else(|| self.ids.fetch_add(1, Ordering::Relaxed));
        let (params, token) = rewrite_progress_token(out.params.as_deref(), id);
        let bytes = stdio::encode(&Envelope::request_bytes(
            Some(&RequestId::number(id)),
            &out.method,
            params.as_deref(),
        ));
        let (tx, rx) = mpsc::channel(32);
        let mut s = self.lock();
        let Some(writer) = s.writer.clone() else {
            return Err(UpstreamError::Unavailable {
                upstream: self.name.clone(),
                reason: "the process is restarting".into(),
            });
        };
        s.pending.insert(id, (tx, token));
        s.latest = Some(id);
        drop(s);
        if writer.send(bytes).is_err() {
            self.lock().pending.remove(&id);
            return Err(UpstreamError::Unavailable {
                upstream: self.name.clone(),
                reason: "the process is restarting".into(),
            });
        }
        Ok(rx)
    }

    /// Forgets a request whose agent went away and tells the child to stop.
    pub fn cancel(&self, id: &RequestId) {
        let Some(n) = id.as_u64() else { return };
        if self.lock().pending.remove(&n).is_some() {
            let note = Envelope::request_bytes(
                None,
                "notifications/cancelled",
                Some(&to_raw(
                    &json!({"requestId": n, "reason": "client disconnected"}),
                )),
            );
            self.send_raw(Bytes::from(note));
        }
    }

    /// Writes a message (a notification, or a response to the child's request).
    pub fn send_raw(&self, message: Bytes) {
        if let Some(w) = self.lock().writer.as_ref() {
            let _ = w.send(stdio::encode(&message));
        }
    }
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Replaces `_meta.progressToken` with one naming the gateway request, and
/// returns the agent's original token.
fn rewrite_progress_token(
    params: Option<&serde_json::value::RawValue>,
    id: u64,
) -> (
    Option<Box<serde_json::value::RawValue>>,
    Option<Box<serde_json::value::RawValue>>,
) {
    let Some(p) = params else { return (None, None) };
    let Ok(mut obj) = serde_json::from_str::<RawObject>(p.get()) else {
        return (Some(p.to_owned()), None);
    };
    let Some(meta) = obj.get("_meta") else {
        return (Some(p.to_owned()), None);
    };
    let Ok(mut meta) = serde_json::from_str::<RawObject>(meta.get()) else {
        return (Some(p.to_owned()), None);
    };
    let Some(original) = meta.remove("progressToken") else {
        return (Some(p.to_owned()), None);
    };
    meta.set_str("progressToken", &format!("{TOKEN_PREFIX}{id}"));
    obj.set("_meta", meta.to_raw());
    (Some(obj.to_raw()), Some(original))
}

#[allow(clippy::too_many_arguments)]
async fn supervise(
    index: usize,
    name: Arc<str>,
    cfg: castellan_config::StdioUpstream,
    shared: Arc<Mutex<Shared>>,
    ready: watch::Sender<bool>,
    timeout: Duration,
    max_message: usize,
    push: PushTx,
    ids: Arc<AtomicU64>,
) {
    let mut backoff = cfg.restart.initial;
    loop {
        if push.is_closed() {
            return;
        }
        let started = tokio::time::Instant::now();
        let mut cmd = Command::new(&cfg.command);
        cmd.args(&cfg.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &cfg.env {
            cmd.env(k, v);
        }
        if let Some(dir) = &cfg.cwd {
            cmd.current_dir(dir);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("cannot start `{}`: {e}", cfg.command);
                tracing::error!(upstream = %name, "{msg}");
                lock(&shared).last_error = msg;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(cfg.restart.max);
                continue;
            }
        };
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill().await;
            continue;
        };
        let (wtx, mut wrx) = mpsc::unbounded_channel::<Bytes>();
        lock(&shared).writer = Some(wtx.clone());
        let writer = tokio::spawn(async move {
            while let Some(b) = wrx.recv().await {
                if stdin.write_all(&b).await.is_err() || stdin.flush().await.is_err() {
                    break;
                }
            }
        });
        let err_name = name.clone();
        let stderr_task = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(upstream = %err_name, "stderr: {line}");
            }
        });
        let reader_shared = shared.clone();
        let reader_push = push.clone();
        let reader = tokio::spawn(read_loop(
            index,
            stdout,
            reader_shared,
            reader_push,
            max_message,
        ));

        // Handshake, as any other request.
        let init_id = ids.fetch_add(1, Ordering::Relaxed);
        let profile = ClientProfile::gateway();
        let init = Envelope::request_bytes(
            Some(&RequestId::number(init_id)),
            "initialize",
            Some(&to_raw(
                &json!({"protocolVersion": profile.version, "capabilities": profile.capabilities, "clientInfo": profile.client_info}),
            )),
        );
        let (itx, mut irx) = mpsc::channel(4);
        lock(&shared).pending.insert(init_id, (itx, None));
        let _ = wtx.send(stdio::encode(&init));
        let handshake = tokio::time::timeout(timeout, async {
            while let Some(msg) = irx.recv().await {
                if let Ok(UpMsg::Final(env, ..)) = msg {
                    return env
                        .result
                        .and_then(|r| serde_json::from_str::<serde_json::Value>(r.get()).ok());
                }
            }
            None
        })
        .await;
        match handshake {
            Ok(Some(result)) => {
                let _ = wtx.send(stdio::encode(&Envelope::request_bytes(
                    None,
                    "notifications/initialized",
                    None,
                )));
                let mut s = lock(&shared);
                s.capabilities = result.get("capabilities").cloned().unwrap_or(json!({}));
                s.last_error.clear();
                drop(s);
                let _ = ready.send(true);
                tracing::info!(upstream = %name, pid = child.id().unwrap_or(0), "stdio upstream ready");
            }
            _ => {
                let msg = "the process did not answer `initialize`".to_string();
                tracing::error!(upstream = %name, "{msg}");
                lock(&shared).last_error = msg;
            }
        }

        let status = child.wait().await;
        let _ = ready.send(false);
        reader.abort();
        writer.abort();
        stderr_task.abort();
        let reason = match status {
            Ok(s) => format!("the process exited ({s})"),
            Err(e) => format!("the process failed: {e}"),
        };
        tracing::warn!(upstream = %name, "{reason}; restarting in {} ms", backoff.as_millis());
        let pending: Vec<ReplyTx> = {
            let mut s = lock(&shared);
            s.writer = None;
            s.latest = None;
            s.last_error = reason.clone();
            s.pending.drain().map(|(_, (tx, _))| tx).collect()
        };
        for tx in pending {
            let _ = tx.try_send(Err(UpstreamError::Failed {
                upstream: name.clone(),
                reason: reason.clone(),
            }));
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = cfg.restart.initial;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(cfg.restart.max);
    }
}

async fn read_loop(
    index: usize,
    stdout: tokio::process::ChildStdout,
    shared: Arc<Mutex<Shared>>,
    push: PushTx,
    max: usize,
) {
    let mut reader = BufReader::new(stdout);
    let mut decoder = stdio::LineDecoder::new(max);
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = Vec::new();
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if decoder.feed(&buf[..n], &mut lines).is_err() {
            tracing::warn!("stdio upstream sent an oversized message; dropped");
            continue;
        }
        for line in lines.drain(..) {
            dispatch(index, line, &shared, &push);
        }
    }
}

/// A stdio server cannot say which request a log line or a server request
/// belongs to: the most recent request in flight gets it, or every session
/// when none is.
fn route_to_latest(
    index: usize,
    env: Envelope,
    line: Bytes,
    s: std::sync::MutexGuard<'_, Shared>,
    push: &PushTx,
) {
    let latest = s
        .latest
        .and_then(|id| s.pending.get(&id))
        .map(|(tx, _)| tx.clone());
    drop(s);
    match latest {
        Some(tx) => {
            let _ = tx.try_send(Ok(UpMsg::Message(env, line)));
        }
        None => {
            let _ = push.send(Push {
                upstream: index,
                message: env,
                bytes: line,
            });
        }
    }
}

fn dispatch(index: usize, line: Bytes, shared: &Arc<Mutex<Shared>>, push: &PushTx) {
    let Ok(env) = Envelope::parse(&line) else {
        tracing::debug!("stdio upstream wrote a line that is not JSON-RPC; ignored");
        return;
    };
    let mut s = lock(shared);
    match env.kind {
        Kind::Result | Kind::Error => {
            let Some(id) = env.id.as_ref().and_then(RequestId::as_u64) else {
                return;
            };
            if let Some((tx, _)) = s.pending.remove(&id) {
                if s.latest == Some(id) {
                    s.latest = s.pending.keys().max().copied();
                }
                drop(s);
                let want = RequestId::number(id);
                if let Some(msg) = classify(line, &want, 200) {
                    let _ = tx.try_send(Ok(msg));
                }
            }
        }
        Kind::Notification if env.method() == "notifications/progress" => {
            // Route by the rewritten token and give the agent its own token back.
            let Ok(mut params) = env.params_object() else {
                return;
            };
            let token = params.get_str("progressToken");
            let Some(id) = token
                .as_deref()
                .and_then(|t| t.strip_prefix(TOKEN_PREFIX))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                return;
            };
            let Some((tx, original)) = s.pending.get(&id) else {
                return;
            };
            let tx = tx.clone();
            params.set(
                "progressToken",
                original.clone().unwrap_or_else(|| raw_json("null")),
            );
            drop(s);
            let bytes = Bytes::from(Envelope::request_bytes(
                None,
                "notifications/progress",
                Some(&params.to_raw()),
            ));
            if let Ok(env) = Envelope::parse(&bytes) {
                let _ = tx.try_send(Ok(UpMsg::Message(env, bytes)));
            }
        }
        // A stdio server cannot say which request a log line or a server
        // request belongs to: the most recent request in flight gets it,
        // or every session when none is.
        Kind::Request => route_to_latest(index, env, line, s, push),
        Kind::Notification
            if env.method() == "notifications/message"
                || env.method() == "notifications/cancelled" =>
        {
            route_to_latest(index, env, line, s, push)
        }
        Kind::Notification => {
            drop(s);
            let _ = push.send(Push {
                upstream: index,
                message: env,
                bytes: line,
            });
        }
    }
}
