//! The judge's answers.
//!
//! Owns: [`Action`] (what a rule asks for), [`Decision`] (what happens to a
//! call, ordered by severity), [`Verdict`] (a decision with reasons, risk
//! and provenance findings), [`ResultVerdict`] and [`Redaction`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::detect::{ContentAction, Kind, Signal};
use crate::fingerprint::FpKind;
use crate::ids::{RiskPoints, RuleId, ToolName};
use crate::label::LabelSet;

/// What a rule or ladder step asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Record only.
    Log,
    /// Record and raise an alert; the call proceeds.
    Alert,
    /// Let the call proceed and redact its result.
    Redact,
    /// Hold the call for human approval.
    Hold,
    /// Refuse the call for now (rate limited).
    Throttle,
    /// Refuse the call.
    Deny,
    /// Refuse the call and every later call of the agent until released.
    Quarantine,
}

impl Action {
    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "log" => Action::Log,
            "alert" => Action::Alert,
            "redact" => Action::Redact,
            "hold" => Action::Hold,
            "throttle" => Action::Throttle,
            "deny" => Action::Deny,
            "quarantine" => Action::Quarantine,
            _ => return None,
        })
    }

    /// The decision this action leads to.
    pub fn decision(self) -> Decision {
        match self {
            Action::Log | Action::Alert => Decision::Allow,
            Action::Redact => Decision::Redact,
            Action::Hold => Decision::Hold,
            Action::Throttle => Decision::Throttle,
            Action::Deny => Decision::Deny,
            Action::Quarantine => Decision::Quarantine,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Log => "log",
            Action::Alert => "alert",
            Action::Redact => "redact",
            Action::Hold => "hold",
            Action::Throttle => "throttle",
            Action::Deny => "deny",
            Action::Quarantine => "quarantine",
        }
    }
}

/// What happens to a call, ordered by severity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Forward the call.
    #[default]
    Allow,
    /// Forward the call and redact its result.
    Redact,
    /// Wait for human approval; fail closed on timeout.
    Hold,
    /// Refuse now; the agent may retry later.
    Throttle,
    /// Refuse.
    Deny,
    /// Refuse and quarantine the agent.
    Quarantine,
}

impl Decision {
    /// Lower-case name as in replay output.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Redact => "redact",
            Decision::Hold => "hold",
            Decision::Throttle => "throttle",
            Decision::Deny => "deny",
            Decision::Quarantine => "quarantine",
        }
    }

    /// True if the call may go to the upstream now (allow or redact).
    pub fn forwards(self) -> bool {
        self <= Decision::Redact
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which part of the judge produced a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A behaviour rule.
    Rule,
    /// The risk ladder.
    Ladder,
    /// The Cedar policy.
    Policy,
    /// The agent is quarantined.
    Quarantine,
    /// Content inspection: a detector class whose action is `block`.
    Content,
}

/// One fact a reason rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fact {
    /// What the fact is about, e.g. `destination`.
    pub key: &'static str,
    /// Its value.
    pub value: String,
}

/// Why a decision was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// The rule, ladder step or policy id.
    pub rule: RuleId,
    /// What produced it.
    pub origin: Origin,
    /// What it asked for.
    pub action: Action,
    /// A one-line explanation.
    pub message: String,
    /// The facts used.
    pub facts: Vec<Fact>,
}

/// Where an argument value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvenanceFinding {
    /// The argument (top-level key) that carried the value.
    pub arg: String,
    /// The kind of value.
    pub kind: FpKind,
    /// Index of the call whose result first carried it.
    pub source_index: u32,
    /// That call's tool.
    pub source_tool: ToolName,
    /// Labels of every result it was seen in.
    pub labels: LabelSet,
    /// It was seen in a result that carried injected instructions.
    pub injected: bool,
    /// It was first seen in an earlier session of the agent.
    pub earlier_session: bool,
    /// The encodings undone to find it (`base64`, `percent-encoding+base64`),
    /// when the argument did not carry it as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decoded_from: Option<String>,
}

