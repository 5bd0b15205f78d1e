//! The judge: one call in, one verdict out.
//!
//! Owns: [`Judge`] (catalogue, rules, detectors and policy, immutable and
//! cheap to clone) with [`Judge::judge_call`] and [`Judge::observe_result`],
//! each also in two halves: a scan that reads no state
//! ([`Judge::scan_call`], [`Judge::scan_result`]: detectors, fingerprints,
//! destinations) and the part that reads and updates it
//! ([`Judge::judge_scanned`], [`Judge::observe_scanned`]), so a caller that
//! guards its state with a lock holds it only for the second.
//! Order inside `judge_scanned`: quarantine check, facts, call rules,
//! sequence rules, threshold rules, Cedar policy, risk and ladder, state
//! updates.

use std::sync::Arc;

use serde_json::Value;

use crate::call::{Call, CallKind, ToolResult};
use crate::catalog::Catalog;
use crate::detect::{ContentAction, Detectors, Finding, Kind};
use crate::error::Error;
use crate::facts::{self, ArgScan, Facts, Inputs, arg_at, as_number};
use crate::fingerprint::{self, Extract, Fp, FpKind, walk_ptr};
use crate::ids::{Millis, RiskPoints, RuleId, ToolName};
use crate::instruct;
use crate::label::{Label, LabelSet};
use crate::pack;
use crate::roles::{ArgRole, CallRoles};
use crate::rules::{Cond, Group, Measure, Rule, RuleKind, RuleSet, Uninspectable};
use crate::scope::{self, SourceKind, Strike};
use crate::shell::{ShellFlag, ShellReading};
use crate::state::{Counter, Event, Groups, Partial, Quarantine, Source, StateMut};
use crate::verdict::{
    Action, ContentFinding, Decision, Fact, Origin, ProvenanceFinding, Reason, Redaction,
    ResultVerdict, SignalFinding, Verdict,
};

#[cfg(feature = "cedar")]
use crate::policy::Policy;

const SESSION_PROV_ENTRIES: usize = 384;
const SESSION_PROV_SOURCES: usize = 24;
const AGENT_PROV_ENTRIES: usize = 256;
const AGENT_PROV_SOURCES: usize = 16;
const PARTIALS_PER_RULE: usize = 4;
const MAX_EVENTS: usize = 1024;
/// Risk points a call refused by the content policy adds, per finding.
const CONTENT_BLOCK_RISK: u32 = 30;

/// A call as the judge reads it before consulting any state: its tool's
/// labels, the fingerprints and detector classes of its arguments, its
/// destinations and the content policy's refusals. Made by
/// [`Judge::scan_call`] from the call and the judge's configuration alone;
/// judge it with [`Judge::judge_scanned`] of the same judge.
#[derive(Debug)]
pub struct ScannedCall<'c> {
    call: &'c Call<'c>,
    labels: LabelSet,
    args: ArgScan<'c>,
    intent_hash: Option<u64>,
    /// Refusals by the content policy (a blocked class in the arguments).
    blocked: Vec<Reason>,
    /// The arguments' roles (subject, objects, amounts, commands...).
    roles: CallRoles<'c>,
    /// What its command (or file write) does, for tools with a `command`
    /// argument or a written `path`.
    shell: Option<ShellReading>,
}

/// A result as the judge reads it before consulting any state: its
/// labels, fingerprints, findings, injection signals and redactions. Made
/// by [`Judge::scan_result`]; recorded with [`Judge::observe_scanned`] of
/// the same judge.
#[derive(Debug)]
pub struct ScannedResult {
    labels: LabelSet,
    redactions: Vec<Redaction>,
    findings: Vec<ContentFinding>,
    signals: Vec<SignalFinding>,
    blocked: bool,
    uninspectable: Option<String>,
    fps: Vec<Fp>,
    /// Fingerprints untrusted text asked an action for, with the kinds.
    asked: Vec<(u64, u8)>,
    source: Source,
    /// Ids in a result of a call with subject or object arguments.
    ids: Option<crate::subject::ResultIds>,
    is_error: bool,
    /// Every source the result names (senders, the URL host read, the
    /// tool), to find sources an earlier stopped call marked.
    origins: Vec<(u64, SourceKind)>,
    /// The sources of the injected text in it (empty when there is none).
    blamed: Vec<(u64, SourceKind)>,
}

/// The behaviour judge. Build once per configuration snapshot; share by
/// reference or clone (all parts are reference counted).
#[derive(Debug, Clone)]
pub struct Judge {
    catalog: Arc<Catalog>,
    rules: Arc<RuleSet>,
    detectors: Arc<Detectors>,
    #[cfg(feature = "cedar")]
    policy: Option<Arc<Policy>>,
}

impl Judge {
    /// A judge with a catalogue and rules, and no Cedar policy.
    pub fn new(catalog: Catalog, rules: RuleSet) -> Judge {
        let detectors = match &rules.settings.custom {
            Some(c) => Arc::new(Detectors::shared().with_custom(c.clone())),
            None => Detectors::shared(),
        };
        Judge {
            catalog: Arc::new(catalog),
            rules: Arc::new(rules),
            detectors,
            #[cfg(feature = "cedar")]
            policy: None,
        }
    }

    /// A judge with the default pack's rules (and, with the `cedar`
    /// feature, its policy).
    pub fn with_default_pack(catalog: Catalog) -> Result<Judge, Error> {
        let rules = pack::rules()?;
        #[cfg(feature = "cedar")]
        {
            let policy = Policy::new(&catalog, pack::POLICY_FILE, pack::POLICY)?;
            Ok(Judge::new(catalog, rules).with_policy(policy))
        }
        #[cfg(not(feature = "cedar"))]
        Ok(Judge::new(catalog, rules))
    }

    /// The same judge with a Cedar policy.
    #[cfg(feature = "cedar")]
    pub fn with_policy(mut self, policy: Policy) -> Judge {
        self.policy = Some(Arc::new(policy));
        self
    }

    /// The same rules and policy with a new catalogue (after `tools/list`).
    /// A policy that names `context.args` is revalidated against the new
    /// catalogue; see [`Judge::with_catalog_checked`].
    pub fn with_catalog(&self, catalog: Catalog) -> Judge {
        self.with_catalog_checked(catalog).0
    }

