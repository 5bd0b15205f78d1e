//! Castellan's behaviour judge: pure, synchronous, deterministic.
//!
//! # Layout
//!
//! - [`ids`]: newtypes for agents, sessions, tools, rules, time and risk.
//! - [`label`]: tool and session labels.
//! - [`catalog`]: tools and their labels with the source of each label.
//! - [`roles`]: argument roles (destination, subject, object, amount,
//!   command...) inferred or set by the operator.
//! - [`detect`]: content inspection (personal data, secrets, custom
//!   detectors, injection signals) and [`inspect_tool_definition`].
//! - [`fingerprint`]: normalised value fingerprints for provenance.
//! - [`decode`]: decoded views of encoded argument text (base64, hex,
//!   percent, HTML entities, reversal, separators) for provenance.
//! - [`state`]: session, agent and user state the caller keeps.
//! - [`subject`]: whom a session acts for and which objects are theirs.
//! - [`baseline`]: learned amount and count baselines per agent and tool.
//! - [`shell`]: shell commands read as the shell would (credential reads,
//!   egress, download-and-run, persistence).
//! - [`scope`]: escalation scopes (session, user, agent, source of
//!   untrusted content) and when an agent-wide quarantine is corroborated.
//! - [`call`]: the call and result views the judge is asked about.
//! - [`rules`]: the YAML rule language (call, sequence, threshold rules,
//!   risk ladder), compiled.
//! - `facts`: per-call facts and condition evaluation (internal).
//! - [`policy`]: the Cedar policy evaluated on every call (feature `cedar`).
//! - [`judge`]: [`Judge::judge_call`] and [`Judge::observe_result`] (and
//!   their halves, [`ScannedCall`] and [`ScannedResult`]).
//! - [`verdict`]: decisions, reasons and redactions.
//! - [`mod@replay`]: judging recorded sessions offline.
//! - [`pack`]: the default rules and policy.
//!
//! The judge never does I/O, never reads a clock and never draws random
//! numbers: the caller passes `now` and the state, so the live gateway and
//! `castellan replay` give the same answers.
//!
//! # Using it
//!
//! Build one [`Judge`] per configuration snapshot (`Judge::with_default_pack`
//! or `Judge::new(catalog, rules).with_policy(policy)`); rebuild it with
//! [`Judge::with_catalog`] when a `tools/list` changes the catalogue. Keep
//! one [`SessionState`] per behavioural session and one [`AggregateState`]
//! per agent and per user. For each call:
//!
//! 1. `let v = judge.judge_call(StateMut { session, agent, user }, &call, now);`
//!    the state is updated in place (call index, sequences, windows, risk,
//!    baseline, quarantine);
//! 2. forward the call only if `v.decision.forwards()` (allow or redact);
//!    for `Hold`, wait for approval and call [`Judge::record_approved`]
//!    before forwarding;
//! 3. when the upstream answers a forwarded call,
//!    `judge.observe_result(state, &call, &v, &result, now)` taints the
//!    session, records provenance and lists redactions.
//!
//! Both steps also come in two halves, for a caller that guards its state
//! with a lock: [`Judge::scan_call`] and [`Judge::scan_result`] read no
//! state (detectors, fingerprints: most of the cost) and may run before
//! the lock is taken; [`Judge::judge_scanned`] and
//! [`Judge::observe_scanned`] then read and update the state. The answers
//! are the same as in one step.
//!
//! [`replay::Replayer`] does exactly this for recorded sessions.

#![deny(missing_docs)]

pub mod baseline;
pub mod call;
pub mod catalog;
pub mod decode;
pub mod detect;
pub mod error;
mod facts;
pub mod fingerprint;
pub mod glob;
pub mod ids;
mod instruct;
pub mod judge;
pub mod label;
pub mod pack;
#[cfg(feature = "cedar")]
pub mod policy;
pub mod replay;
pub mod roles;
pub mod rules;
pub mod scope;
pub mod shell;
pub mod state;
pub mod subject;
pub mod verdict;

pub use call::{Call, CallKind, ToolResult};
pub use catalog::{Annotations, Catalog, LabelOverride, ToolDef, ToolLabels};
pub use detect::{
    ContentAction, DefinitionFinding, Kind as DetectorClass, Signal, SignalKind,
    inspect_definition, inspect_tool_definition,
};
pub use error::{Error, Location};
pub use ids::{
    AgentId, Millis, Rfc3339, RiskPoints, RuleId, ServerName, SessionKey, ToolName, UserId,
};
pub use judge::{Judge, ScannedCall, ScannedResult};
pub use label::{Label, LabelSet, LabelSource};
#[cfg(feature = "cedar")]
pub use policy::{ArgType, Policy};
pub use replay::{CallOutcome, Expect, Replayer, Summary, TraceCall, TraceSession, replay};
pub use roles::{ArgRole, RoleEntry, RoleOverride, RoleSource};
pub use rules::{Inspection, Ladder, LadderStep, Rule, RuleSet, Settings, Uninspectable};
pub use scope::{Corroboration, SourceKind, SourceMark};
pub use state::{AggregateState, SessionState, StateMut};
pub use verdict::{
    Action, ContentFinding, Decision, ProvenanceFinding, Reason, Redaction, ResultVerdict,
    SignalFinding, Verdict,
};
