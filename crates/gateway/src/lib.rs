//! Castellan's data plane: the agent-facing MCP endpoint and the upstreams
//! behind it.
//!
//! Layout, in the order a request travels:
//! - [`server`]: HTTP transport rules for both MCP eras (methods, headers,
//!   sessions, Host/Origin checks, body limits) and response rendering;
//! - [`transport`]: Host/Origin rules, the first-byte deadline and the
//!   per-source connection cap, for the agent and admin listeners;
//! - [`identity`]: API keys, JWTs and client certificates ([`tls`]), the
//!   agent behind each request;
//! - [`admin`]: the operators' API (agents, sessions, alerts, holds,
//!   quarantine, reload, tool pins, health, metrics);
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
//! - [`upstream`]: builtin, Streamable HTTP and stdio upstreams.
#![deny(missing_docs)]

pub mod admin;
pub mod alerts;
pub mod baselines;
pub mod behaviour;
pub mod federation;
pub mod gateway;
pub mod identity;
pub mod integrity;
mod list_cache;
pub mod listen;
mod relay;
pub mod reload;
mod screen;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod tls;
pub mod transport;
pub mod upstream;
mod uri;

pub use gateway::Gateway;
pub use server::serve;