    /// [`Judge::with_catalog`], with the policy's validation error against
    /// the new catalogue, if any. On error the running policy stays in force
    /// (a policy that never validated keeps refusing every call), so a
    /// policy never silently stops matching; the caller reports the error.
    pub fn with_catalog_checked(&self, catalog: Catalog) -> (Judge, Option<Error>) {
        #[cfg(feature = "cedar")]
        let (policy, error) = match &self.policy {
            Some(p) if p.depends_on_catalog() => match p.for_catalog(&catalog) {
                Ok(next) => (Some(Arc::new(next)), None),
                Err(e) => (Some(p.clone()), Some(e)),
            },
            other => (other.clone(), None),
        };
        #[cfg(not(feature = "cedar"))]
        let error = None;
        (
            Judge {
                catalog: Arc::new(catalog),
                #[cfg(feature = "cedar")]
                policy,
                ..self.clone()
            },
            error,
        )
    }

    /// Whether the agent may see `call.tool` of `call.server` in a list:
    /// the Cedar policy with the call's action (`list_tools` for tools,
    /// `get_prompt` and `read_resource` for prompts and resources) and no
    /// behavioural facts
    /// (no policy, or an unconditional permit, answers yes without
    /// evaluating). A tool the agent may see can still be refused when
    /// called.
    pub fn may_list(&self, call: &Call<'_>) -> bool {
        #[cfg(feature = "cedar")]
        if let Some(p) = &self.policy {
            return p.may_list(call, self.catalog.labels(call.server, call.tool));
        }
        let _ = call;
        true
    }

    /// Why the policy refuses every call, while its `context.args`
    /// conditions have not validated against the learnt tools yet.
    #[cfg(feature = "cedar")]
    pub fn policy_pending(&self) -> Option<&str> {
        self.policy.as_deref().and_then(Policy::pending)
    }

    /// Whether the policy must be checked against the upstreams' tools
    /// (it names call arguments or tools).
    #[cfg(feature = "cedar")]
    pub fn policy_needs_tools(&self) -> bool {
        self.policy
            .as_deref()
            .is_some_and(Policy::depends_on_catalog)
    }

