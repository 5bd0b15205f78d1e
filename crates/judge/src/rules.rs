//! The behaviour rule language, compiled.
//!
//! Owns: [`RuleSet`] (rules, the risk [`Ladder`] and [`Settings`] from one or
//! more YAML files), [`Rule`] and the compiled condition, sequence and
//! threshold forms. Parsing and validation live in `rules/parse.rs`; the
//! language is documented in `docs/rules.md`.

mod parse;

use regex::Regex;
use serde_json::Value;

use crate::detect::{ContentAction, ContentActions, CustomDetectors, Kind};
use crate::error::{Error, Location};
use crate::glob::Glob;
use crate::ids::RuleId;
use crate::label::LabelSet;
use crate::verdict::Action;

/// How bad a rule's finding is; gives default risk points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// 2 points by default.
    Info,
    /// 5 points by default.
    Low,
    /// 15 points by default.
    Medium,
    /// 30 points by default.
    High,
    /// 60 points by default.
    Critical,
}

impl Severity {
    fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }

    fn default_risk(self) -> u32 {
        match self {
            Severity::Info => 2,
            Severity::Low => 5,
            Severity::Medium => 15,
            Severity::High => 30,
            Severity::Critical => 60,
        }
    }
}

/// Which state a sequence or threshold is kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    Session,
    Agent,
    User,
}

/// A value computed from a call, used for joins, `per` and distinct counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyOf {
    /// The first destination (recipient, URL host, account...).
    Destination,
    /// `server/tool`.
    Tool,
    /// An argument by dotted path.
    Arg(Vec<String>),
}

/// Provenance classes an argument value can come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct OriginSet {
    pub labels: LabelSet,
    pub injected: bool,
}

impl OriginSet {
    pub(crate) fn is_empty(self) -> bool {
        self.labels.is_empty() && !self.injected
    }
}

/// A predicate on one argument.
#[derive(Debug, Clone)]
pub(crate) struct ArgPred {
    pub path: Vec<String>,
    pub op: ArgOp,
}

#[derive(Debug, Clone)]
pub(crate) enum ArgOp {
    Exists(bool),
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    Matches(Regex),
    Contains(String),
    Cmp {
        gt: Option<f64>,
        gte: Option<f64>,
        lt: Option<f64>,
        lte: Option<f64>,
    },
}

/// Conditions on a destination of the call.
#[derive(Debug, Clone, Default)]
pub(crate) struct DestPred {
    pub from: OriginSet,
    pub new: Option<bool>,
    pub in_intent: Option<bool>,
    pub trusted_origin: Option<bool>,
    pub external: Option<bool>,
}

/// A condition on one call; every present field must hold.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cond {
    pub tools: Vec<Glob>,
    pub not_tools: Vec<Glob>,
    pub labels: LabelSet,
    pub labels_any: LabelSet,
    pub not_labels: LabelSet,
    pub session_labels: LabelSet,
    pub session_labels_any: LabelSet,
    pub not_session_labels: LabelSet,
    pub args: Vec<ArgPred>,
    pub arg_from: OriginSet,
    pub carries: OriginSet,
    pub dest: Option<DestPred>,
    pub risk_gte: Option<u32>,
    pub injection_seen: Option<bool>,
    pub detect: Vec<Kind>,
    pub first_use: Option<bool>,
    pub from_step: Option<usize>,
    pub args_text: Option<Regex>,
    /// Any of these shell facts (`shell:`).
    pub shell: crate::shell::ShellFlags,
    /// Subject and object ownership (`subject:`).
    pub subject: Option<Box<SubjectPred>>,
    /// Outliers against learned baselines or caps (`baseline:`).
    pub baseline: BaselineSet,
    /// Roles (destination, object, amount, payload) of which any must
    /// have been asked for by untrusted text (`instructed:`).
    pub instructed: u8,
    /// The call fits (or does not fit) a known trusted intent
    /// (`intent_aligned:`); never holds without intent.
    pub intent_aligned: Option<bool>,
    /// No intent is known, or it is not aligned (`not_intent_aligned:
    /// true`).
    pub not_intent_aligned: bool,
}

