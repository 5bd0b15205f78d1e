//! Per-call facts: everything rules and policies ask about one call,
//! computed once before any rule runs.
//!
//! Owns: [`Facts`], destination extraction, argument provenance lookup and
//! condition evaluation ([`Facts::eval`]).

use serde_json::Value;

use crate::call::Call;
use crate::catalog::Catalog;
use crate::decode::{self, Encoding};
use crate::detect::{Detectors, Finding, Kind};
use crate::fingerprint::{self, Extract, Fp, FpKind};
use crate::glob::Glob;
use crate::ids::{Millis, ToolName};
use crate::instruct;
use crate::label::{Label, LabelSet, LabelSource};
use crate::rules::{ArgOp, Cond, KeyOf, OriginSet, Settings};
use crate::state::{AggregateState, Partial, SessionState};
use crate::verdict::ProvenanceFinding;

/// Argument keys that name a destination (recipient, account, URL, ...).
const DEST_KEYS: &[&str] = &[
    "to",
    "cc",
    "bcc",
    "recipient",
    "recipients",
    "recipient_email",
    "email",
    "email_address",
    "emails",
    "address",
    "url",
    "uri",
    "link",
    "endpoint",
    "webhook",
    "webhook_url",
    "callback_url",
    "iban",
    "account",
    "account_number",
    "account_id",
    "to_account",
    "recipient_account",
    "recipient_iban",
    "destination",
    "dest",
    "target",
    "channel",
    "channel_id",
    "user",
    "user_id",
    "username",
    "invitee",
    "invitees",
    "member",
    "phone",
    "phone_number",
    "number",
    "host",
    "domain",
    "payee",
    "beneficiary",
    "wallet",
    "wallet_address",
    "assignee",
    "collaborator",
    "share_with",
    "grantee",
    "principal",
    "remote",
    "repo_url",
    "upload_url",
    "send_to",
    "forward_to",
    "reply_to",
    "owner",
    "guest",
    "guest_id",
    "new_owner",
    "payee_iban",
    "to_iban",
    "recipient_id",
    "user_email",
    "contact",
    "invitee_email",
];

/// Fragments that make an argument key a destination when they appear
/// anywhere in it (`to_account_number`, `guest_ids`, `user_email`).
const DEST_FRAGMENTS: &[&str] = &[
    "recipient",
    "email",
    "guest",
    "invitee",
    "payee",
    "iban",
    "webhook",
    "url",
    "phone",
    "address",
    "beneficiary",
    "member",
    "user",
    "account",
    "channel",
    "participant",
    "attendee",
    "grantee",
    "collaborator",
    "wallet",
];

pub(crate) fn is_dest_key(k: &str) -> bool {
    DEST_KEYS.contains(&k)
        || (DEST_FRAGMENTS.iter().any(|f| k.contains(f))
            && !k.ends_with("_type")
            && !k.ends_with("_name")
            && !k.contains("from_")
            && !k.contains("source"))
}

/// One provenance hit for an argument value.
#[derive(Debug, Clone)]
pub(crate) struct Hit<'c> {
    pub arg: &'c str,
    pub kind: FpKind,
    pub src_index: u32,
    pub src_tool: ToolName,
    pub src_seq: u32,
    pub labels: LabelSet,
    pub injected: bool,
    pub trusted_seen: bool,
    pub in_intent: bool,
    pub earlier_session: bool,
    /// The encodings undone to find the value (0: found as written).
    pub via: u8,
    /// Kinds of action text asked for next to the value.
    pub asked: u8,
    /// Seen in trusted content outside any request.
    pub vouched: bool,
}

impl Hit<'_> {
    fn matches(&self, o: OriginSet) -> bool {
        if self.in_intent {
            return false;
        }
        let untrusted_only = self.labels.contains(Label::Untrusted) && !self.trusted_seen;
        let mut want = o.labels;
        let untrusted_wanted = want.contains(Label::Untrusted);
        want.remove(Label::Untrusted);
        (o.injected && self.injected)
            || (untrusted_wanted && untrusted_only)
            || self.labels.intersects(want)
    }

    pub(crate) fn finding(&self) -> ProvenanceFinding {
        ProvenanceFinding {
            arg: self.arg.to_owned(),
            kind: self.kind,
            source_index: self.src_index,
            source_tool: self.src_tool.clone(),
            labels: self.labels,
            injected: self.injected,
            earlier_session: self.earlier_session,
            decoded_from: (self.via != 0).then(|| Encoding::names(self.via)),
        }
    }
}

/// A destination of the call.
#[derive(Debug, Clone)]
pub(crate) struct Dest<'c> {
    pub arg: &'c str,
    pub value: String,
    /// The hash that identifies the destination for baselines.
    pub key: u64,
    pub origin: Option<Hit<'c>>,
    pub new: bool,
    pub in_intent: bool,
    pub external: bool,
}

