//! Content on its way to the agent (results, streamed events, pushes)
//! shown to the judge: taint, provenance, redactions, blocks.

use std::time::Instant;

use castellan_judge::{CallKind, Millis, ToolResult, Verdict};
use serde_json::Value;

use super::judged::{Judged, Subject};
use super::{Behaviour, lock, now_ms};
use crate::identity::Principal;

/// What inspecting one message on its way to the agent decided.
#[derive(Debug)]
pub enum Screened {
    /// Nothing to change: relay it as it came.
    Clean,
    /// Values were masked: relay these params instead.
    Redacted(Box<serde_json::value::RawValue>),
    /// The agent must not see it; says which classes, never the values.
    Blocked(String),
}

impl Behaviour {
    /// Whether an agent's answer to an upstream's request (sampling,
    /// elicitation, roots) may go upstream: `Some` says why not (see
    /// `Judge::screen_outbound`). Unreadable JSON is refused.
    pub fn outbound_blocked(&self, raw: &serde_json::value::RawValue) -> Option<String> {
        let Ok(value) = serde_json::from_str::<Value>(raw.get()) else {
            return Some("content that cannot be read".into());
        };
        self.judge().screen_outbound(&value)
    }

    /// Shows a result to the judge (taint, provenance, redactions) and
    /// masks what the agent may not see. `Some` says which classes block
    /// the whole result: the agent must not get it.
    pub async fn inspect(&self, judged: &Judged, result: &mut Value) -> Option<String> {
        let started = Instant::now();
        let sent = judged.released.get().copied().unwrap_or(judged.decided);
        metrics::histogram!("castellan_upstream_seconds", "upstream" => judged.subject.server.clone())
            .record(started.saturating_duration_since(sent).as_secs_f64());
        let is_error = result
            .get("isError")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let blocked = self
            .observe(judged, result, is_error, "result")
            .await
            .blocked;
        metrics::histogram!("castellan_inspect_seconds").record(started.elapsed().as_secs_f64());
        blocked
    }

    /// Inspects one message streamed to the agent before the result (a log
    /// or progress notification, a server request) like the result itself.
    /// Messages with nothing to act on are only scanned, never parsed.
    pub async fn inspect_event(
        &self,
        judged: &Judged,
        method: &str,
        params: &serde_json::value::RawValue,
    ) -> Screened {
        let redact_all = judged.verdict.decision == castellan_judge::Decision::Redact;
        if !self.needs_inspection(params, redact_all) {
            return Screened::Clean;
        }
        self.inspect_params(judged, method, params).await
    }

    /// The judge's raw pre-screen: whether `params` may hold anything to
    /// find (clean ones are relayed without being parsed).
    fn needs_inspection(&self, params: &serde_json::value::RawValue, redact_all: bool) -> bool {
        match self.judge.read() {
            Ok(j) => j.needs_inspection(params.get(), redact_all),
            Err(p) => p.into_inner().needs_inspection(params.get(), redact_all),
        }
    }

    /// Parses, shows to the judge and masks params the pre-screen flagged.
    async fn inspect_params(
        &self,
        judged: &Judged,
        method: &str,
        params: &serde_json::value::RawValue,
    ) -> Screened {
        let Ok(mut value) = serde_json::from_str::<Value>(params.get()) else {
            return Screened::Blocked("content that cannot be inspected".into());
        };
        let seen = self.observe(judged, &mut value, false, method).await;
        match (seen.blocked, seen.redacted) {
            (Some(why), _) => Screened::Blocked(why),
            (None, true) => Screened::Redacted(castellan_protocol::jsonrpc::to_raw(&value)),
            (None, false) => Screened::Clean,
        }
    }

