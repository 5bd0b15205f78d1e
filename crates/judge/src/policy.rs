//! The Cedar policy evaluated on every call.
//!
//! Owns: [`Policy`] (a validated policy set, the generated schema and cached
//! entity uids) and the translation of a call and its behavioural facts into
//! a Cedar request. Principal `Agent::"<id>"` (attributes `name`, `user`);
//! action `Action::"call_tool" | "list_tools" | "read_resource" |
//! "get_prompt"`; resource `Tool::"<server>/<tool>"` (attributes `name`,
//! `server`, `labels`). The context carries the behavioural facts (see
//! `docs/rules.md`). Contexts are built with typed constructors, never by
//! round-tripping JSON. Forbid overrides permit; with no permit a call is
//! denied. `@id` and `@reason` annotations become the verdict's reasons.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision as CedarDecision, Effect, Entities, Entity,
    EntityId, EntityTypeName, EntityUid, PolicySet, PrincipalConstraint, Request,
    ResourceConstraint, RestrictedExpression, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;

use crate::call::Call;
use crate::catalog::Catalog;
use crate::error::{Error, Location};
use crate::facts::Facts;
use crate::ids::RuleId;
use crate::label::{Label, LabelSet};
use crate::verdict::{Action, Fact, Origin, Reason};

/// The Cedar schema every policy is validated against (strict mode).
pub const SCHEMA: &str = r#"
entity Agent = { "name": String, "user": String };
entity Tool = { "name": String, "server": String, "labels": Set<String> };
type Session = { "labels": Set<String>, "risk": Long, "calls": Long, "injection_seen": Bool };
type Destination = { "any": Bool, "new": Bool, "in_intent": Bool, "external": Bool, "from": Set<String>, "values": Set<String> };
type Ctx = {
  "session": Session,
  "args_text": String,
  "arg_from": Set<String>,
  "carries": Set<String>,
  "destination": Destination,
  "first_use": Bool,
  "rules": Set<String>,
};
action call_tool, list_tools, read_resource, get_prompt appliesTo { principal: [Agent], resource: [Tool], context: Ctx };
"#;

/// A validated Cedar policy set with its schema.
#[derive(Debug)]
pub struct Policy {
    set: PolicySet,
    authorizer: Authorizer,
    agent_type: EntityTypeName,
    tool_type: EntityTypeName,
    actions: [EntityUid; 4],
    reasons: HashMap<String, (String, Option<String>)>,
    /// No forbid and an unconditional permit: every request is allowed, so
    /// evaluation is skipped (an exact shortcut, not an approximation).
    always_permit: bool,
    /// Context attributes that cost a copy are only built when a policy
    /// mentions them.
    needs: Needs,
}

/// Which context keys the policy text mentions (a conservative, textual
/// check: a key whose name appears anywhere is built).
#[derive(Debug, Clone, Copy)]
struct Needs {
    session: bool,
    args_text: bool,
    arg_from: bool,
    carries: bool,
    destination: bool,
    dest_values: bool,
    first_use: bool,
    rules: bool,
}

impl Needs {
    fn of(src: &str) -> Needs {
        Needs {
            session: src.contains("session"),
            args_text: src.contains("args_text"),
            arg_from: src.contains("arg_from"),
            carries: src.contains("carries"),
            destination: src.contains("destination"),
            dest_values: src.contains("values"),
            first_use: src.contains("first_use"),
            rules: src.contains("rules"),
        }
    }
}

fn loc_of(file: &str, src: &str, d: &dyn Diagnostic) -> Location {
    let offset = d.labels().and_then(|mut l| l.next()).map(|l| l.offset());
    match offset {
        Some(off) => {
            let mut cut = off.min(src.len());
            while !src.is_char_boundary(cut) {
                cut -= 1;
            }
            let before = &src[..cut];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            Location {
                file: file.to_owned(),
                line,
                column,
            }
        }
        None => Location {
            file: file.to_owned(),
            line: 0,
            column: 0,
        },
    }
}

fn policy_err(file: &str, src: &str, d: &dyn Diagnostic, msg: String) -> Error {
    Error::Policy {
        at: loc_of(file, src, d),
        message: msg,
    }
}

fn fixed(e: impl std::fmt::Display) -> Error {
    Error::Policy {
        at: Location {
            file: "(built-in schema)".to_owned(),
            line: 0,
            column: 0,
        },
        message: e.to_string(),
    }
}

