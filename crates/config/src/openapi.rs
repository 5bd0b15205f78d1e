//! The `openapi:` upstream: a REST API described by an OpenAPI document,
//! whose operations the gateway exposes as tools.
//!
//! ```yaml
//! upstreams:
//!   - name: crm
//!     openapi:
//!       spec: ./crm-openapi.yaml        # file, or https:// URL
//!       base_url: https://crm.internal/api
//!       headers: { X-Api-Key: "${CRM_KEY}" }
//!       include: { tags: [customers] }
//!       exclude: { methods: [delete] }
//!       max_tools: 50
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::duration::Duration;
use crate::error::ConfigError;
use crate::model::{HttpUpstream, RawHttp, RawOAuth, UpstreamEra, compile_http};

/// Default cap on the tools one spec may expose.
pub const DEFAULT_MAX_TOOLS: usize = 200;
/// Default largest response body read, in bytes.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// An `openapi:` upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenApiUpstream {
    /// The spec: a file path or an `http(s)://` URL, read at start-up.
    pub spec: String,
    /// Where requests go. Only this: never a `servers` entry of the spec,
    /// never anything an agent sends (SSRF guard).
    pub base_url: String,
    /// Credentials (`headers`, `oauth`), as for an `http:` upstream; its
    /// `url` is `base_url`.
    pub http: HttpUpstream,
    /// Operations exposed: those matching `include` (when set) ...
    pub include: OperationFilter,
    /// ... and not matching `exclude` (when set).
    pub exclude: OperationFilter,
    /// Most tools exposed; a spec selecting more fails at start-up.
    pub max_tools: usize,
    /// Largest response body read; a larger one is an error result.
    pub max_response_bytes: usize,
    /// Per-request timeout, when shorter than `limits.upstream_timeout`.
    pub timeout: Option<std::time::Duration>,
}

/// Which operations a filter matches; empty lists match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationFilter {
    /// Tags (any of them).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Globs over `operationId`.
    #[serde(default)]
    pub operations: Vec<String>,
    /// HTTP methods.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Globs over the path template.
    #[serde(default)]
    pub paths: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOpenApi {
    spec: String,
    base_url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    oauth: Option<RawOAuth>,
    #[serde(default)]
    include: OperationFilter,
    #[serde(default)]
    exclude: OperationFilter,
    max_tools: Option<usize>,
    max_response_bytes: Option<usize>,
    timeout: Option<Duration>,
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Checks an `openapi:` entry of upstream `name` (at `line`).
pub(crate) fn compile(
    name: &str,
    raw: RawOpenApi,
    line: usize,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    invalid: &dyn Fn(usize, String) -> ConfigError,
) -> Result<OpenApiUpstream, ConfigError> {
    if raw.spec.trim().is_empty() {
        return Err(invalid(
            line,
            format!("upstream `{name}`: `openapi.spec` is empty"),
        ));
    }
    for m in raw.include.methods.iter().chain(&raw.exclude.methods) {
        if !METHODS.contains(&m.to_ascii_lowercase().as_str()) {
            return Err(invalid(
                line,
                format!("upstream `{name}`: unknown HTTP method `{m}` in `include`/`exclude`"),
            ));
        }
    }
    let max_tools = raw.max_tools.unwrap_or(DEFAULT_MAX_TOOLS);
    if max_tools == 0 {
        return Err(invalid(
            line,
            format!("upstream `{name}`: `max_tools` must be at least 1"),
        ));
    }
    let http = compile_http(
        name,
        RawHttp {
            url: raw.base_url.clone(),
            headers: raw.headers,
            era: UpstreamEra::Auto,
            oauth: raw.oauth,
        },
        line,
        text,
        env,
        invalid,
    )?;
    Ok(OpenApiUpstream {
        spec: raw.spec,
        base_url: raw.base_url.trim_end_matches('/').to_owned(),
        http,
        include: raw.include,
        exclude: raw.exclude,
        max_tools,
        max_response_bytes: raw.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
        timeout: raw.timeout.map(|d| d.0),
    })
}
