//! The `alerts` section: where alerts go (standard output, webhooks) and
//! how webhook deliveries are retried.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::duration::Duration;
use crate::error::ConfigError;
use crate::model::{expand_env, find_key_line};

/// Decisions an alert can carry: a call's, or what inspecting its result
/// did (`result_block`: content kept from the agent; `result_redact`,
/// `result_label`: raised when the content carried injection signals).
pub const DECISIONS: &[&str] = &[
    "allow",
    "redact",
    "hold",
    "throttle",
    "deny",
    "quarantine",
    "result_block",
    "result_redact",
    "result_label",
];

/// Where alerts go. An alert is raised for every refused or held call and
/// for every call a rule flags with `alert`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    /// Print each alert as one JSON line on standard output.
    pub stdout: bool,
    /// Alerts waiting per destination; beyond it new alerts are dropped
    /// (and counted), calls never wait.
    pub queue: usize,
    /// Alerts kept in memory for `GET /alerts`.
    pub keep: usize,
    /// Webhook destinations.
    pub webhooks: Vec<Webhook>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            stdout: true,
            queue: 1024,
            keep: 1000,
            webhooks: Vec::new(),
        }
    }
}

/// One webhook destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// `http://` or `https://` URL receiving a JSON POST per alert.
    pub url: String,
    /// HMAC-SHA256 key; the signature goes in `X-Castellan-Signature`.
    pub secret: Option<String>,
    /// Extra headers (e.g. `Authorization`), `${VAR}` expanded.
    pub headers: Vec<(String, String)>,
    /// Decisions this webhook receives (all when empty).
    pub decisions: Vec<String>,
    /// Attempts per alert, the first included.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles each time.
    pub backoff: std::time::Duration,
    /// Longest wait between retries.
    pub max_backoff: std::time::Duration,
    /// Time allowed for one attempt.
    pub timeout: std::time::Duration,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlerts {
    stdout: Option<bool>,
    queue: Option<usize>,
    keep: Option<usize>,
    #[serde(default)]
    webhooks: Vec<RawWebhook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    secret: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    decisions: Vec<String>,
    max_attempts: Option<u32>,
    backoff: Option<Duration>,
    max_backoff: Option<Duration>,
    timeout: Option<Duration>,
}

pub(crate) fn compile(
    raw: Option<RawAlerts>,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    invalid: &dyn Fn(usize, String) -> ConfigError,
) -> Result<AlertsConfig, ConfigError> {
    let raw = raw.unwrap_or_default();
    let d = AlertsConfig::default();
    let section = find_key_line(text, "alerts", None);
    let queue = raw.queue.unwrap_or(d.queue);
    if queue == 0 {
        return Err(invalid(
            find_key_line(text, "queue", None).max(section),
            "`alerts.queue` must be greater than zero".into(),
        ));
    }
    let mut webhooks = Vec::with_capacity(raw.webhooks.len());
    for w in raw.webhooks {
        let line = find_key_line(text, "url", Some(&w.url)).max(section);
        if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
            return Err(invalid(
                line,
                format!(
                    "webhook url `{}` must start with http:// or https://",
                    w.url
                ),
            ));
        }
        if let Some(bad) = w
            .decisions
            .iter()
            .find(|x| !DECISIONS.contains(&x.as_str()))
        {
            return Err(invalid(
                line,
                format!(
                    "webhook `{}`: unknown decision `{bad}`; known: {}",
                    w.url,
                    DECISIONS.join(", ")
                ),
            ));
        }
        let secret = w
            .secret
            .map(|s| expand_env(&s, env))
            .transpose()
            .map_err(|m| invalid(line, format!("webhook `{}` secret: {m}", w.url)))?;
        let mut headers = Vec::with_capacity(w.headers.len());
        for (k, v) in w.headers {
            let v = expand_env(&v, env)
                .map_err(|m| invalid(line, format!("webhook `{}` header `{k}`: {m}", w.url)))?;
            headers.push((k, v));
        }
        let max_attempts = w.max_attempts.unwrap_or(5);
        if max_attempts == 0 {
            return Err(invalid(
                line,
                format!("webhook `{}`: `max_attempts` must be at least 1", w.url),
            ));
        }
        let backoff = w
            .backoff
            .map_or(std::time::Duration::from_millis(500), |d| d.0);
        webhooks.push(Webhook {
            url: w.url,
            secret,
            headers,
            decisions: w.decisions,
            max_attempts,
            backoff,
            max_backoff: w
                .max_backoff
                .map_or(std::time::Duration::from_secs(60), |d| d.0)
                .max(backoff),
            timeout: w.timeout.map_or(std::time::Duration::from_secs(5), |d| d.0),
        });
    }
    Ok(AlertsConfig {
        stdout: raw.stdout.unwrap_or(d.stdout),
        queue,
        keep: raw.keep.unwrap_or(d.keep),
        webhooks,
    })
}
