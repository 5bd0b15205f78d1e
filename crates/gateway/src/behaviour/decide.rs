//! Judging a call before it goes upstream: detectors and fingerprints
//! outside the state, then the one update of the call's state.

use std::sync::Arc;
use std::time::Instant;

use castellan_judge::verdict::Origin;
use castellan_judge::{Action, CallKind, Decision, Millis, Reason, RuleId, Verdict};
use serde_json::Value;

use super::judged::{Judged, SentIntent, Subject};
use super::store::StoreError;
use super::{Behaviour, now_ms};
use crate::identity::Principal;

/// The rule id of a refusal because the behavioural state was unavailable.
pub const STATE_UNAVAILABLE: &str = "state-unavailable";
/// The rule of a call refused because its decision could not be recorded
/// (strict audit log unreachable, or its spool full).
pub const AUDIT_UNAVAILABLE: &str = "audit-unavailable";

impl Behaviour {
    /// Judges one call before it goes upstream and records the decision.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide(
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
        self.decide_subject(principal, session, subject).await
    }

    /// Judges a `completion/complete` as the prompt (`kind` `GetPrompt`)
    /// or resource (`ReadResource`) `target` it completes: the same policy
    /// resource, rules and inspection, recorded under its own method.
    pub async fn decide_completion(
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
        self.decide_subject(principal, session, subject).await
    }

    async fn decide_subject(
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
        let verdict = self
            .with_state(&subject, |state| {
                judge.judge_scanned(state, scanned, Millis(now))
            })
            .await
            .unwrap_or_else(|e| unavailable(&e));
        let mut judged = Judged::new(self.next_id(now), subject, verdict);
        let latency = started.elapsed();
        if let Err(e) = self.record_decision(&judged, principal, session, now, latency)
            && judged.verdict.decision.forwards()
        {
            // A decision nobody can audit is not carried out.
            judged.verdict = refusal(AUDIT_UNAVAILABLE, e.to_string());
        }
        Arc::new(judged)
    }
}

/// The refusal of a call whose state could not be read or written: the
/// judge cannot decide without it, so the call fails closed.
fn unavailable(e: &StoreError) -> Verdict {
    refusal(STATE_UNAVAILABLE, e.to_string())
}

fn refusal(rule: &str, message: String) -> Verdict {
    Verdict {
        decision: Decision::Deny,
        reasons: vec![Reason {
            rule: RuleId::new(rule),
            origin: Origin::Rule,
            action: Action::Deny,
            message,
            facts: Vec::new(),
        }],
        ..Verdict::allow()
    }
}
