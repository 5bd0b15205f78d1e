//! Argument roles: what each argument of a tool *is* (a destination, a
//! free-text body, an object id, the subject id, an amount, a shell
//! command, a file path).
//!
//! Owns: [`ArgRole`], operator [`RoleOverride`]s (`judge.tools` in
//! `castellan.yaml`), [`RoleSource`] and the per-call resolution
//! ([`CallRoles`]). Roles are inferred from argument names (and, for
//! catalogued tools, from the names in the input schema); an operator
//! override for an argument wins over inference. Subject binding, baselines
//! and the shell reading use roles, never fixed tool names.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::glob::Glob;

/// What an argument is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgRole {
    /// A recipient, account, URL or payee: where data or money goes.
    Destination,
    /// Free text written by the agent (a message body, a note, file content).
    Body,
    /// The id of an object the call reads or changes (a booking, an order).
    Object,
    /// Whom the call is about: a user, customer or account holder id.
    Subject,
    /// An amount of money or credit.
    Amount,
    /// A shell command line.
    Command,
    /// A file path the call writes or reads.
    Path,
}

impl ArgRole {
    /// All roles.
    pub const ALL: [ArgRole; 7] = [
        ArgRole::Destination,
        ArgRole::Body,
        ArgRole::Object,
        ArgRole::Subject,
        ArgRole::Amount,
        ArgRole::Command,
        ArgRole::Path,
    ];

    /// The name used in configuration and output.
    pub fn as_str(self) -> &'static str {
        match self {
            ArgRole::Destination => "destination",
            ArgRole::Body => "body",
            ArgRole::Object => "object",
            ArgRole::Subject => "subject",
            ArgRole::Amount => "amount",
            ArgRole::Command => "command",
            ArgRole::Path => "path",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<ArgRole> {
        ArgRole::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for ArgRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an argument's role came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "source", content = "detail")]
pub enum RoleSource {
    /// An operator annotation (`judge.tools`) whose glob is given.
    Config(String),
    /// Inferred from the argument's name.
    Inferred,
}

impl fmt::Display for RoleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoleSource::Config(g) => write!(f, "config `{g}`"),
            RoleSource::Inferred => f.write_str("inferred"),
        }
    }
}

/// An operator annotation for the tools whose `server/tool` matches a
/// glob: argument roles (by top-level name or JSON pointer) and caps.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleOverride {
    glob: Glob,
    args: Vec<(String, ArgRole)>,
    /// No amount argument may exceed this (a hold with the numbers).
    pub max_amount: Option<f64>,
    /// No session may call the tool more often than this.
    pub max_calls_per_session: Option<u32>,
}

impl RoleOverride {
    /// An annotation for tools matching `glob`; `args` maps an argument
    /// name (or a JSON pointer such as `/payment/method_id`) to its role.
    pub fn new(glob: &str, args: Vec<(String, ArgRole)>) -> RoleOverride {
        RoleOverride {
            glob: Glob::new(glob),
            args,
            max_amount: None,
            max_calls_per_session: None,
        }
    }

    /// Sets the caps.
    pub fn with_caps(mut self, max_amount: Option<f64>, max_calls: Option<u32>) -> RoleOverride {
        self.max_amount = max_amount;
        self.max_calls_per_session = max_calls;
        self
    }

    /// True if the annotation applies to `server/tool`.
    pub fn matches(&self, server: &str, tool: &str) -> bool {
        self.glob.matches_tool(server, tool)
    }

    /// The glob.
    pub fn glob(&self) -> &str {
        self.glob.as_str()
    }
}

/// One argument with a role, as `castellan tools` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleEntry {
    /// Argument name or JSON pointer.
    pub argument: String,
    /// Its role.
    pub role: ArgRole,
    /// Where the role came from.
    #[serde(flatten)]
    pub source: RoleSource,
}

/// Argument names that hold a shell command line.
const COMMAND_KEYS: &[&str] = &[
    "command",
    "cmd",
    "commands",
    "command_line",
    "commandline",
    "cmdline",
    "shell_command",
    "bash_command",
    "script",
    "shell",
];
/// Argument names that hold a file path.
const PATH_KEYS: &[&str] = &[
    "path",
    "file",
    "file_path",
    "filepath",
    "filename",
    "file_name",
    "target_file",
    "target_path",
    "dest_path",
    "destination_path",
    "output_path",
    "relative_path",
];
/// Argument names that hold free text written by the agent.
const BODY_KEYS: &[&str] = &[
    "body",
    "content",
    "contents",
    "text",
    "message",
    "note",
    "notes",
    "comment",
    "description",
    "summary",
    "reason",
    "data",
    "new_content",
    "file_content",
    "code",
    "patch",
    "diff",
];
/// Whom a record is about: the stems of subject ids.
const SUBJECT_STEMS: &[&str] = &[
    "user",
    "customer",
    "client",
    "member",
    "patient",
    "account_holder",
    "holder",
    "passenger",
    "guest",
    "subscriber",
    "person",
    "profile",
];

