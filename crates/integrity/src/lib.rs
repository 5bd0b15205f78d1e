//! Tool integrity: what an upstream's tools looked like when an operator
//! approved them, and whether they still do.
//!
//! Every tool definition is reduced to a canonical form (keys sorted, the
//! free-form `_meta` left out) and hashed. The [`Store`] keeps the approved
//! version of each tool (its pin) and the latest version seen that is not
//! approved (pending), so an operator can diff and approve it. Pure apart
//! from the store, which is one SQLite file.

mod definition;
mod shadow;
mod store;

pub use definition::{Definition, diff};
pub use shadow::{Shadows, mentions_of_others};
pub use store::{Pending, Pin, Store, StoreError, key_of_kind};

/// Why a tool is withheld from agents.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// Never approved, and the configuration says new tools wait for an
    /// operator.
    New,
    /// The definition differs from the approved one (a rug pull, or an
    /// honest update nobody has reviewed yet).
    Changed {
        /// Hash of the approved version.
        pinned: String,
    },
    /// The definition itself looks like an attack on the model: hidden
    /// instructions, invisible characters, or text about other servers'
    /// tools (shadowing).
    Poisoned {
        /// What was found, one line each; never the offending text itself.
        reasons: Vec<String>,
    },
    /// A tool never seen before that appeared while tools pinned for the
    /// same upstream vanished from its list: perhaps a rename, perhaps a
    /// rug pull under a new name.
    Replaces {
        /// The pinned tools missing from the list.
        gone: Vec<String>,
    },
}

impl Finding {
    /// Short name for logs, metrics and the admin API.
    pub fn kind(&self) -> &'static str {
        match self {
            Finding::New => "new",
            Finding::Changed { .. } => "changed",
            Finding::Poisoned { .. } => "poisoned",
            Finding::Replaces { .. } => "replaces",
        }
    }

    /// One sentence for the agent and the operator.
    pub fn explain(&self) -> String {
        match self {
            Finding::New => "it has not been approved by an operator yet".into(),
            Finding::Changed { .. } => {
                "its definition changed since an operator approved it".into()
            }
            Finding::Poisoned { reasons } => {
                format!("its definition looks poisoned ({})", reasons.join("; "))
            }
            Finding::Replaces { gone } => format!(
                "it appeared while pinned tools of its upstream vanished ({}): a renamed tool is reviewed like a changed one",
                gone.join(", ")
            ),
        }
    }
}

/// What to do with a tool seen for the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FirstSight {
    /// Pin it as it is (trust on first use); later changes are withheld.
    #[default]
    Pin,
    /// Withhold it until an operator approves it.
    Hold,
}

/// The verdict on one tool definition against its pin.
///
/// `poison` holds reasons the definition looks like an attack (computed by
/// the caller, which knows the other servers' tools); a poisoned tool is
/// never pinned automatically.
pub fn assess(
    pin: Option<&Pin>,
    def: &Definition,
    first_sight: FirstSight,
    poison: Vec<String>,
) -> Assessment {
    match pin {
        Some(p) if p.hash == def.hash => Assessment::Approved,
        Some(p) => Assessment::Withheld(Finding::Changed {
            pinned: p.hash.clone(),
        }),
        None if !poison.is_empty() => Assessment::Withheld(Finding::Poisoned { reasons: poison }),
        None => match first_sight {
            FirstSight::Pin => Assessment::PinNow,
            FirstSight::Hold => Assessment::Withheld(Finding::New),
        },
    }
}

/// Outcome of [`assess`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assessment {
    /// Matches its pin: expose it.
    Approved,
    /// First sight under [`FirstSight::Pin`]: pin it, then expose it.
    PinNow,
    /// Keep it from agents until an operator approves this version.
    Withheld(Finding),
}

#[cfg(test)]
mod tests;