    /// Inspects a message an upstream pushes outside any call (on the
    /// agent's standalone stream: log messages, server requests), in the
    /// agent's behavioural session `session`, as a result of `server`
    /// whose tool is the message's method. Findings and signals label the
    /// session like any result and are written as a `<id>.result` audit
    /// record of their own.
    pub async fn inspect_push(
        &self,
        principal: &Principal,
        session: &str,
        server: &str,
        method: &str,
        params: &serde_json::value::RawValue,
    ) -> Screened {
        if !self.needs_inspection(params, false) {
            return Screened::Clean;
        }
        let now = now_ms();
        // Nothing was judged: the push is shown to the judge as the result
        // of an allowed call to its method.
        let judged = Judged::new(
            self.next_id(now),
            Subject::new(
                principal,
                session,
                server,
                method,
                CallKind::CallTool,
                Value::Null,
                None,
            ),
            Verdict::allow(),
        );
        let screened = self.inspect_params(&judged, method, params).await;
        self.report_result(&judged);
        screened
    }

    /// Shows content on its way to the agent to the judge, masks what must
    /// be masked and notes the findings for the call's result record.
    async fn observe(
        &self,
        judged: &Judged,
        value: &mut Value,
        is_error: bool,
        origin: &str,
    ) -> Seen {
        let judge = self.judge();
        let now = Millis(now_ms());
        // Scanned outside the state lock; only recording takes it.
        let scanned = judge.scan_result(
            &judged.subject.call(),
            &judged.verdict,
            &ToolResult { value, is_error },
        );
        let rv = match self
            .with_state(&judged.subject, |state| {
                judge.observe_scanned(state, scanned, now)
            })
            .await
        {
            Ok(rv) => rv,
            // Content the judge could not record must not reach the agent.
            Err(e) => {
                tracing::error!(decision_id = %judged.id, origin, error = %e, "content kept from the agent: its inspection could not be recorded");
                return Seen {
                    blocked: Some("content that cannot be inspected".into()),
                    redacted: false,
                };
            }
        };
        if let Some(phrase) = rv.injection {
            tracing::warn!(decision_id = %judged.id, agent = %judged.subject.agent.as_str(), tool = %judged.subject.tool, origin, phrase, "content carries instructions aimed at the agent");
        }
        let blocked = rv.blocked.then(|| {
            rv.uninspectable
                .clone()
                .unwrap_or_else(|| blocked_classes(&rv.findings))
        });
        if let Some(why) = &blocked {
            tracing::warn!(decision_id = %judged.id, agent = %judged.subject.agent.as_str(), tool = %judged.subject.tool, origin, classes = %why, "content kept from the agent");
        }
        let redacted = !rv.redactions.is_empty();
        if redacted || blocked.is_some() || !rv.findings.is_empty() || !rv.signals.is_empty() {
            lock(&judged.report).note(origin, &rv);
        }
        redact(value, rv.redactions);
        Seen { blocked, redacted }
    }
}

/// What [`Behaviour::observe`] did to one message.
struct Seen {
    blocked: Option<String>,
    redacted: bool,
}

/// The classes (and detectors) whose action is `block`, in words: what the
/// agent and the operator are told, never the values.
fn blocked_classes(findings: &[castellan_judge::ContentFinding]) -> String {
    let mut named: Vec<String> = findings
        .iter()
        .filter(|f| f.action == castellan_judge::ContentAction::Block)
        .map(|f| format!("{} (detector `{}`)", f.kind.as_str(), f.detector))
        .collect();
    named.sort();
    named.dedup();
    if named.is_empty() {
        "content the policy blocks".into()
    } else {
        named.join(", ")
    }
}

/// Masks each redaction's byte range in its string, from the end of each
/// string so earlier ranges stay valid; the JSON stays valid.
fn redact(value: &mut Value, mut redactions: Vec<castellan_judge::Redaction>) {
    redactions.sort_by(|a, b| (a.pointer.as_str(), b.start).cmp(&(b.pointer.as_str(), a.start)));
    for r in redactions {
        let target = if r.pointer.is_empty() {
            Some(&mut *value)
        } else {
            value.pointer_mut(&r.pointer)
        };
        if let Some(Value::String(s)) = target
            && r.start <= r.end
            && r.end <= s.len()
            && s.is_char_boundary(r.start)
            && s.is_char_boundary(r.end)
        {
            s.replace_range(r.start..r.end, &format!("[redacted {}]", r.kind.as_str()));
        }
    }
}
