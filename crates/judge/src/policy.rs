//! The Cedar policy evaluated on every call.
//!
//! Owns: [`Policy`] (a validated policy set, the schema derived for it and
//! cached entity uids) and the translation of a call and its behavioural
//! facts into a Cedar request. Principal `Agent::"<id>"` (attributes `name`,
//! `user`, and every attribute key the configuration declares, optional);
//! action `Action::"call_tool" | "list_tools" | "read_resource" |
//! "get_prompt"`; resource `Tool::"<server>/<tool>"` (attributes `name`,
//! `server`, `labels`). The context carries the behavioural facts and the
//! call's typed arguments (`context.args`, derived from the catalogue's
//! input schemas; see `docs/rules.md`). Contexts are built with typed
//! constructors, never by round-tripping JSON. Forbid overrides permit; with
//! no permit a call is denied. `@id` and `@reason` annotations become the
//! verdict's reasons.
//!
//! The schema depends on the configuration (attribute keys) and on the tool
//! catalogue (argument names and types), which grows at run time. A policy
//! whose only validation errors are about `context.args` loads *pending*:
//! it refuses every call until the catalogue it is revalidated against
//! ([`Policy::for_catalog`]) makes it valid. A policy that validated once
//! stays in force when a later catalogue does not validate it (the caller
//! reports the error).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision as CedarDecision, Effect, Entities, Entity,
    EntityId, EntityTypeName, EntityUid, PolicySet, PrincipalConstraint, Request,
    ResourceConstraint, RestrictedExpression, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;
use serde_json::Value;

use crate::call::Call;
use crate::catalog::Catalog;
use crate::error::{Error, Location};
use crate::facts::Facts;
use crate::ids::RuleId;
use crate::label::{Label, LabelSet};
use crate::verdict::{Action, Fact, Origin, Reason};

mod compiled;
/// The fixed part of the Cedar schema; `Agent`'s declared attributes and
/// the `Args` record are appended per configuration and catalogue.
const SCHEMA_FIXED: &str = r#"
entity Tool = { "name": String, "server": String, "labels": Set<String> };
type Session = { "labels": Set<String>, "risk": Long, "calls": Long, "injection_seen": Bool };
type Destination = { "any": Bool, "new": Bool, "in_intent": Bool, "external": Bool, "from": Set<String>, "values": Set<String> };
type Ctx = {
  "session": Session,
  "args": Args,
  "args_text": String,
  "arg_from": Set<String>,
  "carries": Set<String>,
  "destination": Destination,
  "first_use": Bool,
  "rules": Set<String>,
};
action call_tool, list_tools, read_resource, get_prompt appliesTo { principal: [Agent], resource: [Tool], context: Ctx };
"#;

/// The Cedar schema for no declared attributes and an empty catalogue.
pub fn schema() -> String {
    schema_text(&[], &BTreeMap::new())
}

fn schema_text(attributes: &[String], args: &BTreeMap<String, ArgType>) -> String {
    let mut out = String::from("entity Agent = { \"name\": String, \"user\": String");
    for k in attributes {
        out.push_str(&format!(", \"{k}\"?: String"));
    }
    out.push_str(" };\ntype Args = {");
    for (i, (k, t)) in args.iter().enumerate() {
        let sep = if i == 0 { " " } else { ", " };
        out.push_str(&format!("{sep}\"{k}\"?: {}", t.cedar()));
    }
    out.push_str(" };");
    out.push_str(SCHEMA_FIXED);
    out
}

/// The Cedar type of a call argument, from the JSON Schema `type` the
/// catalogue's tools declare for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    /// `integer`: a Cedar `Long`.
    Long,
    /// `number` (or `integer` in one tool and `number` in another): a Cedar
    /// `decimal` (four fractional digits).
    Decimal,
    /// `string`.
    String,
    /// `boolean`.
    Bool,
}

impl ArgType {
    fn cedar(self) -> &'static str {
        match self {
            ArgType::Long => "Long",
            ArgType::Decimal => "decimal",
            ArgType::String => "String",
            ArgType::Bool => "Bool",
        }
    }

    fn of_schema(s: &Value) -> Option<ArgType> {
        match s.get("type")?.as_str()? {
            "integer" => Some(ArgType::Long),
            "number" => Some(ArgType::Decimal),
            "string" => Some(ArgType::String),
            "boolean" => Some(ArgType::Bool),
            _ => None,
        }
    }
}

/// A name usable as a quoted key of the generated schema.
fn plain_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 128
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
}

