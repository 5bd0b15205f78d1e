//! Connection-level defences shared by the agent and admin listeners: the
//! Host and Origin rules against DNS rebinding, a deadline for a
//! connection's first byte, and a cap on concurrent connections per source
//! address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HOST, ORIGIN};
use http::{HeaderMap, StatusCode, Uri, Version};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Which Host and Origin values a listener serves.
#[derive(Debug, Clone, Copy)]
pub struct HostRules<'a> {
    /// The configured listen address (loopback ones serve loopback names).
    pub listen: SocketAddr,
    /// The address actually bound (its IP is a valid Host too).
    pub bound: Option<SocketAddr>,
    /// Host values accepted; empty means "loopback names and the bound
    /// address" on a loopback listener, anything otherwise.
    pub allowed_hosts: &'a [String],
    /// Origin values accepted; requests without Origin are accepted.
    pub allowed_origins: &'a [String],
}

impl HostRules<'_> {
    /// DNS-rebinding protection: a browser page on another site must not
    /// reach a listener on loopback. The request must name exactly one
    /// host (one Host header, or HTTP/2's `:authority`), one we serve
    /// (else 400 or 403); a present Origin must be allowed (else 403).
    pub fn check(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        version: Version,
    ) -> Result<(), (StatusCode, String)> {
        let mut hosts = headers.get_all(HOST).iter();
        let host = match (hosts.next(), hosts.next()) {
            (Some(_), Some(_)) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "the request carries more than one Host header".into(),
                ));
            }
            (Some(h), None) => h.to_str().map_err(|_| {
                (
                    StatusCode::BAD_REQUEST,
                    "the Host header is not ASCII".to_string(),
                )
            })?,
            // HTTP/2 names the host in `:authority`, which hyper keeps in
            // the URI; HTTP/1.1 requires Host.
            (None, _) => match uri.authority() {
                Some(a) if version >= Version::HTTP_2 => a.as_str(),
                _ => {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        "the request has no Host header".into(),
                    ));
                }
            },
        };
        let loopback = self.listen.ip().is_loopback();
        let name = host_name(host);
        let ok = if !self.allowed_hosts.is_empty() {
            self.allowed_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name) || h.eq_ignore_ascii_case(host))
        } else if loopback {
            is_loopback_name(name)
                || self
                    .bound
                    .is_some_and(|b| b.ip().to_string() == name.trim_matches(['[', ']']))
        } else {
            true
        };
        if !ok {
            return Err((
                StatusCode::FORBIDDEN,
                format!("host `{host}` is not served here"),
            ));
        }
        let mut origins = headers.get_all(ORIGIN).iter();
        if let Some(origin) = origins.next() {
            let origin = origin.to_str().unwrap_or("");
            let allowed = origins.next().is_none()
                && (self.allowed_origins.iter().any(|o| o == origin)
                    || (loopback
                        && self.allowed_origins.is_empty()
                        && origin_host(origin).is_some_and(is_loopback_name)));
            if !allowed {
                return Err((
                    StatusCode::FORBIDDEN,
                    format!("origin `{origin}` is not allowed"),
                ));
            }
        }
        Ok(())
    }
}

/// The name part of a `host[:port]` value.
pub fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    })
}

fn origin_host(origin: &str) -> Option<&str> {
    let rest = origin.split_once("://")?.1;
    Some(host_name(rest.split('/').next().unwrap_or(rest)))
}

