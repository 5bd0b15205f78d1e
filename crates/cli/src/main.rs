//! The `castellan` command: parses arguments, dispatches, maps errors to
//! exit codes. Everything else lives in the library crates.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

// The relay path makes many small, short-lived allocations on several
// threads; mimalloc's thread-local free lists serve them far cheaper than
// glibc's arenas (see docs/performance.md, gateway section).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod audit_query;
mod check;
mod pins;
mod policy;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "castellan",
    version,
    about = "A behaviour-based zero-trust gateway for AI agents"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CASTELLAN_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway. Without --config it fronts the builtin demo upstreams.
    Serve {
        /// Configuration file (castellan.yaml).
        #[arg(long, short, env = "CASTELLAN_CONFIG")]
        config: Option<PathBuf>,
        /// Override the listen address (e.g. 127.0.0.1:0 for any free port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Override the admin API's listen address.
        #[arg(long)]
        admin_listen: Option<std::net::SocketAddr>,
    },
    /// Validate a configuration file: its rule files, Cedar policy and
    /// signing key, that stdio commands exist and upstream URLs parse, and,
    /// when the policy names tools or arguments, the policy against the
    /// tools the upstreams list. One verdict; exit 1 on any error.
    Check {
        /// Configuration file.
        config: PathBuf,
    },
    /// Judge recorded sessions offline exactly as the live gateway would
    /// (JSON Lines in, one line per call out, a summary on stderr).
    Replay {
        /// Configuration whose `judge` section to use (default: the builtin pack).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Trace files (JSON Lines, one session per line); `-` or none reads stdin.
        traces: Vec<PathBuf>,
    },
    /// List every upstream tool with its labels and where each label came
    /// from (operator config, MCP annotation, inference); with a
    /// subcommand, review and approve pinned tool definitions.
    Tools {
        /// Configuration file (default: the builtin demo).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        pins: Option<pins::PinCommand>,
    },
    /// Validate and test policies like code.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Inspect the tamper-evident decision log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a configuration, its rule files and its Cedar policy (the
    /// same as `castellan check`).
    Check {
        /// Configuration file.
        config: PathBuf,
    },
    /// Run policy test cases (sessions whose calls carry `expect`) and exit
    /// 1 if any fails.
    Test {
        /// Configuration whose `judge` section to test (default: the builtin pack).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Test files: a YAML list of cases, or JSON Lines (`.jsonl`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain and compare every stored column with the hashed
    /// record; exit 1 naming the first modified, deleted, inserted or
    /// reordered record (2 when the log cannot be read at all).
    Verify {
        /// The audit log: a SQLite file, or a fleet's `postgres://` URL
        /// (password from `PGPASSWORD` when the URL has none).
        #[arg(value_name = "FILE_OR_URL")]
        log: String,
        /// Also check every signed checkpoint against this Ed25519 public
        /// key (PEM); fails if nothing is signed.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// The anchor file the gateway appends signed checkpoints to
        /// (`audit.anchor`); records cut from the end of the log are found
        /// against it. Default: the one beside FILE (`NAME.anchor` for
        /// `NAME.db`), when it exists.
        #[arg(long)]
        anchor: Option<PathBuf>,
    },
    /// Make an Ed25519 key pair for signed checkpoints: the private key
    /// (PKCS#8 PEM, for `audit.signing_key`) and FILE.pub (for auditors).
    Keygen {
        /// Where to write the private key (refuses to overwrite).
        file: PathBuf,
    },
    /// Print records, oldest first: a table at a terminal, JSON Lines
    /// (every field) otherwise or with `--format json`.
    Query {
        /// The audit log (`castellan-audit.db` where the gateway ran,
        /// unless `audit.path` says otherwise), or a fleet's `postgres://`
        /// URL.
        #[arg(value_name = "FILE_OR_URL")]
        log: String,
        #[command(flatten)]
        query: audit_query::Filters,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` starts logging itself, once it knows whether spans are exported.
    match cli.command {
        Command::Serve { .. } => {}
        // `check` reports the policy's state once, as its verdict; the
        // judge's running commentary while tools are learnt one upstream
        // at a time (a policy pending until the last one lists) is noise.
        Command::Check { .. }
        | Command::Policy {
            command: PolicyCommand::Check { .. },
        } => init_logging_with(
            cli.log_format,
            None,
            "info,castellan_gateway::behaviour=off",
        ),
        _ => init_logging(cli.log_format, None),
    }
    match run(cli.command, cli.log_format) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("castellan: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A gateway that lists the upstreams' tools without serving agents or
/// pinning anything in the operator's store.
async fn offline_gateway(
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
async fn policy_problem(
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

/// The `judge` section of a configuration file, or of the builtin one.
fn judge_config(config: Option<&std::path::Path>) -> anyhow::Result<castellan_config::JudgeConfig> {
    Ok(match config {
        Some(path) => castellan_config::load_judge_file(path)?,
        None => {
            castellan_config::load("<default>", castellan_config::DEFAULT_YAML, &|k| {
                std::env::var(k).ok()
            })?
            .judge
        }
    })
}

fn replay(config: Option<&std::path::Path>, traces: &[PathBuf]) -> anyhow::Result<()> {
    use std::io::{BufRead, Write as _};
    let judge_cfg = judge_config(config)?;
    let (judge, _) =
        castellan_gateway::behaviour::compile_judge(&judge_cfg).map_err(anyhow::Error::msg)?;
    let mut replayer = castellan_judge::Replayer::new(&judge);
    let mut summary = castellan_judge::Summary::default();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let inputs: Vec<Option<&PathBuf>> = if traces.is_empty() {
        vec![None]
    } else {
        traces.iter().map(Some).collect()
    };
    for input in inputs {
        let (name, reader): (String, Box<dyn BufRead>) = match input {
            Some(p) if p.as_os_str() != "-" => (
                p.display().to_string(),
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(p)
                        .with_context(|| format!("{}: cannot open", p.display()))?,
                )),
            ),
            _ => (
                "<stdin>".into(),
                Box::new(std::io::BufReader::new(std::io::stdin())),
            ),
        };
        for (n, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("{name}: cannot read"))?;
            if line.trim().is_empty() {
                continue;
            }
            let trace: castellan_judge::TraceSession = serde_json::from_str(&line)
                .map_err(|e| anyhow::anyhow!("{name}:{}: not a trace session: {e}", n + 1))?;
            let outcomes = replayer.session(&trace);
            for o in &outcomes {
                writeln!(out, "{}", serde_json::to_string(o)?)?;
            }
            summary.add(&trace, &outcomes);
        }
    }
    out.flush()?;
    eprintln!("{summary}");
    Ok(())
}

/// Writes a new file with `mode` (Unix); never overwrites.
fn write_new(path: &std::path::Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
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
        .with_context(|| format!("{}: cannot create", path.display()))
}

/// A file that is not there is a typo, not an empty log (SQLite would
/// create it); a database is asked when it is read.
fn ensure_exists(log: &castellan_audit::Location) -> anyhow::Result<()> {
    if let Some(path) = log.file()
        && !path.exists()
    {
        anyhow::bail!("{}: no such audit log", path.display());
    }
    Ok(())
}

/// Logs to stderr (text or JSON lines) and, with a tracer, exports spans
/// over OTLP.
fn init_logging(format: LogFormat, tracer: Option<opentelemetry_sdk::trace::SdkTracer>) {
    init_logging_with(format, tracer, "info");
}

/// [`init_logging`] with a default filter for when `CASTELLAN_LOG` is unset.
fn init_logging_with(
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
fn tracer_provider(
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

fn run(command: Command, log_format: LogFormat) -> anyhow::Result<()> {
    match command {
        Command::Replay { config, traces } => replay(config.as_deref(), &traces),
        Command::Tools { config, json, pins } => {
            let cfg = match &config {
                Some(path) => castellan_config::load_file(path)?,
                None => {
                    castellan_config::load("<default>", castellan_config::DEFAULT_YAML, &|k| {
                        std::env::var(k).ok()
                    })?
                }
            };
            if let Some(command) = pins {
                return pins::run(&cfg.integrity.store, command);
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(tools(Arc::new(cfg), json))
        }
        Command::Policy {
            command: PolicyCommand::Test { config, files },
        } => {
            let (judge, _) =
                castellan_gateway::behaviour::compile_judge(&judge_config(config.as_deref())?)
                    .map_err(anyhow::Error::msg)?;
            if policy::test(&judge, &files)? > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Check { config }
        | Command::Policy {
            command: PolicyCommand::Check { config },
        } => {
            if check::run(&config)? > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Audit {
            command: AuditCommand::Keygen { file },
        } => {
            let (private, public) = castellan_audit::SigningKey::generate()?;
            let pub_file = PathBuf::from(format!("{}.pub", file.display()));
            write_new(&file, private.as_bytes(), 0o600)?;
            write_new(&pub_file, public.as_bytes(), 0o644)?;
            println!(
                "private key: {} (set audit.signing_key)\npublic key:  {} (for castellan audit verify --public-key)",
                file.display(),
                pub_file.display()
            );
            Ok(())
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    log,
                    public_key,
                    anchor,
                },
        } => {
            let log = castellan_audit::Location::parse(&log);
            ensure_exists(&log)?;
            let key = public_key
                .as_deref()
                .map(castellan_audit::PublicKey::from_file)
                .transpose()?;
            let report = castellan_audit::verify_with(&log, key.as_ref())?;
            if matches!(
                report.verification,
                castellan_audit::Verification::Intact { .. }
            ) {
                verify_anchor(&log, anchor.as_deref(), key.as_ref())?;
            }
            let anchor = report
                .anchor
                .map(|a| format!(", from retention anchor {a}"))
                .unwrap_or_default();
            match report.verification {
                castellan_audit::Verification::Intact { records } if key.is_some() => {
                    if records > 0 && report.checkpoints == 0 {
                        eprintln!(
                            "castellan: {}: no signed checkpoint; nothing vouches for these {records} records",
                            log
                        );
                        std::process::exit(1);
                    }
                    println!(
                        "{}: intact ({records} records{anchor}; {} signed checkpoints verified, last at record {}; {} records after it not yet signed)",
                        log,
                        report.checkpoints,
                        report.last_checkpoint.unwrap_or(0),
                        report.unsigned_tail
                    );
                    Ok(())
                }
                castellan_audit::Verification::Intact { records } => {
                    println!("{}: intact ({records} records{anchor})", log);
                    Ok(())
                }
                castellan_audit::Verification::Broken { seq, id, reason } => {
                    eprintln!(
                        "castellan: {}: chain broken at record {seq} (id `{id}`): {reason}",
                        log
                    );
                    std::process::exit(1);
                }
            }
        }
        Command::Audit {
            command: AuditCommand::Query { log, query },
        } => {
            let log = castellan_audit::Location::parse(&log);
            ensure_exists(&log)?;
            audit_query::run(&log, query)
        }
        Command::Serve {
            config,
            listen,
            admin_listen,
        } => {
            let source = castellan_gateway::reload::Source {
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
    }
}

/// Checks the log against its anchor (the one given, or the default one
/// beside it when it exists) and prints what the anchor proves; exits 1
/// when the log no longer holds what the anchor vouches for.
fn verify_anchor(
    log: &castellan_audit::Location,
    anchor: Option<&std::path::Path>,
    key: Option<&castellan_audit::PublicKey>,
) -> anyhow::Result<()> {
    // A fleet's replicas each keep their own anchor: name it.
    let beside = log.file().map(|file| {
        PathBuf::from(castellan_config::beside_audit_log(
            &file.display().to_string(),
            "anchor",
        ))
    });
    let anchor = match (anchor, beside) {
        (Some(a), _) => a.to_path_buf(),
        (None, Some(beside)) if beside.exists() => beside,
        (None, _) => return Ok(()),
    };
    let r = castellan_audit::verify_anchor(log, &anchor, key)?;
    match r.verification {
        castellan_audit::Verification::Intact { records } => {
            println!(
                "{}: anchor {} proves {records} records (up to record {}; {} signed heads{})",
                log,
                anchor.display(),
                r.last_anchored.unwrap_or(0),
                r.heads,
                if r.unreadable > 0 {
                    format!(", {} unreadable lines skipped", r.unreadable)
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        castellan_audit::Verification::Broken { seq, reason, .. } => {
            eprintln!(
                "castellan: {}: does not match the anchor {} at record {seq}: {reason}",
                log,
                anchor.display()
            );
            std::process::exit(1);
        }
    }
}

/// The audit writer's signing, anchoring and retention settings. With
/// `create`, a signing key the configuration leaves to the gateway is
/// generated now if it does not exist yet (the private key readable by
/// its owner only).
fn audit_writer_config(
    audit: &castellan_config::AuditConfig,
    create: bool,
) -> anyhow::Result<castellan_audit::WriterConfig> {
    let checkpoint = match &audit.signing_key {
        None => None,
        Some(path) => {
            let path = std::path::Path::new(path);
            if audit.generate_signing_key && !path.exists() {
                if !create {
                    return Ok(castellan_audit::WriterConfig::default());
                }
                let (private, public) = castellan_audit::SigningKey::generate()?;
                write_new(path, private.as_bytes(), 0o600)?;
                write_new(
                    std::path::Path::new(&format!("{}.pub", path.display())),
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
        ..Default::default()
    })
}

/// Prints a banner line; a closed stdout must not bring the gateway down.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The agent a generated key authenticates.
const LOCAL_AGENT: &str = "local-agent";

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
/// `castellan_gateway::reload`). A broken new version is reported and the
/// running one stays in force; connections and behavioural state are
/// untouched.
async fn watch_config(
    path: PathBuf,
    source: castellan_gateway::reload::Source,
    gateway: Arc<castellan_gateway::Gateway>,
) {
    let mut seen = stamped(match source.load() {
        Ok(cfg) => castellan_gateway::reload::files_of(&path, &cfg),
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
        match castellan_gateway::reload::reload(&gateway, &source).await {
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

async fn serve(
    cfg: Arc<castellan_config::Config>,
    source: castellan_gateway::reload::Source,
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
    // Bind every listener before anything else, and before announcing
    // anything: a port conflict fails fast and clearly, never after the
    // banner said "listening".
    let listener = tokio::net::TcpListener::bind(cfg.listener.addr)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listener.addr))?;
    let addr = listener.local_addr().context("listener has no address")?;
    let admin_listener = match &cfg.admin {
        Some(admin) => Some(
            tokio::net::TcpListener::bind(admin.addr)
                .await
                .with_context(|| format!("cannot listen on {} (admin)", admin.addr))?,
        ),
        None => None,
    };
    // The demo default: a key made now, printed below, valid for this run.
    let generated = match cfg.auth.generate_key {
        true => Some(
            castellan_gateway::identity::generate_key().context("no randomness for an API key")?,
        ),
        false => None,
    };
    let auth = castellan_gateway::identity::Authenticator::new(
        &cfg.auth,
        generated.as_deref().map(|k| (LOCAL_AGENT, k)),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let metrics = cfg
        .admin
        .as_ref()
        .and_then(|_| castellan_gateway::admin::install_metrics());
    let (audit, _audit_thread) = castellan_audit::AuditLog::open(
        std::path::Path::new(&cfg.audit.path),
        if cfg.audit.strict {
            castellan_audit::Durability::Strict
        } else {
            castellan_audit::Durability::Batched
        },
        audit_writer_config(&cfg.audit, true)?,
    )?;
    let alerts =
        castellan_gateway::alerts::Alerts::start(&cfg.alerts).map_err(anyhow::Error::msg)?;
    let behaviour = castellan_gateway::behaviour::Behaviour::new(&cfg.judge, Some(audit))
        .map_err(anyhow::Error::msg)?
        .with_alerts(alerts)
        .with_baselines(Box::new(castellan_gateway::baselines::FileStore::beside(
            std::path::Path::new(&cfg.audit.path),
        )))
        .map_err(anyhow::Error::msg)?;
    let integrity = castellan_gateway::integrity::Integrity::open(&cfg.integrity)
        .map_err(anyhow::Error::msg)?;
    let gateway = castellan_gateway::Gateway::start(cfg.clone(), auth, behaviour, integrity)
        .map_err(anyhow::Error::msg)?;
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{addr}{}", cfg.listener.path);
    say!("castellan {} listening", env!("CARGO_PKG_VERSION"));
    say!("  MCP endpoint: {url}");
    say!(
        "  upstreams:    {}",
        cfg.upstreams
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(key) = &generated {
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
    if let (Some(admin), Some(admin_listener)) = (&cfg.admin, admin_listener) {
        let admin_addr = admin_listener
            .local_addr()
            .context("admin listener has no address")?;
        let (token_sha256, generated) = match admin.token_sha256 {
            Some(d) => (d, None),
            None => {
                let t = castellan_gateway::identity::generate_key()
                    .context("no randomness for the admin token")?;
                (castellan_gateway::identity::digest(&t), Some(t))
            }
        };
        say!(
            "  admin API:    http://{admin_addr} (agents, sessions, alerts, holds, quarantine, reload)"
        );
        if let Some(t) = generated {
            say!("  admin token:  {t}");
        }
        tokio::spawn(castellan_gateway::admin::serve(
            gateway.clone(),
            admin_listener,
            castellan_gateway::admin::Options {
                token_sha256,
                metrics,
                source: source.clone(),
            },
            std::future::pending(),
        ));
    }
    say!(
        "  files:        {} (decisions: castellan audit query), {} (tool pins)",
        cfg.audit.path,
        cfg.integrity.store
    );
    if demo {
        say!("  (builtin demo upstreams; pass --config castellan.yaml to front your own servers)");
    }
    tracing::info!(%url, "gateway ready");
    if let Some(path) = source.path.clone() {
        tokio::spawn(watch_config(path, source, gateway.clone()));
    }
    castellan_gateway::serve(gateway.clone(), listener, shutdown_signal()).await;
    gateway.flush_audit();
    if let Some(p) = provider
        && let Err(e) = p.shutdown()
    {
        tracing::warn!(error = %e, "spans not all exported at shutdown");
    }
    tracing::info!("gateway stopped");
    Ok(())
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
