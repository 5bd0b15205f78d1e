//! The `telemetry` section: OpenTelemetry traces over OTLP/HTTP (off by
//! default).

use serde::Deserialize;

use crate::error::ConfigError;
use crate::model::find_key_line;

/// Where spans go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetryConfig {
    /// OTLP/HTTP traces endpoint (e.g. `http://127.0.0.1:4318/v1/traces`);
    /// none turns tracing export off.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the spans.
    pub service_name: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    otlp_endpoint: Option<String>,
    service_name: Option<String>,
}

pub(crate) fn compile(
    raw: Option<RawTelemetry>,
    text: &str,
    invalid: &dyn Fn(usize, String) -> ConfigError,
) -> Result<TelemetryConfig, ConfigError> {
    let raw = raw.unwrap_or_default();
    if let Some(url) = &raw.otlp_endpoint
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(invalid(
            find_key_line(text, "otlp_endpoint", None),
            format!("`telemetry.otlp_endpoint` must start with http:// or https://, got `{url}`"),
        ));
    }
    Ok(TelemetryConfig {
        otlp_endpoint: raw.otlp_endpoint,
        service_name: raw.service_name.unwrap_or_else(|| "castellan".into()),
    })
}
