//! The tool catalogue and its labels.
//!
//! Owns: [`ToolDef`] (what an upstream server says about a tool),
//! [`Annotations`], operator [`LabelOverride`]s and the [`Catalog`], which
//! computes each tool's [`LabelSet`] together with the source of every label
//! (operator config, MCP annotation, or inference from name, description and
//! input schema). Tools the catalogue has never seen are labelled by name
//! inference alone, so replayed traces work without a catalogue.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::glob::Glob;
use crate::label::{Label, LabelSet, LabelSource};
use crate::roles::{RoleEntry, RoleOverride};

/// MCP tool annotations (all hints are optional).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Annotations {
    /// `readOnlyHint`: the tool does not modify its environment.
    pub read_only_hint: Option<bool>,
    /// `destructiveHint`: the tool may perform destructive updates.
    pub destructive_hint: Option<bool>,
    /// `openWorldHint`: the tool interacts with external entities.
    pub open_world_hint: Option<bool>,
    /// `idempotentHint`: repeated calls have no additional effect.
    pub idempotent_hint: Option<bool>,
}

/// A tool as an upstream server describes it in `tools/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDef {
    /// The upstream server name, e.g. `mail`.
    pub server: String,
    /// The tool name, e.g. `send_email`.
    pub name: String,
    /// The tool description.
    #[serde(default)]
    pub description: String,
    /// The JSON Schema of the tool's arguments.
    #[serde(default, rename = "inputSchema")]
    pub input_schema: Value,
    /// MCP annotations.
    #[serde(default)]
    pub annotations: Annotations,
}

/// An operator rule that adds or removes labels on tools whose `server/tool`
/// matches a glob. Applied after annotations and inference, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelOverride {
    glob: Glob,
    add: LabelSet,
    remove: LabelSet,
}

impl LabelOverride {
    /// An override for tools matching `glob` (e.g. `crm/*` or `*export*`).
    pub fn new(glob: &str, add: LabelSet, remove: LabelSet) -> LabelOverride {
        LabelOverride {
            glob: Glob::new(glob),
            add,
            remove,
        }
    }
}

/// The labels of one tool with the source of each.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolLabels {
    /// Server name (empty when unknown).
    pub server: String,
    /// Tool name.
    pub tool: String,
    /// The resulting label set.
    #[serde(skip)]
    pub labels: LabelSet,
    /// Each label and where it came from.
    pub sources: Vec<(Label, LabelSource)>,
    /// The arguments with a role (destination, subject, amount, command...)
    /// and where each role came from.
    pub arguments: Vec<RoleEntry>,
}

/// The tool catalogue: tool definitions plus operator overrides, with
/// labels computed once per tool.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Labels an adapter that knows the tools declared (the OpenAPI
    /// upstream, from method, path and schema); applied before the
    /// operator's overrides, which can remove them.
    declared: Vec<LabelOverride>,
    overrides: Vec<LabelOverride>,
    roles: Vec<RoleOverride>,
    tools: HashMap<String, HashMap<String, ToolLabels>>,
    by_name: HashMap<String, String>,
    defs: Vec<ToolDef>,
}

impl Catalog {
    /// An empty catalogue with operator overrides.
    pub fn new(overrides: Vec<LabelOverride>) -> Catalog {
        Catalog {
            overrides,
            ..Catalog::default()
        }
    }

    /// The same catalogue with operator argument annotations
    /// (`judge.tools`); tools already inserted keep their old roles, so set
    /// them before inserting.
    pub fn with_roles(mut self, roles: Vec<RoleOverride>) -> Catalog {
        self.roles = roles;
        self
    }

    /// The same catalogue with labels declared for tools by the gateway
    /// itself (replacing earlier declarations); tools already inserted
    /// keep their old labels, so set them before inserting.
    pub fn with_declared(mut self, declared: Vec<LabelOverride>) -> Catalog {
        self.declared = declared;
        self
    }

    /// The labels declared with [`Catalog::with_declared`].
    pub fn declared(&self) -> &[LabelOverride] {
        &self.declared
    }

    /// The operator's argument annotations.
    pub fn role_overrides(&self) -> &[RoleOverride] {
        &self.roles
    }

    /// The same overrides and annotations with no tools (to rebuild after
    /// a `tools/list`).
    pub fn without_tools(&self) -> Catalog {
        Catalog::new(self.overrides.clone())
            .with_roles(self.roles.clone())
            .with_declared(self.declared.clone())
    }