    /// The catalogue.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The rules.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    fn half_life(&self) -> u64 {
        self.rules.ladder.half_life_ms
    }

    /// Judges one call before it goes to the upstream, and updates `state`
    /// (call index, sequence partial matches, threshold windows, risk,
    /// baseline, quarantine). Attempts count: a refused call still advances
    /// sequences and thresholds, so an agent that keeps trying is seen.
    /// The same as [`Judge::scan_call`] then [`Judge::judge_scanned`].
    pub fn judge_call(&self, state: StateMut<'_>, call: &Call<'_>, now: Millis) -> Verdict {
        self.judge_scanned(state, self.scan_call(call), now)
    }

    /// The half of [`Judge::judge_call`] that needs no state: detectors and
    /// fingerprints over the arguments, destinations, content refusals.
    /// Most of a call's cost, so a caller that locks its state calls this
    /// before taking the lock.
    pub fn scan_call<'c>(&self, call: &'c Call<'c>) -> ScannedCall<'c> {
        let mut labels = self.catalog.labels(call.server, call.tool);
        // A search or lookup on the open web sends its arguments to a third
        // party: egress for them.
        if labels.contains(Label::Untrusted)
            && !labels.intersects(LabelSet::of(&[
                Label::Egress,
                Label::Private,
                Label::Secret,
                Label::Financial,
            ]))
            && facts::open_world_lookup(&self.catalog, call.server, call.tool)
        {
            labels.insert(Label::Egress);
        }
        let roles = self.roles(call, labels);
        let shell = read_shell(call, &roles, labels);
        if let Some(r) = &shell {
            // What the command does labels this call: a credential read
            // taints its result `secret`, a network use is egress.
            if r.flags.contains(ShellFlag::CredentialRead) {
                labels.insert(Label::Secret);
            }
            if r.flags.contains(ShellFlag::Network) {
                labels.insert(Label::Egress);
            }
            if r.flags.contains(ShellFlag::Persistence) || r.flags.contains(ShellFlag::Dependency) {
                labels.insert(Label::Write);
            }
        }
        let mut args = ArgScan::new(call, &self.detectors, &self.rules.settings, labels, &roles);
        if let Some(r) = shell.as_ref().filter(|r| !r.hosts.is_empty()) {
            args.add_hosts(
                &self.detectors,
                &self.rules.settings,
                "command",
                &r.hosts,
                call.intent,
            );
        }
        let mut blocked = self.block_content(call, args.detected);
        let limits = &self.rules.settings.inspection;
        if limits.uninspectable == Uninspectable::Block
            && let Some(why) = budget::uninspectable(call.args, limits)
        {
            blocked.push(Reason {
                rule: RuleId::new("content-uninspectable"),
                origin: Origin::Content,
                action: Action::Deny,
                message: format!("the arguments carry {why}"),
                facts: Vec::new(),
            });
        }
        ScannedCall {
            call,
            labels,
            args,
            intent_hash: call
                .intent
                .map(|i| fingerprint::hash(FpKind::Value, i.as_bytes())),
            blocked,
            roles,
            shell,
        }
    }

    /// The roles of a call's arguments (a tool that only reads is a lookup).
    fn roles<'c>(&self, call: &'c Call<'c>, labels: LabelSet) -> CallRoles<'c> {
        CallRoles::resolve(
            self.catalog.role_overrides(),
            call.server.unwrap_or(""),
            call.tool,
            call.args,
            !labels.intersects(side_effects()),
        )
    }

    /// Judges a call scanned by [`Judge::scan_call`] against `state` and
    /// updates it, as [`Judge::judge_call`] does.
    pub fn judge_scanned(
        &self,
        state: StateMut<'_>,
        scanned: ScannedCall<'_>,
        now: Millis,
    ) -> Verdict {
        let ScannedCall {
            call,
            labels,
            args,
            intent_hash,
            blocked,
            roles,
            shell,
        } = scanned;
        let StateMut {
            session,
            agent,
            mut user,
        } = state;
        let hl = self.half_life();
        let index = session.calls;
        session.calls = session.calls.saturating_add(1);
        session.last = now.max(session.last);
        // The ladder reads the risk of the session and of its user; the
        // agent's own risk is kept for operators but never escalates other
        // users' sessions (see `scope`).
        let scoped_risk =
            |session: &crate::state::SessionState,
             user: &Option<&mut crate::state::AggregateState>| {
                session
                    .risk
                    .points_at(now, hl)
                    .max(user.as_deref().map_or(0, |u| u.risk.points_at(now, hl)))
            };
        let risk_before = scoped_risk(session, &user);
        if let Some(q) = &agent.quarantine {
            return Verdict {
                decision: Decision::Quarantine,
                reasons: vec![Reason {
                    rule: q.rule.clone(),
                    origin: Origin::Quarantine,
                    action: Action::Quarantine,
                    message: format!(
                        "agent `{}` is quarantined since {} by `{}`; an operator must release it",
                        call.agent,
                        q.since.rfc3339(),
                        q.rule
                    ),
                    facts: Vec::new(),
                }],
                risk_before: RiskPoints(risk_before),
                risk_after: RiskPoints(risk_before),
                provenance: Vec::new(),
                alert: false,
                index,
                labels,
            };
        }
        if let Some(u) = user.as_deref_mut()
            && u.quarantine
                .as_ref()
                .is_some_and(|q| q.until.is_some_and(|t| now >= t))
        {
            u.quarantine = None;
        }
        if let (Some(intent), Some(h)) = (call.intent, intent_hash) {
            // Fingerprinted only when the intent changes, which is rare.
            if h != session.intent_hash {
                let mut fps: Vec<Fp> = Vec::new();
                let mut scratch = Vec::new();
                fingerprint::from_text(
                    &self.detectors,
                    intent,
                    Extract {
                        shingles: true,
                        values: false,
                        cap: 128,
                        sample: false,
                    },
                    &mut scratch,
                    &mut fps,
                );
                session.intent_fps = fps.iter().map(|f| f.hash).collect();
                session.intent_hash = h;
                session.intent_kinds = instruct::intent_kinds(intent);
            }
        }
        let subject = self.judge_subject(session, call, &roles, labels);
        if let Some(refusal) = scope::restriction(
            call,
            session,
            user.as_deref(),
            (risk_before, index, labels, now),
            subject.only_own(),
        ) {
            return refusal;
        }
        let mut facts = Facts::build(
            call,
            args,
            &Inputs {
                session_key: call.session.as_str(),
                session,
                agent,
                risk: risk_before,
                index,
                now,
            },
        );
        let amount = largest_amount(&roles);
        let side_effect = labels.intersects(side_effects());
        facts.roles = crate::facts::RoleFacts {
            shell,
            subject,
            baseline: crate::baseline::assess(
                &agent.learned,
                &session.counts,
                facts.tool_hash,
                amount,
                side_effect,
                (roles.max_amount, roles.max_calls),
                &self.rules.settings.baseline,
            ),
        };
        if side_effect && facts.roles.baseline.amount.is_none() {
            // Before a baseline is learnt (and beside it): value granted to
            // the requester (a refund, a store credit, a voucher, whatever
            // the tool is called) must rest on a record the session read.
            facts.roles.baseline.amount = amount.and_then(|a| {
                crate::subject::unquoted(&session.subject, &facts.roles.subject, a, call.intent)
                    .map(|q| crate::baseline::Outlier {
                        what: "amount",
                        value: a,
                        limit: crate::baseline::Limit::Quoted(q),
                    })
            });
        }
        let mut reasons: Vec<Reason> = Vec::new();
        let mut fired_risk: Vec<u32> = Vec::new();
        for (ri, rule) in self.rules.rules.iter().enumerate() {
            let ri = u16::try_from(ri).unwrap_or(u16::MAX);
            let fired: Option<Vec<Fact>> = match &rule.kind {
                RuleKind::Call(c) => facts.eval(c, None).then(|| call_facts(&facts)),
                RuleKind::Sequence(s) => {
                    let groups = match s.by {
                        Group::Session => Some(&mut session.groups),
                        Group::Agent => Some(&mut agent.groups),
                        Group::User => user.as_deref_mut().map(|u| &mut u.groups),
                    };
                    groups.and_then(|g| step_sequence(g, ri, s, &facts, now))
                }
                RuleKind::Threshold(t) => {
                    let groups = match t.by {
                        Group::Session => Some(&mut session.groups),
                        Group::Agent => Some(&mut agent.groups),
                        Group::User => user.as_deref_mut().map(|u| &mut u.groups),
                    };
                    groups.and_then(|g| step_threshold(g, ri, t, &facts, now))
                }
            };
            if let Some(mut fs) = fired {
                fired_risk.push(rule.risk);
                fs.extend(call_facts(&facts));
                fs.dedup();
                reasons.push(Reason {
                    rule: rule.id.clone(),
                    origin: Origin::Rule,
                    action: rule.action,
                    message: message(rule, &facts, &self.rules.settings),
                    facts: fs,
                });
            }
        }
        for r in blocked {
            fired_risk.push(CONTENT_BLOCK_RISK);
            reasons.push(r);
        }
        #[cfg(feature = "cedar")]
        if let Some(p) = &self.policy {
            let fired: Vec<&str> = reasons.iter().map(|r| r.rule.as_str()).collect();
            let denied = p.decide(call, &facts, &fired);
            let policy_refused = !denied.is_empty();
            reasons.extend(denied);
            // A tool the policy hides from the agent's list is refused when
            // called too: hiding must not be a weaker forbid.
            if call.kind == CallKind::CallTool
                && !policy_refused
                && !self.may_list(&Call {
                    kind: CallKind::ListTools,
                    ..*call
                })
            {
                reasons.push(Reason {
                    rule: RuleId::new("policy-hidden-tool"),
                    origin: Origin::Policy,
                    action: Action::Deny,
                    message: format!(
                        "the policy hides `{}` from this agent's tool list (`list_tools`), so it may not call it",
                        call.tool
                    ),
                    facts: Vec::new(),
                });
            }
        }
        let points = call_points(&mut fired_risk);
        // A session that read untrusted content answers to that content's
        // source, not to its user.
        let sourced = session.taint.contains(Label::Untrusted) || session.injection_seen;
        let risk_after = if points > 0 {
            session.risk.add(now, hl, points);
            agent.risk.add(now, hl, points);
            if let Some(u) = user.as_deref_mut().filter(|_| !sourced) {
                u.risk.add(now, hl, points);
            }
            scoped_risk(session, &user)
        } else {
            risk_before
        };
        // A read is escalated by what its own session did, not by risk the
        // user carries from earlier sessions: a customer who once attacked
        // may still look at their own records (their side effects still
        // climb the ladder with that risk).
        // Carried risk alone holds a side effect for a person (it does not
        // refuse it): what the user attempted before is restricted by
        // kind (`scope::restricted_kinds`), the rest is theirs to do.
        let own_risk = session.risk.points_at(now, hl);
        let ladder = |risk: u32| {
            let mut best: Option<(Action, u32)> = None;
            for st in &self.rules.ladder.steps {
                if risk >= st.min
                    && (st.labels_any.is_empty() || labels.intersects(st.labels_any))
                    && best.is_none_or(|(a, _)| st.action > a)
                {
                    best = Some((st.action, st.min));
                }
            }
            best
        };
        let carried = if labels.intersects(side_effects()) {
            ladder(risk_after).map(|(a, min)| (a.min(Action::Hold), min))
        } else {
            None
        };
        let ladder_action = ladder(own_risk).max(carried);
        let ladder_risk = match (ladder(own_risk), carried) {
            (own, Some(c)) if Some(c) > own => risk_after,
            _ => own_risk,
        };
        if let Some((a, min)) = ladder_action {
            reasons.push(Reason {
                rule: RuleId::new(format!("risk-ladder-{}", a.as_str())),
                origin: Origin::Ladder,
                action: a,
                message: format!("risk {ladder_risk} is at or above {min}"),
                facts: vec![Fact {
                    key: "risk",
                    value: ladder_risk.to_string(),
                }],
            });
        }
        reasons.sort_by_key(|r| std::cmp::Reverse(r.action));
        let mut decision = reasons
            .iter()
            .map(|r| r.action.decision())
            .max()
            .unwrap_or(Decision::Allow);
        let alert = reasons.iter().any(|r| r.action >= Action::Alert);
        if decision >= Decision::Hold && sourced {
            for src in &session.scope.sources {
                scope::mark(&mut agent.scope.marks, *src, now);
            }
        }
        let corroboration = &self.rules.ladder.corroboration;
        if decision == Decision::Quarantine {
            let rule = reasons
                .first()
                .map_or_else(|| RuleId::new("quarantine"), |r| r.rule.clone());
            let counts = (!sourced || corroboration.count_sourced).then(|| {
                let strike = Strike {
                    session: fingerprint::hash(FpKind::Value, call.session.as_str().as_bytes()),
                    user: call.user.map_or(0, |u| {
                        fingerprint::hash(FpKind::Value, u.as_str().as_bytes())
                    }),
                    at: now,
                };
                scope::strike(
                    &mut agent.scope.strikes,
                    strike,
                    corroboration.within_ms,
                    now,
                )
            });
            match counts {
                Some((s, u)) if s >= corroboration.sessions && u >= corroboration.users => {
                    if let Some(r) = reasons.first_mut() {
                        r.facts.push(Fact {
                            key: "corroborated",
                            value: format!(
                                "{s} sessions of {u} users within {} min",
                                corroboration.within_ms / 60_000
                            ),
                        });
                    }
                    agent.quarantine = Some(Quarantine::whole(now, rule));
                }
                counts => {
                    decision = Decision::Deny;
                    reasons.push(scope::session_ended(
                        &rule,
                        counts,
                        corroboration,
                        sourced,
                        user.is_some(),
                    ));
                    session.scope.ended = Some(rule.clone());
                    if let Some(u) = user.filter(|_| !sourced) {
                        // Scoped to what the user attempted, and lapsing:
                        // a customer who tried it once is not refused
                        // every later read of their own records.
                        u.quarantine = Some(Quarantine {
                            since: now,
                            rule,
                            covers: scope::restricted_kinds(labels),
                            until: Some(Millis(
                                now.0.saturating_add(corroboration.user_restriction_ms),
                            )),
                        });
                    }
                }
            }
        } else if decision >= Decision::Hold
            && session.scope.refused_hold
            && corroboration.after_refused_hold
            && labels.intersects(scope::side_effects())
        {
            let rule = RuleId::new("harm-after-refused-hold");
            reasons.insert(0, scope::after_refused_hold(&rule));
            decision = Decision::Quarantine;
            agent.quarantine = Some(Quarantine::whole(now, rule));
        }
        if decision.forwards() {
            crate::baseline::learn(
                &mut agent.learned,
                &mut session.counts,
                facts.tool_hash,
                amount,
                side_effect,
            );
            session.baseline.add_tool(facts.tool_hash);
            agent.baseline.add_tool(facts.tool_hash);
            if labels.intersects(LabelSet::of(&[
                Label::Egress,
                Label::Money,
                Label::Identity,
                Label::Write,
            ])) {
                for d in &facts.dests {
                    session.baseline.add_dest(d.key);
                    agent.baseline.add_dest(d.key);
                }
            }
        }
        let mut provenance: Vec<ProvenanceFinding> = Vec::new();
        let hits = facts
            .dests
            .iter()
            .filter_map(|d| d.origin.as_ref())
            .chain(facts.hits.iter())
            .chain(facts.carries.iter());
        for h in hits.filter(|h| h.src_seq != u32::MAX) {
            if provenance.len() >= 8 {
                break;
            }
            if !provenance.iter().any(|q| {
                q.arg == h.arg
                    && q.source_index == h.src_index
                    && q.earlier_session == h.earlier_session
            }) {
                provenance.push(h.finding());
            }
        }
        Verdict {
            decision,
            reasons,
            risk_before: RiskPoints(risk_before),
            risk_after: RiskPoints(risk_after),
            provenance,
            alert,
            index,
            labels,
        }
    }

    /// Refuses a call whose arguments carry a detector class (or custom
    /// detector) whose action is `block`. `detected` has one bit per class
    /// that fired; the arguments are walked again only when a blocked class
    /// is among them, to say where.
    fn block_content(&self, call: &Call<'_>, detected: u16) -> Vec<Reason> {
        let content = &self.rules.settings.content;
        let custom_block = self
            .rules
            .settings
            .custom
            .as_ref()
            .is_some_and(|c| c.specs().iter().any(|s| s.action == ContentAction::Block));
        let blocked_bits = Kind::ALL
            .into_iter()
            .filter(|k| {
                content.get(*k) == ContentAction::Block || (*k == Kind::Custom && custom_block)
            })
            .fold(0u16, |a, k| a | 1 << (k as u16));
        if detected & blocked_bits == 0 {
            return Vec::new();
        }
        let mut found: Vec<Finding> = Vec::new();
        let mut hits: Vec<(String, Finding)> = Vec::new();
        walk_ptr(call.args, &mut String::new(), 0, false, &mut |ptr, s, _| {
            found.clear();
            self.detectors.scan(s, &mut found);
            for f in found.drain(..) {
                if hits.len() < 8 && self.detectors.action(&f, content) == ContentAction::Block {
                    hits.push((ptr.to_owned(), f));
                }
            }
        });
        let mut reasons = Vec::with_capacity(hits.len());
        for (ptr, f) in hits {
            let name = self.detectors.detector_name(f.detector).to_owned();
            reasons.push(Reason {
                rule: RuleId::new(format!("content-block-{name}")),
                origin: Origin::Content,
                action: Action::Deny,
                message: format!(
                    "argument {} carries {} (detector `{name}`), which the content policy blocks",
                    if ptr.is_empty() { "/" } else { ptr.as_str() },
                    f.kind.as_str()
                ),
                facts: vec![
                    Fact {
                        key: "detector",
                        value: name,
                    },
                    Fact {
                        key: "path",
                        value: ptr,
                    },
                    Fact {
                        key: "span",
                        value: format!("{}..{}", f.range.start, f.range.end),
                    },
                ],
            });
        }
        reasons
    }

    /// Subject facts of a call: binds the session's subject from the end
    /// user or the intent first, if the call has subject-related arguments.
    fn judge_subject(
        &self,
        session: &mut crate::state::SessionState,
        call: &Call<'_>,
        roles: &CallRoles<'_>,
        labels: LabelSet,
    ) -> crate::subject::SubjectFacts {
        let relevant = roles.has(ArgRole::Subject)
            || roles.has(ArgRole::Object)
            || (labels.contains(Label::Money) && roles.has(ArgRole::Destination));
        if !relevant {
            return crate::subject::SubjectFacts {
                bound: session.subject.bound_by(),
                ..Default::default()
            };
        }
        let user = call.user.map(|u| u.as_str());
        let intent = if roles.has(ArgRole::Subject) {
            call.intent.map(str::to_lowercase)
        } else {
            None
        };
        crate::subject::judge(
            &mut session.subject,
            &session.prov,
            roles,
            user,
            self.rules.settings.subject_from_user,
            intent.as_deref(),
            labels.contains(Label::Money),
        )
    }

    /// Records that a held call was approved by a human and forwarded: its
    /// tool and destinations join the session's and agent's baseline, so the
    /// next call to the same destination is no longer "new". Call
    /// [`Judge::observe_result`] for its result as usual.
    pub fn record_approved(&self, state: StateMut<'_>, call: &Call<'_>, verdict: &Verdict) {
        let StateMut {
            session,
            agent,
            user,
        } = state;
        let roles = self.roles(call, verdict.labels);
        let scan = ArgScan::new(
            call,
            &self.detectors,
            &self.rules.settings,
            verdict.labels,
            &roles,
        );
        let facts = Facts::build(
            call,
            scan,
            &Inputs {
                session_key: call.session.as_str(),
                session,
                agent,
                risk: verdict.risk_after.0,
                index: verdict.index,
                // Only the tool and destination keys are used here.
                now: Millis(0),
            },
        );
        let (tool, dests): (u64, Vec<u64>) =
            (facts.tool_hash, facts.dests.iter().map(|d| d.key).collect());
        // An approved call is normal: its amount and count are learnt.
        crate::baseline::learn(
            &mut agent.learned,
            &mut session.counts,
            tool,
            largest_amount(&roles),
            verdict.labels.intersects(side_effects()),
        );
        for b in [&mut session.baseline, &mut agent.baseline] {
            b.add_tool(tool);
            for d in &dests {
                b.add_dest(*d);
            }
        }
        // An approval is evidence the call was legitimate: the risk its
        // rules added is taken back, so it does not push the next ordinary
        // call up the ladder.
        let points = self.points_of(verdict);
        session.risk.take_back(points);
        agent.risk.take_back(points);
        if let Some(u) = user {
            u.risk.take_back(points);
        }
    }

    /// The risk points the rules of `verdict` added, as `judge_scanned`
    /// summed them (content blocks deny, so a held call has none).
    fn points_of(&self, verdict: &Verdict) -> u32 {
        let mut fired: Vec<u32> = verdict
            .reasons
            .iter()
            .filter(|r| r.origin == Origin::Rule)
            .filter_map(|r| self.rules.rules.iter().find(|x| x.id == r.rule))
            .map(|x| x.risk)
            .collect();
        call_points(&mut fired)
    }

    /// Observes the result of a call that was forwarded (allowed or
    /// redacted) and answered: taints the session with the tool's read
    /// labels, records value fingerprints with their source, notes injected
    /// instructions, and lists what to redact before the agent sees it.
    /// The same as [`Judge::scan_result`] then [`Judge::observe_scanned`].
    pub fn observe_result(
        &self,
        state: StateMut<'_>,
        call: &Call<'_>,
        verdict: &Verdict,
        result: &ToolResult<'_>,
        now: Millis,
    ) -> ResultVerdict {
        self.observe_scanned(state, self.scan_result(call, verdict, result), now)
    }

    /// The half of [`Judge::observe_result`] that needs no state: detectors,
    /// injection signals, fingerprints and redactions over the result. Most
    /// of an inspection's cost, so a caller that locks its state calls this
    /// before taking the lock.
    pub fn scan_result(
        &self,
        call: &Call<'_>,
        verdict: &Verdict,
        result: &ToolResult<'_>,
    ) -> ScannedResult {
        let mut labels = verdict.labels.read_labels();
        let mut redactions: Vec<Redaction> = Vec::new();
        let mut findings: Vec<ContentFinding> = Vec::new();
        let mut signals: Vec<SignalFinding> = Vec::new();
        let mut blocked = false;
        let mut scratch = Vec::new();
        let mut sigs = Vec::new();
        let redact_all = verdict.decision == Decision::Redact;
        let content = &self.rules.settings.content;
        let opts = Extract {
            shingles: true,
            values: true,
            cap: 160,
            sample: true,
        };
        // Reserved once: a 1 KiB result reaches the cap, which took eight
        // reallocations growing from empty.
        let mut fps: Vec<Fp> = Vec::with_capacity(opts.cap);
        // Requests for actions are looked for in every result: a shared
        // document or a CRM note can carry one as well as a web page.
        let mut asked: Vec<(Fp, u8)> = Vec::new();
        let mut origins: Vec<(u64, SourceKind)> = Vec::new();
        let mut blamed: Vec<(u64, SourceKind)> = Vec::new();
        let injected_text = |t: &str| self.detectors.has_injection(t);
        let limits = &self.rules.settings.inspection;
        let uninspectable = budget::uninspectable(result.value, limits);
        if uninspectable.is_some() {
            // Not read at all: nothing in it is known, so it is held to be
            // everything (or kept from the agent).
            match limits.uninspectable {
                Uninspectable::Block => blocked = true,
                Uninspectable::Label => {
                    for l in [
                        Label::Untrusted,
                        Label::Private,
                        Label::Secret,
                        Label::Financial,
                    ] {
                        labels.insert(l);
                    }
                }
            }
        }
        let value = if uninspectable.is_some() {
            &Value::Null
        } else {
            result.value
        };
        walk_ptr(value, &mut String::new(), 0, false, &mut |ptr, s, _| {
            sigs.clear();
            // One pass of the detectors for the signals, the findings
            // (left in `scratch`) and the fingerprints.
            fingerprint::from_text_and_signals(
                &self.detectors,
                s,
                opts,
                &mut scratch,
                &mut fps,
                &mut sigs,
            );
            if asked.len() < 256 {
                instruct::asked_fps(s, &scratch, &mut asked);
            }
            let had_signals = !sigs.is_empty();
            for g in sigs.drain(..) {
                if signals.len() < 16 {
                    signals.push(SignalFinding {
                        pointer: ptr.to_owned(),
                        signal: g,
                    });
                }
            }
            let t = s.trim_start();
            if (t.starts_with('{') || t.starts_with('[')) && t.len() < 256 * 1024 {
                // JSON carried as text (common in MCP results): fingerprint
                // its values one by one too.
                if let Ok(inner) = serde_json::from_str::<Value>(t) {
                    let mut inner_scratch = Vec::new();
                    let mut inner_kinds = 0;
                    fingerprint::from_json(
                        &self.detectors,
                        &inner,
                        opts,
                        &mut inner_scratch,
                        &mut fps,
                        &mut inner_kinds,
                    );
                    // Only a text with signals has its objects' strings
                    // checked for who wrote the injection.
                    let check = |t: &str| had_signals && injected_text(t);
                    scope::senders(&inner, &check, &mut origins, &mut blamed, 0);
                }
            }
            for f in scratch.drain(..) {
                let action = self.detectors.action(&f, content);
                if action >= ContentAction::Label
                    && let Some(l) = self.detectors.label(&f)
                {
                    labels.insert(l);
                }
                blocked |= action == ContentAction::Block;
                if redact_all || action >= ContentAction::Redact {
                    redactions.push(Redaction {
                        pointer: ptr.to_owned(),
                        start: f.range.start,
                        end: f.range.end,
                        kind: f.kind,
                    });
                }
                if action > ContentAction::Ignore && findings.len() < 64 {
                    findings.push(ContentFinding {
                        pointer: ptr.to_owned(),
                        start: f.range.start,
                        end: f.range.end,
                        kind: f.kind,
                        detector: self.detectors.detector_name(f.detector).to_owned(),
                        action,
                    });
                }
            }
        });
        if result.is_error {
            labels.remove(Label::Private);
        }
        let ids = crate::subject::ResultIds::scan(&self.roles(call, verdict.labels), result.value);
        // Content let through unread may carry instructions too.
        let injected = !signals.is_empty() || (uninspectable.is_some() && !blocked);
        let check = |t: &str| injected && injected_text(t);
        scope::senders(value, &check, &mut origins, &mut blamed, 0);
        scope::call_origins(call, &mut origins, &mut blamed, injected);
        if injected {
            labels.insert(Label::Untrusted);
        }
        // The values asked for join the result's fingerprints (references
        // and amounts are only taken there), so their entries exist.
        fps.extend(asked.iter().map(|(f, _)| *f));
        let asked = asked.into_iter().map(|(f, k)| (f.hash, k)).collect();
        ScannedResult {
            labels,
            redactions: merge_redactions(redactions),
            findings,
            signals,
            blocked,
            uninspectable,
            fps,
            asked,
            source: Source {
                seq: 0,
                session: call.session.clone(),
                index: verdict.index,
                tool: ToolName::new(call.tool),
                labels,
                injected,
                at: Millis(0),
            },
            ids,
            is_error: result.is_error,
            origins,
            blamed,
        }
    }

    /// Records a result scanned by [`Judge::scan_result`] into `state`, as
    /// [`Judge::observe_result`] does: taint, provenance, injection risk.
    pub fn observe_scanned(
        &self,
        state: StateMut<'_>,
        scanned: ScannedResult,
        now: Millis,
    ) -> ResultVerdict {
        let ScannedResult {
            mut labels,
            redactions,
            findings,
            signals,
            blocked,
            uninspectable,
            fps,
            mut source,
            ids,
            is_error,
            origins,
            mut blamed,
            asked,
        } = scanned;
        if let Some(ids) = ids {
            crate::subject::observe(&mut state.session.subject, ids, is_error, source.index);
        }
        let StateMut {
            session,
            agent,
            user,
        } = state;
        source.at = now;
        let mut injection = signals.first().map(|g| g.signal.what);
        // Content from a source an earlier stopped call marked arrives
        // tainted, however it is worded.
        if let Some(hit) = scope::marked_origin(&agent.scope.marks, &origins) {
            labels.insert(Label::Untrusted);
            if hit.1 != SourceKind::Tool {
                source.injected = true;
                injection = injection.or(Some(scope::MARKED_SOURCE));
                blamed.push(hit);
            }
            source.labels = labels;
        }
        let injected = source.injected;
        if injected {
            for b in &blamed {
                session.scope.add_source(*b);
            }
        }
        let mut risk_added = 0;
        if injected {
            session.injection_seen = true;
            risk_added = self.rules.settings.injection_risk;
            if risk_added > 0 {
                let hl = self.half_life();
                // Not the user's: they did not write the content.
                let _ = user;
                session.risk.add(now, hl, risk_added);
                agent.risk.add(now, hl, risk_added);
            }
        }
        let added = LabelSet::of(&[]).union(labels);
        let before = session.taint;
        session.taint = session.taint.union(labels);
        if labels.intersects(LabelSet::of(&[
            Label::Private,
            Label::Secret,
            Label::Financial,
        ])) || injected
        {
            agent.prov.record(
                source.clone(),
                &fps,
                &asked,
                AGENT_PROV_ENTRIES,
                AGENT_PROV_SOURCES,
            );
        }
        session.prov.record(
            source,
            &fps,
            &asked,
            SESSION_PROV_ENTRIES,
            SESSION_PROV_SOURCES,
        );
        let mut gained = LabelSet::EMPTY;
        for l in added.iter() {
            if !before.contains(l) {
                gained.insert(l);
            }
        }
        ResultVerdict {
            redactions,
            labels_added: gained,
            injection,
            recorded: fps.len(),
            findings,
            signals,
            blocked,
            uninspectable,
            risk_added,
        }
    }
}

