//! Who is calling, proven on every request: API keys (stored as SHA-256
//! digests, compared in constant time) and JWT bearer tokens (JWKS from a
//! file or a URL, refreshed when an unknown `kid` appears; issuer, audience,
//! expiry, not-before and scopes checked; only asymmetric algorithms, so
//! `alg: none` and HMAC-with-a-public-key confusion cannot happen), and
//! TLS client certificates (see [`crate::tls`]).
//!
//! A verified JWT is remembered by its SHA-256 digest until it expires, and
//! at most [`VERIFIED_FOR`], so an agent's every request costs a hash and a
//! lookup rather than a signature check; a JWKS refresh and a reload forget
//! them all.
//!
//! The agent's credential is never forwarded upstream: upstream requests are
//! built fresh with only the headers configured for that upstream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use castellan_config::{Auth, JwksSource, JwtIntent};
use http::HeaderMap;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::tls::{CertAgents, CertIdentity};

/// An authenticated agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The agent's id.
    pub agent: Arc<str>,
    /// The user the agent acts for, when the credential says so.
    pub user: Option<Arc<str>>,
    /// Attributes the operator declared or the token carried.
    pub attributes: Arc<[(String, String)]>,
    /// How it authenticated: `api_key`, `jwt`, `mtls` or `anonymous`.
    pub method: &'static str,
    /// The operator trusts this credential's client to pass the user's own
    /// request (`_meta["io.castellan/intent"]`); intent from any other is
    /// ignored for judgement, alerted and recorded.
    pub trusted_intent: bool,
}

impl Principal {
    fn anonymous() -> Self {
        Principal {
            agent: "anonymous".into(),
            user: None,
            attributes: Arc::new([]),
            method: "anonymous",
            trusted_intent: false,
        }
    }
}

/// Why a request was not authenticated. Messages are precise for the agent
/// and never echo the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential at all.
    #[error("authentication required: send `Authorization: Bearer <token>`")]
    Missing,
    /// A credential that is not valid.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A valid token without the scopes this gateway requires.
    #[error("insufficient scope: the token lacks {0}")]
    InsufficientScope(String),
}

#[derive(Debug)]
struct KeyEntry {
    digest: [u8; 32],
    principal: Principal,
    revoked: bool,
}

/// Checks credentials.
#[derive(Debug)]
pub struct Authenticator {
    anonymous: bool,
    keys: HashMap<[u8; 32], KeyEntry>,
    jwt: Option<JwtVerifier>,
    /// Agents an API key or a listed certificate names: a JWT naming one
    /// of them is refused, so an identity provider's subject cannot take
    /// over another credential's agent (its sessions, state and policy).
    reserved: std::collections::HashSet<Arc<str>>,
    certs: Option<CertAgents>,
    /// The key generated at start (agent, digest), kept across reloads.
    generated: Option<(Arc<str>, [u8; 32])>,
    /// Scopes announced in the protected resource metadata.
    pub scopes: Vec<String>,
    /// Authorization servers announced in the protected resource metadata.
    pub issuers: Vec<String>,
}