/// Facts about one call.
#[derive(Debug)]
pub(crate) struct Facts<'c> {
    pub call: &'c Call<'c>,
    pub server: &'c str,
    pub labels: LabelSet,
    pub session_labels: LabelSet,
    pub injection_seen: bool,
    pub risk: u32,
    pub index: u32,
    pub first_use: bool,
    pub tool_hash: u64,
    pub dests: Vec<Dest<'c>>,
    pub hits: Vec<Hit<'c>>,
    pub carries: Vec<Hit<'c>>,
    /// Object references (`#12`, id arguments) found in earlier results.
    pub refs: Vec<Hit<'c>>,
    /// Every provenance hit of each destination, for `instructed`.
    dest_hits: Vec<Vec<Hit<'c>>>,
    /// Roles (`ROLE_*`) of the call that untrusted text asked for.
    pub instructed: u8,
    /// The role and hit that made the call instructed first.
    pub instructed_by: Option<(u8, Hit<'c>)>,
    /// The kinds of action the tool performs (`instruct::SEND`, ...).
    pub tool_kinds: u8,
    /// The kinds of action the trusted intent names, when there is one.
    pub intent_kinds: Option<u8>,
    pub detected: u16,
    /// Facts from argument roles: the shell reading, subject and object
    /// ownership, baseline outliers (set by the judge after `build`).
    pub roles: RoleFacts,
    args_text: std::cell::OnceCell<String>,
}

/// What argument roles tell about a call.
#[derive(Debug, Default)]
pub(crate) struct RoleFacts {
    pub shell: Option<crate::shell::ShellReading>,
    pub subject: crate::subject::SubjectFacts,
    pub baseline: crate::baseline::BaselineFacts,
}

impl RoleFacts {
    fn eval(&self, c: &Cond) -> bool {
        if !c.shell.is_empty()
            && !self
                .shell
                .as_ref()
                .is_some_and(|r| r.flags.intersects(c.shell))
        {
            return false;
        }
        let outlier = (c.baseline.amount && self.baseline.amount.is_some())
            || (c.baseline.count && self.baseline.count.is_some());
        if !c.baseline.is_empty() && !outlier {
            return false;
        }
        if let Some(p) = &c.subject {
            let f = &self.subject;
            let any = |want: &[crate::subject::Owner], got: Option<crate::subject::Owner>| {
                want.is_empty() || got.is_some_and(|g| want.contains(&g))
            };
            if p.bound.is_some_and(|b| b != f.bound.is_some())
                || (!p.bound_by.is_empty() && !f.bound.is_some_and(|b| p.bound_by.contains(&b)))
                || !any(&p.arg, f.arg)
                || !any(&p.object, f.object)
                || !any(&p.payee, f.payee)
                || p.other.is_some_and(|o| o != f.other())
                || p.foreign.is_some_and(|o| o != f.foreign())
                || p.others_gte.is_some_and(|n| f.others < n)
            {
                return false;
            }
        }
        true
    }
}

/// Roles of a call's values for `instructed`.
pub(crate) const ROLE_DESTINATION: u8 = 1;
pub(crate) const ROLE_OBJECT: u8 = 2;
pub(crate) const ROLE_AMOUNT: u8 = 4;
pub(crate) const ROLE_PAYLOAD: u8 = 8;

/// The name of a role, for messages.
pub(crate) fn role_name(role: u8) -> &'static str {
    match role {
        ROLE_DESTINATION => "destination",
        ROLE_OBJECT => "object",
        ROLE_AMOUNT => "amount",
        _ => "payload",
    }
}

/// Argument keys that name the object a call acts on (a file, a
/// message, a record), as opposed to its destination or free text.
fn is_object_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    k == "id"
        || k == "ids"
        || k.ends_with("_id")
        || k.ends_with("_ids")
        || (k.ends_with("id") && k.len() > 4)
        || [
            "path", "file", "name", "key", "item", "record", "document", "object", "folder", "dir",
            "branch", "repo",
        ]
        .iter()
        .any(|w| k.contains(w))
}

/// Integer object references in an id-like argument (`{"id": 12}`,
/// `{"message_ids": [3, 4]}`, `{"ticket_id": "#12"}`) as reference
/// fingerprints.
fn arg_refs(k: &str, v: &Value, out: &mut Vec<Fp>) {
    if !is_object_key(k) {
        return;
    }
    let mut one = |v: &Value| match v {
        Value::Number(n) => {
            if let Some(i) = n.as_u64().filter(|i| *i < 1_000_000_000) {
                out.push(fingerprint::ref_fp(&i.to_string()));
            }
        }
        Value::String(s) => {
            let d = s.trim().trim_start_matches('#');
            if (1..=9).contains(&d.len()) && d.bytes().all(|c| c.is_ascii_digit()) {
                out.push(fingerprint::ref_fp(d));
            }
        }
        _ => {}
    };
    match v {
        Value::Array(a) => a.iter().take(32).for_each(&mut one),
        other => one(other),
    }
}

