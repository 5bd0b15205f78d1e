//! Logging to stderr (text or JSON lines) and span export over OTLP.

use anyhow::Context;

use crate::LogFormat;

/// Logs to stderr (text or JSON lines) and, with a tracer, exports spans
/// over OTLP.
pub(crate) fn init_logging(format: LogFormat, tracer: Option<opentelemetry_sdk::trace::SdkTracer>) {
    init_logging_with(format, tracer, "info");
}

/// [`init_logging`] with a default filter for when `CASTELLAN_LOG` is unset.
pub(crate) fn init_logging_with(
    format: LogFormat,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
    default_filter: &str,
) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("CASTELLAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Colours only for a person at a terminal: redirected to a file or a
    // log collector, escape codes are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let text = matches!(format, LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
    });
    let json = matches!(format, LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
    });
    let otel = tracer.map(|t| tracing_opentelemetry::layer().with_tracer(t));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(otel)
        .try_init();
}

/// The OTLP/HTTP span exporter `telemetry` asks for (inside the runtime):
/// batches leave every second from a Tokio task, off the request path.
pub(crate) fn tracer_provider(
    t: &castellan_config::TelemetryConfig,
) -> anyhow::Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>> {
    use opentelemetry_otlp::WithExportConfig as _;
    let Some(endpoint) = &t.otlp_endpoint else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint.clone())
        .build()
        .context("cannot build the OTLP exporter")?;
    let batch =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .with_batch_config(
            opentelemetry_sdk::trace::BatchConfigBuilder::default()
                .with_scheduled_delay(std::time::Duration::from_secs(1))
                .build(),
        )
        .build();
    Ok(Some(
        opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_span_processor(batch)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(t.service_name.clone())
                    .build(),
            )
            .build(),
    ))
}
