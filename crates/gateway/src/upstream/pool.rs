//! HTTP/1.1 connections to one upstream, driven by the call that uses them.
//!
//! hyper-util's pooled client runs every connection as a task of its own
//! and passes each request and its answer across channels: two more task
//! wake-ups per call, often on the other worker thread, which at a modest
//! rate costs more than the gateway's own work. Here the calling task
//! drives the connection while it sends the request and reads a buffered
//! answer, then puts the connection back. Only an answer that streams
//! (SSE) hands its connection to a task of its own, since the stream
//! outlives the call.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{Either, select};
use http::header::HOST;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

type Io = MaybeHttpsStream<TokioIo<TcpStream>>;
type Body = Full<Bytes>;

/// Idle connections kept per upstream; more are closed when they return.
const MAX_IDLE: usize = 256;

/// An upstream's answer to one request.
pub(crate) enum Answer {
    /// Read in full (within the size limit) while the call drove the
    /// connection. `body` is the reason when reading it failed.
    Buffered {
        status: StatusCode,
        headers: HeaderMap,
        body: Result<Bytes, String>,
    },
    /// A stream (`text/event-stream` with a success status): its
    /// connection runs on its own task until the stream ends.
    Streamed(Response<Incoming>),
}

impl Answer {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Answer::Buffered { status, .. } => *status,
            Answer::Streamed(r) => r.status(),
        }
    }

    pub(crate) fn headers(&self) -> &HeaderMap {
        match self {
            Answer::Buffered { headers, .. } => headers,
            Answer::Streamed(r) => r.headers(),
        }
    }
}

struct Idle {
    sender: SendRequest<Body>,
    conn: Connection<Io, Body>,
    since: Instant,
}

/// The connections to one upstream origin.
pub(crate) struct Pool {
    connector: HttpsConnector<HttpConnector>,
    origin: Uri,
    /// `origin` in origin form (path and query), as requests carry it.
    path: Uri,
    host: Option<HeaderValue>,
    idle: Mutex<VecDeque<Idle>>,
    idle_timeout: Duration,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("origin", &self.origin)
            .finish()
    }
}

impl Pool {
    /// A pool for the origin of `uri` (scheme and authority).
    pub(crate) fn new(
        connector: HttpsConnector<HttpConnector>,
        uri: &Uri,
        idle_timeout: Duration,
    ) -> Self {
        // The Host header a client sends: the authority without user info.
        let host = uri
            .authority()
            .map(|a| a.as_str().rsplit('@').next().unwrap_or(a.as_str()))
            .and_then(|h| HeaderValue::try_from(h).ok());
        Pool {
            connector,
            origin: uri.clone(),
            path: origin_form(uri),
            host,
            idle: Mutex::new(VecDeque::new()),
            idle_timeout,
        }
    }

    /// Sends `req` (its URI is this pool's origin plus a path) and reads
    /// the answer: in full up to `max` bytes, or as a stream when it is
    /// one. A request that a reused connection could not send (it had
    /// closed meanwhile) is sent once more on a new connection.
    pub(crate) async fn send(&self, req: Request<Body>, max: usize) -> Result<Answer, String> {
        let req = self.origin_form(req);
        let (sender, conn, reused) = match self.checkout() {
            Some(Idle { sender, conn, .. }) => (sender, conn, true),
            None => {
                let (s, c) = self.connect().await?;
                (s, c, false)
            }
        };
        match self.exchange(sender, conn, req, max).await {
            Err(Failure::NotSent(req)) if reused => {
                let (sender, conn) = self.connect().await?;
                self.exchange(sender, conn, *req, max)
                    .await
                    .map_err(Failure::into_reason)
            }
            r => r.map_err(Failure::into_reason),
        }
    }

    fn origin_form(&self, mut req: Request<Body>) -> Request<Body> {
        // Calls go to the upstream's own URL: its path is parsed once.
        *req.uri_mut() = if *req.uri() == self.origin {
            self.path.clone()
        } else {
            origin_form(req.uri())
        };
        if let Some(host) = &self.host {
            req.headers_mut()
                .entry(HOST)
                .or_insert_with(|| host.clone());
        }
        req
    }