/// Whether a tool that reads outside content without sending anything
/// (no `egress` label) sends its arguments to a third party: a web search
/// or lookup, by its MCP `openWorldHint` or a name about the web.
pub(crate) fn open_world_lookup(catalog: &Catalog, server: Option<&str>, tool: &str) -> bool {
    catalog.with_labels(server, tool, |t| {
        t.sources.iter().any(|(l, src)| {
            *l == Label::Untrusted
                && match src {
                    LabelSource::Annotation(a) => *a == "openWorldHint",
                    LabelSource::Inferred(ev) => ev
                        .strip_prefix("name: ")
                        .is_some_and(|w| WEB_WORDS.contains(&w)),
                    LabelSource::Config(_) => false,
                }
        })
    })
}

const WEB_WORDS: &[&str] = &[
    "web", "webpage", "page", "url", "website", "internet", "search", "news", "browse", "fetch",
    "scrape", "crawl", "link", "html", "download",
];

fn kind_bit(k: Kind) -> u16 {
    1 << (k as u16)
}

fn is_internal(settings: &Settings, host: &str) -> bool {
    let local = host == "localhost"
        || host.starts_with("127.")
        || host.starts_with("10.")
        || host.starts_with("192.168.")
        || host == "[::1]"
        || host.ends_with(".localhost")
        || host.ends_with(".internal")
        || host.ends_with(".local");
    local
        || settings.internal_domains.iter().any(|d| {
            host == d
                || host
                    .strip_suffix(d.as_str())
                    .is_some_and(|p| p.ends_with('.'))
        })
}

/// What one call's arguments say on their own: their fingerprints, the
/// detector classes in them and their destinations. Depends only on the
/// call and the judge's configuration, so the gateway computes it outside
/// its state lock; [`Facts::build`] then adds what the state knows.
#[derive(Debug)]
pub(crate) struct ArgScan<'c> {
    labels: LabelSet,
    tool_hash: u64,
    pub(crate) detected: u16,
    /// Every argument's fingerprints, each argument owning a range.
    fps: Vec<Fp>,
    /// Every destination's fingerprints, likewise.
    dest_fps: Vec<Fp>,
    args: Vec<ScannedArg<'c>>,
    dests: Vec<ScannedDest<'c>>,
}

/// One top-level argument: its fingerprints are looked up in provenance.
#[derive(Debug)]
struct ScannedArg<'c> {
    name: &'c str,
    is_dest: bool,
    /// Data riding inside a URL (query string, path) is carried data, not
    /// the destination itself.
    in_url: bool,
    fps: std::ops::Range<usize>,
    /// The fingerprints of decoded views (base64, percent, ...) of the
    /// argument's strings, after `fps`, and the encodings undone.
    decoded: std::ops::Range<usize>,
    via: u8,
}

/// A destination value, before provenance and baselines are consulted.
#[derive(Debug)]
struct ScannedDest<'c> {
    arg: &'c str,
    value: String,
    key: u64,
    fps: std::ops::Range<usize>,
    in_intent: bool,
    internal: bool,
    party: bool,
}