/// Sorts redactions by pointer and start and merges overlapping ranges of
/// the same string (a URL holding an e-mail address, a JWT inside a
/// `token=` assignment), so that masking them one by one from the end is
/// safe.
fn merge_redactions(mut rs: Vec<Redaction>) -> Vec<Redaction> {
    rs.sort_by(|a, b| (a.pointer.as_str(), a.start).cmp(&(b.pointer.as_str(), b.start)));
    let mut out: Vec<Redaction> = Vec::with_capacity(rs.len());
    for r in rs {
        if let Some(last) = out.last_mut()
            && last.pointer == r.pointer
            && r.start < last.end
        {
            last.end = last.end.max(r.end);
            continue;
        }
        out.push(r);
    }
    out
}

/// Labels of calls that change something (counted per session, and whose
/// `email` argument is a recipient rather than whom a lookup is about).
fn side_effects() -> LabelSet {
    LabelSet::of(&[
        Label::Egress,
        Label::Write,
        Label::Destructive,
        Label::Money,
        Label::Identity,
    ])
}

/// The largest amount among the call's amount arguments.
fn largest_amount(roles: &CallRoles<'_>) -> Option<f64> {
    roles
        .of(ArgRole::Amount)
        .filter_map(|(_, v)| as_number(v))
        .filter(|a| a.is_finite())
        .reduce(f64::max)
}

