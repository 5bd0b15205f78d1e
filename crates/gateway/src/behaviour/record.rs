//! Decision recording, in one place: metrics, log lines, what operators
//! see, audit records (decisions, results, operator actions) and alerts.

use castellan_audit::{Record, Writer};
use serde_json::{Value, json};

use std::time::Duration;

use super::judged::{Judged, ResultReport, args_digest};
use super::{Behaviour, META_INTENT, UNTRUSTED_INTENT, lock, now_ms};
use crate::error::Error;
use crate::identity::Principal;

impl Behaviour {
    /// Records a decision, in this one place: its metrics, its log line
    /// and trace span event when it is flagged, what operators see of it,
    /// its audit record and its alert. Fails when the audit log could not
    /// take the record (strict log unreachable, spool full): the caller
    /// refuses the call.
    pub(super) fn record_decision(
        &self,
        judged: &Judged,
        principal: &Principal,
        session: &str,
        now: u64,
        elapsed: Duration,
    ) -> Result<(), castellan_audit::AuditError> {
        let (server, tool) = (judged.subject.server.as_str(), judged.subject.tool.as_str());
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
        crate::telemetry::record_decision(judged, &principal.agent, server, tool);
        self.note(judged, session, now);
        let record = self.to_record(judged, now, latency, shape_of(&judged.subject.args));
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
        self.append(record)
    }

    /// Writes what inspecting a call's answer found as an audit record
    /// linked to the decision (id `<decision>.result`), once, and raises an
    /// alert when content was blocked or carried injected instructions. A
    /// clean answer writes nothing.
    pub fn report_result(&self, judged: &Judged) {
        let report = {
            let mut r = lock(&judged.report);
            if r.written || (r.findings.is_empty() && r.signals.is_empty() && r.blocked.is_empty())
            {
                return;
            }
            let taken = std::mem::take(&mut *r);
            r.written = true;
            taken
        };
        let signalled = !report.signals.is_empty();
        let record = self.result_record(judged, report, now_ms());
        if record.decision == "result_block" || signalled {
            self.alerts.raise(crate::alerts::Alert::from(&record));
        }
        // The call was already answered; a failure is logged and counted.
        let _ = self.append(record);
    }