impl Policy {
    /// Parses `src` (named `file` in errors) and validates it strictly
    /// against the schema for this catalogue.
    pub fn new(_catalog: &Catalog, file: &str, src: &str) -> Result<Policy, Error> {
        let set = PolicySet::from_str(src).map_err(|e| {
            let msg = e.to_string();
            policy_err(file, src, &e, msg)
        })?;
        let (schema, _warnings) = Schema::from_cedarschema_str(SCHEMA).map_err(fixed)?;
        let result = Validator::new(schema).validate(&set, ValidationMode::Strict);
        if let Some(e) = result.validation_errors().next() {
            return Err(policy_err(
                file,
                src,
                e,
                format!("policy `{}`: {e}", e.policy_id()),
            ));
        }
        let always_permit = set.templates().next().is_none()
            && set.policies().all(|p| p.effect() == Effect::Permit)
            && set.policies().any(|p| {
                p.principal_constraint() == PrincipalConstraint::Any
                    && p.action_constraint() == ActionConstraint::Any
                    && p.resource_constraint() == ResourceConstraint::Any
                    && !p.has_non_scope_constraint()
            });
        let mut reasons = HashMap::new();
        for p in set.policies() {
            let id = p
                .annotation("id")
                .map(str::to_owned)
                .unwrap_or_else(|| p.id().to_string());
            reasons.insert(
                p.id().to_string(),
                (id, p.annotation("reason").map(str::to_owned)),
            );
        }
        let agent_type = EntityTypeName::from_str("Agent").map_err(fixed)?;
        let tool_type = EntityTypeName::from_str("Tool").map_err(fixed)?;
        let action = |a: &str| EntityUid::from_str(&format!("Action::\"{a}\"")).map_err(fixed);
        Ok(Policy {
            set,
            authorizer: Authorizer::new(),
            agent_type,
            tool_type,
            actions: [
                action("call_tool")?,
                action("list_tools")?,
                action("read_resource")?,
                action("get_prompt")?,
            ],
            reasons,
            always_permit,
            needs: Needs::of(src),
        })
    }

    /// Evaluates the policy for one call. Returns the reasons of a denial,
    /// or nothing when the call is permitted.
    pub(crate) fn decide(&self, call: &Call<'_>, f: &Facts<'_>, fired: &[&str]) -> Vec<Reason> {
        match self.evaluate(call, f, fired) {
            Ok(v) => v,
            Err(msg) => vec![Reason {
                rule: RuleId::new("policy-error"),
                origin: Origin::Policy,
                action: Action::Deny,
                message: format!("policy could not be evaluated: {msg}"),
                facts: Vec::new(),
            }],
        }
    }