impl fmt::Display for ProvenanceFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.labels.contains(crate::label::Label::Untrusted) {
            "untrusted content"
        } else if self.labels.is_empty() {
            "a result"
        } else {
            "data"
        };
        write!(
            f,
            "`{}` {} first seen in {what}",
            self.arg,
            self.kind.noun()
        )?;
        if !self.labels.is_empty() {
            write!(f, " ({})", self.labels)?;
        }
        write!(f, " from call #{} {}", self.source_index, self.source_tool)?;
        if self.earlier_session {
            f.write_str(" in an earlier session")?;
        }
        if self.injected {
            f.write_str(" that carried injected instructions")?;
        }
        if let Some(d) = &self.decoded_from {
            write!(f, ", decoded from {d}")?;
        }
        Ok(())
    }
}

/// The judge's answer for one call.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// What happens to the call.
    pub decision: Decision,
    /// Why, most severe first.
    pub reasons: Vec<Reason>,
    /// Risk (of the session or of its user, the larger) before this call,
    /// after decay.
    pub risk_before: RiskPoints,
    /// Risk after the points of the rules that fired.
    pub risk_after: RiskPoints,
    /// Where argument values came from.
    pub provenance: Vec<ProvenanceFinding>,
    /// An alert should be raised even if the call proceeds.
    pub alert: bool,
    /// The index of this call in its session.
    pub index: u32,
    /// The tool's labels.
    pub labels: LabelSet,
}

impl Verdict {
    /// An allow with no reasons, risk, provenance or labels: for content
    /// shown to the judge outside any call it judged.
    pub fn allow() -> Verdict {
        Verdict {
            decision: Decision::Allow,
            reasons: Vec::new(),
            risk_before: RiskPoints(0),
            risk_after: RiskPoints(0),
            provenance: Vec::new(),
            alert: false,
            index: 0,
            labels: LabelSet::EMPTY,
        }
    }

    /// The ids of every rule and policy that contributed, in order.
    pub fn rule_ids(&self) -> Vec<&str> {
        self.reasons.iter().map(|r| r.rule.as_str()).collect()
    }

    /// A one-line summary of the most severe reason, or empty.
    pub fn summary(&self) -> String {
        self.reasons
            .first()
            .map(|r| r.message.clone())
            .unwrap_or_default()
    }
}

/// A part of a result to redact. Ranges of one pointer never overlap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redaction {
    /// JSON pointer to the string holding the value (empty for plain text).
    pub pointer: String,
    /// Byte range inside that string.
    pub start: usize,
    /// End of the byte range (exclusive).
    pub end: usize,
    /// What was detected.
    pub kind: Kind,
}

/// A detector finding in a result or in arguments: the detector, its
/// class, where (JSON pointer and byte span) and the action taken. Never
/// the value itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContentFinding {
    /// JSON pointer to the string holding the value (empty for plain text).
    pub pointer: String,
    /// Byte range inside that string.
    pub start: usize,
    /// End of the byte range (exclusive).
    pub end: usize,
    /// The detector class.
    pub kind: Kind,
    /// The detector's name (`us_ssn`, `aws_access_key`, a custom name).
    pub detector: String,
    /// The action configured for it.
    pub action: ContentAction,
}

/// An injection signal in a result, with the JSON pointer of the string
/// that carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignalFinding {
    /// JSON pointer to the string (empty for plain text).
    pub pointer: String,
    /// The signal (kind, fixed description, byte range).
    pub signal: Signal,
}

/// The judge's answer for one result.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResultVerdict {
    /// Parts to redact before the agent sees the result.
    pub redactions: Vec<Redaction>,
    /// Labels the session gained from this result.
    pub labels_added: LabelSet,
    /// The result carried instruction-like text aimed at the agent: the
    /// first signal's description.
    pub injection: Option<&'static str>,
    /// Fingerprints recorded.
    pub recorded: usize,
    /// Detector findings whose class action is not `ignore` (at most 64).
    pub findings: Vec<ContentFinding>,
    /// Injection signals (at most 16).
    pub signals: Vec<SignalFinding>,
    /// A detector class with action `block` fired: the agent must not see
    /// this result. (Its values are also listed in `redactions`, so a
    /// caller that only redacts still hides them.)
    pub blocked: bool,
    /// The result could not be inspected (larger than the inspection
    /// budget, or nested too deep): why, in words. It is then blocked, or
    /// labels the session with every read label, as the operator chose.
    pub uninspectable: Option<String>,
    /// Risk points the injection signals added.
    pub risk_added: u32,
}
