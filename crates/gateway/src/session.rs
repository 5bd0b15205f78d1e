//! Agent sessions of the legacy era: what the agent declared in
//! `initialize`, the upstream sessions opened on its behalf, server-to-agent
//! requests waiting for an answer, and the event logs that let an agent
//! resume an SSE stream with `Last-Event-ID`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use castellan_protocol::jsonrpc::RequestId;
use tokio::sync::mpsc;

use crate::identity::Principal;
use crate::upstream::http::{ClientProfile, UpSession};
use crate::upstream::{Push, PushTx};

/// Events kept per stream for resumption.
pub(crate) const MAX_LOGGED_EVENTS: usize = 1024;
/// Finished streams kept per session for late resumption.
const MAX_FINISHED_STREAMS: usize = 32;

/// Where an agent's answer to a server-to-agent request must go.
#[derive(Debug)]
pub struct ServerRequestRoute {
    /// Upstream index.
    pub upstream: usize,
    /// The upstream's own id for the request.
    pub upstream_id: RequestId,
    /// The upstream session it came on (HTTP legacy upstreams).
    pub up_session: Option<Arc<UpSession>>,
    /// Set when the gateway itself asked and waits for the answer.
    pub reply: Option<tokio::sync::oneshot::Sender<castellan_protocol::Envelope>>,
}

/// An agent request in flight, for cancellation.
#[derive(Debug, Clone)]
pub struct InFlight {
    /// Upstream index.
    pub upstream: usize,
    /// The gateway's id for the upstream request.
    pub upstream_id: RequestId,
    /// The upstream session it went on.
    pub up_session: Option<Arc<UpSession>>,
}

/// One SSE stream's log: events in order, and the live connection if any.
#[derive(Debug, Default)]
struct StreamLog {
    events: VecDeque<(u64, Bytes)>,
    next_seq: u64,
    live: Option<mpsc::Sender<Bytes>>,
    done: bool,
}

#[derive(Debug, Default)]
struct Inner {
    upstreams: HashMap<usize, Arc<tokio::sync::OnceCell<Arc<UpSession>>>>,
    server_requests: HashMap<String, ServerRequestRoute>,
    in_flight: HashMap<RequestId, InFlight>,
    streams: HashMap<u64, StreamLog>,
    finished: VecDeque<u64>,
    last_seen: Option<Instant>,
}

/// A legacy-era agent session.
#[derive(Debug)]
pub struct ClientSession {
    /// The `Mcp-Session-Id` handed to the agent.
    pub id: String,
    /// What the agent declared in `initialize`.
    pub profile: ClientProfile,
    /// The agent that opened it; nobody else may use it.
    pub principal: Principal,
    /// Pushes from upstream sessions opened for this agent; made on first
    /// use, so a session that never reaches an upstream holds no channel.
    pushes: OnceLock<PushTx>,
    inner: Mutex<Inner>,
    next_stream: AtomicU64,
    next_server_request: AtomicU64,
}

/// The id of the standalone (GET) stream.
pub const STANDALONE: u64 = 0;

impl ClientSession {
    /// A new session.
    pub fn new(id: String, profile: ClientProfile, principal: Principal) -> Arc<Self> {
        Arc::new(ClientSession {
            id,
            profile,
            principal,
            pushes: OnceLock::new(),
            inner: Mutex::new(Inner {
                last_seen: Some(Instant::now()),
                ..Inner::default()
            }),
            next_stream: AtomicU64::new(1),
            next_server_request: AtomicU64::new(1),
        })
    }

    /// Where pushes from this agent's upstream sessions go. The first call
    /// makes the channel and hands its receiving end to `consume`.
    pub fn push_tx(&self, consume: impl FnOnce(mpsc::UnboundedReceiver<Push>)) -> PushTx {
        self.pushes
            .get_or_init(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                consume(rx);
                tx
            })
            .clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Records activity.
    pub fn touch(&self) {
        self.lock().last_seen = Some(Instant::now());
    }