/// SHA-256 of a key.
pub fn digest(key: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A fresh random API key (`cst_` and 256 random bits, hex).
pub fn generate_key() -> Option<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).ok()?;
    Some(format!(
        "cst_{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

impl Authenticator {
    /// Builds the checker; `generated` is the key made at start, if any.
    pub async fn new(auth: &Auth, generated: Option<(&str, &str)>) -> Result<Self, String> {
        Self::build(
            auth,
            generated.map(|(agent, key)| (agent.into(), digest(key))),
        )
        .await
    }

    /// Builds the checker for a reloaded configuration; the key generated
    /// at start stays valid while the configuration still asks for one.
    pub async fn reloaded(&self, auth: &Auth) -> Result<Self, String> {
        let generated = self.generated.clone().filter(|_| auth.generate_key);
        Self::build(auth, generated).await
    }

    async fn build(auth: &Auth, generated: Option<(Arc<str>, [u8; 32])>) -> Result<Self, String> {
        // One crypto backend for JWTs, chosen explicitly (an error means one
        // is installed already).
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let mut keys = HashMap::new();
        let entries = auth.api_keys.iter().map(|k| {
            (
                k.sha256,
                k.agent.as_str(),
                k.user.as_deref(),
                k.attributes.clone(),
                k.revoked,
                k.trusted_intent,
            )
        });
        // The generated key is the local user's own client's (printed to
        // whoever started the gateway), so it speaks for that user.
        let made = generated
            .as_ref()
            .map(|(agent, d)| (*d, &**agent, None, Vec::new(), false, true));
        for (d, agent, user, attributes, revoked, trusted_intent) in entries.chain(made) {
            let principal = Principal {
                agent: agent.into(),
                user: user.map(Into::into),
                attributes: attributes.into(),
                method: "api_key",
                trusted_intent,
            };
            keys.insert(
                d,
                KeyEntry {
                    digest: d,
                    principal,
                    revoked,
                },
            );
        }
        let jwt = match &auth.jwt {
            Some(j) => Some(JwtVerifier::new(j).await?),
            None => None,
        };
        let reserved = keys
            .values()
            .map(|k| k.principal.agent.clone())
            .chain(
                auth.mtls
                    .iter()
                    .flat_map(|m| m.agents.iter().map(|a| Arc::<str>::from(a.agent.as_str()))),
            )
            .collect();
        Ok(Authenticator {
            anonymous: auth.anonymous,
            keys,
            reserved,
            certs: auth.mtls.as_ref().map(CertAgents::new),
            generated,
            scopes: auth
                .jwt
                .as_ref()
                .map(|j| j.required_scopes.clone())
                .unwrap_or_default(),
            issuers: auth
                .jwt
                .as_ref()
                .map(|j| vec![j.issuer.clone()])
                .unwrap_or_default(),
            jwt,
        })
    }

    /// Authenticates one request from its headers and, over mTLS, the
    /// connection's verified client certificate. A bearer token, when
    /// present, is what identifies the agent; a certificate alone does
    /// when there is none.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<&CertIdentity>,
    ) -> Result<Principal, AuthError> {
        let token = match headers.get(http::header::AUTHORIZATION) {
            None => {
                if let (Some(certs), Some(peer)) = (&self.certs, peer) {
                    return certs.principal(peer);
                }
                if self.anonymous {
                    return Ok(Principal::anonymous());
                }
                return Err(AuthError::Missing);
            }
            Some(v) => {
                let v = v.to_str().map_err(|_| {
                    AuthError::Invalid("the Authorization header is not ASCII".into())
                })?;
                let (scheme, token) = v
                    .split_once(' ')
                    .ok_or_else(|| AuthError::Invalid("expected `Bearer <token>`".into()))?;
                if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
                    return Err(AuthError::Invalid("expected `Bearer <token>`".into()));
                }
                token.trim()
            }
        };
        if token.matches('.').count() == 2
            && let Some(jwt) = &self.jwt
        {
            let p = jwt.verify(token).await?;
            // An unlisted certificate's agent is its SPIFFE id: not a
            // name a token may take either.
            if self.reserved.contains(&p.agent)
                || (self.certs.is_some() && p.agent.starts_with("spiffe://"))
            {
                return Err(AuthError::Invalid(format!(
                    "the JWT names agent `{}`, which another credential of this gateway identifies",
                    p.agent
                )));
            }
            return Ok(p);
        }
        let d = digest(token);
        match self.keys.get(&d) {
            // The map found the digest; compare it again in constant time so
            // the check itself leaks nothing about near misses.
            Some(e) if aws_lc_rs::constant_time::verify_slices_are_equal(&e.digest, &d).is_ok() => {
                if e.revoked {
                    Err(AuthError::Invalid("this API key has been revoked".into()))
                } else {
                    Ok(e.principal.clone())
                }
            }
            _ => Err(AuthError::Invalid(
                "unknown API key or malformed token".into(),
            )),
        }
    }
}

