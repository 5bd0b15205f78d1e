//! The decision log. Every decision the gateway makes, allow included, is a
//! [`Record`]; records are chained by BLAKE3 over the previous hash and the
//! record's canonical JSON, so changing, deleting, inserting or reordering
//! any record breaks the chain at that record, and [`verify`] names it.
//!
//! A log lives at a [`Location`]: a SQLite file in WAL mode for one gateway
//! (the embedded default), or a PostgreSQL database that every replica of
//! a fleet appends to as one chain. Either way one writer thread per
//! process appends in batches (group commit) off the request path. In
//! [`Durability::Strict`] mode a decision's record is stored before the
//! agent gets the answer (and an unreachable database refuses it); in
//! [`Durability::Batched`] mode the answer does not wait, at most one batch
//! can be lost in a crash, and while PostgreSQL is unreachable records wait
//! in a bounded local spool, replayed in order, without duplicates, when it
//! returns.
//!
//! Reading back, [`verify`], [`verify_with`], [`query`] and
//! [`verify_anchor`] take either kind of location.
#![deny(missing_docs)]

mod anchor;
mod location;
mod query;
mod read;
mod record;
mod sign;
mod store;
mod verify;

pub use anchor::{AnchorReport, verify_anchor};
pub use location::{Location, is_postgres_url};
pub use query::{Filter, Stored, query};
pub use read::probe;
pub use record::{GENESIS, Record, chain_hash};
pub use sign::{Checkpointing, PublicKey, Retention, SignedHead, SigningKey};
pub use store::{AuditError, AuditLog, Durability, Writer, WriterConfig};
pub use verify::{Report, Verification, verify, verify_with};
