//! A gateway started from a [`Config`]: the listeners bound first (a port
//! conflict fails fast, before anything is announced), then
//! authentication, the audit log, alerts, the judge, tool pins and the
//! gateway itself, then serving until shutdown, with the admin API beside
//! it and the configuration reloaded when its files change. The binary
//! only prints what [`Runtime`] says and waits for a signal.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use castellan_config::{AuditConfig, Config};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::error::Error;
use crate::gateway::Gateway;
use crate::operator::Operator;
use crate::reload::Source;

/// The agent a generated API key authenticates.
pub const LOCAL_AGENT: &str = "local-agent";

/// A gateway built and bound, ready to serve.
#[derive(Debug)]
pub struct Runtime {
    config: Arc<Config>,
    source: Source,
    gateway: Arc<Gateway>,
    listener: TcpListener,
    addr: SocketAddr,
    admin: Option<Admin>,
    api_key: Option<String>,
}

/// The admin API's listener and credentials.
#[derive(Debug)]
struct Admin {
    listener: TcpListener,
    addr: SocketAddr,
    token_sha256: [u8; 32],
    generated_token: Option<String>,
    metrics: Option<PrometheusHandle>,
}

impl Runtime {
    /// Binds the listeners and builds the gateway `config` describes
    /// (`source` says where it came from, for reloads).
    pub async fn start(config: Arc<Config>, source: Source) -> Result<Runtime, Error> {
        let listener = bind(config.listener.addr, "").await?;
        let addr = local_addr(&listener)?;
        let admin_listener = match &config.admin {
            Some(admin) => Some(bind(admin.addr, " (admin)").await?),
            None => None,
        };
        // The demo default: a key made now, valid for this run.
        let api_key = match config.auth.generate_key {
            true => Some(crate::identity::generate_key().ok_or(Error::NoRandomness("an API key"))?),
            false => None,
        };
        let auth = crate::identity::Authenticator::new(
            &config.auth,
            api_key.as_deref().map(|k| (LOCAL_AGENT, k)),
        )
        .await
        .map_err(Error::Auth)?;
        let metrics = config
            .admin
            .as_ref()
            .and_then(|_| crate::admin::install_metrics());
        let gateway = build(&config).await.and_then(|(behaviour, integrity)| {
            Gateway::start(config.clone(), auth, behaviour, integrity)
        })?;
        let admin = match (&config.admin, admin_listener) {
            (Some(cfg), Some(listener)) => {
                let (token_sha256, generated_token) = match cfg.token_sha256 {
                    Some(d) => (d, None),
                    None => {
                        let t = crate::identity::generate_key()
                            .ok_or(Error::NoRandomness("the admin token"))?;
                        (crate::identity::digest(&t), Some(t))
                    }
                };
                Some(Admin {
                    addr: local_addr(&listener)?,
                    listener,
                    token_sha256,
                    generated_token,
                    metrics,
                })
            }
            _ => None,
        };
        Ok(Runtime {
            config,
            source,
            gateway,
            listener,
            addr,
            admin,
            api_key,
        })
    }

    /// The gateway.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// The MCP endpoint's URL.
    pub fn url(&self) -> String {
        let scheme = if self.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{}", self.addr, self.config.listener.path)
    }

    /// The API key generated for this run ([`LOCAL_AGENT`]'s), if any.
    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    /// The admin API's address, when it listens.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.addr)
    }

    /// The admin token generated for this run, if the configuration set
    /// none.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin.as_ref()?.generated_token.as_deref()
    }

    /// Serves agents (and operators) until `shutdown` resolves, then
    /// waits until every decision is in the audit log.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Runtime {
            source,
            gateway,
            listener,
            admin,
            ..
        } = self;
        if let Some(admin) = admin {
            tokio::spawn(crate::admin::serve(
                Operator::new(gateway.clone()),
                admin.listener,
                crate::admin::Options {
                    token_sha256: admin.token_sha256,
                    metrics: admin.metrics,
                    source: source.clone(),
                },
                std::future::pending(),
            ));
        }
        if let Some(path) = source.path.clone() {
            tokio::spawn(watch_config(path, source, gateway.clone()));
        }
        crate::serve(gateway.clone(), listener, shutdown).await;
        gateway.flush_audit().await;
    }
}

