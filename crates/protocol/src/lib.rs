//! The wire model Castellan speaks on both sides: JSON-RPC 2.0 envelopes
//! parsed lazily (method, id, name and the raw params; everything else stays
//! as the original bytes), the MCP vocabulary of both protocol eras, and the
//! two framings MCP uses on the wire: Server-Sent Events and newline-delimited
//! stdio.
//!
//! Layout:
//! - [`jsonrpc`]: the envelope, ids, errors and the error codes;
//! - [`json`]: serde_json's compact bytes written fast, and a strict parse
//!   that refuses duplicate keys;
//! - [`mcp`]: protocol versions, eras, `_meta` keys, header names, the
//!   base64 header sentinel and the few MCP shapes the gateway rewrites;
//! - [`sse`]: an incremental SSE decoder and encoder;
//! - [`stdio`]: newline-delimited framing with a size limit.
#![deny(missing_docs)]

pub mod json;
pub mod jsonrpc;
pub mod mcp;
pub mod sse;
pub mod stdio;

pub use jsonrpc::{Envelope, ErrorObject, Kind, ParseError, RequestId};