    /// Adds (or replaces) a tool and computes its labels.
    pub fn insert(&mut self, def: ToolDef) {
        let labels = self.compute(&def.server, &def.name, Some(&def));
        self.by_name.insert(def.name.clone(), def.server.clone());
        self.tools
            .entry(def.server.clone())
            .or_default()
            .insert(def.name.clone(), labels);
        self.defs
            .retain(|d| !(d.server == def.server && d.name == def.name));
        self.defs.push(def);
    }

    /// The tool definitions in insertion order.
    pub fn defs(&self) -> &[ToolDef] {
        &self.defs
    }

    /// The labels of `server/tool`. An unknown tool is labelled by inference
    /// from its name, then operator overrides. With no server, a catalogued
    /// tool of that name is used if there is one.
    pub fn labels(&self, server: Option<&str>, tool: &str) -> LabelSet {
        match self.lookup(server, tool) {
            Some(t) => t.labels,
            None => self.compute(server.unwrap_or(""), tool, None).labels,
        }
    }

    /// The labels of one tool with their sources.
    pub fn explain_one(&self, server: Option<&str>, tool: &str) -> ToolLabels {
        self.with_labels(server, tool, ToolLabels::clone)
    }

    /// Reads one tool's labels and sources without copying them (the
    /// judge asks on the call path); an uncatalogued tool's are inferred.
    pub(crate) fn with_labels<R>(
        &self,
        server: Option<&str>,
        tool: &str,
        f: impl FnOnce(&ToolLabels) -> R,
    ) -> R {
        match self.lookup(server, tool) {
            Some(t) => f(t),
            None => f(&self.compute(server.unwrap_or(""), tool, None)),
        }
    }

    fn lookup(&self, server: Option<&str>, tool: &str) -> Option<&ToolLabels> {
        let server = match server {
            Some(s) => s,
            None => self.by_name.get(tool)?.as_str(),
        };
        self.tools.get(server)?.get(tool)
    }

    /// Every catalogued tool with its labels and sources, sorted by
    /// `server/tool` (what `castellan tools` prints).
    pub fn explain(&self) -> Vec<ToolLabels> {
        let mut v: Vec<ToolLabels> = self
            .tools
            .values()
            .flat_map(|m| m.values().cloned())
            .collect();
        v.sort_by(|a, b| (&a.server, &a.tool).cmp(&(&b.server, &b.tool)));
        v
    }

    fn compute(&self, server: &str, tool: &str, def: Option<&ToolDef>) -> ToolLabels {
        let mut sources: Vec<(Label, LabelSource)> = Vec::new();
        let add = |l: Label, src: LabelSource, sources: &mut Vec<(Label, LabelSource)>| {
            if !sources.iter().any(|(x, _)| *x == l) {
                sources.push((l, src));
            }
        };
        for (l, ev) in infer_from_name(tool) {
            add(l, LabelSource::Inferred(ev), &mut sources);
        }
        if let Some(def) = def {
            for (l, ev) in infer_from_description(&def.description) {
                add(l, LabelSource::Inferred(ev), &mut sources);
            }
            for (l, ev) in infer_from_schema(&def.input_schema, &sources) {
                add(l, LabelSource::Inferred(ev), &mut sources);
            }
            let a = def.annotations;
            if a.read_only_hint == Some(true) {
                sources.retain(|(l, src)| {
                    !(matches!(
                        l,
                        Label::Write | Label::Destructive | Label::Money | Label::Identity
                    ) && matches!(src, LabelSource::Inferred(_)))
                });
            } else if a.destructive_hint == Some(true) {
                add(
                    Label::Destructive,
                    LabelSource::Annotation("destructiveHint"),
                    &mut sources,
                );
                add(
                    Label::Write,
                    LabelSource::Annotation("destructiveHint"),
                    &mut sources,
                );
            }
            if a.destructive_hint == Some(false) {
                sources.retain(|(l, src)| {
                    !(*l == Label::Destructive && matches!(src, LabelSource::Inferred(_)))
                });
            }
            if a.open_world_hint == Some(true) {
                if a.read_only_hint == Some(true) {
                    add(
                        Label::Untrusted,
                        LabelSource::Annotation("openWorldHint"),
                        &mut sources,
                    );
                } else {
                    add(
                        Label::Egress,
                        LabelSource::Annotation("openWorldHint"),
                        &mut sources,
                    );
                }
            }
        }
        for o in self.declared.iter().chain(&self.overrides) {
            if o.glob.matches_tool(server, tool) {
                sources.retain(|(l, _)| !o.remove.contains(*l));
                for l in o.add.iter() {
                    sources.retain(|(x, _)| *x != l);
                    sources.push((l, LabelSource::Config(o.glob.as_str().to_owned())));
                }
            }
        }
        sources.sort_by_key(|(l, _)| *l);
        let labels = sources.iter().map(|(l, _)| *l).collect();
        ToolLabels {
            server: server.to_owned(),
            tool: tool.to_owned(),
            labels,
            sources,
            arguments: crate::roles::explain(
                &self.roles,
                server,
                tool,
                def.map(|d| &d.input_schema),
            ),
        }
    }
}

