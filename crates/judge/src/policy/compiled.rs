//! The validated policy set compiled for the hot path.
//!
//! Owns: [`Compiled`], an evaluator for the Cedar expressions policies
//! actually use (attribute access, `has`, comparisons, `like`, set tests,
//! `in`/`is` on entities without parents, `if`, long arithmetic and the
//! `decimal` extension), read from each policy's JSON form (Cedar's
//! documented EST) once at load.
//!
//! Why: cedar-policy's authorizer partially evaluates every policy, rebuilds
//! each policy's condition and needs a `Context` whose restricted
//! expressions are evaluated into values first: about 75k instructions for
//! a four-policy set, several times the whole budget of a call. Here the
//! request's facts are read in place, straight from the call, with no
//! context or entity built.
//!
//! Cedar stays the reference: it parses and validates every policy, and
//! anything this evaluator does not implement (templates, `is ... in` scopes,
//! record literals, other extensions, record equality) is answered by Cedar
//! itself: unknown constructs at load (the whole set then goes to Cedar),
//! unusual values at evaluation ([`Fail::Unsupported`] sends that request
//! to Cedar). The tests compare both on every construct.

use serde_json::Value;

use crate::label::{Label, LabelSet};

/// Why an expression gave no value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Fail {
    /// A Cedar evaluation error: the policy is skipped, as Cedar skips it.
    Error,
    /// Outside what this evaluator implements: ask Cedar.
    Unsupported,
}

type R<T> = Result<T, Fail>;