/// Reads what a call's command arguments (and, for a tool that writes, its
/// `path` with its `body`) do. Only tools with such arguments are read.
fn read_shell(call: &Call<'_>, roles: &CallRoles<'_>, labels: LabelSet) -> Option<ShellReading> {
    let writes_file = labels.contains(Label::Write) && roles.has(ArgRole::Path);
    if !roles.has(ArgRole::Command) && !writes_file {
        return None;
    }
    let intent = call.intent.map(str::to_lowercase);
    let intent = intent.as_deref();
    let mut out = ShellReading::default();
    for (_, v) in roles.of(ArgRole::Command) {
        match v {
            Value::String(s) => out.merge(crate::shell::read_command(s, intent)),
            Value::Array(a) => {
                let argv: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                out.merge(crate::shell::read_command(&shell_words::join(argv), intent));
            }
            _ => {}
        }
    }
    if writes_file && let Some(path) = roles.of(ArgRole::Path).find_map(|(_, v)| v.as_str()) {
        let body = roles
            .of(ArgRole::Body)
            .find_map(|(_, v)| v.as_str())
            .unwrap_or("");
        out.merge(crate::shell::read_file_write(path, body, intent));
    }
    Some(out)
}

/// Most risk points one call can add.
const MAX_POINTS_PER_CALL: u32 = 100;

