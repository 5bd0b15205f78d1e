//! Offline replay of recorded sessions, judged exactly like the live
//! gateway: calls in order, a result observed only after its call was
//! forwarded, the same state model (session, agent and user aggregates).
//!
//! Owns: the JSON Lines formats of BRIEF §8 ([`TraceSession`],
//! [`TraceCall`] in; [`CallOutcome`] out), the scenario expectation
//! [`Expect`], the [`Replayer`] that keeps agent and user aggregates across
//! the sessions of one run, and the [`Summary`] accumulator.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::call::{Call, CallKind, ToolResult};
use crate::ids::{AgentId, Millis, SessionKey, UserId};
use crate::judge::Judge;
use crate::state::{AggregateState, SessionState, StateMut};
use crate::verdict::Decision;

/// The replay clock starts here when a trace has no `at` (2026-01-01Z).
pub const DEFAULT_START: Millis = Millis(1_767_225_600_000);

/// One recorded session (one JSON line). Unknown fields are ignored.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TraceSession {
    /// Session id, echoed in every output line.
    pub id: String,
    /// The agent (default `agent`).
    #[serde(default)]
    pub agent: Option<String>,
    /// The user, when known.
    #[serde(default)]
    pub user: Option<String>,
    /// The user's request, as trusted intent.
    #[serde(default)]
    pub intent: Option<String>,
    /// The agent's attributes (`{"team": "support"}`), as the gateway
    /// would take them from the agent's credential.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// The calls in order.
    pub calls: Vec<TraceCall>,
    /// For scenario files: the expected outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}

/// One recorded call.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TraceCall {
    /// The upstream server.
    #[serde(default)]
    pub server: Option<String>,
    /// The tool.
    pub tool: String,
    /// The arguments.
    #[serde(default)]
    pub args: Value,
    /// The result: text or an MCP result object.
    #[serde(default)]
    pub result: Value,
    /// The result is an error.
    #[serde(default)]
    pub is_error: bool,
    /// When (RFC 3339); without it, one second after the previous call.
    #[serde(default)]
    pub at: Option<String>,
}

/// What a scenario expects.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Expect {
    /// Some call must be stopped (hold, throttle, deny or quarantine).
    pub stopped: bool,
    /// The first stopped call's index, when it matters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_index: Option<u32>,
    /// `attack` or `benign` (defaults from `stopped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A category for reports, e.g. `mail`, `payments`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// A documented gap: the judge is known to miss this expectation; the
    /// scenario test reports it instead of failing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub known_gap: bool,
    /// How injected text is worded (`marked`, `imperative`, `plain`,
    /// `roleplay`; `direct` for an attack the user asks for himself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wording: Option<String>,
    /// The index of the first side-effecting call the attacker caused: the
    /// attack is stopped before harm when this call is held, throttled,
    /// denied or quarantined (BRIEF §8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harm_at: Option<u32>,
    /// Why the judge is expected to miss this one, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_hint: Option<String>,
}

impl Expect {
    /// True if the scenario is an attack.
    pub fn is_attack(&self) -> bool {
        self.kind.as_deref().map_or(self.stopped, |k| k == "attack")
    }

    /// True when the attack was stopped before harm: the call at
    /// `harm_at` was held, throttled, denied or quarantined. Without
    /// `harm_at`, when any call was.
    pub fn stopped_before_harm(&self, outcomes: &[CallOutcome]) -> bool {
        match self.harm_at {
            Some(i) => outcomes
                .iter()
                .any(|o| o.index == i && o.decision >= Decision::Hold),
            None => outcomes.iter().any(|o| o.decision >= Decision::Hold),
        }
    }

    /// Checks outcomes against the expectation. With `harm_at`, a stop must
    /// reach the harmful call itself; stopping only a read before it does
    /// not count.
    pub fn check(&self, outcomes: &[CallOutcome]) -> Result<(), String> {
        if let (true, Some(i)) = (self.stopped, self.harm_at)
            && !self.stopped_before_harm(outcomes)
        {
            let got = outcomes.iter().find(|o| o.index == i).map_or_else(
                || "no such call".to_owned(),
                |o| format!("`{}` got {} ({})", o.tool, o.decision, o.rules.join(",")),
            );
            return Err(format!(
                "expected the harmful call #{i} to be stopped, but {got}"
            ));
        }
        let first = outcomes.iter().find(|o| o.decision >= Decision::Hold);
        match (self.stopped, first) {
            (false, None) => Ok(()),
            (false, Some(o)) => Err(format!(
                "expected no stop, but call #{} `{}` got {} ({})",
                o.index,
                o.tool,
                o.decision,
                o.rules.join(",")
            )),
            (true, None) => Err("expected a stop, but every call was allowed".to_owned()),
            (true, Some(o)) => match self.at_index {
                Some(i) if i != o.index => Err(format!(
                    "expected the first stop at #{i}, got #{} `{}` {} ({})",
                    o.index,
                    o.tool,
                    o.decision,
                    o.rules.join(",")
                )),
                _ => Ok(()),
            },
        }
    }
}

/// One output line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CallOutcome {
    /// Session id.
    pub id: String,
    /// Call index in the session.
    pub index: u32,
    /// Tool name.
    pub tool: String,
    /// The decision.
    pub decision: Decision,
    /// Rule and policy ids that contributed.
    pub rules: Vec<String>,
    /// Risk after the call.
    pub risk: u32,
    /// The main reason, or empty.
    pub reason: String,
}

