//! `castellan tools pins|diff|approve|revoke`: the operator's side of tool
//! integrity, working on the pin store directly (safe beside a running
//! gateway, which picks approvals up on the next call or list).

use std::io::Write as _;

use anyhow::Context;
use castellan_integrity::Store;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum PinCommand {
    /// Every pinned tool and every version waiting for approval.
    Pins {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show what changed between a tool's pin and the version waiting.
    Diff {
        /// Upstream name (as in the configuration).
        upstream: String,
        /// Tool name as the upstream lists it.
        tool: String,
    },
    /// Approve the version of a tool waiting for an operator.
    Approve {
        /// Upstream name.
        upstream: String,
        /// Tool name as the upstream lists it.
        tool: String,
        /// Approve only if this is still the waiting version (from `diff`).
        #[arg(long)]
        hash: Option<String>,
        /// Who approves (recorded with the pin).
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// Forget a tool's pin: it is treated as never seen.
    Revoke {
        /// Upstream name.
        upstream: String,
        /// Tool name as the upstream lists it.
        tool: String,
    },
}

pub fn run(store_path: &str, command: PinCommand) -> anyhow::Result<()> {
    let store = Store::open(store_path).with_context(|| format!("pin store `{store_path}`"))?;
    let mut out = std::io::stdout().lock();
    match command {
        PinCommand::Pins { json } => {
            let (pins, pending) = (store.pins()?, store.pending()?);
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"pins": pins, "pending": pending})
                )?;
                return Ok(());
            }
            for p in &pins {
                writeln!(
                    out,
                    "pinned   {}/{}  {}  by {}",
                    p.server, p.tool, p.hash, p.approved_by
                )?;
            }
            for p in &pending {
                writeln!(
                    out,
                    "WITHHELD {}/{}  {}  {}",
                    p.server,
                    p.tool,
                    p.hash,
                    p.finding.explain()
                )?;
            }
        }
        PinCommand::Diff { upstream, tool } => {
            let Some(pending) = store.pending_of(&upstream, &tool)? else {
                anyhow::bail!("no version of `{upstream}` tool `{tool}` is waiting for approval");
            };
            let pin = store.pin_of(&upstream, &tool)?;
            writeln!(out, "{upstream}/{tool}: {}", pending.finding.explain())?;
            writeln!(
                out,
                "pinned:  {}",
                pin.as_ref().map_or("(none)", |p| p.hash.as_str())
            )?;
            writeln!(out, "waiting: {}", pending.hash)?;
            let approved = pin.as_ref().map_or("", |p| p.definition.as_str());
            write!(
                out,
                "{}",
                castellan_integrity::diff(approved, &pending.definition)
            )?;
        }
        PinCommand::Approve {
            upstream,
            tool,
            hash,
            by,
        } => {
            let pin = store.approve(&upstream, &tool, hash.as_deref(), &by)?;
            writeln!(out, "approved {upstream}/{tool} {}", pin.hash)?;
        }
        PinCommand::Revoke { upstream, tool } => {
            if !store.revoke(&upstream, &tool)? {
                anyhow::bail!("`{upstream}` tool `{tool}` has no pin");
            }
            writeln!(out, "revoked {upstream}/{tool}")?;
        }
    }
    Ok(())
}
