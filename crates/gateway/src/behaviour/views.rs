//! What operators see of sessions and agents.

use std::collections::VecDeque;

use castellan_judge::{AgentId, AggregateState, Label, LabelSet, SessionState};
use serde_json::{Value, json};

use super::judged::Judged;
use super::{Behaviour, lock};

/// Recent actions kept per agent for the admin API.
pub(super) const RECENT_ACTIONS: usize = 20;

/// A session as operators see it.
#[derive(Debug)]
pub(super) struct SessionSeen {
    pub(super) agent: AgentId,
    pub(super) name: String,
    pub(super) risk: u32,
    pub(super) last_ms: u64,
    pub(super) started_ms: u64,
    pub(super) last_decision: &'static str,
}

/// One recent action of an agent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecentAction {
    /// The decision id.
    pub id: String,
    /// When.
    pub at_ms: u64,
    /// The session name.
    pub session: String,
    /// The upstream server.
    pub upstream: String,
    /// The tool, prompt or resource.
    pub tool: String,
    /// The decision.
    pub decision: &'static str,
}

#[derive(Debug, Default)]
pub(super) struct AgentSeen {
    pub(super) risk: u32,
    pub(super) last_ms: u64,
    pub(super) actions: VecDeque<RecentAction>,
}

impl Behaviour {
    /// Keeps what operators see of a decision: the session's and agent's
    /// latest risk and activity, and the agent's recent actions.
    pub(super) fn note(&self, j: &Judged, session: &str, now: u64) {
        let mut states = lock(&self.states);
        let decision = j.verdict.decision.as_str();
        let risk = j.verdict.risk_after.0;
        let seen = states
            .seen
            .entry(j.subject.session.clone())
            .or_insert_with(|| SessionSeen {
                agent: j.subject.agent.clone(),
                name: session.to_owned(),
                risk: 0,
                last_ms: now,
                started_ms: now,
                last_decision: decision,
            });
        seen.risk = risk;
        seen.last_ms = now;
        seen.last_decision = decision;
        let agent = states.recent.entry(j.subject.agent.clone()).or_default();
        agent.risk = risk;
        agent.last_ms = now;
        if agent.actions.len() >= RECENT_ACTIONS {
            agent.actions.pop_front();
        }
        agent.actions.push_back(RecentAction {
            id: j.id.clone(),
            at_ms: now,
            session: session.to_owned(),
            upstream: j.subject.server.clone(),
            tool: j.subject.tool.clone(),
            decision,
        });
    }

    /// Live behavioural sessions, most recently active first; only `agent`'s
    /// when given.
    pub fn sessions(&self, agent: Option<&str>) -> Vec<Value> {
        let states = lock(&self.states);
        let mut out: Vec<(u64, Value)> = states
            .seen
            .iter()
            .filter(|(_, s)| agent.is_none_or(|a| s.agent.as_str() == a))
            .map(|(key, s)| {
                let state = states.sessions.get(key);
                (
                    s.last_ms,
                    json!({
                        "agent": s.agent.as_str(),
                        "session": s.name,
                        "risk": s.risk,
                        "labels": state.map(|st| labels_of(st.labels())).unwrap_or_default(),
                        "calls": state.map_or(0, SessionState::calls),
                        "injection_seen": state.is_some_and(SessionState::injection_seen),
                        "last_decision": s.last_decision,
                        "started_ms": s.started_ms,
                        "last_activity_ms": s.last_ms,
                    }),
                )
            })
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.0));
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// One session as [`Behaviour::sessions`] shows it, if it is live.
    pub fn session(&self, agent: &str, session: &str) -> Option<Value> {
        self.sessions(Some(agent))
            .into_iter()
            .find(|s| s["session"] == session)
    }

    /// Every agent seen or quarantined: latest risk, quarantine, the labels
    /// of its live sessions, and its recent actions (newest first).
    pub fn agents(&self) -> Vec<Value> {
        let states = lock(&self.states);
        let mut names: Vec<&AgentId> = states.agents.keys().chain(states.recent.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|a| {
                let seen = states.recent.get(a);
                let quarantine = states.agents.get(a).and_then(AggregateState::quarantine);
                let mut labels = LabelSet::EMPTY;
                let mut sessions = 0;
                for (key, s) in &states.seen {
                    if &s.agent == a {
                        sessions += 1;
                        if let Some(st) = states.sessions.get(key) {
                            labels = labels.union(st.labels());
                        }
                    }
                }
                json!({
                    "agent": a.as_str(),
                    "risk": seen.map_or(0, |s| s.risk),
                    "quarantined": quarantine.is_some(),
                    "quarantine": quarantine.map(|q| json!({"since_ms": q.since.0, "rule": q.rule.as_str()})),
                    "labels": labels_of(labels),
                    "sessions": sessions,
                    "last_activity_ms": seen.map(|s| s.last_ms),
                    "recent": seen.map(|s| s.actions.iter().rev().cloned().collect::<Vec<_>>()).unwrap_or_default(),
                })
            })
            .collect()
    }
}

pub(super) fn labels_of(set: LabelSet) -> Vec<&'static str> {
    set.iter().map(Label::as_str).collect()
}