/// Verifies JWTs against a key set.
#[derive(Debug)]
struct JwtVerifier {
    cfg: castellan_config::Jwt,
    algorithms: Vec<Algorithm>,
    keys: RwLock<(JwkSet, Option<Instant>)>,
    verified: Mutex<HashMap<[u8; 32], Verified>>,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// A token that verified, and until when that answer stands.
#[derive(Debug)]
struct Verified {
    principal: Principal,
    until: Instant,
}

const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// The longest a verified JWT is trusted without checking its signature
/// again (a key withdrawn from the JWKS is honoured within this time).
pub const VERIFIED_FOR: Duration = Duration::from_secs(30);

/// Most verified tokens remembered; past it, expired ones are dropped and,
/// if that is not enough, all of them.
const MAX_VERIFIED: usize = 10_000;

impl JwtVerifier {
    async fn new(cfg: &castellan_config::Jwt) -> Result<Self, String> {
        let algorithms = cfg
            .algorithms
            .iter()
            .map(|a| {
                a.parse::<Algorithm>()
                    .map_err(|_| format!("unknown JWT algorithm `{a}`"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("no TLS roots for the JWKS URL: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let v = JwtVerifier {
            cfg: cfg.clone(),
            algorithms,
            keys: RwLock::new((JwkSet { keys: Vec::new() }, None)),
            verified: Mutex::new(HashMap::new()),
            client: Client::builder(TokioExecutor::new()).build(https),
        };
        match &cfg.jwks {
            JwksSource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read JWKS file `{path}`: {e}"))?;
                let set: JwkSet = serde_json::from_str(&text)
                    .map_err(|e| format!("JWKS file `{path}` is not a JWK set: {e}"))?;
                v.store(set);
            }
            JwksSource::Url(url) => {
                // A JWKS endpoint that is down at start is not fatal: tokens
                // fail closed until it answers.
                if let Err(e) = v.refresh(url).await {
                    tracing::warn!(url, error = %e, "JWKS not loaded yet; JWT bearer tokens are refused until it is");
                }
            }
        }
        Ok(v)
    }

    fn store(&self, set: JwkSet) {
        if let Ok(mut k) = self.keys.write() {
            *k = (set, Some(Instant::now()));
        }
        // Answers given under the old key set do not carry over.
        lock(&self.verified).clear();
    }

    /// Verifies a token, or answers from the tokens verified recently.
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let d = digest(token);
        let now = Instant::now();
        if let Some(v) = lock(&self.verified).get(&d)
            && now < v.until
        {
            return Ok(v.principal.clone());
        }
        let (principal, exp) = self.verify_signed(token).await?;
        let left = exp.saturating_sub(unix_now()).min(VERIFIED_FOR.as_secs());
        if left > 0 {
            let mut cache = lock(&self.verified);
            if cache.len() >= MAX_VERIFIED {
                cache.retain(|_, v| now < v.until);
                if cache.len() >= MAX_VERIFIED {
                    cache.clear();
                }
            }
            cache.insert(
                d,
                Verified {
                    principal: principal.clone(),
                    until: now + Duration::from_secs(left),
                },
            );
        }
        Ok(principal)
    }

    async fn refresh(&self, url: &str) -> Result<(), String> {
        let req = http::Request::get(url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(5), self.client.request(req))
            .await
            .map_err(|_| "JWKS fetch timed out".to_string())?
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("JWKS endpoint answered {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| format!("not a JWK set: {e}"))?;
        self.store(set);
        Ok(())
    }

    fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        let keys = self.keys.read().ok()?;
        let jwk = match kid {
            Some(kid) => keys.0.find(kid)?,
            // Without a kid, only an unambiguous key set will do.
            None if keys.0.keys.len() == 1 => &keys.0.keys[0],
            None => return None,
        };
        // A key pinned to an algorithm is used with that algorithm only.
        if let Some(ka) = jwk.common.key_algorithm {
            let pinned: Option<Algorithm> = match ka {
                KeyAlgorithm::RS256 => Some(Algorithm::RS256),
                KeyAlgorithm::RS384 => Some(Algorithm::RS384),
                KeyAlgorithm::RS512 => Some(Algorithm::RS512),
                KeyAlgorithm::PS256 => Some(Algorithm::PS256),
                KeyAlgorithm::PS384 => Some(Algorithm::PS384),
                KeyAlgorithm::PS512 => Some(Algorithm::PS512),
                KeyAlgorithm::ES256 => Some(Algorithm::ES256),
                KeyAlgorithm::ES384 => Some(Algorithm::ES384),
                KeyAlgorithm::EdDSA => Some(Algorithm::EdDSA),
                _ => None,
            };
            if pinned != Some(alg) {
                return None;
            }
        }
        DecodingKey::from_jwk(jwk).ok()
    }

    /// Checks the signature and claims; returns the principal and `exp`.
    async fn verify_signed(&self, token: &str) -> Result<(Principal, u64), AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("malformed JWT".into()))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(AuthError::Invalid(format!(
                "JWT algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let mut key = self.key_for(header.kid.as_deref(), header.alg);
        if key.is_none()
            && let JwksSource::Url(url) = &self.cfg.jwks
        {
            let stale = self
                .keys
                .read()
                .ok()
                .and_then(|k| k.1)
                .is_none_or(|t| t.elapsed() > REFRESH_INTERVAL);
            if stale && self.refresh(url).await.is_ok() {
                key = self.key_for(header.kid.as_deref(), header.alg);
            }
        }
        let key =
            key.ok_or_else(|| AuthError::Invalid("the JWT's signing key is unknown".into()))?;
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.set_issuer(&[self.cfg.issuer.as_str()]);
        v.set_audience(&self.cfg.audiences);
        v.leeway = self.cfg.leeway.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            AuthError::Invalid(
                match e.kind() {
                    K::ExpiredSignature => "the JWT has expired",
                    K::ImmatureSignature => "the JWT is not valid yet (nbf)",
                    K::InvalidIssuer => "the JWT's issuer is not accepted",
                    K::InvalidAudience => "the JWT is not meant for this gateway (aud)",
                    K::InvalidSignature => "the JWT's signature does not verify",
                    K::MissingRequiredClaim(_) => "the JWT lacks exp, iss or aud",
                    _ => "the JWT is not valid",
                }
                .into(),
            )
        })?;
        let claims = data.claims;
        let missing: Vec<&str> = self
            .cfg
            .required_scopes
            .iter()
            .map(String::as_str)
            .filter(|s| !has_scope(&claims, s))
            .collect();
        if !missing.is_empty() {
            return Err(AuthError::InsufficientScope(missing.join(" ")));
        }
        let agent = claim(&claims, &self.cfg.agent_claim).ok_or_else(|| {
            AuthError::Invalid(format!(
                "the JWT lacks the `{}` claim naming the agent",
                self.cfg.agent_claim
            ))
        })?;
        let user = self
            .cfg
            .user_claim
            .as_deref()
            .and_then(|c| claim(&claims, c));
        let attributes: Vec<(String, String)> = self
            .cfg
            .attribute_claims
            .iter()
            .filter_map(|c| claim(&claims, c).map(|v| (c.clone(), v)))
            .collect();
        // `exp` is required above, so it is present and numeric here.
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let trusted_intent = match &self.cfg.trusted_intent {
            JwtIntent::Never => false,
            JwtIntent::Always => true,
            JwtIntent::WithScope(s) => has_scope(&claims, s),
        };
        Ok((
            Principal {
                agent: agent.into(),
                user: user.map(Into::into),
                attributes: attributes.into(),
                method: "jwt",
                trusted_intent,
            },
            exp,
        ))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A claim by dotted path, as a string.
fn claim(claims: &Value, path: &str) -> Option<String> {
    let mut v = claims;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn has_scope(claims: &Value, scope: &str) -> bool {
    let in_str = |v: &Value| v.as_str().is_some_and(|s| s.split(' ').any(|x| x == scope));
    claims.get("scope").is_some_and(in_str)
        || claims.get("scp").is_some_and(|v| {
            in_str(v)
                || v.as_array()
                    .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(scope)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_read_by_dotted_path_and_scopes_from_either_claim() {
        let c = serde_json::json!({"sub": "bot", "act": {"sub": "alice"}, "scope": "mcp read", "scp": ["admin"]});
        assert_eq!(claim(&c, "act.sub").as_deref(), Some("alice"));
        assert_eq!(claim(&c, "nope"), None);
        assert!(has_scope(&c, "mcp"));
        assert!(has_scope(&c, "admin"));
        assert!(!has_scope(&c, "write"));
    }

    #[test]
    fn generated_keys_are_long_and_distinct() {
        let a = generate_key().expect("randomness");
        let b = generate_key().expect("randomness");
        assert!(a.starts_with("cst_") && a.len() == 68);
        assert_ne!(a, b);
        assert_ne!(digest(&a), digest(&b));
    }
}
