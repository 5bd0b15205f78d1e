//! `castellan serve`: logging and span export, the banner, and the
//! gateway's [`Runtime`] until a signal stops it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use castellan_gateway::reload::Source;
use castellan_gateway::runtime::{LOCAL_AGENT, Runtime};

use crate::LogFormat;
use crate::logging::{init_logging, tracer_provider};

/// Prints a banner line; a closed stdout must not bring the gateway down.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `castellan serve`: loads the configuration (with the command line's
/// overrides) and serves until a signal.
pub(crate) fn run(
    config: Option<PathBuf>,
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    log_format: LogFormat,
) -> anyhow::Result<()> {
    let source = Source {
        path: config,
        listen,
        admin_listen,
    };
    let cfg = source.load()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(Arc::new(cfg), source, log_format))
}

async fn serve(
    cfg: Arc<castellan_config::Config>,
    source: Source,
    log_format: LogFormat,
) -> anyhow::Result<()> {
    let demo = source.path.is_none();
    let provider = tracer_provider(&cfg.telemetry)?;
    if provider.is_some() {
        castellan_gateway::telemetry::enable();
    }
    init_logging(
        log_format,
        provider.as_ref().map(|p| {
            use opentelemetry::trace::TracerProvider as _;
            p.tracer("castellan")
        }),
    );
    // Binds every listener before anything else, and before announcing
    // anything: a port conflict fails fast and clearly, never after the
    // banner said "listening".
    let runtime = Runtime::start(cfg.clone(), source).await?;
    banner(&runtime, &cfg, demo);
    tracing::info!(url = %runtime.url(), "gateway ready");
    runtime.serve(shutdown_signal()).await;
    if let Some(p) = provider
        && let Err(e) = p.shutdown()
    {
        tracing::warn!(error = %e, "spans not all exported at shutdown");
    }
    tracing::info!("gateway stopped");
    Ok(())
}

/// What the operator needs to start using the gateway.
fn banner(runtime: &Runtime, cfg: &castellan_config::Config, demo: bool) {
    say!("castellan {} listening", env!("CARGO_PKG_VERSION"));
    say!("  MCP endpoint: {}", runtime.url());
    say!(
        "  upstreams:    {}",
        cfg.upstreams
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(key) = runtime.api_key() {
        say!("  API key:      {key}");
        say!(
            "                (agent `{LOCAL_AGENT}`, valid until the gateway stops; send `Authorization: Bearer <key>`)"
        );
    }
    if cfg.auth.anonymous {
        say!("  WARNING: auth.mode is `none`: any local process can act as an agent");
    }
    if !cfg.judge.enabled {
        say!(
            "  WARNING: judge.enabled is false: calls pass unjudged and unrecorded (for measurement only)"
        );
    }
    if let Some(admin_addr) = runtime.admin_addr() {
        say!(
            "  admin API:    http://{admin_addr} (agents, sessions, alerts, holds, quarantine, reload)"
        );
        if let Some(t) = runtime.admin_token() {
            say!("  admin token:  {t}");
        }
    }
    say!(
        "  files:        {} (decisions: castellan audit query), {} (tool pins)",
        cfg.audit.path,
        cfg.integrity.store
    );
    if demo {
        say!("  (builtin demo upstreams; pass --config castellan.yaml to front your own servers)");
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