/// Splits a tool name into lower-case words on `_`, `-`, `.`, `/`, spaces
/// and camelCase boundaries.
pub(crate) fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

const READ_VERBS: &[&str] = &[
    "read",
    "get",
    "list",
    "search",
    "fetch",
    "query",
    "find",
    "show",
    "view",
    "browse",
    "lookup",
    "download",
    "open",
    "check",
    "retrieve",
    "describe",
    "load",
    "scrape",
    "crawl",
    "cat",
    "summarize",
    "inspect",
    "count",
    "export",
];

type Lex = (&'static [&'static str], &'static [Label]);

/// Verbs that say what a tool does.
const DO_WORDS: &[Lex] = &[
    (
        &[
            "send",
            "forward",
            "reply",
            "post",
            "publish",
            "tweet",
            "email",
            "mail",
            "sms",
            "text",
            "notify",
            "submit",
            "comment",
            "webhook",
            "broadcast",
            "dm",
            "message",
            "upload",
        ],
        &[Label::Egress],
    ),
    (&["share"], &[Label::Identity, Label::Write, Label::Egress]),
    (
        &[
            "invite",
            "grant",
            "revoke",
            "promote",
            "demote",
            "impersonate",
            "authorize",
        ],
        &[Label::Identity, Label::Write],
    ),
    (
        &[
            "transfer",
            "pay",
            "wire",
            "refund",
            "charge",
            "purchase",
            "buy",
            "withdraw",
            "payout",
            "remit",
            "tip",
            "donate",
            "order",
            "payment",
            "payments",
            "transaction",
            "payee",
            "beneficiary",
            "money",
            "funds",
        ],
        &[Label::Money, Label::Write],
    ),
    (
        &[
            "delete",
            "remove",
            "drop",
            "destroy",
            "purge",
            "truncate",
            "wipe",
            "erase",
            "kill",
            "terminate",
            "rm",
            "uninstall",
            "shred",
            "archive",
            "unsubscribe",
            "cancel",
            "close",
            "ban",
            "kick",
            "deactivate",
            "disable",
            "reset",
            "overwrite",
            "format",
            // Ending a service or an object's validity.
            "suspend",
            "void",
            "freeze",
            "discard",
            "revert",
            "rollback",
        ],
        &[Label::Destructive, Label::Write],
    ),
    (
        &[
            "create",
            "update",
            "write",
            "edit",
            "put",
            "set",
            "move",
            "rename",
            "modify",
            "insert",
            "append",
            "commit",
            "push",
            "merge",
            "save",
            "add",
            "schedule",
            "deploy",
            "change",
            "patch",
            "book",
            "reserve",
            "assign",
            "enable",
            "install",
            "apply",
            "mark",
            "upsert",
            "replace",
            "restore",
            "sync",
            "copy",
            "manage",
            "control",
            "lock",
            "unlock",
            "toggle",
            "turn",
            "start",
            "stop",
            "launch",
            "activate",
            "configure",
            "adjust",
            "register",
            "enroll",
        ],
        &[Label::Write],
    ),
    (
        &[
            "run", "exec", "execute", "shell", "bash", "terminal", "command", "sh", "eval",
            "script", "sql",
        ],
        &[Label::Write, Label::Egress],
    ),
    (
        &[
            "http", "curl", "wget", "fetch", "browse", "navigate", "visit", "url", "webpage",
        ],
        &[Label::Egress],
    ),
];

/// Nouns that say what an identity- or money-related write touches.
const IDENTITY_NOUNS: &[&str] = &[
    "permission",
    "permissions",
    "role",
    "roles",
    "member",
    "members",
    "user",
    "users",
    "admin",
    "access",
    "password",
    "mfa",
    "collaborator",
    "collaborators",
    "acl",
    "policy",
    "key",
    "keys",
    "group",
    "owner",
    "owners",
    "sharing",
    "channel",
    "team",
    "workspace",
    "org",
    "organization",
    "guest",
    "invitation",
    "membership",
    "credential",
    "credentials",
];

