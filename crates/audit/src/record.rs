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
    /// The canonical bytes that are stored and hashed: serde_json's compact
    /// serialisation of the record (property-tested against
    /// `serde_json::to_vec`), written without serde's per-byte escaping.
    pub fn canonical(&self) -> Vec<u8> {
        // A typical record is 0.5 to 2 KiB: one allocation instead of a
        // series of doublings.
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(b"{\"id\":");
        write_str(&mut out, &self.id);
        out.extend_from_slice(b",\"at_ms\":");
        write_u64(&mut out, self.at_ms);
        out.extend_from_slice(b",\"agent\":");
        write_str(&mut out, &self.agent);
        out.extend_from_slice(b",\"user\":");
        match &self.user {
            Some(u) => write_str(&mut out, u),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"session\":");
        write_str(&mut out, &self.session);
        out.extend_from_slice(b",\"upstream\":");
        write_str(&mut out, &self.upstream);
        out.extend_from_slice(b",\"method\":");
        write_str(&mut out, &self.method);
        out.extend_from_slice(b",\"target\":");
        write_str(&mut out, &self.target);
        out.extend_from_slice(b",\"args_digest\":");
        write_str(&mut out, &self.args_digest);
        out.extend_from_slice(b",\"args_redacted\":");
        write_compact_json(&mut out, &self.args_redacted);
        out.extend_from_slice(b",\"decision\":");
        write_str(&mut out, &self.decision);
        out.extend_from_slice(b",\"rules\":[");
        for (i, rule) in self.rules.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(&mut out, rule);
        }
        out.extend_from_slice(b"],\"reason\":");
        write_str(&mut out, &self.reason);
        out.extend_from_slice(b",\"facts\":");
        write_compact_json(&mut out, &self.facts);
        out.extend_from_slice(b",\"risk_before\":");
        write_u64(&mut out, u64::from(self.risk_before));
        out.extend_from_slice(b",\"risk_after\":");
        write_u64(&mut out, u64::from(self.risk_after));
        out.extend_from_slice(b",\"latency_us\":");
        write_u64(&mut out, self.latency_us);
        out.push(b'}');
        out
    }
}

/// Appends `v` exactly as `serde_json::to_vec` writes it (compact, map
/// entries in the map's order). Strings without a character to escape,
/// nearly all of them, are copied after a word-at-a-time scan instead of
/// serde_json's byte-by-byte escaping; the others, and numbers, are written
/// by serde_json itself.
pub fn write_compact_json(out: &mut Vec<u8>, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            // Writing a number to a `Vec` cannot fail.
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            out.push(b'[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_compact_json(out, item);
            }
            out.push(b']');
        }
        Value::Object(o) => {
            out.push(b'{');
            for (i, (k, item)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_compact_json(out, item);
            }
            out.push(b'}');
        }
    }
}

fn write_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        // Writing a string to a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Whether JSON needs an escape in `bytes`: a quote, a backslash or a
/// control character (below 0x20), the bytes serde_json escapes.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    const LOW_LIMIT: u64 = u64::from_ne_bytes([0x60; 8]);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word);
        // Bit 7 of each byte lane is set where the byte is zero after the
        // xor (the classic has-zero-byte test, exact about whether any
        // is), and, for `low`, clear where the byte is below 0x20 (bit 7
        // cleared first so no lane carries into the next, then adding 0x60
        // reaches bit 7 from 0x20 up; bytes from 0x80 keep their bit 7).
        let q = x ^ QUOTES;
        let b = x ^ BACKSLASHES;
        let quote = q.wrapping_sub(ONES) & !q;
        let backslash = b.wrapping_sub(ONES) & !b;
        let low = (x & !HIGHS).wrapping_add(LOW_LIMIT) | x;
        if (quote | backslash | !low) & HIGHS != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// The chain step: BLAKE3(previous hash ‖ canonical record).
pub fn chain_hash(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"castellan-audit-v1");
    h.update(prev);
    h.update(canonical);
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn text() -> impl Strategy<Value = String> {
        // Quotes, escapes, control and non-ASCII characters included.
        "(\\PC|[\"\\\\\n\u{0}\u{1f}\u{7f}])*"
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("\\PC{0,4}", inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    prop_compose! {
        fn record()(
            id in text(), at_ms in any::<u64>(), agent in text(),
            user in proptest::option::of(text()), session in text(),
            upstream in text(), method in text(), target in text(),
            args_digest in text(), args_redacted in json(), decision in text(),
            rules in prop::collection::vec(text(), 0..3), reason in text(),
            facts in json(), risk_before in any::<u32>(), risk_after in any::<u32>(),
            latency_us in any::<u64>(),
        ) -> Record {
            Record {
                id, at_ms, agent, user, session, upstream, method, target,
                args_digest, args_redacted, decision, rules, reason, facts,
                risk_before, risk_after, latency_us,
            }
        }
    }

    proptest! {
        /// The canonical bytes are serde_json's, as every record written
        /// before this writer was hashed over.
        #[test]
        fn canonical_is_serde_json(r in record()) {
            prop_assert_eq!(r.canonical(), serde_json::to_vec(&r).unwrap_or_default());
        }

        #[test]
        fn compact_json_is_serde_json(v in json()) {
            let mut ours = Vec::new();
            write_compact_json(&mut ours, &v);
            prop_assert_eq!(ours, serde_json::to_vec(&v).unwrap_or_default());
        }

        #[test]
        fn escape_scan_finds_what_serde_json_escapes(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            let naive = bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
            prop_assert_eq!(needs_escape(&bytes), naive);
        }

        /// Long clean runs with one arbitrary byte anywhere: every lane of
        /// the word-at-a-time scan meets every byte value.
        #[test]
        fn escape_scan_finds_one_byte_anywhere(
            clean in prop::collection::vec((0x20u8..0x80).prop_filter("plain", |b| *b != b'"' && *b != b'\\'), 0..40),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut bytes = clean;
            let at = at.index(bytes.len() + 1);
            bytes.insert(at, byte);
            let naive = byte < 0x20 || byte == b'"' || byte == b'\\';
            prop_assert_eq!(needs_escape(&bytes), naive);
        }
    }
}