impl<'c> ArgScan<'c> {
    /// Scans `call`'s arguments; `labels` are the tool's labels.
    pub(crate) fn new(
        call: &'c Call<'c>,
        det: &Detectors,
        settings: &Settings,
        labels: LabelSet,
        roles: &crate::roles::CallRoles<'_>,
    ) -> ArgScan<'c> {
        let server = call.server.unwrap_or("");
        let tool_hash = fingerprint::hash_parts(
            FpKind::Value,
            &[server.as_bytes(), b"/", call.tool.as_bytes()],
        );
        const ARG_CAP: usize = 256;
        let mut scan = ArgScan {
            labels,
            tool_hash,
            detected: 0,
            // A 1 KiB argument gives ~170 shingles: reserve up front rather
            // than grow through seven reallocations.
            fps: Vec::with_capacity(ARG_CAP),
            dest_fps: Vec::new(),
            args: Vec::new(),
            dests: Vec::new(),
        };
        let intent_lower = call.intent.map(str::to_lowercase);
        let mut scratch: Vec<Finding> = Vec::new();
        let args: Vec<(&str, &Value)> = match call.args {
            Value::Object(o) => o.iter().map(|(k, v)| (k.as_str(), v)).collect(),
            Value::Null => Vec::new(),
            other => vec![("", other)],
        };
        let egress_like = labels.intersects(LabelSet::of(&[
            Label::Egress,
            Label::Money,
            Label::Identity,
        ]));
        // Data leaves through side effects: only their arguments are looked
        // at for encoded text.
        let side_effect = labels.intersects(LabelSet::of(&[
            Label::Egress,
            Label::Money,
            Label::Identity,
            Label::Write,
            Label::Destructive,
        ]));
        let mut views: Vec<decode::View> = Vec::new();
        let mut have_dest_key = false;
        scan.args.reserve(args.len());
        for (k, v) in &args {
            // An operator's role for the argument wins over the key list.
            let is_dest = match roles.configured(k) {
                Some(role) => role == Some(crate::roles::ArgRole::Destination),
                None => is_dest_key(&k.to_ascii_lowercase()),
            };
            have_dest_key |= is_dest && !v.is_null();
            // The argument's fingerprints follow the previous ones' in
            // `scan.fps`; the cap (compared with the vector's length) is
            // moved along so each argument has its own.
            let start = scan.fps.len();
            let opts = Extract {
                shingles: true,
                values: true,
                cap: start + ARG_CAP,
                sample: false,
            };
            if is_dest {
                // Each leaf is scanned once, for the argument's fingerprints
                // (as `from_json` would) and for the destination.
                for s in leaves(v) {
                    det.scan_into(&s, &mut scratch);
                    if scan.fps.len() < opts.cap {
                        fingerprint::from_findings(&s, &scratch, opts, &mut scan.fps);
                    }
                    for x in &scratch {
                        scan.detected |= kind_bit(x.kind);
                    }
                    scan.add_dest(det, settings, k, &s, intent_lower.as_deref(), &mut scratch);
                }
            } else {
                fingerprint::from_json(
                    det,
                    v,
                    opts,
                    &mut scratch,
                    &mut scan.fps,
                    &mut scan.detected,
                );
            }
            arg_refs(k, v, &mut scan.fps);
            let plain_end = scan.fps.len();
            let via = if side_effect {
                scan.decoded_fps(det, v, opts, &mut scratch, &mut views)
            } else {
                0
            };
            scan.args.push(ScannedArg {
                name: k,
                is_dest,
                in_url: is_dest && fingerprint_has_url(v),
                fps: start..plain_end,
                decoded: plain_end..scan.fps.len(),
                via,
            });
        }
        if egress_like && !have_dest_key {
            // No recipient field: URLs and addresses anywhere in the
            // arguments (a shell command, a request body) are destinations.
            // A web tool (it reads untrusted content) reaches URLs, never
            // mails: addresses in a search query are data it carries.
            let web = labels.contains(Label::Untrusted);
            for (k, v) in &args {
                for s in leaves(v) {
                    scratch.clear();
                    det.scan(&s, &mut scratch);
                    let found: Vec<String> = scratch
                        .iter()
                        .filter(|x| x.kind == Kind::Url || (x.kind == Kind::Email && !web))
                        .map(|x| s[x.range.clone()].to_owned())
                        .collect();
                    for d in found {
                        det.scan_into(&d, &mut scratch);
                        scan.add_dest(det, settings, k, &d, intent_lower.as_deref(), &mut scratch);
                    }
                }
            }
        }
        scan
    }

    /// Adds the hosts a shell command reaches (`nc host 443`, `ssh
    /// user@host`) as destinations of argument `arg`, as URLs would be.
    pub(crate) fn add_hosts(
        &mut self,
        det: &Detectors,
        settings: &Settings,
        arg: &'c str,
        hosts: &[String],
        intent: Option<&str>,
    ) {
        let intent = intent.map(str::to_lowercase);
        let mut scratch = Vec::new();
        for h in hosts {
            let url = format!("https://{h}/");
            det.scan_into(&url, &mut scratch);
            self.add_dest(det, settings, arg, &url, intent.as_deref(), &mut scratch);
        }
    }

    /// Fingerprints the decoded views of `v`'s strings after the
    /// argument's own fingerprints; returns the encodings undone (0 when
    /// no string looked encoded).
    fn decoded_fps(
        &mut self,
        det: &Detectors,
        v: &Value,
        opts: Extract,
        scratch: &mut Vec<Finding>,
        views: &mut Vec<decode::View>,
    ) -> u8 {
        let mut via = 0u8;
        let fps = &mut self.fps;
        fingerprint::walk(v, 0, &mut |s| {
            views.clear();
            decode::views(s, views);
            for view in views.iter() {
                if fps.len() >= opts.cap {
                    return;
                }
                let before = fps.len();
                fingerprint::from_text(det, &view.text, opts, scratch, fps);
                if fps.len() > before {
                    via |= view.via;
                }
            }
        });
        via
    }

    /// Adds a destination value of argument `arg`; `scratch` holds the
    /// detector findings of `s`.
    fn add_dest(
        &mut self,
        det: &Detectors,
        settings: &Settings,
        arg: &'c str,
        s: &str,
        intent: Option<&str>,
        scratch: &mut Vec<Finding>,
    ) {
        let trimmed = s.trim();
        if trimmed.is_empty() || self.dests.len() >= 16 {
            return;
        }
        // As for arguments, the cap moves along with the shared vector.
        let start = self.dest_fps.len();
        let opts = Extract {
            shingles: false,
            values: true,
            cap: start + 8,
            sample: false,
        };
        let fps = &mut self.dest_fps;
        if trimmed.len() == s.len() {
            // `scratch` holds the findings of `s`, scanned by the caller.
            fingerprint::from_findings(s, scratch, opts, fps);
        } else {
            // `from_text` scans and leaves the findings in `scratch`.
            fingerprint::from_text(det, trimmed, opts, scratch, fps);
        }
        let s = trimmed;
        // The earliest finding names the destination: a URL whose query
        // holds an address or an IBAN is a request to the URL's host.
        let (value, key, host, party) = match scratch
            .iter()
            .filter(|x| matches!(x.kind, Kind::Email | Kind::Url | Kind::Iban | Kind::Card))
            .min_by_key(|x| x.range.start)
        {
            Some(x) if x.kind == Kind::Email => {
                let e = s[x.range.clone()].to_ascii_lowercase();
                let host = e
                    .rsplit_once('@')
                    .map(|(_, d)| d.to_owned())
                    .unwrap_or_default();
                let k = fingerprint::hash(FpKind::Email, e.as_bytes());
                (e, k, host, true)
            }
            Some(x) if x.kind == Kind::Url => {
                // Only the URL and its host identify the destination; what
                // its path and query carry is data (looked up as the
                // argument's, and counted as carried).
                fps.truncate(start);
                fingerprint::from_findings(
                    s,
                    std::slice::from_ref(x),
                    Extract {
                        values: false,
                        ..opts
                    },
                    fps,
                );
                let (_, host) = fingerprint::normalise_url(&s[x.range.clone()]);
                let k = fingerprint::hash(FpKind::Domain, host.as_bytes());
                (host.clone(), k, host, true)
            }
            Some(x) => {
                let v: String = s[x.range.clone()]
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect::<String>()
                    .to_ascii_uppercase();
                let k = fps.get(start).map_or(0, |f| f.hash);
                (v, k, String::new(), true)
            }
            None => {
                let v = s.to_lowercase();
                let k = fingerprint::hash(FpKind::Value, v.as_bytes());
                // A channel, user handle or id: a party inside the tool's
                // own workspace, unless it is a long number (phone,
                // account).
                let party = v.chars().filter(char::is_ascii_digit).count() >= 8;
                (v, k, String::new(), party)
            }
        };
        if self.dests.iter().any(|d| d.key == key) {
            self.dest_fps.truncate(start);
            return;
        }
        let in_intent = intent.is_some_and(|i| i.contains(&value) || i.contains(&s.to_lowercase()));
        let internal = !host.is_empty() && is_internal(settings, &host);
        self.dests.push(ScannedDest {
            arg,
            value,
            key,
            fps: start..self.dest_fps.len(),
            in_intent,
            internal,
            party,
        });
    }
}

