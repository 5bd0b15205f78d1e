//! What a call is about ([`Subject`]) and what was decided about it
//! ([`Judged`]), kept until its answer has been inspected and recorded.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use castellan_judge::{AgentId, Call, CallKind, LabelSet, SessionKey, UserId, Verdict};
use serde_json::{Value, json};

use crate::identity::Principal;

/// What a call is about, owned, so its result can be judged later.
#[derive(Debug)]
pub(super) struct Subject {
    pub(super) agent: AgentId,
    pub(super) user: Option<UserId>,
    pub(super) attributes: Arc<[(String, String)]>,
    pub(super) session: SessionKey,
    pub(super) server: String,
    pub(super) tool: String,
    pub(super) kind: CallKind,
    pub(super) args: Value,
    /// `args` as compact JSON, written once: the judge's rules read it and
    /// the audit digest is over it.
    pub(super) args_text: String,
    /// The intent the judge reads: only from a trusted credential.
    pub(super) intent: Option<String>,
    /// The MCP method when it is not the one `kind` implies
    /// (`completion/complete` is judged as the prompt or resource it
    /// completes).
    pub(super) method: Option<&'static str>,
    /// An intent the agent sent, trusted or not, as the audit notes it.
    pub(super) intent_sent: Option<SentIntent>,
}

/// An intent as the audit records it: whether it was trusted, and the
/// BLAKE3 of its text (the text itself may carry personal data).
#[derive(Debug)]
pub(super) struct SentIntent {
    pub(super) trusted: bool,
    pub(super) digest: String,
}

/// A call that was judged, kept until its result has been inspected.
#[derive(Debug)]
pub struct Judged {
    /// The decision id (also the audit record id).
    pub id: String,
    pub(super) subject: Subject,
    /// The verdict.
    pub verdict: Verdict,
    /// When the judge had decided (the call could go upstream).
    pub(super) decided: Instant,
    /// When an operator released a held call.
    pub(super) released: std::sync::OnceLock<Instant>,
    /// The arguments' digest, made for the decision record and reused by
    /// the result record.
    pub(super) args_digest: std::sync::OnceLock<String>,
    /// What inspecting its answer found so far.
    pub(super) report: Mutex<ResultReport>,
}

/// What content inspection found in one call's answer: the result and every
/// event streamed to the agent before it. Written once, when the answer is
/// complete, as an audit record linked to the decision.
#[derive(Debug, Default)]
pub(super) struct ResultReport {
    /// Detector findings, with where they were (`result` or the event's
    /// method).
    pub(super) findings: Vec<(String, castellan_judge::ContentFinding)>,
    /// Injection signals, with where they were.
    pub(super) signals: Vec<(String, castellan_judge::SignalFinding)>,
    pub(super) labels: LabelSet,
    pub(super) redacted: usize,
    /// Where content was kept from the agent: `result` or an event's method.
    pub(super) blocked: Vec<String>,
    pub(super) risk_added: u32,
    pub(super) written: bool,
}

/// Most findings and signals one result record lists.
pub(super) const REPORT_FINDINGS: usize = 64;

impl Subject {
    pub(super) fn call(&self) -> Call<'_> {
        Call {
            agent: &self.agent,
            user: self.user.as_ref(),
            attributes: &self.attributes,
            session: &self.session,
            kind: self.kind,
            server: Some(&self.server),
            tool: &self.tool,
            args: &self.args,
            args_text: Some(&self.args_text),
            intent: self.intent.as_deref(),
        }
    }
}

impl Subject {
    /// What an agent does in its behavioural session `session`.
    pub(super) fn new(
        principal: &Principal,
        session: &str,
        server: &str,
        tool: &str,
        kind: CallKind,
        args: Value,
        intent: Option<String>,
    ) -> Subject {
        Subject {
            agent: AgentId::new(&*principal.agent),
            user: principal.user.as_deref().map(UserId::new),
            attributes: principal.attributes.clone(),
            session: SessionKey::new(format!("{}/{session}", principal.agent)),
            server: server.to_owned(),
            tool: tool.to_owned(),
            kind,
            args_text: castellan_protocol::json::to_string(&args),
            args,
            intent,
            intent_sent: None,
            method: None,
        }
    }
}

impl Judged {
    pub(super) fn new(id: String, subject: Subject, verdict: Verdict) -> Judged {
        Judged {
            id,
            subject,
            verdict,
            decided: Instant::now(),
            released: std::sync::OnceLock::new(),
            args_digest: std::sync::OnceLock::new(),
            report: Mutex::new(ResultReport::default()),
        }
    }

    /// BLAKE3 of the arguments' compact JSON, hex.
    pub(super) fn args_digest(&self) -> &str {
        self.args_digest
            .get_or_init(|| args_digest(&self.subject.args_text))
    }

    /// The MCP method of the call.
    pub fn method(&self) -> &'static str {
        if let Some(m) = self.subject.method {
            return m;
        }
        match self.subject.kind {
            CallKind::CallTool => "tools/call",
            CallKind::ListTools => "tools/list",
            CallKind::ReadResource => "resources/read",
            CallKind::GetPrompt => "prompts/get",
        }
    }

    /// The structured explanation agents and operators see.
    pub fn explanation(&self) -> Value {
        json!({
            "id": self.id,
            "decision": self.verdict.decision.as_str(),
            "rules": self.verdict.rule_ids(),
            "reason": self.verdict.summary(),
            "risk": self.verdict.risk_after.0,
            "provenance": self.verdict.provenance.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })
    }
}

impl ResultReport {
    pub(super) fn note(&mut self, origin: &str, rv: &castellan_judge::ResultVerdict) {
        let room = REPORT_FINDINGS.saturating_sub(self.findings.len());
        self.findings.extend(
            rv.findings
                .iter()
                .take(room)
                .map(|f| (origin.to_owned(), f.clone())),
        );
        let room = REPORT_FINDINGS.saturating_sub(self.signals.len());
        self.signals.extend(
            rv.signals
                .iter()
                .take(room)
                .map(|g| (origin.to_owned(), g.clone())),
        );
        self.labels = self.labels.union(rv.labels_added);
        self.redacted += rv.redactions.len();
        self.risk_added = self.risk_added.saturating_add(rv.risk_added);
        if rv.blocked {
            self.blocked.push(origin.to_owned());
        }
    }
}

/// BLAKE3 of the arguments' compact JSON (serde_json's serialisation of
/// the parsed value, as [`castellan_protocol::json::to_string`] writes it),
/// hex: the digest records have always carried.
pub(super) fn args_digest(args_text: &str) -> String {
    blake3::hash(args_text.as_bytes())
        .to_hex()
        .as_str()
        .to_owned()
}
