//! The inspection budget: content the detectors cannot read in full (too
//! large, or nested deeper than the walk goes) is never passed as clean;
//! it is handled under the operator's `inspection.uninspectable` setting.

use serde_json::Value;

use crate::fingerprint::MAX_DEPTH;
use crate::rules::Inspection;

/// Why content cannot be inspected, in words for the agent and the
/// operator (never the content).
pub(crate) fn uninspectable(v: &Value, limits: &Inspection) -> Option<String> {
    let mut bytes = 0usize;
    match measure(v, 0, &mut bytes, limits.max_bytes) {
        Ok(()) => None,
        Err(Over::Depth) => Some(format!(
            "content nested deeper than {MAX_DEPTH} levels, which cannot be inspected"
        )),
        Err(Over::Bytes) => Some(format!(
            "content larger than the inspection budget of {} bytes, which cannot be inspected",
            limits.max_bytes
        )),
    }
}

enum Over {
    Depth,
    Bytes,
}

/// Adds the bytes of every string and key (what the detectors read) to
/// `bytes`; stops at the first limit passed.
fn measure(v: &Value, depth: usize, bytes: &mut usize, max: usize) -> Result<(), Over> {
    if depth > MAX_DEPTH {
        return Err(Over::Depth);
    }
    let mut add = |n: usize| {
        *bytes = bytes.saturating_add(n);
        if *bytes > max {
            Err(Over::Bytes)
        } else {
            Ok(())
        }
    };
    match v {
        Value::String(s) => add(s.len()),
        Value::Array(a) => a.iter().try_for_each(|x| measure(x, depth + 1, bytes, max)),
        Value::Object(o) => o.iter().try_for_each(|(k, x)| {
            *bytes = bytes.saturating_add(k.len());
            measure(x, depth + 1, bytes, max)
        }),
        Value::Number(_) | Value::Bool(_) | Value::Null => Ok(()),
    }
}

impl super::Judge {
    /// What the content policy says about content an agent sends an
    /// upstream outside any call (its answers to sampling, elicitation and
    /// roots requests): `Some` says why it must not go (a class whose
    /// action is `block`, named with its detector, never the value; or
    /// content beyond the inspection budget under `uninspectable: block`).
    pub fn screen_outbound(&self, value: &Value) -> Option<String> {
        let settings = &self.rules.settings;
        if let Some(why) = uninspectable(value, &settings.inspection) {
            return (settings.inspection.uninspectable == crate::rules::Uninspectable::Block)
                .then_some(why);
        }
        let mut found = Vec::new();
        let mut named: Vec<String> = Vec::new();
        crate::fingerprint::walk(value, 0, &mut |s| {
            found.clear();
            self.detectors.scan(s, &mut found);
            for f in &found {
                if self.detectors.action(f, &settings.content)
                    == crate::detect::ContentAction::Block
                {
                    named.push(format!(
                        "{} (detector `{}`)",
                        f.kind.as_str(),
                        self.detectors.detector_name(f.detector)
                    ));
                }
            }
        });
        named.sort();
        named.dedup();
        (!named.is_empty()).then(|| named.join(", "))
    }
}
