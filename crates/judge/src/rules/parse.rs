//! YAML rule files: raw serde shapes, then validation into compiled rules.
//! Syntax errors carry the parser's line and column; semantic errors point
//! at the rule's `id:` line (or the offending key inside the rule).

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use super::{
    ArgOp, ArgPred, Cond, DestPred, Group, Inspection, KeyOf, Ladder, LadderStep, Measure,
    OriginSet, Rule, RuleKind, RuleSet, Sequence, Settings, Severity, Threshold, Uninspectable,
};
use crate::detect::{
    ContentAction, ContentActions, CustomDetectors, CustomPattern, CustomSpec, Kind,
};
use crate::error::{Error, Location};
use crate::glob::Glob;
use crate::ids::RuleId;
use crate::label::{Label, LabelSet};
use crate::verdict::Action;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    settings: Option<RawSettings>,
    #[serde(default)]
    ladder: Option<RawLadder>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    internal_domains: Vec<String>,
    #[serde(default)]
    redact: Vec<String>,
    #[serde(default)]
    content: BTreeMap<String, String>,
    #[serde(default)]
    detectors: Vec<RawDetector>,
    injection_risk: Option<u32>,
    baseline: Option<RawBaselineSettings>,
    subject_from_user: Option<bool>,
    inspection: Option<RawInspection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBaselineSettings {
    min_samples: Option<u32>,
    quantile: Option<f64>,
    tolerance: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubject {
    bound: Option<bool>,
    bound_by: Option<OneOrMany>,
    arg: Option<OneOrMany>,
    object: Option<OneOrMany>,
    payee: Option<OneOrMany>,
    other: Option<bool>,
    foreign: Option<bool>,
    others_gte: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInspection {
    max_bytes: Option<usize>,
    uninspectable: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetector {
    name: String,
    regex: Option<String>,
    words: Option<Vec<String>>,
    action: String,
    label: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLadder {
    half_life: Option<String>,
    #[serde(default)]
    steps: Vec<RawStep>,
    quarantine: Option<RawCorroboration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCorroboration {
    sessions: Option<u32>,
    users: Option<u32>,
    within: Option<String>,
    after_refused_hold: Option<bool>,
    count_sourced: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    risk: u32,
    action: String,
    labels_any: Option<OneOrMany>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    #[serde(default)]
    description: String,
    severity: Option<String>,
    risk: Option<u32>,
    action: String,
    #[serde(default = "yes")]
    enabled: bool,
    when: Option<RawCond>,
    sequence: Option<RawSeq>,
    threshold: Option<RawThreshold>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCond {
    tool: Option<OneOrMany>,
    not_tool: Option<OneOrMany>,
    labels: Option<OneOrMany>,
    labels_any: Option<OneOrMany>,
    not_labels: Option<OneOrMany>,
    session_labels: Option<OneOrMany>,
    session_labels_any: Option<OneOrMany>,
    not_session_labels: Option<OneOrMany>,
    #[serde(default)]
    args: BTreeMap<String, RawArg>,
    arg_from: Option<OneOrMany>,
    carries: Option<OneOrMany>,
    destination: Option<RawDest>,
    risk_gte: Option<u32>,
    injection_seen: Option<bool>,
    detect: Option<OneOrMany>,
    first_use: Option<bool>,
    from_step: Option<usize>,
    args_text: Option<String>,
    shell: Option<OneOrMany>,
    subject: Option<RawSubject>,
    baseline: Option<OneOrMany>,
    instructed: Option<OneOrMany>,
    intent_aligned: Option<bool>,
    not_intent_aligned: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArg {
    exists: Option<bool>,
    eq: Option<Value>,
    ne: Option<Value>,
    #[serde(rename = "in")]
    in_: Option<Vec<Value>>,
    matches: Option<String>,
    contains: Option<String>,
    gt: Option<f64>,
    gte: Option<f64>,
    lt: Option<f64>,
    lte: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDest {
    from: Option<OneOrMany>,
    new: Option<bool>,
    in_intent: Option<bool>,
    trusted_origin: Option<bool>,
    external: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeq {
    by: Option<String>,
    within: String,
    join: Option<String>,
    steps: Vec<RawCond>,
    until: Option<RawCond>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThreshold {
    #[serde(default)]
    when: RawCond,
    by: Option<String>,
    per: Option<String>,
    window: String,
    count: Option<u32>,
    sum: Option<String>,
    count_distinct: Option<String>,
    gte: Option<f64>,
}

/// Context for semantic errors: the file, the source, the rule.
struct Ctx<'a> {
    file: &'a str,
    src: &'a str,
    rule: String,
    line: usize,
}

impl Ctx<'_> {
    fn err(&self, key: Option<&str>, message: impl Into<String>) -> Error {
        let line = key
            .and_then(|k| key_line(self.src, self.line, k))
            .unwrap_or(self.line);
        Error::Rule {
            at: Location {
                file: self.file.to_owned(),
                line,
                column: 0,
            },
            rule: self.rule.clone(),
            message: message.into(),
        }
    }
}

fn settings(top: &Ctx<'_>, s: RawSettings) -> Result<Settings, Error> {
    let mut content = ContentActions::default();
    for k in &s.redact {
        let kind = Kind::parse(k).ok_or_else(|| {
            top.err(
                Some("redact"),
                format!("unknown detector class `{k}`; expected {}", kinds()),
            )
        })?;
        content.set(kind, ContentAction::Redact);
    }
    for (k, a) in &s.content {
        let kind = Kind::parse(k)
            .filter(|k| *k != Kind::Custom)
            .ok_or_else(|| {
                top.err(
                    Some(k),
                    format!("unknown detector class `{k}`; expected {}", kinds()),
                )
            })?;
        let action = ContentAction::parse(a).ok_or_else(|| {
            top.err(
                Some(k),
                format!("unknown content action `{a}`; expected ignore, label, redact or block"),
            )
        })?;
        content.set(kind, action);
    }
    let mut specs = Vec::new();
    for d in &s.detectors {
        let ctx = Ctx {
            file: top.file,
            src: top.src,
            rule: d.name.clone(),
            line: named_line(top.src, "name", &d.name),
        };
        let word_ok = !d.name.is_empty()
            && d.name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
        if !word_ok {
            return Err(ctx.err(
                Some("name"),
                "detector name must be a word (letters, digits, `_`, `-`)",
            ));
        }
        if Kind::parse(&d.name).is_some() || specs.iter().any(|x: &CustomSpec| x.name == d.name) {
            return Err(ctx.err(
                Some("name"),
                format!("detector name `{}` is already taken", d.name),
            ));
        }
        let pattern = match (&d.regex, &d.words) {
            (Some(r), None) => CustomPattern::Regex(r.clone()),
            (None, Some(w)) => CustomPattern::Words(w.clone()),
            _ => return Err(ctx.err(None, "a detector needs exactly one of `regex` or `words`")),
        };
        let action = ContentAction::parse(&d.action).ok_or_else(|| {
            ctx.err(
                Some("action"),
                format!(
                    "unknown content action `{}`; expected ignore, label, redact or block",
                    d.action
                ),
            )
        })?;
        let label = match &d.label {
            None => Label::Private,
            Some(l) => Label::parse(l).filter(|l| l.is_read()).ok_or_else(|| {
                ctx.err(
                    Some("label"),
                    format!(
                        "unknown label `{l}`; expected private, secret, financial or untrusted"
                    ),
                )
            })?,
        };
        specs.push(CustomSpec {
            name: d.name.clone(),
            pattern,
            action,
            label,
        });
    }
    let custom = if specs.is_empty() {
        None
    } else {
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        Some(CustomDetectors::new(specs).map_err(|(i, m)| {
            let name = names.get(i).cloned().unwrap_or_default();
            let key = if s.detectors.get(i).is_some_and(|d| d.regex.is_some()) {
                "regex"
            } else {
                "words"
            };
            Ctx {
                file: top.file,
                src: top.src,
                line: named_line(top.src, "name", &name),
                rule: name,
            }
            .err(Some(key), m)
        })?)
    };
    Ok(Settings {
        internal_domains: s
            .internal_domains
            .iter()
            .map(|d| d.trim().trim_start_matches('.').to_ascii_lowercase())
            .collect(),
        content,
        custom,
        injection_risk: s
            .injection_risk
            .unwrap_or(crate::rules::DEFAULT_INJECTION_RISK),
        baseline: baseline_settings(top, s.baseline.as_ref())?,
        subject_from_user: s.subject_from_user.unwrap_or(false),
        inspection: inspection(top, s.inspection.as_ref())?,
    })
}

fn baseline_settings(
    top: &Ctx<'_>,
    b: Option<&RawBaselineSettings>,
) -> Result<crate::baseline::BaselineSettings, Error> {
    let mut out = crate::baseline::BaselineSettings::default();
    let Some(b) = b else { return Ok(out) };
    if let Some(n) = b.min_samples {
        if n == 0 {
            return Err(top.err(Some("min_samples"), "`min_samples` must be at least 1"));
        }
        out.min_samples = n;
    }
    if let Some(q) = b.quantile {
        if !(q > 0.0 && q < 1.0) {
            return Err(top.err(
                Some("quantile"),
                format!("`quantile` must be between 0 and 1 (0.99 for the p99), got {q}"),
            ));
        }
        out.quantile = q;
    }
    if let Some(t) = b.tolerance {
        if !(t.is_finite() && t >= 1.0) {
            return Err(top.err(
                Some("tolerance"),
                format!("`tolerance` must be a number of at least 1, got {t}"),
            ));
        }
        out.tolerance = t;
    }
    Ok(out)
}

fn inspection(top: &Ctx<'_>, raw: Option<&RawInspection>) -> Result<Inspection, Error> {
    let mut out = Inspection::default();
    let Some(raw) = raw else {
        return Ok(out);
    };
    if let Some(m) = raw.max_bytes {
        if m == 0 {
            return Err(top.err(Some("max_bytes"), "inspection.max_bytes must be at least 1"));
        }
        out.max_bytes = m;
    }
    out.uninspectable = match raw.uninspectable.as_deref() {
        None | Some("block") => Uninspectable::Block,
        Some("label") => Uninspectable::Label,
        Some(other) => {
            return Err(top.err(
                Some("uninspectable"),
                format!(
                    "unknown action `{other}` for uninspectable content; expected block or label"
                ),
            ));
        }
    };
    Ok(out)
}

fn kinds() -> String {
    Kind::ALL
        .iter()
        .filter(|k| **k != Kind::Custom)
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The 1-based line of a `key: value` entry (a list item or a mapping
/// key), or 0.
fn named_line(src: &str, key: &str, value: &str) -> usize {
    let needle = format!("{key}:");
    for (i, line) in src.lines().enumerate() {
        let t = line.trim_start().trim_start_matches('-').trim_start();
        if let Some(rest) = t.strip_prefix(needle.as_str()) {
            let v = rest.trim().trim_matches(|c| c == '"' || c == '\'');
            if v == value {
                return i + 1;
            }
        }
    }
    0
}

/// The 1-based line of the `id: <id>` entry for a rule, or 0.
fn rule_line(src: &str, id: &str) -> usize {
    named_line(src, "id", id)
}

/// The first line at or after `from` (1-based) inside the same rule that
/// holds `key:`.
fn key_line(src: &str, from: usize, key: &str) -> Option<usize> {
    if from == 0 {
        return None;
    }
    let needle = format!("{key}:");
    for (i, line) in src.lines().enumerate().skip(from - 1) {
        let t = line.trim_start().trim_start_matches('-').trim_start();
        if i + 1 > from && t.starts_with("id:") {
            return None;
        }
        if t.starts_with(&needle) {
            return Some(i + 1);
        }
    }
    None
}

pub(super) fn parse(file: &str, src: &str) -> Result<RuleSet, Error> {
    let raw: RawFile = serde_yaml::from_str(src).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        Error::Syntax {
            at: Location {
                file: file.to_owned(),
                line,
                column,
            },
            message: e.to_string(),
        }
    })?;
    let top = Ctx {
        file,
        src,
        rule: String::new(),
        line: 1,
    };
    let mut set = RuleSet::default();
    if let Some(s) = raw.settings {
        set.settings = settings(&top, s)?;
    }
    if let Some(l) = raw.ladder {
        let mut ladder = Ladder::default();
        if let Some(h) = &l.half_life {
            ladder.half_life_ms = duration_ms(h)
                .ok_or_else(|| top.err(Some("half_life"), format!("bad duration `{h}`")))?;
        }
        if let Some(q) = &l.quarantine {
            let c = &mut ladder.corroboration;
            c.sessions = q.sessions.unwrap_or(c.sessions).max(1);
            c.users = q.users.unwrap_or(c.users).max(1);
            if let Some(w) = &q.within {
                c.within_ms = duration_ms(w)
                    .ok_or_else(|| top.err(Some("within"), format!("bad duration `{w}`")))?;
            }
            c.after_refused_hold = q.after_refused_hold.unwrap_or(c.after_refused_hold);
            c.count_sourced = q.count_sourced.unwrap_or(c.count_sourced);
        }
        for s in l.steps {
            let action = Action::parse(&s.action)
                .ok_or_else(|| top.err(Some("steps"), format!("unknown action `{}`", s.action)))?;
            let labels_any = labels(&top, "labels_any", s.labels_any.as_ref())?;
            ladder.steps.push(LadderStep {
                min: s.risk,
                action,
                labels_any,
            });
        }
        set.ladder = ladder;
    }
    for r in raw.rules {
        let ctx = Ctx {
            file,
            src,
            line: rule_line(src, &r.id),
            rule: r.id.clone(),
        };
        if r.id.trim().is_empty() || r.id.contains(char::is_whitespace) {
            return Err(ctx.err(Some("id"), "rule id must be a non-empty word"));
        }
        if set.rules.iter().any(|x| x.id.as_str() == r.id) {
            return Err(ctx.err(None, "duplicate rule id"));
        }
        let action = Action::parse(&r.action).ok_or_else(|| {
            ctx.err(Some("action"), format!("unknown action `{}`; expected log, alert, redact, hold, throttle, deny or quarantine", r.action))
        })?;
        let severity = match &r.severity {
            Some(s) => Severity::parse(s)
                .ok_or_else(|| ctx.err(Some("severity"), format!("unknown severity `{s}`")))?,
            None => Severity::Medium,
        };
        let kinds = usize::from(r.when.is_some() && r.sequence.is_none() && r.threshold.is_none())
            + usize::from(r.sequence.is_some())
            + usize::from(r.threshold.is_some());
        if kinds != 1 || (r.when.is_some() && (r.sequence.is_some() || r.threshold.is_some())) {
            return Err(ctx.err(
                None,
                "a rule needs exactly one of `when`, `sequence` or `threshold`",
            ));
        }
        let kind = if let Some(w) = &r.when {
            RuleKind::Call(cond(&ctx, w)?)
        } else if let Some(s) = &r.sequence {
            RuleKind::Sequence(sequence(&ctx, s)?)
        } else if let Some(t) = &r.threshold {
            RuleKind::Threshold(threshold(&ctx, t)?)
        } else {
            return Err(ctx.err(
                None,
                "a rule needs exactly one of `when`, `sequence` or `threshold`",
            ));
        };
        if !r.enabled {
            continue;
        }
        set.rules.push(Rule {
            id: RuleId::new(&r.id),
            description: r.description.trim().to_owned(),
            action,
            risk: r.risk.unwrap_or_else(|| severity.default_risk()),
            severity,
            location: Location {
                file: file.to_owned(),
                line: ctx.line,
                column: 0,
            },
            kind,
        });
    }
    if set.rules.len() > usize::from(u16::MAX) {
        return Err(top.err(None, "too many rules"));
    }
    Ok(set)
}

/// Parses `500ms`, `30s`, `10m`, `2h`, `1d`.
pub(crate) fn duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mul = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(mul).filter(|v| *v > 0)
}

fn labels(ctx: &Ctx<'_>, key: &str, v: Option<&OneOrMany>) -> Result<LabelSet, Error> {
    let mut set = LabelSet::EMPTY;
    if let Some(v) = v {
        for s in v.items() {
            let l = Label::parse(s).ok_or_else(|| {
                ctx.err(
                    Some(key),
                    format!("unknown label `{s}`; expected private, secret, financial, untrusted, egress, write, destructive, money or identity"),
                )
            })?;
            set.insert(l);
        }
    }
    Ok(set)
}

fn origins(ctx: &Ctx<'_>, key: &str, v: Option<&OneOrMany>) -> Result<OriginSet, Error> {
    let mut o = OriginSet::default();
    if let Some(v) = v {
        for s in v.items() {
            if s == "injected" {
                o.injected = true;
            } else {
                match Label::parse(s).filter(|l| l.is_read()) {
                    Some(l) => o.labels.insert(l),
                    None => {
                        return Err(ctx.err(
                            Some(key),
                            format!("unknown origin `{s}`; expected private, secret, financial, untrusted or injected"),
                        ));
                    }
                }
            }
        }
    }
    Ok(o)
}

fn globs(v: Option<&OneOrMany>) -> Vec<Glob> {
    v.map(|v| v.items().into_iter().map(Glob::new).collect())
        .unwrap_or_default()
}

fn path(s: &str) -> Vec<String> {
    s.trim_start_matches("args.")
        .split('.')
        .map(str::to_owned)
        .collect()
}

fn key_of(ctx: &Ctx<'_>, key: &str, s: &str) -> Result<KeyOf, Error> {
    match s {
        "destination" | "recipient" => Ok(KeyOf::Destination),
        "tool" => Ok(KeyOf::Tool),
        _ if s.starts_with("args.") && s.len() > 5 => Ok(KeyOf::Arg(path(s))),
        _ => Err(ctx.err(
            Some(key),
            format!("unknown key `{s}`; expected destination, tool or args.<path>"),
        )),
    }
}

fn group(ctx: &Ctx<'_>, s: Option<&str>) -> Result<Group, Error> {
    match s.unwrap_or("session") {
        "session" => Ok(Group::Session),
        "agent" => Ok(Group::Agent),
        "user" => Ok(Group::User),
        other => Err(ctx.err(
            Some("by"),
            format!("unknown group `{other}`; expected session, agent or user"),
        )),
    }
}

fn regex(ctx: &Ctx<'_>, key: &str, s: &str) -> Result<Regex, Error> {
    regex::RegexBuilder::new(s)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| ctx.err(Some(key), format!("bad regex `{s}`: {e}")))
}

fn cond(ctx: &Ctx<'_>, r: &RawCond) -> Result<Cond, Error> {
    let mut c = Cond {
        tools: globs(r.tool.as_ref()),
        not_tools: globs(r.not_tool.as_ref()),
        labels: labels(ctx, "labels", r.labels.as_ref())?,
        labels_any: labels(ctx, "labels_any", r.labels_any.as_ref())?,
        not_labels: labels(ctx, "not_labels", r.not_labels.as_ref())?,
        session_labels: labels(ctx, "session_labels", r.session_labels.as_ref())?,
        session_labels_any: labels(ctx, "session_labels_any", r.session_labels_any.as_ref())?,
        not_session_labels: labels(ctx, "not_session_labels", r.not_session_labels.as_ref())?,
        arg_from: origins(ctx, "arg_from", r.arg_from.as_ref())?,
        carries: origins(ctx, "carries", r.carries.as_ref())?,
        risk_gte: r.risk_gte,
        injection_seen: r.injection_seen,
        first_use: r.first_use,
        from_step: r.from_step,
        intent_aligned: r.intent_aligned,
        not_intent_aligned: r.not_intent_aligned.unwrap_or(false),
        ..Cond::default()
    };
    if let Some(roles) = &r.instructed {
        for role in roles.items() {
            c.instructed |= match role {
                "destination" => crate::facts::ROLE_DESTINATION,
                "object" => crate::facts::ROLE_OBJECT,
                "amount" => crate::facts::ROLE_AMOUNT,
                "payload" => crate::facts::ROLE_PAYLOAD,
                other => {
                    return Err(ctx.err(
                        Some("instructed"),
                        format!(
                            "unknown role `{other}`; expected destination, object, amount or payload"
                        ),
                    ));
                }
            };
        }
    }
    if let Some(t) = &r.args_text {
        c.args_text = Some(regex(ctx, "args_text", t)?);
    }
    if let Some(sh) = &r.shell {
        for f in sh.items() {
            let flag = crate::shell::ShellFlag::parse(f).ok_or_else(|| {
                ctx.err(
                    Some("shell"),
                    format!(
                        "unknown shell fact `{f}`; expected {}",
                        crate::shell::ShellFlag::ALL
                            .map(crate::shell::ShellFlag::as_str)
                            .join(", ")
                    ),
                )
            })?;
            c.shell.insert(flag);
        }
    }
    if let Some(b) = &r.baseline {
        for x in b.items() {
            match x {
                "amount" => c.baseline.amount = true,
                "count" => c.baseline.count = true,
                other => {
                    return Err(ctx.err(
                        Some("baseline"),
                        format!("unknown baseline `{other}`; expected amount or count"),
                    ));
                }
            }
        }
    }
    if let Some(s) = &r.subject {
        c.subject = Some(Box::new(subject_pred(ctx, s)?));
    }
    if let Some(d) = &r.detect {
        for k in d.items() {
            c.detect.push(Kind::parse(k).ok_or_else(|| {
                ctx.err(
                    Some("detect"),
                    format!("unknown detector class `{k}`; expected {}", kinds()),
                )
            })?);
        }
    }
    if let Some(d) = &r.destination {
        c.dest = Some(DestPred {
            from: origins(ctx, "from", d.from.as_ref())?,
            new: d.new,
            in_intent: d.in_intent,
            trusted_origin: d.trusted_origin,
            external: d.external,
        });
    }
    for (k, a) in &r.args {
        let p = path(k);
        let mut ops = Vec::new();
        if let Some(e) = a.exists {
            ops.push(ArgOp::Exists(e));
        }
        if let Some(v) = &a.eq {
            ops.push(ArgOp::Eq(v.clone()));
        }
        if let Some(v) = &a.ne {
            ops.push(ArgOp::Ne(v.clone()));
        }
        if let Some(v) = &a.in_ {
            ops.push(ArgOp::In(v.clone()));
        }
        if let Some(m) = &a.matches {
            ops.push(ArgOp::Matches(regex(ctx, "matches", m)?));
        }
        if let Some(s) = &a.contains {
            ops.push(ArgOp::Contains(s.to_lowercase()));
        }
        if a.gt.is_some() || a.gte.is_some() || a.lt.is_some() || a.lte.is_some() {
            ops.push(ArgOp::Cmp {
                gt: a.gt,
                gte: a.gte,
                lt: a.lt,
                lte: a.lte,
            });
        }
        if ops.is_empty() {
            return Err(ctx.err(Some(k), format!("argument `{k}` has no predicate")));
        }
        c.args.extend(ops.into_iter().map(|op| ArgPred {
            path: p.clone(),
            op,
        }));
    }
    Ok(c)
}

fn subject_pred(ctx: &Ctx<'_>, s: &RawSubject) -> Result<super::SubjectPred, Error> {
    use crate::subject::{BindSource, Owner};
    let owners = |key: &str, v: Option<&OneOrMany>| -> Result<Vec<Owner>, Error> {
        v.map(|v| v.items())
            .unwrap_or_default()
            .into_iter()
            .map(|x| {
                Owner::parse(x).ok_or_else(|| {
                    ctx.err(
                        Some(key),
                        format!("unknown owner `{x}`; expected own, public, unknown or other"),
                    )
                })
            })
            .collect()
    };
    let bound_by = s
        .bound_by
        .as_ref()
        .map(|v| v.items())
        .unwrap_or_default()
        .into_iter()
        .map(|x| {
            BindSource::parse(x).ok_or_else(|| {
                ctx.err(
                    Some("bound_by"),
                    format!("unknown subject source `{x}`; expected user, intent or lookup"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(super::SubjectPred {
        bound: s.bound,
        bound_by,
        arg: owners("arg", s.arg.as_ref())?,
        object: owners("object", s.object.as_ref())?,
        payee: owners("payee", s.payee.as_ref())?,
        other: s.other,
        foreign: s.foreign,
        others_gte: s.others_gte,
    })
}

fn sequence(ctx: &Ctx<'_>, s: &RawSeq) -> Result<Sequence, Error> {
    if !(2..=8).contains(&s.steps.len()) {
        return Err(ctx.err(Some("steps"), "a sequence needs 2 to 8 steps"));
    }
    let by = group(ctx, s.by.as_deref())?;
    let within_ms = duration_ms(&s.within)
        .ok_or_else(|| ctx.err(Some("within"), format!("bad duration `{}`", s.within)))?;
    let join = s
        .join
        .as_deref()
        .map(|j| key_of(ctx, "join", j))
        .transpose()?;
    let mut steps = Vec::new();
    for (i, st) in s.steps.iter().enumerate() {
        let c = cond(ctx, st)?;
        if let Some(f) = c.from_step {
            if f >= i || f >= 4 {
                return Err(ctx.err(
                    Some("from_step"),
                    format!("step {i}: `from_step: {f}` must name an earlier step (0 to 3)"),
                ));
            }
            if by != Group::Session {
                return Err(ctx.err(Some("from_step"), "`from_step` needs `by: session`"));
            }
        }
        steps.push(c);
    }
    let until = s.until.as_ref().map(|u| cond(ctx, u)).transpose()?;
    Ok(Sequence {
        by,
        within_ms,
        join,
        steps,
        until,
    })
}

fn threshold(ctx: &Ctx<'_>, t: &RawThreshold) -> Result<Threshold, Error> {
    let by = group(ctx, t.by.as_deref())?;
    let per = t
        .per
        .as_deref()
        .map(|p| key_of(ctx, "per", p))
        .transpose()?;
    let window_ms = duration_ms(&t.window)
        .ok_or_else(|| ctx.err(Some("window"), format!("bad duration `{}`", t.window)))?;
    let when = cond(ctx, &t.when)?;
    if when.from_step.is_some() {
        return Err(ctx.err(Some("from_step"), "`from_step` is only for sequence steps"));
    }
    let (measure, gte) = match (t.count, &t.sum, &t.count_distinct) {
        (Some(n), None, None) => {
            if t.gte.is_some() {
                return Err(ctx.err(Some("gte"), "`count: N` already is the limit; drop `gte`"));
            }
            (Measure::Count, f64::from(n))
        }
        (None, Some(f), None) => (
            Measure::Sum(path(f)),
            t.gte
                .ok_or_else(|| ctx.err(Some("sum"), "`sum` needs `gte`"))?,
        ),
        (None, None, Some(k)) => (
            Measure::Distinct(key_of(ctx, "count_distinct", k)?),
            t.gte
                .ok_or_else(|| ctx.err(Some("count_distinct"), "`count_distinct` needs `gte`"))?,
        ),
        _ => {
            return Err(ctx.err(
                Some("threshold"),
                "a threshold needs exactly one of `count`, `sum` or `count_distinct`",
            ));
        }
    };
    if gte <= 0.0 || !gte.is_finite() {
        return Err(ctx.err(Some("gte"), "the limit must be a positive number"));
    }
    Ok(Threshold {
        when,
        by,
        per,
        window_ms,
        measure,
        gte,
    })
}
