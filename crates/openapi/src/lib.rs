//! OpenAPI operations as MCP tools.
//!
//! Layout:
//! - [`spec`]: reading an OpenAPI 3.0/3.1 document (JSON or YAML), its
//!   digest, its operations, bounded `$ref` resolution; Swagger 2.0 is
//!   refused;
//! - [`select`]: which operations become tools, with a hard cap;
//! - [`naming`]: valid, short, stable tool names;
//! - [`tool`]: one operation as a tool (arguments, input schema,
//!   description, annotations, definition digest);
//! - [`labels`]: labels inferred for the judge;
//! - [`request`]: a call's arguments as an HTTP request;
//! - [`response`]: an HTTP response as a `tools/call` result.
//!
//! Pure: no I/O beyond [`Spec::load`] reading one file, no network. The
//! gateway sends the requests.
#![deny(missing_docs)]

pub mod error;
pub mod labels;
pub mod naming;
pub mod request;
pub mod response;
pub mod select;
pub mod spec;
pub mod tool;

use std::collections::HashMap;

use serde_json::Value;

pub use error::{CallError, SpecError};
pub use request::HttpRequest;
pub use select::{Filter, Selection};
pub use spec::Spec;
pub use tool::Tool;

/// The tools of one spec under one selection.
#[derive(Debug, Clone)]
pub struct Api {
    spec_digest: String,
    tools: Vec<Tool>,
    by_name: HashMap<String, usize>,
}

impl Api {
    /// Selects, names and builds the tools of `spec`. Names are at most
    /// `name_budget` characters (the client-visible limit minus the
    /// upstream's prefix). Fails when the selection exceeds its cap, when
    /// two operations would share a name, or on a dangling `$ref`.
    pub fn build(spec: &Spec, selection: &Selection, name_budget: usize) -> Result<Api, SpecError> {
        let ops: Vec<_> = spec
            .operations()
            .into_iter()
            .filter(|op| selection.selects(op))
            .collect();
        if ops.len() > selection.max_tools {
            return Err(SpecError::TooMany {
                origin: spec.origin().to_owned(),
                selected: ops.len(),
                max: selection.max_tools,
            });
        }
        let mut tools: Vec<Tool> = Vec::with_capacity(ops.len());
        let mut by_name = HashMap::with_capacity(ops.len());
        for op in &ops {
            let name = naming::tool_name(op.operation_id(), op.method, op.path, name_budget);
            if let Some(&i) = by_name.get(&name) {
                let first: &Tool = &tools[i];
                return Err(SpecError::Collision {
                    origin: spec.origin().to_owned(),
                    name,
                    first: format!("{} {}", first.method.to_ascii_uppercase(), first.path),
                    second: op.display(),
                });
            }
            by_name.insert(name.clone(), tools.len());
            tools.push(Tool::build(spec, op, name)?);
        }
        Ok(Api {
            spec_digest: spec.digest().to_owned(),
            tools,
            by_name,
        })
    }

    /// The tools, in document order.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// The tool called `name`.
    pub fn tool(&self, name: &str) -> Option<&Tool> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    /// The spec's digest.
    pub fn spec_digest(&self) -> &str {
        &self.spec_digest
    }

    /// The `tools/list` result: every tool.
    pub fn list(&self) -> Value {
        let tools: Vec<Value> = self
            .tools
            .iter()
            .map(|t| t.to_json(&self.spec_digest))
            .collect();
        serde_json::json!({ "tools": tools })
    }
}

#[cfg(test)]
mod tests;
