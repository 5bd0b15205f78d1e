//! Castellan's configuration: `castellan.yaml` read into raw serde types
//! (unknown keys refused, every error with file, line and column), then
//! checked across fields and compiled into a [`Config`] the gateway uses
//! as is. A reload builds a whole new [`Config`]; a broken file never
//! replaces a working one.
#![deny(missing_docs)]

mod alerts;
mod duration;
mod error;
mod model;
mod openapi;
mod telemetry;

pub use alerts::{AlertsConfig, Webhook};
pub use duration::Duration;
pub use error::ConfigError;
pub use model::{
    ARGUMENT_ROLES, AdminConfig, ApiKey, AuditConfig, Auth, CertAgent, Config, FirstSight,
    HttpUpstream, IntegrityConfig, JWT_ALGORITHMS, JudgeConfig, JwksSource, Jwt, JwtIntent,
    LabelRule, Limits, Listener, ModernHeaders, Mtls, OAuthClient, RestartPolicy, StdioUpstream,
    Tls, ToolAnnotation, Transport, Upstream, UpstreamEra, beside_audit_log,
};
pub use openapi::{OpenApiUpstream, OperationFilter};
pub use telemetry::TelemetryConfig;

/// The configuration used when `castellan serve` is given no file: the
/// built-in demo upstream on loopback.
pub const DEFAULT_YAML: &str = include_str!("default.yaml");

/// Reads and validates a configuration. `origin` names the source in
/// errors (a file path, or `<default>`); `env` resolves `${VAR}`.
pub fn load(
    origin: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    model::compile(origin, text, env)
}

/// Reads a configuration file from disk.
pub fn load_file(path: &std::path::Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        file: origin.clone(),
        message: e.to_string(),
    })?;
    load(&origin, &text, &|k| std::env::var(k).ok())
}

/// Reads a configuration file for its `judge` section alone (`castellan
/// replay`): the sections only a listening gateway needs, such as `auth`,
/// may be absent; those present are still validated.
pub fn load_judge_file(path: &std::path::Path) -> Result<JudgeConfig, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        file: origin.clone(),
        message: e.to_string(),
    })?;
    model::compile_for(
        &origin,
        &text,
        &|k| std::env::var(k).ok(),
        model::Purpose::JudgeOnly,
    )
    .map(|c| c.judge)
}

#[cfg(test)]
mod tests;
