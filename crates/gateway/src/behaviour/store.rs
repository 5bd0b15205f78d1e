//! The seam between the request path and the behavioural state: the
//! [`StateStore`] trait, which the in-process [`MemoryStore`] implements
//! and a shared store (Redis, for a fleet of gateways) can implement
//! without any change to the request path.
//!
//! # The contract
//!
//! State is kept per behavioural session, per agent and per user, under
//! keys a store must keep apart:
//! - a session by its [`SessionKey`], `<agent principal>/<handle>`: the
//!   agent's name scopes the handle (an MCP session id, a modern agent's
//!   `io.castellan/session`, or `rolling`), so agents can neither read nor
//!   poison each other's sessions;
//! - an agent by its [`AgentId`] (the authenticated principal);
//! - a user by its [`UserId`], when the credential names one.
//!
//! A judged call is exactly one [`StateStore::update`]: the store reads the
//! three states, hands them to `apply` once, and writes back what `apply`
//! changed, with no other update of the same keys in between (a shared
//! store takes a lock on the keys or uses an optimistic transaction that
//! retries the *read*, never `apply`). Showing a result to the judge,
//! approving and refusing a held call are one update each too. An update
//! that cannot be done is an error, and the caller fails closed: the call
//! is refused, the content is kept from the agent.
//!
//! Every method is asynchronous so that a store across the network does
//! not hold an executor thread; the in-process store answers at once.
//! Operator views and actions (quarantine, release, session ends, idle
//! expiry, counts) are rare and may scan.

use std::fmt;

use castellan_judge::baseline::Learned;
use castellan_judge::state::{Quarantine, Released};
use castellan_judge::{AgentId, LabelSet, Millis, RuleId, SessionKey, StateMut, UserId};
use futures_util::future::BoxFuture;

pub use super::memory::MemoryStore;

/// The keys of the state one call reads and changes.
#[derive(Debug, Clone, Copy)]
pub struct StateKey<'a> {
    /// The agent (its aggregate outlives sessions).
    pub agent: &'a AgentId,
    /// The user the credential names, if any.
    pub user: Option<&'a UserId>,
    /// The behavioural session, scoped to the agent.
    pub session: &'a SessionKey,
}

/// What operators see of a session's judged state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSummary {
    /// The session's labels so far.
    pub labels: LabelSet,
    /// Calls judged in it.
    pub calls: u32,
    /// Whether content carrying injected instructions reached it.
    pub injection_seen: bool,
}

/// Why a store could not answer. The caller fails closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be reached or did not answer in time.
    #[error("the behavioural state store is unavailable: {0}")]
    Unavailable(String),
}

/// An agent the store knows, with its quarantine if it has one.
pub type AgentEntry = (AgentId, Option<Quarantine>);

/// Where the behavioural state lives between calls. See the module
/// documentation for the contract every implementation keeps.
pub trait StateStore: Send + Sync + fmt::Debug {
    /// Reads the state under `key` (each part created empty if new),
    /// calls `apply` exactly once with it, and keeps what `apply` changed,
    /// atomically with respect to every other update of the same keys.
    fn update<'a>(
        &'a self,
        key: StateKey<'a>,
        apply: &'a mut (dyn FnMut(StateMut<'_>) + Send),
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Quarantines `agent` now (an operator's action). False if it already
    /// was.
    fn quarantine<'a>(
        &'a self,
        agent: &'a AgentId,
        now: Millis,
        rule: RuleId,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Lifts `agent`'s quarantine and sets aside its risk (see
    /// `AggregateState::release`). `None` if it was not quarantined.
    fn release<'a>(
        &'a self,
        agent: &'a AgentId,
        now: Millis,
        half_life_ms: u64,
    ) -> BoxFuture<'a, Result<Option<Released>, StoreError>>;

    /// Sets aside a session's risk (see `SessionState::forgive_risk`): the
    /// points forgiven, zero for a session the store does not hold.
    fn forgive_session<'a>(
        &'a self,
        session: &'a SessionKey,
        now: Millis,
        half_life_ms: u64,
    ) -> BoxFuture<'a, Result<u32, StoreError>>;

    /// Drops a session's state (its MCP session ended); agents' and users'
    /// aggregates stay. False if there was none.
    fn end_session<'a>(
        &'a self,
        session: &'a SessionKey,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Drops the sessions last active before `cutoff`; how many.
    fn expire_idle(&self, cutoff: Millis) -> BoxFuture<'_, Result<usize, StoreError>>;

    /// A session's summary, if the store holds it.
    fn session<'a>(
        &'a self,
        session: &'a SessionKey,
    ) -> BoxFuture<'a, Result<Option<SessionSummary>, StoreError>>;

    /// Every agent the store holds an aggregate for, with its quarantine.
    fn agents(&self) -> BoxFuture<'_, Result<Vec<AgentEntry>, StoreError>>;

    /// Live sessions and quarantined agents.
    fn counts(&self) -> BoxFuture<'_, Result<(usize, usize), StoreError>>;

    /// Every agent's learned baselines that are not empty (to be saved).
    fn learned(&self) -> BoxFuture<'_, Result<Vec<(AgentId, Learned)>, StoreError>>;
}
