//! Judging a call before it goes upstream, and recording the decision.

use std::sync::Arc;
use std::time::Instant;

use castellan_judge::{CallKind, Millis};
use serde_json::Value;

use super::judged::{Judged, SentIntent, Subject};
use super::record::shape_of;
use super::{Behaviour, META_INTENT, UNTRUSTED_INTENT, now_ms};
use crate::identity::Principal;

impl Behaviour {
    /// Judges one call before it goes upstream and records the decision.
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &self,
        principal: &Principal,
        session: &str,
        server: &str,
        tool: &str,
        kind: CallKind,
        args: Value,
        intent: Option<String>,
    ) -> Arc<Judged> {
        // Only a credential trusted to speak for the user may whitelist
        // what the user asked for; anyone else's claim is noted, not used.
        let intent_sent = intent.as_deref().map(|i| SentIntent {
            trusted: principal.trusted_intent,
            digest: blake3::hash(i.as_bytes()).to_hex().as_str().to_owned(),
        });
        let intent = intent.filter(|_| principal.trusted_intent);
        let mut subject = Subject::new(principal, session, server, tool, kind, args, intent);
        subject.intent_sent = intent_sent;
        self.decide_subject(principal, session, subject)
    }

    /// Judges a `completion/complete` as the prompt (`kind` `GetPrompt`)
    /// or resource (`ReadResource`) `target` it completes: the same policy
    /// resource, rules and inspection, recorded under its own method.
    pub fn decide_completion(
        &self,
        principal: &Principal,
        session: &str,
        server: &str,
        target: &str,
        kind: CallKind,
        args: Value,
    ) -> Arc<Judged> {
        let mut subject = Subject::new(principal, session, server, target, kind, args, None);
        subject.method = Some("completion/complete");
        self.decide_subject(principal, session, subject)
    }

    pub(super) fn decide_subject(
        &self,
        principal: &Principal,
        session: &str,
        subject: Subject,
    ) -> Arc<Judged> {
        let started = Instant::now();
        let now = now_ms();
        let judge = self.judge();
        // Detectors and fingerprints need no state: outside the lock, so
        // other agents' calls are judged meanwhile.
        let call = subject.call();
        let scanned = judge.scan_call(&call);
        let verdict = self.with_state(&subject, |state| {
            judge.judge_scanned(state, scanned, Millis(now))
        });
        let judged = Judged::new(self.next_id(now), subject, verdict);
        let (server, tool) = (judged.subject.server.as_str(), judged.subject.tool.as_str());
        let elapsed = started.elapsed();
        let latency = elapsed.as_micros() as u64;
        metrics::histogram!("castellan_judge_seconds").record(elapsed.as_secs_f64());
        metrics::counter!("castellan_decisions_total", "decision" => judged.verdict.decision.as_str(), "upstream" => judged.subject.server.clone(), "tool" => self.tool_label(server, tool)).increment(1);
        for r in &judged.verdict.reasons {
            metrics::counter!("castellan_rule_firings_total", "rule" => r.rule.as_str().to_owned())
                .increment(1);
        }
        let mut flagged = false;
        if judged.verdict.alert || !judged.verdict.decision.forwards() {
            tracing::warn!(decision_id = %judged.id, agent = %principal.agent, tool, decision = judged.verdict.decision.as_str(), rules = ?judged.verdict.rule_ids(), reason = %judged.verdict.summary(), "call flagged");
            flagged = true;
        }
        let untrusted_intent = judged
            .subject
            .intent_sent
            .as_ref()
            .is_some_and(|i| !i.trusted);
        if untrusted_intent {
            tracing::warn!(decision_id = %judged.id, agent = %principal.agent, method = principal.method, tool, "intent ignored: this credential is not trusted to speak for the user (`trusted_intent` is not set for it)");
        }
        crate::telemetry::record_decision(&judged, &principal.agent, server, tool);
        self.note(&judged, session, now);
        let record = self.to_record(&judged, now, latency, shape_of(&judged.subject.args));
        if flagged || untrusted_intent {
            let mut alert = crate::alerts::Alert::from(&record);
            if untrusted_intent {
                alert.rules.push(UNTRUSTED_INTENT.into());
                alert.reason = format!(
                    "the agent sent `_meta[\"{META_INTENT}\"]` from a credential not trusted to speak for the user; it was ignored{}",
                    if record.reason.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", record.reason)
                    }
                );
            }
            self.alerts.raise(alert);
        }
        self.append(record);
        Arc::new(judged)
    }

    /// The `tool` metrics label: the tool's name if the upstream listed it
    /// and it is among the first [`METRIC_TOOLS`], else `other`.
    pub(super) fn tool_label(&self, server: &str, tool: &str) -> String {
        let known = match self.metric_tools.read() {
            Ok(m) => m.contains(&format!("{server}/{tool}")),
            Err(_) => false,
        };
        if known {
            tool.to_owned()
        } else {
            "other".into()
        }
    }
}