/// The risk one call adds: the largest rule's points plus half of the
/// others, capped, so that one call matching several overlapping rules does
/// not jump straight to quarantine; repeated attempts still climb the ladder.
fn call_points(fired: &mut [u32]) -> u32 {
    fired.sort_unstable_by(|a, b| b.cmp(a));
    let (first, rest) = match fired.split_first() {
        Some((f, r)) => (*f, r),
        None => return 0,
    };
    let rest: u32 = rest.iter().fold(0u32, |a, r| a.saturating_add(*r)) / 2;
    first.saturating_add(rest).min(MAX_POINTS_PER_CALL)
}

fn call_facts(f: &Facts<'_>) -> Vec<Fact> {
    let mut out = Vec::new();
    if !f.labels.is_empty() {
        out.push(Fact {
            key: "tool_labels",
            value: f.labels.to_string(),
        });
    }
    if !f.session_labels.is_empty() {
        out.push(Fact {
            key: "session_labels",
            value: f.session_labels.to_string(),
        });
    }
    for d in f.dests.iter().take(2) {
        out.push(Fact {
            key: "destination",
            value: format!("{}={}", d.arg, d.value),
        });
    }
    out
}

/// The condition of a rule whose facts explain it (a sequence's last step).
fn deciding_cond(rule: &Rule) -> Option<&Cond> {
    match &rule.kind {
        RuleKind::Call(c) => Some(c),
        RuleKind::Sequence(s) => s.steps.last(),
        RuleKind::Threshold(t) => Some(&t.when),
    }
}