/// The judge with its audit log, alerts and baselines, and the tool pins.
async fn build(
    config: &Config,
) -> Result<(crate::behaviour::Behaviour, crate::integrity::Integrity), Error> {
    let durability = if config.audit.strict {
        castellan_audit::Durability::Strict
    } else {
        castellan_audit::Durability::Batched
    };
    let (audit, _writer_thread) = castellan_audit::AuditLog::open_at(
        &audit_location(&config.audit),
        durability,
        audit_writer_config(&config.audit, true)?,
    )?;
    let alerts = crate::alerts::Alerts::start(&config.alerts).map_err(Error::Alerts)?;
    let behaviour = crate::behaviour::Behaviour::new(&config.judge, Some(audit))?
        .with_alerts(alerts)
        .with_baselines(Box::new(crate::baselines::FileStore::beside(Path::new(
            &config.audit.path,
        ))))?;
    let integrity =
        crate::integrity::Integrity::open(&config.integrity).map_err(Error::Integrity)?;
    Ok((behaviour, integrity))
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| Error::Listen { addr, what, error })
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, Error> {
    listener.local_addr().map_err(|error| Error::Listen {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        what: " (no address)",
        error,
    })
}

/// The audit writer's signing, anchoring and retention settings. With
/// `create`, a signing key the configuration leaves to the gateway is
/// generated now if it does not exist yet (the private key readable by
/// its owner only).
pub fn audit_writer_config(
    audit: &AuditConfig,
    create: bool,
) -> Result<castellan_audit::WriterConfig, Error> {
    let checkpoint = match &audit.signing_key {
        None => None,
        Some(path) => {
            let path = Path::new(path);
            if audit.generate_signing_key && !path.exists() {
                if !create {
                    return Ok(castellan_audit::WriterConfig::default());
                }
                let (private, public) = castellan_audit::SigningKey::generate()?;
                write_new(path, private.as_bytes(), 0o600)?;
                write_new(
                    Path::new(&format!("{}.pub", path.display())),
                    public.as_bytes(),
                    0o644,
                )?;
                tracing::info!(key = %path.display(), "audit signing key generated (its public key is beside it, .pub)");
            }
            Some(Arc::new(castellan_audit::Checkpointing {
                key: castellan_audit::SigningKey::from_file(path)?,
                every: audit.checkpoint_every,
                interval: audit.checkpoint_interval,
            }))
        }
    };
    Ok(castellan_audit::WriterConfig {
        checkpoint,
        anchor: audit.anchor.as_ref().map(PathBuf::from),
        retention: castellan_audit::Retention {
            max_age: audit.max_age,
            max_records: audit.max_records,
        },
        // Only a fleet's log can be unreachable; the spool is its buffer.
        spool: audit.postgres.as_ref().map(|_| PathBuf::from(&audit.spool)),
        spool_max: audit.spool_max,
        ..Default::default()
    })
}

/// Where the decision log lives: the fleet's PostgreSQL database when one
/// is configured, the SQLite file otherwise.
pub fn audit_location(audit: &AuditConfig) -> castellan_audit::Location {
    match &audit.postgres {
        Some(url) => castellan_audit::Location::Postgres(url.clone()),
        None => castellan_audit::Location::Sqlite(PathBuf::from(&audit.path)),
    }
}

/// Writes a new file with `mode` (Unix); never overwrites.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    use std::io::Write as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    o.open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|error| Error::Create {
            file: path.display().to_string(),
            error,
        })
}

/// The files to watch, with their modification times.
fn stamped(files: Vec<PathBuf>) -> Vec<(PathBuf, Option<std::time::SystemTime>)> {
    files
        .into_iter()
        .map(|p| {
            let t = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
            (p, t)
        })
        .collect()
}

/// Reloads the configuration when it or a file it reads changes (see
/// [`crate::reload`]). A broken new version is reported and the running
/// one stays in force; connections and behavioural state are untouched.
async fn watch_config(path: PathBuf, source: Source, gateway: Arc<Gateway>) {
    let mut seen = stamped(match source.load() {
        Ok(cfg) => crate::reload::files_of(&path, &cfg),
        Err(_) => vec![path.clone()],
    });
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let changed = seen
            .iter()
            .any(|(p, t)| std::fs::metadata(p).and_then(|m| m.modified()).ok() != *t);
        if !changed {
            continue;
        }
        match crate::reload::reload(&gateway, &source).await {
            Ok(done) => {
                tracing::info!(config = %path.display(), applied = ?done.applied, "configuration reloaded");
                if !done.restart_needed.is_empty() {
                    tracing::warn!(sections = ?done.restart_needed, "these configuration changes take effect at the next start; the running values stay in force");
                }
                seen = stamped(done.files);
            }
            Err(e) => {
                tracing::error!(error = %e, "configuration change refused; the running configuration stays in force");
                // Remember the broken version so it is reported once.
                seen = stamped(seen.into_iter().map(|(p, _)| p).collect());
            }
        }
    }
}