/// What the state says about a call: its session and agent, and the
/// call's place in the session.
pub(crate) struct Inputs<'s> {
    pub session_key: &'s str,
    pub session: &'s SessionState,
    pub agent: &'s AggregateState,
    pub risk: u32,
    pub index: u32,
    /// When the call is judged: the agent's provenance answers only for
    /// results younger than [`CROSS_SESSION_WINDOW_MS`].
    pub now: Millis,
}

/// How long data read in one session is recognised in the agent's later
/// sessions (24 hours).
pub(crate) const CROSS_SESSION_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;

impl<'c> Facts<'c> {
    /// The call's facts: its scan, looked up in the session's and agent's
    /// provenance and baselines.
    pub(crate) fn build(call: &'c Call<'c>, scan: ArgScan<'c>, inp: &Inputs<'_>) -> Facts<'c> {
        let ArgScan {
            labels,
            tool_hash,
            detected,
            fps,
            dest_fps,
            args,
            dests,
        } = scan;
        let first_use = !inp.session.baseline.knows_tool(tool_hash)
            && !inp.agent.baseline.knows_tool(tool_hash);
        let mut f = Facts {
            call,
            server: call.server.unwrap_or(""),
            labels,
            session_labels: inp.session.taint,
            injection_seen: inp.session.injection_seen,
            risk: inp.risk,
            index: inp.index,
            first_use,
            tool_hash,
            dests: Vec::with_capacity(dests.len()),
            hits: Vec::new(),
            carries: Vec::new(),
            refs: Vec::new(),
            dest_hits: Vec::with_capacity(dests.len()),
            instructed: 0,
            instructed_by: None,
            tool_kinds: 0,
            intent_kinds: None,
            detected,
            roles: RoleFacts::default(),
            args_text: std::cell::OnceCell::new(),
        };
        for d in dests {
            let mut hits = lookup(inp, d.arg, &dest_fps[d.fps]);
            hits.sort_by_key(|h| (!h.injected, h.trusted_seen, h.src_seq));
            let known =
                inp.session.baseline.knows_dest(d.key) || inp.agent.baseline.knows_dest(d.key);
            let origin = hits.first().cloned().map(|mut h| {
                h.in_intent |= d.in_intent;
                h
            });
            f.dest_hits.push(hits);
            f.dests.push(Dest {
                arg: d.arg,
                value: d.value,
                key: d.key,
                origin,
                new: !known && !d.in_intent && !d.internal,
                in_intent: d.in_intent,
                external: d.party && !d.internal,
            });
        }
        for a in &args {
            let plain = lookup(inp, a.name, &fps[a.fps.clone()]);
            let decoded = lookup(inp, a.name, &fps[a.decoded.clone()]);
            for h in plain.into_iter().chain(decoded.into_iter().map(|mut h| {
                h.via = a.via;
                h
            })) {
                // Data riding inside a destination (a URL's query or path,
                // or anything decoded out of it) is carried, the
                // destination itself is not.
                let inside = a.in_url || h.via != 0;
                if h.kind == FpKind::Ref {
                    // A reference links a call to the object a result named;
                    // it is neither carried data nor a value's origin.
                    f.refs.push(h);
                    continue;
                }
                if h.kind == FpKind::Shingle
                    || !a.is_dest
                    || (inside && !matches!(h.kind, FpKind::Url | FpKind::Domain))
                {
                    f.carries.push(h.clone());
                }
                if h.kind != FpKind::Shingle {
                    f.hits.push(h);
                }
            }
        }
        // Data that travels with a destination should not count as carried
        // when it came from the same result as the destination (a reply
        // quoting the mail it answers).
        let dest_srcs: Vec<u32> = f
            .dests
            .iter()
            .filter_map(|d| d.origin.as_ref().map(|o| o.src_seq))
            .collect();
        f.carries
            .retain(|h| !dest_srcs.contains(&h.src_seq) || h.earlier_session);
        if f.detected & kind_bit(Kind::Secret) != 0 {
            f.carries.push(Hit {
                arg: "",
                kind: FpKind::Secret,
                src_index: inp.index,
                src_tool: ToolName::new("(detector)"),
                src_seq: u32::MAX,
                labels: LabelSet::of(&[Label::Secret]),
                injected: false,
                trusted_seen: true,
                in_intent: false,
                earlier_session: false,
                via: 0,
                asked: 0,
                vouched: true,
            });
        }
        f.instructed(inp);
        f
    }

    /// Whether the call does what untrusted text asked for: its
    /// destination, object, amount or payload was seen next to a request
    /// for this kind of action, and the user's own request did not name it.
    fn instructed(&mut self, inp: &Inputs<'_>) {
        let kinds = instruct::tool_kinds(self.labels);
        self.intent_kinds = self.call.intent.map(|_| inp.session.intent_kinds);
        self.tool_kinds = kinds;
        if kinds == 0 {
            return;
        }
        let asked = |h: &Hit<'_>| h.asked & kinds != 0 && !h.in_intent;
        let mut roles = 0u8;
        let mut by: Option<(u8, Hit<'c>)> = None;
        let mut note = |role: u8, h: &Hit<'c>, roles: &mut u8| {
            *roles |= role;
            if by.is_none() {
                by = Some((role, h.clone()));
            }
        };
        for (d, hits) in self.dests.iter().zip(&self.dest_hits) {
            // A destination the agent already uses, or that trusted content
            // names on its own (a contact list), is not taken on the word
            // of a request alone.
            if d.new
                && !d.in_intent
                && let Some(h) = hits.iter().find(|h| asked(h) && !h.vouched)
            {
                note(ROLE_DESTINATION, h, &mut roles);
            }
        }
        for h in self.hits.iter().chain(self.refs.iter()) {
            if !asked(h) {
                continue;
            }
            match h.kind {
                FpKind::Amount => note(ROLE_AMOUNT, h, &mut roles),
                FpKind::Ref => note(ROLE_OBJECT, h, &mut roles),
                _ if is_object_key(h.arg) => note(ROLE_OBJECT, h, &mut roles),
                _ => {}
            }
        }
        for h in &self.carries {
            if h.kind == FpKind::Shingle && asked(h) {
                note(ROLE_PAYLOAD, h, &mut roles);
            }
        }
        self.instructed = roles;
        self.instructed_by = by;
    }

    /// Whether the call fits the user's known request: it names this kind
    /// of action or one of the call's destinations. `None` without intent.
    pub(crate) fn intent_aligned(&self) -> Option<bool> {
        let named = self.intent_kinds?;
        Some(named & self.tool_kinds != 0 || self.dests.iter().any(|d| d.in_intent))
    }

    pub(crate) fn args_text(&self) -> &str {
        if let Some(text) = self.call.args_text {
            return text;
        }
        // serde_json's compact text, written without its per-byte escaping.
        self.args_text
            .get_or_init(|| castellan_protocol::json::to_string(self.call.args))
    }

    /// The value of a join / per / distinct key.
    pub(crate) fn key(&self, k: &KeyOf) -> Option<u64> {
        match k {
            KeyOf::Destination => self.dests.first().map(|d| d.key),
            KeyOf::Tool => Some(self.tool_hash),
            KeyOf::Arg(p) => arg_at(self.call.args, p).map(|v| match v {
                Value::String(s) => {
                    fingerprint::hash(FpKind::Value, s.trim().to_lowercase().as_bytes())
                }
                other => {
                    let mut text = Vec::new();
                    castellan_protocol::json::write_value(&mut text, other);
                    fingerprint::hash(FpKind::Value, &text)
                }
            }),
        }
    }

    /// True if the tool matches any glob.
    fn tool_in(&self, globs: &[Glob]) -> bool {
        globs
            .iter()
            .any(|g| g.matches_tool(self.server, self.call.tool))
    }

    /// Evaluates a condition. `partial` is the sequence partial match being
    /// extended, for `from_step`.
    pub(crate) fn eval(&self, c: &Cond, partial: Option<&Partial>) -> bool {
        if !self.labels.contains_all(c.labels)
            || (!c.labels_any.is_empty() && !self.labels.intersects(c.labels_any))
            || self.labels.intersects(c.not_labels)
        {
            return false;
        }
        if !c.tools.is_empty() && !self.tool_in(&c.tools) {
            return false;
        }
        if !c.not_tools.is_empty() && self.tool_in(&c.not_tools) {
            return false;
        }
        if !self.session_labels.contains_all(c.session_labels)
            || (!c.session_labels_any.is_empty()
                && !self.session_labels.intersects(c.session_labels_any))
            || self.session_labels.intersects(c.not_session_labels)
        {
            return false;
        }
        if c.injection_seen.is_some_and(|v| v != self.injection_seen) {
            return false;
        }
        if c.risk_gte.is_some_and(|r| self.risk < r) {
            return false;
        }
        if c.first_use.is_some_and(|v| v != self.first_use) {
            return false;
        }
        if !c.detect.is_empty() && !c.detect.iter().any(|k| self.detected & kind_bit(*k) != 0) {
            return false;
        }
        if !c.arg_from.is_empty() && !self.hits.iter().any(|h| h.matches(c.arg_from)) {
            return false;
        }
        if !c.carries.is_empty() && !self.carries.iter().any(|h| h.matches(c.carries)) {
            return false;
        }
        if c.instructed != 0 && self.instructed & c.instructed == 0 {
            return false;
        }
        if let Some(want) = c.intent_aligned
            && self.intent_aligned() != Some(want)
        {
            return false;
        }
        if c.not_intent_aligned && self.intent_aligned() == Some(true) {
            return false;
        }
        if let Some(d) = &c.dest {
            let ok = self.dests.iter().any(|x| {
                (d.from.is_empty() || x.origin.as_ref().is_some_and(|o| o.matches(d.from)))
                    && d.new.is_none_or(|v| v == x.new)
                    && d.in_intent.is_none_or(|v| v == x.in_intent)
                    && d.external.is_none_or(|v| v == x.external)
                    && d.trusted_origin.is_none_or(|v| {
                        v == x
                            .origin
                            .as_ref()
                            .is_some_and(|o| (o.trusted_seen || o.in_intent) && !o.injected)
                    })
            });
            if !ok {
                return false;
            }
        }
        if let Some(re) = &c.args_text
            && !re.is_match(self.args_text())
        {
            return false;
        }
        for a in &c.args {
            if !arg_ok(arg_at(self.call.args, &a.path), &a.op) {
                return false;
            }
        }
        if !self.roles.eval(c) {
            return false;
        }
        if let Some(step) = c.from_step {
            let Some(p) = partial else { return false };
            let want = p.calls[step];
            if !self
                .hits
                .iter()
                .chain(self.carries.iter())
                .chain(self.refs.iter())
                .any(|h| !h.earlier_session && h.src_index == want)
            {
                return false;
            }
        }
        true
    }
}