fn message(rule: &Rule, f: &Facts<'_>, settings: &crate::rules::Settings) -> String {
    let mut m = if rule.description.is_empty() {
        rule.id.to_string()
    } else {
        rule.description.clone()
    };
    let asks = match &rule.kind {
        RuleKind::Call(c) => c.instructed != 0,
        RuleKind::Sequence(s) => s.steps.iter().any(|c| c.instructed != 0),
        RuleKind::Threshold(t) => t.when.instructed != 0,
    };
    if asks && let Some((role, h)) = &f.instructed_by {
        // Why the call looks like it follows outside text: which value,
        // where it was seen, and what was asked next to it.
        m.push_str(&format!(
            "; its {} (`{}` {}) appears in untrusted content from call #{} {} next to a request to {}",
            facts::role_name(*role),
            h.arg,
            h.kind.noun(),
            h.src_index,
            h.src_tool,
            instruct::kind_names(h.asked & f.tool_kinds),
        ));
        if let Some(d) = h.finding().decoded_from {
            m.push_str(&format!(" (decoded from {d})"));
        }
        return m;
    }
    if let Some(c) = deciding_cond(rule) {
        // The numbers and evidence behind role facts, in the reason.
        let tool = f.call.tool;
        let b = &f.roles.baseline;
        for o in [
            b.amount.as_ref().filter(|_| c.baseline.amount),
            b.count.as_ref().filter(|_| c.baseline.count),
        ]
        .into_iter()
        .flatten()
        {
            m.push_str("; ");
            m.push_str(&o.message(&settings.baseline, tool));
        }
        if c.subject.is_some()
            && let Some(d) = &f.roles.subject.detail
        {
            m.push_str("; ");
            m.push_str(d);
        }
        if !c.shell.is_empty()
            && let Some(r) = &f.roles.shell
        {
            m.push_str("; ");
            m.push_str(&r.summary());
        }
    }
    if let Some(h) = f
        .dests
        .iter()
        .find_map(|d| d.origin.as_ref().filter(|o| !o.trusted_seen || o.injected))
    {
        m.push_str(&format!("; {}", h.finding()));
    } else if let Some(h) = f.carries.iter().find(|h| {
        h.labels.read_labels().intersects(LabelSet::of(&[
            Label::Private,
            Label::Secret,
            Label::Financial,
        ]))
    }) {
        m.push_str(&format!("; arguments carry {}", h.finding()));
    }
    m
}

