//! The decision log. Every decision the gateway makes, allow included, is a
//! [`Record`]; records are chained by BLAKE3 over the previous hash and the
//! record's canonical JSON, so changing, deleting, inserting or reordering
//! any record breaks the chain at that record, and [`verify`] names it.
//!
//! The embedded store is a SQLite file in WAL mode, written by one thread in
//! batches (group commit) off the request path. In [`Durability::Strict`]
//! mode a decision's record is on disk before the agent gets the answer; in
//! [`Durability::Batched`] mode the answer does not wait, and at most one
//! batch (bounded by `max_batch` records or `max_delay`) can be lost in a
//! crash.
#![deny(missing_docs)]

mod anchor;
mod record;
mod sign;
mod store;

pub use anchor::{AnchorReport, verify_anchor};
pub use record::{GENESIS, Record, chain_hash};
pub use sign::{Checkpointing, PublicKey, Retention, SignedHead, SigningKey};
pub use store::{
    AuditError, AuditLog, Durability, Filter, Report, Stored, Verification, Writer, WriterConfig,
    query, verify, verify_with,
};