    fn evaluate(
        &self,
        call: &Call<'_>,
        f: &Facts<'_>,
        fired: &[&str],
    ) -> Result<Vec<Reason>, String> {
        if self.always_permit {
            return Ok(Vec::new());
        }
        let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
        let labels = |l: LabelSet, injected: bool| {
            let mut v: Vec<RestrictedExpression> = l.iter().map(|x| s(x.as_str())).collect();
            if injected {
                v.push(s("injected"));
            }
            RestrictedExpression::new_set(v)
        };
        let principal = EntityUid::from_type_name_and_id(
            self.agent_type.clone(),
            EntityId::new(call.agent.as_str()),
        );
        let resource_id = format!("{}/{}", f.server, call.tool);
        let resource =
            EntityUid::from_type_name_and_id(self.tool_type.clone(), EntityId::new(&resource_id));
        let agent = Entity::new(
            principal.clone(),
            HashMap::from([
                ("name".to_owned(), s(call.agent.as_str())),
                ("user".to_owned(), s(call.user.map_or("", |u| u.as_str()))),
            ]),
            HashSet::new(),
        )
        .map_err(|e| e.to_string())?;
        let tool = Entity::new(
            resource.clone(),
            HashMap::from([
                ("name".to_owned(), s(call.tool)),
                ("server".to_owned(), s(f.server)),
                ("labels".to_owned(), labels(f.labels, false)),
            ]),
            HashSet::new(),
        )
        .map_err(|e| e.to_string())?;
        let entities = Entities::from_entities([agent, tool], None).map_err(|e| e.to_string())?;
        let (mut arg_from, mut arg_inj) = (LabelSet::EMPTY, false);
        for h in &f.hits {
            if !h.in_intent {
                arg_from = arg_from.union(h.labels);
                arg_inj |= h.injected;
            }
        }
        let (mut carries, mut carry_inj) = (LabelSet::EMPTY, false);
        for h in &f.carries {
            carries = carries.union(h.labels);
            carry_inj |= h.injected;
        }
        let (mut dfrom, mut dinj) = (LabelSet::EMPTY, false);
        for d in &f.dests {
            if let Some(o) = d.origin.as_ref().filter(|o| !o.in_intent) {
                let mut l = o.labels;
                if o.trusted_seen {
                    l.remove(Label::Untrusted);
                }
                dfrom = dfrom.union(l);
                dinj |= o.injected;
            }
        }
        let rec = |pairs: Vec<(&str, RestrictedExpression)>| {
            RestrictedExpression::new_record(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)))
                .map_err(|e| e.to_string())
        };
        let session = || {
            rec(vec![
                ("labels", labels(f.session_labels, false)),
                ("risk", RestrictedExpression::new_long(i64::from(f.risk))),
                ("calls", RestrictedExpression::new_long(i64::from(f.index))),
                (
                    "injection_seen",
                    RestrictedExpression::new_bool(f.injection_seen),
                ),
            ])
        };
        let destination = || {
            rec(vec![
                ("any", RestrictedExpression::new_bool(!f.dests.is_empty())),
                (
                    "new",
                    RestrictedExpression::new_bool(f.dests.iter().any(|d| d.new)),
                ),
                (
                    "in_intent",
                    RestrictedExpression::new_bool(
                        !f.dests.is_empty() && f.dests.iter().all(|d| d.in_intent),
                    ),
                ),
                (
                    "external",
                    RestrictedExpression::new_bool(f.dests.iter().any(|d| d.external)),
                ),
                ("from", labels(dfrom, dinj)),
                (
                    "values",
                    RestrictedExpression::new_set(
                        f.dests
                            .iter()
                            .filter(|_| self.needs.dest_values)
                            .map(|d| s(&d.value)),
                    ),
                ),
            ])
        };
        // Only the context keys some policy mentions are built: a key no
        // policy names cannot change a decision, and building a Cedar
        // context costs more than evaluating it.
        let mut pairs: Vec<(String, RestrictedExpression)> = Vec::with_capacity(7);
        if self.needs.session {
            pairs.push(("session".to_owned(), session()?));
        }
        if self.needs.args_text {
            pairs.push(("args_text".to_owned(), s(f.args_text())));
        }
        if self.needs.arg_from {
            pairs.push(("arg_from".to_owned(), labels(arg_from, arg_inj)));
        }
        if self.needs.carries {
            pairs.push(("carries".to_owned(), labels(carries, carry_inj)));
        }
        if self.needs.destination {
            pairs.push(("destination".to_owned(), destination()?));
        }
        if self.needs.first_use {
            pairs.push((
                "first_use".to_owned(),
                RestrictedExpression::new_bool(f.first_use),
            ));
        }
        if self.needs.rules {
            pairs.push((
                "rules".to_owned(),
                RestrictedExpression::new_set(fired.iter().map(|r| s(r))),
            ));
        }
        let context = Context::from_pairs(pairs).map_err(|e| e.to_string())?;
        let action = self.actions[call.kind as usize].clone();
        let request =
            Request::new(principal, action, resource, context, None).map_err(|e| e.to_string())?;
        let response = self
            .authorizer
            .is_authorized(&request, &self.set, &entities);
        if response.decision() == CedarDecision::Allow {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for pid in response.diagnostics().reason() {
            let (id, reason) = self
                .reasons
                .get(pid.as_ref() as &str)
                .cloned()
                .unwrap_or_else(|| (pid.to_string(), None));
            out.push(Reason {
                message: reason.unwrap_or_else(|| format!("forbidden by policy `{id}`")),
                rule: RuleId::new(id),
                origin: Origin::Policy,
                action: Action::Deny,
                facts: vec![Fact {
                    key: "resource",
                    value: resource_id.clone(),
                }],
            });
        }
        if out.is_empty() {
            out.push(Reason {
                rule: RuleId::new("policy-default-deny"),
                origin: Origin::Policy,
                action: Action::Deny,
                message: "no policy permits this call".to_owned(),
                facts: vec![Fact {
                    key: "resource",
                    value: resource_id,
                }],
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