/// `baseline: [amount, count]`: any of them is an outlier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BaselineSet {
    pub amount: bool,
    pub count: bool,
}

impl BaselineSet {
    pub(crate) fn is_empty(self) -> bool {
        !self.amount && !self.count
    }
}

/// Conditions on the session's subject and the call's objects.
#[derive(Debug, Clone, Default)]
pub(crate) struct SubjectPred {
    pub bound: Option<bool>,
    pub bound_by: Vec<crate::subject::BindSource>,
    pub arg: Vec<crate::subject::Owner>,
    pub object: Vec<crate::subject::Owner>,
    pub payee: Vec<crate::subject::Owner>,
    pub other: Option<bool>,
    pub foreign: Option<bool>,
    pub others_gte: Option<u32>,
}

#[derive(Debug, Clone)]
pub(crate) struct Sequence {
    pub by: Group,
    pub within_ms: u64,
    pub join: Option<KeyOf>,
    pub steps: Vec<Cond>,
    pub until: Option<Cond>,
}

#[derive(Debug, Clone)]
pub(crate) enum Measure {
    Count,
    Sum(Vec<String>),
    Distinct(KeyOf),
}

#[derive(Debug, Clone)]
pub(crate) struct Threshold {
    pub when: Cond,
    pub by: Group,
    pub per: Option<KeyOf>,
    pub window_ms: u64,
    pub measure: Measure,
    pub gte: f64,
}

#[derive(Debug, Clone)]
pub(crate) enum RuleKind {
    Call(Cond),
    Sequence(Sequence),
    Threshold(Threshold),
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique id.
    pub id: RuleId,
    /// What the rule catches.
    pub description: String,
    /// What it asks for when it fires.
    pub action: Action,
    /// Risk points added when it fires.
    pub risk: u32,
    /// Severity.
    pub severity: Severity,
    /// Where it was defined.
    pub location: Location,
    pub(crate) kind: RuleKind,
}

impl Rule {
    /// `call`, `sequence` or `threshold`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            RuleKind::Call(_) => "call",
            RuleKind::Sequence(_) => "sequence",
            RuleKind::Threshold(_) => "threshold",
        }
    }
}

/// One step of the risk ladder: at or above `min` risk, take `action` (for
/// calls with any of `labels_any`, or for every call when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LadderStep {
    /// Minimum risk points.
    pub min: u32,
    /// The action.
    pub action: Action,
    /// Only for tools with any of these labels (empty: all tools).
    pub labels_any: LabelSet,
}

/// The risk ladder: decay and steps from risk to response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ladder {
    /// Half-life of risk points in milliseconds.
    pub half_life_ms: u64,
    /// Steps, any order.
    pub steps: Vec<LadderStep>,
    /// When a quarantine-grade event quarantines the whole agent
    /// (`quarantine:`); otherwise it ends its session.
    pub corroboration: crate::scope::Corroboration,
}

impl Default for Ladder {
    fn default() -> Self {
        Ladder {
            half_life_ms: 30 * 60 * 1000,
            steps: Vec::new(),
            corroboration: crate::scope::Corroboration::default(),
        }
    }
}

/// Settings that tune facts and content inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Domains (and their subdomains) that count as internal: destinations
    /// there are never new or external.
    pub internal_domains: Vec<String>,
    /// What each detector class does when it fires (`content:`; `redact:`
    /// is a shorthand for `redact` on each listed class).
    pub content: ContentActions,
    /// Operator-defined detectors (`detectors:`).
    pub custom: Option<CustomDetectors>,
    /// Risk points a result with injection signals adds to the session and
    /// agent (`injection_risk:`).
    pub injection_risk: u32,
    /// How amounts and counts are compared with learned baselines
    /// (`baseline:`).
    pub baseline: crate::baseline::BaselineSettings,
    /// The gateway's end-user ids are the ids the tools use, so the end
    /// user is the session's subject from the first call
    /// (`subject_from_user:`, default false: the end user is the subject
    /// once a subject argument names them).
    pub subject_from_user: bool,
    /// The inspection budget and what happens to content beyond it
    /// (`inspection:`).
    pub inspection: Inspection,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            internal_domains: Vec::new(),
            content: ContentActions::default(),
            custom: None,
            injection_risk: DEFAULT_INJECTION_RISK,
            baseline: crate::baseline::BaselineSettings::default(),
            subject_from_user: false,
            inspection: Inspection::default(),
        }
    }
}