/// The role a top-level argument name implies, if any. Lower-case input.
pub(crate) fn infer(key: &str) -> Option<ArgRole> {
    if COMMAND_KEYS.contains(&key) {
        return Some(ArgRole::Command);
    }
    if PATH_KEYS.contains(&key) {
        return Some(ArgRole::Path);
    }
    if key.contains("amount")
        || matches!(
            key,
            "sum" | "total" | "price" | "refund" | "credit" | "credits" | "compensation" | "fee"
        )
    {
        return Some(ArgRole::Amount);
    }
    if is_subject_key(key) {
        return Some(ArgRole::Subject);
    }
    if key.contains("payment_method") || key == "payment_id" || key.contains("payout") {
        return Some(ArgRole::Destination);
    }
    if crate::facts::is_dest_key(key) {
        return Some(ArgRole::Destination);
    }
    if BODY_KEYS.contains(&key) {
        return Some(ArgRole::Body);
    }
    if is_object_key(key) {
        return Some(ArgRole::Object);
    }
    None
}

/// `user_id`, `customer_email`, `customerId`-style keys (lower-cased).
pub(crate) fn is_subject_key(key: &str) -> bool {
    SUBJECT_STEMS.iter().any(|s| {
        key.strip_prefix(s).is_some_and(|rest| {
            matches!(
                rest.trim_start_matches('_'),
                "id" | "email" | "ids" | "number" | "no" | "phone" | "name" | "username"
            )
        })
    })
}

/// `email`, `phone`: on a lookup, whom it is about.
fn is_contact_key(key: &str) -> bool {
    matches!(
        key,
        "email" | "email_address" | "phone" | "phone_number" | "username" | "account_id"
    )
}

/// `reservation_id`, `order_number`, `booking_ref` (not subject ids).
pub(crate) fn is_object_key(key: &str) -> bool {
    if key == "id" {
        return true;
    }
    let stem = key
        .strip_suffix("_id")
        .or_else(|| key.strip_suffix("_ids"))
        .or_else(|| key.strip_suffix("_number"))
        .or_else(|| key.strip_suffix("_ref"))
        .or_else(|| key.strip_suffix("_code"));
    stem.is_some_and(|s| {
        let s = s.trim_end_matches('_');
        !s.is_empty() && !is_subject_key(key) && !matches!(s, "session" | "request" | "trace")
    })
}

/// The roles of one call's arguments: each entry is an argument (name or
/// JSON pointer), its role and its value. Built per call; small.
#[derive(Debug, Default)]
pub(crate) struct CallRoles<'c> {
    pub(crate) args: Vec<(Cow<'c, str>, ArgRole, &'c Value)>,
    /// The operator's caps for this tool, if any.
    pub(crate) max_amount: Option<f64>,
    pub(crate) max_calls: Option<u32>,
    /// Arguments whose role an operator set (inference does not touch
    /// them; the destination list follows the operator).
    overridden: Vec<Cow<'c, str>>,
}

impl<'c> CallRoles<'c> {
    /// Resolves the roles of `args` for `server/tool`. On a tool that only
    /// reads (`lookup`), an e-mail address or phone number names whom the
    /// lookup is about, not a recipient.
    pub(crate) fn resolve(
        overrides: &[RoleOverride],
        server: &str,
        tool: &str,
        args: &'c Value,
        lookup: bool,
    ) -> CallRoles<'c> {
        let mut out = CallRoles::default();
        let obj = args.as_object();
        for o in overrides.iter().filter(|o| o.matches(server, tool)) {
            out.max_amount = o.max_amount.or(out.max_amount);
            out.max_calls = o.max_calls_per_session.or(out.max_calls);
            for (name, role) in &o.args {
                let v = if name.starts_with('/') {
                    args.pointer(name)
                } else {
                    obj.and_then(|m| m.get(name.as_str()))
                };
                out.overridden.retain(|n| n != name);
                out.args.retain(|(n, _, _)| n != name);
                out.overridden.push(Cow::Owned(name.clone()));
                if let Some(v) = v {
                    out.args.push((Cow::Owned(name.clone()), *role, v));
                }
            }
        }
        if let Some(m) = obj {
            for (k, v) in m {
                if v.is_null() || out.overridden.iter().any(|n| n == k) {
                    continue;
                }
                let role = if k.bytes().any(|b| b.is_ascii_uppercase()) {
                    infer(&snake(k))
                } else {
                    infer(k)
                };
                let role = match role {
                    Some(ArgRole::Destination) if lookup && is_contact_key(k) => {
                        Some(ArgRole::Subject)
                    }
                    other => other,
                };
                if let Some(r) = role {
                    out.args.push((Cow::Borrowed(k.as_str()), r, v));
                }
            }
        }
        out
    }

    /// The values of arguments with `role`.
    pub(crate) fn of(&self, role: ArgRole) -> impl Iterator<Item = (&str, &'c Value)> + '_ {
        self.args
            .iter()
            .filter(move |(_, r, _)| *r == role)
            .map(|(n, _, v)| (n.as_ref(), *v))
    }

    /// True if some argument has `role`.
    pub(crate) fn has(&self, role: ArgRole) -> bool {
        self.args.iter().any(|(_, r, _)| *r == role)
    }

    /// The role an operator gave the top-level argument `name`, if any
    /// (`Some(None)`: an operator named it with a role the destination
    /// list does not know, i.e. not a destination).
    pub(crate) fn configured(&self, name: &str) -> Option<Option<ArgRole>> {
        if !self.overridden.iter().any(|n| n == name) {
            return None;
        }
        Some(
            self.args
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, r, _)| *r),
        )
    }
}

