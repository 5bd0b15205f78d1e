//! The `castellan` command: parses arguments, dispatches, maps errors to
//! exit codes. Everything else lives in the library crates.

use std::path::PathBuf;
use std::process::ExitCode;

// The relay path makes many small, short-lived allocations on several
// threads; mimalloc's thread-local free lists serve them far cheaper than
// glibc's arenas (see docs/performance.md, gateway section).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod audit;
mod audit_query;
mod check;
mod logging;
mod pins;
mod policy;
mod replay;
mod serve;
mod tools;

use clap::{Parser, Subcommand, ValueEnum};
use logging::{init_logging, init_logging_with};
use replay::{judge_config, replay};

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

fn run(command: Command, log_format: LogFormat) -> anyhow::Result<()> {
    match command {
        Command::Replay { config, traces } => replay(config.as_deref(), &traces),
        Command::Tools { config, json, pins } => tools::run(config.as_deref(), json, pins),
        Command::Policy {
            command: PolicyCommand::Test { config, files },
        } => {
            let (judge, _) =
                castellan_gateway::behaviour::compile_judge(&judge_config(config.as_deref())?)?;
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
        Command::Audit { command } => audit::run(command),
        Command::Serve {
            config,
            listen,
            admin_listen,
        } => serve::run(config, listen, admin_listen, log_format),
    }
}
