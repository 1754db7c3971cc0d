//! `portcullis-agent --config agent.toml`: the customer-side tunnel agent.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use portcullis_broker::agent::{self, AgentConfig};

/// mimalloc instead of glibc's malloc, as in the gateway: every tunnelled request allocates
/// and frees frame bodies, header maps and hyper's buffers, and under glibc's allocator that
/// was about a tenth of the agent's CPU (`perf`, load-tests/tunnel.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps an outbound tunnel to the Portcullis gateways and serves the customer's private
/// origins through it, under the agent's own accept rules.
#[derive(Debug, Parser)]
#[command(name = "portcullis-agent", version)]
struct Args {
    /// The agent configuration file.
    #[arg(long, short, default_value = "agent.toml")]
    config: PathBuf,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_AGENT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match AgentConfig::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!(
            "{}: ok ({} origins, {} gateways)",
            args.config.display(),
            config.origins.len(),
            config.gateways.len()
        );
        return ExitCode::SUCCESS;
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: AgentConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Registered before any connection exists, so a stop request is never lost to the
        // default signal action.
        let shutdown = shutdown_signal()?;
        agent::run(config, shutdown).await?;
        Ok(())
    })
}

/// Registers for SIGTERM and Ctrl-C (SIGINT) now; the future resolves on either.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// Registers for Ctrl-C now; the future resolves on it.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
