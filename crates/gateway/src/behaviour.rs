//! The judge on the live path: builds the judge from the configuration,
//! keeps the behavioural state of sessions, agents and users, learns tool
//! definitions from `tools/list`, judges each call before it goes upstream,
//! shows each result to the judge before the agent sees it, and records
//! every decision in the audit log.
//!
//! Behavioural sessions: a legacy MCP session is one; a 2026-07-28 agent
//! names its session with `_meta["io.castellan/session"]` (or the
//! `Castellan-Session` header), otherwise all its stateless calls share one
//! rolling session. Names are scoped to the agent, so agents cannot read or
//! poison each other's state. A trusted client may pass the user's own
//! request as `_meta["io.castellan/intent"]`; values in it count as trusted.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use castellan_audit::{Record, Writer};
use castellan_config::JudgeConfig;
use castellan_judge::{
    AgentId, AggregateState, Call, CallKind, Catalog, Judge, Label, LabelOverride, LabelSet,
    Millis, Policy, RuleSet, SessionKey, SessionState, StateMut, ToolDef, ToolResult, UserId,
    Verdict,
};
use serde_json::{Value, json};

use crate::identity::Principal;

/// `_meta` key naming a modern agent's behavioural session.
pub const META_SESSION: &str = "io.castellan/session";
/// `_meta` key carrying the user's own request (trusted intent).
pub const META_INTENT: &str = "io.castellan/intent";
/// `_meta` key on refusals and results: the decision.
pub const META_DECISION: &str = "io.castellan/decision";

#[derive(Debug, Default)]
struct States {
    sessions: HashMap<SessionKey, SessionState>,
    agents: HashMap<AgentId, AggregateState>,
    users: HashMap<UserId, AggregateState>,
}

/// What a call is about, owned, so its result can be judged later.
#[derive(Debug)]
struct Subject {
    agent: AgentId,
    user: Option<UserId>,
    attributes: Arc<[(String, String)]>,
    session: SessionKey,
    server: String,
    tool: String,
    kind: CallKind,
    args: Value,
    intent: Option<String>,
}

/// A call that was judged, kept until its result has been inspected.
#[derive(Debug)]
pub struct Judged {
    /// The decision id (also the audit record id).
    pub id: String,
    subject: Subject,
    /// The verdict.
    pub verdict: Verdict,
}

impl Subject {
    fn call(&self) -> Call<'_> {
        Call {
            agent: &self.agent,
            user: self.user.as_ref(),
            attributes: &self.attributes,
            session: &self.session,
            kind: self.kind,
            server: Some(&self.server),
            tool: &self.tool,
            args: &self.args,
            intent: self.intent.as_deref(),
        }
    }
}