/// The typed arguments of a catalogue: every top-level property of a
/// tool's input schema whose type is a scalar and the same in every tool
/// that declares it (`integer` and `number` unify to `decimal`). Arguments
/// with conflicting, missing or structured types are left out (they stay
/// visible through `context.args_text`).
pub fn arg_types(catalog: &Catalog) -> BTreeMap<String, ArgType> {
    let mut seen: BTreeMap<String, Option<ArgType>> = BTreeMap::new();
    for d in catalog.defs() {
        let Some(props) = d.input_schema.get("properties").and_then(Value::as_object) else {
            continue;
        };
        for (name, s) in props {
            if !plain_key(name) {
                continue;
            }
            let t = ArgType::of_schema(s);
            seen.entry(name.clone())
                .and_modify(|e| {
                    *e = match (*e, t) {
                        (Some(a), Some(b)) if a == b => Some(a),
                        (Some(ArgType::Long), Some(ArgType::Decimal))
                        | (Some(ArgType::Decimal), Some(ArgType::Long)) => Some(ArgType::Decimal),
                        _ => None,
                    }
                })
                .or_insert(t);
        }
    }
    seen.into_iter()
        .filter_map(|(k, t)| t.map(|t| (k, t)))
        .collect()
}

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
    /// Each policy's scope, to answer exactly without evaluation when no
    /// `forbid` can apply to a request (empty when templates are linked).
    scopes: Vec<Scope>,
    /// Each policy's Cedar id, beside its scope.
    ids: Vec<String>,
    /// Tools named in the scope of policies about tools only
    /// (`call_tool`/`list_tools`): checked against each server's listed
    /// tools once the server has listed them.
    tool_refs: Vec<ToolRef>,
    /// Each policy's conditions compiled for the hot path, beside its
    /// scope; `None` when some policy uses a construct only Cedar
    /// evaluates (see `compiled`).
    compiled: Option<Vec<compiled::Conditions>>,
    /// Context attributes that cost a copy are only built when a policy
    /// mentions them.
    needs: Needs,
    file: String,
    src: Arc<str>,
    /// The principal attribute keys the configuration declares.
    attributes: Arc<[String]>,
    /// The typed arguments of the catalogue this policy was validated with.
    args: BTreeMap<String, ArgType>,
    /// Set while the policy's `context.args` conditions have not validated
    /// against any catalogue yet: every call is refused with this message.
    pending: Option<String>,
    /// Entities of recent (agent, tool) pairs, by a hash of what they are
    /// built from; an entry is used only when all of it matches.
    entity_cache: RwLock<HashMap<u64, Arc<CallEntities>>>,
    /// Cedar decimals of recent argument values, by their text.
    decimal_cache: RwLock<HashMap<String, RestrictedExpression>>,
}

/// A tool a policy's scope names: `(policy @id, server, tool)`.
#[derive(Debug, Clone)]
struct ToolRef {
    policy: String,
    server: String,
    tool: String,
}

/// What one policy's scope admits, read once at load. Agents and tools
/// have no parents, so `in` on them means equality; anything less plain
/// (`is ... in`) is kept as "may apply".
#[derive(Debug)]
struct Scope {
    forbid: bool,
    /// No `when`/`unless`: the scope alone decides.
    unconditional: bool,
    principal: Admits,
    /// Action ids (`call_tool`, ...); `None` admits every action.
    actions: Option<Vec<String>>,
    resource: Admits,
}

#[derive(Debug)]
enum Admits {
    All,
    Only(String),
    Never,
    Maybe,
}

impl Admits {
    /// `== uid` or `in uid`, on an entity type without parents.
    fn uid(u: &EntityUid, type_name: &str) -> Admits {
        if u.type_name().to_string() == type_name {
            Admits::Only(u.id().unescaped().to_owned())
        } else {
            Admits::Never
        }
    }

    /// `is type`.
    fn is(t: &EntityTypeName, type_name: &str) -> Admits {
        if t.to_string() == type_name {
            Admits::All
        } else {
            Admits::Never
        }
    }

    /// `Some(true)`: admits it; `Some(false)`: cannot; `None`: may.
    fn admits(&self, id: impl FnOnce(&str) -> bool) -> Option<bool> {
        match self {
            Admits::All => Some(true),
            Admits::Only(s) => Some(id(s)),
            Admits::Never => Some(false),
            Admits::Maybe => None,
        }
    }
}

impl Scope {
    fn of(p: &cedar_policy::Policy) -> Scope {
        let principal = match p.principal_constraint() {
            PrincipalConstraint::Any => Admits::All,
            PrincipalConstraint::Eq(u) | PrincipalConstraint::In(u) => Admits::uid(&u, "Agent"),
            PrincipalConstraint::Is(t) => Admits::is(&t, "Agent"),
            PrincipalConstraint::IsIn(..) => Admits::Maybe,
        };
        let resource = match p.resource_constraint() {
            ResourceConstraint::Any => Admits::All,
            ResourceConstraint::Eq(u) | ResourceConstraint::In(u) => Admits::uid(&u, "Tool"),
            ResourceConstraint::Is(t) => Admits::is(&t, "Tool"),
            ResourceConstraint::IsIn(..) => Admits::Maybe,
        };
        let action_id = |u: &EntityUid| u.id().unescaped().to_owned();
        let actions = match p.action_constraint() {
            ActionConstraint::Any => None,
            ActionConstraint::Eq(u) => Some(vec![action_id(&u)]),
            ActionConstraint::In(us) => Some(us.iter().map(action_id).collect()),
        };
        Scope {
            forbid: p.effect() == Effect::Forbid,
            unconditional: !p.has_non_scope_constraint(),
            principal,
            actions,
            resource,
        }
    }

    /// Whether the scope admits the request: `Some(true)` certainly,
    /// `Some(false)` certainly not, `None` when only Cedar can tell.
    fn admits(&self, agent: &str, action: &str, server: &str, tool: &str) -> Option<bool> {
        if let Some(a) = &self.actions
            && !a.iter().any(|x| x == action)
        {
            return Some(false);
        }
        let p = self.principal.admits(|id| id == agent)?;
        let r = self.resource.admits(|id| {
            id.strip_prefix(server)
                .and_then(|rest| rest.strip_prefix('/'))
                == Some(tool)
        })?;
        Some(p && r)
    }
}

/// Most decimal argument values kept; the cache starts over when full.
const DECIMAL_CACHE_CAP: usize = 4096;

/// Most (agent, tool) entity pairs kept; the cache starts over when full.
const ENTITY_CACHE_CAP: usize = 4096;

/// The Cedar entities of one (agent, tool) pair and what they were built
/// from.
#[derive(Debug)]
struct CallEntities {
    agent: String,
    user: String,
    attrs: Vec<(String, String)>,
    server: String,
    tool: String,
    labels: LabelSet,
    principal: EntityUid,
    resource: EntityUid,
    set: Entities,
}

