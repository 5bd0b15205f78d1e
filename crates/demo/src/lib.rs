//! Demo MCP servers built into the binary, so a first `castellan serve`
//! fronts something real without any other software: `mail`, `files`,
//! `payments`, `web` and `chat`, each with in-memory data that resets when
//! the process starts. The `web` server serves a page carrying a prompt
//! injection, which is what the judge exists to catch.
//!
//! Each server answers MCP requests as a plain function of method and
//! params; the gateway owns the transport and the protocol era.
#![deny(missing_docs)]

use std::sync::Mutex;

use castellan_protocol::ErrorObject;
use castellan_protocol::jsonrpc::{INVALID_PARAMS, METHOD_NOT_FOUND};
use serde_json::{Value, json};

mod data;

/// One builtin demo server.
#[derive(Debug)]
pub struct DemoServer {
    kind: Kind,
    state: Mutex<data::State>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mail,
    Files,
    Payments,
    Web,
    Chat,
}

impl DemoServer {
    /// The server named `name` (`mail`, `files`, `payments`, `web`, `chat`).
    pub fn new(name: &str) -> Option<DemoServer> {
        let kind = match name {
            "mail" => Kind::Mail,
            "files" => Kind::Files,
            "payments" => Kind::Payments,
            "web" => Kind::Web,
            "chat" => Kind::Chat,
            _ => return None,
        };
        Some(DemoServer {
            kind,
            state: Mutex::new(data::State::seeded()),
        })
    }

    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Mail => "demo-mail",
            Kind::Files => "demo-files",
            Kind::Payments => "demo-payments",
            Kind::Web => "demo-web",
            Kind::Chat => "demo-chat",
        }
    }

    /// Answers one request. `params` is the request's params object (or
    /// `Null`). Returns the JSON-RPC result or error.
    pub fn handle(&self, method: &str, params: &Value) -> Result<Value, ErrorObject> {
        match method {
            "initialize" => Ok(json!({
                "protocolVersion": params.get("protocolVersion").and_then(Value::as_str).unwrap_or("2025-11-25"),
                "capabilities": self.capabilities(),
                "serverInfo": {"name": self.name(), "version": env!("CARGO_PKG_VERSION")},
            })),
            "server/discover" => Ok(json!({
                "supportedVersions": castellan_protocol::mcp::SUPPORTED_VERSIONS,
                "capabilities": self.capabilities(),
                "serverInfo": {"name": self.name(), "version": env!("CARGO_PKG_VERSION")},
            })),
            "ping" | "logging/setLevel" => Ok(json!({})),
            "tools/list" => Ok(json!({ "tools": self.tools() })),
            "tools/call" => {
                let name = params
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ErrorObject::new(INVALID_PARAMS, "tools/call needs a `name`"))?;
                let empty = json!({});
                let args = params.get("arguments").unwrap_or(&empty);
                if !self.tools().iter().any(|t| t["name"] == name) {
                    return Err(ErrorObject::new(
                        INVALID_PARAMS,
                        format!("unknown tool `{name}`"),
                    ));
                }
                let mut state = match self.state.lock() {
                    Ok(s) => s,
                    Err(poisoned) => poisoned.into_inner(),
                };
                Ok(match state.call(name, args) {
                    Ok(text) => {
                        json!({"content": [{"type": "text", "text": text}], "isError": false})
                    }
                    Err(text) => {
                        json!({"content": [{"type": "text", "text": text}], "isError": true})
                    }
                })
            }
            "resources/list" => Ok(json!({"resources": []})),
            "resources/templates/list" => Ok(json!({"resourceTemplates": []})),
            "prompts/list" => Ok(json!({"prompts": []})),
            other => Err(ErrorObject::new(
                METHOD_NOT_FOUND,
                format!("method `{other}` not found"),
            )),
        }
    }

    fn capabilities(&self) -> Value {
        json!({"tools": {"listChanged": false}})
    }

    fn tools(&self) -> Vec<Value> {
        data::tools(self.kind_name())
    }

    fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Mail => "mail",
            Kind::Files => "files",
            Kind::Payments => "payments",
            Kind::Web => "web",
            Kind::Chat => "chat",
        }
    }
}

#[cfg(test)]
mod tests;