/// The range of `ri`'s partial matches. Partial matches are kept sorted by
/// rule (and, within a rule, by start time), so each rule touches only its
/// own.
fn rule_range(g: &Groups, ri: u16) -> (usize, usize) {
    let lo = g.partials.partition_point(|p| p.rule < ri);
    let hi = lo + g.partials[lo..].partition_point(|p| p.rule == ri);
    (lo, hi)
}

fn step_sequence(
    g: &mut Groups,
    ri: u16,
    s: &crate::rules::Sequence,
    f: &Facts<'_>,
    now: Millis,
) -> Option<Vec<Fact>> {
    let (lo, mut hi) = rule_range(g, ri);
    let mut i = lo;
    while i < hi {
        if now.since(g.partials[i].started) > s.within_ms {
            g.partials.remove(i);
            hi -= 1;
        } else {
            i += 1;
        }
    }
    if let Some(u) = &s.until
        && f.eval(u, None)
    {
        g.partials.drain(lo..hi);
        return None;
    }
    let key = s.join.as_ref().map(|k| f.key(k));
    let mut fired: Option<Partial> = None;
    let last = s.steps.len() - 1;
    let mut i = lo;
    while i < hi {
        let p = g.partials[i];
        let join_ok = match key {
            None => true,
            Some(k) => k.is_some_and(|k| k == p.join),
        };
        if join_ok && f.eval(&s.steps[usize::from(p.next)], Some(&p)) {
            if usize::from(p.next) == last {
                fired = Some(p);
                g.partials.remove(i);
                hi -= 1;
                continue;
            }
            let q = &mut g.partials[i];
            if let Some(slot) = q.calls.get_mut(usize::from(q.next)) {
                *slot = f.index;
            }
            q.next += 1;
        }
        i += 1;
    }
    if let Some(p) = fired {
        // A fired match also ends the other partial matches of its join key.
        let mut i = lo;
        while i < hi {
            let q = g.partials[i];
            if q.join == p.join && q.started <= p.started {
                g.partials.remove(i);
                hi -= 1;
            } else {
                i += 1;
            }
        }
        let mut fs = vec![Fact {
            key: "sequence",
            value: format!("{} steps since {} ms", s.steps.len(), now.since(p.started)),
        }];
        let calls: Vec<String> = p
            .calls
            .iter()
            .take(last.min(4))
            .map(|c| format!("#{c}"))
            .collect();
        fs.push(Fact {
            key: "steps_at",
            value: format!("{} then #{}", calls.join(", "), f.index),
        });
        return Some(fs);
    }
    if f.eval(&s.steps[0], None) {
        let join = match key {
            None => 0,
            Some(Some(k)) => k,
            Some(None) => return None,
        };
        let mut calls = [u32::MAX; 4];
        calls[0] = f.index;
        if hi - lo >= PARTIALS_PER_RULE {
            g.partials.remove(lo);
            hi -= 1;
        }
        g.partials.insert(
            hi,
            Partial {
                rule: ri,
                next: 1,
                started: now,
                join,
                calls,
            },
        );
    }
    None
}

fn step_threshold(
    g: &mut Groups,
    ri: u16,
    t: &crate::rules::Threshold,
    f: &Facts<'_>,
    now: Millis,
) -> Option<Vec<Fact>> {
    let live = |e: &Event| now.since(e.at) < t.window_ms;
    g.counters.retain_mut(|c| {
        if c.rule == ri {
            c.events.retain(live);
            !c.events.is_empty()
        } else {
            true
        }
    });
    if !f.eval(&t.when, None) {
        return None;
    }
    // A call without the `per` key (a payment whose payee cannot be read)
    // is not counted under a shared key: one identity serving many users
    // would otherwise pool every such call into one "same payee".
    let key = match &t.per {
        Some(k) => f.key(k)?,
        None => 0,
    };
    let value = match &t.measure {
        Measure::Count | Measure::Distinct(_) => 1.0,
        Measure::Sum(p) => arg_at(f.call.args, p).and_then(as_number).unwrap_or(0.0),
    };
    let dkey = match &t.measure {
        Measure::Distinct(k) => f.key(k).unwrap_or(0),
        _ => 0,
    };
    let pos = match g.counters.iter().position(|c| c.rule == ri && c.key == key) {
        Some(p) => p,
        None => {
            g.counters.push(Counter {
                rule: ri,
                key,
                events: Vec::new(),
            });
            g.counters.len() - 1
        }
    };
    let c = &mut g.counters[pos];
    if c.events.len() >= MAX_EVENTS {
        c.events.remove(0);
    }
    c.events.push(Event {
        at: now,
        value,
        key: dkey,
    });
    let measured = match &t.measure {
        Measure::Count => c.events.len() as f64,
        Measure::Sum(_) => c.events.iter().map(|e| e.value).sum(),
        Measure::Distinct(_) => {
            let mut ks: Vec<u64> = c.events.iter().map(|e| e.key).collect();
            ks.sort_unstable();
            ks.dedup();
            ks.len() as f64
        }
    };
    (measured >= t.gte).then(|| {
        let what = match &t.measure {
            Measure::Count => "count",
            Measure::Sum(_) => "sum",
            Measure::Distinct(_) => "distinct",
        };
        vec![Fact {
            key: "threshold",
            value: format!("{what} {measured} >= {} within {} ms", t.gte, t.window_ms),
        }]
    })
}

mod budget;
mod screen;

#[cfg(test)]
mod tests;