    /// When the agent was last heard from.
    pub fn last_seen(&self) -> Instant {
        self.lock().last_seen.unwrap_or_else(Instant::now)
    }

    /// Whether the agent declared a client capability (`sampling`, `elicitation`, `roots`).
    pub fn has_capability(&self, name: &str) -> bool {
        self.profile.declares(name)
    }

    /// The cell holding this agent's session with upstream `i`.
    pub fn upstream_cell(&self, i: usize) -> Arc<tokio::sync::OnceCell<Arc<UpSession>>> {
        self.lock().upstreams.entry(i).or_default().clone()
    }

    /// Drops a dead upstream session so the next call reopens it.
    pub fn forget_upstream(&self, i: usize) {
        self.lock().upstreams.remove(&i);
    }

    /// Every upstream session opened for this agent.
    pub fn upstream_sessions(&self) -> Vec<(usize, Arc<UpSession>)> {
        self.lock()
            .upstreams
            .iter()
            .filter_map(|(i, c)| c.get().map(|s| (*i, s.clone())))
            .collect()
    }

    /// Registers a server-to-agent request; returns the id the agent sees.
    pub fn register_server_request(&self, route: ServerRequestRoute) -> RequestId {
        let n = self.next_server_request.fetch_add(1, Ordering::Relaxed);
        let id = RequestId::number(n);
        self.lock()
            .server_requests
            .insert(id.as_json().to_owned(), route);
        id
    }

    /// Takes the route of the server-to-agent request the agent answers.
    pub fn take_server_request(&self, id: &RequestId) -> Option<ServerRequestRoute> {
        self.lock().server_requests.remove(id.as_json())
    }

    /// Records an agent request in flight.
    pub fn start_request(&self, id: RequestId, f: InFlight) {
        self.lock().in_flight.insert(id, f);
    }

    /// Forgets an agent request.
    pub fn finish_request(&self, id: &RequestId) {
        self.lock().in_flight.remove(id);
    }

    /// The agent request with this id, if in flight.
    pub fn in_flight(&self, id: &RequestId) -> Option<InFlight> {
        self.lock().in_flight.get(id).cloned()
    }

    /// Opens a new logged stream with a live connection.
    pub fn open_stream(&self, live: mpsc::Sender<Bytes>) -> u64 {
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        self.lock().streams.insert(
            id,
            StreamLog {
                live: Some(live),
                ..StreamLog::default()
            },
        );
        id
    }

    /// Attaches a live connection to the standalone stream, replacing any.
    pub fn attach_standalone(&self, live: mpsc::Sender<Bytes>) {
        self.lock().streams.entry(STANDALONE).or_default().live = Some(live);
    }

    /// Appends an event to a stream's log and sends it live if connected.
    /// `encode` turns (event id, seq) into the SSE frame. Returns false when
    /// the stream has no live connection (the agent went away).
    pub fn emit(&self, stream: u64, encode: impl FnOnce(&str) -> Bytes) -> bool {
        let mut inner = self.lock();
        let (frame, log) = log_event(&mut inner, stream, encode);
        match &log.live {
            Some(tx) => {
                if tx.try_send(frame).is_err() {
                    log.live = None;
                    false
                } else {
                    true
                }
            }
            None => false,
        }
    }

    /// Appends a stream's last event (its final answer) to the log and
    /// returns it with the live connection, if one is attached, for the
    /// caller to send with back-pressure: a final answer must not be lost
    /// to a queue that notifications filled.
    pub fn emit_last(
        &self,
        stream: u64,
        encode: impl FnOnce(&str) -> Bytes,
    ) -> (Bytes, Option<mpsc::Sender<Bytes>>) {
        let mut inner = self.lock();
        let (frame, log) = log_event(&mut inner, stream, encode);
        (frame, log.live.clone())
    }