    /// The most recently returned connection that is still open and not
    /// too old; older and closed ones are dropped on the way.
    fn checkout(&self) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(mut c) = idle.pop_back() {
            if c.since.elapsed() > self.idle_timeout || c.sender.is_closed() {
                continue;
            }
            // Polled once without a waker that matters: a connection the
            // upstream closed while idle finishes here instead of eating
            // the request.
            if (&mut c.conn).now_or_never().is_some() || !c.sender.is_ready() {
                continue;
            }
            return Some(c);
        }
        None
    }

    fn checkin(&self, sender: SendRequest<Body>, conn: Connection<Io, Body>) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while idle
            .front()
            .is_some_and(|c| now.duration_since(c.since) > self.idle_timeout)
        {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back(Idle {
                sender,
                conn,
                since: now,
            });
        }
    }

    async fn connect(&self) -> Result<(SendRequest<Body>, Connection<Io, Body>), String> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|e| describe(&*e))?;
        let io = connector
            .call(self.origin.clone())
            .await
            .map_err(|e| describe(&*e))?;
        http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| describe(&e))
    }

    /// Sends one request on a connection this call drives, and returns the
    /// connection to the pool when the answer was read in full and it can
    /// take another request.
    async fn exchange(
        &self,
        mut sender: SendRequest<Body>,
        mut conn: Connection<Io, Body>,
        req: Request<Body>,
        max: usize,
    ) -> Result<Answer, Failure> {
        let sent = sender.try_send_request(req);
        let work = std::pin::pin!(async move {
            let resp = match sent.await {
                Ok(r) => r,
                Err(mut e) => {
                    return Err(match e.take_message() {
                        Some(req) => Failure::NotSent(Box::new(req)),
                        None => Failure::Failed(describe(e.error())),
                    });
                }
            };
            if is_stream(&resp) {
                return Ok(Answer::Streamed(resp));
            }
            let (parts, body) = resp.into_parts();
            let body = match http_body_util::Limited::new(body, max).collect().await {
                Ok(c) => Ok(c.to_bytes()),
                Err(e) => Err(format!("reading the upstream's answer failed: {e}")),
            };
            Ok(Answer::Buffered {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        });
        match select(&mut conn, work).await {
            // The connection ended first (closed or failed): whatever it
            // delivered before is still there to read.
            Either::Left((ended, work)) => match work.await {
                Err(Failure::Failed(reason)) => Err(Failure::Failed(match ended {
                    Err(e) => describe(&e),
                    Ok(()) => reason,
                })),
                r => r,
            },
            Either::Right((answer, _)) => {
                match &answer {
                    Ok(Answer::Streamed(_)) => {
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                    }
                    // Once the answer is read the connection is ready again
                    // after at most one more turn.
                    Ok(Answer::Buffered { body: Ok(_), .. })
                        if (&mut conn).now_or_never().is_none() && sender.is_ready() =>
                    {
                        self.checkin(sender, conn);
                    }
                    _ => {}
                }
                answer
            }
        }
    }
}

/// Why an exchange failed.
enum Failure {
    /// The connection had closed before the request was written.
    NotSent(Box<Request<Body>>),
    Failed(String),
}

impl Failure {
    fn into_reason(self) -> String {
        match self {
            Failure::NotSent(_) => "the upstream closed the connection".into(),
            Failure::Failed(reason) => reason,
        }
    }
}

/// `uri`'s path and query alone (`/` when it has none).
fn origin_form(uri: &Uri) -> Uri {
    uri.path_and_query()
        .and_then(|p| p.as_str().parse().ok())
        .unwrap_or_else(|| Uri::from_static("/"))
}

fn is_stream<B>(resp: &Response<B>) -> bool {
    resp.status().is_success()
        && resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"))
}

/// An error and its sources, on one line.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// How the test upstream answers each request on a connection.
    #[derive(Clone, Copy)]
    enum Serve {
        /// JSON, keeps the connection open.
        KeepAlive,
        /// JSON with `Connection: close`, then closes.
        CloseAfter,
        /// JSON, then closes the connection silently (an idle timeout).
        DropAfter,
        /// An SSE stream of two events.
        Stream,
        /// A body larger than the test's limit.
        Large,
    }

    /// A raw HTTP/1.1 upstream; counts the connections it accepted.
    async fn upstream(serve: Serve) -> (Uri, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Uri = format!("http://{}/mcp", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        // Read one request: head, then Content-Length bytes.
                        let head_end = loop {
                            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break p + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                        assert!(head.starts_with("post /mcp http/1.1"), "{head}");
                        assert!(head.contains("\r\nhost: 127.0.0.1:"), "{head}");
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < head_end + len {
                            let mut chunk = [0u8; 4096];
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let body =
                            String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
                        buf.drain(..head_end + len);
                        let reply = match serve {
                            Serve::Stream => {
                                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
                                 b\r\ndata: one\n\n\r\nb\r\ndata: two\n\n\r\n0\r\n\r\n"
                                    .to_string()
                            }
                            Serve::Large => format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4096\r\n\r\n{}",
                                "x".repeat(4096)
                            ),
                            Serve::CloseAfter => format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            ),
                            Serve::KeepAlive | Serve::DropAfter => format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            ),
                        };
                        if sock.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                        if matches!(serve, Serve::CloseAfter | Serve::DropAfter) {
                            return;
                        }
                    }
                });
            }
        });
        (uri, accepted)
    }

    fn pool(uri: &Uri) -> Pool {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Pool::new(connector, uri, Duration::from_secs(60))
    }

    fn post(uri: &Uri, body: &str) -> Request<Body> {
        Request::post(uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap()
    }

    async fn answer(pool: &Pool, uri: &Uri, body: &str) -> Bytes {
        match pool.send(post(uri, body), 1024).await {
            Ok(Answer::Buffered { status, body, .. }) => {
                assert_eq!(status, StatusCode::OK);
                body.unwrap()
            }
            Ok(Answer::Streamed(_)) => panic!("a JSON answer came as a stream"),
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn calls_in_turn_share_one_connection() {
        let (uri, accepted) = upstream(Serve::KeepAlive).await;
        let pool = pool(&uri);
        for i in 0..5 {
            let body = format!("{{\"n\":{i}}}");
            assert_eq!(answer(&pool, &uri, &body).await, body.as_bytes());
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn concurrent_calls_open_more_connections_and_keep_them() {
        let (uri, accepted) = upstream(Serve::KeepAlive).await;
        let pool = pool(&uri);
        let bodies: Vec<String> = (0..4).map(|i| format!("{{\"n\":{i}}}")).collect();
        let answers =
            futures_util::future::join_all(bodies.iter().map(|b| answer(&pool, &uri, b))).await;
        for (a, b) in answers.iter().zip(&bodies) {
            assert_eq!(a, b.as_bytes());
        }
        let opened = accepted.load(Ordering::SeqCst);
        assert!((1..=4).contains(&opened), "{opened}");
        answer(&pool, &uri, "{}").await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            opened,
            "a pooled connection was reused"
        );
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closes_is_not_reused() {
        for serve in [Serve::CloseAfter, Serve::DropAfter] {
            let (uri, accepted) = upstream(serve).await;
            let pool = pool(&uri);
            for i in 0..3 {
                let body = format!("{{\"n\":{i}}}");
                assert_eq!(answer(&pool, &uri, &body).await, body.as_bytes());
                // Give the close time to arrive before the next call.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(accepted.load(Ordering::SeqCst), 3);
        }
    }

    #[tokio::test]
    async fn a_stream_outlives_the_call_that_opened_it() {
        let (uri, _) = upstream(Serve::Stream).await;
        let pool = pool(&uri);
        let Ok(Answer::Streamed(resp)) = pool.send(post(&uri, "{}"), 1024).await else {
            panic!("an SSE answer must come as a stream");
        };
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"data: one\n\ndata: two\n\n");
    }

    #[tokio::test]
    async fn an_answer_over_the_limit_is_an_error_and_the_connection_is_dropped() {
        let (uri, accepted) = upstream(Serve::Large).await;
        let pool = pool(&uri);
        for _ in 0..2 {
            match pool.send(post(&uri, "{}"), 1024).await {
                Ok(Answer::Buffered { body: Err(e), .. }) => {
                    assert!(e.contains("reading the upstream's answer failed"), "{e}")
                }
                _ => panic!("a body over the limit must fail"),
            }
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Uri = format!("http://{}/mcp", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        drop(listener);
        let e = pool(&uri).send(post(&uri, "{}"), 1024).await.err().unwrap();
        assert!(e.contains("onnect"), "{e}");
    }
}
