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
//! poison each other's state. A client whose credential the operator marks
//! `trusted_intent` may pass the user's own request as
//! `_meta["io.castellan/intent"]`; values in it count as trusted. From any
//! other credential the intent is ignored for judgement and alerted; either
//! way the decision record notes it (`facts.intent`: trusted or not, and
//! its digest).

//!
//! Layout: `compile` builds the judge; this file keeps it (reloads,
//! learnt tools); `decide` judges calls; `inspect` shows answers to the
//! judge; [`store`] is the seam to the behavioural state (`memory` its
//! in-process implementation) and `state` what the gateway does with it;
//! `holds` is the approval queue; `record` records decisions (metrics,
//! logs, audit, alerts) in one place; `views` is what operators see.

mod compile;
mod decide;
mod holds;
mod inspect;
mod judged;
mod memory;
mod record;
mod state;
pub mod store;
#[cfg(test)]
mod tests;
mod views;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use castellan_audit::Writer;
use castellan_config::JudgeConfig;
use castellan_judge::{
    AgentId, Call, CallKind, Catalog, Judge, Label, LabelOverride, LabelSet, SessionKey, ToolDef,
    UserId,
};
use serde_json::{Value, json};

pub use compile::compile_judge;
pub use decide::STATE_UNAVAILABLE;
use holds::Held;
pub use holds::HoldView;
pub use inspect::Screened;
pub use judged::Judged;
pub use state::ReleaseView;
use store::{MemoryStore, StateStore};
use views::Activity;
pub use views::{AgentView, QuarantineView, RecentAction, SessionView};

use crate::error::Error;
use crate::identity::Principal;

/// `_meta` key naming a modern agent's behavioural session.
pub const META_SESSION: &str = "io.castellan/session";
/// `_meta` key carrying the user's own request (trusted intent).
pub const META_INTENT: &str = "io.castellan/intent";
/// `_meta` key on refusals and results: the decision.
pub const META_DECISION: &str = "io.castellan/decision";
/// The alert rule id for an intent sent from an untrusted credential.
pub const UNTRUSTED_INTENT: &str = "untrusted-intent";

/// The judge and the state it needs between calls.
#[derive(Debug)]
pub struct Behaviour {
    judge: RwLock<Judge>,
    defs: Mutex<BTreeMap<(String, String), ToolDef>>,
    /// Labels the gateway declared per upstream (OpenAPI operations), kept
    /// across reloads.
    declared: Mutex<BTreeMap<String, Vec<LabelOverride>>>,
    /// Where the behavioural state lives between calls.
    state: Arc<dyn StateStore>,
    /// What operators see of recent decisions, in this process.
    activity: Mutex<Activity>,
    audit: Option<Writer>,
    ids: std::sync::atomic::AtomicU64,
    /// How long a held call waits, in milliseconds; zero refuses at once.
    /// A reload changes it for the holds that start afterwards.
    hold_timeout_ms: std::sync::atomic::AtomicU64,
    held: Arc<Mutex<HashMap<String, Held>>>,
    /// The last time the policy failed to validate against learnt tools.
    policy_error: Mutex<Option<String>>,
    /// Whether an operator can answer holds (the admin API is on).
    pub approvals: std::sync::atomic::AtomicBool,
    /// The admin API's base URL, once it listens: hold log lines say how
    /// to answer.
    pub admin_url: std::sync::OnceLock<String>,
    /// Recent alerts and their destinations.
    pub alerts: crate::alerts::Alerts,
    /// `server/tool` names that get their own metrics label.
    metric_tools: RwLock<std::collections::HashSet<String>>,
    /// Bumped after every change of the judge (reload, newly learnt
    /// tools): what [`Behaviour::may_list`] answers depends on nothing else.
    generation: std::sync::atomic::AtomicU64,
    /// Where learned amount and count baselines outlive the process.
    baselines: Option<Box<dyn crate::baselines::BaselineStore>>,
}