fn lookup<'c>(inp: &Inputs<'_>, arg: &'c str, fps: &[Fp]) -> Vec<Hit<'c>> {
    let mut out = Vec::new();
    for fp in fps {
        let found = inp
            .session
            .prov
            .lookup(fp.hash)
            .map(|(e, s)| (e, s, false))
            .or_else(|| {
                inp.agent
                    .prov
                    .lookup(fp.hash)
                    .filter(|(_, s)| inp.now.since(s.at) <= CROSS_SESSION_WINDOW_MS)
                    .map(|(e, s)| (e, s, s.session.as_str() != inp.session_key))
            });
        if let Some((e, s, earlier)) = found {
            if out.iter().any(|h: &Hit| {
                h.src_seq == e.src && h.kind == fp.kind && h.earlier_session == earlier
            }) {
                continue;
            }
            out.push(Hit {
                arg,
                kind: fp.kind,
                src_index: s.index,
                src_tool: s.tool.clone(),
                src_seq: e.src,
                labels: e.labels,
                injected: e.injected,
                trusted_seen: e.trusted_seen,
                in_intent: inp.session.intent_fps.contains(&fp.hash),
                earlier_session: earlier,
                via: 0,
                asked: e.asked,
                vouched: e.vouched,
            });
        }
    }
    out
}

