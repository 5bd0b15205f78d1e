//! Tracing of agent requests: one span per request (named after its MCP
//! method) carrying the agent, upstream, tool, decision, rule ids and
//! decision id, and W3C trace context (`traceparent`) on the requests sent
//! to HTTP upstreams. Spans reach OpenTelemetry when the binary installs
//! the OTLP layer (`telemetry.otlp_endpoint`); otherwise they only serve the
//! logs.

use std::sync::atomic::{AtomicBool, Ordering};

use tracing::field::Empty;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns request spans on (the binary does when spans are exported); off,
/// requests cost no span at all.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// The span of one agent request (a disabled span unless [`enable`]d).
pub fn request_span(method: &str) -> tracing::Span {
    if !ENABLED.load(Ordering::Relaxed) {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "mcp.request",
        otel.name = method,
        otel.kind = "server",
        mcp.method = method,
        agent = Empty,
        upstream = Empty,
        tool = Empty,
        decision = Empty,
        decision_id = Empty,
        rules = Empty,
        risk = Empty,
    )
}

/// Records a decision on the current request span.
pub fn record_decision(judged: &crate::behaviour::Judged, agent: &str, upstream: &str, tool: &str) {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    span.record("agent", agent);
    span.record("upstream", upstream);
    span.record("tool", tool);
    span.record("decision", judged.verdict.decision.as_str());
    span.record("decision_id", judged.id.as_str());
    span.record("rules", judged.verdict.rule_ids().join(",").as_str());
    span.record("risk", judged.verdict.risk_after.0);
}

/// The `traceparent` header of the current span, if it is being traced.
pub fn traceparent() -> Option<(http::HeaderName, http::HeaderValue)> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    let value = format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    );
    Some((
        http::HeaderName::from_static("traceparent"),
        http::HeaderValue::from_str(&value).ok()?,
    ))
}