fn is_loopback_name(name: &str) -> bool {
    let n = name.trim_matches(['[', ']']);
    n.eq_ignore_ascii_case("localhost")
        || n == "::1"
        || n.parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A connection that must send its first byte before a deadline: HTTP
/// servers only time the reading of headers once the request has begun,
/// and deciding between HTTP/1 and HTTP/2 waits for bytes without any
/// limit, so a connection that never speaks would be held forever.
#[derive(Debug)]
pub struct FirstByte<IO> {
    io: IO,
    /// Cleared once a byte has arrived.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<IO> FirstByte<IO> {
    /// Wraps `io`; reads fail with `TimedOut` if nothing arrives in `within`.
    pub fn new(io: IO, within: Duration) -> FirstByte<IO> {
        FirstByte {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for FirstByte<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(deadline) = this.deadline.as_mut() else {
            return polled;
        };
        match polled {
            Poll::Ready(_) if buf.filled().len() > before => this.deadline = None,
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no request byte before the header timeout",
                )));
            }
            _ => {}
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FirstByte<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Open connections per source address, capped.
#[derive(Debug)]
pub struct PerSource {
    cap: usize,
    /// Per address: open connections, and whether the cap was logged since
    /// it was last below it.
    open: Mutex<HashMap<IpAddr, (usize, bool)>>,
    /// The listener's name in log lines (`agent` or `admin`).
    listener: &'static str,
}

/// One open connection; counted until dropped.
#[derive(Debug)]
pub struct SourceSlot {
    from: IpAddr,
    of: Arc<PerSource>,
}

impl PerSource {
    /// At most `cap` connections at once from one address.
    pub fn new(cap: usize, listener: &'static str) -> Arc<PerSource> {
        Arc::new(PerSource {
            cap,
            open: Mutex::new(HashMap::new()),
            listener,
        })
    }

    /// A slot for a connection from `from`, or `None` when that address
    /// already holds `cap` (logged once each time it reaches the cap).
    pub fn admit(self: &Arc<Self>, from: IpAddr) -> Option<SourceSlot> {
        let mut open = lock(&self.open);
        let entry = open.entry(from).or_insert((0, false));
        if entry.0 >= self.cap {
            if !entry.1 {
                entry.1 = true;
                tracing::warn!(source = %from, open = entry.0, cap = self.cap, listener = self.listener, "connection refused: this source address holds as many connections as limits.max_connections_per_source allows; further ones are closed until some end");
            }
            return None;
        }
        entry.0 += 1;
        Some(SourceSlot {
            from,
            of: self.clone(),
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.of.open);
        if let Some(e) = open.get_mut(&self.from) {
            e.0 = e.0.saturating_sub(1);
            if e.0 == 0 {
                open.remove(&self.from);
            } else if e.0 < self.of.cap {
                e.1 = false;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_at_most_cap_slots_and_gets_them_back_as_they_close() {
        let per = PerSource::new(2, "agent");
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let one = per.admit(a).expect("first");
        let _two = per.admit(a).expect("second");
        assert!(per.admit(a).is_none(), "third from the same source");
        assert!(per.admit(b).is_some(), "another source is not affected");
        drop(one);
        assert!(
            per.admit(a).is_some(),
            "a slot comes back when a connection ends"
        );
    }

    fn rules(allowed_hosts: &[String]) -> HostRules<'_> {
        HostRules {
            listen: "127.0.0.1:8080".parse().expect("addr"),
            bound: None,
            allowed_hosts,
            allowed_origins: &[],
        }
    }

    #[test]
    fn one_host_we_serve_is_required() {
        let uri: Uri = "/mcp".parse().expect("uri");
        let r = rules(&[]);
        let mut h = HeaderMap::new();
        assert_eq!(
            r.check(&h, &uri, Version::HTTP_11).map_err(|e| e.0),
            Err(StatusCode::BAD_REQUEST)
        );
        h.append(HOST, "localhost:8080".parse().expect("v"));
        assert!(r.check(&h, &uri, Version::HTTP_11).is_ok());
        h.append(HOST, "evil.example".parse().expect("v"));
        assert_eq!(
            r.check(&h, &uri, Version::HTTP_11).map_err(|e| e.0),
            Err(StatusCode::BAD_REQUEST)
        );
        let mut h = HeaderMap::new();
        h.append(HOST, "evil.example".parse().expect("v"));
        assert_eq!(
            r.check(&h, &uri, Version::HTTP_11).map_err(|e| e.0),
            Err(StatusCode::FORBIDDEN)
        );
        let h2: Uri = "http://localhost:8080/mcp".parse().expect("uri");
        assert!(r.check(&HeaderMap::new(), &h2, Version::HTTP_2).is_ok());
    }
}