/// A set of label names, plus `injected` when asked.
fn label_set(l: LabelSet, injected: bool) -> RestrictedExpression {
    let mut v: Vec<RestrictedExpression> = l
        .iter()
        .map(|x| RestrictedExpression::new_string(x.as_str().to_owned()))
        .collect();
    if injected {
        v.push(RestrictedExpression::new_string("injected".to_owned()));
    }
    RestrictedExpression::new_set(v)
}

/// Which context keys the policy text mentions (a conservative, textual
/// check: a key whose name appears anywhere is built).
#[derive(Debug, Clone, Copy)]
struct Needs {
    session: bool,
    args: bool,
    args_text: bool,
    arg_from: bool,
    carries: bool,
    destination: bool,
    dest_values: bool,
    first_use: bool,
    rules: bool,
}

/// `word` appears in `src` as a whole identifier.
fn mentions(src: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    src.match_indices(word).any(|(i, _)| {
        !src[..i].chars().next_back().is_some_and(ident)
            && !src[i + word.len()..].chars().next().is_some_and(ident)
    })
}

impl Needs {
    fn of(src: &str) -> Needs {
        Needs {
            session: src.contains("session"),
            args: mentions(src, "args"),
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

fn label_span(d: &dyn Diagnostic) -> Option<(usize, usize)> {
    d.labels()
        .and_then(|mut l| l.next())
        .map(|l| (l.offset(), l.len()))
}

fn loc_of(file: &str, src: &str, d: &dyn Diagnostic) -> Location {
    loc_at(file, src, label_span(d).map(|(off, _)| off))
}

fn loc_at(file: &str, src: &str, offset: Option<usize>) -> Location {
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

/// A validation message about the policy Cedar calls `pid` (`policy0`,
/// `policy1`, ... in source order), naming it by its `@id` as the operator
/// wrote it, Cedar's own mention included.
fn named_by_id(set: &PolicySet, pid: &cedar_policy::PolicyId, message: &str) -> String {
    let cedar = format!("`{pid}`");
    match set.policy(pid).and_then(|p| p.annotation("id")) {
        Some(id) => format!(
            "policy `{id}`: {}",
            message.replace(&cedar, &format!("`{id}`"))
        ),
        None => format!("policy {cedar}: {message}"),
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
            file: "(generated schema)".to_owned(),
            line: 0,
            column: 0,
        },
        message: e.to_string(),
    }
}

/// Where `has <attr>` (or `has "<attr>"`) first appears in the text.
fn has_offset(src: &str, attr: &str) -> Option<usize> {
    src.match_indices(attr).map(|(i, _)| i).find(|&i| {
        let before = src[..i].trim_end_matches('"').trim_end();
        before.ends_with("has")
            && !src[i + attr.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// `has` tests on attributes the schema does not declare. Cedar's strict
/// validator types such a test as `false` and accepts the policy, so a typo
/// there would be a rule that silently never matches. Returns, for each,
/// whether it is on `context.args`, the attribute and the policy id.
fn undeclared_has(
    set: &PolicySet,
    attributes: &[String],
    args: &BTreeMap<String, ArgType>,
) -> Vec<(bool, String, String)> {
    fn walk(v: &Value, out: &mut Vec<(Value, String)>) {
        match v {
            Value::Object(m) => {
                if let Some(h) = m.get("has")
                    && let (Some(left), Some(attr)) =
                        (h.get("left"), h.get("attr").and_then(Value::as_str))
                {
                    out.push((left.clone(), attr.to_owned()));
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let context_args = serde_json::json!({".": {"left": {"Var": "context"}, "attr": "args"}});
    let principal = serde_json::json!({"Var": "principal"});
    let mut found = Vec::new();
    for p in set.policies() {
        let Ok(est) = p.to_json() else { continue };
        let mut tests = Vec::new();
        walk(&est, &mut tests);
        for (left, attr) in tests {
            let id = p
                .annotation("id")
                .map_or_else(|| p.id().to_string(), str::to_owned);
            if left == context_args && !args.contains_key(&attr) {
                found.push((true, attr, id));
            } else if left == principal
                && attr != "name"
                && attr != "user"
                && !attributes.contains(&attr)
            {
                found.push((false, attr, id));
            }
        }
    }
    found
}

/// The validation error is about `context.args` (its span names `args`).
fn about_args(src: &str, d: &dyn Diagnostic) -> bool {
    label_span(d)
        .and_then(|(off, len)| src.get(off..off.saturating_add(len)))
        .is_some_and(|t| mentions(t, "args"))
}

impl Policy {
    /// Parses `src` (named `file` in errors) and validates it strictly
    /// against the schema for this catalogue, with no declared principal
    /// attributes.
    pub fn new(catalog: &Catalog, file: &str, src: &str) -> Result<Policy, Error> {
        Policy::with_attributes(catalog, &[], file, src)
    }

    /// Parses `src` and validates it strictly against the schema derived
    /// from the declared principal attribute keys and the catalogue's
    /// arguments. When the only errors concern `context.args` (the tools
    /// that take those arguments are not known yet), the policy loads
    /// pending: it refuses every call until [`Policy::for_catalog`]
    /// validates it.
    pub fn with_attributes(
        catalog: &Catalog,
        attributes: &[String],
        file: &str,
        src: &str,
    ) -> Result<Policy, Error> {
        for k in attributes {
            if !plain_key(k) {
                return Err(Error::Policy {
                    at: Location {
                        file: file.to_owned(),
                        line: 0,
                        column: 0,
                    },
                    message: format!(
                        "principal attribute `{k}` cannot be used in Cedar: use letters, digits, `_`, `-`, `.`, `:` or `/`"
                    ),
                });
            }
            if k == "name" || k == "user" {
                return Err(Error::Policy {
                    at: Location {
                        file: file.to_owned(),
                        line: 0,
                        column: 0,
                    },
                    message: format!(
                        "principal attribute `{k}` is reserved (the agent's `{k}` is built in)"
                    ),
                });
            }
        }
        let mut attrs: Vec<String> = attributes.to_vec();
        attrs.sort();
        attrs.dedup();
        Policy::compile(catalog, attrs.into(), file, src.into(), true)
    }

    /// The same policy validated against another catalogue (after the
    /// gateway learnt tools). An error means the policy does not validate
    /// against it; keep the running policy.
    pub fn for_catalog(&self, catalog: &Catalog) -> Result<Policy, Error> {
        let next = Policy::compile(
            catalog,
            self.attributes.clone(),
            &self.file,
            self.src.clone(),
            false,
        )?;
        next.check_tools(catalog)?;
        Ok(next)
    }

    /// A policy about calling or listing `Tool::"<server>/<tool>"` whose
    /// server has listed its tools without that one would silently never
    /// match: an error at the policy's position. Servers that have not
    /// listed yet are not judged.
    fn check_tools(&self, catalog: &Catalog) -> Result<(), Error> {
        for r in &self.tool_refs {
            let mut listed = catalog.defs().iter().filter(|d| d.server == r.server);
            if listed.clone().next().is_none() || listed.any(|d| d.name == r.tool) {
                continue;
            }
            let (id, _) = self
                .reasons
                .get(&r.policy)
                .cloned()
                .unwrap_or_else(|| (r.policy.clone(), None));
            let literal = format!("Tool::\"{}/{}\"", r.server, r.tool);
            return Err(Error::Policy {
                at: loc_at(&self.file, &self.src, self.src.find(&literal)),
                message: format!(
                    "policy `{id}`: upstream `{}` lists no tool `{}` (the policy would never match)",
                    r.server, r.tool
                ),
            });
        }
        Ok(())
    }

    /// Whether validation depends on the catalogue (the policy names
    /// `args`, or tools in its scopes), so it must be revalidated when
    /// tools are learnt.
    pub fn depends_on_catalog(&self) -> bool {
        self.needs.args || !self.tool_refs.is_empty()
    }

    /// Why the policy refuses every call: its `context.args` conditions have
    /// not validated against a catalogue yet.
    pub fn pending(&self) -> Option<&str> {
        self.pending.as_deref()
    }

    fn compile(
        catalog: &Catalog,
        attributes: Arc<[String]>,
        file: &str,
        src: Arc<str>,
        defer_args: bool,
    ) -> Result<Policy, Error> {
        let set = PolicySet::from_str(&src).map_err(|e| {
            let msg = e.to_string();
            policy_err(file, &src, &e, msg)
        })?;
        let needs = Needs::of(&src);
        let args = if needs.args {
            arg_types(catalog)
        } else {
            BTreeMap::new()
        };
        let (schema, _warnings) =
            Schema::from_cedarschema_str(&schema_text(&attributes, &args)).map_err(fixed)?;
        let result = Validator::new(schema).validate(&set, ValidationMode::Strict);
        let mut pending = None;
        for (on_args, attr, id) in undeclared_has(&set, &attributes, &args) {
            let err = Error::Policy {
                at: loc_at(file, &src, has_offset(&src, &attr)),
                message: if on_args {
                    format!(
                        "policy `{id}`: no known tool has an argument `{attr}` of a Cedar-typed kind (`context.args has {attr}` could never be true)"
                    )
                } else {
                    format!(
                        "policy `{id}`: the configuration declares no agent attribute `{attr}` (`principal has {attr}` could never be true)"
                    )
                },
            };
            if on_args && defer_args {
                pending.get_or_insert_with(|| err.to_string());
            } else {
                return Err(err);
            }
        }
        for e in result.validation_errors() {
            let err = policy_err(
                file,
                &src,
                e,
                named_by_id(&set, e.policy_id(), &e.to_string()),
            );
            if defer_args && about_args(&src, e) {
                pending.get_or_insert_with(|| {
                    format!("{err} (no known tool declares this argument yet)")
                });
            } else {
                return Err(err);
            }
        }
        let always_permit = set.templates().next().is_none()
            && set.policies().all(|p| p.effect() == Effect::Permit)
            && set.policies().any(|p| {
                p.principal_constraint() == PrincipalConstraint::Any
                    && p.action_constraint() == ActionConstraint::Any
                    && p.resource_constraint() == ResourceConstraint::Any
                    && !p.has_non_scope_constraint()
            });
        let scopes: Vec<Scope> = if set.templates().next().is_none() {
            set.policies().map(Scope::of).collect()
        } else {
            Vec::new()
        };
        let ids: Vec<String> = set.policies().map(|p| p.id().to_string()).collect();
        let tool_refs = scopes
            .iter()
            .zip(&ids)
            .filter_map(|(sc, id)| {
                let tools_only = sc
                    .actions
                    .as_ref()
                    .is_some_and(|a| a.iter().all(|x| x == "call_tool" || x == "list_tools"));
                let Admits::Only(r) = &sc.resource else {
                    return None;
                };
                let (server, tool) = r.split_once('/')?;
                tools_only.then(|| ToolRef {
                    policy: id.clone(),
                    server: server.to_owned(),
                    tool: tool.to_owned(),
                })
            })
            .collect::<Vec<_>>();
        let compiled = if scopes.is_empty() {
            None
        } else {
            set.policies()
                .map(|p| p.to_json().ok().and_then(|j| compiled::compile(&j)))
                .collect::<Option<Vec<_>>>()
        };
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
            scopes,
            ids,
            tool_refs,
            compiled,
            needs,
            file: file.to_owned(),
            src,
            attributes,
            args,
            pending,
            entity_cache: RwLock::new(HashMap::new()),
            decimal_cache: RwLock::new(HashMap::new()),
        })
    }

    /// Evaluates the policy for one call. Returns the reasons of a denial,
    /// or nothing when the call is permitted.
    pub(crate) fn decide(&self, call: &Call<'_>, f: &Facts<'_>, fired: &[&str]) -> Vec<Reason> {
        let r = self.evaluate(call, Some(f), f.labels, f.server, fired);
        self.or_refusal(r, f.server, call.tool)
    }

    /// Whether the agent may see this tool (or prompt, or resource) in a
    /// list: the policy evaluated with action `list_tools` (`get_prompt`,
    /// `read_resource`) and a context without behavioural facts
    /// (empty labels, zero risk and calls, no arguments).
    pub(crate) fn may_list(&self, call: &Call<'_>, labels: LabelSet) -> bool {
        if self.always_permit && self.pending.is_none() {
            return true;
        }
        let server = call.server.unwrap_or("");
        let r = self.evaluate(call, None, labels, server, &[]);
        self.or_refusal(r, server, call.tool).is_empty()
    }

    /// Cedar's answer read from the scopes alone, when they settle it: no
    /// `forbid` can apply, and either an unconditional `permit` certainly
    /// applies (allowed) or no `permit` can apply (denied by default).
    /// Exact, not an approximation: a policy whose scope does not admit the
    /// request is not satisfied, and scopes cannot fail to evaluate.
    fn by_scope(&self, agent: &str, action: &str, server: &str, tool: &str) -> Option<Vec<Reason>> {
        if self.scopes.is_empty() {
            return None;
        }
        let (mut permitted, mut maybe_permit) = (false, false);
        for s in &self.scopes {
            match (s.admits(agent, action, server, tool), s.forbid) {
                (Some(false), _) => {}
                (_, true) => return None,
                (Some(true), false) if s.unconditional => permitted = true,
                (_, false) => maybe_permit = true,
            }
        }
        if permitted {
            Some(Vec::new())
        } else if maybe_permit {
            None
        } else {
            Some(vec![default_deny(format!("{server}/{tool}"))])
        }
    }

    fn or_refusal(&self, r: Result<Vec<Reason>, String>, server: &str, tool: &str) -> Vec<Reason> {
        match r {
            Ok(v) => v,
            Err(msg) => vec![Reason {
                rule: RuleId::new("policy-error"),
                origin: Origin::Policy,
                action: Action::Deny,
                message: format!("policy could not be evaluated: {msg}"),
                facts: vec![Fact {
                    key: "resource",
                    value: format!("{server}/{tool}"),
                }],
            }],
        }
    }

    /// `context.args`: the call's arguments that the catalogue types, each
    /// converted to its Cedar type (`view` has refused a call whose
    /// argument does not fit its type).
    fn args_record(
        &self,
        args: Option<&serde_json::Map<String, Value>>,
    ) -> Result<RestrictedExpression, String> {
        let mut pairs = Vec::new();
        if let Some(obj) = args {
            for (k, v) in obj {
                let Some(t) = self.args.get(k) else { continue };
                if v.is_null() {
                    continue;
                }
                pairs.push((k.clone(), typed_arg(*t, k, v, &|d| self.decimal(d))?));
            }
        }
        RestrictedExpression::new_record(pairs).map_err(|e| e.to_string())
    }

    /// A Cedar `decimal` for its text, from the cache when the same amount
    /// was seen before: `RestrictedExpression::new_decimal` parses the name
    /// `decimal` with the Cedar parser on every call (about 50k
    /// instructions), far more than evaluating the policy.
    fn decimal(&self, text: String) -> RestrictedExpression {
        if let Ok(cache) = self.decimal_cache.read()
            && let Some(d) = cache.get(&text)
        {
            return d.clone();
        }
        let d = RestrictedExpression::new_decimal(&text);
        if let Ok(mut cache) = self.decimal_cache.write() {
            if cache.len() >= DECIMAL_CACHE_CAP {
                cache.clear();
            }
            cache.insert(text, d.clone());
        }
        d
    }

    /// The Cedar entities of a call (its agent and its tool), from the
    /// cache when this agent, with the same user and attributes, called this
    /// tool with the same labels before: building entities costs more than
    /// evaluating a small policy.
    fn entities(
        &self,
        call: &Call<'_>,
        server: &str,
        tool_labels: LabelSet,
    ) -> Result<Arc<CallEntities>, String> {
        let user = call.user.map_or("", |u| u.as_str());
        let declared = || {
            call.attributes
                .iter()
                .filter(|(k, _)| self.attributes.iter().any(|a| a == k))
        };
        let mut h = crate::fingerprint::hash_parts(
            crate::fingerprint::FpKind::Value,
            &[
                call.agent.as_str().as_bytes(),
                b"\0",
                user.as_bytes(),
                b"\0",
                server.as_bytes(),
                b"\0",
                call.tool.as_bytes(),
            ],
        );
        for (k, v) in declared() {
            h = crate::fingerprint::hash_parts(
                crate::fingerprint::FpKind::Value,
                &[&h.to_le_bytes(), k.as_bytes(), b"\0", v.as_bytes()],
            );
        }
        h ^= u64::from(tool_labels.bits());
        let same = |c: &CallEntities| {
            c.agent == call.agent.as_str()
                && c.user == user
                && c.server == server
                && c.tool == call.tool
                && c.labels == tool_labels
                && c.attrs
                    .iter()
                    .map(|(k, v)| (k, v))
                    .eq(declared().map(|(k, v)| (k, v)))
        };
        if let Ok(cache) = self.entity_cache.read()
            && let Some(c) = cache.get(&h)
            && same(c)
        {
            return Ok(c.clone());
        }
        let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
        let principal = EntityUid::from_type_name_and_id(
            self.agent_type.clone(),
            EntityId::new(call.agent.as_str()),
        );
        let resource = EntityUid::from_type_name_and_id(
            self.tool_type.clone(),
            EntityId::new(format!("{server}/{}", call.tool)),
        );
        let mut agent_attrs = HashMap::with_capacity(2 + call.attributes.len());
        agent_attrs.insert("name".to_owned(), s(call.agent.as_str()));
        agent_attrs.insert("user".to_owned(), s(user));
        for (k, v) in declared() {
            agent_attrs.insert(k.clone(), s(v));
        }
        let agent = Entity::new(principal.clone(), agent_attrs, HashSet::new())
            .map_err(|e| e.to_string())?;
        let tool = Entity::new(
            resource.clone(),
            HashMap::from([
                ("name".to_owned(), s(call.tool)),
                ("server".to_owned(), s(server)),
                ("labels".to_owned(), label_set(tool_labels, false)),
            ]),
            HashSet::new(),
        )
        .map_err(|e| e.to_string())?;
        let set = Entities::from_entities([agent, tool], None).map_err(|e| e.to_string())?;
        let built = Arc::new(CallEntities {
            agent: call.agent.as_str().to_owned(),
            user: user.to_owned(),
            attrs: declared().cloned().collect(),
            server: server.to_owned(),
            tool: call.tool.to_owned(),
            labels: tool_labels,
            principal,
            resource,
            set,
        });
        if let Ok(mut cache) = self.entity_cache.write() {
            if cache.len() >= ENTITY_CACHE_CAP {
                cache.clear();
            }
            cache.insert(h, built.clone());
        }
        Ok(built)
    }

    fn evaluate(
        &self,
        call: &Call<'_>,
        f: Option<&Facts<'_>>,
        tool_labels: LabelSet,
        server: &str,
        fired: &[&str],
    ) -> Result<Vec<Reason>, String> {
        if let Some(p) = &self.pending {
            return Ok(vec![Reason {
                rule: RuleId::new("policy-unvalidated"),
                origin: Origin::Policy,
                action: Action::Deny,
                message: format!("the policy is not validated against the tools yet: {p}"),
                facts: vec![Fact {
                    key: "resource",
                    value: format!("{server}/{}", call.tool),
                }],
            }]);
        }
        if self.always_permit {
            return Ok(Vec::new());
        }
        // Listing (no facts): a tool is listed under `list_tools`; a prompt
        // or resource is listed when it may be got or read.
        let kind = match (f, call.kind) {
            (None, crate::call::CallKind::CallTool) => crate::call::CallKind::ListTools,
            (_, kind) => kind,
        };
        if let Some(answer) = self.by_scope(call.agent.as_str(), kind.as_str(), server, call.tool) {
            return Ok(answer);
        }
        let view = self.view(call, f, fired)?;
        if let Some(answer) = self.compiled_answer(call, kind, server, tool_labels, &view) {
            return answer;
        }
        let cached = self.entities(call, server, tool_labels)?;
        let (principal, resource, entities) = (&cached.principal, &cached.resource, &cached.set);
        let pairs = self.cedar_pairs(&view)?;
        let context = Context::from_pairs(pairs).map_err(|e| e.to_string())?;
        let action = self.actions[kind as usize].clone();
        let request = Request::new(principal.clone(), action, resource.clone(), context, None)
            .map_err(|e| e.to_string())?;
        let response = self.authorizer.is_authorized(&request, &self.set, entities);
        if response.decision() == CedarDecision::Allow {
            return Ok(Vec::new());
        }
        let pids: Vec<&str> = response
            .diagnostics()
            .reason()
            .map(|p| p.as_ref() as &str)
            .collect();
        Ok(self.denial(pids, server, call.tool))
    }

    /// The reasons of a denial by the policies `pids` (in source order), or
    /// the default deny when none forbids.
    fn denial(&self, mut pids: Vec<&str>, server: &str, tool: &str) -> Vec<Reason> {
        let resource_id = format!("{server}/{tool}");
        if pids.is_empty() {
            return vec![default_deny(resource_id)];
        }
        // Cedar names policies `policy0`, `policy1`, ... in source order.
        pids.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
        pids.into_iter()
            .map(|pid| {
                let (id, reason) = self
                    .reasons
                    .get(pid)
                    .cloned()
                    .unwrap_or_else(|| (pid.to_owned(), None));
                Reason {
                    message: reason.unwrap_or_else(|| format!("forbidden by policy `{id}`")),
                    rule: RuleId::new(id),
                    origin: Origin::Policy,
                    action: Action::Deny,
                    facts: vec![Fact {
                        key: "resource",
                        value: resource_id.clone(),
                    }],
                }
            })
            .collect()
    }

    /// The call's facts as the policy sees them: the context keys some
    /// policy mentions (a key no policy names cannot change a decision),
    /// derived once for either evaluator. An argument that does not fit
    /// its type refuses the call, never silently dropped: dropping it would
    /// let `has` fail and a `forbid` not apply.
    fn view<'a>(
        &'a self,
        call: &'a Call<'_>,
        f: Option<&'a Facts<'_>>,
        fired: &'a [&'a str],
    ) -> Result<compiled::Context<'a>, String> {
        let n = &self.needs;
        let values = f.and_then(|_| call.args.as_object());
        if n.args
            && let Some(obj) = values
        {
            for (k, v) in obj {
                if let Some(t) = self.args.get(k)
                    && !v.is_null()
                {
                    scalar(*t, k, v)?;
                }
            }
        }
        // Where the arguments, the data they carry and the destination came
        // from (values the user's own request holds do not count).
        let (hits, carried, dests) = match f {
            Some(f) => (&f.hits[..], &f.carries[..], &f.dests[..]),
            None => (&[][..], &[][..], &[][..]),
        };
        Ok(compiled::Context {
            session: n.session.then(|| compiled::Session {
                labels: f.map_or(LabelSet::EMPTY, |f| f.session_labels),
                risk: f.map_or(0, |f| i64::from(f.risk)),
                calls: f.map_or(0, |f| i64::from(f.index)),
                injection_seen: f.is_some_and(|f| f.injection_seen),
            }),
            args: n.args.then_some(compiled::Args {
                values,
                types: &self.args,
            }),
            args_text: n.args_text.then(|| f.map_or("", |f| f.args_text())),
            arg_from: n.arg_from.then(|| {
                origins(
                    hits.iter()
                        .filter(|h| !h.in_intent)
                        .map(|h| (h.labels, h.injected)),
                )
            }),
            carries: n
                .carries
                .then(|| origins(carried.iter().map(|h| (h.labels, h.injected)))),
            destination: n.destination.then(|| compiled::Destination {
                any: !dests.is_empty(),
                new: dests.iter().any(|d| d.new),
                in_intent: !dests.is_empty() && dests.iter().all(|d| d.in_intent),
                external: dests.iter().any(|d| d.external),
                from: origins(
                    dests
                        .iter()
                        .filter_map(|d| d.origin.as_ref().filter(|o| !o.in_intent))
                        .map(|o| {
                            let mut l = o.labels;
                            if o.trusted_seen {
                                l.remove(Label::Untrusted);
                            }
                            (l, o.injected)
                        }),
                ),
                values: if n.dest_values {
                    dests.iter().map(|d| d.value.as_ref()).collect()
                } else {
                    Vec::new()
                },
            }),
            first_use: n.first_use.then(|| f.is_some_and(|f| f.first_use)),
            rules: n.rules.then_some(fired),
        })
    }

    /// The Cedar context's pairs for a view, built with typed constructors.
    fn cedar_pairs(
        &self,
        view: &compiled::Context<'_>,
    ) -> Result<Vec<(String, RestrictedExpression)>, String> {
        let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
        let rec = |pairs: Vec<(&str, RestrictedExpression)>| {
            RestrictedExpression::new_record(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)))
                .map_err(|e| e.to_string())
        };
        let mut pairs: Vec<(String, RestrictedExpression)> = Vec::with_capacity(8);
        if let Some(x) = &view.session {
            let session = rec(vec![
                ("labels", label_set(x.labels, false)),
                ("risk", RestrictedExpression::new_long(x.risk)),
                ("calls", RestrictedExpression::new_long(x.calls)),
                (
                    "injection_seen",
                    RestrictedExpression::new_bool(x.injection_seen),
                ),
            ])?;
            pairs.push(("session".to_owned(), session));
        }
        if let Some(a) = &view.args {
            pairs.push(("args".to_owned(), self.args_record(a.values)?));
        }
        if let Some(t) = view.args_text {
            pairs.push(("args_text".to_owned(), s(t)));
        }
        if let Some((l, i)) = view.arg_from {
            pairs.push(("arg_from".to_owned(), label_set(l, i)));
        }
        if let Some((l, i)) = view.carries {
            pairs.push(("carries".to_owned(), label_set(l, i)));
        }
        if let Some(d) = &view.destination {
            let destination = rec(vec![
                ("any", RestrictedExpression::new_bool(d.any)),
                ("new", RestrictedExpression::new_bool(d.new)),
                ("in_intent", RestrictedExpression::new_bool(d.in_intent)),
                ("external", RestrictedExpression::new_bool(d.external)),
                ("from", label_set(d.from.0, d.from.1)),
                (
                    "values",
                    RestrictedExpression::new_set(d.values.iter().map(|v| s(v))),
                ),
            ])?;
            pairs.push(("destination".to_owned(), destination));
        }
        if let Some(b) = view.first_use {
            pairs.push(("first_use".to_owned(), RestrictedExpression::new_bool(b)));
        }
        if let Some(r) = view.rules {
            pairs.push((
                "rules".to_owned(),
                RestrictedExpression::new_set(r.iter().map(|x| s(x))),
            ));
        }
        Ok(pairs)
    }

    /// The decision from the compiled policies on `view`; `None` when
    /// Cedar must answer (a policy or value outside what the compiled form
    /// implements). Same answer as Cedar's: forbid overrides permit, a
    /// policy whose evaluation errors is skipped, no permit is a denial.
    fn compiled_answer(
        &self,
        call: &Call<'_>,
        kind: crate::call::CallKind,
        server: &str,
        tool_labels: LabelSet,
        view: &compiled::Context<'_>,
    ) -> Option<Result<Vec<Reason>, String>> {
        let conds = self.compiled.as_ref()?;
        if conds.len() != self.scopes.len() {
            return None;
        }
        let req = compiled::Request {
            agent: call.agent.as_str(),
            user: call.user.map_or("", |u| u.as_str()),
            attributes: call.attributes,
            declared: &self.attributes,
            action: kind.as_str(),
            server,
            tool: call.tool,
            tool_labels,
            context: view,
        };
        let (mut permitted, mut forbids) = (false, Vec::new());
        for ((scope, c), id) in self.scopes.iter().zip(conds).zip(&self.ids) {
            match scope.admits(call.agent.as_str(), kind.as_str(), server, call.tool) {
                Some(false) => continue,
                Some(true) => {}
                None => return None,
            }
            if !scope.forbid && permitted {
                continue;
            }
            match req.holds(c) {
                Ok(true) if scope.forbid => forbids.push(id.as_str()),
                Ok(true) => permitted = true,
                Ok(false) | Err(compiled::Fail::Error) => {}
                Err(compiled::Fail::Unsupported) => return None,
            }
        }
        Some(Ok(if forbids.is_empty() && permitted {
            Vec::new()
        } else {
            self.denial(forbids, server, call.tool)
        }))
    }
}

/// The union of some origins' labels, and whether any was injected.
fn origins(it: impl Iterator<Item = (LabelSet, bool)>) -> (LabelSet, bool) {
    it.fold((LabelSet::EMPTY, false), |(l, i), (x, y)| {
        (l.union(x), i | y)
    })
}

/// The largest magnitude a Cedar `decimal` holds (i64 with four fractional
/// digits).
const DECIMAL_MAX: f64 = 922_337_203_685_477.0;

/// One argument converted to its Cedar type, or why it cannot be.
/// `decimal` builds a Cedar decimal from its text.
fn typed_arg(
    t: ArgType,
    k: &str,
    v: &Value,
    decimal: &dyn Fn(String) -> RestrictedExpression,
) -> Result<RestrictedExpression, String> {
    Ok(match scalar(t, k, v)? {
        Scalar::Str(x) => RestrictedExpression::new_string(x.to_owned()),
        Scalar::Bool(b) => RestrictedExpression::new_bool(b),
        Scalar::Long(n) => RestrictedExpression::new_long(n),
        Scalar::Decimal(text) => decimal(text),
    })
}

/// An argument's value in its Cedar type (a decimal as its text).
enum Scalar<'v> {
    Str(&'v str),
    Bool(bool),
    Long(i64),
    Decimal(String),
}

/// Converts one argument to its Cedar type, or says why it cannot be: the
/// one conversion both evaluators use.
fn scalar<'v>(t: ArgType, k: &str, v: &'v Value) -> Result<Scalar<'v>, String> {
    let bad = |what: &str| format!("argument `{k}` is not {what}: {}", short(v));
    match t {
        ArgType::String => v.as_str().map(Scalar::Str).ok_or_else(|| bad("a string")),
        ArgType::Bool => v
            .as_bool()
            .map(Scalar::Bool)
            .ok_or_else(|| bad("a boolean")),
        ArgType::Long => {
            let n = v.as_number().ok_or_else(|| bad("an integer"))?;
            if let Some(i) = n.as_i64() {
                return Ok(Scalar::Long(i));
            }
            match n.as_f64() {
                // Exactly representable whole numbers inside i64.
                Some(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Ok(Scalar::Long(x as i64)),
                _ => Err(bad("an integer in the 64-bit range")),
            }
        }
        ArgType::Decimal => {
            let n = v.as_number().ok_or_else(|| bad("a number"))?;
            let text = if let Some(i) = n.as_i64() {
                (i.unsigned_abs() as f64 <= DECIMAL_MAX).then(|| format!("{i}.0"))
            } else {
                n.as_f64()
                    .filter(|x| x.is_finite() && x.abs() <= DECIMAL_MAX)
                    .map(|x| format!("{x:.4}"))
            };
            text.map(Scalar::Decimal)
                .ok_or_else(|| bad("a number within ±922337203685477"))
        }
    }
}

fn short(v: &Value) -> String {
    let t = v.to_string();
    match t.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t,
    }
}

/// The refusal when no policy permits a request.
fn default_deny(resource_id: String) -> Reason {
    Reason {
        rule: RuleId::new("policy-default-deny"),
        origin: Origin::Policy,
        action: Action::Deny,
        message: "no policy permits this call".to_owned(),
        facts: vec![Fact {
            key: "resource",
            value: resource_id,
        }],
    }
}

/// Checks that every `Tool::"<server>/<name>"` the policy text names is on
/// a configured upstream: a typo in a server name would otherwise be a
/// rule that silently never matches. (Names within a server are checked
/// against what the server lists as it is learnt: tools, prompts and
/// resources share the `Tool` type, so an unknown name is not an error at
/// load.) The error carries file, line and column.
pub fn check_servers(file: &str, src: &str, servers: &[String]) -> Result<(), Error> {
    let set = PolicySet::from_str(src).map_err(|e| {
        let msg = e.to_string();
        policy_err(file, src, &e, msg)
    })?;
    for p in set.policies() {
        let scoped = match p.resource_constraint() {
            ResourceConstraint::In(u)
            | ResourceConstraint::Eq(u)
            | ResourceConstraint::IsIn(_, u) => Some(u),
            ResourceConstraint::Any | ResourceConstraint::Is(_) => None,
        };
        for uid in p.entity_literals().into_iter().chain(scoped) {
            if uid.type_name().to_string() != "Tool" {
                continue;
            }
            let id = uid.id().unescaped();
            let server = id.split_once('/').map_or(id, |(s, _)| s);
            if servers.iter().any(|s| s == server) {
                continue;
            }
            let needle = format!("Tool::\"{}\"", id.escape_debug());
            return Err(Error::Policy {
                at: loc_at(file, src, src.find(&needle)),
                message: format!(
                    "`Tool::\"{id}\"` names server `{server}`, which is not a configured upstream (upstreams: {}); resources are named `Tool::\"<upstream>/<tool, prompt or resource URI>\"`",
                    if servers.is_empty() {
                        "none".to_owned()
                    } else {
                        servers.join(", ")
                    }
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
