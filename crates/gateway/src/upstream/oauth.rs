//! OAuth 2.0 client credentials for an upstream: the gateway obtains its
//! own access token from the upstream's authorization server, caches it
//! until shortly before it expires, and fetches a new one when the upstream
//! answers 401. The agent's token never travels upstream.

use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use castellan_config::OAuthClient;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::http::HttpsClient;

/// Renew this long before the token's stated expiry.
const EARLY: Duration = Duration::from_secs(30);
/// Largest token response read.
const MAX_RESPONSE: usize = 64 * 1024;

/// A cached access token for one upstream.
#[derive(Debug)]
pub struct TokenSource {
    cfg: OAuthClient,
    form: String,
    basic: HeaderValue,
    cached: Mutex<Option<(HeaderValue, Instant)>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenSource {
    /// Prepares the grant; nothing is fetched until the first request.
    pub fn new(cfg: &OAuthClient) -> Result<TokenSource, String> {
        let mut form = url_form(&[("grant_type", "client_credentials")]);
        if !cfg.scopes.is_empty() {
            form.push('&');
            form.push_str(&url_form(&[("scope", &cfg.scopes.join(" "))]));
        }
        for (k, v) in [("audience", &cfg.audience), ("resource", &cfg.resource)] {
            if let Some(v) = v {
                form.push('&');
                form.push_str(&url_form(&[(k, v)]));
            }
        }
        // RFC 6749 2.3.1: id and secret are form-encoded, then Basic.
        let pair = format!(
            "{}:{}",
            url_form_value(&cfg.client_id),
            url_form_value(&cfg.client_secret)
        );
        let basic = HeaderValue::try_from(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        ))
        .map_err(|_| "oauth client id or secret is not a valid header value".to_string())?;
        Ok(TokenSource {
            cfg: cfg.clone(),
            form,
            basic,
            cached: Mutex::new(None),
        })
    }

    /// The `Authorization` value for the next upstream request.
    pub async fn bearer(
        &self,
        client: &HttpsClient,
        timeout: Duration,
    ) -> Result<HeaderValue, String> {
        let mut cached = self.cached.lock().await;
        if let Some((v, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(v.clone());
        }
        let (value, until) = self.fetch(client, timeout).await?;
        *cached = Some((value.clone(), until));
        Ok(value)
    }

    /// Drops the cached token (the upstream refused it).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(
        &self,
        client: &HttpsClient,
        timeout: Duration,
    ) -> Result<(HeaderValue, Instant), String> {
        let url = &self.cfg.token_url;
        let req = Request::builder()
            .method(Method::POST)
            .uri(url.as_str())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, self.basic.clone())
            .body(Full::new(Bytes::from(self.form.clone())))
            .map_err(|e| format!("oauth token request: {e}"))?;
        let resp = tokio::time::timeout(timeout, client.request(req))
            .await
            .map_err(|_| format!("oauth token endpoint `{url}` timed out"))?
            .map_err(|e| format!("oauth token endpoint `{url}`: {e}"))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| format!("oauth token endpoint `{url}`: {e}"))?
            .to_bytes();
        if !status.is_success() {
            // The error body is the server's (e.g. `invalid_client`), never our secret.
            let detail = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_default();
            return Err(format!(
                "oauth token endpoint `{url}` answered {status} {detail}"
            ));
        }
        let token: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| format!("oauth token endpoint `{url}`: not a token response: {e}"))?;
        if let Some(t) = &token.token_type
            && !t.eq_ignore_ascii_case("bearer")
        {
            return Err(format!(
                "oauth token endpoint `{url}` issued a `{t}` token; only Bearer is supported"
            ));
        }
        let value = HeaderValue::try_from(format!("Bearer {}", token.access_token))
            .map_err(|_| format!("oauth token endpoint `{url}` issued an unusable token"))?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(300));
        let until = Instant::now() + lifetime.saturating_sub(EARLY.min(lifetime / 2));
        tracing::debug!(token_url = %url, expires_in = lifetime.as_secs(), "upstream access token obtained");
        Ok((value, until))
    }
}

fn url_form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", url_form_value(k), url_form_value(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn url_form_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grant_is_form_encoded_and_the_client_authenticates_with_basic() {
        let src = TokenSource::new(&OAuthClient {
            token_url: "https://auth.example/token".into(),
            client_id: "castellan gw".into(),
            client_secret: "s3cr=t&".into(),
            scopes: vec!["mcp:read".into(), "mcp:call".into()],
            audience: Some("https://tools.example".into()),
            resource: None,
        })
        .expect("source");
        assert_eq!(
            src.form,
            "grant_type=client_credentials&scope=mcp%3Aread+mcp%3Acall&audience=https%3A%2F%2Ftools.example"
        );
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(
                src.basic
                    .to_str()
                    .expect("ascii")
                    .trim_start_matches("Basic "),
            )
            .expect("base64");
        assert_eq!(decoded, b"castellan+gw:s3cr%3Dt%26");
    }
}