/// A Cedar decimal: the value times 10^4, as Cedar stores it.
fn parse_decimal(s: &str) -> Option<i64> {
    let (l, r) = s.split_once('.')?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    let neg = l.starts_with('-');
    let lnum = l.strip_prefix('-').unwrap_or(l);
    if !digits(lnum) || !digits(r) || r.len() > 4 {
        return None;
    }
    let li: i64 = l.parse().ok()?;
    let li = li.checked_mul(10_000)?;
    let ri: i64 = r.parse().ok()?;
    let ri = ri.checked_mul(10i64.pow(4 - r.len() as u32))?;
    if neg {
        li.checked_sub(ri)
    } else {
        li.checked_add(ri)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Principal,
    Action,
    Resource,
    Context,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bin {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Contains,
    ContainsAll,
    ContainsAny,
    In,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecCmp {
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug)]
enum Pat {
    Star,
    Char(char),
}

#[derive(Debug)]
enum Lit {
    Bool(bool),
    Long(i64),
    Str(String),
    Entity(String, String),
    /// `None`: the text is not a decimal (evaluating it is an error).
    Decimal(Option<i64>),
}

#[derive(Debug)]
enum Expr {
    Lit(Lit),
    Var(Var),
    Get(Box<Expr>, String),
    Has(Box<Expr>, Vec<String>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Bin(Bin, Box<Expr>, Box<Expr>),
    IsEmpty(Box<Expr>),
    Like(Box<Expr>, Vec<Pat>),
    Is(Box<Expr>, String, Option<Box<Expr>>),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    Set(Vec<Expr>),
    Decimal(Box<Expr>),
    DecCmp(DecCmp, Box<Expr>, Box<Expr>),
}

/// One policy's conditions, in source order: `(true, e)` for `when`,
/// `(false, e)` for `unless`.
#[derive(Debug)]
pub(super) struct Conditions {
    conds: Vec<(bool, Expr)>,
}

/// Reads the `conditions` of a policy's JSON form; `None` when a construct
/// is not implemented here.
pub(super) fn compile(policy_json: &Value) -> Option<Conditions> {
    let mut conds = Vec::new();
    for c in policy_json.get("conditions")?.as_array()? {
        let when = match c.get("kind")?.as_str()? {
            "when" => true,
            "unless" => false,
            _ => return None,
        };
        conds.push((when, expr(c.get("body")?)?));
    }
    Some(Conditions { conds })
}

fn boxed(v: &Value) -> Option<Box<Expr>> {
    expr(v).map(Box::new)
}

fn two(v: &Value) -> Option<(Box<Expr>, Box<Expr>)> {
    Some((boxed(v.get("left")?)?, boxed(v.get("right")?)?))
}

fn lit(v: &Value) -> Option<Expr> {
    Some(match v {
        Value::Bool(b) => Expr::Lit(Lit::Bool(*b)),
        Value::Number(n) => Expr::Lit(Lit::Long(n.as_i64()?)),
        Value::String(s) => Expr::Lit(Lit::Str(s.clone())),
        Value::Array(items) => Expr::Set(items.iter().map(lit).collect::<Option<_>>()?),
        Value::Object(o) => {
            if let Some(e) = o.get("__entity") {
                Expr::Lit(Lit::Entity(
                    e.get("type")?.as_str()?.to_owned(),
                    e.get("id")?.as_str()?.to_owned(),
                ))
            } else if let Some(x) = o.get("__extn") {
                if x.get("fn")?.as_str()? != "decimal" {
                    return None;
                }
                Expr::Lit(Lit::Decimal(parse_decimal(x.get("arg")?.as_str()?)))
            } else {
                // Record literals: left to Cedar.
                return None;
            }
        }
        Value::Null => return None,
    })
}

fn expr(v: &Value) -> Option<Expr> {
    let o = v.as_object()?;
    if o.len() != 1 {
        return None;
    }
    let (k, a) = o.iter().next()?;
    let bin = |op: Bin| two(a).map(|(l, r)| Expr::Bin(op, l, r));
    Some(match k.as_str() {
        "Value" => lit(a)?,
        "Var" => Expr::Var(match a.as_str()? {
            "principal" => Var::Principal,
            "action" => Var::Action,
            "resource" => Var::Resource,
            "context" => Var::Context,
            _ => return None,
        }),
        "!" => Expr::Not(boxed(a.get("arg")?)?),
        "neg" => Expr::Neg(boxed(a.get("arg")?)?),
        "&&" => two(a).map(|(l, r)| Expr::And(l, r))?,
        "||" => two(a).map(|(l, r)| Expr::Or(l, r))?,
        "==" => bin(Bin::Eq)?,
        "!=" => bin(Bin::Ne)?,
        "<" => bin(Bin::Lt)?,
        "<=" => bin(Bin::Le)?,
        ">" => bin(Bin::Gt)?,
        ">=" => bin(Bin::Ge)?,
        "+" => bin(Bin::Add)?,
        "-" => bin(Bin::Sub)?,
        "*" => bin(Bin::Mul)?,
        "contains" => bin(Bin::Contains)?,
        "containsAll" => bin(Bin::ContainsAll)?,
        "containsAny" => bin(Bin::ContainsAny)?,
        "in" => bin(Bin::In)?,
        "isEmpty" => Expr::IsEmpty(boxed(a.get("arg")?)?),
        "." => Expr::Get(boxed(a.get("left")?)?, a.get("attr")?.as_str()?.to_owned()),
        "has" => {
            let left = boxed(a.get("left")?)?;
            let path = match a.get("attr")? {
                Value::String(s) => vec![s.clone()],
                Value::Array(p) => p
                    .iter()
                    .map(|x| x.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()?,
                _ => return None,
            };
            if path.is_empty() {
                return None;
            }
            Expr::Has(left, path)
        }
        "like" => {
            let mut pat = Vec::new();
            for p in a.get("pattern")?.as_array()? {
                match p {
                    Value::String(w) if w == "Wildcard" => pat.push(Pat::Star),
                    Value::Object(l) => {
                        pat.extend(l.get("Literal")?.as_str()?.chars().map(Pat::Char))
                    }
                    _ => return None,
                }
            }
            Expr::Like(boxed(a.get("left")?)?, pat)
        }
        "is" => Expr::Is(
            boxed(a.get("left")?)?,
            a.get("entity_type")?.as_str()?.to_owned(),
            match a.get("in") {
                None | Some(Value::Null) => None,
                Some(x) => Some(boxed(x)?),
            },
        ),
        "if-then-else" => Expr::If(
            boxed(a.get("if")?)?,
            boxed(a.get("then")?)?,
            boxed(a.get("else")?)?,
        ),
        "Set" => Expr::Set(a.as_array()?.iter().map(expr).collect::<Option<_>>()?),
        "decimal" => {
            let args = a.as_array()?;
            if args.len() != 1 {
                return None;
            }
            Expr::Decimal(boxed(&args[0])?)
        }
        "lessThan" | "lessThanOrEqual" | "greaterThan" | "greaterThanOrEqual" => {
            let args = a.as_array()?;
            if args.len() != 2 {
                return None;
            }
            let op = match k.as_str() {
                "lessThan" => DecCmp::Lt,
                "lessThanOrEqual" => DecCmp::Le,
                "greaterThan" => DecCmp::Gt,
                _ => DecCmp::Ge,
            };
            Expr::DecCmp(op, boxed(&args[0])?, boxed(&args[1])?)
        }
        // Slots, tags, record literals, other extensions: left to Cedar.
        _ => return None,
    })
}

/// A record of the request, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rec {
    Context,
    Session,
    Args,
    Destination,
}

/// An entity: the request's own, or one a policy names.
#[derive(Debug, Clone, Copy)]
enum Ent<'a> {
    Principal,
    Action,
    Resource,
    Named(&'a str, &'a str),
}

#[derive(Debug, Clone)]
enum Val<'a> {
    Bool(bool),
    Long(i64),
    Str(&'a str),
    Decimal(i64),
    Entity(Ent<'a>),
    /// A set of label names, plus `injected` when the flag is set.
    Labels(LabelSet, bool),
    Set(Vec<Val<'a>>),
    Rec(Rec),
}

/// What a request offers the policy: the same facts the Cedar context and
/// entities would carry, borrowed from the call.
pub(super) struct Request<'a> {
    pub agent: &'a str,
    pub user: &'a str,
    /// The call's attributes; only the declared keys are visible.
    pub attributes: &'a [(String, String)],
    pub declared: &'a [String],
    pub action: &'a str,
    pub server: &'a str,
    pub tool: &'a str,
    pub tool_labels: LabelSet,
    pub context: &'a Context<'a>,
}

/// The context keys, present exactly when the Cedar context would carry
/// them (a key is built only when some policy mentions it).
pub(super) struct Context<'a> {
    pub session: Option<Session>,
    /// The typed arguments (`None`: no `args` key).
    pub args: Option<Args<'a>>,
    pub args_text: Option<&'a str>,
    pub arg_from: Option<(LabelSet, bool)>,
    pub carries: Option<(LabelSet, bool)>,
    pub destination: Option<Destination<'a>>,
    pub first_use: Option<bool>,
    pub rules: Option<&'a [&'a str]>,
}

pub(super) struct Session {
    pub labels: LabelSet,
    pub risk: i64,
    pub calls: i64,
    pub injection_seen: bool,
}

pub(super) struct Destination<'a> {
    pub any: bool,
    pub new: bool,
    pub in_intent: bool,
    pub external: bool,
    pub from: (LabelSet, bool),
    pub values: Vec<&'a str>,
}

