//! `castellan tools`: every upstream tool with its labels and where each
//! came from, listed by a gateway that serves no agent and pins nothing.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

/// A gateway that lists the upstreams' tools without serving agents or
/// pinning anything in the operator's store.
/// `castellan tools`: the table (or JSON lines), or a pin subcommand.
pub(crate) fn run(
    config: Option<&Path>,
    json: bool,
    pins: Option<crate::pins::PinCommand>,
) -> anyhow::Result<()> {
    let cfg = match config {
        Some(path) => castellan_config::load_file(path)?,
        None => castellan_config::load("<default>", castellan_config::DEFAULT_YAML, &|k| {
            std::env::var(k).ok()
        })?,
    };
    if let Some(command) = pins {
        return crate::pins::run(&cfg.integrity.store, command);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(tools(Arc::new(cfg), json))
}

pub(crate) async fn offline_gateway(
    cfg: Arc<castellan_config::Config>,
) -> anyhow::Result<Arc<castellan_gateway::Gateway>> {
    let auth = castellan_gateway::identity::Authenticator::new(
        &castellan_config::Auth {
            anonymous: true,
            ..Default::default()
        },
        None,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let behaviour = castellan_gateway::behaviour::Behaviour::new(&cfg.judge, None)
        .map_err(anyhow::Error::msg)?;
    let integrity =
        castellan_gateway::integrity::Integrity::ephemeral().map_err(anyhow::Error::msg)?;
    castellan_gateway::Gateway::start(cfg, auth, behaviour, integrity).map_err(anyhow::Error::msg)
}

/// Lists the upstreams' tools and says why the policy does not validate
/// against them, if it does not; also names the upstreams that listed no
/// tool (unreachable ones among them).
pub(crate) async fn policy_problem(
    cfg: Arc<castellan_config::Config>,
) -> anyhow::Result<(Option<String>, Vec<String>)> {
    let gateway = offline_gateway(cfg.clone()).await?;
    let tools = gateway.explain_tools().await;
    let silent = cfg
        .upstreams
        .iter()
        .filter(|u| !tools.iter().any(|t| t.server == u.name))
        .map(|u| u.name.clone())
        .collect();
    Ok((gateway.policy_problem(), silent))
}

async fn tools(cfg: Arc<castellan_config::Config>, json: bool) -> anyhow::Result<()> {
    // Listing must not pin anything in the operator's store.
    let gateway = offline_gateway(cfg).await?;
    let tools = gateway.explain_tools().await;
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for t in &tools {
        if json {
            let sources: Vec<serde_json::Value> = t
                .sources
                .iter()
                .map(|(l, s)| serde_json::json!({"label": l.as_str(), "source": s.to_string()}))
                .collect();
            let _ = writeln!(
                out,
                "{}",
                serde_json::json!({"server": t.server, "tool": t.tool, "labels": sources, "arguments": t.arguments})
            );
        } else {
            let labels: Vec<String> = t
                .sources
                .iter()
                .map(|(l, s)| format!("{} ({s})", l.as_str()))
                .collect();
            let _ = writeln!(
                out,
                "{}/{}: {}",
                t.server,
                t.tool,
                if labels.is_empty() {
                    "-".to_string()
                } else {
                    labels.join(", ")
                }
            );
            if !t.arguments.is_empty() {
                let roles: Vec<String> = t
                    .arguments
                    .iter()
                    .map(|a| format!("{}={} ({})", a.argument, a.role, a.source))
                    .collect();
                let _ = writeln!(out, "  arguments: {}", roles.join(", "));
            }
        }
    }
    Ok(())
}
