//! Tool integrity on the live path: every tool an upstream lists is checked
//! against its pin before an agent sees it, and every call is checked
//! against the last list. A changed definition (rug pull), a poisoned one,
//! or, when the operator asks for it, a new one is withheld until an
//! operator approves that exact version.

use std::collections::HashMap;
use std::sync::RwLock;

use castellan_config::IntegrityConfig;
use castellan_integrity::{
    Assessment, Definition, Finding, FirstSight, Pin, Store, StoreError, assess,
};

use crate::federation::{read, write};
use serde_json::{Value, json};

/// Who pins a tool seen for the first time under `first_sight: pin`.
const FIRST_SIGHT: &str = "first-sight";

/// The state of one tool as of its upstream's last list.
#[derive(Debug, Clone)]
enum Status {
    Approved,
    Withheld { hash: String, finding: Finding },
}

/// What a call may do with a tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The tool matches its pin.
    Approved,
    /// The upstream has not been listed since start or since it announced
    /// a change: list it, then check again.
    Unknown,
    /// The upstream's last list does not have this tool.
    Unlisted,
    /// Withheld until an operator approves this version.
    Withheld {
        /// Why.
        finding: Finding,
        /// The version waiting.
        hash: String,
    },
}

/// Pins, findings and the per-tool status of the live gateway.
pub struct Integrity {
    store: Store,
    first_sight: FirstSight,
    /// Upstream -> tool -> status, from the last list.
    status: RwLock<HashMap<String, HashMap<String, Status>>>,
}

impl std::fmt::Debug for Integrity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Integrity")
            .field("first_sight", &self.first_sight)
            .finish_non_exhaustive()
    }
}

impl Integrity {
    /// Opens the pin store the configuration names.
    pub fn open(cfg: &IntegrityConfig) -> Result<Integrity, String> {
        let store = Store::open(&cfg.store).map_err(|e| format!("{}: {e}", cfg.store))?;
        let first_sight = match cfg.first_sight {
            castellan_config::FirstSight::Pin => FirstSight::Pin,
            castellan_config::FirstSight::Hold => FirstSight::Hold,
        };
        Ok(Integrity::with_store(store, first_sight))
    }

    /// Pins kept in memory only: every tool is pinned on first sight and
    /// forgotten at exit (used by `castellan tools`, which must not change
    /// the operator's store).
    pub fn ephemeral() -> Result<Integrity, String> {
        let store = Store::in_memory().map_err(|e| e.to_string())?;
        Ok(Integrity::with_store(store, FirstSight::Pin))
    }

    fn with_store(store: Store, first_sight: FirstSight) -> Integrity {
        Integrity {
            store,
            first_sight,
            status: RwLock::new(HashMap::new()),
        }
    }

    /// Screens the tools `server` listed and returns those agents may see.
    /// `others` are the tools of the other upstreams (for shadowing). If
    /// the store cannot be read, nothing from this upstream is shown: the
    /// check fails closed.
    pub fn screen(&self, server: &str, tools: Vec<Value>, others: &[(&str, &str)]) -> Vec<Value> {
        let pins: HashMap<String, Pin> = match self.store.pins_of(server) {
            Ok(pins) => pins.into_iter().map(|p| (p.tool.clone(), p)).collect(),
            Err(e) => {
                tracing::error!(upstream = server, error = %e, "tool pins unreadable: the upstream's tools are withheld");
                return Vec::new();
            }
        };
        let mut status = HashMap::with_capacity(tools.len());
        let mut shown = Vec::with_capacity(tools.len());
        for tool in tools {
            let Some(name) = tool.get("name").and_then(Value::as_str).map(str::to_owned) else {
                continue;
            };
            let def = Definition::of(&tool);
            let poison = if pins.contains_key(&name) {
                Vec::new()
            } else {
                // Text aimed at the model (hidden instructions, invisible
                // characters, credential paths), then cross-server mentions.
                let mut reasons: Vec<String> = castellan_judge::inspect_tool_definition(
                    &name,
                    tool.get("description").and_then(Value::as_str),
                    tool.get("inputSchema").unwrap_or(&Value::Null),
                )
                .into_iter()
                .map(|f| format!("{} in {}", f.reason, f.location))
                .collect();
                reasons.extend(castellan_integrity::mentions_of_others(&tool, others));
                reasons
            };
            let verdict = match assess(pins.get(&name), &def, self.first_sight, poison) {
                Assessment::PinNow => match self.store.pin(server, &name, &def, FIRST_SIGHT) {
                    Ok(_) => Assessment::Approved,
                    Err(e) => {
                        tracing::error!(upstream = server, tool = %name, error = %e, "could not pin the tool: withheld");
                        Assessment::Withheld(Finding::New)
                    }
                },
                other => other,
            };
            match verdict {
                Assessment::Approved | Assessment::PinNow => {
                    status.insert(name, Status::Approved);
                    shown.push(tool);
                }
                Assessment::Withheld(finding) => {
                    self.raise(server, &name, &def, &finding);
                    status.insert(
                        name,
                        Status::Withheld {
                            hash: def.hash,
                            finding,
                        },
                    );
                }
            }
        }
        write(&self.status).insert(server.to_owned(), status);
        shown
    }