/// `context.args`: the call's arguments with the catalogue's types.
pub(super) struct Args<'a> {
    /// `None` when listing (an empty record).
    pub values: Option<&'a serde_json::Map<String, Value>>,
    pub types: &'a std::collections::BTreeMap<String, super::ArgType>,
}

impl<'a> Args<'a> {
    fn get(&self, k: &str) -> R<Option<Val<'a>>> {
        let (Some(values), Some(t)) = (self.values, self.types.get(k)) else {
            return Ok(None);
        };
        let Some(v) = values.get(k).filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        // The caller checked every argument converts (`check_args`).
        let Ok(s) = super::scalar(*t, k, v) else {
            return Err(Fail::Error);
        };
        Ok(Some(match s {
            super::Scalar::Str(x) => Val::Str(x),
            super::Scalar::Bool(b) => Val::Bool(b),
            super::Scalar::Long(n) => Val::Long(n),
            super::Scalar::Decimal(text) => {
                Val::Decimal(parse_decimal(&text).ok_or(Fail::Unsupported)?)
            }
        }))
    }
}

impl Request<'_> {
    /// Entity equality; entities have no parents, so `in` is equality too.
    fn ent_eq(&self, a: Ent<'_>, b: Ent<'_>) -> bool {
        let (ta, ia, ja) = self.ent_id(a);
        let (tb, ib, jb) = self.ent_id(b);
        if ta != tb {
            return false;
        }
        // Ids are `first` or `first/second`.
        let full = |i: &str, j: Option<&str>, other: &str| match j {
            None => i == other,
            Some(j) => other
                .strip_prefix(i)
                .and_then(|r| r.strip_prefix('/'))
                .is_some_and(|r| r == j),
        };
        match (ja, jb) {
            (None, _) => full(ib, jb, ia),
            (_, None) => full(ia, ja, ib),
            (Some(x), Some(y)) => ia == ib && x == y,
        }
    }

    fn ent_id<'s>(&'s self, e: Ent<'s>) -> (&'s str, &'s str, Option<&'s str>) {
        match e {
            Ent::Principal => ("Agent", self.agent, None),
            Ent::Action => ("Action", self.action, None),
            Ent::Resource => ("Tool", self.server, Some(self.tool)),
            Ent::Named(t, i) => (t, i, None),
        }
    }

    /// Which of the request's entities `e` is, if any: only they exist.
    fn stored(&self, e: Ent<'_>) -> Option<Ent<'static>> {
        [Ent::Principal, Ent::Resource]
            .into_iter()
            .find(|s| self.ent_eq(*s, e))
    }
}