/// Nouns that say what a tool reads.
const READ_NOUNS: &[Lex] = &[
    (
        &[
            "web", "webpage", "page", "url", "website", "internet", "search", "news", "rss",
            "tweet", "tweets", "feed", "reviews", "review", "issue", "issues", "comments", "pr",
            "download", "scrape", "crawl", "browse", "fetch", "html", "link",
        ],
        &[Label::Untrusted],
    ),
    (
        &[
            "inbox",
            "email",
            "emails",
            "mail",
            "mails",
            "messages",
            "message",
            "channel",
            "channels",
            "chat",
            "dm",
            "dms",
            "thread",
            "threads",
            "ticket",
            "tickets",
            "sms",
            "notifications",
        ],
        &[Label::Private, Label::Untrusted],
    ),
    (
        &[
            "file",
            "files",
            "document",
            "documents",
            "doc",
            "docs",
            "drive",
            "folder",
            "directory",
            "dir",
            "crm",
            "customer",
            "customers",
            "contact",
            "contacts",
            "calendar",
            "event",
            "events",
            "note",
            "notes",
            "database",
            "db",
            "table",
            "record",
            "records",
            "employee",
            "employees",
            "patient",
            "patients",
            "profile",
            "user",
            "users",
            "history",
            "repo",
            "repository",
            "code",
            "lead",
            "leads",
            "deal",
            "deals",
            "account",
            "accounts",
            "query",
            "sql",
            "memory",
            "log",
            "logs",
            "salary",
            "hr",
            "address",
            "addresses",
            "saved",
            "personal",
            "health",
            "medical",
            "prescription",
            "prescriptions",
            "location",
            "locations",
            "passport",
            "ssn",
        ],
        &[Label::Private],
    ),
    (
        &[
            "secret",
            "secrets",
            "credential",
            "credentials",
            "password",
            "passwords",
            "vault",
            "env",
            "keychain",
            "ssh",
            "token",
            "tokens",
            "apikey",
            "key",
            "keys",
        ],
        &[Label::Secret, Label::Private],
    ),
    (
        &[
            "balance",
            "balances",
            "transaction",
            "transactions",
            "invoice",
            "invoices",
            "payment",
            "payments",
            "bank",
            "statement",
            "statements",
            "payroll",
            "card",
            "cards",
            "ledger",
            "expenses",
            "billing",
            "iban",
        ],
        &[Label::Financial, Label::Private],
    ),
];

/// Read nouns that are also verbs: they name what is read only when
/// nothing else in the name does.
const VERB_NOUNS: &[&str] = &["search", "browse"];

/// The singular of a regular English plural (`directories`, `files`), if
/// `w` looks like one: the nouns above are listed in the forms tools use
/// most, and a plural should not make a name unclassified. Runs when tools
/// are learnt, never per call.
fn singular(w: &str) -> Option<String> {
    if let Some(stem) = w.strip_suffix("ies") {
        return Some(format!("{stem}y"));
    }
    w.strip_suffix('s')
        .filter(|s| s.len() > 2 && !s.ends_with('s'))
        .map(str::to_owned)
}