    /// The `tool` metrics label: the tool's name if the upstream listed it
    /// and it is among the first [`METRIC_TOOLS`], else `other`.
    fn tool_label(&self, server: &str, tool: &str) -> String {
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
    /// Appends a record to the audit log. A strict log holds the caller
    /// until the record is durable; on the gateway's runtime that wait
    /// moves off the executor thread so other agents' calls go on.
    pub(super) fn append(&self, record: Record) -> Result<(), castellan_audit::AuditError> {
        let Some(audit) = &self.audit else {
            return Ok(());
        };
        let id = record.id.clone();
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let written = if self.audit_strict() && multi_thread {
            tokio::task::block_in_place(|| audit.append(record))
        } else {
            audit.append(record)
        };
        if let Err(e) = &written {
            tracing::error!(error = %e, record_id = %id, "audit record not written");
            metrics::counter!("castellan_audit_failures_total").increment(1);
        }
        written
    }

    pub(super) fn result_record(&self, j: &Judged, report: ResultReport, now: u64) -> Record {
        let mut rules: Vec<String> = report
            .findings
            .iter()
            .map(|(_, f)| format!("content-{}-{}", f.action.as_str(), f.detector))
            .collect();
        if !report.signals.is_empty() {
            rules.push("injection-signal".into());
        }
        rules.sort();
        rules.dedup();
        let classes = {
            let mut c: Vec<&str> = report
                .findings
                .iter()
                .map(|(_, f)| f.kind.as_str())
                .collect();
            c.sort_unstable();
            c.dedup();
            c.join(", ")
        };
        let (decision, reason) = if !report.blocked.is_empty() {
            (
                "result_block",
                format!(
                    "kept from the agent ({}): it carries {classes}, which the content policy blocks",
                    report.blocked.join(", ")
                ),
            )
        } else if report.redacted > 0 {
            (
                "result_redact",
                format!(
                    "{} value(s) masked before the agent saw them: {classes}",
                    report.redacted
                ),
            )
        } else if !classes.is_empty() {
            (
                "result_label",
                format!("the session was labelled for {classes}"),
            )
        } else {
            (
                "result_label",
                "the content carries injection signals".to_owned(),
            )
        };
        let mut r = self.to_record(j, now, 0, Value::Null);
        r.id = format!("{}.result", j.id);
        r.decision = decision.into();
        r.rules = rules;
        r.reason = if report.signals.is_empty() || decision == "result_label" && classes.is_empty()
        {
            reason
        } else {
            format!("{reason}; it carries injection signals")
        };
        r.facts = json!({
            "decision": j.id,
            "findings": report.findings.iter().map(|(origin, f)| json!({
                "in": origin,
                "detector": f.detector,
                "class": f.kind.as_str(),
                "path": f.pointer,
                "span": [f.start, f.end],
                "action": f.action.as_str(),
            })).collect::<Vec<_>>(),
            "signals": report.signals.iter().map(|(origin, g)| json!({
                "in": origin,
                "kind": g.signal.kind.as_str(),
                "what": g.signal.what,
                "path": g.pointer,
                "span": [g.signal.range.start, g.signal.range.end],
            })).collect::<Vec<_>>(),
            "labels_added": report.labels.to_string(),
            "redacted": report.redacted,
            "blocked": report.blocked,
        });
        r.risk_before = j.verdict.risk_after.0;
        r.risk_after = j.verdict.risk_after.0.saturating_add(report.risk_added);
        r
    }

    /// The record of `j`'s decision, with `args_redacted` as given (the
    /// arguments' shape for a decision; nothing for a result record).
    pub(super) fn to_record(
        &self,
        j: &Judged,
        now: u64,
        latency_us: u64,
        args_redacted: Value,
    ) -> Record {
        Record {
            id: j.id.clone(),
            at_ms: now,
            agent: j.subject.agent.as_str().to_owned(),
            user: j.subject.user.as_ref().map(|u| u.as_str().to_owned()),
            session: j.subject.session.as_str().to_owned(),
            upstream: j.subject.server.clone(),
            method: j.method().into(),
            target: j.subject.tool.clone(),
            args_digest: j.args_digest().to_owned(),
            args_redacted,
            decision: j.verdict.decision.as_str().into(),
            rules: j
                .verdict
                .reasons
                .iter()
                .map(|r| r.rule.as_str().to_owned())
                .collect(),
            reason: j.verdict.summary(),
            facts: {
                let mut facts = json!({
                    "labels": j.verdict.labels.to_string(),
                    "provenance": j.verdict.provenance.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "reasons": j.verdict.reasons,
                });
                if let Some(i) = &j.subject.intent_sent {
                    facts["intent"] = json!({"trusted": i.trusted, "digest": i.digest});
                }
                facts
            },
            risk_before: j.verdict.risk_before.0,
            risk_after: j.verdict.risk_after.0,
            latency_us,
        }
    }

    /// Waits until every record appended so far is on disk, and saves the
    /// learned baselines.
    pub async fn flush(&self) {
        self.save_baselines().await;
        if let Some(Err(e)) = self.audit.as_ref().map(Writer::flush) {
            tracing::error!(error = %e, "audit flush failed");
        }
    }

    /// A session's decisions in order, from the audit log (blocking: call
    /// off the executor). At most the newest `limit`.
    pub fn timeline(&self, agent: &str, session: &str, limit: u64) -> Result<Vec<Value>, Error> {
        let Some(audit) = &self.audit else {
            return Err(Error::NoAudit);
        };
        // Batched records may still be on their way to the file.
        audit.flush()?;
        let filter = castellan_audit::Filter {
            session: Some(format!("{agent}/{session}")),
            limit: Some(limit),
            ..Default::default()
        };
        let records = castellan_audit::query(audit.location(), &filter)?;
        Ok(records
            .into_iter()
            .map(|s| {
                let mut v = serde_json::to_value(&s.record).unwrap_or_default();
                v["seq"] = json!(s.seq);
                v
            })
            .collect())
    }

    /// The audit writer's queue depth and the lag of its last batch.
    pub fn audit_stats(&self) -> Option<(u64, std::time::Duration)> {
        self.audit
            .as_ref()
            .map(|a| (a.queue_depth(), a.write_lag()))
    }

    /// The audit log's reachability: whether the last write reached it,
    /// and how many records wait in its spool.
    pub fn audit_health(&self) -> Option<(bool, u64)> {
        self.audit.as_ref().map(|a| (!a.unreachable(), a.spooled()))
    }

    /// Whether the audit log must hold a record before the agent's answer.
    pub fn audit_strict(&self) -> bool {
        self.audit
            .as_ref()
            .is_some_and(|a| a.durability() == castellan_audit::Durability::Strict)
    }
}

/// The audit record of an operator's action on an agent (`method`
/// `admin/<decision>`, no session, tool or arguments).
#[allow(clippy::too_many_arguments)]
pub(super) fn admin_record(
    id: String,
    now: u64,
    agent: &str,
    decision: &str,
    rule: &str,
    reason: String,
    facts: Value,
    (risk_before, risk_after): (u32, u32),
) -> Record {
    Record {
        id,
        at_ms: now,
        agent: agent.to_owned(),
        user: None,
        session: String::new(),
        upstream: String::new(),
        method: format!("admin/{decision}"),
        target: String::new(),
        args_digest: args_digest("null"),
        args_redacted: Value::Null,
        decision: decision.to_owned(),
        rules: vec![rule.to_owned()],
        reason,
        facts,
        risk_before,
        risk_after,
        latency_us: 0,
    }
}

/// The arguments with every string replaced by its length: the audit log
/// keeps the shape of a call without the data in it.
pub(super) fn shape_of(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(chars_label(s)),
        Value::Array(a) => Value::Array(a.iter().map(shape_of).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), shape_of(v))).collect())
        }
        other => other.clone(),
    }
}

/// `<N chars>`, without the formatting machinery (a few strings per call).
pub(super) fn chars_label(s: &str) -> String {
    let mut digits = itoa::Buffer::new();
    let n = digits.format(s.chars().count());
    let mut out = String::with_capacity(n.len() + 8);
    out.push('<');
    out.push_str(n);
    out.push_str(" chars>");
    out
}