impl<'a> Request<'a> {
    fn declared_attr(&self, k: &str) -> Option<&'a str> {
        if !self.declared.iter().any(|d| d == k) {
            return None;
        }
        // A repeated key: the last one wins, as when the entity is built.
        self.attributes
            .iter()
            .rev()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }

    /// `v.attr`: `Ok(None)` when the attribute is absent.
    fn attr(&self, v: &Val<'a>, k: &str) -> R<Option<Val<'a>>> {
        Ok(match v {
            Val::Entity(e) => match self.stored(*e) {
                Some(Ent::Principal) => match k {
                    "name" => Some(Val::Str(self.agent)),
                    "user" => Some(Val::Str(self.user)),
                    _ => self.declared_attr(k).map(Val::Str),
                },
                Some(_) => match k {
                    "name" => Some(Val::Str(self.tool)),
                    "server" => Some(Val::Str(self.server)),
                    "labels" => Some(Val::Labels(self.tool_labels, false)),
                    _ => None,
                },
                // Reading an attribute of an entity that does not exist is an
                // error (`has` on it is false, see `eval`).
                None => return Err(Fail::Error),
            },
            Val::Rec(Rec::Context) => {
                let c = &self.context;
                match k {
                    "session" => c.session.as_ref().map(|_| Val::Rec(Rec::Session)),
                    "args" => c.args.as_ref().map(|_| Val::Rec(Rec::Args)),
                    "args_text" => c.args_text.map(Val::Str),
                    "arg_from" => c.arg_from.map(|(l, i)| Val::Labels(l, i)),
                    "carries" => c.carries.map(|(l, i)| Val::Labels(l, i)),
                    "destination" => c.destination.as_ref().map(|_| Val::Rec(Rec::Destination)),
                    "first_use" => c.first_use.map(Val::Bool),
                    "rules" => c
                        .rules
                        .map(|r| Val::Set(r.iter().copied().map(Val::Str).collect())),
                    _ => None,
                }
            }
            Val::Rec(Rec::Session) => {
                let Some(s) = &self.context.session else {
                    return Ok(None);
                };
                match k {
                    "labels" => Some(Val::Labels(s.labels, false)),
                    "risk" => Some(Val::Long(s.risk)),
                    "calls" => Some(Val::Long(s.calls)),
                    "injection_seen" => Some(Val::Bool(s.injection_seen)),
                    _ => None,
                }
            }
            Val::Rec(Rec::Args) => match &self.context.args {
                Some(a) => a.get(k)?,
                None => None,
            },
            Val::Rec(Rec::Destination) => {
                let Some(d) = &self.context.destination else {
                    return Ok(None);
                };
                match k {
                    "any" => Some(Val::Bool(d.any)),
                    "new" => Some(Val::Bool(d.new)),
                    "in_intent" => Some(Val::Bool(d.in_intent)),
                    "external" => Some(Val::Bool(d.external)),
                    "from" => Some(Val::Labels(d.from.0, d.from.1)),
                    "values" => Some(Val::Set(d.values.iter().copied().map(Val::Str).collect())),
                    _ => None,
                }
            }
            _ => return Err(Fail::Error),
        })
    }
}