    /// Records a withheld version and tells the operator, once per version.
    fn raise(&self, server: &str, tool: &str, def: &Definition, finding: &Finding) {
        match self.store.record_pending(server, tool, def, finding) {
            Ok(true) => {
                metrics::counter!("castellan_tool_findings_total", "finding" => finding.kind())
                    .increment(1);
                tracing::warn!(
                    alert = true,
                    upstream = server,
                    tool,
                    finding = finding.kind(),
                    hash = %def.hash,
                    "tool withheld: {}; approve it with `castellan tools approve {server} {tool}` or the admin API",
                    finding.explain()
                );
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(upstream = server, tool, error = %e, "could not record the withheld tool")
            }
        }
    }

    /// May a call use `tool` of `server`?
    pub fn check(&self, server: &str, tool: &str) -> Check {
        let (hash, finding) = {
            let status = read(&self.status);
            match status.get(server).map(|m| m.get(tool)) {
                None => return Check::Unknown,
                Some(None) => return Check::Unlisted,
                Some(Some(Status::Approved)) => return Check::Approved,
                Some(Some(Status::Withheld { hash, finding })) => (hash.clone(), finding.clone()),
            }
        };
        // Approved since, perhaps from `castellan tools approve` beside us.
        if let Ok(Some(pin)) = self.store.pin_of(server, tool)
            && pin.hash == hash
        {
            self.mark_approved(server, tool);
            return Check::Approved;
        }
        Check::Withheld { finding, hash }
    }

    fn mark_approved(&self, server: &str, tool: &str) {
        if let Some(m) = write(&self.status).get_mut(server) {
            m.insert(tool.to_owned(), Status::Approved);
        }
    }

    /// Forgets what `server` listed, so the next call lists it again (it
    /// announced that its tools changed).
    pub fn invalidate(&self, server: &str) {
        write(&self.status).remove(server);
    }

    /// Approves the waiting version of a tool; with `hash`, only if that is
    /// the version the operator reviewed.
    pub fn approve(
        &self,
        server: &str,
        tool: &str,
        hash: Option<&str>,
        by: &str,
    ) -> Result<Pin, StoreError> {
        let pin = self.store.approve(server, tool, hash, by)?;
        let current = matches!(
            read(&self.status).get(server).and_then(|m| m.get(tool)),
            Some(Status::Withheld { hash, .. }) if *hash == pin.hash
        );
        if current {
            self.mark_approved(server, tool);
        }
        tracing::info!(upstream = server, tool, hash = %pin.hash, by, "tool version approved");
        Ok(pin)
    }

    /// Every pin and every version waiting, for operators.
    pub fn report(&self) -> Result<Value, StoreError> {
        Ok(json!({
            "pins": self.store.pins()?,
            "pending": self.store.pending()?,
        }))
    }

    /// The waiting version of a tool against its pin.
    pub fn diff(&self, server: &str, tool: &str) -> Result<Option<Value>, StoreError> {
        let Some(pending) = self.store.pending_of(server, tool)? else {
            return Ok(None);
        };
        let pin = self.store.pin_of(server, tool)?;
        let approved = pin.as_ref().map_or("", |p| p.definition.as_str());
        Ok(Some(json!({
            "upstream": server,
            "tool": tool,
            "pinned": pin.as_ref().map(|p| &p.hash),
            "pending": pending.hash,
            "finding": pending.finding,
            "diff": castellan_integrity::diff(approved, &pending.definition),
        })))
    }
}