impl Judged {
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

/// A call waiting for a human.
#[derive(Debug)]
struct Held {
    judged: Arc<Judged>,
    since_ms: u64,
    answer: tokio::sync::oneshot::Sender<bool>,
}

/// The judge and the state it needs between calls.
#[derive(Debug)]
pub struct Behaviour {
    judge: RwLock<Judge>,
    overrides: RwLock<Vec<LabelOverride>>,
    defs: Mutex<BTreeMap<(String, String), ToolDef>>,
    states: Mutex<States>,
    audit: Option<Writer>,
    ids: std::sync::atomic::AtomicU64,
    /// How long a held call waits; zero refuses at once.
    pub hold_timeout: std::time::Duration,
    held: Mutex<HashMap<String, Held>>,
    /// The last time the policy failed to validate against learnt tools.
    policy_error: Mutex<Option<String>>,
    /// Whether an operator can answer holds (the admin API is on).
    pub approvals: std::sync::atomic::AtomicBool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Compiles the judge the configuration describes. Every error names the
/// file and line at fault.
pub fn compile_judge(cfg: &JudgeConfig) -> Result<(Judge, Vec<LabelOverride>), String> {
    let mut overrides = Vec::with_capacity(cfg.labels.len());
    for l in &cfg.labels {
        let parse = |names: &[String]| -> Result<LabelSet, String> {
            let mut set = LabelSet::EMPTY;
            for n in names {
                set.insert(Label::parse(n).ok_or_else(|| {
                    format!(
                        "judge.labels `{}`: unknown label `{n}`; known: {}",
                        l.matches,
                        Label::ALL
                            .iter()
                            .map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?);
            }
            Ok(set)
        };
        overrides.push(LabelOverride::new(
            &l.matches,
            parse(&l.add)?,
            parse(&l.remove)?,
        ));
    }
    let catalog = Catalog::new(overrides.clone());
    let mut rules = if cfg.default_pack {
        castellan_judge::pack::rules().map_err(|e| e.to_string())?
    } else {
        RuleSet::from_yaml("<empty>", "rules: []").map_err(|e| e.to_string())?
    };
    for file in &cfg.rules {
        let text =
            std::fs::read_to_string(file).map_err(|e| format!("{file}: cannot read: {e}"))?;
        rules
            .merge(RuleSet::from_yaml(file, &text).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let policy = match &cfg.policy {
        Some(file) => {
            let text =
                std::fs::read_to_string(file).map_err(|e| format!("{file}: cannot read: {e}"))?;
            Policy::with_attributes(&catalog, &cfg.attributes, file, &text)
                .map_err(|e| e.to_string())?
        }
        None => Policy::with_attributes(
            &catalog,
            &cfg.attributes,
            castellan_judge::pack::POLICY_FILE,
            castellan_judge::pack::POLICY,
        )
        .map_err(|e| e.to_string())?,
    };
    Ok((Judge::new(catalog, rules).with_policy(policy), overrides))
}

impl Behaviour {
    /// The live judge with its audit log (`None` for offline tools that
    /// judge nothing, such as `castellan tools`).
    pub fn new(cfg: &JudgeConfig, audit: Option<Writer>) -> Result<Behaviour, String> {
        let (judge, overrides) = compile_judge(cfg)?;
        Ok(Behaviour {
            judge: RwLock::new(judge),
            overrides: RwLock::new(overrides),
            defs: Mutex::new(BTreeMap::new()),
            states: Mutex::new(States::default()),
            audit,
            ids: std::sync::atomic::AtomicU64::new(0),
            hold_timeout: cfg.hold_timeout,
            held: Mutex::new(HashMap::new()),
            policy_error: Mutex::new(None),
            approvals: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn judge(&self) -> Judge {
        match self.judge.read() {
            Ok(j) => j.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces rules, policy and label overrides with a new configuration's,
    /// keeping the tools learnt so far and all behavioural state. A broken
    /// configuration is reported and the running judge stays in force.
    pub fn reload(&self, cfg: &JudgeConfig) -> Result<(), String> {
        let (fresh, overrides) = compile_judge(cfg)?;
        let mut catalog = Catalog::new(overrides.clone());
        for d in lock(&self.defs).values() {
            catalog.insert(d.clone());
        }
        let known = !catalog.defs().is_empty();
        let (next, error) = fresh.with_catalog_checked(catalog);
        // Against the tools learnt so far the new policy must validate; with
        // none learnt yet it stays pending until they are.
        if let Some(e) = error.filter(|_| known) {
            return Err(e.to_string());
        }
        match self.overrides.write() {
            Ok(mut o) => *o = overrides,
            Err(p) => *p.into_inner() = overrides,
        }
        match self.judge.write() {
            Ok(mut j) => *j = next,
            Err(p) => *p.into_inner() = next,
        }
        Ok(())
    }

    /// Learns an upstream's tool definitions (from its `tools/list`).
    pub fn learn_tools(&self, server: &str, tools: &[Value]) {
        let mut defs = match self.defs.lock() {
            Ok(d) => d,
            Err(p) => p.into_inner(),
        };
        let mut changed = false;
        for t in tools {
            let Ok(mut def) = serde_json::from_value::<ToolDef>(json!({
                "server": server,
                "name": t.get("name").cloned().unwrap_or(Value::Null),
                "description": t.get("description").cloned().unwrap_or(json!("")),
                "inputSchema": t.get("inputSchema").cloned().unwrap_or(Value::Null),
                "annotations": t.get("annotations").cloned().unwrap_or(json!({})),
            })) else {
                continue;
            };
            def.server = server.to_owned();
            let key = (def.server.clone(), def.name.clone());
            if defs.get(&key) != Some(&def) {
                defs.insert(key, def);
                changed = true;
            }
        }
        if changed {
            let overrides = match self.overrides.read() {
                Ok(o) => o.clone(),
                Err(p) => p.into_inner().clone(),
            };
            let mut catalog = Catalog::new(overrides);
            for d in defs.values() {
                catalog.insert(d.clone());
            }
            let (next, error) = self.judge().with_catalog_checked(catalog);
            if let Some(e) = &error {
                tracing::error!(error = %e, "the policy does not validate against the learnt tools; the running policy stays in force");
            }
            *lock(&self.policy_error) = error.map(|e| e.to_string());
            if let Some(p) = next.policy_pending() {
                tracing::error!(
                    reason = p,
                    "the policy refuses every call until it validates"
                );
            }
            if let Ok(mut j) = self.judge.write() {
                *j = next;
            }
        }
    }

    /// Why the policy does not fully apply: it failed to validate against
    /// the learnt tools, or it still refuses every call because its
    /// `context.args` conditions never validated.
    pub fn policy_problem(&self) -> Option<String> {
        lock(&self.policy_error)
            .clone()
            .or_else(|| self.judge().policy_pending().map(str::to_owned))
    }

    /// Whether the agent may see a tool in `tools/list` (the policy's
    /// `list_tools` action; see [`Judge::may_list`]).
    pub fn may_list(&self, principal: &Principal, server: &str, tool: &str) -> bool {
        let judge = match self.judge.read() {
            Ok(j) => j,
            Err(p) => p.into_inner(),
        };
        let agent = AgentId::new(&*principal.agent);
        let user = principal.user.as_deref().map(UserId::new);
        let session = SessionKey::new("");
        let args = Value::Null;
        let call = Call {
            agent: &agent,
            user: user.as_ref(),
            attributes: &principal.attributes,
            session: &session,
            kind: CallKind::ListTools,
            server: Some(server),
            tool,
            args: &args,
            intent: None,
        };
        judge.may_list(&call)
    }

    fn next_id(&self, now: u64) -> String {
        // Time-ordered: milliseconds, then a process-wide counter.
        let n = self.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{now:013x}-{n:08x}")
    }

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
        let started = Instant::now();
        let now = now_ms();
        let judge = self.judge();
        let subject = Subject {
            agent: AgentId::new(&*principal.agent),
            user: principal.user.as_deref().map(UserId::new),
            attributes: principal.attributes.clone(),
            session: SessionKey::new(format!("{}/{session}", principal.agent)),
            server: server.to_owned(),
            tool: tool.to_owned(),
            kind,
            args,
            intent,
        };
        let verdict = self.with_state(&subject, |state| {
            judge.judge_call(state, &subject.call(), Millis(now))
        });
        let judged = Judged {
            id: self.next_id(now),
            subject,
            verdict,
        };
        let elapsed = started.elapsed();
        let latency = elapsed.as_micros() as u64;
        metrics::histogram!("castellan_judge_seconds").record(elapsed.as_secs_f64());
        metrics::counter!("castellan_decisions_total", "decision" => judged.verdict.decision.as_str(), "upstream" => judged.subject.server.clone()).increment(1);
        for r in &judged.verdict.reasons {
            metrics::counter!("castellan_rule_firings_total", "rule" => r.rule.as_str().to_owned())
                .increment(1);
        }
        if judged.verdict.alert || !judged.verdict.decision.forwards() {
            tracing::warn!(decision_id = %judged.id, agent = %principal.agent, tool, decision = judged.verdict.decision.as_str(), rules = ?judged.verdict.rule_ids(), reason = %judged.verdict.summary(), "call flagged");
        }
        self.record(&judged, now, latency);
        Arc::new(judged)
    }

    fn with_state<T>(&self, subject: &Subject, f: impl FnOnce(StateMut<'_>) -> T) -> T {
        let mut states = match self.states.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let States {
            sessions,
            agents,
            users,
        } = &mut *states;
        let session = sessions.entry(subject.session.clone()).or_default();
        let agent = agents.entry(subject.agent.clone()).or_default();
        let user = subject
            .user
            .as_ref()
            .map(|u| users.entry(u.clone()).or_default());
        f(StateMut {
            session,
            agent,
            user,
        })
    }

    /// Shows a result to the judge (taint, provenance, redactions) and
    /// returns the result the agent may see.
    pub fn inspect(&self, judged: &Judged, result: &mut Value) {
        let judge = self.judge();
        let is_error = result
            .get("isError")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let rv = self.with_state(&judged.subject, |state| {
            judge.observe_result(
                state,
                &judged.subject.call(),
                &judged.verdict,
                &ToolResult {
                    value: result,
                    is_error,
                },
                Millis(now_ms()),
            )
        });
        if let Some(phrase) = rv.injection {
            tracing::warn!(decision_id = %judged.id, agent = %judged.subject.agent.as_str(), tool = %judged.subject.tool, phrase, "result carries instructions aimed at the agent");
        }
        // Redact from the end of each string so earlier ranges stay valid.
        let mut redactions = rv.redactions;
        redactions
            .sort_by(|a, b| (a.pointer.as_str(), b.start).cmp(&(b.pointer.as_str(), a.start)));
        for r in redactions {
            let target = if r.pointer.is_empty() {
                Some(&mut *result)
            } else {
                result.pointer_mut(&r.pointer)
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

    /// Waits for an operator to approve a held call, at most
    /// `hold_timeout`; refuses (fails closed) when nobody can answer, when
    /// the operator refuses, or when the time runs out.
    pub async fn await_approval(&self, judged: &Arc<Judged>) -> bool {
        if self.hold_timeout.is_zero() || !self.approvals.load(std::sync::atomic::Ordering::Relaxed)
        {
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
        tracing::warn!(decision_id = %judged.id, agent = %judged.subject.agent.as_str(), tool = %judged.subject.tool, reason = %judged.verdict.summary(), "call held for approval");
        let approved = matches!(
            tokio::time::timeout(self.hold_timeout, rx).await,
            Ok(Ok(true))
        );
        lock(&self.held).remove(&judged.id);
        if approved {
            self.approved(judged);
        }
        tracing::info!(decision_id = %judged.id, approved, "hold answered");
        approved
    }

    /// Calls waiting for approval.
    pub fn holds(&self) -> Vec<Value> {
        lock(&self.held)
            .values()
            .map(|h| {
                let mut v = h.judged.explanation();
                v["agent"] = json!(h.judged.subject.agent.as_str());
                v["server"] = json!(h.judged.subject.server);
                v["tool"] = json!(h.judged.subject.tool);
                v["arguments"] = shape_of(&h.judged.subject.args);
                v["since_ms"] = json!(h.since_ms);
                v
            })
            .collect()
    }

    /// Answers a held call; false if there is no such hold.
    pub fn answer_hold(&self, id: &str, approve: bool) -> bool {
        match lock(&self.held).remove(id) {
            Some(h) => h.answer.send(approve).is_ok(),
            None => false,
        }
    }

    /// A held call approved by a human joins the baseline.
    pub fn approved(&self, judged: &Judged) {
        let judge = self.judge();
        self.with_state(&judged.subject, |state| {
            judge.record_approved(state, &judged.subject.call(), &judged.verdict)
        });
    }

    /// Every tool learnt so far with its labels and where each came from.
    pub fn explain(&self) -> Vec<castellan_judge::ToolLabels> {
        self.judge().catalog().explain()
    }

    /// Drops a behavioural session's state (its MCP session ended). The
    /// agent's and user's aggregates, which outlive sessions, stay.
    pub fn forget_session(&self, agent: &str, session: &str) {
        lock(&self.states)
            .sessions
            .remove(&SessionKey::new(format!("{agent}/{session}")));
    }

    /// Releases a quarantined agent.
    pub fn release(&self, agent: &str) -> bool {
        let mut states = match self.states.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        match states.agents.get_mut(&AgentId::new(agent)) {
            Some(a) if a.quarantine().is_some() => {
                a.release();
                true
            }
            _ => false,
        }
    }

    fn record(&self, j: &Judged, now: u64, latency_us: u64) {
        let record = Record {
            id: j.id.clone(),
            at_ms: now,
            agent: j.subject.agent.as_str().to_owned(),
            user: j.subject.user.as_ref().map(|u| u.as_str().to_owned()),
            session: j.subject.session.as_str().to_owned(),
            upstream: j.subject.server.clone(),
            method: match j.subject.kind {
                CallKind::CallTool => "tools/call",
                CallKind::ListTools => "tools/list",
                CallKind::ReadResource => "resources/read",
                CallKind::GetPrompt => "prompts/get",
            }
            .into(),
            target: j.subject.tool.clone(),
            args_digest: blake3::hash(&serde_json::to_vec(&j.subject.args).unwrap_or_default())
                .to_hex()
                .to_string(),
            args_redacted: shape_of(&j.subject.args),
            decision: j.verdict.decision.as_str().into(),
            rules: j
                .verdict
                .rule_ids()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            reason: j.verdict.summary(),
            facts: json!({
                "labels": j.verdict.labels.to_string(),
                "provenance": j.verdict.provenance.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "reasons": j.verdict.reasons,
            }),
            risk_before: j.verdict.risk_before.0,
            risk_after: j.verdict.risk_after.0,
            latency_us,
        };
        let Some(audit) = &self.audit else { return };
        if let Err(e) = audit.append(record) {
            tracing::error!(error = %e, decision_id = %j.id, "audit record not written");
        }
    }

    /// Waits until every record appended so far is on disk.
    pub fn flush(&self) {
        if let Some(Err(e)) = self.audit.as_ref().map(Writer::flush) {
            tracing::error!(error = %e, "audit flush failed");
        }
    }

    /// Whether the audit log must hold a record before the agent's answer.
    pub fn audit_strict(&self) -> bool {
        self.audit
            .as_ref()
            .is_some_and(|a| a.durability() == castellan_audit::Durability::Strict)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The arguments with every string replaced by its length: the audit log
/// keeps the shape of a call without the data in it.
fn shape_of(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(format!("<{} chars>", s.chars().count())),
        Value::Array(a) => Value::Array(a.iter().map(shape_of).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), shape_of(v))).collect())
        }
        other => other.clone(),
    }
}
