//! The in-process [`StateStore`]: the state of one gateway in its own
//! memory, behind one lock that each update holds for the judge's
//! bookkeeping only (detectors and fingerprints run outside it).

use std::collections::HashMap;
use std::future::ready;
use std::sync::Mutex;

use castellan_judge::baseline::Learned;
use castellan_judge::state::Released;
use castellan_judge::{
    AgentId, AggregateState, Millis, RuleId, SessionKey, SessionState, StateMut, UserId,
};
use futures_util::future::BoxFuture;

use super::lock;
use super::store::{AgentEntry, SessionSummary, StateKey, StateStore, StoreError};

/// Sessions, agents and users of this process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    states: Mutex<States>,
}

#[derive(Debug, Default)]
struct States {
    sessions: HashMap<SessionKey, SessionState>,
    agents: HashMap<AgentId, AggregateState>,
    users: HashMap<UserId, AggregateState>,
}

impl MemoryStore {
    /// A store whose agents start with these learned baselines (kept by a
    /// `BaselineStore` across restarts).
    pub fn with_learned(saved: impl IntoIterator<Item = (String, Learned)>) -> MemoryStore {
        let mut states = States::default();
        for (agent, learned) in saved {
            states
                .agents
                .entry(AgentId::new(agent))
                .or_default()
                .set_learned(learned);
        }
        MemoryStore {
            states: Mutex::new(states),
        }
    }

    /// Runs `f` on the states under the lock: every answer is at once.
    fn now<'a, T: Send + 'a>(&'a self, f: impl FnOnce(&mut States) -> T) -> BoxFuture<'a, T> {
        let out = f(&mut lock(&self.states));
        Box::pin(ready(out))
    }
}

impl StateStore for MemoryStore {
    fn update<'a>(
        &'a self,
        key: StateKey<'a>,
        apply: &'a mut (dyn FnMut(StateMut<'_>) + Send),
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.now(|states| {
            let States {
                sessions,
                agents,
                users,
            } = states;
            apply(StateMut {
                session: sessions.entry(key.session.clone()).or_default(),
                agent: agents.entry(key.agent.clone()).or_default(),
                user: key.user.map(|u| users.entry(u.clone()).or_default()),
            });
            Ok(())
        })
    }

    fn quarantine<'a>(
        &'a self,
        agent: &'a AgentId,
        now: Millis,
        rule: RuleId,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.now(|states| {
            Ok(states
                .agents
                .entry(agent.clone())
                .or_default()
                .quarantine_now(now, rule))
        })
    }

    fn release<'a>(
        &'a self,
        agent: &'a AgentId,
        now: Millis,
        half_life_ms: u64,
    ) -> BoxFuture<'a, Result<Option<Released>, StoreError>> {
        self.now(|states| {
            Ok(states
                .agents
                .get_mut(agent)
                .and_then(|a| a.release(now, half_life_ms)))
        })
    }

    fn forgive_session<'a>(
        &'a self,
        session: &'a SessionKey,
        now: Millis,
        half_life_ms: u64,
    ) -> BoxFuture<'a, Result<u32, StoreError>> {
        self.now(|states| {
            Ok(states
                .sessions
                .get_mut(session)
                .map_or(0, |s| s.forgive_risk(now, half_life_ms)))
        })
    }

    fn end_session<'a>(
        &'a self,
        session: &'a SessionKey,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.now(|states| Ok(states.sessions.remove(session).is_some()))
    }

    fn expire_idle(&self, cutoff: Millis) -> BoxFuture<'_, Result<usize, StoreError>> {
        self.now(|states| {
            let before = states.sessions.len();
            states
                .sessions
                .retain(|_, s| s.last_activity().0 >= cutoff.0);
            Ok(before - states.sessions.len())
        })
    }

    fn session<'a>(
        &'a self,
        session: &'a SessionKey,
    ) -> BoxFuture<'a, Result<Option<SessionSummary>, StoreError>> {
        self.now(|states| {
            Ok(states.sessions.get(session).map(|s| SessionSummary {
                labels: s.labels(),
                calls: s.calls(),
                injection_seen: s.injection_seen(),
            }))
        })
    }

    fn agents(&self) -> BoxFuture<'_, Result<Vec<AgentEntry>, StoreError>> {
        self.now(|states| {
            Ok(states
                .agents
                .iter()
                .map(|(id, a)| (id.clone(), a.quarantine().cloned()))
                .collect())
        })
    }

    fn counts(&self) -> BoxFuture<'_, Result<(usize, usize), StoreError>> {
        self.now(|states| {
            let quarantined = states
                .agents
                .values()
                .filter(|a| a.quarantine().is_some())
                .count();
            Ok((states.sessions.len(), quarantined))
        })
    }

    fn learned(&self) -> BoxFuture<'_, Result<Vec<(AgentId, Learned)>, StoreError>> {
        self.now(|states| {
            Ok(states
                .agents
                .iter()
                .filter(|(_, a)| !a.learned().is_empty())
                .map(|(id, a)| (id.clone(), a.learned().clone()))
                .collect())
        })
    }
}