/// Replays sessions, keeping agent and user aggregates across them (so
/// multi-session patterns in one file are seen) and a clock that runs on
/// from session to session.
#[derive(Debug)]
pub struct Replayer<'j> {
    judge: &'j Judge,
    agents: HashMap<String, AggregateState>,
    users: HashMap<String, AggregateState>,
    clock: Millis,
}

impl<'j> Replayer<'j> {
    /// A replayer with empty aggregates.
    pub fn new(judge: &'j Judge) -> Replayer<'j> {
        Replayer {
            judge,
            agents: HashMap::new(),
            users: HashMap::new(),
            clock: DEFAULT_START,
        }
    }

    /// Judges one session's calls in order and returns one outcome per call.
    pub fn session(&mut self, trace: &TraceSession) -> Vec<CallOutcome> {
        let agent_name = trace.agent.clone().unwrap_or_else(|| "agent".to_owned());
        let agent_id = AgentId::new(&agent_name);
        let user_id = trace.user.as_deref().map(UserId::new);
        let session_key = SessionKey::new(&trace.id);
        let attributes: Vec<(String, String)> = trace
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut session = SessionState::new();
        let mut agent = self.agents.remove(&agent_name).unwrap_or_default();
        let mut user = trace
            .user
            .as_ref()
            .map(|u| self.users.remove(u).unwrap_or_default());
        let mut out = Vec::with_capacity(trace.calls.len());
        let mut now = self.clock;
        for (i, c) in trace.calls.iter().enumerate() {
            now = match c.at.as_deref().and_then(parse_rfc3339) {
                Some(t) => t,
                None if i == 0 => now,
                None => now.plus(1000),
            };
            let call = Call {
                agent: &agent_id,
                user: user_id.as_ref(),
                attributes: &attributes,
                session: &session_key,
                kind: CallKind::CallTool,
                server: c.server.as_deref(),
                tool: &c.tool,
                args: &c.args,
                args_text: None,
                intent: trace.intent.as_deref(),
            };
            let verdict = self.judge.judge_call(
                StateMut {
                    session: &mut session,
                    agent: &mut agent,
                    user: user.as_mut(),
                },
                &call,
                now,
            );
            if verdict.decision.forwards() {
                let result = ToolResult {
                    value: &c.result,
                    is_error: c.is_error,
                };
                let _ = self.judge.observe_result(
                    StateMut {
                        session: &mut session,
                        agent: &mut agent,
                        user: user.as_mut(),
                    },
                    &call,
                    &verdict,
                    &result,
                    now,
                );
            }
            out.push(CallOutcome {
                id: trace.id.clone(),
                index: verdict.index,
                tool: c.tool.clone(),
                decision: verdict.decision,
                rules: verdict.reasons.iter().map(|r| r.rule.to_string()).collect(),
                risk: verdict.risk_after.0,
                reason: verdict.summary(),
            });
        }
        self.clock = now.plus(1000);
        self.agents.insert(agent_name, agent);
        if let (Some(u), Some(state)) = (trace.user.clone(), user) {
            self.users.insert(u, state);
        }
        out
    }
}

/// Judges one session on fresh state.
pub fn replay(judge: &Judge, trace: &TraceSession) -> Vec<CallOutcome> {
    Replayer::new(judge).session(trace)
}

/// Counts for the replay summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Sessions replayed.
    pub sessions: u32,
    /// Calls judged.
    pub calls: u32,
    /// Calls per decision, in severity order.
    pub decisions: [u32; 6],
    /// Sessions with at least one stopped call.
    pub stopped_sessions: u32,
    /// Sessions whose expectation held.
    pub expect_passed: u32,
    /// Sessions whose expectation failed.
    pub expect_failed: u32,
}

impl Summary {
    /// Adds one session's outcomes.
    pub fn add(&mut self, trace: &TraceSession, outcomes: &[CallOutcome]) {
        self.sessions += 1;
        for o in outcomes {
            self.calls += 1;
            self.decisions[o.decision as usize] += 1;
        }
        if outcomes.iter().any(|o| o.decision >= Decision::Hold) {
            self.stopped_sessions += 1;
        }
        if let Some(e) = &trace.expect {
            if e.check(outcomes).is_ok() {
                self.expect_passed += 1;
            } else {
                self.expect_failed += 1;
            }
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} sessions, {} calls:", self.sessions, self.calls)?;
        let names = ["allow", "redact", "hold", "throttle", "deny", "quarantine"];
        for (n, c) in names.iter().zip(self.decisions) {
            write!(f, " {c} {n},")?;
        }
        write!(f, " {} sessions stopped", self.stopped_sessions)?;
        if self.expect_passed + self.expect_failed > 0 {
            write!(
                f,
                "; expectations: {} passed, {} failed",
                self.expect_passed, self.expect_failed
            )?;
        }
        Ok(())
    }
}

/// Parses an RFC 3339 timestamp (`2026-03-01T10:00:00Z`, optional
/// fraction, `Z` or `±hh:mm`) to milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    let b = s.trim().as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        std::str::from_utf8(b.get(r)?).ok()?.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = std::str::from_utf8(&b[start..i]).ok()?;
        let padded = format!("{:0<3}", &frac[..frac.len().min(3)]);
        ms = padded.parse().ok()?;
    }
    let offset_min: i64 = match b.get(i)? {
        b'Z' | b'z' => 0,
        sign @ (b'+' | b'-') => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let v = oh * 60 + om;
            if *sign == b'+' { v } else { -v }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_min * 60;
    u64::try_from(secs * 1000 + ms).ok().map(Millis)
}

#[cfg(test)]
mod tests;
