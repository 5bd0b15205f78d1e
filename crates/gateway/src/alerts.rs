//! Alerts: every refused or held call, and every call a rule flags, becomes
//! an [`Alert`] kept in a bounded in-memory ring (for `GET /alerts`) and
//! handed to its destinations (standard output, webhooks). Delivery runs
//! off the request path: each destination has a bounded queue; when it is
//! full the alert is dropped for that destination and counted
//! (`castellan_alerts_dropped_total`), so a slow receiver never slows a call.
//! Webhooks are retried with exponential back-off.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use castellan_config::{AlertsConfig, Webhook};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::sync::mpsc;

impl From<&castellan_audit::Record> for Alert {
    fn from(r: &castellan_audit::Record) -> Alert {
        Alert {
            id: r.id.clone(),
            at_ms: r.at_ms,
            agent: r.agent.clone(),
            user: r.user.clone(),
            session: r.session.clone(),
            upstream: r.upstream.clone(),
            tool: r.target.clone(),
            decision: r.decision.clone(),
            rules: r.rules.clone(),
            reason: r.reason.clone(),
            risk: r.risk_after,
            findings: r.facts["findings"].as_array().cloned().unwrap_or_default(),
            signals: r.facts["signals"].as_array().cloned().unwrap_or_default(),
        }
    }
}

/// One alert: enough to act on, and the decision id for the full story in
/// the audit log.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// The decision id (the audit record id).
    pub id: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The agent.
    pub agent: String,
    /// The user it acted for, if known.
    pub user: Option<String>,
    /// The behavioural session.
    pub session: String,
    /// The upstream server.
    pub upstream: String,
    /// The tool, prompt or resource.
    pub tool: String,
    /// The decision.
    pub decision: String,
    /// Rule and policy ids that fired.
    pub rules: Vec<String>,
    /// Why, in words.
    pub reason: String,
    /// Risk after the call.
    pub risk: u32,
    /// For a result: detector findings (detector, class, JSON path, span,
    /// action; never the value).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<serde_json::Value>,
    /// For a result: injection signals (kind, path, span).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<serde_json::Value>,
}

#[derive(Debug)]
struct Destination {
    name: String,
    decisions: Vec<String>,
    tx: mpsc::Sender<Arc<Alert>>,
}

/// The alert ring and the destinations' queues.
#[derive(Debug)]
pub struct Alerts {
    ring: Mutex<VecDeque<Arc<Alert>>>,
    keep: usize,
    destinations: Vec<Destination>,
}

impl Default for Alerts {
    /// A ring of 1,000 alerts and no destination.
    fn default() -> Self {
        Alerts {
            ring: Mutex::new(VecDeque::new()),
            keep: 1000,
            destinations: Vec::new(),
        }
    }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

impl Alerts {
    /// Starts the delivery tasks the configuration describes (call inside a
    /// Tokio runtime).
    pub fn start(cfg: &AlertsConfig) -> Result<Alerts, String> {
        let mut destinations = Vec::new();
        if cfg.stdout {
            let (tx, rx) = mpsc::channel(cfg.queue);
            tokio::spawn(to_stdout(rx));
            destinations.push(Destination {
                name: "stdout".into(),
                decisions: Vec::new(),
                tx,
            });
        }
        if !cfg.webhooks.is_empty() {
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_native_roots()
                .map_err(|e| format!("no TLS roots for alert webhooks: {e}"))?
                .https_or_http()
                .enable_http1()
                .build();
            let client: HttpsClient = Client::builder(TokioExecutor::new()).build(https);
            for w in &cfg.webhooks {
                let uri: http::Uri = w
                    .url
                    .parse()
                    .map_err(|e| format!("alert webhook `{}`: {e}", w.url))?;
                for (k, v) in &w.headers {
                    http::HeaderName::try_from(k.as_str())
                        .map_err(|_| format!("alert webhook `{}`: bad header name `{k}`", w.url))?;
                    http::HeaderValue::try_from(v.as_str()).map_err(|_| {
                        format!("alert webhook `{}`: bad value for header `{k}`", w.url)
                    })?;
                }
                let (tx, rx) = mpsc::channel(cfg.queue);
                tokio::spawn(to_webhook(client.clone(), uri, w.clone(), rx));
                destinations.push(Destination {
                    name: w.url.clone(),
                    decisions: w.decisions.clone(),
                    tx,
                });
            }
        }
        Ok(Alerts {
            ring: Mutex::new(VecDeque::with_capacity(cfg.keep.min(1024))),
            keep: cfg.keep,
            destinations,
        })
    }

    /// Records an alert and queues it for each destination; never waits.
    pub fn raise(&self, alert: Alert) {
        let alert = Arc::new(alert);
        metrics::counter!("castellan_alerts_total", "decision" => alert.decision.clone())
            .increment(1);
        {
            let mut ring = match self.ring.lock() {
                Ok(r) => r,
                Err(p) => p.into_inner(),
            };
            if self.keep > 0 {
                if ring.len() >= self.keep {
                    ring.pop_front();
                }
                ring.push_back(alert.clone());
            }
        }
        for d in &self.destinations {
            if !d.decisions.is_empty() && !d.decisions.contains(&alert.decision) {
                continue;
            }
            if d.tx.try_send(alert.clone()).is_err() {
                metrics::counter!("castellan_alerts_dropped_total", "destination" => d.name.clone())
                    .increment(1);
            }
        }
    }

