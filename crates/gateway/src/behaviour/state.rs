//! The behavioural state of sessions, agents and users between calls.

use std::collections::HashMap;

use castellan_judge::{
    AgentId, AggregateState, Millis, SessionKey, SessionState, StateMut, UserId,
};
use serde_json::{Value, json};

use super::judged::Subject;
use super::record::admin_record;
use super::views::{AgentSeen, SessionSeen};
use super::{Behaviour, lock, now_ms};

#[derive(Debug, Default)]
pub(super) struct States {
    pub(super) sessions: HashMap<SessionKey, SessionState>,
    pub(super) agents: HashMap<AgentId, AggregateState>,
    pub(super) users: HashMap<UserId, AggregateState>,
    /// What operators see of each session (dropped with the session).
    pub(super) seen: HashMap<SessionKey, SessionSeen>,
    /// The latest actions of each agent, newest last.
    pub(super) recent: HashMap<AgentId, AgentSeen>,
}

impl Behaviour {
    pub(super) fn with_state<T>(&self, subject: &Subject, f: impl FnOnce(StateMut<'_>) -> T) -> T {
        let mut states = match self.states.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let States {
            sessions,
            agents,
            users,
            ..
        } = &mut *states;
        let session = sessions.entry(subject.session.clone()).or_default();
        let agent = agents.entry(subject.agent.clone()).or_default();
        let user = subject
            .user
            .as_ref()
            .map(|u| users.entry(u.clone()).or_default());
        f(StateMut {
            session,
            agent,
            user,
        })
    }

    /// Live behavioural sessions and quarantined agents.
    pub fn counts(&self) -> (usize, usize) {
        let states = lock(&self.states);
        (
            states.sessions.len(),
            states
                .agents
                .values()
                .filter(|a| a.quarantine().is_some())
                .count(),
        )
    }

    /// Quarantines an agent at once (an operator action): every call it
    /// makes is refused until it is released. False if it already was.
    pub fn quarantine(&self, agent: &str, rule: &str) -> bool {
        let now = now_ms();
        let newly = lock(&self.states)
            .agents
            .entry(AgentId::new(agent))
            .or_default()
            .quarantine_now(Millis(now), castellan_judge::RuleId::new(rule));
        if newly {
            self.append(admin_record(
                self.next_id(now),
                now,
                agent,
                "quarantine",
                rule,
                format!("quarantined by an operator (`{rule}`)"),
                json!({}),
                (0, 0),
            ));
        }
        newly
    }

    /// Whether the gateway has judged a call of `agent` since it started
    /// (or holds state for it).
    pub fn knows_agent(&self, agent: &str) -> bool {
        let states = lock(&self.states);
        let id = AgentId::new(agent);
        states.recent.contains_key(&id) || states.agents.contains_key(&id)
    }

    /// Drops a behavioural session's state (its MCP session ended). The
    /// agent's and user's aggregates, which outlive sessions, stay. False if
    /// there was no such session.
    pub fn forget_session(&self, agent: &str, session: &str) -> bool {
        let key = SessionKey::new(format!("{agent}/{session}"));
        let mut states = lock(&self.states);
        let seen = states.seen.remove(&key).is_some();
        states.sessions.remove(&key).is_some() || seen
    }

    /// Ends behavioural sessions idle for longer than `idle`: a 2026-07-28
    /// agent's named or rolling session ends with its activity, so the next
    /// call starts a fresh one (the agent's and user's aggregates stay).
    /// Returns how many ended.
    pub fn expire_idle(&self, idle: std::time::Duration) -> usize {
        let cutoff = now_ms().saturating_sub(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX));
        let mut states = lock(&self.states);
        let before = states.sessions.len();
        states.sessions.retain(|_, s| s.last_activity().0 >= cutoff);
        before - states.sessions.len()
    }

    /// Releases a quarantined agent and sets aside the risk that caused
    /// the quarantine, its own and its live sessions' (kept, it would
    /// quarantine the agent again at its next call). Audited as a `release`
    /// record naming what was forgiven. `None` if it was not quarantined.
    pub fn release(&self, agent: &str) -> Option<Value> {
        let now = now_ms();
        let half_life = self.judge().rules().ladder().half_life_ms;
        let (released, sessions) = {
            let mut states = lock(&self.states);
            let released = states
                .agents
                .get_mut(&AgentId::new(agent))?
                .release(Millis(now), half_life)?;
            let States { sessions, seen, .. } = &mut *states;
            let mut forgiven = serde_json::Map::new();
            for (key, s) in seen.iter_mut().filter(|(_, s)| s.agent.as_str() == agent) {
                let points = sessions
                    .get_mut(key)
                    .map_or(0, |st| st.forgive_risk(Millis(now), half_life));
                s.risk = 0;
                forgiven.insert(s.name.clone(), json!(points));
            }
            if let Some(r) = states.recent.get_mut(&AgentId::new(agent)) {
                r.risk = 0;
            }
            (released, forgiven)
        };
        let since = released.quarantine.since.rfc3339().to_string();
        let rule = released.quarantine.rule.as_str();
        let forgiven = json!({
            "quarantined_since": since,
            "quarantined_by": rule,
            "agent_risk": released.risk,
            "corroborating_events": released.strikes,
            "session_risk": sessions,
        });
        self.append(admin_record(
            self.next_id(now),
            now,
            agent,
            "release",
            rule,
            format!(
                "released by an operator (quarantined since {since} by `{rule}`); risk set aside: {} on the agent{}",
                released.risk,
                sessions
                    .iter()
                    .map(|(name, points)| format!(", {points} on session `{name}`"))
                    .collect::<String>()
            ),
            forgiven.clone(),
            (released.risk, 0),
        ));
        Some(forgiven)
    }
}
