use serde::{Deserialize, Serialize};

/// The hash that precedes the first record.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// One decision. Field order is the canonical order: the JSON written to the
/// store and hashed is this struct serialised as declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Time-ordered unique id (also the decision id agents see).
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
    /// The MCP method (`tools/call`, `prompts/get`, ...).
    pub method: String,
    /// The tool, prompt or resource.
    pub target: String,
    /// BLAKE3 of the arguments as received, hex.
    pub args_digest: String,
    /// The arguments with detected secrets and personal data masked.
    pub args_redacted: serde_json::Value,
    /// `allow`, `redact`, `hold`, `throttle`, `deny` or `quarantine`.
    pub decision: String,
    /// Rule and policy ids that decided.
    pub rules: Vec<String>,
    /// Why, in words.
    pub reason: String,
    /// Facts the rules used.
    pub facts: serde_json::Value,
    /// Risk before the call.
    pub risk_before: u32,
    /// Risk after the call.
    pub risk_after: u32,
    /// Time the gateway spent deciding, microseconds.
    pub latency_us: u64,
}

impl Record {
    /// The canonical bytes that are stored and hashed.
    pub fn canonical(&self) -> Vec<u8> {
        // Serialising a struct of strings, numbers and JSON values cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The chain step: BLAKE3(previous hash ‖ canonical record).
pub fn chain_hash(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"castellan-audit-v1");
    h.update(prev);
    h.update(canonical);
    *h.finalize().as_bytes()
}
