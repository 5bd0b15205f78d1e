//! Castellan's data plane: the agent-facing MCP endpoint and the upstreams
//! behind it.
//!
//! [`runtime::Runtime`] starts a gateway from a configuration.
//!
//! Layout, in the order a request travels:
//! - [`server`]: HTTP transport rules for both MCP eras (methods, headers,
//!   sessions, Host/Origin checks, body limits) and response rendering;
//! - [`transport`]: Host/Origin rules, the first-byte deadline and the
//!   per-source connection cap, for the agent and admin listeners;
//! - [`identity`]: API keys, JWTs and client certificates ([`tls`]), the
//!   agent behind each request;
//! - [`admin`]: the operators' API (agents, sessions, alerts, holds,
//!   quarantine, reload, tool pins, health, metrics), served through
//!   [`operator`], the one interface operators reach the gateway by;
//! - [`reload`]: configuration changes put in force without dropping
//!   connections;
//! - [`alerts`]: alerts to standard output and webhooks, off the hot path;
//! - [`behaviour`]: the judge on the live path, behavioural state, audit;
//! - [`gateway`]: routing, federation and relaying of one agent message
//!   (`relay`: the answer, JSON or SSE; `screen`: content in streamed events);
//! - [`federation`]: namespacing and the routing tables;
//! - [`integrity`]: tool pins, rug-pull and shadowing findings;
//! - [`listen`]: `subscriptions/listen` streams of modern agents;
//! - [`session`]: legacy-era agent sessions and resumable streams;
//! - [`telemetry`]: a span per request and `traceparent` to upstreams;
//! - [`Error`]: what building, reloading or operating the gateway can
//!   fail with, the judge's and the configuration's locations kept;
//! - [`upstream`]: builtin, Streamable HTTP and stdio upstreams, and
//!   [`upstreams`] the set of them, the one place that picks a transport.
#![deny(missing_docs)]

pub mod admin;
pub mod alerts;
pub mod baselines;
pub mod behaviour;
mod call;
mod error;
pub mod federation;
pub mod gateway;
pub mod identity;
pub mod integrity;
mod list_cache;
pub mod listen;
pub mod operator;
mod relay;
pub mod reload;
pub mod runtime;
mod screen;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod tls;
pub mod transport;
pub mod upstream;
pub mod upstreams;
mod uri;

pub use error::{Error, Location};
pub use gateway::Gateway;
pub use server::serve;