/// How much of one message the detectors read, and what happens to a
/// message they cannot read in full (larger than `max_bytes`, or nested
/// deeper than the walk goes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inspection {
    /// Bytes of strings and keys inspected per message at most.
    pub max_bytes: usize,
    /// What happens to a message beyond the budget.
    pub uninspectable: Uninspectable,
}

/// Bytes inspected per message unless configured: 16 MiB, the default
/// message size limit.
pub const DEFAULT_INSPECTION_BYTES: usize = 16 << 20;

impl Default for Inspection {
    fn default() -> Self {
        Inspection {
            max_bytes: DEFAULT_INSPECTION_BYTES,
            uninspectable: Uninspectable::Block,
        }
    }
}

/// What happens to content the detectors cannot read in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Uninspectable {
    /// Fail closed: a call is denied, a result kept from the agent.
    #[default]
    Block,
    /// Let it through uninspected, but label the session as if it carried
    /// everything (`untrusted`, `private`, `secret`, `financial`), so
    /// egress after it meets the taint rules.
    Label,
}

/// Risk points per result carrying injection signals, unless configured.
pub const DEFAULT_INJECTION_RISK: u32 = 15;

impl Settings {
    /// The classes whose action is `redact` or `block`.
    pub fn redacted(&self) -> Vec<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|k| self.content.get(*k) >= ContentAction::Redact)
            .collect()
    }
}

/// Rules, ladder and settings compiled from one or more files.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    pub(crate) ladder: Ladder,
    pub(crate) settings: Settings,
}

impl RuleSet {
    /// Parses and validates one YAML rule file. `file` is used in errors.
    pub fn from_yaml(file: &str, src: &str) -> Result<RuleSet, Error> {
        parse::parse(file, src)
    }

    /// Adds the rules of another file. A later ladder or settings section
    /// replaces an earlier one; a duplicate rule id is an error.
    pub fn merge(&mut self, other: RuleSet) -> Result<(), Error> {
        for r in other.rules {
            if let Some(prev) = self.rules.iter().find(|x| x.id == r.id) {
                return Err(Error::Rule {
                    at: r.location.clone(),
                    rule: r.id.to_string(),
                    message: format!("duplicate rule id, first defined at {}", prev.location),
                });
            }
            self.rules.push(r);
        }
        if !other.ladder.steps.is_empty() {
            self.ladder = other.ladder;
        }
        if other.settings != Settings::default() {
            self.settings = other.settings;
        }
        if self.rules.len() > usize::from(u16::MAX) {
            return Err(Error::Rule {
                at: Location {
                    file: String::new(),
                    line: 0,
                    column: 0,
                },
                rule: String::new(),
                message: "too many rules".to_owned(),
            });
        }
        Ok(())
    }

    /// Counts these domains (and their subdomains) as internal, besides
    /// the `settings.internal_domains` of the rule files.
    pub fn add_internal_domains(&mut self, domains: &[String]) {
        for d in domains {
            if !self.settings.internal_domains.contains(d) {
                self.settings.internal_domains.push(d.clone());
            }
        }
    }

    /// Removes the rule `id`; false when there is none.
    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.rules.len();
        self.rules.retain(|r| r.id.as_str() != id);
        self.rules.len() != before
    }

    /// The rules in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The risk ladder.
    pub fn ladder(&self) -> &Ladder {
        &self.ladder
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

#[cfg(test)]
mod tests;
