//! What operators see of sessions and agents: the activity this gateway
//! noted of each decision (kept in process beside the state store) joined
//! with the judged state, as typed views the admin API serialises.

use std::collections::{HashMap, VecDeque};

use castellan_judge::{AgentId, Label, LabelSet, SessionKey};
use serde::Serialize;

use super::judged::Judged;
use super::{Behaviour, lock};

/// Recent actions kept per agent for the admin API.
const RECENT_ACTIONS: usize = 20;

/// The activity operators see, noted at each decision.
#[derive(Debug, Default)]
pub(super) struct Activity {
    /// Each live session (dropped with the session).
    pub(super) seen: HashMap<SessionKey, SessionSeen>,
    /// The latest actions of each agent, newest last.
    pub(super) recent: HashMap<AgentId, AgentSeen>,
}

/// A session as operators see it.
#[derive(Debug, Clone)]
pub(super) struct SessionSeen {
    pub(super) agent: AgentId,
    pub(super) name: String,
    pub(super) risk: u32,
    pub(super) last_ms: u64,
    pub(super) started_ms: u64,
    pub(super) last_decision: &'static str,
}

/// One recent action of an agent.
#[derive(Debug, Clone, Serialize)]
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

#[derive(Debug, Default, Clone)]
pub(super) struct AgentSeen {
    pub(super) risk: u32,
    pub(super) last_ms: u64,
    pub(super) actions: VecDeque<RecentAction>,
}

/// A live behavioural session.
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    /// The agent.
    pub agent: String,
    /// The session's name (scoped to the agent).
    pub session: String,
    /// Its risk after its latest decision.
    pub risk: u32,
    /// Its labels.
    pub labels: Vec<&'static str>,
    /// Calls judged in it.
    pub calls: u32,
    /// Whether injected instructions reached it.
    pub injection_seen: bool,
    /// Its latest decision.
    pub last_decision: &'static str,
    /// When it started (ms since the epoch).
    pub started_ms: u64,
    /// When it was last active.
    pub last_activity_ms: u64,
}

/// An agent's quarantine.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineView {
    /// Since when (ms since the epoch).
    pub since_ms: u64,
    /// The rule or operator that quarantined it.
    pub rule: String,
}

/// An agent seen or quarantined.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    /// The agent.
    pub agent: String,
    /// Its latest risk.
    pub risk: u32,
    /// Whether every call it makes is refused.
    pub quarantined: bool,
    /// Its quarantine, if any.
    pub quarantine: Option<QuarantineView>,
    /// The labels of its live sessions.
    pub labels: Vec<&'static str>,
    /// How many live sessions it has.
    pub sessions: usize,
    /// When it was last active.
    pub last_activity_ms: Option<u64>,
    /// Its recent actions, newest first.
    pub recent: Vec<RecentAction>,
}

impl Activity {
    /// Notes a decision in its session and of its agent.
    pub(super) fn note(&mut self, j: &Judged, session: &str, now: u64) {
        let decision = j.verdict.decision.as_str();
        let risk = j.verdict.risk_after.0;
        let seen = self
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
        let agent = self.recent.entry(j.subject.agent.clone()).or_default();
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

    /// The sessions noted of `agent`, or of every agent.
    fn sessions_of(&self, agent: Option<&str>) -> Vec<(SessionKey, SessionSeen)> {
        self.seen
            .iter()
            .filter(|(_, s)| agent.is_none_or(|a| s.agent.as_str() == a))
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect()
    }
}

impl Behaviour {
    /// Keeps what operators see of a decision: the session's and agent's
    /// latest risk and activity, and the agent's recent actions.
    pub(super) fn note(&self, j: &Judged, session: &str, now: u64) {
        lock(&self.activity).note(j, session, now);
    }

    /// Live behavioural sessions, most recently active first; only `agent`'s
    /// when given.
    pub async fn sessions(&self, agent: Option<&str>) -> Vec<SessionView> {
        let seen = lock(&self.activity).sessions_of(agent);
        let mut out = Vec::with_capacity(seen.len());
        for (key, s) in seen {
            // A store that cannot answer shows the session without state.
            let state = self.state.session(&key).await.ok().flatten();
            out.push(SessionView {
                agent: s.agent.as_str().to_owned(),
                session: s.name,
                risk: s.risk,
                labels: state.map(|st| labels_of(st.labels)).unwrap_or_default(),
                calls: state.map_or(0, |st| st.calls),
                injection_seen: state.is_some_and(|st| st.injection_seen),
                last_decision: s.last_decision,
                started_ms: s.started_ms,
                last_activity_ms: s.last_ms,
            });
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.last_activity_ms));
        out
    }

    /// One session as [`Behaviour::sessions`] shows it, if it is live.
    pub async fn session(&self, agent: &str, session: &str) -> Option<SessionView> {
        self.sessions(Some(agent))
            .await
            .into_iter()
            .find(|s| s.session == session)
    }

    /// Every agent seen or quarantined: latest risk, quarantine, the labels
    /// of its live sessions, and its recent actions (newest first).
    pub async fn agents(&self) -> Vec<AgentView> {
        let stored = self.state.agents().await.unwrap_or_default();
        let (recent, sessions) = {
            let activity = lock(&self.activity);
            (activity.recent.clone(), activity.sessions_of(None))
        };
        let mut quarantines: HashMap<AgentId, Option<castellan_judge::state::Quarantine>> =
            stored.into_iter().collect();
        let mut names: Vec<AgentId> = quarantines.keys().chain(recent.keys()).cloned().collect();
        names.sort();
        names.dedup();
        let mut out = Vec::with_capacity(names.len());
        for a in names {
            let seen = recent.get(&a);
            let quarantine = quarantines.remove(&a).flatten();
            let mut labels = LabelSet::EMPTY;
            let mut live = 0;
            for (key, s) in &sessions {
                if s.agent == a {
                    live += 1;
                    if let Ok(Some(st)) = self.state.session(key).await {
                        labels = labels.union(st.labels);
                    }
                }
            }
            out.push(AgentView {
                agent: a.as_str().to_owned(),
                risk: seen.map_or(0, |s| s.risk),
                quarantined: quarantine.is_some(),
                quarantine: quarantine.map(|q| QuarantineView {
                    since_ms: q.since.0,
                    rule: q.rule.as_str().to_owned(),
                }),
                labels: labels_of(labels),
                sessions: live,
                last_activity_ms: seen.map(|s| s.last_ms),
                recent: seen
                    .map(|s| s.actions.iter().rev().cloned().collect())
                    .unwrap_or_default(),
            });
        }
        out
    }
}

fn labels_of(set: LabelSet) -> Vec<&'static str> {
    set.iter().map(Label::as_str).collect()
}
