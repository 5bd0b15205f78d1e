//! The approval queue: calls held for a human, answered through the
//! admin API or timed out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use castellan_judge::{Millis, Reason};
use serde::Serialize;
use serde_json::Value;

use super::judged::Judged;
use super::{Behaviour, lock, now_ms};

/// A hold's waiter. Dropped while still armed (its agent went away), it
/// leaves the hold listed until its deadline and then times it out.
pub(super) struct Waiting {
    /// Set while the waiter has no answer yet.
    pub(super) id: Option<String>,
    pub(super) held: Arc<Mutex<HashMap<String, Held>>>,
    pub(super) deadline: tokio::time::Instant,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        tracing::info!(decision_id = %id, "the agent disconnected while its call was held; the hold stays until hold_timeout");
        let held = self.held.clone();
        let deadline = self.deadline;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            lock(&held).remove(&id);
            return;
        };
        runtime.spawn(async move {
            tokio::time::sleep_until(deadline).await;
            if lock(&held).remove(&id).is_some() {
                tracing::warn!(decision_id = %id, "held call timed out without an answer (its agent had disconnected); refused");
            }
        });
    }
}

/// A call waiting for a human, as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct HoldView {
    /// The decision id.
    pub id: String,
    /// The decision (`hold`).
    pub decision: &'static str,
    /// The rules and policies that caused it.
    pub rules: Vec<String>,
    /// Its most severe reason in words.
    pub reason: String,
    /// The risk after the call.
    pub risk: u32,
    /// Where argument values came from.
    pub provenance: Vec<String>,
    /// The agent.
    pub agent: String,
    /// The behavioural session (`<agent>/<name>`).
    pub session: String,
    /// The upstream.
    pub server: String,
    /// The tool, prompt or resource.
    pub tool: String,
    /// The arguments as the agent sent them.
    pub arguments: Value,
    /// Every reason with its facts.
    pub reasons: Vec<Reason>,
    /// When it was held (ms since the epoch).
    pub since_ms: u64,
    /// When it was held (RFC 3339).
    pub since: String,
    /// When it times out (RFC 3339).
    pub expires: String,
}

/// A call waiting for a human.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) judged: Arc<Judged>,
    pub(super) since_ms: u64,
    pub(super) answer: tokio::sync::oneshot::Sender<bool>,
}

impl Behaviour {
    /// Waits for an operator to approve a held call, at most
    /// `hold_timeout`; refuses (fails closed) when nobody can answer, when
    /// the operator refuses, or when the time runs out.
    ///
    /// An agent that disconnects while its call is held drops this future;
    /// the hold then stays listed until `hold_timeout` like any other and
    /// times out (refused, logged), so operators see the same thing
    /// whether or not the agent is still waiting.
    pub async fn await_approval(&self, judged: &Arc<Judged>) -> bool {
        let hold_timeout = self.hold_timeout();
        if hold_timeout.is_zero() || !self.approvals.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(&self.held).insert(
            judged.id.clone(),
            Held {
                judged: judged.clone(),
                since_ms: now_ms(),
                answer: tx,
            },
        );
        let answer = self.admin_url.get().map_or_else(
            || "through the admin API".to_owned(),
            |base| {
                format!(
                    "curl -X POST -H \"Authorization: Bearer $ADMIN_TOKEN\" {base}/holds/{}/approve (or /refuse); GET {base}/holds shows it",
                    judged.id
                )
            },
        );
        tracing::warn!(decision_id = %judged.id, agent = %judged.subject.agent.as_str(), tool = %judged.subject.tool, reason = %judged.verdict.summary(), timeout = ?hold_timeout, answer = %answer, "call held for approval");
        let deadline = tokio::time::Instant::now() + hold_timeout;
        // Dropped with this future when the agent disconnects: the guard
        // then times the hold out at its deadline, as if it were waited on.
        let mut waiting = Waiting {
            id: Some(judged.id.clone()),
            held: self.held.clone(),
            deadline,
        };
        let outcome = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(true)) => "approved",
            Ok(Ok(false)) => "refused",
            Ok(Err(_)) => "dropped",
            Err(_) => "timed out",
        };
        waiting.id = None;
        lock(&self.held).remove(&judged.id);
        let approved = outcome == "approved";
        if approved {
            self.approved(judged).await;
        } else if outcome == "refused" {
            // A person said no (a timeout is nobody's answer): harm
            // attempted again in this session corroborates a quarantine.
            self.refused(judged).await;
        }
        if outcome == "timed out" {
            tracing::warn!(decision_id = %judged.id, timeout = ?hold_timeout, "hold timed out: nobody answered, the call is refused");
        } else {
            tracing::info!(decision_id = %judged.id, outcome, "hold answered");
        }
        approved
    }

    /// Calls waiting for approval, with what the operator needs to judge
    /// them: the arguments as the agent sent them (where the mail or money
    /// goes, how much), the provenance and rules that caused the hold. The
    /// audit log keeps only their shape; the admin API is the operator's.
    pub fn holds(&self) -> Vec<HoldView> {
        let timeout = u64::try_from(self.hold_timeout().as_millis()).unwrap_or(u64::MAX);
        lock(&self.held)
            .values()
            .map(|h| {
                let j = &h.judged;
                HoldView {
                    id: j.id.clone(),
                    decision: j.verdict.decision.as_str(),
                    rules: j
                        .verdict
                        .rule_ids()
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                    reason: j.verdict.summary(),
                    risk: j.verdict.risk_after.0,
                    provenance: j
                        .verdict
                        .provenance
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                    agent: j.subject.agent.as_str().to_owned(),
                    session: j.subject.session.as_str().to_owned(),
                    server: j.subject.server.clone(),
                    tool: j.subject.tool.clone(),
                    arguments: j.subject.args.clone(),
                    reasons: j.verdict.reasons.clone(),
                    since_ms: h.since_ms,
                    since: Millis(h.since_ms).rfc3339().to_string(),
                    expires: Millis(h.since_ms).plus(timeout).rfc3339().to_string(),
                }
            })
            .collect()
    }

    /// How many calls wait for approval.
    pub fn held_count(&self) -> usize {
        lock(&self.held).len()
    }

    /// Answers a held call; false if there is no such hold. The call of an
    /// agent that has disconnected is not executed whatever the answer.
    pub fn answer_hold(&self, id: &str, approve: bool) -> bool {
        match lock(&self.held).remove(id) {
            Some(h) => {
                if h.answer.send(approve).is_err() {
                    tracing::info!(decision_id = %id, approve, "hold answered after its agent disconnected; the call is not executed");
                }
                true
            }
            None => false,
        }
    }

    /// A held call approved by a human joins the baseline.
    pub async fn approved(&self, judged: &Judged) {
        let _ = judged.released.set(Instant::now());
        let judge = self.judge();
        let recorded = self
            .with_state(&judged.subject, |state| {
                judge.record_approved(state, &judged.subject.call(), &judged.verdict)
            })
            .await;
        if let Err(e) = recorded {
            tracing::error!(decision_id = %judged.id, error = %e, "the approval is not in the agent's baseline");
        }
    }

    /// A held call refused by a person: its session remembers it.
    async fn refused(&self, judged: &Judged) {
        let judge = self.judge();
        let recorded = self
            .with_state(&judged.subject, |state| judge.record_refused(state))
            .await;
        if let Err(e) = recorded {
            tracing::error!(decision_id = %judged.id, error = %e, "the refusal is not in the session's state");
        }
    }
}
