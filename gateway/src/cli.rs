//! The `portcullis` command line: `run`, `demo`, `check`, `hash-key`, `audit` and `console`.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use portcullis_config::{LoadError, Snapshot, DEFAULT_ADMIN_LISTEN, DEFAULT_LISTEN};
use sha2::{Digest, Sha256};

use crate::audit::{AuditConfig, AuditLog, OverflowPolicy};
use crate::control::{ConfigSource, ListenOverrides, Reloader, Shared};
use crate::demo;
use crate::metrics::Metrics;
use crate::runtime::{BuildContext, Runtime};
use crate::secrets::{Environment, ProcessEnv, SecretSource, SecretStore, SecretUsageRegistry};
use crate::server::{build_server, ServeOptions};

/// Portcullis: the egress gateway for a hosted developer portal.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about, long_about = None)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PORTCULLIS_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// What to do (default: `run`, which without `--config` runs the demo).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (without --config: the built-in demo).
    Run(RunArgs),
    /// Run the built-in demo: a config, a demo secret and a demo upstream.
    Demo(ListenArgs),
    /// Validate a config file: prints `OK <hash>` or every error, exit 0/1.
    Check {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the sha256 of a gateway key (for `key_sha256`); reads the key from stdin if absent.
    HashKey {
        /// The key (prefer stdin, so it stays out of shell history).
        key: Option<String>,
    },
    /// Audit log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Open the operator console (a terminal UI) on a gateway's admin API.
    Console(portcullis_console::ConsoleArgs),
}

/// `portcullis audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of audit files (oldest first): prints `OK …` or the first altered,
    /// removed or reordered line, exit 0/1.
    Verify {
        /// Audit files in chain order (rotated files first: audit.jsonl.2 audit.jsonl.1 audit.jsonl).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The config file.
    #[arg(long, short, env = "PORTCULLIS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listener overrides.
    #[command(flatten)]
    pub listen: ListenArgs,
}

/// Listener overrides shared by `run` and `demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListenArgs {
    /// Public listener address (replaces the config's `server.listen`; demo default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Admin listener address (demo default 127.0.0.1:9901).
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Proxy worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

// === impl Cli ===