/// `customerId` -> `customer_id`.
fn snake(k: &str) -> String {
    let mut s = String::with_capacity(k.len() + 4);
    for (i, c) in k.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

/// The roles of a catalogued tool from its schema's property names and the
/// operator's annotations, with sources (for `castellan tools`).
pub(crate) fn explain(
    overrides: &[RoleOverride],
    server: &str,
    tool: &str,
    schema: Option<&Value>,
) -> Vec<RoleEntry> {
    let mut out: Vec<RoleEntry> = Vec::new();
    if let Some(props) = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
    {
        for k in props.keys() {
            if let Some(role) = infer(&snake(k)) {
                out.push(RoleEntry {
                    argument: k.clone(),
                    role,
                    source: RoleSource::Inferred,
                });
            }
        }
    }
    for o in overrides.iter().filter(|o| o.matches(server, tool)) {
        for (name, role) in &o.args {
            out.retain(|e| e.argument != *name);
            out.push(RoleEntry {
                argument: name.clone(),
                role: *role,
                source: RoleSource::Config(o.glob().to_owned()),
            });
        }
    }
    out.sort_by(|a, b| a.argument.cmp(&b.argument));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_imply_roles() {
        assert_eq!(infer("user_id"), Some(ArgRole::Subject));
        assert_eq!(infer("customer_email"), Some(ArgRole::Subject));
        assert_eq!(infer("reservation_id"), Some(ArgRole::Object));
        assert_eq!(infer("order_id"), Some(ArgRole::Object));
        assert_eq!(infer("refund_amount"), Some(ArgRole::Amount));
        assert_eq!(infer("payment_method_id"), Some(ArgRole::Destination));
        assert_eq!(infer("command"), Some(ArgRole::Command));
        assert_eq!(infer("file_path"), Some(ArgRole::Path));
        assert_eq!(infer("content"), Some(ArgRole::Body));
        assert_eq!(infer("to"), Some(ArgRole::Destination));
        assert_eq!(infer("session_id"), None);
        assert_eq!(infer("cabin"), None);
    }

    #[test]
    fn operator_roles_win_over_inference() {
        let args = json!({"user_id": "u1", "ref": "R9", "p": {"to": "acct-7"}});
        let ov = vec![RoleOverride::new(
            "air/*",
            vec![
                ("user_id".into(), ArgRole::Object),
                ("ref".into(), ArgRole::Object),
                ("/p/to".into(), ArgRole::Destination),
            ],
        )];
        let r = CallRoles::resolve(&ov, "air", "cancel", &args, false);
        let objs: Vec<&str> = r.of(ArgRole::Object).map(|(n, _)| n).collect();
        assert_eq!(r.configured("user_id"), Some(Some(ArgRole::Object)));
        assert_eq!(r.configured("cabin"), None);
        assert_eq!(objs, ["user_id", "ref"]);
        assert!(!r.has(ArgRole::Subject), "config said user_id is an object");
        assert_eq!(
            r.of(ArgRole::Destination).next().map(|(_, v)| v),
            Some(&json!("acct-7"))
        );
        // Another server: inference only.
        let r = CallRoles::resolve(&ov, "shop", "cancel", &args, false);
        assert!(r.has(ArgRole::Subject));
    }

    #[test]
    fn explain_names_sources() {
        let ov = vec![RoleOverride::new(
            "shop/*",
            vec![("note".into(), ArgRole::Destination)],
        )];
        let schema = json!({"properties": {"orderId": {}, "note": {}, "cabin": {}}});
        let e = explain(&ov, "shop", "refund", Some(&schema));
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].argument, "note");
        assert_eq!(e[0].source, RoleSource::Config("shop/*".into()));
        assert_eq!(e[1].argument, "orderId");
        assert_eq!(e[1].role, ArgRole::Object);
        assert_eq!(e[1].source, RoleSource::Inferred);
    }
}