    /// Marks a stream finished (its final answer was sent) and closes it.
    pub fn finish_stream(&self, stream: u64) {
        let mut inner = self.lock();
        if let Some(log) = inner.streams.get_mut(&stream) {
            log.done = true;
            log.live = None;
        }
        inner.finished.push_back(stream);
        while inner.finished.len() > MAX_FINISHED_STREAMS {
            if let Some(old) = inner.finished.pop_front() {
                inner.streams.remove(&old);
            }
        }
    }

    /// Resumes a stream after `last_event_id` (`{stream}-{seq}`): returns
    /// the missed frames and whether the stream is still open (in which case
    /// `live` is attached for what follows).
    pub fn resume(
        &self,
        last_event_id: &str,
        live: mpsc::Sender<Bytes>,
    ) -> Option<(Vec<Bytes>, bool)> {
        let (stream, seq) = last_event_id.split_once('-')?;
        let stream: u64 = stream.parse().ok()?;
        let seq: u64 = seq.parse().ok()?;
        let mut inner = self.lock();
        let log = inner.streams.get_mut(&stream)?;
        let missed = log
            .events
            .iter()
            .filter(|(s, _)| *s > seq)
            .map(|(_, f)| f.clone())
            .collect();
        let open = !log.done;
        if open {
            log.live = Some(live);
        }
        Some((missed, open))
    }
}

/// Appends an event to a stream's log (dropping the oldest past
/// [`MAX_LOGGED_EVENTS`]); returns its frame and the stream.
fn log_event(
    inner: &mut Inner,
    stream: u64,
    encode: impl FnOnce(&str) -> Bytes,
) -> (Bytes, &mut StreamLog) {
    let log = inner.streams.entry(stream).or_default();
    let seq = log.next_seq;
    log.next_seq += 1;
    let frame = encode(&format!("{stream}-{seq}"));
    log.events.push_back((seq, frame.clone()));
    if log.events.len() > MAX_LOGGED_EVENTS {
        log.events.pop_front();
    }
    (frame, log)
}

/// Which session limit refused a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionLimit {
    /// `limits.max_sessions`.
    Total,
    /// `limits.max_sessions_per_agent`.
    Agent,
}

/// All legacy sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<ClientSession>>>,
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<ClientSession>>> {
        match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Looks a session up.
    pub fn get(&self, id: &str) -> Option<Arc<ClientSession>> {
        self.lock().get(id).cloned()
    }

    /// Adds a session unless `max` sessions are open, or `per_agent` of its
    /// agent's (one credential must not hold the gateway's sessions and
    /// descriptors); `Err` says which limit.
    pub fn insert(
        &self,
        s: Arc<ClientSession>,
        max: usize,
        per_agent: usize,
    ) -> Result<(), SessionLimit> {
        let mut m = self.lock();
        if m.len() >= max {
            return Err(SessionLimit::Total);
        }
        let agent = &s.principal.agent;
        // Counted when a session opens (rare next to calls).
        if m.values().filter(|x| x.principal.agent == *agent).count() >= per_agent {
            return Err(SessionLimit::Agent);
        }
        m.insert(s.id.clone(), s);
        Ok(())
    }

    /// Removes a session.
    pub fn remove(&self, id: &str) -> Option<Arc<ClientSession>> {
        self.lock().remove(id)
    }

    /// Every session.
    pub fn all(&self) -> Vec<Arc<ClientSession>> {
        self.lock().values().cloned().collect()
    }

    /// Removes sessions idle for longer than `idle`.
    pub fn expire(&self, idle: std::time::Duration) -> Vec<Arc<ClientSession>> {
        let now = Instant::now();
        let mut m = self.lock();
        let dead: Vec<String> = m
            .iter()
            .filter(|(_, s)| now.duration_since(s.last_seen()) > idle)
            .map(|(k, _)| k.clone())
            .collect();
        dead.iter().filter_map(|k| m.remove(k)).collect()
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A session id nobody can guess: 128 random bits from the OS, hex. `None`
/// if the OS cannot provide randomness (the session is then refused).
pub fn new_session_id() -> Option<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}