/// Most tools with their own `tool` label in metrics; the rest are `other`.
pub const METRIC_TOOLS: usize = 256;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Behaviour {
    /// The live judge with its audit log (`None` for offline tools that
    /// judge nothing, such as `castellan tools`).
    pub fn new(cfg: &JudgeConfig, audit: Option<Writer>) -> Result<Behaviour, Error> {
        let (judge, _) = compile_judge(cfg)?;
        Ok(Behaviour {
            judge: RwLock::new(judge),
            defs: Mutex::new(BTreeMap::new()),
            declared: Mutex::new(BTreeMap::new()),
            state: Arc::new(MemoryStore::default()),
            activity: Mutex::new(Activity::default()),
            audit,
            ids: std::sync::atomic::AtomicU64::new(0),
            hold_timeout_ms: std::sync::atomic::AtomicU64::new(millis(cfg.hold_timeout)),
            held: Arc::new(Mutex::new(HashMap::new())),
            policy_error: Mutex::new(None),
            approvals: std::sync::atomic::AtomicBool::new(false),
            admin_url: std::sync::OnceLock::new(),
            alerts: crate::alerts::Alerts::default(),
            metric_tools: RwLock::new(std::collections::HashSet::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            baselines: None,
        })
    }

    /// Keeps learned baselines in `store`: what it holds is loaded now, and
    /// [`Behaviour::save_baselines`] (periodically, and [`Behaviour::flush`]
    /// at shutdown) writes them back. A store that cannot be read is an
    /// error naming its file.
    pub fn with_baselines(
        mut self,
        store: Box<dyn crate::baselines::BaselineStore>,
    ) -> Result<Behaviour, Error> {
        let saved = store.load()?;
        // Before any call: the in-process state starts from what was saved.
        self.state = Arc::new(MemoryStore::with_learned(saved));
        self.baselines = Some(store);
        Ok(self)
    }

    /// Writes every agent's learned baselines to the store, if any.
    pub async fn save_baselines(&self) {
        let Some(store) = &self.baselines else { return };
        let agents: Vec<(String, castellan_judge::baseline::Learned)> =
            match self.state.learned().await {
                Ok(learned) => learned
                    .into_iter()
                    .map(|(id, l)| (id.as_str().to_owned(), l))
                    .collect(),
                Err(e) => {
                    tracing::error!(error = %e, "learned baselines not saved");
                    return;
                }
            };
        if agents.is_empty() {
            return;
        }
        if let Err(e) = store.save(&agents) {
            tracing::error!(error = %e, "learned baselines not saved");
        }
    }

    /// Sends alerts to these destinations instead of only keeping them.
    pub fn with_alerts(mut self, alerts: crate::alerts::Alerts) -> Behaviour {
        self.alerts = alerts;
        self
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
    pub fn reload(&self, cfg: &JudgeConfig) -> Result<(), Error> {
        let (fresh, _) = compile_judge(cfg)?;
        let catalog = self.catalog_from(fresh.catalog(), &lock(&self.defs));
        let known = !catalog.defs().is_empty();
        let (next, error) = fresh.with_catalog_checked(catalog);
        // Against the tools learnt so far the new policy must validate; with
        // none learnt yet it stays pending until they are.
        if let Some(e) = error.filter(|_| known) {
            return Err(Error::Judge(e));
        }
        match self.judge.write() {
            Ok(mut j) => *j = next,
            Err(p) => *p.into_inner() = next,
        }
        self.judge_changed();
        self.hold_timeout_ms.store(
            millis(cfg.hold_timeout),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(())
    }

    /// How long a held call waits for a human now.
    pub fn hold_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.hold_timeout_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// The judge's generation: equal generations mean the same judge, so
    /// the same [`Behaviour::may_list`] answers. Read before the judge, so
    /// a change racing with the read makes the generation look older,
    /// never newer.
    pub(crate) fn judge_generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Called after every write of the judge.
    fn judge_changed(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Declares labels for the tools of upstream `server` (what the gateway
    /// knows of them, such as an OpenAPI operation's method and path),
    /// replacing its earlier declaration. The operator's `judge.labels`
    /// still apply after them.
    pub fn declare_labels(&self, server: &str, tools: &[(String, Vec<&str>)]) {
        let overrides = tools
            .iter()
            .map(|(tool, names)| {
                let add = LabelSet::of(
                    &names
                        .iter()
                        .filter_map(|n| Label::parse(n))
                        .collect::<Vec<_>>(),
                );
                LabelOverride::new(&format!("{server}/{tool}"), add, LabelSet::EMPTY)
            })
            .collect();
        lock(&self.declared).insert(server.to_owned(), overrides);
        let judge = self.judge();
        let catalog = self.catalog_from(judge.catalog(), &lock(&self.defs));
        let (next, _) = judge.with_catalog_checked(catalog);
        if let Ok(mut j) = self.judge.write() {
            *j = next;
        }
        self.judge_changed();
    }

    /// `base`'s overrides and annotations, the labels declared so far, and
    /// the tools `defs` learnt: the catalog every change of the judge
    /// rebuilds. (Lock order: `defs`, then `declared`.)
    fn catalog_from(&self, base: &Catalog, defs: &BTreeMap<(String, String), ToolDef>) -> Catalog {
        let declared = lock(&self.declared).values().flatten().cloned().collect();
        let mut catalog = base.without_tools().with_declared(declared);
        for d in defs.values() {
            catalog.insert(d.clone());
        }
        catalog
    }

    /// Learns an upstream's tool definitions (from its `tools/list`).
    pub fn learn_tools<'a>(&self, server: &str, tools: impl IntoIterator<Item = &'a Value>) {
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
            if let Ok(mut m) = self.metric_tools.write()
                && m.len() < METRIC_TOOLS
            {
                m.insert(format!("{server}/{}", def.name));
            }
            let key = (def.server.clone(), def.name.clone());
            if defs.get(&key) != Some(&def) {
                defs.insert(key, def);
                changed = true;
            }
        }
        if changed {
            // The running judge's overrides and argument annotations.
            let judge = self.judge();
            let catalog = self.catalog_from(judge.catalog(), &defs);
            let (next, error) = judge.with_catalog_checked(catalog);
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
            self.judge_changed();
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

    /// Whether the agent may see an item in a list: a tool (`list_tools`),
    /// a prompt (`get_prompt`) or a resource (`read_resource`); see
    /// [`Judge::may_list`].
    pub fn may_list(
        &self,
        principal: &Principal,
        kind: CallKind,
        server: &str,
        tool: &str,
    ) -> bool {
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
            kind,
            server: Some(server),
            tool,
            args: &args,
            args_text: None,
            intent: None,
        };
        judge.may_list(&call)
    }

    fn next_id(&self, now: u64) -> String {
        // Time-ordered: milliseconds, then a process-wide counter.
        let n = self.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{now:013x}-{n:08x}")
    }

    /// Every tool learnt so far with its labels and where each came from.
    pub fn explain(&self) -> Vec<castellan_judge::ToolLabels> {
        self.judge().catalog().explain()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