fn set_items<'a>(v: &Val<'a>) -> R<Vec<Val<'a>>> {
    match v {
        Val::Set(s) => Ok(s.clone()),
        Val::Labels(l, inj) => {
            let mut out: Vec<Val<'a>> = l.iter().map(|x| Val::Str(x.as_str())).collect();
            if *inj {
                out.push(Val::Str("injected"));
            }
            Ok(out)
        }
        _ => Err(Fail::Error),
    }
}

/// Cedar's `like`: `*` matches any run of characters.
fn like(text: &str, pat: &[Pat]) -> bool {
    let t: &[u8] = text.as_bytes();
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    let next = |i: usize| -> Option<(char, usize)> {
        text.get(i..)?.chars().next().map(|c| (c, i + c.len_utf8()))
    };
    while i < t.len() {
        match (pat.get(j), next(i)) {
            (Some(Pat::Star), _) => {
                star = Some((j, i));
                j += 1;
            }
            (Some(Pat::Char(c)), Some((tc, ni))) if *c == tc => {
                i = ni;
                j += 1;
            }
            _ => match star {
                Some((sj, si)) => {
                    let Some((_, ni)) = next(si) else {
                        return false;
                    };
                    star = Some((sj, ni));
                    i = ni;
                    j = sj + 1;
                }
                None => return false,
            },
        }
    }
    pat[j.min(pat.len())..]
        .iter()
        .all(|p| matches!(p, Pat::Star))
}

impl<'a> Request<'a> {
    fn eq(&self, a: &Val<'a>, b: &Val<'a>) -> R<bool> {
        Ok(match (a, b) {
            (Val::Bool(x), Val::Bool(y)) => x == y,
            (Val::Long(x), Val::Long(y)) => x == y,
            (Val::Str(x), Val::Str(y)) => x == y,
            (Val::Decimal(x), Val::Decimal(y)) => x == y,
            (Val::Entity(x), Val::Entity(y)) => self.ent_eq(*x, *y),
            (Val::Labels(x, i), Val::Labels(y, j)) => x == y && i == j,
            (Val::Set(_) | Val::Labels(..), Val::Set(_) | Val::Labels(..)) => {
                let (xs, ys) = (set_items(a)?, set_items(b)?);
                self.subset(&xs, &ys)? && self.subset(&ys, &xs)?
            }
            (Val::Rec(_), _) | (_, Val::Rec(_)) => return Err(Fail::Unsupported),
            _ => false,
        })
    }

