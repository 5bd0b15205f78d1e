//! A JWT identity provider for tests: an ES256 key, its JWKS file, and
//! tokens signed with it.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The issuer the tests' tokens name.
pub const ISSUER: &str = "https://idp.example.test";

pub struct Idp {
    pkcs8: Vec<u8>,
    /// The JWKS file (one key, `kid` `k1`).
    pub jwks_path: std::path::PathBuf,
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Idp {
    pub fn new() -> Idp {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("keygen");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("pair");
        let point = pair.public_key().as_ref();
        let (x, y) = (&point[1..33], &point[33..65]);
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": B64.encode(x), "y": B64.encode(y), "kid": "k1", "alg": "ES256", "use": "sig"}]});
        let jwks_path = super::scratch("idp").join("jwks.json");
        std::fs::write(&jwks_path, jwks.to_string()).expect("jwks");
        Idp {
            pkcs8: pkcs8.as_ref().to_vec(),
            jwks_path,
        }
    }

    /// The `auth.jwt` lines for this IdP (audience `castellan`, ES256),
    /// followed by `more` (further `jwt` keys, or other `auth` entries).
    pub fn auth(&self, more: &str) -> String {
        format!(
            "auth:\n  jwt:\n    issuer: {ISSUER}\n    audiences: [castellan]\n    jwks_file: {}\n    algorithms: [ES256]\n{more}",
            self.jwks_path.display()
        )
    }

    /// A token with `claims`, signed with key `kid`.
    pub fn token(&self, kid: &str, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, claims, &EncodingKey::from_ec_der(&self.pkcs8)).expect("sign")
    }
}