    /// The newest alerts, newest first, at most `limit`.
    pub fn recent(&self, limit: usize) -> Vec<Arc<Alert>> {
        let ring = match self.ring.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        ring.iter().rev().take(limit).cloned().collect()
    }
}

async fn to_stdout(mut rx: mpsc::Receiver<Arc<Alert>>) {
    use std::io::Write as _;
    while let Some(a) = rx.recv().await {
        let line = serde_json::json!({"type": "castellan.alert", "alert": &*a});
        // A closed stdout must not bring the gateway down.
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}

/// `sha256=<hex>` HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, body);
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for b in tag.as_ref() {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// The wait before retry `n` (1-based): `backoff · 2^(n-1)`, capped.
pub fn backoff(w: &Webhook, retry: u32) -> Duration {
    w.backoff
        .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
        .min(w.max_backoff)
}

async fn to_webhook(
    client: HttpsClient,
    uri: http::Uri,
    w: Webhook,
    mut rx: mpsc::Receiver<Arc<Alert>>,
) {
    while let Some(a) = rx.recv().await {
        let body = Bytes::from(serde_json::to_vec(&*a).unwrap_or_default());
        let sig = w.secret.as_deref().map(|s| signature(s, &body));
        let mut delivered = false;
        for attempt in 1..=w.max_attempts {
            if attempt > 1 {
                tokio::time::sleep(backoff(&w, attempt - 1)).await;
            }
            let mut b = http::Request::post(uri.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header("x-castellan-alert-id", a.id.as_str())
                .header("x-castellan-delivery-attempt", attempt);
            if let Some(s) = &sig {
                b = b.header("x-castellan-signature", s.as_str());
            }
            for (k, v) in &w.headers {
                b = b.header(k.as_str(), v.as_str());
            }
            let Ok(req) = b.body(Full::new(body.clone())) else {
                break;
            };
            let outcome = tokio::time::timeout(w.timeout, async {
                let resp = client.request(req).await.map_err(|e| e.to_string())?;
                let status = resp.status();
                let _ = resp.into_body().collect().await;
                Ok::<_, String>(status)
            })
            .await;
            match outcome {
                Ok(Ok(s)) if s.is_success() => {
                    delivered = true;
                    break;
                }
                Ok(Ok(s)) => {
                    tracing::warn!(webhook = %w.url, decision_id = %a.id, attempt, status = s.as_u16(), "alert webhook refused the delivery")
                }
                Ok(Err(e)) => {
                    tracing::warn!(webhook = %w.url, decision_id = %a.id, attempt, error = %e, "alert webhook unreachable")
                }
                Err(_) => {
                    tracing::warn!(webhook = %w.url, decision_id = %a.id, attempt, "alert webhook timed out")
                }
            }
            metrics::counter!("castellan_alert_delivery_retries_total", "destination" => w.url.clone()).increment(1);
        }
        if delivered {
            metrics::counter!("castellan_alerts_delivered_total", "destination" => w.url.clone())
                .increment(1);
        } else {
            metrics::counter!("castellan_alerts_failed_total", "destination" => w.url.clone())
                .increment(1);
            tracing::error!(webhook = %w.url, decision_id = %a.id, attempts = w.max_attempts, "alert not delivered; giving up");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook() -> Webhook {
        Webhook {
            url: "http://127.0.0.1:9/".into(),
            secret: None,
            headers: Vec::new(),
            decisions: Vec::new(),
            max_attempts: 5,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn back_off_doubles_and_is_capped() {
        let w = hook();
        assert_eq!(backoff(&w, 1), Duration::from_millis(100));
        assert_eq!(backoff(&w, 2), Duration::from_millis(200));
        assert_eq!(backoff(&w, 3), Duration::from_millis(350));
        assert_eq!(backoff(&w, 40), Duration::from_millis(350));
    }

    #[test]
    fn the_signature_is_the_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[tokio::test]
    async fn raising_never_waits_on_a_full_queue_and_the_ring_keeps_the_newest() {
        let (tx, _rx) = mpsc::channel(1);
        let alerts = Alerts {
            ring: Mutex::new(VecDeque::new()),
            keep: 2,
            destinations: vec![Destination {
                name: "test".into(),
                decisions: vec!["deny".into()],
                tx,
            }],
        };
        let a = |id: &str| Alert {
            id: id.into(),
            at_ms: 0,
            agent: "a".into(),
            user: None,
            session: "a/s".into(),
            upstream: "u".into(),
            tool: "t".into(),
            decision: "deny".into(),
            rules: vec![],
            reason: String::new(),
            risk: 0,
            findings: vec![],
            signals: vec![],
        };
        for id in ["1", "2", "3"] {
            alerts.raise(a(id));
        }
        let ids: Vec<String> = alerts.recent(10).iter().map(|a| a.id.clone()).collect();
        assert_eq!(ids, ["3", "2"]);
    }
}