/// Runs the command line; the return value is the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        None => run(RunArgs {
            config: std::env::var_os("PORTCULLIS_CONFIG").map(PathBuf::from),
            listen: ListenArgs {
                listen: None,
                admin_listen: None,
                threads: None,
            },
        }),
        Some(Command::Run(args)) => run(args),
        Some(Command::Demo(args)) => run_demo(&args),
        Some(Command::Check { config }) => return check(&config),
        Some(Command::HashKey { key }) => hash_key(key),
        Some(Command::Audit(AuditCommand::Verify { files })) => return audit_verify(&files),
        Some(Command::Console(args)) => args
            .into_options()
            .and_then(portcullis_console::run)
            .map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` also installs the `log` bridge, so Pingora's records arrive as tracing events.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let Some(path) = args.config else {
        return run_demo(&args.listen);
    };
    serve(
        ConfigSource::File(path),
        Arc::new(ProcessEnv),
        &args.listen,
        |_| Ok(()),
    )
}

fn run_demo(args: &ListenArgs) -> anyhow::Result<()> {
    let listen = args
        .listen
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    let admin = args
        .admin_listen
        .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.parse().expect("valid default"));
    let upstream = demo::free_loopback_addr().context("picking a port for the demo upstream")?;
    let dir = demo::prepare_dir().context("preparing the demo directory")?;
    let text = demo::demo_config(listen, admin, upstream, &dir);
    println!("{}", demo::banner(listen, admin, upstream, &dir));
    let source = ConfigSource::Text {
        name: PathBuf::from("<built-in demo>"),
        text,
    };
    let no_overrides = ListenArgs {
        listen: None,
        admin_listen: None,
        threads: args.threads,
    };
    serve(
        source,
        Arc::new(demo::demo_env()),
        &no_overrides,
        |server| {
            let mut echo = pingora::services::listening::Service::new(
                "demo upstream".to_owned(),
                demo::EchoUpstream,
            );
            echo.add_tcp(&upstream.to_string());
            server.add_service(echo);
            Ok(())
        },
    )
}

fn serve(
    source: ConfigSource,
    env: Arc<dyn Environment + Send + Sync>,
    args: &ListenArgs,
    extra: impl FnOnce(&mut pingora::server::Server) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let overrides = ListenOverrides {
        listen: args.listen,
        admin_listen: args.admin_listen,
    };
    let mut snapshot = match source.load() {
        Ok(s) => s,
        Err(LoadError::Invalid(errors)) => {
            anyhow::bail!("invalid config, not starting:\n{errors}")
        }
        Err(e) => return Err(e.into()),
    };
    overrides.apply(&mut snapshot);
    let mut fingerprint_key = [0u8; 32];
    rand::fill(&mut fingerprint_key);
    let hash = snapshot.short_hash().to_owned();
    let metrics = Metrics::new(env!("CARGO_PKG_VERSION"));
    let usage = SecretUsageRegistry::default();
    let (audit, audit_writer) = open_audit(&snapshot)?;
    let runtime = {
        let cx = BuildContext {
            env: env.as_ref(),
            fingerprint_key: &fingerprint_key,
            metrics: &metrics,
            usage: &usage,
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the setup runtime")?
            .block_on(Runtime::build(snapshot, &cx))
            .context("building the runtime")?
    };
    for (route, state) in runtime.config.routes.iter().zip(&runtime.routes) {
        if !state.missing.is_empty() {
            tracing::warn!(route = %route.name, missing = ?state.missing, "route will answer 503 secret_missing until its references resolve");
        }
    }
    let shared = Arc::new(Shared::new(runtime, metrics, audit, usage));
    let listeners = shared.listeners.clone();
    let reloader = Arc::new(Reloader::new(
        shared,
        source,
        overrides,
        env,
        fingerprint_key,
    ));
    let mut options = ServeOptions::default();
    if let Some(threads) = args.threads {
        options.threads = threads;
    }
    let mut server = build_server(reloader, audit_writer, &options)?;
    extra(&mut server)?;
    tracing::info!(config = %hash, listeners = ?listeners, "portcullis started");
    server.run_forever()
}

fn open_audit(snapshot: &Snapshot) -> anyhow::Result<(AuditLog, crate::audit::AuditWriter)> {
    AuditLog::open(AuditConfig {
        sink: snapshot.audit.sink.clone(),
        queue_capacity: snapshot.audit.queue,
        policy: if snapshot.audit.fail_closed {
            OverflowPolicy::FailClosed
        } else {
            OverflowPolicy::Drop
        },
    })
    .context("opening the audit log")
}

fn audit_verify(files: &[PathBuf]) -> ExitCode {
    match crate::audit::verify(files) {
        Ok(report) => {
            println!("OK {} lines, head {}", report.lines, report.head_hash);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `portcullis check`: every error, or `OK <hash>` plus warnings about missing secrets.
fn check(path: &Path) -> ExitCode {
    match portcullis_config::load(path) {
        Ok(snapshot) => {
            let store = SecretStore::load(
                &snapshot.secrets,
                &ProcessEnv,
                snapshot.routes.iter().flat_map(|r| {
                    let tenant = snapshot.tenants[r.tenant].id.as_str();
                    r.secret_refs.iter().map(move |s| (tenant, s.as_str()))
                }),
                &[0; 32],
            );
            for route in &snapshot.routes {
                let tenant = &snapshot.tenants[route.tenant].id;
                for name in &route.secret_refs {
                    if let Some(entry) = store.get(tenant, name) {
                        if let SecretSource::Missing(looked) = &entry.source {
                            eprintln!(
                                "warning: route '{}': secret '{name}' of tenant '{tenant}' is missing (looked in {}); the route will answer 503 secret_missing",
                                route.name,
                                looked.join(", ")
                            );
                        }
                    }
                }
            }
            println!("OK {}", snapshot.hash);
            ExitCode::SUCCESS
        }
        Err(LoadError::Invalid(errors)) => {
            eprintln!("{errors}");
            eprintln!(
                "{} error{} in {}",
                errors.0.len(),
                if errors.0.len() == 1 { "" } else { "s" },
                path.display()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn hash_key(key: Option<String>) -> anyhow::Result<()> {
    let key = match key {
        Some(k) => k,
        None => {
            let mut k = String::new();
            std::io::stdin()
                .read_to_string(&mut k)
                .context("reading the key from stdin")?;
            k.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    anyhow::ensure!(!key.is_empty(), "empty key");
    println!("{}", hex::encode(Sha256::digest(key.as_bytes())));
    Ok(())
}