/// The string leaves of a value (and long integers as text), borrowed
/// where possible.
fn leaves(v: &Value) -> Vec<std::borrow::Cow<'_, str>> {
    fn go<'v>(v: &'v Value, depth: usize, out: &mut Vec<std::borrow::Cow<'v, str>>) {
        if depth > fingerprint::MAX_DEPTH {
            return;
        }
        match v {
            Value::String(s) => out.push(std::borrow::Cow::Borrowed(s.as_str())),
            Value::Number(n) => {
                if let Some(i) = n.as_u64().filter(|i| *i >= 100_000) {
                    out.push(std::borrow::Cow::Owned(i.to_string()));
                }
            }
            Value::Array(a) => a.iter().for_each(|x| go(x, depth + 1, out)),
            Value::Object(o) => o.values().for_each(|x| go(x, depth + 1, out)),
            Value::Bool(_) | Value::Null => {}
        }
    }
    let mut out = Vec::new();
    go(v, 0, &mut out);
    out
}

fn fingerprint_has_url(v: &Value) -> bool {
    let mut found = false;
    fingerprint::walk(v, 0, &mut |s| found |= s.contains("://"));
    found
}

/// The value at a dotted path (object keys or array indices).
pub(crate) fn arg_at<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut cur = v;
    for p in path {
        cur = match cur {
            Value::Object(o) => o.get(p.as_str())?,
            Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// A number from a JSON number or a numeric string.
pub(crate) fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s
            .trim()
            .trim_start_matches(['$', '€', '£'])
            .replace(',', "")
            .parse()
            .ok(),
        _ => None,
    }
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.eq_ignore_ascii_case(y),
        _ => match (as_number(a), as_number(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

fn arg_ok(v: Option<&Value>, op: &ArgOp) -> bool {
    match op {
        ArgOp::Exists(e) => v.is_some_and(|v| !v.is_null()) == *e,
        ArgOp::Eq(x) => v.is_some_and(|v| loose_eq(v, x)),
        ArgOp::Ne(x) => !v.is_some_and(|v| loose_eq(v, x)),
        ArgOp::In(xs) => v.is_some_and(|v| xs.iter().any(|x| loose_eq(v, x))),
        ArgOp::Matches(re) => v.is_some_and(|v| match v {
            Value::String(s) => re.is_match(s),
            other => re.is_match(&castellan_protocol::json::to_string(other)),
        }),
        ArgOp::Contains(s) => v.is_some_and(|v| match v {
            Value::String(x) => x.to_lowercase().contains(s.as_str()),
            Value::Array(a) => a
                .iter()
                .any(|e| e.as_str().is_some_and(|x| x.eq_ignore_ascii_case(s))),
            other => castellan_protocol::json::to_string(other)
                .to_lowercase()
                .contains(s.as_str()),
        }),
        ArgOp::Cmp { gt, gte, lt, lte } => v.and_then(as_number).is_some_and(|n| {
            gt.is_none_or(|x| n > x)
                && gte.is_none_or(|x| n >= x)
                && lt.is_none_or(|x| n < x)
                && lte.is_none_or(|x| n <= x)
        }),
    }
}
