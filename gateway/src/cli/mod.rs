//! The `portcullis` command line: clap types here, one file per subcommand.

use std::io::{BufWriter, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::observe::access::TextLines;

mod audit;
mod check;
mod console;
mod hash_key;
mod run;
mod secrets;

/// The log writer's buffer: lines queued while it writes go out together.
const LOG_BUFFER: usize = 64 * 1024;

/// Portcullis: the egress gateway for a hosted developer portal.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about, long_about = None)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PORTCULLIS_LOG_FORMAT")]
    log_format: LogFormat,
    /// What to do (default: `run`, which without `--config` runs the demo).
    #[command(subcommand)]
    command: Option<Command>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (without --config: the built-in demo).
    Run(RunArgs),
    /// Run the built-in demo (config, secrets, upstreams, traffic) and open the console on it.
    Demo(DemoArgs),
    /// Validate a config file as `run` would, short of binding and DNS: prints `OK <hash>` or
    /// every error, exit 0/1.
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
    /// Manage the encrypted secret store (`[secrets] store`): keygen, set, rotate, delete,
    /// list, import. Values are read from stdin, never from arguments.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Open the operator console (a terminal UI) on a gateway's admin API.
    Console(portcullis_console::ConsoleArgs),
}

/// `portcullis audit …`.
#[derive(Debug, Subcommand)]
enum AuditCommand {
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
struct RunArgs {
    /// The config file.
    #[arg(long, short, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    /// Graceful upgrade: take the listening sockets over from the gateway running now (on
    /// `server.upgrade_sock`), which hands them over when it receives SIGQUIT and then drains.
    #[arg(long)]
    upgrade: bool,
    /// Listener overrides.
    #[command(flatten)]
    listen: ListenArgs,
}

/// Arguments of `demo`.
#[derive(Debug, Clone, clap::Args)]
struct DemoArgs {
    /// Listener overrides.
    #[command(flatten)]
    listen: ListenArgs,
    /// Run headless, without opening the console (for scripts; also when there is no terminal).
    #[arg(long)]
    no_console: bool,
}

/// Listener and process options shared by `run` and `demo`.
#[derive(Debug, Clone, clap::Args)]
struct ListenArgs {
    /// Public listener address (replaces the config's `server.listen`; demo default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Admin listener address (demo default 127.0.0.1:9901).
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Proxy worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Once every listener is bound, write their addresses (real ports, also for port 0) to
    /// this file as JSON: `{"http": […], "https": […], "admin": "…"}`.
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

/// Runs the command line; the return value is the process exit code.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Console(args)) = cli.command {
        // The console owns the terminal: no log line may draw over it.
        return console::console(args);
    }
    // The demo's console owns the terminal: its log goes to a file instead.
    let log_file = match &cli.command {
        Some(Command::Demo(args)) if run::console_wanted(args.no_console) => {
            crate::demo::log_file()
        }
        None if std::env::var_os("PORTCULLIS_CONFIG").is_none() && run::console_wanted(false) => {
            crate::demo::log_file()
        }
        _ => None,
    };
    let log_guard = init_logging(cli.log_format, log_file);
    match cli.command {
        None => run::run(
            RunArgs {
                config: std::env::var_os("PORTCULLIS_CONFIG").map(PathBuf::from),
                upgrade: false,
                listen: ListenArgs {
                    listen: None,
                    admin_listen: None,
                    threads: None,
                    ready_file: None,
                },
            },
            log_guard,
        ),
        Some(Command::Run(args)) => run::run(args, log_guard),
        Some(Command::Demo(args)) => run::demo(&args.listen, args.no_console, log_guard),
        Some(Command::Check { config }) => check::check(&config),
        Some(Command::HashKey { key }) => hash_key::hash_key(key),
        Some(Command::Audit(AuditCommand::Verify { files })) => audit::verify(&files),
        Some(Command::Secrets(command)) => secrets::secrets(command),
        Some(Command::Console(_)) => ExitCode::SUCCESS,
    }
}

/// Logs go to stderr (or to `file`) through a non-blocking writer (a worker thread does the
/// writing, so the access line costs a request no `write(2)`), with colours only on a
/// terminal, every line escaped (`observe::escape`). The returned guard flushes what is buffered when dropped.
fn init_logging(
    format: LogFormat,
    file: Option<std::fs::File>,
) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = file.is_none() && std::io::stderr().is_terminal();
    // The worker flushes whenever it has emptied its queue: under load, one write(2) carries
    // many lines instead of one each.
    let (writer, guard) = match file {
        Some(file) => tracing_appender::non_blocking(BufWriter::with_capacity(LOG_BUFFER, file)),
        None => {
            tracing_appender::non_blocking(BufWriter::with_capacity(LOG_BUFFER, std::io::stderr()))
        }
    };
    // Caller-derived text (paths, Pingora's own messages) never reaches the terminal or the
    // log pipeline unescaped.
    let writer = crate::observe::escape::SafeLines::new(writer, ansi);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_timer(LogTime)
        .with_writer(writer);
    // `try_init` also installs the `log` bridge, so Pingora's records arrive as tracing events.
    let _ = match format {
        LogFormat::Text => builder
            .event_format(TextLines::new(
                tracing_subscriber::fmt::format().with_timer(LogTime),
                LogTime,
            ))
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    guard
}

/// The log lines' timestamp: the same text as `tracing_subscriber`'s default timer
/// (`2026-11-23T19:04:05.123456Z`), written digit by digit instead of through eight `{:02}`
/// format calls (~2,000 instructions a line, and there is an access line per request).
struct LogTime;

// === impl LogTime ===

impl tracing_subscriber::fmt::time::FormatTime for LogTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let now = std::time::SystemTime::now();
        match crate::clock::rfc3339_micros(now) {
            // The buffer holds only ASCII digits and punctuation.
            Some(text) => w.write_str(std::str::from_utf8(&text).map_err(|_| std::fmt::Error)?),
            None => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}