fn infer_from_name(tool: &str) -> Vec<(Label, String)> {
    let ws = words(tool);
    let mut out: Vec<(Label, String)> = Vec::new();
    let push = |out: &mut Vec<(Label, String)>, l: Label, ev: String| {
        if !out.iter().any(|(x, _)| *x == l) {
            out.push((l, ev));
        }
    };
    // The leading verb: the first word that is a known verb, so that a
    // vendor prefix (`GmailReadEmail`, `TwitterManagerReadTweet`) does not
    // hide it.
    let first = ws
        .iter()
        .map(String::as_str)
        .find(|w| READ_VERBS.contains(w) || DO_WORDS.iter().any(|(vs, _)| vs.contains(w)))
        .unwrap_or("");
    let is_read = READ_VERBS.contains(&first)
        || ws
            .iter()
            .all(|w| !DO_WORDS.iter().any(|(vs, _)| vs.contains(&w.as_str())));
    // A leading destructive verb makes the egress words after it the thing
    // destroyed: `delete_email`, `remove_message` send nothing.
    let destroys = DO_WORDS
        .iter()
        .any(|(vs, ls)| ls.contains(&Label::Destructive) && vs.contains(&first));
    // What it does: verbs anywhere in the name, but a leading read verb makes
    // nouns like `email` or `message` describe what is read, not sent.
    for w in &ws {
        for (vs, labels) in DO_WORDS {
            if !vs.contains(&w.as_str()) {
                continue;
            }
            if destroys && w != first && *labels == [Label::Egress] {
                continue;
            }
            if READ_VERBS.contains(&first) {
                // `read_email`, `get_messages`: the noun is what is read.
                // `fetch_url`, `browse_page`: reading the web is still egress
                // (the URL itself can carry data out).
                if matches!(w.as_str(), "fetch" | "browse" | "url" | "webpage")
                    && matches!(
                        first,
                        "fetch"
                            | "browse"
                            | "open"
                            | "download"
                            | "scrape"
                            | "crawl"
                            | "get"
                            | "read"
                    )
                {
                    push(&mut out, Label::Egress, format!("name: {w}"));
                }
                continue;
            }
            for l in *labels {
                push(&mut out, *l, format!("name: {w}"));
            }
        }
    }
    if out.iter().any(|(l, _)| *l == Label::Write)
        && !matches!(first, "list" | "get" | "read")
        && let Some(n) = ws.iter().find(|w| IDENTITY_NOUNS.contains(&w.as_str()))
    {
        push(&mut out, Label::Identity, format!("name: {n}"));
    }
    if is_read || out.is_empty() {
        let before = out.len();
        // The object of the read decides (`search_files` reads files); a
        // verb that is also a noun (`search`: a web search) only when the
        // name names no object.
        for verbs_too in [false, true] {
            for w in &ws {
                if VERB_NOUNS.contains(&w.as_str()) != verbs_too {
                    continue;
                }
                let singular = singular(w);
                for (ns, labels) in READ_NOUNS {
                    if ns.contains(&w.as_str())
                        || singular.as_deref().is_some_and(|s| ns.contains(&s))
                    {
                        for l in *labels {
                            push(&mut out, *l, format!("name: {w}"));
                        }
                    }
                }
            }
            if out.len() > before {
                break;
            }
        }
        // A read of content nobody vouched for (product details, a
        // third-party record): treat it as written by outside parties.
        if out.len() == before && !out.iter().any(|(l, _)| l.is_read()) {
            push(
                &mut out,
                Label::Untrusted,
                "name: a read of unclassified content".to_owned(),
            );
        }
    }
    out
}

fn infer_from_description(desc: &str) -> Vec<(Label, String)> {
    let d = desc.to_ascii_lowercase();
    let mut out = Vec::new();
    let checks: [(&str, Label); 9] = [
        ("permanently delete", Label::Destructive),
        ("irreversibl", Label::Destructive),
        ("transfer money", Label::Money),
        ("transfer funds", Label::Money),
        ("send money", Label::Money),
        ("from the internet", Label::Untrusted),
        ("any url", Label::Egress),
        ("external recipient", Label::Egress),
        ("grant access", Label::Identity),
    ];
    for (phrase, l) in checks {
        if d.contains(phrase) && !out.iter().any(|(x, _): &(Label, String)| *x == l) {
            out.push((l, format!("description: `{phrase}`")));
        }
    }
    out
}

fn infer_from_schema(schema: &Value, so_far: &[(Label, LabelSource)]) -> Vec<(Label, String)> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let writes = so_far
        .iter()
        .any(|(l, _)| matches!(l, Label::Write | Label::Egress | Label::Money));
    let mut out = Vec::new();
    let has = |k: &str| props.contains_key(k);
    if writes
        && ["to", "recipient", "recipients", "cc", "bcc", "webhook_url"]
            .iter()
            .any(|k| has(k))
    {
        out.push((Label::Egress, "schema: recipient field".to_owned()));
    }
    if has("amount")
        && [
            "iban",
            "recipient",
            "to_account",
            "account",
            "payee",
            "destination",
        ]
        .iter()
        .any(|k| has(k))
    {
        out.push((Label::Money, "schema: amount and payee".to_owned()));
    }
    if writes
        && [
            "role",
            "permission",
            "permissions",
            "password",
            "access_level",
        ]
        .iter()
        .any(|k| has(k))
    {
        out.push((
            Label::Identity,
            "schema: role or permission field".to_owned(),
        ));
    }
    out
}

#[cfg(test)]
mod tests;
