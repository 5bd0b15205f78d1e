//! The behavioural state of sessions, agents and users as the request path
//! and operators use it, through the [`StateStore`]: one update per
//! judged call, and the operators' actions (quarantine, release, session
//! ends, idle expiry).

use std::collections::BTreeMap;

use castellan_judge::{AgentId, Millis, RuleId, SessionKey, StateMut};
use serde::Serialize;
use serde_json::json;

use super::judged::Subject;
use super::record::admin_record;
use super::store::{StateKey, StateStore, StoreError};
use super::{Behaviour, lock, now_ms};

/// What an operator's release of a quarantined agent set aside.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseView {
    /// Since when it was quarantined (RFC 3339).
    pub quarantined_since: String,
    /// The rule or operator that had quarantined it.
    pub quarantined_by: String,
    /// The agent's risk points set aside.
    pub agent_risk: u32,
    /// Quarantine-grade events awaiting corroboration that were forgiven.
    pub corroborating_events: usize,
    /// The risk points set aside on each of its live sessions, by name.
    pub session_risk: BTreeMap<String, u32>,
}

impl Subject {
    /// The keys of the state this call reads and changes.
    pub(super) fn state_key(&self) -> StateKey<'_> {
        StateKey {
            agent: &self.agent,
            user: self.user.as_ref(),
            session: &self.session,
        }
    }
}

impl Behaviour {
    /// The one read-modify-write of `subject`'s state that `f` makes.
    pub(super) async fn with_state<T: Send>(
        &self,
        subject: &Subject,
        f: impl FnOnce(StateMut<'_>) -> T + Send,
    ) -> Result<T, StoreError> {
        let mut f = Some(f);
        let mut out = None;
        self.state
            .update(subject.state_key(), &mut |state| {
                out = f.take().map(|f| f(state));
            })
            .await?;
        out.ok_or_else(|| StoreError::Unavailable("the store did not apply the update".into()))
    }

    /// The store behind the behavioural state.
    pub fn store(&self) -> &dyn StateStore {
        &*self.state
    }

    /// Live behavioural sessions and quarantined agents.
    pub async fn counts(&self) -> Result<(usize, usize), StoreError> {
        self.state.counts().await
    }

    /// Quarantines an agent at once (an operator action): every call it
    /// makes is refused until it is released. False if it already was.
    pub async fn quarantine(&self, agent: &str, rule: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let newly = self
            .state
            .quarantine(&AgentId::new(agent), Millis(now), RuleId::new(rule))
            .await?;
        if newly {
            let _ = self.append(admin_record(
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
        Ok(newly)
    }

    /// Whether the gateway has judged a call of `agent` since it started
    /// (or holds state for it).
    pub async fn knows_agent(&self, agent: &str) -> Result<bool, StoreError> {
        let id = AgentId::new(agent);
        if lock(&self.activity).recent.contains_key(&id) {
            return Ok(true);
        }
        Ok(self.state.agents().await?.iter().any(|(a, _)| *a == id))
    }

    /// Drops a behavioural session's state (its MCP session ended). The
    /// agent's and user's aggregates, which outlive sessions, stay. False if
    /// there was no such session.
    pub async fn forget_session(&self, agent: &str, session: &str) -> Result<bool, StoreError> {
        let key = SessionKey::new(format!("{agent}/{session}"));
        let seen = lock(&self.activity).seen.remove(&key).is_some();
        Ok(self.state.end_session(&key).await? || seen)
    }

    /// Ends behavioural sessions idle for longer than `idle`: a 2026-07-28
    /// agent's named or rolling session ends with its activity, so the next
    /// call starts a fresh one (the agent's and user's aggregates stay).
    /// Returns how many ended.
    pub async fn expire_idle(&self, idle: std::time::Duration) -> Result<usize, StoreError> {
        let cutoff = now_ms().saturating_sub(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX));
        self.state.expire_idle(Millis(cutoff)).await
    }

    /// Releases a quarantined agent and sets aside the risk that caused
    /// the quarantine, its own and its live sessions' (kept, it would
    /// quarantine the agent again at its next call). Audited as a `release`
    /// record naming what was forgiven. `None` if it was not quarantined.
    pub async fn release(&self, agent: &str) -> Result<Option<ReleaseView>, StoreError> {
        let now = now_ms();
        let half_life = self.judge().rules().ladder().half_life_ms;
        let id = AgentId::new(agent);
        let Some(released) = self.state.release(&id, Millis(now), half_life).await? else {
            return Ok(None);
        };
        let sessions: Vec<(SessionKey, String)> = {
            let mut activity = lock(&self.activity);
            if let Some(r) = activity.recent.get_mut(&id) {
                r.risk = 0;
            }
            activity
                .seen
                .iter_mut()
                .filter(|(_, s)| s.agent == id)
                .map(|(key, s)| {
                    s.risk = 0;
                    (key.clone(), s.name.clone())
                })
                .collect()
        };
        let mut session_risk = BTreeMap::new();
        for (key, name) in sessions {
            let points = self
                .state
                .forgive_session(&key, Millis(now), half_life)
                .await?;
            session_risk.insert(name, points);
        }
        let forgiven = ReleaseView {
            quarantined_since: released.quarantine.since.rfc3339().to_string(),
            quarantined_by: released.quarantine.rule.as_str().to_owned(),
            agent_risk: released.risk,
            corroborating_events: released.strikes,
            session_risk,
        };
        let (since, rule) = (&forgiven.quarantined_since, &forgiven.quarantined_by);
        let _ = self.append(admin_record(
            self.next_id(now),
            now,
            agent,
            "release",
            rule,
            format!(
                "released by an operator (quarantined since {since} by `{rule}`); risk set aside: {} on the agent{}",
                released.risk,
                forgiven
                    .session_risk
                    .iter()
                    .map(|(name, points)| format!(", {points} on session `{name}`"))
                    .collect::<String>()
            ),
            json!(forgiven),
            (released.risk, 0),
        ));
        Ok(Some(forgiven))
    }
}
