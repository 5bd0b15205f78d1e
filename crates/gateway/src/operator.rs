//! What an operator can see of the running gateway and do to it, as one
//! narrow interface: agents and their quarantine, behavioural sessions
//! and their timelines, held calls, alerts, tool pins, reloads and the
//! gauges. The admin API serves it over HTTP (`admin.rs`); a console can
//! serve the same methods. Nothing here is reached through the gateway's
//! fields from outside.

use std::sync::Arc;
use std::time::Duration;

use castellan_integrity::{Pin, StoreError as PinStoreError};
use serde_json::Value;

use crate::alerts::Alert;
use crate::behaviour::{AgentView, HoldView, ReleaseView, SessionView};
use crate::error::Error;
use crate::gateway::Gateway;
use crate::reload::{Reloaded, Source};

/// The operators' interface to one gateway.
#[derive(Debug, Clone)]
pub struct Operator {
    gw: Arc<Gateway>,
}

/// What quarantining an agent did.
#[derive(Debug, Clone, Copy)]
pub struct Quarantined {
    /// Whether the gateway had seen the agent (a typo must not pass for a
    /// quarantine).
    pub known: bool,
    /// Whether it was not quarantined before.
    pub changed: bool,
}

/// The gauges read at each metrics scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Open legacy MCP sessions.
    pub mcp_sessions: usize,
    /// Live behavioural sessions.
    pub behaviour_sessions: usize,
    /// Quarantined agents.
    pub quarantined: usize,
    /// Calls waiting for a human.
    pub held: usize,
    /// The audit writer's queue depth and the lag of its last batch.
    pub audit: Option<(u64, Duration)>,
}

impl Operator {
    /// The interface to `gw`.
    pub fn new(gw: Arc<Gateway>) -> Operator {
        Operator { gw }
    }

    /// The configuration in force.
    pub fn config(&self) -> &castellan_config::Config {
        &self.gw.config
    }

    /// Operators can answer holds from now on, at `url` (log lines of held
    /// calls say how).
    pub fn open_approvals(&self, url: Option<String>) {
        let behaviour = &self.gw.behaviour;
        behaviour
            .approvals
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(url) = url {
            let _ = behaviour.admin_url.set(url);
        }
    }

    /// Open legacy MCP sessions.
    pub fn mcp_sessions(&self) -> usize {
        self.gw.sessions.len()
    }

    /// The audit log's reachability and spooled records, if there is a log.
    pub fn audit_health(&self) -> Option<(bool, u64)> {
        self.gw.behaviour.audit_health()
    }

    /// Every agent seen or quarantined.
    pub async fn agents(&self) -> Vec<AgentView> {
        self.gw.behaviour.agents().await
    }

    /// Refuses every call of `agent` until it is released.
    pub async fn quarantine(&self, agent: &str) -> Result<Quarantined, Error> {
        let behaviour = &self.gw.behaviour;
        let known = behaviour.knows_agent(agent).await?;
        let changed = behaviour.quarantine(agent, "operator").await?;
        Ok(Quarantined { known, changed })
    }

    /// Lifts `agent`'s quarantine and sets its risk aside; `None` if it was
    /// not quarantined.
    pub async fn release(&self, agent: &str) -> Result<Option<ReleaseView>, Error> {
        Ok(self.gw.behaviour.release(agent).await?)
    }

    /// Live behavioural sessions, only `agent`'s when given.
    pub async fn sessions(&self, agent: Option<&str>) -> Vec<SessionView> {
        self.gw.behaviour.sessions(agent).await
    }

    /// One live behavioural session.
    pub async fn session(&self, agent: &str, session: &str) -> Option<SessionView> {
        self.gw.behaviour.session(agent, session).await
    }

    /// A session's decisions from the audit log, at most the newest
    /// `limit` (read off the executor).
    pub async fn timeline(
        &self,
        agent: &str,
        session: &str,
        limit: u64,
    ) -> Result<Vec<Value>, Error> {
        let (gw, agent, session) = (self.gw.clone(), agent.to_owned(), session.to_owned());
        tokio::task::spawn_blocking(move || gw.behaviour.timeline(&agent, &session, limit))
            .await
            .map_err(|e| Error::Interrupted(e.to_string()))?
    }

    /// Ends a session for good: a legacy MCP session is closed (the
    /// agent's next request with its id gets 404, upstream sessions are
    /// closed) and the behavioural state is dropped either way.
    pub async fn end_session(&self, agent: &str, session: &str) -> bool {
        let gw = &self.gw;
        if let Some(s) = gw.sessions.get(session)
            && &*s.principal.agent == agent
        {
            return gw.end_session(session).await;
        }
        match gw.behaviour.forget_session(agent, session).await {
            Ok(ended) => ended,
            Err(e) => {
                tracing::error!(agent, session, error = %e, "behavioural session not ended");
                false
            }
        }
    }

    /// Recent alerts, newest first.
    pub fn alerts(&self, limit: usize) -> Vec<Arc<Alert>> {
        self.gw.behaviour.alerts.recent(limit)
    }

    /// Calls waiting for a human.
    pub fn holds(&self) -> Vec<HoldView> {
        self.gw.behaviour.holds()
    }

    /// Answers a held call; false if there is no such hold.
    pub fn answer_hold(&self, id: &str, approve: bool) -> bool {
        self.gw.behaviour.answer_hold(id, approve)
    }

    /// Every tool pin and every version withheld.
    pub fn pins(&self) -> Result<Value, PinStoreError> {
        self.gw.integrity.report()
    }

    /// A withheld version of a tool against its pin.
    pub fn pin_diff(&self, upstream: &str, tool: &str) -> Result<Option<Value>, PinStoreError> {
        self.gw.integrity.diff(upstream, tool)
    }

    /// Approves the withheld version of a tool (exactly `hash` when
    /// given) and tells agents the tool list changed.
    pub fn approve_pin(
        &self,
        upstream: &str,
        tool: &str,
        hash: Option<&str>,
    ) -> Result<Pin, PinStoreError> {
        let pin = self
            .gw
            .integrity
            .approve(upstream, tool, hash, "admin-api")?;
        self.gw.announce_tools_changed();
        Ok(pin)
    }

    /// Reloads the configuration file into the running gateway.
    pub async fn reload(&self, source: &Source) -> Result<Reloaded, Error> {
        crate::reload::reload(&self.gw, source).await
    }

    /// The gauges as they are now.
    pub async fn gauges(&self) -> Gauges {
        let behaviour = &self.gw.behaviour;
        let (behaviour_sessions, quarantined) = behaviour.counts().await.unwrap_or_default();
        Gauges {
            mcp_sessions: self.gw.sessions.len(),
            behaviour_sessions,
            quarantined,
            held: behaviour.held_count(),
            audit: behaviour.audit_stats(),
        }
    }
}