    fn member(&self, set: &[Val<'a>], x: &Val<'a>) -> R<bool> {
        for s in set {
            if self.eq(s, x)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn subset(&self, xs: &[Val<'a>], ys: &[Val<'a>]) -> R<bool> {
        for x in xs {
            if !self.member(ys, x)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn contains(&self, set: &Val<'a>, x: &Val<'a>) -> R<bool> {
        if let (Val::Labels(l, inj), _) = (set, x) {
            return Ok(match x {
                Val::Str("injected") => *inj,
                Val::Str(s) => Label::parse(s).is_some_and(|lab| l.contains(lab)),
                _ => false,
            });
        }
        match set {
            Val::Set(s) => self.member(s, x),
            _ => Err(Fail::Error),
        }
    }

    fn bool(&self, e: &'a Expr) -> R<bool> {
        match self.eval(e)? {
            Val::Bool(b) => Ok(b),
            _ => Err(Fail::Error),
        }
    }

    fn long(&self, e: &'a Expr) -> R<i64> {
        match self.eval(e)? {
            Val::Long(n) => Ok(n),
            _ => Err(Fail::Error),
        }
    }

    fn decimal(&self, e: &'a Expr) -> R<i64> {
        match self.eval(e)? {
            Val::Decimal(n) => Ok(n),
            _ => Err(Fail::Error),
        }
    }

    fn entity(&self, e: &'a Expr) -> R<Ent<'a>> {
        match self.eval(e)? {
            Val::Entity(x) => Ok(x),
            _ => Err(Fail::Error),
        }
    }

    fn eval(&self, e: &'a Expr) -> R<Val<'a>> {
        Ok(match e {
            Expr::Lit(l) => match l {
                Lit::Bool(b) => Val::Bool(*b),
                Lit::Long(n) => Val::Long(*n),
                Lit::Str(s) => Val::Str(s),
                Lit::Entity(t, i) => Val::Entity(Ent::Named(t, i)),
                Lit::Decimal(d) => Val::Decimal(d.ok_or(Fail::Error)?),
            },
            Expr::Var(v) => match v {
                Var::Principal => Val::Entity(Ent::Principal),
                Var::Action => Val::Entity(Ent::Action),
                Var::Resource => Val::Entity(Ent::Resource),
                Var::Context => Val::Rec(Rec::Context),
            },
            Expr::Get(x, k) => {
                let v = self.eval(x)?;
                self.attr(&v, k)?.ok_or(Fail::Error)?
            }
            Expr::Has(x, path) => {
                let mut v = self.eval(x)?;
                for k in path {
                    let found = match &v {
                        Val::Entity(e) if self.stored(*e).is_none() => None,
                        _ => self.attr(&v, k)?,
                    };
                    match found {
                        Some(next) => v = next,
                        None => return Ok(Val::Bool(false)),
                    }
                }
                Val::Bool(true)
            }
            Expr::Not(x) => Val::Bool(!self.bool(x)?),
            Expr::Neg(x) => Val::Long(self.long(x)?.checked_neg().ok_or(Fail::Error)?),
            Expr::And(l, r) => Val::Bool(self.bool(l)? && self.bool(r)?),
            Expr::Or(l, r) => Val::Bool(self.bool(l)? || self.bool(r)?),
            Expr::Bin(op, l, r) => {
                let arith = |f: fn(i64, i64) -> Option<i64>| -> R<Val<'a>> {
                    let (x, y) = (self.long(l)?, self.long(r)?);
                    f(x, y).map(Val::Long).ok_or(Fail::Error)
                };
                let cmp = |f: fn(&i64, &i64) -> bool| -> R<Val<'a>> {
                    let (x, y) = (self.long(l)?, self.long(r)?);
                    Ok(Val::Bool(f(&x, &y)))
                };
                match op {
                    Bin::Eq => Val::Bool(self.eq(&self.eval(l)?, &self.eval(r)?)?),
                    Bin::Ne => Val::Bool(!self.eq(&self.eval(l)?, &self.eval(r)?)?),
                    Bin::Lt => cmp(i64::lt)?,
                    Bin::Le => cmp(i64::le)?,
                    Bin::Gt => cmp(i64::gt)?,
                    Bin::Ge => cmp(i64::ge)?,
                    Bin::Add => arith(i64::checked_add)?,
                    Bin::Sub => arith(i64::checked_sub)?,
                    Bin::Mul => arith(i64::checked_mul)?,
                    Bin::Contains => {
                        let set = self.eval(l)?;
                        Val::Bool(self.contains(&set, &self.eval(r)?)?)
                    }
                    Bin::ContainsAll | Bin::ContainsAny => {
                        let (a, b) = (self.eval(l)?, self.eval(r)?);
                        let (xs, ys) = (set_items(&a)?, set_items(&b)?);
                        Val::Bool(if *op == Bin::ContainsAll {
                            self.subset(&ys, &xs)?
                        } else {
                            let mut any = false;
                            for y in &ys {
                                if self.member(&xs, y)? {
                                    any = true;
                                    break;
                                }
                            }
                            any
                        })
                    }
                    Bin::In => {
                        let a = self.entity(l)?;
                        Val::Bool(self.within(a, r)?)
                    }
                }
            }
            Expr::IsEmpty(x) => Val::Bool(set_items(&self.eval(x)?)?.is_empty()),
            Expr::Like(x, pat) => match self.eval(x)? {
                Val::Str(s) => Val::Bool(like(s, pat)),
                _ => return Err(Fail::Error),
            },
            Expr::Is(x, t, within) => {
                let a = self.entity(x)?;
                let (ty, _, _) = self.ent_id(a);
                // `x is T in y` is `x is T && x in y`.
                Val::Bool(
                    ty == t.as_str() && within.as_ref().map_or(Ok(true), |w| self.within(a, w))?,
                )
            }
            Expr::If(c, t, f) => {
                if self.bool(c)? {
                    self.eval(t)?
                } else {
                    self.eval(f)?
                }
            }
            Expr::Set(items) => Val::Set(items.iter().map(|x| self.eval(x)).collect::<R<_>>()?),
            Expr::Decimal(x) => match self.eval(x)? {
                Val::Str(s) => Val::Decimal(parse_decimal(s).ok_or(Fail::Error)?),
                _ => return Err(Fail::Error),
            },
            Expr::DecCmp(op, l, r) => {
                let (x, y) = (self.decimal(l)?, self.decimal(r)?);
                Val::Bool(match op {
                    DecCmp::Lt => x < y,
                    DecCmp::Le => x <= y,
                    DecCmp::Gt => x > y,
                    DecCmp::Ge => x >= y,
                })
            }
        })
    }

    /// `a in r`: `r` an entity or a set of entities.
    fn within(&self, a: Ent<'a>, r: &'a Expr) -> R<bool> {
        match self.eval(r)? {
            Val::Entity(b) => Ok(self.ent_eq(a, b)),
            Val::Set(items) => {
                let mut hit = false;
                for i in items {
                    match i {
                        Val::Entity(b) => hit |= self.ent_eq(a, b),
                        _ => return Err(Fail::Error),
                    }
                }
                Ok(hit)
            }
            _ => Err(Fail::Error),
        }
    }

    /// Whether a policy's conditions hold: `Err(Error)` when Cedar would
    /// report an evaluation error (the policy is then not satisfied).
    pub(super) fn holds(&self, c: &'a Conditions) -> R<bool> {
        for (when, e) in &c.conds {
            if self.bool(e)? != *when {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_as_cedar_parses_them() {
        assert_eq!(parse_decimal("1000.0"), Some(10_000_000));
        assert_eq!(parse_decimal("-1.5"), Some(-15_000));
        assert_eq!(parse_decimal("-0.0001"), Some(-1));
        assert_eq!(parse_decimal("0.12345"), None);
        assert_eq!(parse_decimal("1."), None);
        assert_eq!(parse_decimal(".5"), None);
        assert_eq!(parse_decimal("1"), None);
        assert_eq!(parse_decimal("+1.0"), None);
        assert_eq!(parse_decimal("922337203685477.5807"), Some(i64::MAX));
        assert_eq!(parse_decimal("922337203685477.5808"), None);
        assert_eq!(parse_decimal("-922337203685477.5808"), Some(i64::MIN));
    }

    fn pat(s: &str) -> Vec<Pat> {
        s.chars()
            .map(|c| if c == '*' { Pat::Star } else { Pat::Char(c) })
            .collect()
    }

    #[test]
    fn like_matches_runs_of_any_characters() {
        for (t, p, want) in [
            ("bob@evil.example", "*@evil.example", true),
            ("bob@evil.example.com", "*@evil.example", false),
            ("", "", true),
            ("", "*", true),
            ("a", "", false),
            ("abc", "a*c", true),
            ("abbbc", "a*b*c", true),
            ("ac", "a*b*c", false),
            ("héllo wörld", "h*w*d", true),
            ("héllo", "h?llo", false),
            ("aaa", "*a", true),
            ("mississippi", "*sip*", true),
            ("mississippi", "*sipx*", false),
        ] {
            assert_eq!(like(t, &pat(p)), want, "{t:?} like {p:?}");
        }
    }
}
