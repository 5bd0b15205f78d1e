//! Castellan's performance harness (see `docs/performance.md` and
//! `scripts/bench`): [`workload`] holds the MCP messages both binaries
//! agree on. `bench-upstream` is a fast MCP server; `bench-load` drives
//! MCP traffic at a fixed rate or at saturation and reports latency.

pub mod workload;
